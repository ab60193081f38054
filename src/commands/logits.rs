//! `bitnet logits`: run token ids through a model and save the logits as a float32 .npy.

use std::path::PathBuf;

use anyhow::{Context, Result};
use bitnet_burn::TernaryBackend;
use npyz::WriterBuilder;

use crate::backend::BackendTask;
use crate::model_args::ModelArgs;
use crate::text_args::ActArgs;

/// Arguments of `bitnet logits`.
#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    model: ModelArgs,
    /// Comma-separated token ids.
    #[arg(long, value_delimiter = ',', required = true)]
    tokens: Vec<u32>,
    /// Save every position's logits, not only the last.
    #[arg(long)]
    all_positions: bool,
    #[command(flatten)]
    act: ActArgs,
    /// Output .npy file.
    #[arg(short, long)]
    output: PathBuf,
}

impl BackendTask for Args {
    type Output = Result<()>;
    fn run<B: TernaryBackend>(self, device: B::Device, _backend: &'static str) -> Result<()> {
        let model = self.model.load::<B>(&device)?;
        let act = self.act.act();
        let values = model.sequence_logits(&self.tokens, act)?;
        let vocab = model.config.vocab_size;
        let rows = if self.all_positions {
            self.tokens.len()
        } else {
            1
        };
        let start = values.len() - rows * vocab;
        let file = std::fs::File::create(&self.output)
            .with_context(|| format!("creating {}", self.output.display()))?;
        let mut w = npyz::WriteOptions::new()
            .default_dtype()
            .shape(&[rows as u64, vocab as u64])
            .writer(std::io::BufWriter::new(file))
            .begin_nd()?;
        w.extend(values[start..].iter().copied())?;
        w.finish()?;
        Ok(())
    }
}

/// Runs the command.
pub fn run(args: Args) -> Result<()> {
    args.model.clone().run(args)
}
