//! The JSON bodies of the completion endpoints, read strictly: a wrong type or an out-of-range value is a 400
//! naming the parameter; fields this server does not use are ignored, as OpenAI's clients send many.

use axum::body::Bytes;
use bitnet_burn::text::chat::Message;
use bitnet_burn::text::format::OutputFormat;
use bitnet_burn::text::sampling::{logit_bias_pairs, SamplerConfig};
use bitnet_burn::text::tools::{self, Tools};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::Value;

use super::error::ApiError;

/// The parameters both endpoints share.
#[derive(Deserialize, Debug, Default)]
pub struct Common {
    pub model: Option<String>,
    pub max_tokens: Option<usize>,
    pub max_completion_tokens: Option<usize>,
    pub temperature: Option<f32>,
    pub top_p: Option<f32>,
    pub top_k: Option<usize>,
    pub min_p: Option<f32>,
    pub seed: Option<u64>,
    pub stop: Option<Stop>,
    pub presence_penalty: Option<f32>,
    pub frequency_penalty: Option<f32>,
    pub repeat_penalty: Option<f32>,
    pub n: Option<usize>,
    #[serde(default)]
    pub stream: bool,
    /// llama-server's: go on past end-of-text tokens.
    #[serde(default)]
    pub ignore_eos: bool,
    /// llama-server's: reuse the prefix a slot already holds (default true).
    pub cache_prompt: Option<bool>,
    pub stream_options: Option<StreamOptions>,
    /// Token id (as a string) to a bias in [-100, 100], added to its logit.
    pub logit_bias: Option<std::collections::HashMap<String, f32>>,
    /// Functions the reply may call ([`Tools::from_request`]).
    pub tools: Option<Value>,
    pub tool_choice: Option<Value>,
    pub parallel_tool_calls: Option<bool>,
    /// `text`, `json_object` or `json_schema` ([`OutputFormat::from_response_format`]).
    pub response_format: Option<Value>,
    /// llama-server's: a JSON Schema the reply follows, without `response_format`'s wrapping.
    pub json_schema: Option<Value>,
    /// llama-server's: a GBNF grammar whose language the reply is in.
    pub grammar: Option<String>,
}

/// `stop`: one string or a list.
#[derive(Deserialize, Debug)]
#[serde(untagged)]
pub enum Stop {
    One(String),
    Many(Vec<String>),
}

/// `stream_options`.
#[derive(Deserialize, Debug, Default)]
pub struct StreamOptions {
    #[serde(default)]
    pub include_usage: bool,
}

/// `prompt` of a completion: a string, token ids, or a list holding one of either.
#[derive(Deserialize, Debug)]
struct CompletionBody {
    prompt: PromptField,
}

#[derive(Deserialize, Debug)]
#[serde(untagged)]
enum PromptField {
    One(String),
    Many(Vec<String>),
    Ids(Vec<u32>),
    ManyIds(Vec<Vec<u32>>),
}

/// The prompt of a completion: text to tokenize (BOS added where the model wants one), or token ids, run as
/// given.
#[derive(Debug)]
pub enum Prompt {
    Text(String),
    Ids(Vec<u32>),
}

/// Most alternatives a generated token's `logprobs` may list (OpenAI's limit for chat; its legacy completions
/// stop at 5).
const MOST_TOP_LOGPROBS: usize = 20;

/// Most choices a prompt (`n`; OpenAI's limit).
const MOST_CHOICES: usize = 128;

/// `logprobs` and `top_logprobs` of a chat completion.
#[derive(Deserialize, Debug)]
struct ChatLogprobs {
    logprobs: Option<bool>,
    top_logprobs: Option<usize>,
}

/// `logprobs` and `echo` of a completion.
#[derive(Deserialize, Debug)]
struct CompletionLogprobs {
    logprobs: Option<usize>,
    echo: Option<bool>,
}

/// The body as a JSON object.
pub fn object(body: &Bytes) -> Result<Value, ApiError> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("the body is not valid JSON: {e}")))?;
    if !value.is_object() {
        return Err(ApiError::bad_request("the body must be a JSON object"));
    }
    Ok(value)
}

/// Reads `T` from `value`, naming the field whose type is wrong.
pub fn read<T: DeserializeOwned>(value: &Value) -> Result<T, ApiError> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        ApiError::bad_request(format!("{path}: {}", e.inner()))
    })
}

/// The messages of a chat completion as the template's ([`tools::messages`]).
pub fn messages(value: &Value, tools: Option<&Tools>) -> Result<Vec<Message>, ApiError> {
    let messages = value.get("messages").unwrap_or(&Value::Null);
    tools::messages(messages, tools)
        .map_err(|e| ApiError::bad_request(e.to_string()).param("messages"))
}

