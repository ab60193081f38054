//! One generation, a model step per call, so the page can stream its text.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use bitnet_burn::text::format::OutputFormat;
use bitnet_burn::text::generate::{GenerateOptions, Generator};
use bitnet_burn::text::sampling::{logit_bias_pairs, SamplerConfig};
use bitnet_burn::text::tokenizer::Tokenizer;
use bitnet_burn::text::tools::{ReplyPart, ReplyReader, ToolReply, Tools};
use bitnet_burn::{KvCache, TernaryBackend};
use burn::backend::NdArray;
use serde::Deserialize;
use serde_json::Value;
use wasm_bindgen::prelude::*;

use crate::model::error;
use crate::session::Session;

/// The options of [`crate::Model::generate`] and [`crate::Model::chat`], as the JavaScript API spells them.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub(crate) struct GenerateConfig {
    max_tokens: usize,
    temperature: f32,
    top_k: usize,
    top_p: f32,
    min_p: f32,
    repeat_penalty: f32,
    seed: u64,
    stop: Vec<String>,
    /// JSON mode: only tokens that keep the text the start of one JSON object, ending when it closes.
    json_object: bool,
    /// A JSON Schema the object must follow (as the server's `json_schema` response format).
    json_schema: Option<serde_json::Value>,
    /// A GBNF grammar the text is held to (as the server's `grammar`).
    grammar: Option<String>,
    /// Token id (an object key) → bias added to its logit, in [-100, 100] (OpenAI's `logit_bias`).
    logit_bias: HashMap<String, f32>,
    /// KV-cache positions (0: the model's context).
    ctx: usize,
    /// Functions a chat reply may call (OpenAI's `tools`).
    pub(crate) tools: Option<Value>,
    /// OpenAI's `tool_choice`: "auto", "required", "none" or a function.
    pub(crate) tool_choice: Option<Value>,
    /// Whether a reply may call several tools (OpenAI's `parallel_tool_calls`).
    pub(crate) parallel_tool_calls: Option<bool>,
}

impl Default for GenerateConfig {
    fn default() -> Self {
        let s = SamplerConfig::default();
        Self {
            max_tokens: 128,
            temperature: s.temperature,
            top_k: s.top_k,
            top_p: s.top_p,
            min_p: s.min_p,
            repeat_penalty: s.repeat_penalty,
            seed: s.seed,
            stop: Vec::new(),
            json_object: false,
            json_schema: None,
            grammar: None,
            logit_bias: HashMap::new(),
            ctx: 0,
            tools: None,
            tool_choice: None,
            parallel_tool_calls: None,
        }
    }
}

/// A continuation of a prompt under way on backend `B`.
pub(crate) struct Steps<B: TernaryBackend> {
    session: Rc<Session<B>>,
    tokenizer: Rc<Tokenizer>,
    /// Given back to the session when the generation is dropped.
    cache: Option<KvCache<B>>,
    /// `None` once finished.
    generator: Option<Generator>,
    /// The tokens run through the model once it has finished.
    held: Vec<u32>,
    /// For a chat: what to show and the assistant's message.
    chat: Option<ChatReply>,
    finish_reason: Option<&'static str>,
    prompt_tokens: usize,
    cached_tokens: usize,
    tokens: usize,
}

