//! Training BitNet b1.58 from scratch with quantization-aware training: random windows of a token stream, the
//! paper's two-stage schedule (scaled down), AdamW, held-out evaluation and resumable checkpoints. The model
//! trained is the same [`BitNet`](crate::BitNet) that runs inference; [`BitNet::freeze`](crate::BitNet::freeze)
//! turns its latent weights into packed ternary ones.

mod checkpoint;
mod config;
mod data;
mod trainer;

pub use checkpoint::CheckpointError;
pub use config::{schedule, TrainConfig};
pub use data::{unigram_loss, Windows};
pub use trainer::{evaluate, loss, Trainer};
