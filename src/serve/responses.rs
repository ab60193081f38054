//! `POST /v1/responses`: OpenAI's Responses API. The request is read into the chat completion it amounts to
//! (input items as messages, after those of the `previous_response_id`'s conversation; `instructions` as the
//! system message, function tools, `text.format` as `response_format`), run as one, and answered as a `response`
//! object, or streamed as its typed events (`response.created` ... `response.output_text.delta` ...
//! `response.completed`); unless `store` is false, the response is kept ([`super::stored`]) for a follow-up and
//! for `GET`/`DELETE /v1/responses/{id}`.

use std::convert::Infallible;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::sse::{Event as SseEvent, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use bitnet_burn::engine::{Event, Finished};
use bitnet_burn::text::tools::{self, ReplyPart, ReplyReader, ToolCall, ToolReply, Tools};
use futures_util::stream::{self, Stream};
use serde_json::{json, Map, Value};
use tokio::sync::mpsc;

use super::completions::{call_id, outcome, submit, usage};
use super::error::ApiError;
use super::params::{self, Common, Scoring};
use super::{body, log_reply, AppState};

/// Parameters passed on as they are (the Responses API's own, and the sampling extensions the chat endpoint
/// takes).
const PASSED: &[&str] = &[
    "model",
    "stream",
    "temperature",
    "top_p",
    "top_k",
    "min_p",
    "seed",
    "stop",
    "presence_penalty",
    "frequency_penalty",
    "repeat_penalty",
    "logit_bias",
    "cache_prompt",
    "parallel_tool_calls",
];

/// `POST /v1/responses`.
pub async fn responses(
    State(state): State<Arc<AppState>>,
    raw: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let ready = state.ready()?;
    let request = params::object(&body(raw)?)?;
    let store = match request.get("store") {
        None | Some(Value::Null) => true,
        Some(Value::Bool(store)) => *store,
        Some(_) => {
            return Err(ApiError::bad_request("store: must be a boolean").param("store"));
        }
    };
    let mut conversation = match request.get("previous_response_id") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::String(id)) => {
            state.stored().items(id).map(<[_]>::to_vec).ok_or_else(|| {
                ApiError::bad_request(format!("Previous response with id '{id}' not found."))
                    .param("previous_response_id")
                    .code("previous_response_not_found")
            })?
        }
        Some(_) => {
            return Err(
                ApiError::bad_request("previous_response_id: must be a string")
                    .param("previous_response_id"),
            )
        }
    };
    let earlier = conversation.len();
    conversation.extend(input(&request)?);
    let chat = as_chat(&request, &conversation, earlier)?;
    let common: Common = params::read(&chat)?;
    let sampler = common.validate(&ready.names, ready.engine.vocab())?;
    let tools = common.tools()?;
    let messages = params::messages(&chat, tools.as_ref())?;
    let prompt = ready
        .template
        .encode(&messages, &ready.tokenizer)
        .map_err(|e| ApiError::bad_request(e.to_string()).param("input"))?;
    let scoring = Scoring {
        logprobs: None,
        echo: false,
    };
    let rx = submit(ready, &prompt, (&common, &sampler), &scoring, 0)
        .map_err(|e| e.prompt_in("input"))?;
    let n = state.next_id.fetch_add(1, Ordering::Relaxed);
    let reply = Reply {
        id: format!("resp_{:016x}{n}", state.nonce),
        n,
        created: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
        model: ready.names[0].clone(),
        echo: echoed(&request, &common, store),
        tools,
        kept: store.then(|| (Arc::clone(&state), conversation)),
    };
    if common.stream {
        return Ok(Sse::new(events(reply, rx)).into_response());
    }
    let done = outcome(prompt, rx).await?;
    let f = &done.finished;
    log_reply(&reply.id, f);
    let output = reply.output(&f.text, status(f));
    let object = reply.object(status(f), output, Some(f));
    reply.keep(&object);
    Ok(Json(object).into_response())
}

