//! `bitnet info`: what a GGUF file holds and whether this build can run it.

use std::path::PathBuf;

use std::fmt::Write as _;

use anyhow::Result;
use bitnet_gguf::{GgufFile, ModelConfig, Value};
use bitnet_kernels_cubecl::cpu::Isa;
use serde_json::json;

/// Arguments of `bitnet info`.
#[derive(clap::Args)]
pub struct Args {
    /// The GGUF file (or a Hub file `hf:OWNER/NAME/FILE`).
    #[arg(value_parser = crate::hub_args::model_path)]
    file: PathBuf,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
}

fn tokenizer_summary(f: &GgufFile) -> serde_json::Value {
    let tokens = match f.get("tokenizer.ggml.tokens") {
        Some(Value::Array(a)) => a.len(),
        _ => 0,
    };
    let id = |k: &str| f.get(k).and_then(Value::as_u64);
    json!({
        "model": f.opt_str("tokenizer.ggml.model").ok().flatten(),
        "pre": f.opt_str("tokenizer.ggml.pre").ok().flatten(),
        "tokens": tokens,
        "bos": id("tokenizer.ggml.bos_token_id"),
        "eos": id("tokenizer.ggml.eos_token_id"),
        "chat_template": f.get("tokenizer.chat_template").is_some(),
        "pre_tokenizer": match bitnet_burn::text::tokenizer::Tokenizer::from_gguf(f) {
            Ok(t) => t.pre_tokenizer().to_string(),
            Err(e) => format!("unusable: {e}"),
        },
    })
}

fn config_json(c: &ModelConfig) -> serde_json::Value {
    json!({
        "architecture": c.architecture, "hidden_size": c.hidden_size, "n_layers": c.n_layers, "n_heads": c.n_heads,
        "n_kv_heads": c.n_kv_heads, "head_dim": c.head_dim(), "ffn_size": c.ffn_size, "vocab_size": c.vocab_size,
        "context_length": c.context_length, "rope_theta": c.rope_theta, "rope_dim": c.rope_dim, "rms_eps": c.rms_eps,
        "activation": c.activation.name(), "activation_source": c.activation_source,
        "rope_type": c.rope_type.name(), "rope_type_source": c.rope_type_source,
        "tied_embeddings": c.tied_embeddings, "sub_norms": c.sub_norms, "family": c.family(),
    })
}

/// The CPU kernel path the ndarray backend runs here (detected, or forced by `BITNET_ISA`), its prefill kernel (and
/// from how many tokens its lookups run), and every path this CPU supports.
fn kernels() -> serde_json::Value {
    json!({
        "cpu": Isa::detect().name(),
        "prefill": Isa::detect().prefill_kernel(),
        "lookup_from": lookup_from(Isa::detect()),
        "available": Isa::available().into_iter().map(Isa::name).collect::<Vec<_>>(),
    })
}

/// From how many tokens a prefill call of `isa` takes table lookups (`half`: up to 16 tokens, `group`: the last
/// group of a longer call); null on a path without them.
pub(crate) fn lookup_from(isa: Isa) -> serde_json::Value {
    isa.lookup_from().map_or(
        serde_json::Value::Null,
        |f| json!({"half": f.half, "group": f.group}),
    )
}

/// Prints the summary; a file that fails validation is an error (exit code 1) with the reason.
pub fn run(args: Args) -> Result<()> {
    let f = GgufFile::open(&args.file)?;
    let config = ModelConfig::from_gguf(&f);
    let verdict = match &config {
        Ok(_) => "valid: runnable by this build".to_string(),
        Err(e) => format!("valid GGUF, not runnable as a model: {}", e.kind),
    };
    let tensors: Vec<_> = f
        .tensors()
        .iter()
        .map(|t| json!({"name": t.name, "type": t.ty.name(), "dims": t.dims, "bytes": t.size, "offset": f.data_offset() + t.offset}))
        .collect();
    let summary = json!({
        "file": f.name(), "version": f.version(), "alignment": f.alignment(),
        "metadata_keys": f.metadata().len(), "tensor_count": f.tensors().len(),
        "tensor_bytes": f.tensors().iter().map(|t| t.size).sum::<u64>(),
        "config": config.as_ref().ok().map(config_json), "tokenizer": tokenizer_summary(&f),
        "verdict": verdict, "tensors": tensors, "kernels": kernels(),
    });
    if args.json {
        return crate::output::print(&serde_json::to_string_pretty(&summary)?);
    }
    let mut out = String::new();
    writeln!(
        out,
        "file        {} (GGUF v{}, alignment {})",
        f.name(),
        f.version(),
        f.alignment()
    )?;
    if let Ok(c) = &config {
        writeln!(
            out,
            "arch        {} (the {} graph)",
            c.architecture,
            c.family()
        )?;
        writeln!(
            out,
            "shape       hidden {}, layers {}, heads {}/{} (head dim {}), ffn {}, vocab {}",
            c.hidden_size,
            c.n_layers,
            c.n_heads,
            c.n_kv_heads,
            c.head_dim(),
            c.ffn_size,
            c.vocab_size
        )?;
        writeln!(
            out,
            "context     {} positions, rope base {} over {} dims, rms eps {:e}",
            c.context_length, c.rope_theta, c.rope_dim, c.rms_eps
        )?;
        writeln!(
            out,
            "activation  {} ({})",
            c.activation.name(),
            c.activation_source
        )?;
        writeln!(
            out,
            "rope        {} ({})",
            c.rope_type.name(),
            c.rope_type_source
        )?;
        writeln!(
            out,
            "head        {}, sub-norms {}",
            if c.tied_embeddings {
                "tied to token_embd"
            } else {
                "output.weight"
            },
            if c.sub_norms { "yes" } else { "no" }
        )?;
    }
    let t = &summary["tokenizer"];
    writeln!(
        out,
        "tokenizer   model {}, pre {}, {} tokens, bos {}, eos {}",
        t["model"], t["pre"], t["tokens"], t["bos"], t["eos"]
    )?;
    writeln!(
        out,
        "pre-tokens  {}",
        t["pre_tokenizer"].as_str().unwrap_or_default()
    )?;
    let k = &summary["kernels"];
    writeln!(
        out,
        "kernels     {} on this CPU (paths here: {}; BITNET_ISA forces one)",
        k["cpu"].as_str().unwrap_or_default(),
        k["available"]
            .as_array()
            .map(|a| a
                .iter()
                .filter_map(|i| i.as_str())
                .collect::<Vec<_>>()
                .join(", "))
            .unwrap_or_default()
    )?;
    writeln!(
        out,
        "tensors     {} ({} bytes)",
        f.tensors().len(),
        summary["tensor_bytes"]
    )?;
    writeln!(
        out,
        "{:<32} {:>6} {:>20} {:>12} {:>12}",
        "name", "type", "dims", "bytes", "offset"
    )?;
    for t in f.tensors() {
        let dims = format!("{:?}", t.dims);
        writeln!(
            out,
            "{:<32} {:>6} {:>20} {:>12} {:>12}",
            t.name,
            t.ty.name(),
            dims,
            t.size,
            f.data_offset() + t.offset
        )?;
    }
    writeln!(out, "verdict     {verdict}")?;
    crate::output::print(&out)
}
