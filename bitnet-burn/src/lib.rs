//! BitNet b1.58 language models in Burn, generic over the backend.
//!
//! Layers are Burn `Module`s ([`BitLinear`], attention with a [`KvCache`], the gated FFN, RMSNorm sub-norms,
//! NEOX RoPE); [`import`] loads GGUF files and transformers checkpoints into one packed ternary layout; the
//! ternary matmul is the `bitnet_kernels_cubecl::TernaryBackend` op, so any backend that implements it runs the
//! model: `BitNet<NdArray>`, `BitNet<Wgpu>`, `BitNet<Cuda>`.
#![warn(missing_docs)]

mod attention;
mod bit_linear;
mod cache;
pub mod chat;
pub mod convert;
pub mod device;
mod error;
pub mod export;
mod ffn;
pub mod generate;
mod head;
pub mod hub;
pub mod import;
pub mod known_files;
mod model;
mod norm;
pub mod perplexity;
mod rng;
mod rope;
pub mod sampling;
pub mod synth;
pub mod tokenizer;
pub mod train;

pub use attention::{Attention, AttentionConfig};
pub use bit_linear::{forward_shared, ActQuant, BitLinear, BitLinearConfig};
pub use bitnet_gguf::{Activation, ModelConfig};
pub use bitnet_kernels_cubecl::TernaryBackend;
pub use cache::KvCache;
pub use error::{ForwardError, LoadError};
pub use ffn::{FeedForward, FeedForwardConfig};
pub use head::{HeadMode, Int8Head};
pub use import::{load, load_with_progress, LoadProgress};
pub use model::{BitNet, BitNetConfig, BitNetModel, Block};
pub use norm::{RmsNorm, RmsNormConfig};
pub use rope::Rope;
