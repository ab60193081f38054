//! `bitnet convert`: a transformers BitNet checkpoint directory to a GGUF file with its tokenizer embedded.

use std::path::PathBuf;

use anyhow::{anyhow, Result};
use bitnet_burn::io::convert::{convert_checkpoint, ConvertOptions};
use bitnet_gguf::GgmlType;
use indicatif::{ProgressBar, ProgressStyle};

/// Arguments of `bitnet convert`.
#[derive(clap::Args)]
pub struct Args {
    /// Checkpoint directory: config.json, *.safetensors, tokenizer.json (tokenizer_config.json for the chat template).
    input: PathBuf,
    /// Output GGUF file (written through a temporary file, renamed when complete).
    #[arg(short, long)]
    output: PathBuf,
    /// Type of the ternary linear weights: i2_s (bitnet.cpp), tq2_0, tq1_0 (llama.cpp), f16, bf16, f32.
    #[arg(long = "type", default_value = "i2_s", value_parser = ggml_type)]
    ty: GgmlType,
    /// Type of the token embedding (and an untied output head): f16, bf16, f32, q8_0.
    #[arg(long, default_value = "f16", value_parser = ggml_type)]
    embedding_type: GgmlType,
}

fn ggml_type(name: &str) -> Result<GgmlType> {
    GgmlType::from_name(name).ok_or_else(|| anyhow!("unknown GGUF type {name:?}"))
}

/// Converts, with a progress bar on a terminal.
pub fn run(args: Args) -> Result<()> {
    let bar = ProgressBar::new(0).with_style(
        ProgressStyle::with_template("converting [{bar:30}] {pos}/{len} tensors, {elapsed}")
            .expect("a valid template")
            .progress_chars("=> "),
    );
    let summary = convert_checkpoint(
        &args.input,
        &args.output,
        ConvertOptions {
            linear: args.ty,
            embedding: args.embedding_type,
        },
        |done, total| {
            bar.set_length(total as u64);
            bar.set_position(done as u64);
        },
    )?;
    bar.finish_and_clear();
    for note in &summary.notes {
        eprintln!("note: {note}");
    }
    let c = &summary.config;
    eprintln!(
        "wrote {} ({}, {} tensors, {} bytes): {} layers, width {}, {} heads / {} kv, ffn {} ({}), vocab {}; linears {}, embedding {}",
        args.output.display(),
        summary.architecture,
        summary.tensors,
        summary.bytes,
        c.n_layers,
        c.hidden_size,
        c.n_heads,
        c.n_kv_heads,
        c.ffn_size,
        c.activation.name(),
        c.vocab_size,
        args.ty,
        args.embedding_type
    );
    Ok(())
}