impl<B: TernaryBackend> Steps<B> {
    /// A generation continuing `ids` as `config` says; a chat's reply when `chat` is given (whose tools, if
    /// any, shape it); the start of `ids` that the session's spare cache holds is not run again.
    pub(crate) fn start(
        session: Rc<Session<B>>,
        tokenizer: Rc<Tokenizer>,
        ids: Vec<u32>,
        config: GenerateConfig,
        chat: Option<ChatReply>,
    ) -> Result<Self, JsError> {
        let context = session.model.config.context_length;
        let ctx = match config.ctx {
            0 => context,
            c => c.min(context),
        };
        if ids.len() >= ctx {
            return Err(JsError::new(&format!(
                "the prompt is {} tokens: it must be shorter than the context ({ctx} positions)",
                ids.len()
            )));
        }
        let entries = config.logit_bias.iter().map(|(k, &b)| (k.as_str(), b));
        let logit_bias = logit_bias_pairs(entries, session.model.config.vocab_size)
            .map_err(|e| JsError::new(&format!("logitBias: {e}")))?;
        let format = match (&config.json_schema, &config.grammar) {
            (Some(_), Some(_)) => {
                return Err(JsError::new(
                    "grammar: give a grammar or a jsonSchema, not both",
                ))
            }
            (Some(schema), None) => OutputFormat::json_schema(schema)
                .map_err(|e| JsError::new(&format!("jsonSchema: {e}")))?,
            (None, Some(grammar)) if !config.json_object => OutputFormat::grammar(grammar)
                .map_err(|e| JsError::new(&format!("grammar: {e}")))?,
            (None, Some(_)) => {
                return Err(JsError::new(
                    "grammar: give a grammar or jsonObject, not both",
                ))
            }
            (None, None) => OutputFormat::json_object_if(config.json_object),
        };
        let format = match chat.as_ref().and_then(|c| c.tools.as_ref()) {
            Some(tools) => tools.format(&format).map_err(error)?,
            None => format,
        };
        let opts = GenerateOptions {
            max_new_tokens: config.max_tokens,
            sampler: SamplerConfig {
                temperature: config.temperature,
                top_k: config.top_k,
                top_p: config.top_p,
                min_p: config.min_p,
                repeat_penalty: config.repeat_penalty,
                seed: config.seed,
                format,
                logit_bias,
                ..Default::default()
            },
            stop_strings: config.stop,
            ..Default::default()
        };
        let generator = Generator::new(&tokenizer, ids, &opts).map_err(error)?;
        let (cache, cached) = session.cache(generator.prompt_ids(), ctx);
        let generator = generator.with_cached(cached);
        Ok(Self {
            cache: Some(cache),
            prompt_tokens: generator.prompt_ids().len(),
            cached_tokens: generator.cached(),
            session,
            tokenizer,
            generator: Some(generator),
            held: Vec::new(),
            chat,
            finish_reason: None,
            tokens: 0,
        })
    }

    /// Runs the model until new text is final (reading each step's logits back without blocking) and returns
    /// it, or `None` once generation has ended.
    async fn next(&mut self) -> Result<Option<String>, JsError> {
        while let Some(generator) = self.generator.as_mut() {
            let mut text = String::new();
            let mut on_text = |piece: &str| text.push_str(piece);
            let cache = self.cache.as_mut().expect("held until dropped");
            let stop = match generator.input(&self.session.model, cache) {
                Err(stop) => Some(stop),
                Ok(input) => {
                    let act = generator.act();
                    let logits = self.session.model.forward_last(&[input], cache, act);
                    let logits = logits.map_err(error)?.into_data_async().await;
                    let mut logits = logits.map_err(|e| error(format!("{e:?}")))?;
                    let logits = logits
                        .as_mut_slice::<f32>()
                        .map_err(|e| error(format!("{e:?}")))?;
                    let stop = generator.accept(&self.tokenizer, logits, &mut on_text);
                    self.tokens = generator.generated();
                    stop.map_err(error)?
                }
            };
            let mut ended = None;
            if let Some(stop) = stop {
                let generator = self.generator.take().expect("running");
                self.held = generator.tokens().to_vec();
                let (_, whole, stop) = generator
                    .finish(&self.tokenizer, stop, &mut on_text)
                    .map_err(error)?;
                self.finish_reason = Some(stop.finish_reason());
                ended = Some(whole);
            }
            let shown = match &mut self.chat {
                None => text,
                Some(chat) => {
                    let mut shown = chat.show(&text);
                    if let Some(whole) = ended {
                        shown += &chat.finish(&whole, &mut self.finish_reason);
                    }
                    shown
                }
            };
            if !shown.is_empty() {
                return Ok(Some(shown));
            }
        }
        Ok(None)
    }

    /// One [`Steps::next`] as `{piece, tokens, promptTokens, cachedTokens, finishReason, message}` (`message`:
    /// a chat's reply as an OpenAI assistant message, JSON text, once it has ended).
    async fn step(&mut self) -> Result<JsValue, JsValue> {
        let piece = self.next().await?;
        let report = js_sys::Object::new();
        let message = self.chat.as_ref().and_then(|c| c.message.as_deref());
        let fields = [
            ("piece", piece.map_or(JsValue::UNDEFINED, JsValue::from)),
            ("tokens", self.tokens.into()),
            ("promptTokens", self.prompt_tokens.into()),
            ("cachedTokens", self.cached_tokens.into()),
            (
                "finishReason",
                self.finish_reason.map_or(JsValue::UNDEFINED, JsValue::from),
            ),
            ("message", message.map_or(JsValue::UNDEFINED, JsValue::from)),
        ];
        for (key, value) in fields {
            js_sys::Reflect::set(&report, &key.into(), &value)?;
        }
        Ok(report.into())
    }
}

