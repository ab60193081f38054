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
use futures_util::stream::{self, Stream};
use serde_json::{json, Value};
use tokio::sync::mpsc;

use super::error::ApiError;
use super::params::{self, Common};
use super::{body, AppState, Ready};

/// `POST /v1/chat/completions`.
pub async fn chat(
    State(state): State<Arc<AppState>>,
    raw: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let (ready, value, common) = request(&state, raw)?;
    let messages = params::messages(&value)?;
    let prompt = ready
        .template
        .encode(&messages, &ready.tokenizer)
        .map_err(|e| ApiError::bad_request(e.to_string()).param("messages"))?;
    start(&state, ready, Kind::Chat, prompt, common).await
}

/// `POST /v1/completions`.
pub async fn completion(
    State(state): State<Arc<AppState>>,
    raw: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let (ready, value, common) = request(&state, raw)?;
    let text = params::prompt(&value)?;
    let prompt = ready
        .tokenizer
        .encode(&text, true)
        .map_err(|e| ApiError::bad_request(e.to_string()).param("prompt"))?;
    start(&state, ready, Kind::Completion, prompt, common).await
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
}

async fn start(
    state: &AppState,
    ready: &Ready,
    kind: Kind,
    prompt: Vec<u32>,
    common: Common,
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
    };
    let (events, mut rx) = mpsc::unbounded_channel();
    let room = ready.engine.config().ctx.saturating_sub(prompt.len());
    ready.engine.submit(Request {
        prompt,
        max_new_tokens: common.max_tokens(room),
        sampler: common.sampler(),
        stop_strings: common.stops(),
        ignore_eos: common.ignore_eos,
        cache_prompt: common.cache_prompt.unwrap_or(true),
        events,
    })?;
    if common.stream {
        return Ok(Sse::new(sse(reply, rx, common.include_usage())).into_response());
    }
    // Dropping this future (the client went away) drops `rx`, which cancels the request.
    loop {
        match rx.recv().await {
            Some(Event::Text(_)) => {}
            Some(Event::Done(f)) => return Ok(Json(reply.whole(&f)).into_response()),
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
/// usage chunk if asked for, then `[DONE]`; an error event if the engine fails the request.
fn sse(
    reply: Reply,
    rx: mpsc::UnboundedReceiver<Event>,
    include_usage: bool,
) -> impl Stream<Item = Result<SseEvent, Infallible>> {
    let mut queue = VecDeque::new();
    if reply.kind == Kind::Chat {
        queue.push_back(
            reply
                .chunk(json!({"role": "assistant", "content": ""}), None)
                .to_string(),
        );
    }
    stream::unfold(
        (reply, rx, queue, false),
        move |(reply, mut rx, mut queue, mut ended)| async move {
            loop {
                if let Some(data) = queue.pop_front() {
                    let event = SseEvent::default().data(data);
                    return Some((Ok(event), (reply, rx, queue, ended)));
                }
                if ended {
                    return None;
                }
                ended = true;
                match rx.recv().await {
                    Some(Event::Text(t)) => {
                        queue.push_back(reply.chunk(json!({"content": t}), None).to_string());
                        ended = false;
                    }
                    Some(Event::Done(f)) => {
                        queue.push_back(reply.chunk(json!({}), Some(&f.stop)).to_string());
                        if include_usage {
                            let mut last = reply.chunk(json!({}), None);
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
    fn chunk(&self, delta: Value, stop: Option<&StopReason>) -> Value {
        let finish = stop.map(StopReason::finish_reason);
        let choice = match self.kind {
            Kind::Chat => {
                json!({"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish})
            }
            Kind::Completion => json!({
                "index": 0, "text": delta.get("content").cloned().unwrap_or(json!("")),
                "logprobs": null, "finish_reason": finish,
            }),
        };
        json!({
            "id": self.id, "object": self.object(true), "created": self.created, "model": self.model,
            "choices": [choice],
        })
    }

    /// The non-streamed reply.
    fn whole(&self, f: &Finished) -> Value {
        let finish = f.stop.finish_reason();
        let choice = match self.kind {
            Kind::Chat => json!({
                "index": 0, "message": {"role": "assistant", "content": f.text},
                "logprobs": null, "finish_reason": finish,
            }),
            Kind::Completion => {
                json!({"index": 0, "text": f.text, "logprobs": null, "finish_reason": finish})
            }
        };
        json!({
            "id": self.id, "object": self.object(false), "created": self.created, "model": self.model,
            "choices": [choice], "usage": usage(f),
        })
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
