//! `bitnet compat-check`: can this file run here, and if not, why. Size and SHA-256 against the published-file
//! table, GGUF structure, architecture and config, tokenizer, chat template, then a real load and one forward pass
//! on the chosen backend.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Result};
use bitnet_burn::io::known_files::{known_by_size, sha256_file};
use bitnet_burn::{load, ActQuant, TernaryBackend};
use bitnet_gguf::{GgufFile, ModelConfig};
use serde_json::json;

use crate::backend::{dispatch, BackendKind, BackendTask};
use crate::text_args::{load_chat_template, load_tokenizer};

/// Arguments of `bitnet compat-check`.
#[derive(clap::Args)]
pub struct Args {
    /// A GGUF file, a transformers checkpoint directory, or a Hub file `hf:OWNER/NAME/FILE`.
    #[arg(value_parser = crate::hub_args::model_path)]
    model: PathBuf,
    /// Backend to load it on: cpu, wgpu (built with `--features wgpu`) or cuda (`--features cuda`).
    #[arg(long, value_parser = crate::backend::parse, default_value = "cpu")]
    backend: BackendKind,
    /// Skip loading the weights (structure and metadata only).
    #[arg(long)]
    no_load: bool,
    /// Compute the SHA-256 even when the size matches no published file.
    #[arg(long)]
    sha256: bool,
    /// Print one JSON object.
    #[arg(long)]
    json: bool,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Status {
    Ok,
    Warn,
    Fail,
    Skip,
}

impl Status {
    fn name(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Warn => "warn",
            Status::Fail => "FAIL",
            Status::Skip => "skip",
        }
    }
}

struct Report(Vec<(&'static str, Status, String)>);

impl Report {
    fn add(&mut self, check: &'static str, status: Status, detail: impl Into<String>) {
        self.0.push((check, status, detail.into()));
    }

    fn failed(&self) -> bool {
        self.0.iter().any(|c| c.1 == Status::Fail)
    }
}

/// Loads the model and runs one token through it.
struct LoadAndRun<'a>(&'a Path);

impl BackendTask for LoadAndRun<'_> {
    type Output = Result<String>;
    fn run<B: TernaryBackend>(self, device: B::Device, backend: &'static str) -> Result<String> {
        let start = Instant::now();
        let model = load::<B>(self.0, &device)?;
        let loaded = start.elapsed();
        let mut cache = model.new_cache(1, 1);
        let logits: Vec<f32> = model
            .forward_last(&[vec![0]], &mut cache, ActQuant::Int8)?
            .into_data()
            .convert::<f32>()
            .to_vec()
            .map_err(|e| anyhow::anyhow!("{e:?}"))?;
        if let Some(bad) = logits.iter().position(|v| !v.is_finite()) {
            bail!("logit {bad} of token 0 is {}", logits[bad]);
        }
        Ok(format!(
            "loaded on {backend} in {:.1} s; one forward pass gives {} finite logits",
            loaded.as_secs_f64(),
            logits.len()
        ))
    }
}

fn check_file(args: &Args, r: &mut Report) {
    let size = match std::fs::metadata(&args.model) {
        Ok(m) if m.is_file() => m.len(),
        Ok(_) => return r.add("published file", Status::Skip, "a directory"),
        Err(e) => return r.add("published file", Status::Fail, format!("cannot read: {e}")),
    };
    let known: Vec<_> = known_by_size(size).collect();
    if known.is_empty() && !args.sha256 {
        return r.add(
            "published file",
            Status::Skip,
            format!("{size} bytes: no published file has this size (--sha256 to hash it anyway)"),
        );
    }
    let hash = match sha256_file(&args.model) {
        Ok(h) => h,
        Err(e) => return r.add("published file", Status::Fail, format!("reading: {e}")),
    };
    match known.iter().find(|k| k.sha256 == hash) {
        Some(k) => r.add(
            "published file",
            Status::Ok,
            format!("{}/{} (sha256 {hash})", k.repo, k.file),
        ),
        None if known.is_empty() => r.add(
            "published file",
            Status::Skip,
            format!("sha256 {hash}: not in the table"),
        ),
        None => r.add(
            "published file",
            Status::Fail,
            format!(
                "the size of {}/{} but sha256 {hash}, expected {}: the file is corrupt or modified",
                known[0].repo, known[0].file, known[0].sha256
            ),
        ),
    }
}