/// `GET /v1/responses/{id}`: a kept response.
pub async fn retrieve(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    match state.stored().response(&id) {
        Some(response) => Ok(Json(response.clone()).into_response()),
        None => Err(not_found(&id)),
    }
}

/// `DELETE /v1/responses/{id}`: forgets a kept response.
pub async fn delete(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    match state.stored().remove(&id) {
        true => Ok(Json(json!({"id": id, "object": "response", "deleted": true})).into_response()),
        false => Err(not_found(&id)),
    }
}

fn not_found(id: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        format!("Response with id '{id}' not found."),
    )
}

/// The request's `input` as input items (a string is one user message).
fn input(request: &Value) -> Result<Vec<Value>, ApiError> {
    match request.get("input") {
        Some(Value::String(text)) => Ok(vec![json!({"role": "user", "content": text})]),
        Some(Value::Array(items)) => Ok(items.clone()),
        _ => Err(
            ApiError::bad_request("input: must be a string or a list of input items")
                .param("input"),
        ),
    }
}

/// The chat completion request a Responses request amounts to, over the conversation's input `items` (the
/// first `earlier` from the previous response, the rest the request's `input`).
fn as_chat(request: &Value, items: &[Value], earlier: usize) -> Result<Value, ApiError> {
    let bad = |param: &'static str, message: String| ApiError::bad_request(message).param(param);
    let mut chat = Map::new();
    for &key in PASSED {
        if let Some(v) = request.get(key).filter(|v| !v.is_null()) {
            chat.insert(key.into(), v.clone());
        }
    }
    if let Some(most) = request.get("max_output_tokens").filter(|v| !v.is_null()) {
        chat.insert("max_tokens".into(), most.clone());
    }
    let mut messages = Vec::new();
    match request.get("instructions") {
        None | Some(Value::Null) => {}
        Some(Value::String(text)) => messages.push(json!({"role": "system", "content": text})),
        Some(_) => return Err(bad("instructions", "instructions: must be a string".into())),
    }
    for (i, item) in items.iter().enumerate() {
        // (the previous response's items were read when it was made)
        let at = format!("input[{}]", i.wrapping_sub(earlier));
        input_item(item, &at, &mut messages).map_err(|message| bad("input", message))?;
    }
    chat.insert("messages".into(), Value::Array(messages));
    if let Some(list) = request.get("tools").filter(|v| !v.is_null()) {
        let list = list
            .as_array()
            .ok_or_else(|| bad("tools", "tools: must be a list".into()))?;
        let tools = list
            .iter()
            .enumerate()
            .map(|(i, tool)| match tool.get("type").and_then(Value::as_str) {
                Some("function") => {
                    let mut function = tool.clone();
                    if let Some(f) = function.as_object_mut() {
                        f.remove("type");
                        f.remove("strict");
                    }
                    Ok(json!({"type": "function", "function": function}))
                }
                other => Err(bad(
                    "tools",
                    format!("tools[{i}].type: {other:?} is not supported (function tools only)"),
                )),
            })
            .collect::<Result<Vec<_>, _>>()?;
        chat.insert("tools".into(), Value::Array(tools));
    }
    if let Some(choice) = request.get("tool_choice").filter(|v| !v.is_null()) {
        let choice = match choice.get("name") {
            Some(name) => json!({"type": "function", "function": {"name": name}}),
            None => choice.clone(),
        };
        chat.insert("tool_choice".into(), choice);
    }
    if let Some(format) = request.pointer("/text/format").filter(|v| !v.is_null()) {
        let format = match format.get("type").and_then(Value::as_str) {
            Some("json_schema") => json!({"type": "json_schema", "json_schema": {
                "name": format.get("name"), "schema": format.get("schema")}}),
            _ => format.clone(),
        };
        chat.insert("response_format".into(), format);
    }
    Ok(Value::Object(chat))
}

