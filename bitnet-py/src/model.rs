//! `NativeModel`: a loaded model, its tokenizer and chat template, and the batched engine that generates with it.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bitnet_burn::device::{dispatch, BackendError, BackendKind, BackendTask};
use bitnet_burn::engine::{Engine, EngineConfig, Request, PROMPT_CACHE_BYTES};
use bitnet_burn::io::hub::{Hub, HubFile};
use bitnet_burn::text::chat::ChatTemplate;
use bitnet_burn::text::format::OutputFormat;
use bitnet_burn::text::sampling::SamplerConfig;
use bitnet_burn::text::tokenizer::Tokenizer;
use bitnet_burn::text::tools::{self, Tools};
use bitnet_burn::{
    load_with_progress, ActQuant, CacheType, ForwardError, HeadMode, LoadOptions, TernaryBackend,
};
use bitnet_gguf::{Array, GgufFile, Value};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList};
use tokio::runtime::Runtime;
use tokio::sync::mpsc;

use crate::error::{not_found, submit_error, value_error};
use crate::stream::Stream;

/// A forward pass over one sequence: the logits of every position, `[positions · vocab]`.
type Forward = Box<dyn Fn(&[u32]) -> Result<Vec<f32>, ForwardError> + Send + Sync>;

/// A model ready to run: generation goes through the engine's thread, `logits` through the same weights on the
/// calling thread; both use the model's own pool of CPU threads.
#[pyclass(module = "bitnet_burn._native", frozen)]
pub struct NativeModel {
    engine: Engine,
    forward: Forward,
    pool: rayon::ThreadPool,
    tokenizer: Arc<Tokenizer>,
    template: ChatTemplate,
    runtime: Arc<Runtime>,
    vocab: usize,
    /// The model file (a Hub file resolved to its cached copy).
    #[pyo3(get)]
    path: PathBuf,
    /// The backend that runs it.
    #[pyo3(get)]
    backend: &'static str,
    /// CPU threads.
    #[pyo3(get)]
    threads: usize,
}

/// How a sampled request is configured (the Python layer fills in llama-cpp-python's defaults).
#[derive(FromPyObject)]
#[pyo3(from_item_all)]
pub struct Sampling {
    max_tokens: usize,
    temperature: f32,
    top_k: usize,
    top_p: f32,
    min_p: f32,
    repeat_penalty: f32,
    presence_penalty: f32,
    frequency_penalty: f32,
    seed: u64,
    stop: Vec<String>,
    ignore_eos: bool,
    /// Alternatives to report with each generated token's log-probability; `None` (or absent) for none.
    #[pyo3(default)]
    logprobs: Option<usize>,
    /// (token id, bias) pairs added to the logits; absent for none.
    #[pyo3(default)]
    logit_bias: Vec<(u32, f32)>,
    /// OpenAI's `response_format` as JSON text (JSON mode, a JSON schema); absent for text.
    #[pyo3(default)]
    response_format: Option<String>,
    /// A GBNF grammar the reply is held to (llama-cpp-python's `grammar`); absent for none.
    #[pyo3(default)]
    grammar: Option<String>,
    /// `{"tools", "tool_choice", "parallel_tool_calls"}` as JSON text (function calling); absent for none.
    #[pyo3(default)]
    tools: Option<String>,
}

