//! One generation, a model step per call, so the page can stream its text.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use bitnet_burn::text::format::OutputFormat;
use bitnet_burn::text::generate::{GenerateOptions, Generator};
use bitnet_burn::text::sampling::{logit_bias_pairs, SamplerConfig};
use bitnet_burn::text::tokenizer::Tokenizer;
use bitnet_burn::{BitNet, KvCache, TernaryBackend};
use burn::backend::NdArray;
use serde::Deserialize;
use wasm_bindgen::prelude::*;

use crate::model::error;

/// The options of [`crate::Model::generate`], as the JavaScript API spells them.
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
    /// Token id (an object key) → bias added to its logit, in [-100, 100] (OpenAI's `logit_bias`).
    logit_bias: HashMap<String, f32>,
    /// KV-cache positions (0: the model's context).
    ctx: usize,
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
            logit_bias: HashMap::new(),
            ctx: 0,
        }
    }
}

/// A continuation of a prompt under way on backend `B`.
pub(crate) struct Steps<B: TernaryBackend> {
    model: Rc<BitNet<B>>,
    tokenizer: Rc<Tokenizer>,
    cache: KvCache<B>,
    /// `None` once finished.
    generator: Option<Generator>,
    finish_reason: Option<&'static str>,
    prompt_tokens: usize,
    tokens: usize,
}

impl<B: TernaryBackend> Steps<B> {
    pub(crate) fn start(
        model: Rc<BitNet<B>>,
        tokenizer: Rc<Tokenizer>,
        prompt: &str,
        config: GenerateConfig,
    ) -> Result<Self, JsError> {
        let ids = tokenizer.encode(prompt, true).map_err(error)?;
        let context = model.config.context_length;
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
        let logit_bias = logit_bias_pairs(entries, model.config.vocab_size)
            .map_err(|e| JsError::new(&format!("logitBias: {e}")))?;
        let opts = GenerateOptions {
            max_new_tokens: config.max_tokens,
            sampler: SamplerConfig {
                temperature: config.temperature,
                top_k: config.top_k,
                top_p: config.top_p,
                min_p: config.min_p,
                repeat_penalty: config.repeat_penalty,
                seed: config.seed,
                format: match &config.json_schema {
                    Some(schema) => OutputFormat::json_schema(schema)
                        .map_err(|e| JsError::new(&format!("jsonSchema: {e}")))?,
                    None => OutputFormat::json_object_if(config.json_object),
                },
                logit_bias,
                ..Default::default()
            },
            stop_strings: config.stop,
            ..Default::default()
        };
        let generator = Generator::new(&tokenizer, ids, &opts).map_err(error)?;
        Ok(Self {
            cache: model.new_cache(1, ctx),
            prompt_tokens: generator.prompt_ids().len(),
            model,
            tokenizer,
            generator: Some(generator),
            finish_reason: None,
            tokens: 0,
        })
    }

    /// Runs the model until new text is final (reading each step's logits back without blocking) and returns
    /// it, or `None` once generation has ended.
    async fn next(&mut self) -> Result<Option<String>, JsError> {
        let mut text = String::new();
        while let Some(generator) = self.generator.as_mut() {
            let mut on_text = |piece: &str| text.push_str(piece);
            let stop = match generator.input(&self.model, &self.cache) {
                Err(stop) => Some(stop),
                Ok(input) => {
                    let act = generator.act();
                    let logits = self.model.forward_last(&[input], &mut self.cache, act);
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
            if let Some(stop) = stop {
                let generator = self.generator.take().expect("running");
                let (_, _, stop) = generator
                    .finish(&self.tokenizer, stop, &mut on_text)
                    .map_err(error)?;
                self.finish_reason = Some(stop.finish_reason());
            }
            if !text.is_empty() {
                return Ok(Some(text));
            }
        }
        Ok(None)
    }

    /// One [`Steps::next`] as `{piece, tokens, promptTokens, finishReason}`.
    async fn step(&mut self) -> Result<JsValue, JsValue> {
        let piece = self.next().await?;
        let report = js_sys::Object::new();
        let fields = [
            ("piece", piece.map_or(JsValue::UNDEFINED, JsValue::from)),
            ("tokens", self.tokens.into()),
            ("promptTokens", self.prompt_tokens.into()),
            (
                "finishReason",
                self.finish_reason.map_or(JsValue::UNDEFINED, JsValue::from),
            ),
        ];
        for (key, value) in fields {
            js_sys::Reflect::set(&report, &key.into(), &value)?;
        }
        Ok(report.into())
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
