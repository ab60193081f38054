//! The options every model-running command shares (`-m`, `--backend`, `-t`, `--head`, `--cache-type`,
//! `--activation`) and how they apply.

use std::path::PathBuf;

use anyhow::{Context, Result};
use bitnet_burn::{
    load_with_progress, Activation, BitNet, CacheType, HeadMode, LoadOptions, Overrides,
    TernaryBackend,
};
use clap::ValueEnum;
use indicatif::{ProgressBar, ProgressStyle};

use crate::backend::{dispatch, BackendKind, BackendTask};

/// How the output head runs (see `bitnet_burn::HeadMode`).
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeadArg {
    /// Float weights and activations: the reference numerics.
    Float,
    /// Int8 weights (one scale per row, quantized at load) and int8 activations: faster decode.
    Int8,
}

/// The small Shakespeare model shipped in `models/` (see models/README.md), used when `-m` is not given.
pub const DEFAULT_MODEL: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/models/shakespeare-bitnet-i2_s.gguf"
);

/// Model options shared by `run`, `bench`, `logits`, ...
#[derive(clap::Args, Clone, Debug)]
pub struct ModelArgs {
    /// Model: a GGUF file, a transformers checkpoint directory, or a Hub file `hf:OWNER/NAME/FILE` (downloaded
    /// into the Hugging Face cache on first use). Default: the Shakespeare model shipped in models/.
    #[arg(short, long, value_parser = crate::hub_args::model_path, default_value = DEFAULT_MODEL)]
    pub model: PathBuf,
    /// Backend to run on: cpu, wgpu (built with `--features wgpu`) or cuda (`--features cuda`).
    #[arg(long, value_parser = crate::backend::parse, default_value = "cpu")]
    pub backend: BackendKind,
    /// CPU threads (0: one per available core; more than the available cores are capped with a warning, since
    /// spinning workers that share a core slow every step down).
    #[arg(short = 't', long, default_value_t = 0, value_parser = capped_threads)]
    pub threads: usize,
    /// Output head numerics. int8 is the default: it halves a 2B-4T decode step's time (the tied head is most of
    /// the bytes read per token) and moved the shipped model's held-out perplexity by 0.005%; `float` gives the
    /// reference numerics.
    #[arg(long, value_enum, default_value = "int8")]
    pub head: HeadArg,
    /// What the KV cache stores (llama.cpp's `--cache-type-k/-v`). f16 is the default, as in llama.cpp: half the
    /// memory, and decode at depth reads half the bytes; q8_0 about halves that again (heads a multiple of 32
    /// wide; else f16); f32 gives the reference numerics.
    #[arg(long, value_enum, default_value = "f16")]
    pub cache_type: CacheArg,
    /// FFN activation, overriding what the file says or what is inferred from its architecture and vocabulary
    /// (for a file that says nothing, or says it wrong).
    #[arg(long, value_enum)]
    pub activation: Option<ActivationArg>,
}

/// What the KV cache stores (see `bitnet_burn::CacheType`).
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum CacheArg {
    /// Half precision.
    F16,
    /// Single precision.
    F32,
    /// Blocks of 32 int8 values with an f16 scale.
    #[value(name = "q8_0")]
    Q8_0,
}

/// The FFN activations (see `bitnet_burn::Activation`).
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ActivationArg {
    /// ReLU² (BitNet b1.58 2B-4T).
    Relu2,
    /// SiLU (bitnet_b1_58-large/3B, Falcon3-1.58bit, Llama3-8B-1.58, Falcon-E).
    Silu,
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

/// Parses `-t`, capping it at the available cores with a warning.
fn capped_threads(arg: &str) -> Result<usize, String> {
    let t: usize = arg.parse().map_err(|e| format!("{e}"))?;
    let cores = cores();
    if t > cores {
        eprintln!("warning: -t {t} is more than the {cores} available cores; using {cores}");
        return Ok(cores);
    }
    Ok(t)
}

impl ModelArgs {
    /// Loads the model onto `device` with the chosen head, showing a progress bar on a terminal.
    pub fn load<B: TernaryBackend>(&self, device: &B::Device) -> Result<BitNet<B>> {
        let bar = ProgressBar::new(0).with_style(
            ProgressStyle::with_template("loading {msg} [{bar:30}] {pos}/{len} parts, {elapsed}")
                .expect("a valid template")
                .progress_chars("=> "),
        );
        bar.set_message(self.model.display().to_string());
        let options = LoadOptions {
            overrides: Overrides {
                activation: self.activation.map(|a| match a {
                    ActivationArg::Relu2 => Activation::Relu2,
                    ActivationArg::Silu => Activation::Silu,
                }),
            },
            head: match self.head {
                HeadArg::Float => HeadMode::Float,
                HeadArg::Int8 => HeadMode::Int8,
            },
            cache: match self.cache_type {
                CacheArg::F16 => CacheType::F16,
                CacheArg::F32 => CacheType::F32,
                CacheArg::Q8_0 => CacheType::Q8_0,
            },
        };
        let model = load_with_progress::<B>(&self.model, device, &options, |p| {
            bar.set_length(p.total as u64);
            bar.set_position(p.done as u64);
        })?;
        bar.finish_and_clear();
        Ok(model)
    }

    /// The thread count in effect.
    pub fn threads(&self) -> usize {
        match self.threads {
            0 => cores(),
            t => t,
        }
    }

    /// Runs `task` on the chosen backend inside a pool of [`Self::threads`] threads (the CPU kernels and
    /// burn-ndarray's own parallel ops all use it).
    pub fn run<T, O>(&self, task: T) -> Result<O>
    where
        T: BackendTask<Output = Result<O>> + Send,
        O: Send,
    {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(self.threads())
            .build()
            .context("starting the thread pool")?;
        let backend = self.backend;
        pool.install(move || dispatch(backend, task))
    }
}