#[pymethods]
impl NativeModel {
    /// Loads `path` (a GGUF file, a transformers checkpoint directory or `hf:OWNER/NAME/FILE`) onto `backend`,
    /// with `threads` CPU threads (0: one per core), `parallel` sequences decoded together, each with `ctx`
    /// positions (0: the model's context), caches of `cache_type` (`f16`, `f32` or `q8_0`), and at most
    /// `cache_ram` MiB of prompts kept after their sequence moves on (-1: no limit, 0: none).
    #[new]
    #[allow(clippy::too_many_arguments)] // Python's keyword arguments
    #[pyo3(signature = (path, threads=0, backend="cpu", head="int8", act="int8", ctx=0, parallel=1, cache_type="f16", cache_ram=(PROMPT_CACHE_BYTES >> 20) as i64))]
    fn new(
        py: Python<'_>,
        path: &str,
        threads: usize,
        backend: &str,
        head: &str,
        act: &str,
        ctx: usize,
        parallel: usize,
        cache_type: &str,
        cache_ram: i64,
    ) -> PyResult<Self> {
        let head = match head {
            "int8" => HeadMode::Int8,
            "float" => HeadMode::Float,
            other => return Err(bad_choice("head", other, &["int8", "float"])),
        };
        let cache = match cache_type {
            "f16" => CacheType::F16,
            "f32" => CacheType::F32,
            "q8_0" => CacheType::Q8_0,
            other => return Err(bad_choice("cache_type", other, &["f16", "f32", "q8_0"])),
        };
        let act = match act {
            "int8" => ActQuant::Int8,
            "float" => ActQuant::Float,
            "q8k" => ActQuant::Q8K,
            other => return Err(bad_choice("act", other, &["int8", "float", "q8k"])),
        };
        if parallel == 0 {
            return Err(PyValueError::new_err("parallel must be at least 1"));
        }
        let prompt_cache = match cache_ram {
            -1 => None,
            mib if mib >= 0 => Some((mib as usize).saturating_mul(1 << 20)),
            mib => {
                return Err(PyValueError::new_err(format!(
                    "cache_ram must be -1 (no limit), 0 (none) or MiB, not {mib}"
                )))
            }
        };
        let threads = match threads {
            0 => std::thread::available_parallelism().map_or(1, usize::from),
            t => t,
        };
        let backend: BackendKind = backend.parse().map_err(value_error)?;
        py.detach(move || {
            let path = resolve(path)?;
            if !path.exists() {
                return Err(not_found(&path));
            }
            let tokenizer = Arc::new(Tokenizer::for_model(&path).map_err(value_error)?);
            let template = ChatTemplate::for_model(&path, &tokenizer).map_err(value_error)?;
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .map_err(value_error)?;
            let config = EngineConfig {
                slots: parallel,
                ctx: if ctx == 0 { usize::MAX } else { ctx },
                act,
                prompt_cache,
                ..Default::default()
            };
            let options = LoadOptions {
                cache,
                ..LoadOptions::head(head)
            };
            let start = Start {
                path: &path,
                options: &options,
                tokenizer: &tokenizer,
                config,
            };
            let loaded = pool.install(|| match dispatch(backend, start) {
                Ok(loaded) => loaded,
                Err(e @ BackendError::NotBuilt(_)) => Err(PyValueError::new_err(format!(
                    "{e}: reinstall with \
                     `pip install ./bitnet-py --config-settings=build-args=\"--features {}\"`",
                    backend.name()
                ))),
                Err(e) => Err(value_error(e)),
            })?;
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_time()
                .build()
                .map_err(value_error)?;
            Ok(Self {
                vocab: loaded.vocab,
                engine: loaded.engine,
                forward: loaded.forward,
                pool,
                tokenizer,
                template,
                runtime: Arc::new(runtime),
                path,
                backend: loaded.backend,
                threads,
            })
        })
    }

    /// Positions per sequence (the prompt and the generated tokens).
    #[getter]
    fn n_ctx(&self) -> usize {
        self.engine.config().ctx
    }

    /// Vocabulary size (rows of the logits).
    #[getter]
    fn n_vocab(&self) -> usize {
        self.vocab
    }

    /// Sequences decoded together.
    #[getter]
    fn parallel(&self) -> usize {
        self.engine.config().slots
    }

    /// Where the chat template came from.
    #[getter]
    fn chat_template(&self) -> &str {
        self.template.origin()
    }

    /// Token ids of `text`, with BOS first when `add_bos` and the model wants one.
    fn tokenize(&self, py: Python<'_>, text: &str, add_bos: bool) -> PyResult<Vec<u32>> {
        py.detach(|| self.tokenizer.encode(text, add_bos))
            .map_err(value_error)
    }

    /// The text of `ids` (special tokens included).
    fn detokenize(&self, py: Python<'_>, ids: Vec<u32>) -> PyResult<String> {
        if let Some(&id) = ids.iter().find(|&&id| id as usize >= self.vocab) {
            return Err(value_error(ForwardError::BadToken {
                id,
                vocab: self.vocab,
            }));
        }
        py.detach(|| self.tokenizer.decode(&ids))
            .map_err(value_error)
    }

