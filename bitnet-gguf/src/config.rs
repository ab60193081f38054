//! The model hyper-parameters of a BitNet-family GGUF, read from metadata and tensor shapes.

use crate::error::{ErrorKind, Result};
use crate::file::GgufFile;

/// The gated FFN's activation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
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

/// How RoPE pairs the dimensions of a head (llama.cpp's `llama_rope_type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RopeType {
    /// Dimension `i` rotates with `i + rope_dim/2` (GPT-NeoX; transformers' `rotate_half`): the `bitnet*`
    /// architectures, and every transformers checkpoint.
    Neox,
    /// Dimensions `2i` and `2i+1` rotate together (GPT-J): llama.cpp's `llama` architecture, whose converters
    /// permute the rows of Q and K so that this pairing computes what the checkpoint's rotate-half did.
    Normal,
}

impl RopeType {
    /// The name llama.cpp's docs use.
    pub fn name(self) -> &'static str {
        match self {
            Self::Neox => "neox",
            Self::Normal => "normal",
        }
    }
}

/// Architectures this crate extracts a config for.
pub const ARCHITECTURES: [&str; 4] = ["bitnet-b1.58", "bitnet-25", "bitnet", "llama"];

/// Hyper-parameters of a BitNet b1.58 model, whatever converter wrote the file: the one description of a model's
/// shape, read from files ([`ModelConfig::from_gguf`]), taken from a preset ([`ModelConfig::preset`]) or written
/// by hand, and what models are built from and training configs embed (serializable).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
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
    /// How RoPE pairs dimensions.
    pub rope_type: RopeType,
    /// Why this RoPE type was chosen.
    pub rope_type_source: String,
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

/// What a user says about a model where its file is silent or wrong; taken instead of the file's keys and the
/// inference rules (the CLI's `--activation`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Overrides {
    /// The FFN activation.
    pub activation: Option<Activation>,
}

impl Overrides {
    /// `config` with what these overrides give, each named as its source.
    pub fn apply(&self, config: ModelConfig) -> ModelConfig {
        match self.activation {
            Some(activation) => ModelConfig {
                activation,
                activation_source: "given (overrides what the file says)".into(),
                ..config
            },
            None => config,
        }
    }
}

/// Names of the presets [`ModelConfig::preset`] knows.
pub const PRESETS: [&str; 6] = [
    "tiny",
    "tiny-llama",
    "tiny-falcon-e",
    "tiny-1bitllm",
    "2b4t",
    "large",
];

impl ModelConfig {
    /// The BitNet b1.58 2B-4T graph (ReLU², sub-norms, tied head, RoPE base 500000, context 4096) at the given
    /// width, depth, heads, key/value heads, FFN width and vocabulary.
    pub fn new(
        hidden_size: usize,
        n_layers: usize,
        n_heads: usize,
        n_kv_heads: usize,
        ffn_size: usize,
        vocab_size: usize,
    ) -> Self {
        Self {
            architecture: "bitnet-b1.58".into(),
            hidden_size,
            n_layers,
            n_heads,
            n_kv_heads,
            ffn_size,
            vocab_size,
            context_length: 4096,
            rope_theta: 500_000.0,
            rope_dim: hidden_size / n_heads.max(1),
            rope_type: RopeType::Neox,
            rope_type_source: "given".into(),
            rms_eps: 1e-5,
            activation: Activation::Relu2,
            activation_source: "given".into(),
            tied_embeddings: true,
            sub_norms: true,
        }
    }

    /// A named shape: on the 2B-4T graph `tiny` (2 layers of width 256, for tests; every width a multiple of 256
    /// as the TQ types need), `2b4t` (microsoft/bitnet-b1.58-2B-4T) or `large` (the dimensions of
    /// 1bitLLM/bitnet_b1_58-large, for speed measurements). The tiny shape on the other families' graphs:
    /// `tiny-llama`, the ternary `llama` files (Falcon3-1.58bit, Llama3-8B-1.58: SiLU, no sub-norms, a separate
    /// head, adjacent-pair RoPE); `tiny-falcon-e`, the same with the head tied to the embedding (Falcon-E);
    /// `tiny-1bitllm`, llama.cpp's `bitnet` architecture as 1bitLLM/bitnet_b1_58-large and -3B use it (SiLU,
    /// sub-norms, tied head, half-split RoPE, a SentencePiece vocabulary).
    pub fn preset(name: &str) -> Option<Self> {
        Some(match name {
            "tiny" => Self {
                context_length: 256,
                ..Self::new(256, 2, 4, 2, 512, 512)
            },
            "tiny-llama" => Self {
                architecture: "llama".into(),
                rope_theta: 10_000.0,
                rope_type: RopeType::Normal,
                activation: Activation::Silu,
                tied_embeddings: false,
                sub_norms: false,
                ..Self::preset("tiny")?
            },
            "tiny-falcon-e" => Self {
                tied_embeddings: true,
                ..Self::preset("tiny-llama")?
            },
            "tiny-1bitllm" => Self {
                architecture: "bitnet".into(),
                rope_theta: 10_000.0,
                activation: Activation::Silu,
                ..Self::preset("tiny")?
            },
            "2b4t" => Self::new(2560, 30, 20, 5, 6912, 128_256),
            "large" => Self {
                context_length: 2048,
                ..Self::new(1536, 24, 16, 16, 4096, 32_002)
            },
            _ => return None,
        })
    }

    /// This config with a context of `context_length` positions.
    pub fn with_context_length(self, context_length: usize) -> Self {
        Self {
            context_length,
            ..self
        }
    }

