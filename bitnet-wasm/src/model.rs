//! A loaded model and its tokenizer, on burn-ndarray (WebAssembly SIMD128) or burn-wgpu (WebGPU).

use std::rc::Rc;
use std::sync::Arc;

use bitnet_burn::text::tokenizer::Tokenizer;
use bitnet_burn::{load_gguf, BitNet, LoadOptions, LoadProgress, TernaryBackend};
use bitnet_gguf::GgufFile;
use bitnet_kernels_cubecl::cpu::Isa;
use burn::backend::NdArray;
use wasm_bindgen::prelude::*;

use crate::buffer::GgufBuffer;
use crate::generation::{GenerateConfig, Generation, Steps};

/// The model on the backend the page chose.
pub(crate) enum Engine {
    Cpu(Rc<BitNet<NdArray>>),
    #[cfg(feature = "webgpu")]
    WebGpu(Rc<BitNet<burn::backend::Wgpu>>),
}

/// A BitNet model ready to generate.
#[wasm_bindgen]
pub struct Model {
    engine: Engine,
    tokenizer: Rc<Tokenizer>,
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
                    Engine::Cpu(Rc::new(model)),
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
                (Engine::WebGpu(Rc::new(model)), "cubecl-wgsl", "cubecl-wgsl")
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
            Engine::Cpu(m) => &m.config,
            #[cfg(feature = "webgpu")]
            Engine::WebGpu(m) => &m.config,
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
        })
        .to_string();
        Ok(Self {
            engine,
            tokenizer,
            info,
        })
    }

    /// The model's shape and what runs it, as JSON: `architecture`, `family`, `layers`, `hidden`, `heads`,
    /// `kvHeads`, `vocab`, `context`, `backend`, `kernel`, `prefillKernel` (on the CPU, prompts of 14 tokens and
    /// more run by "table lookup"), `threads` (the CPU kernels').
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
    /// server's `json_schema` response format), `logitBias` (token id → bias in [-100, 100], as the server's
    /// `logit_bias`), `ctx` (cache positions; the model's context).
    pub fn generate(&self, prompt: &str, options: &str) -> Result<Generation, JsError> {
        let config: GenerateConfig = serde_json::from_str(options)
            .map_err(|e| JsError::new(&format!("generation options: {e}")))?;
        let tokenizer = Rc::clone(&self.tokenizer);
        Ok(match &self.engine {
            Engine::Cpu(m) => Steps::start(Rc::clone(m), tokenizer, prompt, config)?.into(),
            #[cfg(feature = "webgpu")]
            Engine::WebGpu(m) => Steps::start(Rc::clone(m), tokenizer, prompt, config)?.into(),
        })
    }
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