/// The prompts of a completion (a choice each), at most `most`.
pub fn prompts(value: &Value, most: usize) -> Result<Vec<Prompt>, ApiError> {
    let body: CompletionBody = read(value)?;
    let prompts = match body.prompt {
        PromptField::One(p) => vec![Prompt::Text(p)],
        PromptField::Many(list) => list.into_iter().map(Prompt::Text).collect(),
        PromptField::Ids(ids) => vec![Prompt::Ids(ids)],
        PromptField::ManyIds(list) => list.into_iter().map(Prompt::Ids).collect(),
    };
    let bad = |message: String| Err(ApiError::bad_request(message).param("prompt"));
    if prompts.len() > most {
        return bad(format!(
            "prompt: {} prompts in one request; at most {most} (the server's queue)",
            prompts.len()
        ));
    }
    if prompts.is_empty() {
        return bad("prompt: the prompt is empty".into());
    }
    Ok(prompts)
}

/// The prompts' token ids: texts through `encode` (an empty one is BOS alone where the model adds one, as
/// llama-server reads it), ids as given; a prompt left with no tokens is a 400 naming it.
pub fn prompt_ids(
    prompts: Vec<Prompt>,
    encode: impl Fn(&str) -> Result<Vec<u32>, ApiError>,
) -> Result<Vec<Vec<u32>>, ApiError> {
    let many = prompts.len() > 1;
    prompts
        .into_iter()
        .enumerate()
        .map(|(i, p)| {
            let (ids, why) = match p {
                Prompt::Text(text) => {
                    (encode(&text)?, " (and the model adds no BOS to start from)")
                }
                Prompt::Ids(ids) => (ids, ""),
            };
            if ids.is_empty() {
                let at = if many {
                    format!("prompt[{i}]")
                } else {
                    "prompt".into()
                };
                return Err(
                    ApiError::bad_request(format!("{at}: the prompt is empty{why}"))
                        .param("prompt"),
                );
            }
            Ok(ids)
        })
        .collect()
}

/// How many alternatives each generated token's log-probability comes with in a chat completion (`logprobs:
/// true` and `top_logprobs`), `None` if not asked for.
pub fn chat_logprobs(value: &Value) -> Result<Option<usize>, ApiError> {
    let body: ChatLogprobs = read(value)?;
    let top = body
        .top_logprobs
        .map(|n| at_most(n, "top_logprobs"))
        .transpose()?;
    match (body.logprobs.unwrap_or(false), top) {
        (true, top) => Ok(Some(top.unwrap_or(0))),
        (false, None) => Ok(None),
        (false, Some(_)) => {
            Err(ApiError::bad_request("top_logprobs: needs logprobs: true").param("top_logprobs"))
        }
    }
}

/// What a reply scores: each token's log-probability with `logprobs` alternatives, and with `echo` the prompt
/// too (returned before the completion, its tokens scored from the second on).
#[derive(Debug)]
pub struct Scoring {
    pub logprobs: Option<usize>,
    pub echo: bool,
}

/// The [`Scoring`] of a completion (`logprobs: N`, `echo`); `echo` is refused with `stream`.
pub fn completion_scoring(value: &Value, stream: bool) -> Result<Scoring, ApiError> {
    let body: CompletionLogprobs = read(value)?;
    let echo = body.echo.unwrap_or(false);
    if echo && stream {
        return Err(ApiError::bad_request(
            "echo: not supported with stream; ask for the whole reply",
        )
        .param("echo"));
    }
    let logprobs = body.logprobs.map(|n| at_most(n, "logprobs")).transpose()?;
    Ok(Scoring { logprobs, echo })
}

fn at_most(n: usize, name: &'static str) -> Result<usize, ApiError> {
    match n {
        n if n > MOST_TOP_LOGPROBS => Err(ApiError::bad_request(format!(
            "{name}: {n} is more than {MOST_TOP_LOGPROBS}"
        ))
        .param(name)),
        n => Ok(n),
    }
}

