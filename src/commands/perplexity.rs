//! `bitnet perplexity`: perplexity of a model on a text file, windowed like llama.cpp's `llama-perplexity`.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use bitnet_burn::text::perplexity::perplexity;
use bitnet_burn::TernaryBackend;
use serde_json::json;

use crate::backend::BackendTask;
use crate::model_args::ModelArgs;
use crate::text_args::TextArgs;

/// Arguments of `bitnet perplexity`.
#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    model: ModelArgs,
    #[command(flatten)]
    text: TextArgs,
    /// Text file to score.
    #[arg(short, long)]
    file: PathBuf,
    /// Tokens per window (each window scores its second half).
    #[arg(short, long, default_value_t = 512)]
    ctx: usize,
    /// Print one JSON object.
    #[arg(long)]
    json: bool,
}

impl BackendTask for Args {
    type Output = Result<()>;
    fn run<B: TernaryBackend>(self, device: B::Device, backend: &'static str) -> Result<()> {
        let text = std::fs::read_to_string(&self.file)
            .with_context(|| format!("reading {}", self.file.display()))?;
        let tokenizer = self.text.load_tokenizer(&self.model.model)?;
        // Tokenized with BOS first where the model adds one, as llama-perplexity does: its windows start at the
        // same tokens (without it every window would be shifted by one).
        let tokens = tokenizer.encode(&text, true)?;
        if tokens.len() < self.ctx || self.ctx < 4 {
            bail!(
                "{} holds {} tokens: need at least one window of --ctx {} (and --ctx ≥ 4)",
                self.file.display(),
                tokens.len(),
                self.ctx
            );
        }
        let model = self.model.load::<B>(&device)?;
        let p = perplexity(
            &model,
            &tokens,
            self.ctx,
            // BOS opens each window only where the tokenizer adds one, as llama-perplexity decides.
            tokenizer.bos_id().filter(|_| tokenizer.adds_bos()),
            self.text.act(),
        )?;
        let report = json!({
            "model": self.model.model.display().to_string(), "file": self.file.display().to_string(),
            "backend": backend, "head": format!("{:?}", self.model.head).to_lowercase(), "ctx": self.ctx,
            "windows": p.windows, "scored_tokens": p.scored, "nll": p.nll, "ppl": p.ppl,
        });
        if self.json {
            return crate::output::print(&report.to_string());
        }
        crate::output::print(&format!(
            "perplexity {:.4} (nll {:.5} nats/token) over {} tokens in {} windows of {}",
            p.ppl, p.nll, p.scored, p.windows, self.ctx
        ))
    }
}

/// Runs the command.
pub fn run(args: Args) -> Result<()> {
    args.model.clone().run(args)
}
