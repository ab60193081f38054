//! llama-server's own `POST /completion`, which tools written for llama.cpp's server send: `prompt` (text or token
//! ids), `n_predict` (-1: no limit) and the sampling parameters by llama.cpp's names (those `/v1/completions`
//! takes too: `temperature`, `top_k`, `stop`, `seed` (-1: random), `grammar`, `json_schema`, `cache_prompt`...).
//! The reply is llama-server's result object (`content`, `stop`, `stop_type`, `tokens_predicted`,
//! `tokens_evaluated`, `tokens_cached`, `generation_settings`, `timings`...); streamed, an event per generated token
//! (`content`, its `tokens`, `stop: false`), then the result with `stop: true`, and no `[DONE]`.

use std::convert::Infallible;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::response::sse::{Event as SseEvent, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use bitnet_burn::engine::{Event, Finished};
use bitnet_burn::text::generate::StopReason;
use bitnet_burn::text::sampling::SamplerConfig;
use futures_util::stream::{self, Stream};
use serde_json::{json, Value};
use tokio::sync::mpsc;

use super::completions::{outcome, parameters, submit, Timings};
use super::error::ApiError;
use super::params::{self, Common, Scoring};
use super::{body, log_reply, AppState};

/// `POST /completion`.
pub async fn completion(
    State(state): State<Arc<AppState>>,
    raw: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let ready = state.ready()?;
    let mut value = params::object(&body(raw)?)?;
    llama_names(&mut value)?;
    let (common, sampler) = parameters(ready, &value)?;
    let list = value["prompt"].as_array();
    if list.is_some_and(|l| l.len() > 1 && !l[0].is_number()) {
        let message = "prompt: one prompt a request here (/v1/completions takes a list)";
        return Err(ApiError::bad_request(message).param("prompt"));
    }
    let prompt = match params::prompts(&value, 1)?.pop() {
        Some(prompt) => prompt,
        None => return Err(ApiError::bad_request("prompt: nothing to complete").param("prompt")),
    };
    let encode = |text: &str| {
        ready
            .tokenizer
            .encode(text, true)
            .map_err(|e| ApiError::bad_request(e.to_string()).param("prompt"))
    };
    let prompt = params::prompt_ids(vec![prompt], encode)?.remove(0);
    // streamed events name their token: the engine reports ids with log-probabilities
    let scoring = Scoring {
        logprobs: common.stream.then_some(0),
        echo: false,
    };
    let rx = submit(ready, &prompt, (&common, &sampler), &scoring, 0)?;
    let id = format!(
        "cmpl-{}",
        state
            .next_id
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    );
    let result = Shared {
        prompt_tokens: prompt.len(),
        model: ready.names[0].clone(),
        prompt: ready.tokenizer.decode(&prompt).unwrap_or_default(),
        settings: settings(&common, &sampler),
        return_tokens: value["return_tokens"].as_bool().unwrap_or(false),
        id,
    };
    if common.stream {
        return Ok(Sse::new(events(Arc::new(result), rx)).into_response());
    }
    let done = outcome(prompt, rx).await?.finished;
    log_reply(&result.id, &done);
    Ok(Json(result.of(&done, &done.text)).into_response())
}

/// Turns llama-server's spellings into the ones [`Common`] reads: `n_predict` into `max_tokens` (a negative one
/// for no limit), a seed of -1 (random) left out, `logit_bias` as `[[id, bias], ...]` into an object.
fn llama_names(value: &mut Value) -> Result<(), ApiError> {
    let body = value.as_object_mut().expect("an object");
    if let Some(n) = body.remove("n_predict") {
        match n.as_i64() {
            Some(n) if n < 0 => {}
            Some(n) => {
                body.insert("max_tokens".into(), n.into());
            }
            None => {
                let message = format!("n_predict: an integer expected, found {n}");
                return Err(ApiError::bad_request(message).param("n_predict"));
            }
        }
    }
    if body.get("seed").and_then(Value::as_i64) == Some(-1) {
        body.remove("seed");
    }
    if let Some(Value::Array(pairs)) = body.get("logit_bias") {
        let pair = |p: &Value| Some((p.get(0)?.as_u64()?.to_string(), p.get(1)?.clone()));
        let object: Option<serde_json::Map<String, Value>> = pairs.iter().map(pair).collect();
        let Some(object) = object else {
            let message =
                "logit_bias: [token id, bias] pairs or an object of token id to bias expected";
            return Err(ApiError::bad_request(message).param("logit_bias"));
        };
        body.insert("logit_bias".into(), Value::Object(object));
    }
    // one result a request here
    body.remove("n");
    Ok(())
}

/// llama-server's `generation_settings`: what a request was run with.
pub(super) fn settings(common: &Common, sampler: &SamplerConfig) -> Value {
    json!({
        "n_predict": common.max_tokens.map_or(-1, |n| n as i64),
        "seed": sampler.seed,
        "temperature": sampler.temperature,
        "top_k": sampler.top_k,
        "top_p": sampler.top_p,
        "min_p": sampler.min_p,
        "repeat_penalty": sampler.repeat_penalty,
        "presence_penalty": sampler.presence_penalty,
        "frequency_penalty": sampler.frequency_penalty,
        "stop": common.stops(),
        "ignore_eos": common.ignore_eos,
        "stream": common.stream,
    })
}

/// What every result object of a request shares.
struct Shared {
    id: String,
    prompt_tokens: usize,
    model: String,
    prompt: String,
    settings: Value,
    return_tokens: bool,
}

impl Shared {
    /// The final result, with `content`.
    fn of(&self, f: &Finished, content: &str) -> Value {
        let (stop_type, word) = match &f.stop {
            StopReason::StopToken(_) | StopReason::FormatComplete => ("eos", ""),
            StopReason::StopString(word) => ("word", word.as_str()),
            StopReason::MaxTokens | StopReason::ContextFull => ("limit", ""),
        };
        let shown = match f.stop {
            StopReason::StopToken(_) => &f.ids[..f.ids.len() - 1],
            _ => &f.ids[..],
        };
        let tokens = if self.return_tokens { shown } else { &[] };
        json!({
            "index": 0,
            "content": content,
            "tokens": tokens,
            "stop": true,
            "model": self.model,
            "tokens_predicted": f.ids.len(),
            "tokens_evaluated": f.prompt_tokens,
            "generation_settings": self.settings,
            "prompt": self.prompt,
            "has_new_line": f.text.contains('\n'),
            "truncated": false,
            "stop_type": stop_type,
            "stopping_word": word,
            "tokens_cached": f.cached_tokens,
            "timings": Timings::of(f).json(),
        })
    }
}

/// The streamed events: one per generated token, with the text its step released; then the final result, holding
/// any text released at the end; an error object if the engine fails the request.
fn events(
    result: Arc<Shared>,
    rx: mpsc::UnboundedReceiver<Event>,
) -> impl Stream<Item = Result<SseEvent, Infallible>> {
    let data = |v: Value| Ok(SseEvent::default().data(v.to_string()));
    stream::unfold(
        (Some(rx), String::new(), 0usize),
        move |(rx, mut text, mut predicted)| {
            let result = result.clone();
            async move {
                let mut rx = rx?;
                let last = loop {
                    match rx.recv().await {
                        Some(Event::Text(t)) => text.push_str(&t),
                        Some(Event::PromptLogprob(_)) => {}
                        Some(Event::Logprob(t)) => {
                            predicted += 1;
                            let chunk = json!({"index": 0, "content": std::mem::take(&mut text),
                            "tokens": [t.id], "stop": false, "tokens_predicted": predicted,
                            "tokens_evaluated": result.prompt_tokens});
                            return Some((data(chunk), (Some(rx), text, predicted)));
                        }
                        Some(Event::Done(f)) => {
                            log_reply(&result.id, &f);
                            break result.of(&f, &text);
                        }
                        Some(Event::Failed(message)) => break failure(&message),
                        None => break failure("the engine stopped before the reply was complete"),
                    }
                };
                Some((data(last), (None, String::new(), predicted)))
            }
        },
    )
}

/// An error object ending a stream.
fn failure(message: &str) -> Value {
    json!({"error": {"code": 500, "message": message, "type": "server_error"}})
}