    /// This config with the FFN activation `activation`.
    pub fn with_activation(self, activation: Activation) -> Self {
        Self { activation, ..self }
    }

    /// The published model family whose graph this config computes (the architecture, activation and head
    /// decide it; the sizes do not).
    pub fn family(&self) -> &'static str {
        match (
            self.architecture.as_str(),
            self.activation,
            self.tied_embeddings,
        ) {
            ("llama", _, false) => {
                "Falcon3-1.58bit / Llama3-8B-1.58 (ternary llama, separate head)"
            }
            ("llama", _, true) => "Falcon-E (ternary llama, tied head)",
            (_, Activation::Silu, _) => "1bitLLM bitnet_b1_58-large/3B (bitnet, SiLU)",
            _ => "BitNet b1.58 2B-4T (relu², sub-norms)",
        }
    }

    /// Per-head dimension.
    pub fn head_dim(&self) -> usize {
        self.hidden_size / self.n_heads
    }

    /// Reads the config of a `bitnet-b1.58`, `bitnet-25`, `bitnet` or ternary `llama` file.
    pub fn from_gguf(file: &GgufFile) -> Result<Self> {
        Self::from_gguf_with(file, &Overrides::default())
    }

    /// [`Self::from_gguf`], taking what `overrides` gives instead of reading or inferring it.
    pub fn from_gguf_with(file: &GgufFile, overrides: &Overrides) -> Result<Self> {
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
        // An overridden activation is not inferred (inference may refuse the file); `apply` below sets it.
        let (activation, activation_source) = match overrides.activation {
            Some(a) => (a, String::new()),
            None => activation(file, &arch)?,
        };
        let (rope_type, rope_type_source) = rope_type(file, &arch, rope_dim, head_dim)?;
        Ok(overrides.apply(Self {
            architecture: arch,
            context_length,
            rope_theta,
            rope_dim,
            rope_type,
            rope_type_source,
            rms_eps,
            activation,
            activation_source,
            tied_embeddings: file.tensor("output.weight").is_none(),
            sub_norms: file.tensor("blk.0.attn_sub_norm.weight").is_some(),
            ..Self::new(
                hidden_size,
                n_layers,
                n_heads,
                n_kv_heads,
                ffn_size,
                vocab_size,
            )
        }))
    }
}

/// GGUF files of the BitNet family carry no activation key (llama.cpp assumes SiLU, which is wrong for 2B-4T),
/// so the activation is inferred: an explicit key wins; bitnet.cpp's architectures are the 2B-4T graph (relu²);
/// llama.cpp's `bitnet` is relu² with the Llama-3 BPE vocabulary of 2B-4T and SiLU with the SentencePiece
/// vocabulary of bitnet_b1_58-large/3B, and refused with any other vocabulary (no published family tells);
/// `llama` (Falcon3-1.58bit, Falcon-E) is SiLU.
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
        "bitnet" if tok_model == Some("llama") => (
            Activation::Silu,
            "inferred: bitnet with a SentencePiece vocabulary is bitnet_b1_58-large/3B".into(),
        ),
        "bitnet" => {
            return Err(file.error(ErrorKind::UnsupportedModel(format!(
                "no bitnet.hidden_act key, and the tokenizer (tokenizer.ggml.model = {tok_model:?}) is neither \
                 2B-4T's BPE (relu2) nor bitnet_b1_58's SentencePiece (silu): say which with --activation \
                 relu2|silu"
            ))))
        }
        _ => (Activation::Silu, format!("inferred: {arch} uses SiLU")),
    })
}

/// The RoPE pairing of an architecture, as llama.cpp's `llama_model_rope_type` assigns it (no file key says it):
/// `llama` rotates adjacent pairs, the BitNet architectures rotate halves. Refuses what this engine does not
/// compute: partial rotary dimensions on `llama` (its converters permute whole heads), RoPE scaling other than
/// none or a linear factor of 1, and per-frequency factors (`rope_freqs.weight`, Llama 3.1 scaling).
fn rope_type(
    file: &GgufFile,
    arch: &str,
    rope_dim: usize,
    head_dim: usize,
) -> Result<(RopeType, String)> {
    let unsupported = |what: String| Err(file.error(ErrorKind::UnsupportedModel(what)));
    let scaling_key = format!("{arch}.rope.scaling.type");
    let factor = file.opt(&format!("{arch}.rope.scaling.factor"), GgufFile::get_f64)?;
    match file.opt_str(&scaling_key)? {
        None | Some("none") => {}
        Some("linear") if factor.is_none_or(|f| f == 1.0) => {}
        Some(kind) => {
            return unsupported(format!(
            "{scaling_key} = {kind:?} (factor {factor:?}): this engine computes unscaled RoPE only"
        ))
        }
    }
    if file.tensor("rope_freqs.weight").is_some() {
        return unsupported("rope_freqs.weight (per-frequency RoPE factors, as in Llama 3.1 scaling) is not supported".into());
    }
    if arch == "llama" {
        if rope_dim != head_dim {
            return unsupported(format!(
                "llama.rope.dimension_count = {rope_dim} for head dim {head_dim}: partial rotary on the llama architecture"
            ));
        }
        return Ok((
            RopeType::Normal,
            "architecture llama: adjacent pairs (llama.cpp LLAMA_ROPE_TYPE_NORM; its converters permute Q/K rows for it)".into(),
        ));
    }
    Ok((
        RopeType::Neox,
        format!("architecture {arch}: rotate-half (llama.cpp LLAMA_ROPE_TYPE_NEOX)"),
    ))
}
