//! Synthetic BitNet b1.58 GGUF files with real shapes and random ternary weights, deterministic from a seed:
//! for tests that need no downloaded model, and for benchmarks at the exact 2B-4T shape.

use std::path::Path;

use bitnet_gguf::{quant, Array, GgmlType, GgufError, GgufWriter, Value};

use crate::rng::Rng;

/// Model dimensions of a synthetic file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SynthShape {
    /// Width.
    pub hidden: usize,
    /// Blocks.
    pub layers: usize,
    /// Query heads.
    pub heads: usize,
    /// Key/value heads.
    pub kv_heads: usize,
    /// FFN width.
    pub ffn: usize,
    /// Vocabulary size.
    pub vocab: usize,
    /// Context length.
    pub context: usize,
}

impl SynthShape {
    /// A 2-layer model small enough for unit tests (every width a multiple of 256, as TQ types need).
    pub const TINY: Self = Self {
        hidden: 256,
        layers: 2,
        heads: 4,
        kv_heads: 2,
        ffn: 512,
        vocab: 512,
        context: 256,
    };
    /// microsoft/bitnet-b1.58-2B-4T.
    pub const B2B4T: Self = Self {
        hidden: 2560,
        layers: 30,
        heads: 20,
        kv_heads: 5,
        ffn: 6912,
        vocab: 128256,
        context: 4096,
    };
    /// 1bitLLM/bitnet_b1_58-large (0.7B).
    pub const LARGE: Self = Self {
        hidden: 1536,
        layers: 24,
        heads: 16,
        kv_heads: 16,
        ffn: 4096,
        vocab: 32002,
        context: 2048,
    };

    /// A shape by name: `tiny`, `2b4t`, `large`.
    pub fn named(name: &str) -> Option<Self> {
        match name {
            "tiny" => Some(Self::TINY),
            "2b4t" => Some(Self::B2B4T),
            "large" => Some(Self::LARGE),
            _ => None,
        }
    }
}

/// The 256 byte tokens of a GPT-2 byte-level BPE vocabulary, in byte order.
fn byte_tokens() -> Vec<String> {
    let printable =
        |b: u32| (33..=126).contains(&b) || (161..=172).contains(&b) || (174..=255).contains(&b);
    let mut next = 256;
    (0..256u32)
        .map(|b| {
            let c = if printable(b) {
                b
            } else {
                next += 1;
                next - 1
            };
            char::from_u32(c).unwrap().to_string()
        })
        .collect()
}

