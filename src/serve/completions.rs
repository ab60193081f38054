//! `POST /v1/chat/completions` and `POST /v1/completions`: the prompt goes to the engine; the reply comes back
//! whole or as server-sent events in OpenAI's chunk format, ending with `data: [DONE]`.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::sse::{Event as SseEvent, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use bitnet_burn::engine::{Event, Finished, Request};
use bitnet_burn::text::generate::StopReason;
use bitnet_burn::text::logprobs::TokenLogprob;
use bitnet_burn::text::tokenizer::Tokenizer;
use futures_util::stream::{self, Stream};
use serde_json::{json, Value};
use tokio::sync::mpsc;

use super::error::ApiError;
use super::params::{self, Common, Prompt, Scoring};
use super::{body, AppState, Ready};

/// `POST /v1/chat/completions`.
pub async fn chat(
    State(state): State<Arc<AppState>>,
    raw: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let (ready, value, common) = request(&state, raw)?;
    let messages = params::messages(&value)?;
    let scoring = Scoring {
        logprobs: params::chat_logprobs(&value)?,
        echo: false,
    };
    let prompt = ready
        .template
        .encode(&messages, &ready.tokenizer)
        .map_err(|e| ApiError::bad_request(e.to_string()).param("messages"))?;
    start(&state, ready, Kind::Chat, prompt, common, scoring).await
}

/// `POST /v1/completions`.
pub async fn completion(
    State(state): State<Arc<AppState>>,
    raw: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let (ready, value, common) = request(&state, raw)?;
    let scoring = params::completion_scoring(&value, common.stream)?;
    let prompt = match params::prompt(&value)? {
        Prompt::Text(text) => ready
            .tokenizer
            .encode(&text, true)
            .map_err(|e| ApiError::bad_request(e.to_string()).param("prompt"))?,
        Prompt::Ids(ids) => ids,
    };
    start(&state, ready, Kind::Completion, prompt, common, scoring).await
}

/// The ready model, the body as JSON and its shared parameters, checked.
fn request(
    state: &AppState,
    raw: Result<Bytes, BytesRejection>,
) -> Result<(&Ready, Value, Common), ApiError> {
    let ready = state.ready()?;
    let value = params::object(&body(raw)?)?;
    let common: Common = params::read(&value)?;
    common.validate(&ready.names)?;
    Ok((ready, value, common))
}

/// Which endpoint a reply is for.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Chat,
    Completion,
}

/// What every object of one reply shares.
struct Reply {
    kind: Kind,
    id: String,
    created: u64,
    model: String,
    /// Spells the tokens of `logprobs`.
    tokenizer: Arc<Tokenizer>,
    /// Whether the request asked for `logprobs`.
    logprobs: bool,
    /// The prompt as run, when the reply echoes it.
    echo: Option<Vec<u32>>,
}

async fn start(
    state: &AppState,
    ready: &Ready,
    kind: Kind,
    prompt: Vec<u32>,
    common: Common,
    scoring: Scoring,
) -> Result<Response, ApiError> {
    let n = state.next_id.fetch_add(1, Ordering::Relaxed);
    let reply = Reply {
        kind,
        id: match kind {
            Kind::Chat => format!("chatcmpl-{n}"),
            Kind::Completion => format!("cmpl-{n}"),
        },
        created: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
        model: ready.names[0].clone(),
        tokenizer: ready.tokenizer.clone(),
        logprobs: scoring.logprobs.is_some(),
        echo: scoring.echo.then(|| prompt.clone()),
    };
    let (events, mut rx) = mpsc::unbounded_channel();
    let room = ready.engine.config().ctx.saturating_sub(prompt.len());
    ready.engine.submit(Request {
        prompt,
        max_new_tokens: common.max_tokens(room, scoring.echo)?,
        sampler: common.sampler(),
        stop_strings: common.stops(),
        ignore_eos: common.ignore_eos,
        cache_prompt: common.cache_prompt.unwrap_or(true),
        logprobs: scoring.logprobs,
        score_prompt: scoring.echo && scoring.logprobs.is_some(),
        events,
    })?;
    if common.stream {
        return Ok(Sse::new(sse(reply, rx, common.include_usage())).into_response());
    }
    // Dropping this future (the client went away) drops `rx`, which cancels the request.
    let (mut prompt, mut tokens) = (Vec::new(), Vec::new());
    loop {
        match rx.recv().await {
            Some(Event::Text(_)) => {}
            Some(Event::PromptLogprob(t)) => prompt.push(t),
            Some(Event::Logprob(t)) => tokens.push(t),
            Some(Event::Done(f)) => {
                return Ok(Json(reply.whole(&f, &prompt, &tokens)).into_response())
            }
            Some(Event::Failed(e)) => {
                return Err(ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e))
            }
            None => {
                return Err(ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "the engine stopped before the reply was complete",
                ))
            }
        }
    }
}

