//! The model hyper-parameters of a BitNet-family GGUF, read from metadata and tensor shapes.

use crate::error::{ErrorKind, Result};
use crate::file::GgufFile;

/// The gated FFN's activation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Activation {
    /// `relu(x)²`: BitNet b1.58 2B-4T and its family.
    Relu2,
    /// `x · sigmoid(x)`: bitnet_b1_58-large/3B and Falcon3-1.58bit (llama architecture).
    Silu,
}

impl Activation {
    /// Parses `relu2`, `relu_sqr`, `squared_relu` or `silu`/`swish`.
    pub fn parse(s: &str) -> Option<Self> {
        match s.to_ascii_lowercase().as_str() {
            "relu2" | "relu_sqr" | "relu_squared" | "squared_relu" | "relu²" => Some(Self::Relu2),
            "silu" | "swish" => Some(Self::Silu),
            _ => None,
        }
    }

    /// The canonical name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Relu2 => "relu2",
            Self::Silu => "silu",
        }
    }
}

/// Architectures this crate extracts a config for.
pub const ARCHITECTURES: [&str; 4] = ["bitnet-b1.58", "bitnet-25", "bitnet", "llama"];

/// Hyper-parameters of a BitNet b1.58 model, whatever converter wrote the file.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelConfig {
    /// `general.architecture`.
    pub architecture: String,
    /// Model width.
    pub hidden_size: usize,
    /// Transformer blocks.
    pub n_layers: usize,
    /// Query heads.
    pub n_heads: usize,
    /// Key/value heads (grouped-query attention when fewer than `n_heads`).
    pub n_kv_heads: usize,
    /// FFN inner width.
    pub ffn_size: usize,
    /// Vocabulary size (rows of the embedding).
    pub vocab_size: usize,
    /// Training context length.
    pub context_length: usize,
    /// RoPE base frequency.
    pub rope_theta: f32,
    /// Rotated dimensions per head.
    pub rope_dim: usize,
    /// RMSNorm epsilon.
    pub rms_eps: f32,
    /// FFN activation.
    pub activation: Activation,
    /// Why this activation was chosen (a key, or the inference rule).
    pub activation_source: String,
    /// Whether the LM head reuses the token embedding (no `output.weight`).
    pub tied_embeddings: bool,
    /// Whether blocks have `attn_sub_norm`/`ffn_sub_norm` (the BitNet b1.58 sub-layer norms).
    pub sub_norms: bool,
}

impl ModelConfig {
    /// Per-head dimension.
    pub fn head_dim(&self) -> usize {
        self.hidden_size / self.n_heads
    }

