//! `bitnet run-batch`: prompts from JSONL in, one JSON result per line out, with the model loaded once.
//!
//! Each input line is `{"prompt": "...", ...}` with optional `id`, `max_tokens`, `temp`, `top_k`, `top_p`,
//! `min_p`, `repeat_penalty`, `seed`, `stop` (string or list) overriding the command-line settings. A line that
//! fails (bad JSON, too long, empty with no BOS to start from) gives `{"id", "line", "error"}` and the batch goes
//! on; the exit status says whether any failed.

use std::io::{BufRead, BufWriter, Write};
use std::path::PathBuf;

use anyhow::{anyhow, Context, Result};
use bitnet_burn::text::generate::{generate, GenerateOptions};
use bitnet_burn::TernaryBackend;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::backend::BackendTask;
use crate::model_args::ModelArgs;
use crate::sampling_args::SamplingArgs;
use crate::text_args::TextArgs;

/// Arguments of `bitnet run-batch`.
#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    model: ModelArgs,
    #[command(flatten)]
    text: TextArgs,
    #[command(flatten)]
    sampling: SamplingArgs,
    /// JSONL prompts (`-` for stdin).
    #[arg(short, long)]
    input: PathBuf,
    /// Where to write the JSONL results (stdout if absent).
    #[arg(short, long)]
    output: Option<PathBuf>,
    /// Do not prepend BOS.
    #[arg(long)]
    no_bos: bool,
}

/// One input line.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Request {
    prompt: String,
    #[serde(default)]
    id: Value,
    max_tokens: Option<usize>,
    temp: Option<f32>,
    top_k: Option<usize>,
    top_p: Option<f32>,
    min_p: Option<f32>,
    repeat_penalty: Option<f32>,
    seed: Option<u64>,
    stop: Option<Stop>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Stop {
    One(String),
    Many(Vec<String>),
}

impl Request {
    fn options(self, base: &GenerateOptions) -> (String, Value, GenerateOptions) {
        let mut o = base.clone();
        let s = &mut o.sampler;
        o.max_new_tokens = self.max_tokens.unwrap_or(o.max_new_tokens);
        s.temperature = self.temp.unwrap_or(s.temperature);
        s.top_k = self.top_k.unwrap_or(s.top_k);
        s.top_p = self.top_p.unwrap_or(s.top_p);
        s.min_p = self.min_p.unwrap_or(s.min_p);
        s.repeat_penalty = self.repeat_penalty.unwrap_or(s.repeat_penalty);
        s.seed = self.seed.unwrap_or(s.seed);
        match self.stop {
            Some(Stop::One(stop)) => o.stop_strings = vec![stop],
            Some(Stop::Many(stops)) => o.stop_strings = stops,
            None => {}
        }
        (self.prompt, self.id, o)
    }
}

impl BackendTask for Args {
    type Output = Result<()>;
    fn run<B: TernaryBackend>(self, device: B::Device, backend: &'static str) -> Result<()> {
        let input: Box<dyn BufRead> = if self.input.as_os_str() == "-" {
            Box::new(std::io::stdin().lock())
        } else {
            Box::new(std::io::BufReader::new(
                std::fs::File::open(&self.input)
                    .with_context(|| format!("opening {}", self.input.display()))?,
            ))
        };
        let mut out: Box<dyn Write> = match &self.output {
            Some(path) => Box::new(BufWriter::new(
                std::fs::File::create(path)
                    .with_context(|| format!("creating {}", path.display()))?,
            )),
            None => Box::new(std::io::stdout().lock()),
        };
        let tokenizer = self.text.load_tokenizer(&self.model.model)?;
        let model = self.model.load::<B>(&device)?;
        let base = self.sampling.options(self.text.act(), !self.no_bos)?;
        let mut cache = model.new_cache(1, model.config.context_length);
        let (mut done, mut failed) = (0, 0);
        for (n, line) in input.lines().enumerate() {
            let line = line.with_context(|| format!("reading line {}", n + 1))?;
            if line.trim().is_empty() {
                continue;
            }
            let mut id = Value::Null;
            let result = serde_json::from_str::<Request>(&line)
                .map_err(|e| anyhow!("bad request: {e}"))
                .and_then(|req| {
                    let (prompt, req_id, opts) = req.options(&base);
                    id = req_id;
                    cache.reset();
                    Ok(generate(
                        &model,
                        &tokenizer,
                        &mut cache,
                        &prompt,
                        &opts,
                        |_| {},
                    )?)
                });
            let record = match result {
                Ok(g) => {
                    let mut r = super::run::report(&g, backend);
                    r["id"] = id;
                    r["line"] = json!(n + 1);
                    r
                }
                Err(e) => {
                    failed += 1;
                    json!({"id": id, "line": n + 1, "error": format!("{e:#}")})
                }
            };
            done += 1;
            writeln!(out, "{record}")?;
            out.flush()?;
        }
        anyhow::ensure!(failed == 0, "{failed} of {done} prompts failed");
        Ok(())
    }
}

/// Runs the command.
pub fn run(args: Args) -> Result<()> {
    args.model.clone().run(args)
}
