//! Continue a prompt with a BitNet b1.58 GGUF on the backend picked by cargo feature (a type parameter):
//!
//! `cargo run --release --example infer [--features wgpu|cuda] -- --model FILE --prompt "..."`
use std::io::Write;

use anyhow::Result;
use bitnet_burn::text::generate::{generate, GenerateOptions};
use bitnet_burn::text::sampling::SamplerConfig;
use bitnet_burn::{load, text::tokenizer::Tokenizer};
use clap::Parser;

mod common;
use common::{Backend, DEFAULT_MODEL};

#[derive(Parser)]
struct Args {
    /// GGUF model (default: the Shakespeare model shipped in models/).
    #[arg(long, default_value = DEFAULT_MODEL)]
    model: String,
    #[arg(long, default_value = "ROMEO:")]
    prompt: String,
    #[arg(short = 'n', long, default_value_t = 64)]
    max_tokens: usize,
    /// Sampling temperature (0: greedy; this small model loops when greedy).
    #[arg(long, default_value_t = 0.8)]
    temp: f32,
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

fn main() -> Result<()> {
    let args = Args::parse();
    let device = Default::default();
    let model = load::<Backend>(&args.model, &device)?;
    let tokenizer = Tokenizer::from_gguf(&bitnet_gguf::GgufFile::open(&args.model)?)?;
    let mut cache = model.new_cache(1, model.config.context_length);
    let opts = GenerateOptions {
        max_new_tokens: args.max_tokens,
        sampler: SamplerConfig {
            temperature: args.temp,
            top_k: 40,
            seed: args.seed,
            ..Default::default()
        },
        ..Default::default()
    };
    print!("{}", args.prompt);
    let g = generate(
        &model,
        &tokenizer,
        &mut cache,
        &args.prompt,
        &opts,
        |text| {
            print!("{text}");
            let _ = std::io::stdout().flush();
        },
    )?;
    let t = &g.timings;
    eprintln!(
        "\nprefill {:.1} tok/s, decode {:.1} tok/s ({:?})",
        t.prefill_tok_s(),
        t.decode_tok_s(),
        g.stop
    );
    Ok(())
}
