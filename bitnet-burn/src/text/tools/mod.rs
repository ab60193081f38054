//! Function calling (OpenAI's `tools`) with any chat template, in llama.cpp's generic format: the tools are
//! described in the system message, the reply is held by a JSON schema ([`crate::text::format`]) to
//! `{"tool_call": {"name": ..., "arguments": {...}}}` (`{"tool_calls": [...]}` with parallel calls) or
//! `{"response": ...}`, and is read back into calls or content. Earlier calls and their results are written into
//! the conversation in the same format, so the model sees its own turns as it was asked to write them.

use serde_json::{json, Map, Value};

use crate::text::format::{OutputFormat, Schema, SchemaError};

#[cfg(feature = "chat")]
mod messages;
mod reader;

#[cfg(feature = "chat")]
pub use messages::{messages, text_content};
pub use reader::{ReplyPart, ReplyReader};

/// The tools of a request and how the reply may use them.
#[derive(Debug, Clone, PartialEq)]
pub struct Tools {
    functions: Vec<Function>,
    choice: Choice,
    parallel: bool,
}

/// A function the model may call.
#[derive(Debug, Clone, PartialEq)]
struct Function {
    name: String,
    description: Option<String>,
    /// The JSON Schema of its arguments (an object).
    parameters: Value,
}

/// `tool_choice`.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Choice {
    /// Call tools or answer (`"auto"`, the default).
    Auto,
    /// Call at least one tool (`"required"`).
    Required,
    /// Call this function (`{"type": "function", "function": {"name": ...}}`).
    Named(usize),
}

/// A request's tools (or messages) that cannot be used, naming the field at fault.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{at}: {message}")]
pub struct ToolsError {
    /// The field (`tools[1].function.name`, `tool_choice`, ...).
    pub at: String,
    /// What is wrong with it.
    pub message: String,
}

/// A call the reply makes.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolCall {
    /// The function's name.
    pub name: String,
    /// Its arguments as JSON text (OpenAI's `arguments` string).
    pub arguments: String,
}

/// What a reply written under [`Tools::format`] says.
#[derive(Debug, Clone, PartialEq)]
pub enum ToolReply {
    /// An answer to the user (the reply's `response`; the text as it is when it is not whole JSON, e.g. cut
    /// short by the token limit).
    Content(String),
    /// Calls to make, in order.
    Calls(Vec<ToolCall>),
}

impl ToolReply {
    /// The reply as an OpenAI assistant message: `{"role": "assistant", "content": ...}`, or with `content` null
    /// and `tool_calls` (the `i`th call's id `call_id(i)`).
    pub fn message(&self, call_id: impl Fn(usize) -> String) -> Value {
        match self {
            Self::Content(content) => json!({"role": "assistant", "content": content}),
            Self::Calls(calls) => {
                let calls: Vec<Value> = calls
                    .iter()
                    .enumerate()
                    .map(|(i, c)| {
                        json!({"id": call_id(i), "type": "function",
                               "function": {"name": c.name, "arguments": c.arguments}})
                    })
                    .collect();
                json!({"role": "assistant", "content": null, "tool_calls": calls})
            }
        }
    }
}

/// Longest function name (OpenAI's limit).
const MOST_NAME: usize = 64;

