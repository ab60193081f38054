//! `bitnet bench`: prefill and decode tokens/s over repetitions, on fixed token ids; `--parallel` runs the
//! batched engine with several sequences at once.

use std::sync::Arc;
use std::time::Instant;

use anyhow::{ensure, Result};
use bitnet_burn::engine::{Engine, EngineConfig, Event, Finished, Request};
use bitnet_burn::text::sampling::{argmax, SamplerConfig};
use bitnet_burn::{ActQuant, BitNet, TernaryBackend};
use bitnet_kernels_cubecl::cpu::Isa;
use serde_json::json;
use tokio::sync::mpsc;

use crate::backend::{BackendKind, BackendTask};
use crate::model_args::ModelArgs;

/// Arguments of `bitnet bench`.
#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    model: ModelArgs,
    /// Prompt tokens processed in one prefill (pp).
    #[arg(short = 'p', long, default_value_t = 128)]
    prompt_tokens: usize,
    /// Tokens generated one at a time after the prefill (tg).
    #[arg(short = 'n', long, default_value_t = 64)]
    gen_tokens: usize,
    /// Tokens already in the context when the timed part starts (as llama-bench's `-d`, but filled once, untimed,
    /// and rewound to before every repetition): the speed a long conversation sees.
    #[arg(short = 'd', long, default_value_t = 0)]
    depth: usize,
    /// Repetitions (the mean and standard deviation are reported).
    #[arg(short, long, default_value_t = 3)]
    repetitions: usize,
    /// Concurrent sequences (comma-separated list): run the batched engine (`bitnet serve`'s) with this many
    /// requests of `-p` prompt and `-n` generated tokens at once, and report aggregate and per-stream decode
    /// speed for each, like llama-batched-bench's `-npl`.
    #[arg(long, value_delimiter = ',')]
    parallel: Vec<usize>,
    /// Skip the untimed run that comes before the repetitions (the prompt and one decoded token; with
    /// `--parallel`, one sequence), as llama-bench's `--no-warmup` does: the first run in a process also pays
    /// for first-touch page faults and for starting the worker threads.
    #[arg(long)]
    no_warmup: bool,
    /// Print one JSON object (one per `--parallel` level).
    #[arg(long)]
    json: bool,
}

fn mean_std(v: &[f64]) -> (f64, f64) {
    let mean = v.iter().sum::<f64>() / v.len() as f64;
    (
        mean,
        (v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / v.len() as f64).sqrt(),
    )
}

