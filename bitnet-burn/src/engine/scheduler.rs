//! The scheduler loop: admit requests into free slots, run one step for every active sequence, sample, stream.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bitnet_kernels_cubecl::TernaryBackend;
use tokio::sync::mpsc;

use super::slots::Slots;
use super::{EngineConfig, Event, Finished, Queued, Request, Stats};
use crate::nn::BitNet;
use crate::text::generate::{Continuation, StopReason};
use crate::text::logprobs::TokenLogprob;
use crate::text::shared_prefix;
use crate::text::tokenizer::Tokenizer;

/// A request holding a slot.
struct Sequence {
    slot: usize,
    /// Prompt tokens not yet run (the front goes next).
    pending: Vec<u32>,
    continuation: Continuation,
    events: mpsc::UnboundedSender<Event>,
    /// Alternatives reported with each token's log-probability, when they are asked for.
    logprobs: Option<usize>,
    /// Whether the prompt tokens' log-probabilities are asked for ([`Event::PromptLogprob`]).
    scored: bool,
    /// Prompt tokens run (or found in the cache) so far.
    fed: usize,
    /// The whole prompt.
    prompt: Vec<u32>,
    prompt_tokens: usize,
    cached_tokens: usize,
    submitted: Instant,
    first_token: Option<Duration>,
}