    /// Reads the config of a `bitnet-b1.58`, `bitnet-25`, `bitnet` or ternary `llama` file.
    pub fn from_gguf(file: &GgufFile) -> Result<Self> {
        let arch = file.get_str("general.architecture")?.to_string();
        if !ARCHITECTURES.contains(&arch.as_str()) {
            return Err(file.error(ErrorKind::UnsupportedModel(format!(
                "architecture {arch:?}; this build runs {}",
                ARCHITECTURES.join(", ")
            ))));
        }
        let key = |k: &str| format!("{arch}.{k}");
        let usize_of = |k: &str| file.get_u64(&key(k)).map(|v| v as usize);
        let hidden_size = usize_of("embedding_length")?;
        let n_layers = usize_of("block_count")?;
        let n_heads = usize_of("attention.head_count")?;
        let n_kv_heads = file
            .opt(&key("attention.head_count_kv"), GgufFile::get_u64)?
            .map_or(n_heads, |v| v as usize);
        let ffn_size = usize_of("feed_forward_length")?;
        let context_length = usize_of("context_length")?;
        let rms_eps = file.get_f64(&key("attention.layer_norm_rms_epsilon"))? as f32;
        let rope_theta = file
            .opt(&key("rope.freq_base"), GgufFile::get_f64)?
            .unwrap_or(10_000.0) as f32;
        let embd = file.require_tensor("token_embd.weight")?;
        let vocab_size = match file.opt(&key("vocab_size"), GgufFile::get_u64)? {
            Some(v) => v as usize,
            None => *embd.dims.get(1).unwrap_or(&1) as usize,
        };
        let bad = |what: &str, v: String| {
            file.error(ErrorKind::WrongValue {
                key: key(what),
                expected: "a consistent BitNet shape".into(),
                found: v,
            })
        };
        if n_heads == 0 || hidden_size % n_heads != 0 {
            return Err(bad(
                "attention.head_count",
                format!("{n_heads} heads for width {hidden_size}"),
            ));
        }
        if n_kv_heads == 0 || n_heads % n_kv_heads != 0 {
            return Err(bad(
                "attention.head_count_kv",
                format!("{n_kv_heads} kv heads for {n_heads} heads"),
            ));
        }
        if n_layers == 0
            || ffn_size == 0
            || context_length == 0
            || rms_eps.is_nan()
            || rms_eps <= 0.0
            || rope_theta.is_nan()
            || rope_theta <= 0.0
        {
            return Err(bad("*", format!("layers {n_layers}, ffn {ffn_size}, ctx {context_length}, eps {rms_eps}, rope base {rope_theta}")));
        }
        let head_dim = hidden_size / n_heads;
        let rope_dim = file
            .opt(&key("rope.dimension_count"), GgufFile::get_u64)?
            .map_or(head_dim, |v| v as usize);
        if rope_dim == 0 || rope_dim > head_dim || rope_dim % 2 != 0 {
            return Err(bad(
                "rope.dimension_count",
                format!("{rope_dim} for head dim {head_dim}"),
            ));
        }
        if embd.dims != [hidden_size as u64, vocab_size as u64] {
            return Err(file.error(ErrorKind::ShapeMismatch {
                tensor: embd.name.clone(),
                expected: vec![hidden_size as u64, vocab_size as u64],
                found: embd.dims.clone(),
            }));
        }
        let (activation, activation_source) = activation(file, &arch)?;
        Ok(Self {
            architecture: arch,
            hidden_size,
            n_layers,
            n_heads,
            n_kv_heads,
            ffn_size,
            vocab_size,
            context_length,
            rope_theta,
            rope_dim,
            rms_eps,
            activation,
            activation_source,
            tied_embeddings: file.tensor("output.weight").is_none(),
            sub_norms: file.tensor("blk.0.attn_sub_norm.weight").is_some(),
        })
    }
}

/// GGUF files of the BitNet family carry no activation key (llama.cpp assumes SiLU, which is wrong for 2B-4T),
/// so the activation is inferred: an explicit key wins; bitnet.cpp's architectures are the 2B-4T graph (relu²);
/// llama.cpp's `bitnet` is relu² with the Llama-3 BPE vocabulary of 2B-4T and SiLU with the SentencePiece
/// vocabulary of bitnet_b1_58-large/3B; `llama` (Falcon3-1.58bit) is SiLU.
fn activation(file: &GgufFile, arch: &str) -> Result<(Activation, String)> {
    for k in ["hidden_act", "activation"] {
        let key = format!("{arch}.{k}");
        if let Some(s) = file.opt_str(&key)? {
            let act = Activation::parse(s).ok_or_else(|| {
                file.error(ErrorKind::WrongValue {
                    key: key.clone(),
                    expected: "relu2 or silu".into(),
                    found: s.into(),
                })
            })?;
            return Ok((act, format!("from {key}")));
        }
    }
    let tok_model = file.opt_str("tokenizer.ggml.model")?;
    Ok(match arch {
        "bitnet-b1.58" | "bitnet-25" => (
            Activation::Relu2,
            format!("inferred: {arch} is the 2B-4T graph"),
        ),
        "bitnet" if tok_model == Some("gpt2") => (
            Activation::Relu2,
            "inferred: bitnet with a BPE (Llama 3) vocabulary is the 2B-4T family".into(),
        ),
        "bitnet" => (
            Activation::Silu,
            "inferred: bitnet with a SentencePiece vocabulary is bitnet_b1_58-large/3B".into(),
        ),
        _ => (Activation::Silu, format!("inferred: {arch} uses SiLU")),
    })
}