impl BackendTask for Args {
    type Output = Result<()>;
    fn run<B: TernaryBackend>(self, device: B::Device, backend: &'static str) -> Result<()> {
        ensure!(
            self.prompt_tokens > 0 && self.repetitions > 0,
            "-p and -r must be at least 1"
        );
        let loading = Instant::now();
        let model = self.model.load::<B>(&device)?;
        let load_s = loading.elapsed().as_secs_f64();
        let total = self.depth + self.prompt_tokens + self.gen_tokens;
        ensure!(
            total <= model.config.context_length,
            "-d {} + -p {} + -n {} = {total} tokens exceed the model's context of {}",
            self.depth,
            self.prompt_tokens,
            self.gen_tokens,
            model.config.context_length
        );
        let vocab = model.config.vocab_size as u64;
        let ids = |n: usize, from: u64| -> Vec<u32> {
            (from..from + n as u64)
                .map(|i| ((i * 7919 + 13) % vocab) as u32)
                .collect()
        };
        if !self.parallel.is_empty() {
            return self.parallel(model, backend, load_s, ids);
        }
        let (context, prompt) = (
            ids(self.depth, 0),
            ids(self.prompt_tokens, self.depth as u64),
        );
        // The context is filled once, untimed; each repetition rewinds the cache to it (llama-bench fills it
        // again for every repetition and its warm-up: minutes at `-d 4096`, for the same cache contents).
        let mut cache = model.new_cache(1, total);
        if !context.is_empty() {
            model.forward_last(std::slice::from_ref(&context), &mut cache, ActQuant::Int8)?;
        }
        // One repetition: the prompt and `gen` decoded tokens after the context, each timed (tokens/s).
        let mut repetition = |gen: usize| -> Result<(f64, f64)> {
            cache.truncate(self.depth);
            let start = Instant::now();
            let mut logits = model
                .forward_last(std::slice::from_ref(&prompt), &mut cache, ActQuant::Int8)?
                .into_data();
            let prefill = self.prompt_tokens as f64 / start.elapsed().as_secs_f64();
            let start = Instant::now();
            for _ in 0..gen {
                let next = argmax(
                    logits
                        .as_slice::<f32>()
                        .map_err(|e| anyhow::anyhow!("{e:?}"))?,
                );
                logits = model
                    .forward_last(&[vec![next]], &mut cache, ActQuant::Int8)?
                    .into_data();
            }
            Ok((prefill, gen as f64 / start.elapsed().as_secs_f64()))
        };
        if !self.no_warmup {
            repetition(self.gen_tokens.min(1))?;
        }
        let (mut prefill, mut decode) = (Vec::new(), Vec::new());
        for _ in 0..self.repetitions {
            let (pp, tg) = repetition(self.gen_tokens)?;
            prefill.push(pp);
            if self.gen_tokens > 0 {
                decode.push(tg);
            }
        }
        let ((pp, pp_sd), (tg, tg_sd)) = (
            mean_std(&prefill),
            if decode.is_empty() {
                (0.0, 0.0)
            } else {
                mean_std(&decode)
            },
        );
        let isa = self.isa();
        let cache = format!("{:?}", model.cache_type()).to_lowercase();
        let report = json!({
            "model": self.model.model.display().to_string(), "backend": backend, "isa": isa, "prefill_kernel": self.prefill_kernel(), "lookup_from": self.cpu_isa().map(super::info::lookup_from), "threads": self.model.threads(), "head": format!("{:?}", self.model.head).to_lowercase(), "cache": cache,
            "depth": self.depth, "prompt_tokens": self.prompt_tokens, "gen_tokens": self.gen_tokens, "repetitions": self.repetitions,
            "load_s": load_s, "prefill_tok_s": pp, "prefill_tok_s_std": pp_sd, "decode_tok_s": tg, "decode_tok_s_std": tg_sd,
        });
        if self.json {
            return crate::output::print(&report.to_string());
        }
        crate::output::print(&format!(
            "{} [{backend}{}, {} threads, {:?} head, {cache} cache, depth {}]\nload {load_s:.2} s\npp{} {:.1} ± {:.1} tok/s\ntg{} {:.1} ± {:.1} tok/s ({} repetitions)",
            self.model.model.display(),
            isa.zip(self.prefill_kernel())
                .map(|(i, k)| format!(", {i}, prefill by {k}"))
                .unwrap_or_default(),
            self.model.threads(),
            self.model.head,
            self.depth,
            self.prompt_tokens,
            pp,
            pp_sd,
            self.gen_tokens,
            tg,
            tg_sd,
            self.repetitions
        ))
    }
}