/// Runs until the queue is closed and every admitted request has finished.
pub(super) fn run<B: TernaryBackend>(
    model: &BitNet<B>,
    tokenizer: &Tokenizer,
    config: &EngineConfig,
    mut queue: mpsc::Receiver<Queued>,
    stats: &Stats,
) {
    let mut slots = Slots::new(model, config.slots, config.ctx, config.prompt_cache);
    let mut active: Vec<Sequence> = Vec::new();
    // requests waiting for a running prompt they share the start of
    let mut waiting: Vec<Queued> = Vec::new();
    let vocab = model.config.vocab_size;
    loop {
        let mut i = 0;
        while i < waiting.len() && slots.busy() < config.slots {
            if waiting[i].request.events.is_closed() {
                waiting.remove(i);
                stats.queued.fetch_sub(1, Ordering::Relaxed);
            } else if waits(&waiting[i].request, &active, &slots, 1) {
                i += 1;
            } else {
                let next = waiting.remove(i);
                admit(next, &mut slots, &mut active, tokenizer, stats);
            }
        }
        while slots.busy() < config.slots && waiting.len() < config.queue {
            let next = if active.is_empty() && waiting.is_empty() {
                match queue.blocking_recv() {
                    Some(q) => q,
                    None => return,
                }
            } else {
                match queue.try_recv() {
                    Ok(q) => q,
                    Err(_) => break,
                }
            };
            if next.request.events.is_closed() {
                stats.queued.fetch_sub(1, Ordering::Relaxed);
            } else if waits(&next.request, &active, &slots, WAIT_FOR_SHARED) {
                waiting.push(next);
            } else {
                admit(next, &mut slots, &mut active, tokenizer, stats);
            }
        }
        active.retain(|s| {
            let gone = s.events.is_closed();
            if gone {
                release(&mut slots, stats, s.slot);
            }
            !gone
        });
        // Admissions count here; every release counts in `release`.
        stats.busy.store(slots.busy() as u64, Ordering::Relaxed);
        if active.is_empty() {
            continue;
        }

        let mut feed: Vec<Option<Vec<u32>>> = vec![None; config.slots];
        let mut scoring = vec![false; config.slots];
        for s in &mut active {
            feed[s.slot] = Some(if s.pending.is_empty() {
                vec![s.continuation.last()]
            } else {
                let n = config.chunk.min(s.pending.len());
                scoring[s.slot] = s.scored;
                s.pending.drain(..n).collect()
            });
        }
        // each fed slot's logits rows, in slot order: its last token's, or all of a scored prompt chunk's
        let (mut rows, mut every) = (vec![0..0; config.slots], Vec::new());
        let mut next = 0;
        for (slot, tokens) in feed.iter().enumerate() {
            if let Some(tokens) = tokens {
                let n = if scoring[slot] { tokens.len() } else { 1 };
                rows[slot] = next..next + n;
                next += n;
                every.push(scoring[slot]);
            }
        }
        let started = Instant::now();
        let logits = {
            let mut step = slots.step(&feed);
            model
                .forward_sequences(&mut step, &every, config.act)
                .map_err(|e| e.to_string())
                .and_then(|l| {
                    l.into_data()
                        .convert::<f32>()
                        .into_vec::<f32>()
                        .map_err(|e| format!("reading the logits: {e:?}"))
                })
        };
        let mut logits = match logits {
            Ok(l) => l,
            Err(message) => {
                for s in active.drain(..) {
                    let _ = s.events.send(Event::Failed(message.clone()));
                    slots.clear(s.slot);
                    release(&mut slots, stats, s.slot);
                }
                continue;
            }
        };
        for s in &mut active {
            let run = feed[s.slot].as_ref().map_or(0, Vec::len);
            if s.scored && s.fed < s.prompt.len() {
                // row j of the chunk scores the prompt token after position fed + j
                for (j, pos) in rows[s.slot].clone().zip(s.fed + 1..s.prompt.len()) {
                    let row = &logits[j * vocab..(j + 1) * vocab];
                    let token = TokenLogprob::new(row, s.prompt[pos], s.logprobs.unwrap_or(0));
                    let _ = s.events.send(Event::PromptLogprob(token));
                }
            }
            s.fed += run;
        }
        let mut decoded = 0;
        let mut i = 0;
        while i < active.len() {
            let s = &mut active[i];
            if !s.pending.is_empty() {
                i += 1;
                continue;
            }
            decoded += 1;
            let last = rows[s.slot].end - 1;
            let row = &mut logits[last * vocab..(last + 1) * vocab];
            s.first_token.get_or_insert_with(|| s.submitted.elapsed());
            // sampling changes the row in place: the log-probabilities are the model's own
            let raw = s.logprobs.map(|n| (n, row.to_vec()));
            let before = s.continuation.generated();
            let mut open = true;
            let events = &s.events;
            let mut on_text = |t: &str| open &= events.send(Event::Text(t.to_string())).is_ok();
            let ended = match s.continuation.step(tokenizer, row, &mut on_text) {
                Ok(Some(stop)) => Some(stop),
                Ok(None) if slots.room(s.slot) == 0 => Some(StopReason::ContextFull),
                Ok(None) => None,
                Err(e) => {
                    let _ = s.events.send(Event::Failed(e.to_string()));
                    release(&mut slots, stats, s.slot);
                    active.swap_remove(i);
                    continue;
                }
            };
            let shown = !matches!(ended, Some(StopReason::StopToken(_)));
            if let Some((n, raw)) = raw.filter(|_| shown && s.continuation.generated() > before) {
                let token = TokenLogprob::new(&raw, s.continuation.last(), n);
                open &= s.events.send(Event::Logprob(token)).is_ok();
            }
            if !open {
                release(&mut slots, stats, s.slot);
                active.swap_remove(i);
                continue;
            }
            match ended {
                None => i += 1,
                Some(stop) => {
                    let s = active.swap_remove(i);
                    release(&mut slots, stats, s.slot);
                    finish(s, stop, tokenizer, stats);
                }
            }
        }
        let seconds = started.elapsed().as_secs_f64().max(1e-9);
        stats
            .decode_tok_s
            .store((decoded as f64 / seconds).to_bits(), Ordering::Relaxed);
    }
}

/// Fewest prompt tokens, beyond those held anywhere, that a running prompt must share with a request's for the
/// request to wait until that prompt has run, and then copy it (`n` choices of one prompt, requests sharing a
/// long system prompt at once) instead of running the same tokens beside it.
const WAIT_FOR_SHARED: usize = 32;