    /// OpenAI-style `messages` (JSON text) rendered with the chat template up to the assistant's turn, as ids;
    /// with `tools` (JSON text, as [`Sampling`]'s) described in the system message.
    fn chat_tokens(
        &self,
        py: Python<'_>,
        messages: &str,
        tools: Option<&str>,
    ) -> PyResult<Vec<u32>> {
        let messages: serde_json::Value = serde_json::from_str(messages)
            .map_err(|e| PyValueError::new_err(format!("messages: {e}")))?;
        let messages =
            tools::messages(&messages, read_tools(tools)?.as_ref()).map_err(value_error)?;
        py.detach(|| self.template.encode(&messages, &self.tokenizer))
            .map_err(value_error)
    }

    /// The logits of every position of `ids` as little-endian f32 bytes, row-major `[len(ids), n_vocab]`.
    fn logits<'py>(&self, py: Python<'py>, ids: Vec<u32>) -> PyResult<Bound<'py, PyBytes>> {
        let values = py
            .detach(|| self.pool.install(|| (self.forward)(&ids)))
            .map_err(value_error)?;
        Ok(PyBytes::new(py, bytemuck::cast_slice(&values)))
    }

    /// Queues a generation of `ids`; the stream yields its text (a `response_format` it cannot write to is a
    /// `ValueError` worded as the server's 400).
    fn submit(&self, ids: Vec<u32>, sampling: Sampling) -> PyResult<Stream> {
        let (events, rx) = mpsc::unbounded_channel();
        self.engine
            .submit(Request {
                prompt: ids,
                max_new_tokens: sampling.max_tokens,
                sampler: SamplerConfig {
                    temperature: sampling.temperature,
                    top_k: sampling.top_k,
                    top_p: sampling.top_p,
                    min_p: sampling.min_p,
                    repeat_penalty: sampling.repeat_penalty,
                    presence_penalty: sampling.presence_penalty,
                    frequency_penalty: sampling.frequency_penalty,
                    seed: sampling.seed,
                    logit_bias: sampling.logit_bias,
                    format: output_format(
                        sampling.response_format.as_deref(),
                        sampling.grammar.as_deref(),
                        sampling.tools.as_deref(),
                    )?,
                    ..Default::default()
                },
                stop_strings: sampling.stop,
                ignore_eos: sampling.ignore_eos,
                cache_prompt: true,
                logprobs: sampling.logprobs,
                score_prompt: false,
                events,
            })
            .map_err(submit_error)?;
        Ok(Stream::new(
            rx,
            self.runtime.clone(),
            self.tokenizer.clone(),
        ))
    }

    /// The GGUF metadata (key → value; arrays as lists), or `None` for a checkpoint directory.
    fn metadata<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyDict>>> {
        if self.path.is_dir() {
            return Ok(None);
        }
        let file = GgufFile::open(&self.path).map_err(value_error)?;
        let dict = PyDict::new(py);
        for (key, value) in file.metadata() {
            dict.set_item(key, value_to_py(py, value)?)?;
        }
        Ok(Some(dict))
    }
}

/// What loading on one backend produced.
struct Loaded {
    engine: Engine,
    forward: Forward,
    vocab: usize,
    backend: &'static str,
}

/// Loading the model and starting its engine on the backend [`dispatch`] picks (dispatch inside the model's
/// pool: the engine takes its thread count from it).
struct Start<'a> {
    path: &'a Path,
    options: &'a LoadOptions,
    tokenizer: &'a Arc<Tokenizer>,
    config: EngineConfig,
}

impl BackendTask for Start<'_> {
    type Output = PyResult<Loaded>;

    fn run<B: TernaryBackend>(self, device: B::Device, backend: &'static str) -> PyResult<Loaded> {
        let model = load_with_progress::<B>(self.path, &device, self.options, |_| {});
        let model = Arc::new(model.map_err(value_error)?);
        let act = self.config.act;
        let vocab = model.config.vocab_size;
        let engine = Engine::start(model.clone(), self.tokenizer.clone(), self.config);
        let forward: Forward = Box::new(move |ids: &[u32]| model.sequence_logits(ids, act));
        Ok(Loaded {
            engine,
            forward,
            vocab,
            backend,
        })
    }
}

/// `path`, or the cached (downloaded if absent) copy of a Hub file `hf:OWNER/NAME/FILE`.
fn resolve(path: &str) -> PyResult<PathBuf> {
    match HubFile::parse(path) {
        None => Ok(PathBuf::from(path)),
        Some(spec) => {
            let spec = spec.map_err(value_error)?;
            let hub = Hub::from_env().map_err(value_error)?;
            hub.get(&spec, |_| {}).map_err(value_error)
        }
    }
}