impl Tools {
    /// A request's `tools`, `tool_choice` and `parallel_tool_calls` (OpenAI's fields); `None` when there are no
    /// tools or the choice is `"none"` (the reply is then plain text).
    pub fn from_request(
        tools: Option<&Value>,
        tool_choice: Option<&Value>,
        parallel: Option<bool>,
    ) -> Result<Option<Self>, ToolsError> {
        let list = match tools {
            None | Some(Value::Null) => &[][..],
            Some(Value::Array(list)) => list.as_slice(),
            Some(_) => return Err(error("tools", "must be a list of tools")),
        };
        let functions = list
            .iter()
            .enumerate()
            .map(|(i, tool)| Function::read(tool, &format!("tools[{i}]")))
            .collect::<Result<Vec<_>, _>>()?;
        for (i, f) in functions.iter().enumerate() {
            if functions[..i].iter().any(|g| g.name == f.name) {
                return Err(error(
                    format!("tools[{i}].function.name"),
                    format!("{:?} names two tools", f.name),
                ));
            }
        }
        let choice = match tool_choice {
            None | Some(Value::Null) => Choice::Auto,
            Some(Value::String(s)) => match s.as_str() {
                "none" => return Ok(None),
                "auto" => Choice::Auto,
                "required" => Choice::Required,
                other => {
                    return Err(error(
                        "tool_choice",
                        format!("{other:?} is not \"none\", \"auto\", \"required\" or a function"),
                    ))
                }
            },
            Some(named) => {
                let name = named
                    .pointer("/function/name")
                    .and_then(Value::as_str)
                    .ok_or_else(|| {
                        error(
                            "tool_choice",
                            "must be \"none\", \"auto\", \"required\" or {\"type\": \"function\", \"function\": {\"name\": ...}}",
                        )
                    })?;
                let i = functions
                    .iter()
                    .position(|f| f.name == name)
                    .ok_or_else(|| error("tool_choice", format!("no tool is named {name:?}")))?;
                Choice::Named(i)
            }
        };
        if functions.is_empty() {
            return match choice {
                Choice::Auto => Ok(None),
                _ => Err(error("tool_choice", "there are no tools to call")),
            };
        }
        Ok(Some(Self {
            functions,
            choice,
            parallel: parallel.unwrap_or(false),
        }))
    }

    /// What the reply must be: a call (or calls) of the allowed functions, or, unless a call is required, an
    /// object whose `response` is an answer in the request's own format `answer` (free text: a string).
    pub fn format(&self, answer: &OutputFormat) -> Result<OutputFormat, ToolsError> {
        let any_object = json!({"type": "object"});
        let response = match answer {
            OutputFormat::Text => None,
            OutputFormat::JsonObject => Some(&any_object),
            OutputFormat::JsonSchema(schema) => Some(schema.source()),
            OutputFormat::Grammar(_) => {
                return Err(error(
                    "tools",
                    "an answer held to a grammar cannot go with tools",
                ))
            }
        };
        let mut defs = Map::new();
        let mut calls = Vec::new();
        for (i, f) in self.functions.iter().enumerate() {
            if matches!(self.choice, Choice::Named(n) if n != i) {
                continue;
            }
            let at = format!("#/$defs/tool{i}");
            defs.insert(format!("tool{i}"), rebase(&f.parameters, &at));
            calls.push(json!({"type": "object", "additionalProperties": false,
                "properties": {"name": {"const": f.name}, "arguments": {"$ref": at}},
                "required": ["name", "arguments"]}));
        }
        let call = match calls.len() {
            1 => calls.remove(0),
            _ => json!({"anyOf": calls}),
        };
        let (key, calls) = match self.parallel {
            true => (
                "tool_calls",
                json!({"type": "array", "items": call, "minItems": 1}),
            ),
            false => ("tool_call", call),
        };
        let calls = json!({"type": "object", "additionalProperties": false, "properties": {key: calls},
                           "required": [key]});
        let mut root = match self.choice {
            Choice::Auto => {
                let answer = match response {
                    Some(schema) => {
                        defs.insert("response".into(), rebase(schema, "#/$defs/response"));
                        json!({"$ref": "#/$defs/response"})
                    }
                    None => json!({"type": "string"}),
                };
                json!({"anyOf": [calls, {"type": "object", "additionalProperties": false,
                    "properties": {"response": answer}, "required": ["response"]}]})
            }
            Choice::Required | Choice::Named(_) => calls,
        };
        root["$defs"] = Value::Object(defs);
        Schema::compile(&root)
            .map(|s| OutputFormat::JsonSchema(s.into()))
            .map_err(|e| error("tools", e.to_string()))
    }

