//! `bitnet run`: continue one prompt, streaming the text, then report prefill and decode speed.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Result;
use bitnet_burn::generate::{generate, GenerateOptions};
use bitnet_burn::sampling::SamplerConfig;
use bitnet_burn::{ActQuant, TernaryBackend};
use serde_json::json;

use crate::backend::BackendTask;
use crate::commands::tokenize::load_tokenizer;
use crate::model_args::ModelArgs;

/// Arguments of `bitnet run`.
#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    model: ModelArgs,
    /// The prompt.
    #[arg(short, long)]
    prompt: String,
    /// Most tokens to generate.
    #[arg(short = 'n', long, default_value_t = 128)]
    max_tokens: usize,
    /// Sampling temperature (0: greedy).
    #[arg(long, default_value_t = 0.0)]
    temp: f32,
    /// Keep the k most likely tokens (0: all).
    #[arg(long, default_value_t = 0)]
    top_k: usize,
    /// Nucleus sampling threshold (1: off).
    #[arg(long, default_value_t = 1.0)]
    top_p: f32,
    /// Drop tokens below this fraction of the best one's probability.
    #[arg(long, default_value_t = 0.0)]
    min_p: f32,
    /// Penalty for recently generated tokens (1: off).
    #[arg(long, default_value_t = 1.0)]
    repeat_penalty: f32,
    /// Random seed.
    #[arg(short, long, default_value_t = 0)]
    seed: u64,
    /// Stop when this text appears (repeatable).
    #[arg(long)]
    stop: Vec<String>,
    /// A tokenizer.json that overrides the model's tokenizer.
    #[arg(long)]
    tokenizer: Option<PathBuf>,
    /// Do not prepend BOS.
    #[arg(long)]
    no_bos: bool,
    /// Float activations instead of BitNet's int8.
    #[arg(long)]
    float_activations: bool,
    /// Print one JSON object (text, ids, timings) instead of streaming.
    #[arg(long)]
    json: bool,
}

impl BackendTask for Args {
    type Output = ();
    fn run<B: TernaryBackend>(self, device: B::Device, backend: &'static str) -> Result<()> {
        let tokenizer = load_tokenizer(&self.model.model, self.tokenizer.as_ref())?;
        let model = self.model.load::<B>(&device)?;
        let opts = GenerateOptions {
            max_new_tokens: self.max_tokens,
            act: if self.float_activations {
                ActQuant::Float
            } else {
                ActQuant::Int8
            },
            sampler: SamplerConfig {
                temperature: self.temp,
                top_k: self.top_k,
                top_p: self.top_p,
                min_p: self.min_p,
                repeat_penalty: self.repeat_penalty,
                seed: self.seed,
                ..Default::default()
            },
            stop_strings: self.stop.clone(),
            bos: !self.no_bos,
        };
        let mut cache = model.new_cache(1, model.config.context_length);
        let mut stdout = std::io::stdout().lock();
        let json = self.json;
        let g = generate(
            &model,
            &tokenizer,
            &mut cache,
            &self.prompt,
            &opts,
            |piece| {
                if !json {
                    let _ = stdout
                        .write_all(piece.as_bytes())
                        .and_then(|_| stdout.flush());
                }
            },
        )?;
        drop(stdout);
        let t = &g.timings;
        if json {
            let out = json!({
                "text": g.text, "prompt_ids": g.prompt_ids, "ids": g.ids, "stop": format!("{:?}", g.stop), "backend": backend,
                "prompt_tokens": t.prompt_tokens, "generated_tokens": t.generated_tokens,
                "tokenize_ms": t.tokenize.as_secs_f64() * 1e3, "prefill_ms": t.prefill.as_secs_f64() * 1e3, "decode_ms": t.decode.as_secs_f64() * 1e3,
                "prefill_tok_s": t.prefill_tok_s(), "decode_tok_s": t.decode_tok_s(),
            });
            return crate::output::print(&out.to_string());
        }
        println!();
        eprintln!(
            "[{backend}] prompt {} tokens, prefill {:.1} tok/s; generated {} tokens, decode {:.1} tok/s; stop: {:?}",
            t.prompt_tokens,
            t.prefill_tok_s(),
            t.generated_tokens,
            t.decode_tok_s(),
            g.stop
        );
        Ok(())
    }
}

/// Runs the command.
pub fn run(args: Args) -> Result<()> {
    args.model.clone().run(args)
}