/// The error for an option given a value outside its choices.
fn bad_choice(name: &str, value: &str, choices: &[&str]) -> PyErr {
    PyValueError::new_err(format!(
        "{name}={value:?} is not one of {}",
        choices.join(", ")
    ))
}

/// A metadata value as the Python value it reads as.
fn value_to_py<'py>(py: Python<'py>, value: &Value) -> PyResult<Bound<'py, PyAny>> {
    Ok(match value {
        Value::U8(v) => v.into_pyobject(py)?.into_any(),
        Value::I8(v) => v.into_pyobject(py)?.into_any(),
        Value::U16(v) => v.into_pyobject(py)?.into_any(),
        Value::I16(v) => v.into_pyobject(py)?.into_any(),
        Value::U32(v) => v.into_pyobject(py)?.into_any(),
        Value::I32(v) => v.into_pyobject(py)?.into_any(),
        Value::U64(v) => v.into_pyobject(py)?.into_any(),
        Value::I64(v) => v.into_pyobject(py)?.into_any(),
        Value::F32(v) => v.into_pyobject(py)?.into_any(),
        Value::F64(v) => v.into_pyobject(py)?.into_any(),
        Value::Bool(v) => v.into_pyobject(py)?.to_owned().into_any(),
        Value::String(v) => v.into_pyobject(py)?.into_any(),
        Value::Array(a) => array_to_py(py, a)?.into_any(),
    })
}

fn array_to_py<'py>(py: Python<'py>, array: &Array) -> PyResult<Bound<'py, PyList>> {
    match array {
        Array::U8(v) => PyList::new(py, v),
        Array::I8(v) => PyList::new(py, v),
        Array::U16(v) => PyList::new(py, v),
        Array::I16(v) => PyList::new(py, v),
        Array::U32(v) => PyList::new(py, v),
        Array::I32(v) => PyList::new(py, v),
        Array::U64(v) => PyList::new(py, v),
        Array::I64(v) => PyList::new(py, v),
        Array::F32(v) => PyList::new(py, v),
        Array::F64(v) => PyList::new(py, v),
        Array::Bool(v) => PyList::new(py, v),
        Array::String(v) => PyList::new(py, v),
        Array::Array(v) => PyList::new(
            py,
            v.iter()
                .map(|a| array_to_py(py, a))
                .collect::<PyResult<Vec<_>>>()?,
        ),
    }
}

/// The output format a `response_format` (JSON text) or a GBNF `grammar` asks for, with `tools` (JSON text) a
/// call or an answer in it, checked as the server checks them.
fn output_format(
    response_format: Option<&str>,
    grammar: Option<&str>,
    tools: Option<&str>,
) -> PyResult<OutputFormat> {
    let format = match (response_format, grammar) {
        (None, None) => OutputFormat::Text,
        (None, Some(grammar)) => OutputFormat::grammar(grammar).map_err(value_error)?,
        (Some(_), Some(_)) => {
            return Err(PyValueError::new_err(
                "grammar: give a grammar or a response_format, not both",
            ))
        }
        (Some(text), None) => {
            let bad =
                |e: &dyn std::fmt::Display| PyValueError::new_err(format!("response_format: {e}"));
            let value: serde_json::Value = serde_json::from_str(text).map_err(|e| bad(&e))?;
            OutputFormat::from_response_format(&value).map_err(|e| bad(&e))?
        }
    };
    match read_tools(tools)? {
        None => Ok(format),
        Some(tools) => tools.format(&format).map_err(value_error),
    }
}

/// The tools of `{"tools", "tool_choice", "parallel_tool_calls"}` (JSON text), checked as the server checks
/// them; `None` when there are none to call.
fn read_tools(calling: Option<&str>) -> PyResult<Option<Tools>> {
    let Some(text) = calling else {
        return Ok(None);
    };
    let calling: serde_json::Value =
        serde_json::from_str(text).map_err(|e| PyValueError::new_err(format!("tools: {e}")))?;
    let parallel = calling
        .get("parallel_tool_calls")
        .and_then(serde_json::Value::as_bool);
    Tools::from_request(calling.get("tools"), calling.get("tool_choice"), parallel)
        .map_err(value_error)
}