    /// The text added to the system message: the tools, and how to call them or answer.
    pub fn instructions(&self) -> String {
        let listed: Vec<String> = self
            .functions
            .iter()
            .enumerate()
            .filter(|(i, _)| !matches!(self.choice, Choice::Named(n) if n != *i))
            .map(|(_, f)| {
                let mut tool = json!({"name": f.name, "parameters": f.parameters});
                if let Some(d) = &f.description {
                    tool["description"] = json!(d);
                }
                tool.to_string()
            })
            .collect();
        let call = match self.parallel {
            true => r#"{"tool_calls": [{"name": ..., "arguments": {...}}, ...]}"#,
            false => r#"{"tool_call": {"name": ..., "arguments": {...}}}"#,
        };
        let how = match self.choice {
            Choice::Auto => {
                format!("Reply in JSON: {call} to call a tool, or {{\"response\": ...}} to answer.")
            }
            _ => format!("Reply in JSON: {call} to call a tool."),
        };
        format!(
            "Tools (arguments as JSON Schema):\n{}\n{how}",
            listed.join("\n")
        )
    }

    /// Whether a reply may make several calls (`parallel_tool_calls`).
    pub fn parallel(&self) -> bool {
        self.parallel
    }

    /// Reads a reply written under [`Tools::format`] ([`ReplyReader::reply`]): its calls (arguments as
    /// written), or its answer, or (cut short before either) the text as it is.
    pub fn read(&self, text: &str) -> ToolReply {
        let mut reader = ReplyReader::default();
        reader.push(text);
        reader.reply()
    }
}

impl Function {
    /// `{"type": "function", "function": {"name", "description", "parameters"}}` at `at`.
    fn read(tool: &Value, at: &str) -> Result<Self, ToolsError> {
        if tool.get("type").and_then(Value::as_str) != Some("function") {
            return Err(error(format!("{at}.type"), "must be \"function\""));
        }
        let f = tool
            .get("function")
            .filter(|f| f.is_object())
            .ok_or_else(|| error(format!("{at}.function"), "must be an object"))?;
        let name = f
            .get("name")
            .and_then(Value::as_str)
            .ok_or_else(|| error(format!("{at}.function.name"), "must be a string"))?;
        let good = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '-';
        if name.is_empty() || name.len() > MOST_NAME || !name.chars().all(good) {
            return Err(error(
                format!("{at}.function.name"),
                format!("{name:?} must be 1 to {MOST_NAME} letters, digits, _ or -"),
            ));
        }
        let description = match f.get("description") {
            None | Some(Value::Null) => None,
            Some(Value::String(d)) => Some(d.clone()),
            Some(_) => {
                return Err(error(
                    format!("{at}.function.description"),
                    "must be a string",
                ))
            }
        };
        let parameters = match f.get("parameters") {
            None | Some(Value::Null) => json!({"type": "object", "properties": {}}),
            Some(p) => p.clone(),
        };
        Schema::compile(&parameters)
            .map_err(|e: SchemaError| error(format!("{at}.function.parameters"), e.to_string()))?;
        Ok(Self {
            name: name.into(),
            description,
            parameters,
        })
    }
}

/// `schema` with its local `$ref`s (`#/...`, relative to its own root) pointing from `at`, where it is placed in
/// a larger schema.
fn rebase(schema: &Value, at: &str) -> Value {
    match schema {
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| {
                    let v = match (k.as_str(), v) {
                        ("$ref", Value::String(r)) if r.starts_with('#') => {
                            Value::String(format!("{at}{}", &r[1..]))
                        }
                        _ => rebase(v, at),
                    };
                    (k.clone(), v)
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(|v| rebase(v, at)).collect()),
        other => other.clone(),
    }
}

fn error(at: impl Into<String>, message: impl Into<String>) -> ToolsError {
    ToolsError {
        at: at.into(),
        message: message.into(),
    }
}

#[cfg(test)]
mod tests {
    #[cfg(feature = "chat")]
    use super::messages::{calls_text, result_text};
    use super::*;
    use crate::text::format::{Readings, Shaped};

    fn weather_and_time() -> Value {
        json!([
            {"type": "function", "function": {"name": "get_weather", "description": "Weather in a city",
             "parameters": {"type": "object", "properties": {
                 "city": {"type": "string"}, "unit": {"enum": ["c", "f"]}}, "required": ["city", "unit"]}}},
            // pydantic writes nested models into $defs, referred to from its own root
            {"type": "function", "function": {"name": "get_time", "parameters": {
                "$defs": {"Place": {"type": "object", "properties": {"tz": {"type": "integer", "minimum": -12,
                          "maximum": 14}}, "required": ["tz"]}},
                "type": "object", "properties": {"place": {"$ref": "#/$defs/Place"}}, "required": ["place"]}}},
        ])
    }