/// One input item as a chat message: a message (`role` and text content), a `function_call` (joined to the
/// assistant turn before it when that one is calls too) or a `function_call_output`.
fn input_item(item: &Value, at: &str, messages: &mut Vec<Value>) -> Result<(), String> {
    let field = |name: &str| item.get(name).and_then(Value::as_str);
    let kind = field("type").unwrap_or("message");
    match kind {
        "message" => {
            let kinds = ["input_text", "output_text", "text"];
            let content =
                tools::text_content(item.get("content"), &format!("{at}.content"), &kinds)
                    .map_err(|e| e.to_string())?;
            let role = match field("role") {
                Some(role @ ("user" | "assistant" | "system" | "developer")) => role,
                _ => {
                    return Err(format!(
                        "{at}.role: must be user, assistant, system or developer"
                    ))
                }
            };
            messages.push(json!({"role": role, "content": content}));
        }
        "function_call" => {
            let (Some(id), Some(name), Some(arguments)) =
                (field("call_id"), field("name"), field("arguments"))
            else {
                return Err(format!(
                    "{at}: a function_call needs call_id, name and arguments (strings)"
                ));
            };
            let call = json!({"id": id, "type": "function", "function": {"name": name, "arguments": arguments}});
            let last = messages.last_mut().filter(|m| {
                m["role"] == "assistant" && m["tool_calls"].is_array() && m["content"].is_null()
            });
            match last.and_then(|m| m["tool_calls"].as_array_mut()) {
                Some(calls) => calls.push(call),
                None => messages
                    .push(json!({"role": "assistant", "content": null, "tool_calls": [call]})),
            }
        }
        "function_call_output" => {
            let (Some(id), Some(output)) = (field("call_id"), field("output")) else {
                return Err(format!(
                    "{at}: a function_call_output needs call_id and output (strings)"
                ));
            };
            messages.push(json!({"role": "tool", "tool_call_id": id, "content": output}));
        }
        other => {
            return Err(format!(
            "{at}.type: {other:?} is not supported (message, function_call, function_call_output)"
        ))
        }
    }
    Ok(())
}

/// The request's settings a `response` object repeats.
fn echoed(request: &Value, common: &Common, store: bool) -> Value {
    let get = |key: &str| request.get(key).cloned().unwrap_or(Value::Null);
    let tools = request.get("tools").filter(|v| v.is_array());
    let format = request
        .pointer("/text/format")
        .cloned()
        .unwrap_or(json!({"type": "text"}));
    json!({
        "instructions": get("instructions"),
        "max_output_tokens": get("max_output_tokens"),
        "parallel_tool_calls": common.parallel_tool_calls.unwrap_or(false),
        "temperature": common.temperature(),
        "top_p": common.top_p(),
        "tool_choice": request.get("tool_choice").cloned().unwrap_or(json!("auto")),
        "tools": tools.cloned().unwrap_or(json!([])),
        "text": {"format": format},
        "metadata": request.get("metadata").cloned().unwrap_or(json!({})),
        "previous_response_id": get("previous_response_id"),
        "store": store,
    })
}

/// `completed`, or `incomplete` when the token limit cut the reply.
fn status(f: &Finished) -> &'static str {
    match f.stop.finish_reason() {
        "length" => "incomplete",
        _ => "completed",
    }
}

/// What every event and object of one response shares.
struct Reply {
    id: String,
    n: u64,
    created: u64,
    model: String,
    echo: Value,
    tools: Option<Tools>,
    /// Where the finished response is kept, with the conversation's input items (unless `store` is false).
    kept: Option<(Arc<AppState>, Vec<Value>)>,
}

impl Reply {
    /// Keeps the finished response `object` with its conversation: the input items, then its output items.
    fn keep(&self, object: &Value) {
        if let Some((state, conversation)) = &self.kept {
            let mut items = conversation.clone();
            items.extend(object["output"].as_array().into_iter().flatten().cloned());
            state.stored().insert(object.clone(), items);
        }
    }

