//! `bitnet serve`: an OpenAI-compatible HTTP server over the batched engine (see `src/serve`).

use std::future::IntoFuture;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result};
use bitnet_burn::engine::{Engine, EngineConfig, PROMPT_CACHE_BYTES};
use bitnet_burn::TernaryBackend;

use crate::backend::BackendTask;
use crate::model_args::ModelArgs;
use crate::serve::{log_line, log_requests, router, AppState, Ready};
use crate::text_args::{load_chat_template, TextArgs};

/// Arguments of `bitnet serve` (spelled as llama-server's where the concept is the same).
#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    model: ModelArgs,
    #[command(flatten)]
    text: TextArgs,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// Port to listen on (0: any free port; the address is printed).
    #[arg(long, default_value_t = 8080)]
    port: u16,
    /// Sequences decoded together, each in its own KV-cache slot (`-np` works too).
    #[arg(long = "parallel", default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=256))]
    parallel: u16,
    /// Positions per slot, prompt and reply (capped at the model's context).
    #[arg(short = 'c', long = "ctx-size", default_value_t = 4096)]
    ctx_size: usize,
    /// Most prompt tokens of one request run per step, so a long prompt does not stall running streams for
    /// longer than one chunk (`-ub` works too).
    #[arg(long = "ubatch-size", default_value_t = 128)]
    ubatch_size: usize,
    /// Most MiB of prompts kept after their slot moves on, copied back when a request continues one instead of
    /// run again (-1: no limit, 0: keep none; `-cram` works too). Smaller than llama-server's 8192 because BitNet
    /// runs on small machines: 2048 MiB hold about 28,000 positions of 2B-4T's f16 cache. Kept where the KV cache
    /// lives (on a GPU backend, in its memory).
    #[arg(long = "cache-ram", default_value_t = (PROMPT_CACHE_BYTES >> 20) as i64, allow_negative_numbers = true,
          value_parser = clap::value_parser!(i64).range(-1..))]
    cache_ram: i64,
    /// Requests that may wait for a slot; beyond that the server answers 503 with Retry-After.
    #[arg(long, default_value_t = 64)]
    queue: usize,
    /// The model name reported and accepted in requests (default: the file's stem).
    #[arg(long)]
    alias: Option<String>,
    /// Require `Authorization: Bearer KEY` on every endpoint but /health and /v1/models.
    #[arg(long, env = "BITNET_API_KEY", hide_env_values = true)]
    api_key: Option<String>,
    /// Serve Prometheus metrics at /metrics.
    #[arg(long)]
    metrics: bool,
    /// A Jinja chat template file overriding the model's.
    #[arg(long)]
    chat_template: Option<PathBuf>,
    /// Serve no chat page at `/` (the API alone).
    #[arg(long)]
    no_webui: bool,
    /// Log no line per request and per reply (startup and errors are still logged).
    #[arg(long)]
    log_disable: bool,
}

/// llama-server's two-letter short flags, which clap cannot declare, as their long forms.
pub fn long_flags(args: impl Iterator<Item = String>) -> Vec<String> {
    let args: Vec<String> = args.collect();
    if args.get(1).map(String::as_str) != Some("serve") {
        return args;
    }
    args.into_iter()
        .map(|a| match a.as_str() {
            "-np" => "--parallel".into(),
            "-ub" => "--ubatch-size".into(),
            "-cram" => "--cache-ram".into(),
            _ => a,
        })
        .collect()
}

impl BackendTask for Args {
    type Output = Result<()>;
    fn run<B: TernaryBackend>(self, device: B::Device, backend: &'static str) -> Result<()> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .context("starting the async runtime")?;
        let state = Arc::new(AppState::new(self.api_key.clone(), self.metrics));
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind((
                self.host.as_str(),
                self.port,
            )))
            .with_context(|| format!("listening on {}:{}", self.host, self.port))?;
        let addr: SocketAddr = listener.local_addr()?;
        log_requests(!self.log_disable);
        let app = router(state.clone(), !self.no_webui);
        let server = axum::serve(listener, app).with_graceful_shutdown(stop_signal());
        let server = runtime.spawn(server.into_future());
        log_line(format!(
            "listening on http://{addr} (loading the model; /health answers 503 until it is ready)"
        ));

        let path = &self.model.model;
        let tokenizer = Arc::new(self.text.load_tokenizer(path)?);
        let template = load_chat_template(path, self.chat_template.as_deref(), &tokenizer)?;
        let model = self.model.load::<B>(&device)?;
        let stem = path.file_stem().map(|s| s.to_string_lossy().into_owned());
        let names: Vec<String> = [
            self.alias.clone(),
            stem,
            path.file_name().map(|s| s.to_string_lossy().into_owned()),
            Some(path.display().to_string()),
        ]
        .into_iter()
        .flatten()
        .collect();
        let config = EngineConfig {
            slots: self.parallel.into(),
            ctx: self.ctx_size,
            queue: self.queue,
            chunk: self.ubatch_size,
            act: self.text.act(),
            prompt_cache: usize::try_from(self.cache_ram)
                .ok()
                .map(|mib| mib.saturating_mul(1 << 20)),
        };
        let engine = Engine::start(model, tokenizer.clone(), config);
        let c = engine.config();
        let mut ready = format!(
            "ready: {} on {backend}, {} threads, {} slots of {} positions, chat template {}",
            names[0],
            self.model.threads(),
            c.slots,
            c.ctx,
            template.origin()
        );
        if !self.no_webui {
            ready += &format!("; chat page at http://{addr}/");
        }
        state.set_ready(Ready {
            engine,
            tokenizer,
            template,
            names,
        });
        log_line(ready);
        runtime.block_on(server)?.context("serving")?;
        log_line("stopped: every reply was finished".into());
        Ok(())
    }
}

/// Resolves at the first SIGINT or SIGTERM (Ctrl+C, or a container or service manager stopping the server): the
/// listener closes and the replies being written are finished before the process exits, so a replica taken out
/// of a load balancer drops no stream. A second signal exits at once.
async fn stop_signal() {
    signal().await;
    log_line(
        "stopping: no new connections; finishing the replies being written (signal again to stop now)".into(),
    );
    tokio::spawn(async {
        signal().await;
        log_line("stopped at once: replies being written were cut".into());
        std::process::exit(130);
    });
}

/// The next SIGINT or SIGTERM.
async fn signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate()).expect("installing the SIGTERM handler");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
}

/// Runs the command.
pub fn run(args: Args) -> Result<()> {
    args.model.clone().run(args)
}