/// Whether `request` waits for a sequence still running its prompt: they share at least `least` tokens more than
/// a slot or the prompt cache holds now ([`WAIT_FOR_SHARED`] to start waiting, 1 to go on until all have run).
fn waits<B: TernaryBackend>(
    request: &Request,
    active: &[Sequence],
    slots: &Slots<B>,
    least: usize,
) -> bool {
    if !reuses(request) {
        return false;
    }
    let prompt = &request.prompt;
    let most = prompt.len() - 1;
    let held = slots.longest_held(prompt).min(most);
    active.iter().any(|s| {
        !s.pending.is_empty() && shared_prefix(&s.prompt, prompt).min(most) >= held + least
    })
}

/// Whether a request starts from what is held of its prompt (a scored prompt runs whole: a cached position has
/// no logits).
fn reuses(request: &Request) -> bool {
    request.cache_prompt && !request.score_prompt
}

/// Gives a request a slot, starting from what it holds or can copy of the prompt (see [`Slots::acquire`]).
fn admit<B: TernaryBackend>(
    queued: Queued,
    slots: &mut Slots<B>,
    active: &mut Vec<Sequence>,
    tokenizer: &Tokenizer,
    stats: &Stats,
) {
    stats.queued.fetch_sub(1, Ordering::Relaxed);
    let Queued { request, at } = queued;
    let (slot, cached) = slots
        .acquire(&request.prompt, reuses(&request))
        .expect("a free slot");
    let (bytes, prompts) = slots.kept();
    stats.kept_bytes.store(bytes as u64, Ordering::Relaxed);
    stats.kept_prompts.store(prompts as u64, Ordering::Relaxed);
    let continuation = Continuation::new(
        tokenizer,
        &request.prompt,
        request.max_new_tokens,
        request.sampler,
        request.stop_strings,
    );
    active.push(Sequence {
        slot,
        pending: request.prompt[cached..].to_vec(),
        continuation: match request.ignore_eos {
            true => continuation.ignoring_stop_tokens(),
            false => continuation,
        },
        events: request.events,
        logprobs: request.logprobs,
        scored: request.score_prompt,
        fed: cached,
        prompt_tokens: request.prompt.len(),
        cached_tokens: cached,
        submitted: at,
        first_token: None,
        prompt: request.prompt,
    });
}

/// Frees a slot and says so in the stats at once (before the request's end is reported).
fn release<B: TernaryBackend>(slots: &mut Slots<B>, stats: &Stats, slot: usize) {
    slots.release(slot);
    stats.busy.store(slots.busy() as u64, Ordering::Relaxed);
}

/// Ends a sequence: emits its held-back text and its [`Finished`] report.
fn finish(s: Sequence, stop: StopReason, tokenizer: &Tokenizer, stats: &Stats) {
    let events = &s.events;
    let mut on_text = |t: &str| {
        let _ = events.send(Event::Text(t.to_string()));
    };
    let event = match s.continuation.finish(tokenizer, stop, &mut on_text) {
        Ok((ids, text, stop)) => {
            stats.requests.fetch_add(1, Ordering::Relaxed);
            stats
                .prompt_tokens
                .fetch_add(s.prompt_tokens as u64, Ordering::Relaxed);
            stats
                .cached_tokens
                .fetch_add(s.cached_tokens as u64, Ordering::Relaxed);
            stats
                .generated_tokens
                .fetch_add(ids.len() as u64, Ordering::Relaxed);
            Event::Done(Finished {
                ids,
                text,
                stop,
                prompt_tokens: s.prompt_tokens,
                cached_tokens: s.cached_tokens,
                first_token: s.first_token.unwrap_or_default(),
                elapsed: s.submitted.elapsed(),
            })
        }
        Err(e) => Event::Failed(e.to_string()),
    };
    let _ = s.events.send(event);
}