    fn tools(choice: Value, parallel: bool) -> Tools {
        Tools::from_request(Some(&weather_and_time()), Some(&choice), Some(parallel))
            .unwrap()
            .unwrap()
    }

    /// Whether `text` is a whole reply the format allows.
    fn allows(format: &OutputFormat, text: &str) -> bool {
        let OutputFormat::JsonSchema(schema) = format else {
            panic!("not a schema")
        };
        let mut state = Readings::<Shaped>::default();
        text.bytes().all(|b| state.push_with(schema, b)) && state.is_complete()
    }

    const WEATHER: &str =
        r#"{"tool_call": {"name": "get_weather", "arguments": {"city": "Oslo", "unit": "c"}}}"#;
    const TIME: &str = r#"{"tool_call": {"name": "get_time", "arguments": {"place": {"tz": -5}}}}"#;
    const ANSWER: &str = r#"{"response": "It is sunny."}"#;

    #[test]
    fn replies_call_any_allowed_tool_with_its_arguments_or_answer() {
        let auto = tools(json!("auto"), false)
            .format(&OutputFormat::Text)
            .unwrap();
        for text in [WEATHER, TIME, ANSWER] {
            assert!(allows(&auto, text), "{text}");
        }
        for wrong in [
            r#"{"tool_call": {"name": "get_news", "arguments": {}}}"#,
            r#"{"tool_call": {"name": "get_weather", "arguments": {"city": "Oslo", "unit": "k"}}}"#,
            r#"{"tool_call": {"name": "get_time", "arguments": {"place": {"tz": 15}}}}"#,
            r#"{"tool_call": {"name": "get_time", "arguments": {"city": "Oslo"}}}"#,
            r#"{"response": 3}"#,
            r#"{"answer": "x"}"#,
        ] {
            assert!(!allows(&auto, wrong), "{wrong}");
        }
        let required = tools(json!("required"), false)
            .format(&OutputFormat::Text)
            .unwrap();
        assert!(allows(&required, WEATHER) && allows(&required, TIME));
        assert!(!allows(&required, ANSWER));
        let named = json!({"type": "function", "function": {"name": "get_time"}});
        let named = tools(named, false).format(&OutputFormat::Text).unwrap();
        assert!(allows(&named, TIME) && !allows(&named, WEATHER) && !allows(&named, ANSWER));
        let parallel = tools(json!("auto"), true)
            .format(&OutputFormat::Text)
            .unwrap();
        let both = r#"{"tool_calls": [{"name": "get_time", "arguments": {"place": {"tz": 1}}}, {"name": "get_weather", "arguments": {"city": "Rome", "unit": "f"}}]}"#;
        assert!(allows(&parallel, both) && allows(&parallel, ANSWER));
        assert!(!allows(&parallel, WEATHER) && !allows(&parallel, r#"{"tool_calls": []}"#));
        // a response_format's schema shapes the answer, its own $refs still found
        let shaped = json!({"$defs": {"T": {"type": "integer"}}, "type": "object",
                            "properties": {"t": {"$ref": "#/$defs/T"}}, "required": ["t"]});
        let shaped = OutputFormat::json_schema(&shaped).unwrap();
        let shaped = tools(json!("auto"), false).format(&shaped).unwrap();
        assert!(allows(&shaped, r#"{"response": {"t": 20}}"#) && allows(&shaped, WEATHER));
        assert!(!allows(&shaped, ANSWER));
    }

    #[test]
    #[cfg(feature = "chat")]
    fn replies_are_read_back_and_calls_written_as_the_model_writes_them() {
        let single = tools(json!("auto"), false);
        // arguments as the model wrote them
        let weather = ToolCall {
            name: "get_weather".into(),
            arguments: r#"{"city": "Oslo", "unit": "c"}"#.into(),
        };
        assert_eq!(
            single.read(WEATHER),
            ToolReply::Calls(vec![weather.clone()])
        );
        assert_eq!(
            single.read(ANSWER),
            ToolReply::Content("It is sunny.".into())
        );
        // cut short by the token limit: the text as it is before the name is whole, the call so far after
        assert_eq!(
            single.read(&WEATHER[..30]),
            ToolReply::Content(WEATHER[..30].into())
        );
        let cut = WEATHER.find("\"Oslo").unwrap();
        let partial = ToolCall {
            arguments: r#"{"city": "#.into(),
            ..weather.clone()
        };
        assert_eq!(
            single.read(&WEATHER[..cut]),
            ToolReply::Calls(vec![partial])
        );
        let time = ToolCall {
            name: "get_time".into(),
            arguments: r#"{"place":{"tz":-5}}"#.into(),
        };
        let compact = ToolCall {
            arguments: r#"{"city":"Oslo","unit":"c"}"#.into(),
            ..weather
        };
        for (t, calls) in [
            (&single, vec![compact.clone()]),
            (&tools(json!("auto"), true), vec![time, compact]),
        ] {
            let text = calls_text(&calls, t.parallel());
            assert!(
                allows(&t.format(&OutputFormat::Text).unwrap(), &text),
                "{text}"
            );
            assert_eq!(t.read(&text), ToolReply::Calls(calls));
        }
        assert_eq!(
            result_text(Some("get_weather"), "sunny"),
            r#"{"tool_response":{"content":"sunny","tool":"get_weather"}}"#
        );
        let listed = single.instructions();
        assert!(listed.contains(r#""name":"get_time""#) && listed.contains("\"response\""));
    }

    /// The parts of `text` read in pieces of `size` bytes (cut at character boundaries), and the reply.
    fn read_in_pieces(text: &str, size: usize) -> (Vec<ReplyPart>, ToolReply) {
        let mut reader = ReplyReader::default();
        let (mut parts, mut at) = (Vec::new(), 0);
        while at < text.len() {
            let mut end = (at + size).min(text.len());
            while !text.is_char_boundary(end) {
                end += 1;
            }
            parts.extend(reader.push(&text[at..end]));
            at = end;
        }
        (parts, reader.reply())
    }

    /// The parts joined: the answer, and each call's name and arguments.
    fn joined(parts: &[ReplyPart]) -> (String, Vec<(String, String)>) {
        let (mut answer, mut calls) = (String::new(), Vec::<(String, String)>::new());
        for part in parts {
            match part {
                ReplyPart::Answer(a) => answer.push_str(a),
                ReplyPart::Call { index, name } => {
                    assert_eq!(*index, calls.len(), "calls begin in order");
                    calls.push((name.clone(), String::new()));
                }
                ReplyPart::Arguments { index, text } => calls[*index].1.push_str(text),
            }
        }
        (answer, calls)
    }

    #[test]
    fn a_text_answer_can_be_sent_as_it_is_written() {
        let answer = "Sunny \"today\"\n\tin Zoë's 中文 town 😀, \\ /";
        for text in [
            json!({"response": answer}).to_string(),
            format!("\n{{ \"response\" :\n  {}}}", serde_json::to_string(answer).unwrap()),
            r#"{"response": "Sunny \"today\"\n\tin Zo\u00eb's \u4e2d\u6587 town \ud83d\ude00, \\ \/"}"#.into(),
        ] {
            // read a byte at a time and in bigger pieces: every prefix's answer so far starts the answer
            for size in [1, 2, 3, 7, text.len()] {
                let (parts, reply) = read_in_pieces(&text, size);
                assert_eq!(joined(&parts), (answer.to_string(), vec![]), "{text:?} by {size}");
                assert_eq!(reply, ToolReply::Content(answer.into()));
            }
            let mut reader = ReplyReader::default();
            for c in text.chars() {
                reader.push(c.encode_utf8(&mut [0; 4]));
                let so_far = reader.answer().unwrap_or_default();
                assert!(answer.starts_with(so_far), "{so_far:?}");
            }
            assert_eq!(tools(json!("auto"), false).read(&text), ToolReply::Content(answer.into()));
        }
        // cut short by the token limit, the answer so far (an escape cut short left out)
        let cut = tools(json!("auto"), false).read(r#"{"response": "It is sun\u00"#);
        assert_eq!(cut, ToolReply::Content("It is sun".into()));
        // an answer in a response format's JSON, as written
        let object = r#"{"response": {"t": [20, "a\"b"], "u": null}}"#;
        let (parts, reply) = read_in_pieces(object, 1);
        let written = r#"{"t": [20, "a\"b"], "u": null}"#;
        assert_eq!(joined(&parts), (written.to_string(), vec![]));
        assert_eq!(reply, ToolReply::Content(written.into()));
    }

    #[test]
    fn calls_can_be_sent_as_they_are_written() {
        let parallel = r#"{"tool_calls": [{"name": "get_time", "arguments": {"place": {"tz": -5, "n": [1, {}]}}},
            {"name": "get_weather", "arguments": {"city": "Os\"lo"}}]}"#;
        let wanted = vec![
            (
                "get_time".to_string(),
                r#"{"place": {"tz": -5, "n": [1, {}]}}"#.to_string(),
            ),
            (
                "get_weather".to_string(),
                r#"{"city": "Os\"lo"}"#.to_string(),
            ),
        ];
        for size in [1, 2, 5, 13, parallel.len()] {
            let (parts, reply) = read_in_pieces(parallel, size);
            assert_eq!(joined(&parts), (String::new(), wanted.clone()), "by {size}");
            let calls = wanted
                .iter()
                .map(|(name, arguments)| ToolCall {
                    name: name.clone(),
                    arguments: arguments.clone(),
                })
                .collect();
            assert_eq!(reply, ToolReply::Calls(calls));
        }
        let (parts, _) = read_in_pieces(WEATHER, 1);
        assert_eq!(
            joined(&parts),
            (
                String::new(),
                vec![(
                    "get_weather".into(),
                    r#"{"city": "Oslo", "unit": "c"}"#.into()
                )]
            )
        );
        // not a reply's JSON: the text as it is; what follows a whole reply is not read
        let read = |text: &str| {
            let mut reader = ReplyReader::default();
            reader.push(text);
            reader.reply()
        };
        for text in ["It is sunny.", r#"{"tool_call": {"name": "a" "b"#] {
            assert_eq!(read(text), ToolReply::Content(text.into()));
        }
        assert_eq!(
            read(r#"{"response": "a"} {"#),
            ToolReply::Content("a".into())
        );
    }

    #[test]
    fn unusable_tools_are_refused_naming_the_field() {
        let refused = |tools: Value, choice: Value| {
            Tools::from_request(Some(&tools), Some(&choice), None)
                .unwrap_err()
                .to_string()
        };
        let tool = |f: Value| json!([{"type": "function", "function": f}]);
        let cases = [
            (json!({}), json!("auto"), "tools: must be a list"),
            (json!([{"type": "code"}]), json!("auto"), "tools[0].type"),
            (
                tool(json!({"name": "a b"})),
                json!("auto"),
                "tools[0].function.name",
            ),
            (
                tool(
                    json!({"name": "f", "parameters": {"type": "object", "properties": {"s": {"uniqueItems": true}}}}),
                ),
                json!("auto"),
                "tools[0].function.parameters: schema at #/properties/s: uniqueItems",
            ),
            (
                weather_and_time(),
                json!("sometimes"),
                "tool_choice: \"sometimes\"",
            ),
            (
                weather_and_time(),
                json!({"type": "function", "function": {"name": "f"}}),
                "no tool is named \"f\"",
            ),
            (json!([]), json!("required"), "there are no tools"),
        ];
        for (tools, choice, message) in cases {
            let e = refused(tools, choice);
            assert!(e.starts_with(message) || e.contains(message), "{e}");
        }
        let mut twice = weather_and_time();
        twice[1]["function"]["name"] = json!("get_weather");
        assert!(refused(twice, json!("auto")).contains("names two tools"));
        assert_eq!(
            Tools::from_request(Some(&weather_and_time()), Some(&json!("none")), None),
            Ok(None)
        );
        assert_eq!(Tools::from_request(None, None, None), Ok(None));
    }
}
