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
use bitnet_burn::text::logprobs::TokenLogprob;
use bitnet_burn::text::sampling::SamplerConfig;
use bitnet_burn::text::tokenizer::Tokenizer;
use bitnet_burn::text::tools::{ReplyPart, ReplyReader, ToolReply, Tools};
use futures_util::stream::{self, Stream, StreamExt};
use serde_json::{json, Value};
use tokio::sync::mpsc;

use super::error::ApiError;
use super::params::{self, Common, Scoring};
use super::{body, log_reply, AppState, Ready};

/// `POST /v1/chat/completions`.
pub async fn chat(
    State(state): State<Arc<AppState>>,
    raw: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let (ready, value, common, sampler) = request(&state, raw)?;
    let tools = common.tools()?;
    let messages = params::messages(&value, tools.as_ref())?;
    let scoring = Scoring {
        logprobs: params::chat_logprobs(&value)?,
        echo: false,
    };
    let prompt = ready
        .template
        .encode(&messages, &ready.tokenizer)
        .map_err(|e| ApiError::bad_request(e.to_string()).param("messages"))?;
    start(
        &state,
        ready,
        Kind::Chat(tools),
        vec![prompt],
        (common, sampler),
        scoring,
    )
    .await
}

/// `POST /v1/completions`.
pub async fn completion(
    State(state): State<Arc<AppState>>,
    raw: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let (ready, value, common, sampler) = request(&state, raw)?;
    if common.tools()?.is_some() {
        return Err(
            ApiError::bad_request("tools: only /v1/chat/completions calls tools").param("tools"),
        );
    }
    let scoring = params::completion_scoring(&value, common.stream)?;
    let prompts = params::prompt_ids(
        params::prompts(&value, ready.engine.config().queue)?,
        |text| {
            ready
                .tokenizer
                .encode(text, true)
                .map_err(|e| ApiError::bad_request(e.to_string()).param("prompt"))
        },
    )?;
    let request = (common, sampler);
    start(&state, ready, Kind::Completion, prompts, request, scoring).await
}

/// The ready model, the body as JSON and its shared parameters, checked, with the sampler they make.
fn request(
    state: &AppState,
    raw: Result<Bytes, BytesRejection>,
) -> Result<(&Ready, Value, Common, SamplerConfig), ApiError> {
    let ready = state.ready()?;
    let value = params::object(&body(raw)?)?;
    let (common, sampler) = parameters(ready, &value)?;
    Ok((ready, value, common, sampler))
}

/// The shared parameters of a body, checked, with the sampler they make.
pub(super) fn parameters(
    ready: &Ready,
    value: &Value,
) -> Result<(Common, SamplerConfig), ApiError> {
    let common: Common = params::read(value)?;
    let sampler = common.validate(&ready.names, ready.engine.vocab())?;
    Ok((common, sampler))
}

/// Which endpoint a reply is for (a chat's with the tools it may call).
enum Kind {
    Chat(Option<Tools>),
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
    /// Whether the reply echoes the prompt.
    echo: bool,
    /// Choices a prompt (`n`).
    choices: usize,
}

/// What one prompt of a request came to.
pub(super) struct Outcome {
    /// The prompt as run.
    prompt: Vec<u32>,
    /// Its tokens' log-probabilities after the first, when scored.
    scored: Vec<TokenLogprob>,
    /// The generated tokens' log-probabilities, when asked for.
    tokens: Vec<TokenLogprob>,
    pub finished: Finished,
}

