//! `bitnet run`: continue one prompt, streaming the text, then report prefill and decode speed.

use std::io::Write;

use anyhow::Result;
use bitnet_burn::text::generate::{generate, Generation};
use bitnet_burn::TernaryBackend;
use serde_json::{json, Value};

use crate::backend::BackendTask;
use crate::model_args::ModelArgs;
use crate::sampling_args::SamplingArgs;
use crate::text_args::TextArgs;

/// Arguments of `bitnet run`.
#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    model: ModelArgs,
    #[command(flatten)]
    text: TextArgs,
    #[command(flatten)]
    sampling: SamplingArgs,
    /// The prompt.
    #[arg(short, long)]
    prompt: String,
    /// Do not prepend BOS.
    #[arg(long)]
    no_bos: bool,
    /// Print one JSON object (text, ids, timings) instead of streaming.
    #[arg(long)]
    json: bool,
}

/// The JSON report of one generation (shared with `run-batch`).
pub fn report(g: &Generation, backend: &str) -> Value {
    let t = &g.timings;
    json!({
        "text": g.text, "prompt_ids": g.prompt_ids, "ids": g.ids, "stop": format!("{:?}", g.stop), "backend": backend,
        "prompt_tokens": t.prompt_tokens, "generated_tokens": t.generated_tokens,
        "tokenize_ms": t.tokenize.as_secs_f64() * 1e3, "prefill_ms": t.prefill.as_secs_f64() * 1e3, "decode_ms": t.decode.as_secs_f64() * 1e3,
        "prefill_tok_s": t.prefill_tok_s(), "decode_tok_s": t.decode_tok_s(),
    })
}

/// The one-line speed summary printed on stderr after streamed text.
pub fn summary(g: &Generation, backend: &str) -> String {
    let t = &g.timings;
    format!(
        "[{backend}] prompt {} tokens, prefill {:.1} tok/s; generated {} tokens, decode {:.1} tok/s; stop: {:?}",
        t.prompt_tokens,
        t.prefill_tok_s(),
        t.generated_tokens,
        t.decode_tok_s(),
        g.stop
    )
}

impl BackendTask for Args {
    type Output = Result<()>;
    fn run<B: TernaryBackend>(self, device: B::Device, backend: &'static str) -> Result<()> {
        let tokenizer = self.text.load_tokenizer(&self.model.model)?;
        let model = self.model.load::<B>(&device)?;
        let opts = self.sampling.options(self.text.act(), !self.no_bos)?;
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
        if json {
            return crate::output::print(&report(&g, backend).to_string());
        }
        println!();
        eprintln!("{}", summary(&g, backend));
        Ok(())
    }
}

/// Runs the command.
pub fn run(args: Args) -> Result<()> {
    args.model.clone().run(args)
}