fn check_gguf(path: &Path, r: &mut Report) {
    let f = match GgufFile::open(path) {
        Ok(f) => f,
        Err(e) => return r.add("gguf", Status::Fail, e.to_string()),
    };
    let mut types = BTreeMap::new();
    for t in f.tensors() {
        *types.entry(t.ty.name()).or_insert(0) += 1;
    }
    let types: Vec<String> = types.iter().map(|(t, n)| format!("{n} {t}")).collect();
    r.add(
        "gguf",
        Status::Ok,
        format!(
            "v{}, {} tensors ({}), every offset and size checked",
            f.version(),
            f.tensors().len(),
            types.join(", ")
        ),
    );
    match ModelConfig::from_gguf(&f) {
        Ok(c) => r.add(
            "architecture",
            Status::Ok,
            format!(
                "{} ({} graph): hidden {}, {} layers, {}/{} heads, ffn {}, vocab {}, {} activation",
                c.architecture,
                c.family(),
                c.hidden_size,
                c.n_layers,
                c.n_heads,
                c.n_kv_heads,
                c.ffn_size,
                c.vocab_size,
                c.activation.name()
            ),
        ),
        Err(e) => r.add("architecture", Status::Fail, e.kind.to_string()),
    }
}

fn check_text(path: &Path, r: &mut Report) {
    match load_tokenizer(path, None) {
        Ok(t) => {
            r.add(
                "tokenizer",
                Status::Ok,
                format!("{} tokens, {}", t.vocab_size(), t.pre_tokenizer()),
            );
            match load_chat_template(path, None, &t) {
                Ok(c) => r.add("chat template", Status::Ok, c.origin().to_string()),
                Err(e) => r.add(
                    "chat template",
                    Status::Warn,
                    format!("{e:#} (`chat --chat-template FILE` overrides it)"),
                ),
            }
        }
        Err(e) => r.add(
            "tokenizer",
            Status::Warn,
            format!("{e:#} (text commands need --tokenizer tokenizer.json)"),
        ),
    }
}

/// Runs the checks; exits non-zero when one fails.
pub fn run(args: Args) -> Result<()> {
    let mut r = Report(Vec::new());
    check_file(&args, &mut r);
    if args.model.is_dir() {
        r.add("format", Status::Ok, "transformers checkpoint directory");
    } else if args.model.exists() {
        check_gguf(&args.model, &mut r);
    }
    if !r.failed() {
        check_text(&args.model, &mut r);
    }
    if args.no_load {
        r.add("load", Status::Skip, "--no-load");
    } else if r.failed() {
        r.add("load", Status::Skip, "an earlier check failed");
    } else {
        match dispatch(args.backend, LoadAndRun(&args.model)) {
            Ok(detail) => r.add("load", Status::Ok, detail),
            Err(e) => r.add("load", Status::Fail, format!("{e:#}")),
        }
    }
    let verdict = if r.failed() { "cannot run" } else { "can run" };
    let text = if args.json {
        let checks: Vec<_> =
            r.0.iter()
                .map(|(c, s, d)| json!({"check": c, "status": s.name(), "detail": d}))
                .collect();
        json!({"file": args.model.display().to_string(), "verdict": verdict, "checks": checks})
            .to_string()
    } else {
        let mut lines: Vec<String> =
            r.0.iter()
                .map(|(c, s, d)| format!("{:<4} {c:<15} {d}", s.name()))
                .collect();
        lines.push(format!("{}: {verdict}", args.model.display()));
        lines.join("\n")
    };
    crate::output::print(&text)?;
    if r.failed() {
        bail!("{}: {verdict}", args.model.display());
    }
    Ok(())
}
