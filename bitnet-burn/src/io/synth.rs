//! Synthetic BitNet b1.58 GGUF files with real shapes and random ternary weights, deterministic from a seed:
//! for tests that need no downloaded model, and for benchmarks at the exact 2B-4T shape.

use std::path::Path;

use bitnet_gguf::{quant, Activation, Array, GgmlType, GgufError, GgufWriter, ModelConfig, Value};

use crate::rng::Rng;

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

/// The tokenizer a synthetic file carries.
enum Vocab {
    /// GPT-2 byte-level BPE: 256 byte tokens, then control tokens.
    Bpe,
    /// SentencePiece (llama.cpp's `llama` tokenizer model): `<unk>`, `<s>`, `</s>`, 256 byte-fallback tokens,
    /// then ASCII pieces with scores so that words merge.
    SentencePiece,
}

/// Writes the GPT-2 byte-level vocabulary of `size` tokens; returns the BOS id.
fn bpe_vocab(w: &mut GgufWriter, size: usize) -> Result<usize, GgufError> {
    let mut tokens = byte_tokens();
    tokens.extend((0..size.saturating_sub(256)).map(|i| format!("<|reserved_special_token_{i}|>")));
    tokens.truncate(size);
    let types = (0..tokens.len())
        .map(|i| if i < 256 { 1 } else { 3 })
        .collect();
    w.set("tokenizer.ggml.model", Value::String("gpt2".into()))?;
    w.set("tokenizer.ggml.pre", Value::String("llama-bpe".into()))?;
    w.set("tokenizer.ggml.tokens", Value::Array(Array::String(tokens)))?;
    w.set("tokenizer.ggml.token_type", Value::Array(Array::I32(types)))?;
    w.set(
        "tokenizer.ggml.merges",
        Value::Array(Array::String(Vec::new())),
    )?;
    Ok(256.min(size - 1))
}

/// Writes a SentencePiece vocabulary of `size` tokens (at least 259); returns the BOS id.
fn spm_vocab(w: &mut GgufWriter, size: usize) -> Result<usize, GgufError> {
    const CONTROL: i32 = 3;
    const BYTE: i32 = 6;
    let mut tokens: Vec<(String, i32)> = vec![
        ("<unk>".into(), 2),
        ("<s>".into(), CONTROL),
        ("</s>".into(), CONTROL),
    ];
    tokens.extend((0..=255u8).map(|b| (format!("<0x{b:02X}>"), BYTE)));
    let mut pieces: Vec<String> = vec!["\u{2581}".into()];
    pieces.extend(('a'..='z').map(|c| format!("\u{2581}{c}")));
    pieces.extend((33u8..=126).map(|b| char::from(b).to_string()));
    let letters: Vec<char> = "etaoinshrdlu".chars().collect();
    for a in &letters {
        for b in &letters {
            pieces.push(format!("{a}{b}"));
            pieces.push(format!("\u{2581}{a}{b}"));
        }
    }
    tokens.extend(pieces.into_iter().map(|p| (p, 1)));
    tokens.extend((tokens.len()..size).map(|i| (format!("<extra_{i}>"), CONTROL)));
    tokens.truncate(size);
    // Shorter pieces score higher, as in a trained unigram model; ties broken by position.
    let scores = tokens
        .iter()
        .enumerate()
        .map(|(i, (t, ty))| match *ty {
            1 => -(t.chars().count() as f32) - i as f32 * 1e-3,
            _ => 0.0,
        })
        .collect();
    let types = tokens.iter().map(|(_, ty)| *ty).collect();
    let tokens = tokens.into_iter().map(|(t, _)| t).collect();
    w.set("tokenizer.ggml.model", Value::String("llama".into()))?;
    w.set("tokenizer.ggml.tokens", Value::Array(Array::String(tokens)))?;
    w.set("tokenizer.ggml.scores", Value::Array(Array::F32(scores)))?;
    w.set("tokenizer.ggml.token_type", Value::Array(Array::I32(types)))?;
    Ok(1)
}

