//! OpenAI's chat messages as a chat template's: tool calls and results written as text, in the format the reply
//! is held to, and the tools described in the system message.

use serde_json::{json, Value};

use super::{error, ToolCall, Tools, ToolsError};
use crate::text::chat::Message;

/// OpenAI's chat `messages` as the template's messages: `developer` read as `system`, text parts joined, an
/// assistant turn's `tool_calls` and each `tool` turn (a user turn naming the tool it answers) written as text,
/// and with `tools` their description added to the system message (one is put first if there is none).
pub fn messages(messages: &Value, tools: Option<&Tools>) -> Result<Vec<Message>, ToolsError> {
    let list = match messages {
        Value::Array(list) if !list.is_empty() => list,
        Value::Array(_) => return Err(error("messages", "at least one message is needed")),
        _ => return Err(error("messages", "must be a list of messages")),
    };
    // calls by id, so a tool turn can name the tool it answers
    let mut called: Vec<(&str, &str)> = Vec::new();
    let mut out = Vec::with_capacity(list.len() + 1);
    for (i, m) in list.iter().enumerate() {
        let at = |field: &str| format!("messages[{i}]{field}");
        let text = text_content(m.get("content"), &at(".content"), &["text"])?;
        let role = match m.get("role").and_then(Value::as_str) {
            Some("system" | "developer") => "system",
            Some("user") => "user",
            Some("assistant") => "assistant",
            Some("tool") => {
                let id = m
                    .get("tool_call_id")
                    .and_then(Value::as_str)
                    .ok_or_else(|| {
                        error(at(".tool_call_id"), "a tool turn needs one (a string)")
                    })?;
                let name = called.iter().find(|(c, _)| *c == id).map(|&(_, n)| n);
                out.push(Message::new("user", result_text(name, &text)));
                continue;
            }
            Some(other) => {
                return Err(error(
                    at(".role"),
                    format!("{other:?} is not one of system, developer, user, assistant, tool"),
                ))
            }
            None => return Err(error(at(""), "must be an object with a string role")),
        };
        let calls = match m.get("tool_calls") {
            Some(Value::Array(calls)) if !calls.is_empty() && role == "assistant" => calls,
            _ => {
                out.push(Message::new(role, text));
                continue;
            }
        };
        let calls = calls
            .iter()
            .enumerate()
            .map(|(j, c)| {
                let field = |f: &str| c.pointer(f).and_then(Value::as_str);
                let (Some(name), Some(arguments)) =
                    (field("/function/name"), field("/function/arguments"))
                else {
                    return Err(error(
                        at(&format!(".tool_calls[{j}]")),
                        "must be {\"id\", \"type\": \"function\", \"function\": {\"name\", \"arguments\"}} with strings",
                    ));
                };
                called.extend(field("/id").map(|id| (id, name)));
                Ok(ToolCall {
                    name: name.into(),
                    arguments: arguments.into(),
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let parallel = tools.is_some_and(Tools::parallel);
        out.push(Message::new(role, calls_text(&calls, parallel)));
    }
    if let Some(tools) = tools {
        match out.first_mut() {
            Some(first) if first.role == "system" => {
                first.content = format!("{}\n\n{}", first.content, tools.instructions())
            }
            _ => out.insert(0, Message::new("system", tools.instructions())),
        }
    }
    Ok(out)
}

/// A message's `content` (at `at`) as text: a string, its parts of the `text` kinds joined, or nothing.
pub fn text_content(
    content: Option<&Value>,
    at: &str,
    text: &[&str],
) -> Result<String, ToolsError> {
    match content {
        None | Some(Value::Null) => Ok(String::new()),
        Some(Value::String(t)) => Ok(t.clone()),
        Some(Value::Array(parts)) => parts
            .iter()
            .enumerate()
            .map(|(j, p)| {
                let kind = p.get("type").and_then(Value::as_str);
                match (kind, p.get("text")) {
                    (Some(k), Some(Value::String(t))) if text.contains(&k) => Ok(t.as_str()),
                    _ => Err(error(
                        format!("{at}[{j}]"),
                        format!(
                            "parts of type {:?} are not supported (text parts only)",
                            kind.unwrap_or("(none)")
                        ),
                    )),
                }
            })
            .collect::<Result<String, _>>(),
        Some(_) => Err(error(at, "must be a string or a list of text parts")),
    }
}

/// Earlier calls of an assistant turn, written as the model is asked to write them (`parallel`: as a list even
/// when there is one).
pub(super) fn calls_text(calls: &[ToolCall], parallel: bool) -> String {
    let call = |c: &ToolCall| {
        let arguments = serde_json::from_str(&c.arguments).unwrap_or(json!(c.arguments));
        json!({"name": c.name, "arguments": arguments})
    };
    match (parallel, calls) {
        (false, [one]) => json!({"tool_call": call(one)}),
        _ => json!({"tool_calls": calls.iter().map(call).collect::<Vec<_>>()}),
    }
    .to_string()
}

/// A tool's result, written as the user turn that brings it back (templates without a tool role read it).
pub(super) fn result_text(name: Option<&str>, content: &str) -> String {
    let mut result = json!({"content": content});
    if let Some(name) = name {
        result["tool"] = json!(name);
    }
    json!({ "tool_response": result }).to_string()
}
