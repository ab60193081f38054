//! A loaded model and its tokenizer, on burn-ndarray (WebAssembly SIMD128) or burn-wgpu (WebGPU).

use std::cell::Cell;
use std::rc::Rc;
use std::sync::Arc;

use bitnet_burn::text::chat::ChatTemplate;
use bitnet_burn::text::tokenizer::Tokenizer;
use bitnet_burn::text::tools::{self, Tools};
use bitnet_burn::{load_gguf, BitNet, LoadOptions, LoadProgress, TernaryBackend};
use bitnet_gguf::GgufFile;
use bitnet_kernels_cubecl::cpu::Isa;
use burn::backend::NdArray;
use wasm_bindgen::prelude::*;

use crate::buffer::GgufBuffer;
use crate::generation::{ChatReply, GenerateConfig, Generation, Steps};
use crate::session::Session;

/// The model on the backend the page chose.
pub(crate) enum Engine {
    Cpu(Rc<Session<NdArray>>),
    #[cfg(feature = "webgpu")]
    WebGpu(Rc<Session<burn::backend::Wgpu>>),
}

/// A BitNet model ready to generate.
#[wasm_bindgen]
pub struct Model {
    engine: Engine,
    tokenizer: Rc<Tokenizer>,
    /// The file's chat template (or why it cannot be used: only chats fail for it).
    template: Result<ChatTemplate, String>,
    /// Chats started (numbering their tool calls' ids).
    chats: Cell<u64>,
    info: String,
}

#[wasm_bindgen]
impl Model {
    /// Builds the model in `file` (a GGUF file: BitNet, Llama or Falcon ternary models, I2_S, TQ2_0, TQ1_0 ...) on
    /// `backend` ("cpu": WebAssembly SIMD128; "webgpu": the CubeCL kernels as WGSL), calling
    /// `on_progress(done, total)` as its parts load. The file's bytes move into the model.
    pub async fn load(
        file: GgufBuffer,
        backend: String,
        on_progress: Option<js_sys::Function>,
    ) -> Result<Model, JsError> {
        let name = file.name;
        let file = Arc::new(GgufFile::from_bytes_named(file.bytes, &name).map_err(error)?);
        let tokenizer = Rc::new(Tokenizer::from_gguf(&file).map_err(error)?);
        let template = ChatTemplate::from_gguf(&file, &tokenizer).map_err(|e| e.to_string());
        let progress = |p: LoadProgress| {
            if let Some(f) = &on_progress {
                // a throwing callback must not stop the load
                let _ = f.call2(&JsValue::NULL, &p.done.into(), &p.total.into());
            }
        };
        let (engine, kernel, prefill) = match backend.as_str() {
            "cpu" => {
                let model = build::<NdArray>(file, &Default::default(), progress)?;
                let isa = Isa::detect();
                (
                    Engine::Cpu(Rc::new(Session::new(model))),
                    isa.name(),
                    isa.prefill_kernel(),
                )
            }
            #[cfg(feature = "webgpu")]
            "webgpu" => {
                use burn::backend::wgpu::{graphics::WebGpu, init_setup_async, WgpuDevice};
                let device = WgpuDevice::default();
                init_setup_async::<WebGpu>(&device, Default::default()).await;
                let model = build::<burn::backend::Wgpu>(file, &device, progress)?;
                let engine = Engine::WebGpu(Rc::new(Session::new(model)));
                (engine, "cubecl-wgsl", "cubecl-wgsl")
            }
            other => {
                return Err(JsError::new(&format!(
                    "unknown backend {other:?}: this build runs \"cpu\"{}",
                    if cfg!(feature = "webgpu") {
                        " and \"webgpu\""
                    } else {
                        ""
                    }
                )))
            }
        };
        let c = match &engine {
            Engine::Cpu(s) => &s.model.config,
            #[cfg(feature = "webgpu")]
            Engine::WebGpu(s) => &s.model.config,
        };
        let info = serde_json::json!({
            "architecture": c.architecture,
            "family": c.family(),
            "layers": c.n_layers,
            "hidden": c.hidden_size,
            "heads": c.n_heads,
            "kvHeads": c.n_kv_heads,
            "vocab": c.vocab_size,
            "context": c.context_length,
            "backend": backend,
            "kernel": kernel,
            "prefillKernel": prefill,
            "threads": if backend == "cpu" { rayon::current_num_threads() } else { 1 },
            "chatTemplate": template.as_ref().map(ChatTemplate::origin).ok(),
        })
        .to_string();
        Ok(Self {
            engine,
            tokenizer,
            template,
            chats: Cell::new(0),
            info,
        })
    }

    /// The model's shape and what runs it, as JSON: `architecture`, `family`, `layers`, `hidden`, `heads`,
    /// `kvHeads`, `vocab`, `context`, `backend`, `kernel`, `prefillKernel` (on the CPU, prompts of 14 tokens and
    /// more run by "table lookup"), `threads` (the CPU kernels'), `chatTemplate` (where the chat template comes
    /// from; null when the file's does not parse).
    #[wasm_bindgen(getter)]
    pub fn info(&self) -> String {
        self.info.clone()
    }