/// The reply as server-sent events: a role chunk (chat), text chunks, the chunk with the finish reason, the
/// usage chunk if asked for, then `[DONE]`; an error event if the engine fails the request. With `logprobs`,
/// each generated token's chunk carries the text its step released and that token's log-probabilities.
fn sse(
    reply: Reply,
    rx: mpsc::UnboundedReceiver<Event>,
    include_usage: bool,
) -> impl Stream<Item = Result<SseEvent, Infallible>> {
    let mut queue = VecDeque::new();
    if reply.kind == Kind::Chat {
        queue.push_back(
            reply
                .chunk(
                    json!({"role": "assistant", "content": ""}),
                    None,
                    Value::Null,
                )
                .to_string(),
        );
    }
    let state = (reply, rx, queue, false, String::new(), Offsets::default());
    stream::unfold(
        state,
        move |(reply, mut rx, mut queue, mut ended, mut held, mut offsets)| async move {
            loop {
                if let Some(data) = queue.pop_front() {
                    let event = SseEvent::default().data(data);
                    return Some((Ok(event), (reply, rx, queue, ended, held, offsets)));
                }
                if ended {
                    return None;
                }
                ended = true;
                match rx.recv().await {
                    Some(Event::Text(t)) if reply.logprobs => {
                        held.push_str(&t);
                        ended = false;
                    }
                    Some(Event::Text(t)) => {
                        let chunk = reply.chunk(json!({"content": t}), None, Value::Null);
                        queue.push_back(chunk.to_string());
                        ended = false;
                    }
                    // (echo, which brings these, is refused with stream)
                    Some(Event::PromptLogprob(_)) => ended = false,
                    Some(Event::Logprob(t)) => {
                        let logprobs = reply.logprobs(&[], &[t], &mut offsets);
                        let text = std::mem::take(&mut held);
                        let chunk = reply.chunk(json!({"content": text}), None, logprobs);
                        queue.push_back(chunk.to_string());
                        ended = false;
                    }
                    Some(Event::Done(f)) => {
                        if !held.is_empty() {
                            let logprobs = reply.logprobs(&[], &[], &mut offsets);
                            let text = std::mem::take(&mut held);
                            let chunk = reply.chunk(json!({"content": text}), None, logprobs);
                            queue.push_back(chunk.to_string());
                        }
                        let chunk = reply.chunk(json!({}), Some(&f.stop), Value::Null);
                        queue.push_back(chunk.to_string());
                        if include_usage {
                            let mut last = reply.chunk(json!({}), None, Value::Null);
                            last["choices"] = json!([]);
                            last["usage"] = usage(&f);
                            queue.push_back(last.to_string());
                        }
                        queue.push_back("[DONE]".into());
                    }
                    Some(Event::Failed(e)) => {
                        let error = ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e);
                        queue.push_back(error.body().to_string());
                    }
                    None => {}
                }
            }
        },
    )
}

impl Reply {
    /// A streamed chunk: a chat `delta` or a completion's `text`, with the finish reason on the last.
    fn chunk(&self, delta: Value, stop: Option<&StopReason>, logprobs: Value) -> Value {
        let finish = stop.map(StopReason::finish_reason);
        let choice = match self.kind {
            Kind::Chat => {
                json!({"index": 0, "delta": delta, "logprobs": logprobs, "finish_reason": finish})
            }
            Kind::Completion => json!({
                "index": 0, "text": delta.get("content").cloned().unwrap_or(json!("")),
                "logprobs": logprobs, "finish_reason": finish,
            }),
        };
        json!({
            "id": self.id, "object": self.object(true), "created": self.created, "model": self.model,
            "choices": [choice],
        })
    }

    /// The non-streamed reply, with the generated tokens' log-probabilities if they were asked for, and the
    /// prompt (as run: a BOS the server added included) before the completion with `echo`.
    fn whole(&self, f: &Finished, prompt: &[TokenLogprob], tokens: &[TokenLogprob]) -> Value {
        let finish = f.stop.finish_reason();
        let logprobs = self.logprobs(prompt, tokens, &mut Offsets::default());
        let text = match &self.echo {
            Some(ids) => self.tokenizer.decode(ids).unwrap_or_default() + &f.text,
            None => f.text.clone(),
        };
        let choice = match self.kind {
            Kind::Chat => json!({
                "index": 0, "message": {"role": "assistant", "content": f.text},
                "logprobs": logprobs, "finish_reason": finish,
            }),
            Kind::Completion => {
                json!({"index": 0, "text": text, "logprobs": logprobs, "finish_reason": finish})
            }
        };
        json!({
            "id": self.id, "object": self.object(false), "created": self.created, "model": self.model,
            "choices": [choice], "usage": usage(f),
        })
    }

