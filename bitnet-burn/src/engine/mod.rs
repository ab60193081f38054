//! A batched decode engine: many sequences share each pass over the weights (continuous batching).
//!
//! Requests go into a bounded queue; a scheduler thread owns the model and a fixed set of KV-cache
//! [slots](slots::Slots). Each step it runs one token of every decoding sequence and the next chunk of every
//! waiting prompt as one [`BitNet::forward_sequences`] call, samples each sequence's next token, and streams the
//! text as [`Event`]s. A finished or abandoned sequence frees its slot at once; a new request starts from the
//! longest prefix of its prompt held in a slot or in the prompt cache, where slots keep what they move on from
//! (the previous turn of the same chat, a shared system prompt). On the integer paths a request's tokens do not
//! depend on what else is running.

mod prompt_cache;
mod scheduler;
mod slots;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bitnet_kernels_cubecl::TernaryBackend;
use tokio::sync::mpsc;

use crate::nn::{ActQuant, BitNet};
use crate::text::generate::StopReason;
use crate::text::logprobs::TokenLogprob;
use crate::text::sampling::SamplerConfig;
use crate::text::tokenizer::Tokenizer;

/// How the engine is sized.
#[derive(Clone, Debug)]
pub struct EngineConfig {
    /// Sequences decoded together (KV-cache slots).
    pub slots: usize,
    /// Positions per slot (capped at the model's context).
    pub ctx: usize,
    /// Requests that may wait for a slot before [`Engine::submit`] refuses more.
    pub queue: usize,
    /// Most prompt tokens of one sequence per step, so a long prompt does not stall the running streams for
    /// longer than one chunk takes.
    pub chunk: usize,
    /// Activation quantization.
    pub act: ActQuant,
    /// Most bytes of prompts kept after their slot moves on, to be copied back when a request continues one
    /// (llama-server's `--cache-ram`); `None` for no limit, `Some(0)` to keep none.
    pub prompt_cache: Option<usize>,
}

/// The default [`EngineConfig::prompt_cache`]: 2 GiB, about 28,000 positions of 2B-4T's f16 cache.
pub const PROMPT_CACHE_BYTES: usize = 2 << 30;

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            slots: 4,
            ctx: 4096,
            queue: 64,
            chunk: 128,
            act: ActQuant::Int8,
            prompt_cache: Some(PROMPT_CACHE_BYTES),
        }
    }
}

/// One generation request.
#[derive(Debug)]
pub struct Request {
    /// Prompt token ids (as fed: BOS and chat template already applied).
    pub prompt: Vec<u32>,
    /// Most tokens to generate.
    pub max_new_tokens: usize,
    /// Sampling settings.
    pub sampler: SamplerConfig,
    /// Text that ends generation (not included in the output).
    pub stop_strings: Vec<String>,
    /// Go on past the model's end-of-text tokens (for benchmarks).
    pub ignore_eos: bool,
    /// Reuse what a free slot's cache shares with the prompt (llama-server's `cache_prompt`); benchmarks turn
    /// it off so every prompt runs whole.
    pub cache_prompt: bool,
    /// Report each generated token's log-probability with this many of the most likely tokens at its position
    /// ([`Event::Logprob`]); `None` for none.
    pub logprobs: Option<usize>,
    /// Also report the log-probability of each prompt token after the first ([`Event::PromptLogprob`], with
    /// `logprobs` alternatives), to score text (OpenAI's `echo`); the prompt then runs whole, without reusing a
    /// slot's cache.
    pub score_prompt: bool,
    /// Where the request's events go; dropping the receiver cancels the request and frees its slot.
    pub events: mpsc::UnboundedSender<Event>,
}

/// What a running request reports.
#[derive(Clone, Debug)]
pub enum Event {
    /// New text (never part of a stop string, never a split UTF-8 character).
    Text(String),
    /// A generated token's log-probabilities, when the request asked for them: sent after the text its step
    /// released (which may still hold back this token's own text); none for a stop token, which is not shown.
    Logprob(TokenLogprob),
    /// A prompt token's log-probability given the tokens before it, when the request scores its prompt: one per
    /// prompt token after the first, in order, before anything is generated.
    PromptLogprob(TokenLogprob),
    /// The request is complete.
    Done(Finished),
    /// The request failed (it alone: other requests go on).
    Failed(String),
}

/// The outcome of a completed request.
#[derive(Clone, Debug)]
pub struct Finished {
    /// Generated ids (a stop token included).
    pub ids: Vec<u32>,
    /// Generated text, up to any stop string.
    pub text: String,
    /// Why it ended.
    pub stop: StopReason,
    /// Prompt tokens.
    pub prompt_tokens: usize,
    /// Prompt tokens found in the slot's cache and not run again.
    pub cached_tokens: usize,
    /// From submission to the first generated token.
    pub first_token: Duration,
    /// From submission to completion.
    pub elapsed: Duration,
}

/// Why a request was refused at submission.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SubmitError {
    /// Nothing to continue.
    #[error("the prompt is empty")]
    EmptyPrompt,
    /// The prompt leaves no room in a slot for a generated token.
    #[error("the prompt has {tokens} tokens; a slot holds {ctx} positions (prompt and generated tokens)")]
    PromptTooLong {
        /// Prompt tokens.
        tokens: usize,
        /// Positions per slot.
        ctx: usize,
    },
    /// A token id outside the vocabulary.
    #[error("token id {id} is outside the vocabulary (size {vocab})")]
    BadToken {
        /// The id.
        id: u32,
        /// The vocabulary size.
        vocab: usize,
    },
    /// The wait queue is full: retry later.
    #[error("the server is busy: all slots are in use and the queue of {0} requests is full")]
    QueueFull(usize),
    /// The engine has stopped.
    #[error("the engine has stopped")]
    Stopped,
}

