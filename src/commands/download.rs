//! `bitnet download`: fetch a model from the Hugging Face Hub into the shared cache, verified, and print its path.

use anyhow::Result;
use bitnet_burn::io::hub::{files_to_fetch, Hub, HubFile, Verified};

use crate::hub_args::{byte_bar, show};
use crate::output::print;

/// Arguments of `bitnet download`.
#[derive(clap::Args)]
pub struct Args {
    /// Repository, `OWNER/NAME` (e.g. microsoft/bitnet-b1.58-2B-4T-gguf).
    repo: String,
    /// A file in the repository; without it, the repository's one GGUF file or the files a transformers checkpoint
    /// needs (config, safetensors weights, tokenizer).
    #[arg(long)]
    file: Option<String>,
    /// Branch, tag or commit.
    #[arg(long, default_value = "main")]
    revision: String,
}

/// Downloads (or finds in the cache) and prints the local path: the file, or the snapshot directory.
pub fn run(args: Args) -> Result<()> {
    let hub = Hub::from_env()?;
    let files = match &args.file {
        Some(f) => vec![f.clone()],
        None => files_to_fetch(&args.repo, &hub.list(&args.repo, &args.revision)?)?,
    };
    let mut last = None;
    for name in &files {
        let spec = HubFile {
            repo: args.repo.clone(),
            file: name.clone(),
            revision: args.revision.clone(),
        };
        let path = match hub.cached(&spec) {
            Some(path) => {
                eprintln!("{name}: already in the cache");
                path
            }
            None => {
                let bar = byte_bar(name);
                let got = hub.download(&spec, |p| show(&bar, p))?;
                bar.finish_and_clear();
                let check = match &got.verified {
                    Verified::Sha256(h) => format!("sha256 {h} verified"),
                    Verified::GitBlob(h) => format!("git blob id {h} verified"),
                    Verified::Unchecked => "no checksum published; not verified".into(),
                };
                eprintln!("{name}: {} bytes, {check}", got.size);
                got.path
            }
        };
        last = Some(path);
    }
    let path = match (files.len(), last) {
        (1, Some(p)) => p,
        (_, Some(p)) => p.parent().map(|d| d.to_path_buf()).unwrap_or(p),
        (_, None) => unreachable!("files_to_fetch returns at least one file"),
    };
    print(&path.display().to_string())
}
