//! Model files: importers (GGUF, transformers checkpoints), the checkpoint-to-GGUF converter, checkpoint
//! export, synthetic models, the published-file table and the Hugging Face Hub client.

pub mod convert;
pub mod export;
#[cfg(feature = "hub")]
pub mod hub;
pub mod import;
pub mod known_files;
pub mod synth;