    /// A choice's `logprobs` for `tokens` (null unless asked for): chat's `content` list of tokens with their
    /// `top_logprobs`, or the legacy completion's parallel lists, whose `top_logprobs` maps hold the chosen
    /// token too, as OpenAI's do, and whose `text_offset`s count characters from the start of the text. With
    /// `echo` the lists start with the prompt: its first token (null: nothing before it), then `prompt`.
    fn logprobs(
        &self,
        prompt: &[TokenLogprob],
        tokens: &[TokenLogprob],
        offsets: &mut Offsets,
    ) -> Value {
        if !self.logprobs {
            return Value::Null;
        }
        let bytes = |id: u32| self.tokenizer.token_bytes(id).unwrap_or_default();
        let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
        match self.kind {
            Kind::Chat => {
                let entry = |id: u32, logprob: f32| {
                    let bytes = bytes(id);
                    json!({"token": text(&bytes), "logprob": logprob, "bytes": bytes})
                };
                let content: Vec<Value> = tokens
                    .iter()
                    .map(|t| {
                        let mut e = entry(t.id, t.logprob);
                        e["top_logprobs"] = t.top.iter().map(|&(id, lp)| entry(id, lp)).collect();
                        e
                    })
                    .collect();
                json!({"content": content, "refusal": null})
            }
            Kind::Completion => {
                let first = self.echo.as_ref().and_then(|ids| ids.first());
                let entries: Vec<(u32, Option<&TokenLogprob>)> = first
                    .map(|&id| (id, None))
                    .into_iter()
                    .chain(prompt.iter().chain(tokens).map(|t| (t.id, Some(t))))
                    .collect();
                let spelled: Vec<Vec<u8>> = entries.iter().map(|&(id, _)| bytes(id)).collect();
                let top = |t: &TokenLogprob| {
                    let mut map = serde_json::Map::new();
                    for &(id, lp) in t.top.iter().chain([(t.id, t.logprob)].iter()) {
                        map.entry(text(&bytes(id))).or_insert(json!(lp));
                    }
                    Value::Object(map)
                };
                json!({
                    "tokens": spelled.iter().map(|b| text(b)).collect::<Vec<_>>(),
                    "token_logprobs": entries.iter().map(|(_, t)| t.map(|t| t.logprob)).collect::<Vec<_>>(),
                    "top_logprobs": entries.iter().map(|(_, t)| t.map(top)).collect::<Vec<_>>(),
                    "text_offset": spelled.iter().map(|b| offsets.next(b)).collect::<Vec<_>>(),
                })
            }
        }
    }

    fn object(&self, chunk: bool) -> &'static str {
        match (self.kind, chunk) {
            (Kind::Chat, true) => "chat.completion.chunk",
            (Kind::Chat, false) => "chat.completion",
            (Kind::Completion, _) => "text_completion",
        }
    }
}

fn usage(f: &Finished) -> Value {
    json!({
        "prompt_tokens": f.prompt_tokens,
        "completion_tokens": f.ids.len(),
        "total_tokens": f.prompt_tokens + f.ids.len(),
        "prompt_tokens_details": {"cached_tokens": f.cached_tokens},
    })
}

/// Character offsets of successive tokens in the text they spell, counting only whole UTF-8 characters (a token
/// that starts inside a character gets that character's end).
#[derive(Default)]
struct Offsets {
    /// Bytes of a character not yet complete.
    partial: Vec<u8>,
    chars: usize,
}

impl Offsets {
    /// The offset of a token of `bytes`, then moves past it.
    fn next(&mut self, bytes: &[u8]) -> usize {
        let at = self.chars;
        self.partial.extend_from_slice(bytes);
        let whole = match std::str::from_utf8(&self.partial) {
            Ok(s) => s.len(),
            Err(e) if e.error_len().is_some() => self.partial.len(),
            Err(e) => e.valid_up_to(),
        };
        self.chars += String::from_utf8_lossy(&self.partial[..whole])
            .chars()
            .count();
        self.partial.drain(..whole);
        at
    }
}