/// Writes a synthetic model of `shape` (e.g. a [`ModelConfig::preset`]) with its linear weights in `ty` (I2_S,
/// TQ1_0, TQ2_0 or F32).
///
/// Each matrix is `trits · s` with one scale `s` exactly representable in f16, so every format stores the same
/// values and gives identical logits. The embedding is F16 (and the head, when not tied), norms F32 around 1,
/// sub-norms as the config says. The architecture is `llama` when the config says so (SiLU, llama.cpp's
/// adjacent-pair RoPE, as Falcon3-1.58bit, Llama3-8B-1.58 and Falcon-E files), `bitnet` with SiLU and a
/// SentencePiece vocabulary for a SiLU `bitnet` config (1bitLLM's bitnet_b1_58-large/3B), otherwise `bitnet`
/// (`bitnet-b1.58` for I2_S) with ReLU² and a GPT-2 byte-level vocabulary, which readers infer the activation
/// from; an activation the architecture does not have is refused.
pub fn write_synthetic(
    path: &Path,
    shape: &ModelConfig,
    ty: GgmlType,
    seed: u64,
) -> Result<(), GgufError> {
    let (arch, activation, vocab) = match shape.architecture.as_str() {
        "llama" => ("llama", Activation::Silu, Vocab::Bpe),
        "bitnet" if shape.activation == Activation::Silu => {
            ("bitnet", Activation::Silu, Vocab::SentencePiece)
        }
        _ if ty == GgmlType::I2S => ("bitnet-b1.58", Activation::Relu2, Vocab::Bpe),
        _ => ("bitnet", Activation::Relu2, Vocab::Bpe),
    };
    if shape.activation != activation {
        return Err(mem(bitnet_gguf::ErrorKind::UnsupportedModel(format!(
            "synthetic {arch} files use {}; this config asks for {}",
            activation.name(),
            shape.activation.name()
        ))));
    }
    let mut rng = Rng::new(seed);
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
    kv(&mut w, &a("vocab_size"), u32v(shape.vocab_size))?;
    kv(&mut w, &a("context_length"), u32v(shape.context_length))?;
    kv(&mut w, &a("embedding_length"), u32v(shape.hidden_size))?;
    kv(&mut w, &a("block_count"), u32v(shape.n_layers))?;
    kv(&mut w, &a("feed_forward_length"), u32v(shape.ffn_size))?;
    kv(
        &mut w,
        &a("rope.dimension_count"),
        u32v(shape.hidden_size / shape.n_heads),
    )?;
    kv(&mut w, &a("attention.head_count"), u32v(shape.n_heads))?;
    kv(
        &mut w,
        &a("attention.head_count_kv"),
        u32v(shape.n_kv_heads),
    )?;
    kv(
        &mut w,
        &a("attention.layer_norm_rms_epsilon"),
        Value::F32(shape.rms_eps),
    )?;
    kv(&mut w, &a("rope.freq_base"), Value::F32(shape.rope_theta))?;
    let bos = match vocab {
        Vocab::Bpe => bpe_vocab(&mut w, shape.vocab_size)?,
        Vocab::SentencePiece => spm_vocab(&mut w, shape.vocab_size)?,
    };
    kv(&mut w, "tokenizer.ggml.bos_token_id", u32v(bos))?;
    kv(&mut w, "tokenizer.ggml.eos_token_id", u32v(bos + 1))?;

    let f16_exact = |v: f32| half::f16::from_f32(v).to_f32();
    let matrices = if shape.tied_embeddings {
        &["token_embd.weight"][..]
    } else {
        &["token_embd.weight", "output.weight"][..]
    };
    for &name in matrices {
        let values: Vec<f32> = (0..shape.vocab_size * shape.hidden_size)
            .map(|_| f16_exact(rng.normal() * 0.25))
            .collect();
        w.add_tensor(
            name,
            &[shape.hidden_size as u64, shape.vocab_size as u64],
            GgmlType::F16,
            quant::quantize(name, GgmlType::F16, &values, shape.hidden_size).map_err(mem)?,
        )?;
    }
    add_norm(&mut w, &mut rng, "output_norm.weight", shape.hidden_size)?;
    let head_dim = shape.hidden_size / shape.n_heads;
    for l in 0..shape.n_layers {
        let n = |t: &str| format!("blk.{l}.{t}.weight");
        add_norm(&mut w, &mut rng, &n("attn_norm"), shape.hidden_size)?;
        add_norm(&mut w, &mut rng, &n("ffn_norm"), shape.hidden_size)?;
        if shape.sub_norms {
            add_norm(&mut w, &mut rng, &n("attn_sub_norm"), shape.hidden_size)?;
            add_norm(&mut w, &mut rng, &n("ffn_sub_norm"), shape.ffn_size)?;
        }
        let (h, f, kvd) = (
            shape.hidden_size,
            shape.ffn_size,
            shape.n_kv_heads * head_dim,
        );
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