/// Runs each prompt as its own engine request (they share the engine's steps like any concurrent requests) and
/// answers with a choice per prompt, or streams the one prompt's reply.
async fn start(
    state: &AppState,
    ready: &Ready,
    kind: Kind,
    prompts: Vec<Vec<u32>>,
    (common, sampler): (Common, SamplerConfig),
    scoring: Scoring,
) -> Result<Response, ApiError> {
    let n = state.next_id.fetch_add(1, Ordering::Relaxed);
    let reply = Reply {
        id: match kind {
            Kind::Chat(_) => format!("chatcmpl-{n}"),
            Kind::Completion => format!("cmpl-{n}"),
        },
        kind,
        created: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
        model: ready.names[0].clone(),
        tokenizer: ready.tokenizer.clone(),
        logprobs: scoring.logprobs.is_some(),
        echo: scoring.echo,
        choices: common.choices(),
    };
    let (queue, total) = (ready.engine.config().queue, prompts.len() * reply.choices);
    if total > queue {
        let message =
            format!("n: {total} choices in one request; at most {queue} (the server's queue)");
        return Err(ApiError::bad_request(message).param("n"));
    }
    let mut running = Vec::with_capacity(total);
    for prompt in prompts {
        for choice in 0..reply.choices {
            // a refused one drops the receivers of those already queued, which cancels them
            let rx = submit(ready, &prompt, (&common, &sampler), &scoring, choice as u64).map_err(
                |e| match reply.kind {
                    Kind::Chat(_) => e.prompt_in("messages"),
                    Kind::Completion => e,
                },
            )?;
            running.push((prompt.clone(), rx));
        }
    }
    if common.stream {
        let receivers = running.into_iter().map(|(_, rx)| rx).collect();
        return Ok(Sse::new(sse(reply, receivers, common.include_usage())).into_response());
    }
    // Dropping this future (the client went away) drops the receivers, which cancels the requests.
    let mut outcomes = Vec::with_capacity(total);
    for (i, (prompt, rx)) in running.into_iter().enumerate() {
        let o = outcome(prompt, rx).await?;
        log_reply(&reply.choice_id(i, total), &o.finished);
        outcomes.push(o);
    }
    Ok(Json(reply.whole(&outcomes)).into_response())
}

/// Queues `prompt` as an engine request with the request's parameters and sampler, for its choice `choice` (a
/// given seed is moved by it, so seeded choices differ and each is reproducible); its events come on the receiver
/// (dropping it cancels the request).
pub(super) fn submit(
    ready: &Ready,
    prompt: &[u32],
    (common, sampler): (&Common, &SamplerConfig),
    scoring: &Scoring,
    choice: u64,
) -> Result<mpsc::UnboundedReceiver<Event>, ApiError> {
    let (events, rx) = mpsc::unbounded_channel();
    let room = ready.engine.config().ctx.saturating_sub(prompt.len());
    let mut sampler = sampler.clone();
    sampler.seed = sampler.seed.wrapping_add(choice);
    ready.engine.submit(Request {
        prompt: prompt.to_vec(),
        max_new_tokens: common.max_tokens(room, scoring.echo)?,
        sampler,
        stop_strings: common.stops(),
        ignore_eos: common.ignore_eos,
        cache_prompt: common.cache_prompt.unwrap_or(true),
        logprobs: scoring.logprobs,
        score_prompt: scoring.echo && scoring.logprobs.is_some(),
        events,
    })?;
    Ok(rx)
}