impl Common {
    /// Checks the values' ranges, that `model`, when given, is one this server serves (`names`), and that
    /// `logit_bias` names tokens of its vocabulary (`vocab` ids), and that `response_format` is one it writes;
    /// returns the sampler they make (built once a request, whatever its choices).
    pub fn validate(&self, names: &[String], vocab: usize) -> Result<SamplerConfig, ApiError> {
        if let Some(model) = &self.model {
            if !names.iter().any(|n| n == model) {
                return Err(ApiError::bad_request(format!(
                    "model {model:?} is not served here; this server serves {:?}",
                    names[0]
                ))
                .param("model")
                .code("model_not_found"));
            }
        }
        let range = |name: &'static str, v: Option<f32>, lo: f32, hi: f32| match v {
            Some(x) if !(lo..=hi).contains(&x) => Err(ApiError::bad_request(format!(
                "{name}: {x} is outside [{lo}, {hi}]"
            ))
            .param(name)),
            _ => Ok(()),
        };
        range("temperature", self.temperature, 0.0, 2.0)?;
        range("top_p", self.top_p, 0.0, 1.0)?;
        range("min_p", self.min_p, 0.0, 1.0)?;
        range("presence_penalty", self.presence_penalty, -2.0, 2.0)?;
        range("frequency_penalty", self.frequency_penalty, -2.0, 2.0)?;
        range("repeat_penalty", self.repeat_penalty, 0.0, 10.0)?;
        if self.n.is_some_and(|n| !(1..=MOST_CHOICES).contains(&n)) {
            return Err(ApiError::bad_request(format!(
                "n: {} is outside [1, {MOST_CHOICES}]",
                self.n.unwrap_or_default()
            ))
            .param("n"));
        }
        self.sampler(vocab)
    }

    /// The functions the reply may call, if any.
    pub fn tools(&self) -> Result<Option<Tools>, ApiError> {
        Tools::from_request(
            self.tools.as_ref(),
            self.tool_choice.as_ref(),
            self.parallel_tool_calls,
        )
        .map_err(|e| {
            let param = if e.at.starts_with("tool_choice") {
                "tool_choice"
            } else {
                "tools"
            };
            ApiError::bad_request(e.to_string()).param(param)
        })
    }

    /// `response_format` as an output format; with tools, the format of a call or an answer in that format.
    fn format(&self) -> Result<OutputFormat, ApiError> {
        let bad = |name: &'static str, e: &dyn std::fmt::Display| {
            ApiError::bad_request(format!("{name}: {e}")).param(name)
        };
        let format = match (&self.response_format, &self.json_schema) {
            (Some(format), _) => OutputFormat::from_response_format(format)
                .map_err(|e| bad("response_format", &e))?,
            (None, Some(schema)) => {
                OutputFormat::json_schema(schema).map_err(|e| bad("json_schema", &e))?
            }
            (None, None) => OutputFormat::Text,
        };
        let format = match (&self.grammar, format) {
            (None, format) => format,
            (Some(grammar), OutputFormat::Text) => {
                OutputFormat::grammar(grammar).map_err(|e| bad("grammar", &e))?
            }
            (Some(_), _) => return Err(ApiError::bad_request(
                "grammar: give a grammar or a JSON format (response_format, json_schema), not both",
            )
            .param("grammar")),
        };
        match self.tools()? {
            None => Ok(format),
            Some(tools) => tools.format(&format).map_err(|e| bad("tools", &e)),
        }
    }

    /// `logit_bias` as (token id, bias) pairs, each id in the vocabulary and each bias in [-100, 100].
    fn logit_bias(&self, vocab: usize) -> Result<Vec<(u32, f32)>, ApiError> {
        let entries = self.logit_bias.iter().flatten();
        logit_bias_pairs(entries.map(|(key, &bias)| (key.as_str(), bias)), vocab)
            .map_err(|e| ApiError::bad_request(format!("logit_bias: {e}")).param("logit_bias"))
    }

    /// The sampler, with llama-server's defaults where a value is not given (temperature 0.8, top-k 40, top-p
    /// 0.95, min-p 0.05) and a fresh seed unless one is; `logit_bias` ids must be under `vocab`.
    fn sampler(&self, vocab: usize) -> Result<SamplerConfig, ApiError> {
        Ok(SamplerConfig {
            temperature: self.temperature(),
            top_k: self.top_k.unwrap_or(40),
            top_p: self.top_p(),
            min_p: self.min_p.unwrap_or(0.05),
            repeat_penalty: self.repeat_penalty.unwrap_or(1.0),
            presence_penalty: self.presence_penalty.unwrap_or(0.0),
            frequency_penalty: self.frequency_penalty.unwrap_or(0.0),
            seed: self.seed.unwrap_or_else(fresh_seed),
            logit_bias: self.logit_bias(vocab)?,
            format: self.format()?,
            ..Default::default()
        })
    }

    /// Choices a prompt (`n`, default 1).
    pub fn choices(&self) -> usize {
        self.n.unwrap_or(1)
    }

    /// The temperature sampled at (llama-server's 0.8 unless given).
    pub fn temperature(&self) -> f32 {
        self.temperature.unwrap_or(0.8)
    }

    /// The top-p sampled with (llama-server's 0.95 unless given).
    pub fn top_p(&self) -> f32 {
        self.top_p.unwrap_or(0.95)
    }

    /// The stop strings.
    pub fn stops(&self) -> Vec<String> {
        match &self.stop {
            None => Vec::new(),
            Some(Stop::One(s)) => vec![s.clone()],
            Some(Stop::Many(list)) => list.clone(),
        }
    }

    /// Most tokens to generate: as asked, else what the slot has room for. Zero only to `echo` a prompt.
    pub fn max_tokens(&self, room: usize, echo: bool) -> Result<usize, ApiError> {
        match self.max_tokens.or(self.max_completion_tokens) {
            Some(0) if !echo => Err(ApiError::bad_request(
                "max_tokens: must be at least 1 (0 only with echo)",
            )
            .param("max_tokens")),
            asked => Ok(asked.unwrap_or(room)),
        }
    }

    /// Whether a streamed response ends with a usage chunk.
    pub fn include_usage(&self) -> bool {
        self.stream_options
            .as_ref()
            .is_some_and(|o| o.include_usage)
    }
}

fn fresh_seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    h.finish()
}