    /// The `response` object: `status`, the output items so far, and with the finished request its usage.
    fn object(&self, status: &str, output: Vec<Value>, finished: Option<&Finished>) -> Value {
        let mut object = json!({
            "id": self.id, "object": "response", "created_at": self.created, "status": status,
            "model": self.model, "output": output, "error": null,
            "incomplete_details": (status == "incomplete").then(|| json!({"reason": "max_output_tokens"})),
            "usage": finished.map(|f| {
                let u = usage(&[f], 1);
                json!({
                    "input_tokens": u["prompt_tokens"], "output_tokens": u["completion_tokens"],
                    "total_tokens": u["total_tokens"],
                    "input_tokens_details": {"cached_tokens": u["prompt_tokens_details"]["cached_tokens"]},
                    "output_tokens_details": {"reasoning_tokens": 0},
                })
            }),
        });
        if let (Some(object), Some(echo)) = (object.as_object_mut(), self.echo.as_object()) {
            object.extend(echo.clone());
        }
        object
    }

    /// The output items of a reply's whole text: its calls, or a message with its answer (`status` the
    /// response's: a message cut short is `incomplete`).
    fn output(&self, text: &str, status: &str) -> Vec<Value> {
        let reply = match &self.tools {
            Some(tools) => tools.read(text),
            None => ToolReply::Content(text.into()),
        };
        match reply {
            ToolReply::Content(answer) => vec![self.message(status, &answer)],
            ToolReply::Calls(calls) => calls
                .iter()
                .enumerate()
                .map(|(i, call)| self.call(i, call, status))
                .collect(),
        }
    }

    /// A message item holding `text`.
    fn message(&self, status: &str, text: &str) -> Value {
        let content = match status {
            "in_progress" => json!([]),
            _ => json!([self.part(text)]),
        };
        json!({"type": "message", "id": format!("msg_{}", self.n), "status": status, "role": "assistant",
               "content": content})
    }

    /// An `output_text` content part.
    fn part(&self, text: &str) -> Value {
        json!({"type": "output_text", "text": text, "annotations": [], "logprobs": []})
    }

    /// The id of the `i`th function call item.
    fn call_item(&self, i: usize) -> String {
        format!("fc_{}_{i}", self.n)
    }

    /// The `i`th function call item.
    fn call(&self, i: usize, call: &ToolCall, status: &str) -> Value {
        let arguments = if status == "in_progress" {
            ""
        } else {
            &call.arguments
        };
        json!({"type": "function_call", "id": self.call_item(i),
               "call_id": call_id(self.n, i), "name": call.name, "arguments": arguments,
               "status": status})
    }
}

/// The response as its typed server-sent events, ending with `response.completed` (or `response.incomplete`); an
/// `error` event if the engine fails the request. A text answer is sent as it is written, and so is each call
/// (its item once its name is whole, then its arguments piece by piece).
fn events(
    reply: Reply,
    rx: mpsc::UnboundedReceiver<Event>,
) -> impl Stream<Item = Result<SseEvent, Infallible>> {
    let (tx, out) = mpsc::unbounded_channel();
    tokio::spawn(emit(reply, rx, tx));
    stream::unfold(out, |mut out| async move {
        let event = out.recv().await?;
        Some((Ok(event), out))
    })
}

