//! Errors of model loading and inference.

/// Why a model could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The GGUF file is invalid or unsupported.
    #[error(transparent)]
    Gguf(#[from] bitnet_gguf::GgufError),
    /// A file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// A safetensors checkpoint is malformed.
    #[error("{path}: {message}")]
    Checkpoint {
        /// The file.
        path: String,
        /// What is wrong.
        message: String,
    },
    /// A tensor has the wrong shape or type for the model.
    #[error("{file}: tensor {tensor:?}: {message}")]
    Tensor {
        /// The file.
        file: String,
        /// The tensor.
        tensor: String,
        /// What is wrong.
        message: String,
    },
}

/// Why a forward pass was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ForwardError {
    /// No tokens were given.
    #[error("empty input: at least one token is needed")]
    Empty,
    /// The sequence would exceed the KV cache or the model's context.
    #[error("context overflow: {needed} positions needed, the limit is {limit} (model context or KV cache size)")]
    ContextOverflow {
        /// Positions the call needs (cache length + new tokens).
        needed: usize,
        /// The limit.
        limit: usize,
    },
    /// Reading the embedding's rows from the model file failed.
    #[error("reading the embedding: {0}")]
    Read(String),
    /// A token id outside the vocabulary.
    #[error("token id {id} is outside the vocabulary (size {vocab})")]
    BadToken {
        /// The id.
        id: u32,
        /// The vocabulary size.
        vocab: usize,
    },
}