    /// The token ids of `text` (with BOS first if `bos` and the model wants it).
    pub fn tokenize(&self, text: &str, bos: bool) -> Result<Vec<u32>, JsError> {
        self.tokenizer.encode(text, bos).map_err(error)
    }

    /// The text of token ids.
    pub fn detokenize(&self, ids: &[u32]) -> Result<String, JsError> {
        let vocab = self.tokenizer.vocab_size();
        if let Some(bad) = ids.iter().find(|&&id| id as usize >= vocab) {
            return Err(JsError::new(&format!(
                "token id {bad} is outside the vocabulary (0..{vocab})"
            )));
        }
        self.tokenizer.decode(ids).map_err(error)
    }

    /// Starts continuing `prompt`; `options` is JSON: `maxTokens` (128), `temperature` (0: greedy), `topK`,
    /// `topP`, `minP`, `repeatPenalty`, `seed`, `stop` (strings), `jsonObject` (JSON mode, as the server's
    /// `response_format: {"type": "json_object"}`), `jsonSchema` (a JSON Schema object the reply follows, as the
    /// server's `json_schema` response format), `grammar` (GBNF text the reply is held to, as the server's
    /// `grammar`), `logitBias` (token id → bias in [-100, 100], as the server's
    /// `logit_bias`), `ctx` (cache positions; the model's context). The prompt's start that the last
    /// generation's cache holds is not run again.
    pub fn generate(&self, prompt: &str, options: &str) -> Result<Generation, JsError> {
        let config = options_of(options)?;
        if config.tools.is_some() {
            return Err(JsError::new(
                "tools: only a chat calls tools (chat(messages, options))",
            ));
        }
        let ids = self.tokenizer.encode(prompt, true).map_err(error)?;
        self.start(ids, config, None)
    }

    /// Starts the assistant's reply to `messages` (JSON text: OpenAI's chat messages, `system`/`developer`,
    /// `user`, `assistant` with `tool_calls`, `tool` with `tool_call_id`; text parts), rendered with the model's
    /// chat template; `options` as [`Model::generate`]'s plus `tools` (OpenAI's function tools), `toolChoice`
    /// ("auto", "required", "none" or `{"type": "function", "function": {"name"}}`) and `parallelToolCalls`.
    /// The text streamed is the reply's (with tools, a text answer's); once it ends the last step carries the
    /// reply as an OpenAI assistant message (`content`, or `tool_calls` with finish reason "tool_calls"). The
    /// conversation's start that the last generation's cache holds (the previous turn) is not run again.
    pub fn chat(&self, messages: &str, options: &str) -> Result<Generation, JsError> {
        let config = options_of(options)?;
        let template = self.template.as_ref().map_err(|e| JsError::new(e))?;
        let messages: serde_json::Value =
            serde_json::from_str(messages).map_err(|e| JsError::new(&format!("messages: {e}")))?;
        let tools = Tools::from_request(
            config.tools.as_ref(),
            config.tool_choice.as_ref(),
            config.parallel_tool_calls,
        )
        .map_err(error)?;
        let messages = tools::messages(&messages, tools.as_ref()).map_err(error)?;
        let ids = template.encode(&messages, &self.tokenizer).map_err(error)?;
        let number = self.chats.get() + 1;
        self.chats.set(number);
        self.start(ids, config, Some(ChatReply::new(tools, number)))
    }
}

impl Model {
    fn start(
        &self,
        ids: Vec<u32>,
        config: GenerateConfig,
        chat: Option<ChatReply>,
    ) -> Result<Generation, JsError> {
        let tokenizer = Rc::clone(&self.tokenizer);
        Ok(match &self.engine {
            Engine::Cpu(s) => Steps::start(Rc::clone(s), tokenizer, ids, config, chat)?.into(),
            #[cfg(feature = "webgpu")]
            Engine::WebGpu(s) => Steps::start(Rc::clone(s), tokenizer, ids, config, chat)?.into(),
        })
    }
}

/// Generation options from their JSON text.
fn options_of(options: &str) -> Result<GenerateConfig, JsError> {
    serde_json::from_str(options).map_err(|e| JsError::new(&format!("generation options: {e}")))
}

fn build<B: TernaryBackend>(
    file: Arc<GgufFile>,
    device: &B::Device,
    progress: impl FnMut(LoadProgress),
) -> Result<BitNet<B>, JsError> {
    load_gguf::<B>(file, device, &LoadOptions::default(), progress).map_err(error)
}

/// Any error of the engine as a JavaScript `Error` with its message.
pub(crate) fn error(e: impl std::fmt::Display) -> JsError {
    JsError::new(&e.to_string())
}
