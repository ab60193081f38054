//! BitNet b1.58 language models in Burn, generic over the backend.
//!
//! [`nn`] holds the layers (Burn `Module`s: BitLinear, RMSNorm, RoPE, attention over a KV cache, the gated FFN,
//! the block and the whole [`BitNet`]); [`io`] loads GGUF files and transformers checkpoints into one packed
//! ternary layout (and converts, exports, synthesizes and downloads models); [`text`] turns text into tokens and
//! back (tokenizer, sampling, generation, chat, perplexity); [`engine`] decodes many requests together over KV-cache
//! slots (continuous batching, what `bitnet serve` runs); [`train`] is quantization-aware training. The
//! ternary matmul is the `bitnet_kernels_cubecl::TernaryBackend` op, so any backend that implements it runs the
//! model: `BitNet<NdArray>`, `BitNet<Wgpu>`, `BitNet<Cuda>`.
#![warn(missing_docs)]

pub mod engine;
mod error;
pub mod io;
pub mod nn;
mod rng;
pub mod text;
pub mod train;

pub use bitnet_gguf::{Activation, ModelConfig, Overrides};
pub use bitnet_kernels_cubecl::{device, CacheType, TernaryBackend};
pub use error::{ForwardError, LoadError};
pub use io::import::{load, load_gguf, load_with_progress, LoadOptions, LoadProgress};
pub use nn::{ActQuant, BitNet, HeadMode, KvCache};