/// Sends the events of one response into `tx` until the request ends or the client goes (dropping `rx` then
/// cancels the request).
async fn emit(
    reply: Reply,
    mut rx: mpsc::UnboundedReceiver<Event>,
    tx: mpsc::UnboundedSender<SseEvent>,
) {
    let mut sequence = 0u64;
    let mut send = |kind: &str, mut data: Value| {
        data["type"] = json!(kind);
        data["sequence_number"] = json!(sequence);
        sequence += 1;
        tx.send(SseEvent::default().event(kind).data(data.to_string()))
            .is_ok()
    };
    let (item, message) = (format!("msg_{}", reply.n), reply.message("in_progress", ""));
    let at = |delta: Value| {
        let mut e = json!({"item_id": item, "output_index": 0, "content_index": 0});
        if let (Some(e), Some(d)) = (e.as_object_mut(), delta.as_object()) {
            e.extend(d.clone());
        }
        e
    };
    let start = json!({"response": reply.object("in_progress", vec![], None)});
    if !send("response.created", start.clone()) || !send("response.in_progress", start) {
        return;
    }
    let (mut reader, mut sent, mut open) = (ReplyReader::default(), 0, false);
    let open_message = |send: &mut dyn FnMut(&str, Value) -> bool, open: &mut bool| {
        let was = *open;
        *open = true;
        was || send(
            "response.output_item.added",
            json!({"output_index": 0, "item": message}),
        ) && send(
            "response.content_part.added",
            at(json!({"part": reply.part("")})),
        )
    };
    loop {
        match rx.recv().await {
            Some(Event::Text(t)) => {
                let parts = match &reply.tools {
                    Some(_) => reader.push(&t),
                    None => vec![ReplyPart::Answer(t)],
                };
                for part in parts {
                    let ok = match part {
                        ReplyPart::Answer(new) => {
                            sent += new.len();
                            open_message(&mut send, &mut open)
                                && send(
                                    "response.output_text.delta",
                                    at(json!({"delta": new, "logprobs": []})),
                                )
                        }
                        ReplyPart::Call { index, name } => {
                            let call = ToolCall {
                                name,
                                arguments: String::new(),
                            };
                            let item = reply.call(index, &call, "in_progress");
                            send(
                                "response.output_item.added",
                                json!({"output_index": index, "item": item}),
                            )
                        }
                        ReplyPart::Arguments { index, text } => send(
                            "response.function_call_arguments.delta",
                            json!({"item_id": reply.call_item(index), "output_index": index,
                                   "delta": text}),
                        ),
                    };
                    if !ok {
                        return;
                    }
                }
            }
            Some(Event::PromptLogprob(_) | Event::Logprob(_)) => {}
            Some(Event::Done(f)) => {
                log_reply(&reply.id, &f);
                let status = status(&f);
                let output = reply.output(&f.text, status);
                for (index, item) in output.iter().enumerate() {
                    let ok = match item["type"].as_str() {
                        Some("message") => {
                            let whole = item["content"][0]["text"].as_str().unwrap_or_default();
                            let rest = whole.get(sent..).unwrap_or_default();
                            open_message(&mut send, &mut open)
                                && (rest.is_empty()
                                    || send(
                                        "response.output_text.delta",
                                        at(json!({"delta": rest, "logprobs": []})),
                                    ))
                                && send(
                                    "response.output_text.done",
                                    at(json!({"text": whole, "logprobs": []})),
                                )
                                && send(
                                    "response.content_part.done",
                                    at(json!({"part": item["content"][0]})),
                                )
                        }
                        // every call was announced and its arguments sent as they were read
                        _ => send(
                            "response.function_call_arguments.done",
                            json!({"item_id": item["id"], "output_index": index,
                                   "arguments": item["arguments"]}),
                        ),
                    };
                    if !ok
                        || !send(
                            "response.output_item.done",
                            json!({"output_index": index, "item": item}),
                        )
                    {
                        return;
                    }
                }
                let last = match status {
                    "incomplete" => "response.incomplete",
                    _ => "response.completed",
                };
                let object = reply.object(status, output, Some(&f));
                reply.keep(&object);
                send(last, json!({"response": object}));
                return;
            }
            Some(Event::Failed(e)) => {
                let error = ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e).body();
                send("error", error["error"].clone());
                return;
            }
            None => return,
        }
    }
}