/// Counters of the engine's work, for monitoring.
#[derive(Debug, Default)]
pub struct Stats {
    requests: AtomicU64,
    prompt_tokens: AtomicU64,
    cached_tokens: AtomicU64,
    generated_tokens: AtomicU64,
    queued: AtomicU64,
    busy: AtomicU64,
    decode_tok_s: AtomicU64,
    kept_bytes: AtomicU64,
    kept_prompts: AtomicU64,
}

/// A reading of [`Stats`].
#[derive(Clone, Debug, PartialEq)]
pub struct StatsSnapshot {
    /// Requests completed.
    pub requests: u64,
    /// Prompt tokens of completed requests.
    pub prompt_tokens: u64,
    /// Of those, found in a slot's cache.
    pub cached_tokens: u64,
    /// Tokens generated.
    pub generated_tokens: u64,
    /// Requests waiting for a slot.
    pub queued: u64,
    /// Slots in use.
    pub busy_slots: u64,
    /// Tokens generated per second over all sequences in the last step.
    pub decode_tok_s: f64,
    /// Bytes held by the prompt cache.
    pub kept_bytes: u64,
    /// Prompts held by the prompt cache.
    pub kept_prompts: u64,
}

impl Stats {
    /// The current values.
    pub fn snapshot(&self) -> StatsSnapshot {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        StatsSnapshot {
            requests: get(&self.requests),
            prompt_tokens: get(&self.prompt_tokens),
            cached_tokens: get(&self.cached_tokens),
            generated_tokens: get(&self.generated_tokens),
            queued: get(&self.queued),
            busy_slots: get(&self.busy),
            decode_tok_s: f64::from_bits(get(&self.decode_tok_s)),
            kept_bytes: get(&self.kept_bytes),
            kept_prompts: get(&self.kept_prompts),
        }
    }
}

/// A request with the time it was submitted.
struct Queued {
    request: Request,
    at: Instant,
}

/// A running engine: submit requests from any thread; dropping it stops the scheduler once the queue drains.
pub struct Engine {
    queue: Option<mpsc::Sender<Queued>>,
    stats: Arc<Stats>,
    config: EngineConfig,
    vocab: usize,
    thread: Option<JoinHandle<()>>,
}

impl Engine {
    /// Starts the scheduler thread, which runs `model` (owned, or shared with callers that also run it directly)
    /// with as many CPU threads as the calling thread's rayon pool has (so `-t` and `ThreadPool::install` around
    /// this call hold for the engine too).
    pub fn start<B: TernaryBackend>(
        model: impl Into<Arc<BitNet<B>>>,
        tokenizer: Arc<Tokenizer>,
        mut config: EngineConfig,
    ) -> Self {
        let model = model.into();
        config.slots = config.slots.max(1);
        config.chunk = config.chunk.max(1);
        config.ctx = config.ctx.clamp(1, model.config.context_length);
        let (queue, rx) = mpsc::channel(config.queue.max(1));
        let stats = Arc::new(Stats::default());
        let vocab = model.config.vocab_size;
        let threads = rayon::current_num_threads();
        let thread = {
            let (stats, config) = (stats.clone(), config.clone());
            std::thread::Builder::new()
                .name("bitnet-engine".into())
                .spawn(move || {
                    let work = || scheduler::run(&model, &tokenizer, &config, rx, &stats);
                    match rayon::ThreadPoolBuilder::new().num_threads(threads).build() {
                        Ok(pool) => pool.install(work),
                        Err(_) => work(),
                    }
                })
                .expect("spawn the engine thread")
        };
        Self {
            queue: Some(queue),
            stats,
            config,
            vocab,
            thread: Some(thread),
        }
    }

    /// Queues a request; its events arrive on `request.events`.
    pub fn submit(&self, request: Request) -> Result<(), SubmitError> {
        let ctx = self.config.ctx;
        if request.prompt.is_empty() {
            return Err(SubmitError::EmptyPrompt);
        }
        if request.prompt.len() >= ctx {
            return Err(SubmitError::PromptTooLong {
                tokens: request.prompt.len(),
                ctx,
            });
        }
        if let Some(&id) = request.prompt.iter().find(|&&id| id as usize >= self.vocab) {
            return Err(SubmitError::BadToken {
                id,
                vocab: self.vocab,
            });
        }
        let queue = self.queue.as_ref().ok_or(SubmitError::Stopped)?;
        self.stats.queued.fetch_add(1, Ordering::Relaxed);
        let queued = Queued {
            request,
            at: Instant::now(),
        };
        queue.try_send(queued).map_err(|e| {
            self.stats.queued.fetch_sub(1, Ordering::Relaxed);
            match e {
                mpsc::error::TrySendError::Full(_) => SubmitError::QueueFull(self.config.queue),
                mpsc::error::TrySendError::Closed(_) => SubmitError::Stopped,
            }
        })
    }

    /// The engine's counters.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// The engine's configuration (with the slot context capped at the model's).
    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    /// How many logits the model gives: token ids (of prompts, of logit biases) must be below it.
    pub fn vocab(&self) -> usize {
        self.vocab
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        self.queue = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
