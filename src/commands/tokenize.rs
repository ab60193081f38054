//! `bitnet tokenize`: text → token ids with the model's own tokenizer (a GGUF with only tokenizer metadata works).

use std::path::PathBuf;

use anyhow::{bail, Result};

use crate::text_args::load_tokenizer;

/// Arguments of `bitnet tokenize`.
#[derive(clap::Args)]
pub struct Args {
    /// GGUF file whose tokenizer metadata is used (or a checkpoint directory with a tokenizer.json).
    #[arg(short, long, value_parser = crate::hub_args::model_path)]
    model: PathBuf,
    /// Text to tokenize.
    #[arg(short, long)]
    prompt: String,
    /// A tokenizer.json that overrides the file's tokenizer.
    #[arg(long)]
    tokenizer: Option<PathBuf>,
    /// Do not prepend the BOS token.
    #[arg(long)]
    no_bos: bool,
    /// Print a JSON array instead of one id per line.
    #[arg(long)]
    json: bool,
}

/// Prints the ids.
pub fn run(args: Args) -> Result<()> {
    if args.prompt.is_empty() {
        bail!("empty prompt: give the text to tokenize with -p");
    }
    let tok = load_tokenizer(&args.model, args.tokenizer.as_deref())?;
    let ids = tok.encode(&args.prompt, !args.no_bos)?;
    let text = if args.json {
        serde_json::to_string(&ids)?
    } else {
        ids.iter()
            .map(u32::to_string)
            .collect::<Vec<_>>()
            .join("\n")
    };
    crate::output::print(&text)
}