/// Waits for one prompt's request to end.
pub(super) async fn outcome(
    prompt: Vec<u32>,
    mut rx: mpsc::UnboundedReceiver<Event>,
) -> Result<Outcome, ApiError> {
    let (mut scored, mut tokens) = (Vec::new(), Vec::new());
    loop {
        match rx.recv().await {
            Some(Event::Text(_)) => {}
            Some(Event::PromptLogprob(t)) => scored.push(t),
            Some(Event::Logprob(t)) => tokens.push(t),
            Some(Event::Done(finished)) => {
                return Ok(Outcome {
                    prompt,
                    scored,
                    tokens,
                    finished,
                })
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

/// What a streamed choice holds back: with `logprobs`, the text of a step until its token's log-probabilities come
/// (with tools, the whole reply). With tools and no log-probabilities, the reply is read as it is written
/// (`reader`): its answer and its calls' arguments are sent piece by piece. And its end, once it came.
#[derive(Default)]
struct Held {
    text: String,
    tokens: Vec<TokenLogprob>,
    offsets: Offsets,
    reader: ReplyReader,
    done: Option<Finished>,
}

/// The reply as server-sent events: a role chunk per choice (chat), each choice's text chunks as they come (told
/// apart by `index`), the chunk with each one's finish reason, the usage chunk if asked for, then `[DONE]`; an
/// error event if the engine fails a choice (which ends the stream and cancels the others). With `logprobs`, each
/// generated token's chunk carries the text its step released and that token's log-probabilities.
fn sse(
    reply: Reply,
    receivers: Vec<mpsc::UnboundedReceiver<Event>>,
    include_usage: bool,
) -> impl Stream<Item = Result<SseEvent, Infallible>> {
    let mut queue = VecDeque::new();
    if let Kind::Chat(_) = reply.kind {
        for index in 0..receivers.len() {
            let role = json!({"role": "assistant", "content": ""});
            queue.push_back(reply.chunk(index, role, None, Value::Null).to_string());
        }
    }
    let held: Vec<Held> = receivers.iter().map(|_| Held::default()).collect();
    let events = stream::select_all(receivers.into_iter().enumerate().map(|(index, rx)| {
        let events = stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|e| (e, rx)) });
        events.map(move |event| (index, event)).boxed()
    }));
    let state = (reply, events, queue, false, held);
    stream::unfold(
        state,
        move |(reply, mut events, mut queue, mut ended, mut held)| async move {
            loop {
                if let Some(data) = queue.pop_front() {
                    let event = SseEvent::default().data(data);
                    return Some((Ok(event), (reply, events, queue, ended, held)));
                }
                if ended {
                    return None;
                }
                ended = match events.next().await {
                    Some((index, event)) => reply.stream(index, event, &mut held, &mut queue),
                    None => true,
                };
                if ended && held.iter().all(|h| h.done.is_some()) {
                    if include_usage {
                        let done: Vec<&Finished> = held.iter().flat_map(|h| &h.done).collect();
                        let mut last = reply.chunk(0, json!({}), None, Value::Null);
                        last["choices"] = json!([]);
                        last["usage"] = usage(&done, reply.choices);
                        queue.push_back(last.to_string());
                    }
                    queue.push_back("[DONE]".into());
                }
            }
        },
    )
}

impl Reply {
    /// Turns one event of choice `index` into the chunks it sends; true when the stream ends (the engine failed
    /// the choice, or every choice is done).
    fn stream(
        &self,
        index: usize,
        event: Event,
        held: &mut [Held],
        queue: &mut VecDeque<String>,
    ) -> bool {
        let whole = matches!(self.kind, Kind::Chat(Some(_)));
        let choices = held.len();
        let h = &mut held[index];
        let mut push = |delta: Value, finish: Option<&str>, logprobs: Value| {
            queue.push_back(self.chunk(index, delta, finish, logprobs).to_string())
        };
        match event {
            Event::Text(t) if whole && !self.logprobs => {
                for part in h.reader.push(&t) {
                    push(self.part(index, part), None, Value::Null);
                }
            }
            Event::Text(t) if self.logprobs => h.text.push_str(&t),
            Event::Text(t) => push(json!({"content": t}), None, Value::Null),
            // (echo, which brings these, is refused with stream)
            Event::PromptLogprob(_) => {}
            Event::Logprob(t) if whole => h.tokens.push(t),
            Event::Logprob(t) => {
                let logprobs = self.logprobs(None, &[t], &mut h.offsets);
                push(
                    json!({"content": std::mem::take(&mut h.text)}),
                    None,
                    logprobs,
                );
            }
            Event::Done(f) => {
                log_reply(&self.choice_id(index, choices), &f);
                let mut finish = f.stop.finish_reason();
                if whole && !self.logprobs {
                    // all was sent as it was read but a text the reader could not place (a reply cut short
                    // before a call's name was whole)
                    match h.reader.reply() {
                        ToolReply::Calls(_) => finish = calls_finish(finish),
                        ToolReply::Content(content) => {
                            if h.reader.answer().is_none() && !content.is_empty() {
                                push(json!({"content": content}), None, Value::Null);
                            }
                        }
                    }
                } else if !h.text.is_empty() {
                    let logprobs = self.logprobs(None, &h.tokens, &mut h.offsets);
                    let text = std::mem::take(&mut h.text);
                    let delta = match &self.kind {
                        Kind::Chat(Some(tools)) => {
                            let (delta, reason) = self.message(index, tools, &text, finish, true);
                            finish = reason;
                            delta
                        }
                        _ => json!({"content": text}),
                    };
                    push(delta, None, logprobs);
                }
                let mut chunk = self.chunk(index, json!({}), Some(finish), Value::Null);
                chunk["timings"] = Timings::of(&f).json();
                queue.push_back(chunk.to_string());
                h.done = Some(f);
                return held.iter().all(|h| h.done.is_some());
            }
            Event::Failed(e) => {
                let error = ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e);
                queue.push_back(error.body().to_string());
                return true;
            }
        }
        false
    }

    /// How the log names choice `index` of the reply's `of`.
    fn choice_id(&self, index: usize, of: usize) -> String {
        match of {
            1 => self.id.clone(),
            _ => format!("{}[{index}]", self.id),
        }
    }

    /// A streamed chunk of choice `index`: a chat `delta` or a completion's `text`, with the finish reason on the
    /// last.
    fn chunk(&self, index: usize, delta: Value, finish: Option<&str>, logprobs: Value) -> Value {
        let choice = match self.kind {
            Kind::Chat(_) => {
                json!({"index": index, "delta": delta, "logprobs": logprobs, "finish_reason": finish})
            }
            Kind::Completion => json!({
                "index": index, "text": delta.get("content").cloned().unwrap_or(json!("")),
                "logprobs": logprobs, "finish_reason": finish,
            }),
        };
        json!({
            "id": self.id, "object": self.object(true), "created": self.created, "model": self.model,
            "choices": [choice],
        })
    }

    /// The non-streamed reply: a choice per prompt, with the generated tokens' log-probabilities if they were
    /// asked for, and with `echo` the prompt (as run: a BOS the server added included) before the completion.
    fn whole(&self, outcomes: &[Outcome]) -> Value {
        let choices: Vec<Value> = outcomes
            .iter()
            .enumerate()
            .map(|(index, o)| {
                let f = &o.finished;
                let finish = f.stop.finish_reason();
                let echoed = self.echo.then_some((o.prompt.as_slice(), o.scored.as_slice()));
                let logprobs = self.logprobs(echoed, &o.tokens, &mut Offsets::default());
                match &self.kind {
                    Kind::Chat(tools) => {
                        let (message, finish) = match tools {
                            Some(tools) => self.message(index, tools, &f.text, finish, false),
                            None => (json!({"role": "assistant", "content": f.text}), finish),
                        };
                        json!({"index": index, "message": message, "logprobs": logprobs, "finish_reason": finish})
                    }
                    Kind::Completion => {
                        let text = match self.echo {
                            true => self.tokenizer.decode(&o.prompt).unwrap_or_default() + &f.text,
                            false => f.text.clone(),
                        };
                        json!({"index": index, "text": text, "logprobs": logprobs, "finish_reason": finish})
                    }
                }
            })
            .collect();
        let mut whole = json!({
            "id": self.id, "object": self.object(false), "created": self.created, "model": self.model,
            "choices": choices, "usage": usage(&outcomes.iter().map(|o| &o.finished).collect::<Vec<_>>(), self.choices),
        });
        if let [one] = outcomes {
            whole["timings"] = Timings::of(&one.finished).json();
        }
        whole
    }

    /// A choice's `logprobs` for `tokens` (null unless asked for): chat's `content` list of tokens with their
    /// `top_logprobs`, or the legacy completion's parallel lists, whose `top_logprobs` maps hold the chosen
    /// token too, as OpenAI's do, and whose `text_offset`s count characters from the start of the text. With
    /// `echo` the lists start with the prompt (`echoed`: its ids and its scored tokens): its first token (null:
    /// nothing before it), then the scored ones.
    fn logprobs(
        &self,
        echoed: Option<(&[u32], &[TokenLogprob])>,
        tokens: &[TokenLogprob],
        offsets: &mut Offsets,
    ) -> Value {
        if !self.logprobs {
            return Value::Null;
        }
        let bytes = |id: u32| self.tokenizer.token_bytes(id).unwrap_or_default();
        let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
        match self.kind {
            Kind::Chat(_) => {
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
                let (ids, scored) = echoed.unwrap_or_default();
                let entries: Vec<(u32, Option<&TokenLogprob>)> = ids
                    .first()
                    .map(|&id| (id, None))
                    .into_iter()
                    .chain(scored.iter().chain(tokens).map(|t| (t.id, Some(t))))
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

    /// The id of choice `choice`'s `i`th tool call (unique in the reply).
    fn call_id(&self, choice: usize, i: usize) -> String {
        let request = self.id.trim_start_matches("chatcmpl-");
        match choice {
            0 => call_id(request, i),
            c => call_id(format!("{request}_{c}"), i),
        }
    }

    /// What a part of choice `choice` read as it is written adds to a streamed message: a `delta` with more of
    /// the answer's `content`, a call's start (its id and name) or more of its arguments.
    fn part(&self, choice: usize, part: ReplyPart) -> Value {
        match part {
            ReplyPart::Answer(text) => json!({"content": text}),
            ReplyPart::Call { index, name } => json!({"tool_calls": [{
                "index": index, "id": self.call_id(choice, index),
                "type": "function", "function": {"name": name, "arguments": ""}}]}),
            ReplyPart::Arguments { index, text } => {
                json!({"tool_calls": [{"index": index, "function": {"arguments": text}}]})
            }
        }
    }

    /// Choice `choice`, written under `tools`, as a chat message (a stream's `delta` when `delta`): its answer as
    /// `content`, or its calls as `tool_calls` with the finish reason `tool_calls`.
    fn message(
        &self,
        choice: usize,
        tools: &Tools,
        text: &str,
        finish: &'static str,
        delta: bool,
    ) -> (Value, &'static str) {
        let reply = tools.read(text);
        let finish = match reply {
            ToolReply::Calls(_) => calls_finish(finish),
            ToolReply::Content(_) => finish,
        };
        let mut message = reply.message(|i| self.call_id(choice, i));
        if delta {
            message = match message.get_mut("tool_calls") {
                Some(Value::Array(calls)) => {
                    for (i, call) in calls.iter_mut().enumerate() {
                        call["index"] = json!(i);
                    }
                    json!({"tool_calls": calls})
                }
                _ => json!({"content": message["content"].take()}),
            };
        }
        (message, finish)
    }

    fn object(&self, chunk: bool) -> &'static str {
        match (&self.kind, chunk) {
            (Kind::Chat(_), true) => "chat.completion.chunk",
            (Kind::Chat(_), false) => "chat.completion",
            (Kind::Completion, _) => "text_completion",
        }
    }
}

/// The finish reason of a reply that calls tools and ended for `finish`: `tool_calls`, unless the token limit cut
/// it (its last call's arguments are then cut short too), as OpenAI reports it.
pub(super) fn calls_finish(finish: &'static str) -> &'static str {
    match finish {
        "length" => "length",
        _ => "tool_calls",
    }
}

/// The id of a reply's `i`th tool call (`request`: the reply's number).
pub(super) fn call_id(request: impl std::fmt::Display, i: usize) -> String {
    format!("call_{request}_{i}")
}

/// Token counts of a reply's choices (`choices` a prompt, each prompt's together): generated tokens summed over
/// all, prompt tokens once a prompt (its first choice's, as OpenAI counts them).
pub(super) fn usage(finished: &[&Finished], choices: usize) -> Value {
    let completion = finished.iter().map(|f| f.ids.len()).sum::<usize>();
    let (mut prompt, mut cached) = (0, 0);
    for f in finished.iter().step_by(choices) {
        prompt += f.prompt_tokens;
        cached += f.cached_tokens;
    }
    json!({
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": cached},
    })
}

/// A finished request's times as llama-server reports them (`timings`): its prompt (`prompt_ms` from submission,
/// queueing included, to the first generated token; `cache_n` tokens of it found in the slot) and its generation
/// (`predicted_ms` from the first generated token to the last, so its rate counts the tokens after the first).
pub(super) struct Timings {
    cache_n: usize,
    prompt_n: usize,
    pub prompt_ms: f64,
    predicted_n: usize,
    predicted_ms: f64,
}

impl Timings {
    pub fn of(f: &Finished) -> Self {
        let ms = |d: std::time::Duration| d.as_secs_f64() * 1e3;
        Self {
            cache_n: f.cached_tokens,
            prompt_n: f.prompt_tokens - f.cached_tokens,
            prompt_ms: ms(f.first_token),
            predicted_n: f.ids.len(),
            predicted_ms: ms(f.elapsed.saturating_sub(f.first_token)),
        }
    }

    /// Tokens generated a second after the first.
    pub fn predicted_per_second(&self) -> f64 {
        rate(self.predicted_n.saturating_sub(1), self.predicted_ms)
    }

    /// llama-server's `timings` object.
    pub fn json(&self) -> Value {
        let per_token = |n: usize, ms: f64| match n {
            0 => 0.0,
            n => ms / n as f64,
        };
        let steps = self.predicted_n.saturating_sub(1);
        json!({
            "cache_n": self.cache_n,
            "prompt_n": self.prompt_n, "prompt_ms": self.prompt_ms,
            "prompt_per_token_ms": per_token(self.prompt_n, self.prompt_ms),
            "prompt_per_second": rate(self.prompt_n, self.prompt_ms),
            "predicted_n": self.predicted_n, "predicted_ms": self.predicted_ms,
            "predicted_per_token_ms": per_token(steps, self.predicted_ms),
            "predicted_per_second": self.predicted_per_second(),
        })
    }
}

/// `n` in `ms` milliseconds, a second (0 for no time).
fn rate(n: usize, ms: f64) -> f64 {
    match ms > 0.0 {
        true => n as f64 * 1e3 / ms,
        false => 0.0,
    }
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