impl Args {
    /// The CPU kernels' instruction set (what `BITNET_ISA` forces); GPU backends run CubeCL kernels.
    fn isa(&self) -> Option<&'static str> {
        self.cpu_isa().map(Isa::name)
    }

    /// The CPU's prefill kernel on that instruction set (table lookup or multiply-add tiles).
    fn prefill_kernel(&self) -> Option<&'static str> {
        self.cpu_isa().map(Isa::prefill_kernel)
    }

    fn cpu_isa(&self) -> Option<Isa> {
        (self.model.backend == BackendKind::Cpu).then(Isa::detect)
    }

    /// `--parallel`: each level's requests submitted together to one engine, levels alternating per repetition.
    fn parallel<B: TernaryBackend>(
        &self,
        model: BitNet<B>,
        backend: &str,
        load_s: f64,
        ids: impl Fn(usize, u64) -> Vec<u32>,
    ) -> Result<()> {
        ensure!(
            self.depth == 0 && self.gen_tokens >= 2,
            "--parallel runs -p then -n (at least 2) tokens per sequence, without -d"
        );
        ensure!(
            self.parallel.iter().all(|&p| (1..=256).contains(&p)),
            "--parallel levels must be 1 to 256"
        );
        let tokenizer = Arc::new(crate::text_args::load_tokenizer(&self.model.model, None)?);
        let config = EngineConfig {
            slots: self.parallel.iter().copied().max().unwrap_or(1),
            ctx: self.prompt_tokens + self.gen_tokens + 1,
            chunk: self.prompt_tokens,
            // every prompt runs whole: nothing to keep
            prompt_cache: Some(0),
            ..Default::default()
        };
        let engine = Engine::start(model, tokenizer, config);
        // Run `run` (its prompts distinct from every other run's): `p` requests at once, (prefill, decode) tok/s.
        let batch = |run: usize, p: usize| -> Result<(f64, f64)> {
            let receivers = (0..p)
                .map(|i| {
                    let (events, rx) = mpsc::unbounded_channel();
                    // Distinct prompts, run whole (no slot's cache is reused even where two start alike).
                    let from = ((run * 256 + i) * self.prompt_tokens) as u64;
                    engine.submit(Request {
                        prompt: ids(self.prompt_tokens, from),
                        max_new_tokens: self.gen_tokens,
                        sampler: SamplerConfig::default(),
                        stop_strings: Vec::new(),
                        ignore_eos: true,
                        cache_prompt: false,
                        logprobs: None,
                        score_prompt: false,
                        events,
                    })?;
                    Ok(rx)
                })
                .collect::<Result<Vec<_>>>()?;
            let done = receivers
                .into_iter()
                .map(finished)
                .collect::<Result<Vec<_>>>()?;
            // All prompts run in the first step and every sequence decodes in the same steps after it.
            let first = done.iter().map(|f| f.first_token).max().unwrap_or_default();
            let end = done.iter().map(|f| f.elapsed).max().unwrap_or_default();
            let prefill = (p * self.prompt_tokens) as f64 / first.as_secs_f64();
            let decode = (p * (self.gen_tokens - 1)) as f64 / (end - first).as_secs_f64();
            Ok((prefill, decode))
        };
        let timed = self.repetitions * self.parallel.len();
        if !self.no_warmup {
            batch(timed, 1)?;
        }
        let mut runs: Vec<Vec<(f64, f64)>> = vec![Vec::new(); self.parallel.len()];
        for rep in 0..self.repetitions {
            for (level, &p) in self.parallel.iter().enumerate() {
                runs[level].push(batch(rep * self.parallel.len() + level, p)?);
            }
        }
        let isa = self.isa();
        for (&p, runs) in self.parallel.iter().zip(&runs) {
            let (pp, _) = mean_std(&runs.iter().map(|r| r.0).collect::<Vec<_>>());
            let (tg, tg_sd) = mean_std(&runs.iter().map(|r| r.1).collect::<Vec<_>>());
            let report = json!({
                "model": self.model.model.display().to_string(), "backend": backend, "isa": isa, "threads": self.model.threads(),
                "parallel": p, "prompt_tokens": self.prompt_tokens, "gen_tokens": self.gen_tokens, "repetitions": self.repetitions,
                "load_s": load_s, "prefill_tok_s": pp, "decode_tok_s": tg, "decode_tok_s_std": tg_sd, "decode_tok_s_per_stream": tg / p as f64,
            });
            crate::output::print(&if self.json {
                report.to_string()
            } else {
                format!(
                    "parallel {p}: pp{} {pp:.1} tok/s, tg{} {tg:.1} ± {tg_sd:.1} tok/s aggregate, {:.1} per stream",
                    self.prompt_tokens,
                    self.gen_tokens,
                    tg / p as f64
                )
            })?;
        }
        Ok(())
    }
}

/// Waits for a request's report.
fn finished(mut rx: mpsc::UnboundedReceiver<Event>) -> Result<Finished> {
    loop {
        match rx.blocking_recv() {
            Some(Event::Text(_) | Event::Logprob(_) | Event::PromptLogprob(_)) => {}
            Some(Event::Done(f)) => return Ok(f),
            Some(Event::Failed(e)) => anyhow::bail!("{e}"),
            None => anyhow::bail!("the engine stopped"),
        }
    }
}

/// Runs the command.
pub fn run(args: Args) -> Result<()> {
    args.model.clone().run(args)
}