impl<B: TernaryBackend> Drop for Steps<B> {
    fn drop(&mut self) {
        if let Some(cache) = self.cache.take() {
            let tokens = self
                .generator
                .as_ref()
                .map_or(&self.held[..], Generator::tokens);
            self.session.keep(cache, tokens);
        }
    }
}

/// A chat's reply: the text to show as it is written (with tools, only an answer's, read from the JSON the reply
/// is held to) and, once it has ended, the assistant's message.
pub(crate) struct ChatReply {
    tools: Option<Tools>,
    /// The reply's number among the model's chats (in its tool calls' ids).
    number: u64,
    /// With tools: the reply read as it is written.
    reader: ReplyReader,
    /// The assistant's message as JSON text, once the reply has ended.
    message: Option<String>,
}

impl ChatReply {
    pub(crate) fn new(tools: Option<Tools>, number: u64) -> Self {
        Self {
            tools,
            number,
            reader: ReplyReader::default(),
            message: None,
        }
    }

    /// What to show of newly written `text`.
    fn show(&mut self, text: &str) -> String {
        if self.tools.is_none() {
            return text.into();
        }
        let answer = self
            .reader
            .push(text)
            .into_iter()
            .filter_map(|part| match part {
                ReplyPart::Answer(more) => Some(more),
                _ => None,
            });
        answer.collect()
    }

    /// Ends the reply, whose text is `whole`: sets the message (and `finish_reason` to "tool_calls" for calls
    /// not cut short)
    /// and returns what is left to show (a reply cut short before it was an answer or a call, as it is).
    fn finish(&mut self, whole: &str, finish_reason: &mut Option<&'static str>) -> String {
        let (reply, rest) = match &self.tools {
            None => (ToolReply::Content(whole.into()), String::new()),
            Some(_) => match (self.reader.reply(), self.reader.answer()) {
                (ToolReply::Content(raw), None) => (ToolReply::Content(raw.clone()), raw),
                (reply, _) => (reply, String::new()),
            },
        };
        let number = self.number;
        self.message = Some(reply.message(|i| format!("call_{number}_{i}")).to_string());
        // (a reply the token limit cut keeps "length": its last call's arguments are cut short)
        if matches!(reply, ToolReply::Calls(_)) && *finish_reason != Some("length") {
            *finish_reason = Some("tool_calls");
        }
        rest
    }
}

/// The running generation on either backend.
enum Running {
    Cpu(Steps<NdArray>),
    #[cfg(feature = "webgpu")]
    WebGpu(Steps<burn::backend::Wgpu>),
}

impl From<Steps<NdArray>> for Generation {
    fn from(s: Steps<NdArray>) -> Self {
        Self::new(Running::Cpu(s))
    }
}

#[cfg(feature = "webgpu")]
impl From<Steps<burn::backend::Wgpu>> for Generation {
    fn from(s: Steps<burn::backend::Wgpu>) -> Self {
        Self::new(Running::WebGpu(s))
    }
}

/// A continuation of a prompt under way: each [`Generation::next`] runs the model until new text is final.
#[wasm_bindgen]
pub struct Generation {
    /// Taken out while a step runs (a step awaits the GPU; the borrow is not held across it).
    running: Rc<RefCell<Option<Running>>>,
}

impl Generation {
    fn new(running: Running) -> Self {
        Self {
            running: Rc::new(RefCell::new(Some(running))),
        }
    }
}

#[wasm_bindgen]
impl Generation {
    /// Runs the model until new text is final (the first call runs the whole prompt); resolves to `{piece,
    /// tokens, promptTokens, finishReason}`, `piece` undefined once generation has ended.
    #[allow(clippy::should_implement_trait)] // JavaScript's iterator protocol, not Rust's
    pub fn next(&self) -> js_sys::Promise {
        let cell = Rc::clone(&self.running);
        wasm_bindgen_futures::future_to_promise(async move {
            let taken = cell.borrow_mut().take();
            let mut running = taken.ok_or_else(|| {
                JsError::new("this generation is already running a step: await it first")
            })?;
            let report = match &mut running {
                Running::Cpu(s) => s.step().await,
                #[cfg(feature = "webgpu")]
                Running::WebGpu(s) => s.step().await,
            };
            *cell.borrow_mut() = Some(running);
            report
        })
    }
}