/// Writes a synthetic model of `shape` with its linear weights in `ty` (I2_S, TQ1_0, TQ2_0 or F32).
///
/// Each matrix is `trits · s` with one scale `s` exactly representable in f16, so every format stores the same
/// values and gives identical logits. The embedding is F16 (tied head), norms F32 around 1, and the tokenizer
/// section is a GPT-2 byte-level vocabulary (256 byte tokens, then control tokens up to the vocabulary size).
pub fn write_synthetic(
    path: &Path,
    shape: SynthShape,
    ty: GgmlType,
    seed: u64,
) -> Result<(), GgufError> {
    let mut rng = Rng::new(seed);
    let arch = if ty == GgmlType::I2S {
        "bitnet-b1.58"
    } else {
        "bitnet"
    };
    let mut w = GgufWriter::new();
    let kv = |w: &mut GgufWriter, k: &str, v: Value| w.set(k, v);
    kv(&mut w, "general.architecture", Value::String(arch.into()))?;
    kv(
        &mut w,
        "general.name",
        Value::String(format!("bitnet-synthetic-seed{seed}")),
    )?;
    let a = |k: &str| format!("{arch}.{k}");
    let u32v = |v: usize| Value::U32(v as u32);
    kv(&mut w, &a("vocab_size"), u32v(shape.vocab))?;
    kv(&mut w, &a("context_length"), u32v(shape.context))?;
    kv(&mut w, &a("embedding_length"), u32v(shape.hidden))?;
    kv(&mut w, &a("block_count"), u32v(shape.layers))?;
    kv(&mut w, &a("feed_forward_length"), u32v(shape.ffn))?;
    kv(
        &mut w,
        &a("rope.dimension_count"),
        u32v(shape.hidden / shape.heads),
    )?;
    kv(&mut w, &a("attention.head_count"), u32v(shape.heads))?;
    kv(&mut w, &a("attention.head_count_kv"), u32v(shape.kv_heads))?;
    kv(
        &mut w,
        &a("attention.layer_norm_rms_epsilon"),
        Value::F32(1e-5),
    )?;
    kv(&mut w, &a("rope.freq_base"), Value::F32(500_000.0))?;
    let mut tokens = byte_tokens();
    let specials = shape.vocab.saturating_sub(256);
    tokens.extend((0..specials).map(|i| format!("<|reserved_special_token_{i}|>")));
    tokens.truncate(shape.vocab);
    let types: Vec<i32> = (0..tokens.len())
        .map(|i| if i < 256 { 1 } else { 3 })
        .collect();
    kv(&mut w, "tokenizer.ggml.model", Value::String("gpt2".into()))?;
    kv(
        &mut w,
        "tokenizer.ggml.pre",
        Value::String("llama-bpe".into()),
    )?;
    kv(
        &mut w,
        "tokenizer.ggml.tokens",
        Value::Array(Array::String(tokens)),
    )?;
    kv(
        &mut w,
        "tokenizer.ggml.token_type",
        Value::Array(Array::I32(types)),
    )?;
    kv(
        &mut w,
        "tokenizer.ggml.merges",
        Value::Array(Array::String(Vec::new())),
    )?;
    kv(
        &mut w,
        "tokenizer.ggml.bos_token_id",
        u32v(256.min(shape.vocab - 1)),
    )?;
    kv(
        &mut w,
        "tokenizer.ggml.eos_token_id",
        u32v(257.min(shape.vocab - 1)),
    )?;

    let f16_exact = |v: f32| half::f16::from_f32(v).to_f32();
    let embedding: Vec<f32> = (0..shape.vocab * shape.hidden)
        .map(|_| f16_exact(rng.normal() * 0.25))
        .collect();
    w.add_tensor(
        "token_embd.weight",
        &[shape.hidden as u64, shape.vocab as u64],
        GgmlType::F16,
        quant::quantize("token_embd.weight", GgmlType::F16, &embedding, shape.hidden)
            .map_err(mem)?,
    )?;
    drop(embedding);
    add_norm(&mut w, &mut rng, "output_norm.weight", shape.hidden)?;
    let head_dim = shape.hidden / shape.heads;
    for l in 0..shape.layers {
        let n = |t: &str| format!("blk.{l}.{t}.weight");
        add_norm(&mut w, &mut rng, &n("attn_norm"), shape.hidden)?;
        add_norm(&mut w, &mut rng, &n("ffn_norm"), shape.hidden)?;
        add_norm(&mut w, &mut rng, &n("attn_sub_norm"), shape.hidden)?;
        add_norm(&mut w, &mut rng, &n("ffn_sub_norm"), shape.ffn)?;
        let (h, f, kvd) = (shape.hidden, shape.ffn, shape.kv_heads * head_dim);
        for (t, i, o) in [
            ("attn_q", h, h),
            ("attn_k", h, kvd),
            ("attn_v", h, kvd),
            ("attn_output", h, h),
            ("ffn_gate", h, f),
            ("ffn_up", h, f),
            ("ffn_down", f, h),
        ] {
            let scale = f16_exact(0.2 + 0.1 * rng.uniform());
            let values: Vec<f32> = (0..i * o)
                .map(|_| ((rng.next_u64() % 3) as f32 - 1.0) * scale)
                .collect();
            let name = n(t);
            let bytes = quant::quantize(&name, ty, &values, i).map_err(mem)?;
            w.add_tensor(&name, &[i as u64, o as u64], ty, bytes)?;
        }
    }
    w.write_file(path)
}

/// A norm weight vector around 1 (not all ones, so norm bugs show).
fn add_norm(w: &mut GgufWriter, rng: &mut Rng, name: &str, n: usize) -> Result<(), GgufError> {
    let v: Vec<f32> = (0..n).map(|_| 1.0 + 0.1 * rng.normal()).collect();
    w.add_tensor(
        name,
        &[n as u64],
        GgmlType::F32,
        quant::quantize(name, GgmlType::F32, &v, n).map_err(mem)?,
    )
}

fn mem(kind: bitnet_gguf::ErrorKind) -> GgufError {
    GgufError::new("<synthetic>", kind)
}
