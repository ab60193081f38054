//! transformers BitNet checkpoints to GGUF: the weights our importer reads (packed ternary with `weight_scale`
//! read as the config says, or float masters ternarized once), written tensor by tensor in I2_S, TQ2_0, TQ1_0 or a
//! float type, with the model's tokenizer and chat template embedded.
//!
//! Already-ternary weights are never re-ternarized: llama.cpp's converter does, which scales every matrix by its
//! fraction of non-zeros.

use std::path::Path;

use bitnet_gguf::{quant, Array, GgmlType, GgufError, GgufWriter, ModelConfig, Value};

use crate::error::LoadError;
use crate::io::import::HfCheckpoint;
use crate::text::tokenizer::{gguf_tokenizer_metadata, TokenizerError};

/// Why a checkpoint could not be converted.
#[derive(Debug, thiserror::Error)]
pub enum ConvertError {
    /// The checkpoint could not be read.
    #[error(transparent)]
    Load(#[from] LoadError),
    /// The tokenizer could not be written as GGUF metadata.
    #[error(transparent)]
    Tokenizer(#[from] TokenizerError),
    /// The GGUF could not be written.
    #[error(transparent)]
    Gguf(#[from] GgufError),
    /// The checkpoint or the requested type is outside what the converter handles.
    #[error("{0}")]
    Unsupported(String),
}

/// Output types: the ternary linears' type and the embedding's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvertOptions {
    /// I2_S, TQ2_0, TQ1_0, F16, BF16 or F32.
    pub linear: GgmlType,
    /// F16, BF16, F32 or Q8_0 (also the untied output head's).
    pub embedding: GgmlType,
}

/// What was written.
#[derive(Clone, Debug, PartialEq)]
pub struct ConvertSummary {
    /// `general.architecture` of the output.
    pub architecture: String,
    /// The hyper-parameters, as the checkpoint's config gives them.
    pub config: ModelConfig,
    /// Tensors written.
    pub tensors: usize,
    /// Output size in bytes.
    pub bytes: u64,
    /// Things a user should know (a pre-tokenizer llama.cpp will not recognise, ...).
    pub notes: Vec<String>,
}

const LINEAR_TYPES: [GgmlType; 6] = [
    GgmlType::I2S,
    GgmlType::TQ2_0,
    GgmlType::TQ1_0,
    GgmlType::F16,
    GgmlType::BF16,
    GgmlType::F32,
];
const EMBEDDING_TYPES: [GgmlType; 4] =
    [GgmlType::F16, GgmlType::BF16, GgmlType::F32, GgmlType::Q8_0];

/// llama.cpp's token type for padding.
const UNUSED_TOKEN: i32 = 5;

/// Rows of the embedding quantized per piece, so a 128k-token vocabulary never sits in memory as f32.
const EMBEDDING_ROWS_PER_PIECE: usize = 4096;

/// One output tensor and where its values come from.
enum Source {
    Norm,
    Matrix,
    Ternary { in_f: usize, out_f: usize },
}

/// Converts the checkpoint in `dir` (config.json, *.safetensors, tokenizer.json, optional tokenizer_config.json)
/// to a GGUF at `out`, calling `progress(done, total)` after each tensor. Peak memory is about one tensor.
pub fn convert_checkpoint(
    dir: &Path,
    out: &Path,
    options: ConvertOptions,
    mut progress: impl FnMut(usize, usize),
) -> Result<ConvertSummary, ConvertError> {
    let bad_type = |what: &str, ty: GgmlType, allowed: &[GgmlType]| {
        ConvertError::Unsupported(format!(
            "{what} type {} is not one of {}",
            ty.name(),
            allowed
                .iter()
                .map(|t| t.name())
                .collect::<Vec<_>>()
                .join(", ")
        ))
    };
    if !LINEAR_TYPES.contains(&options.linear) {
        return Err(bad_type("linear", options.linear, &LINEAR_TYPES));
    }
    if !EMBEDDING_TYPES.contains(&options.embedding) {
        return Err(bad_type("embedding", options.embedding, &EMBEDDING_TYPES));
    }
    let ckpt = HfCheckpoint::open(dir)?;
    let config = ckpt.model_config()?;
    if !config.sub_norms {
        return Err(ConvertError::Unsupported(format!(
            "{}: model_type {:?} has no BitNet sub-norms; llama-architecture ternary checkpoints need llama.cpp's \
             Q/K permutation, which this converter does not write",
            dir.display(),
            config.architecture
        )));
    }
    // bitnet.cpp reads I2_S under its own architecture name; llama.cpp reads TQ and float types as `bitnet`.
    let arch = if options.linear == GgmlType::I2S {
        "bitnet-b1.58"
    } else {
        "bitnet"
    };
    let mut w = GgufWriter::new();
    let mut notes = Vec::new();
    write_metadata(&mut w, &ckpt, &config, arch, options.linear)?;
    let tokenizer_json = dir.join("tokenizer.json");
    let mut tokenizer = gguf_tokenizer_metadata(&tokenizer_json)?;
    pad_vocabulary(&mut tokenizer, config.vocab_size, &tokenizer_json)?;
    for (k, v) in tokenizer {
        w.set(&k, v)?;
    }
    if w.get("tokenizer.ggml.pre").is_none() {
        notes.push(
            "the pre-tokenizer is neither Llama 3's nor GPT-2's: no tokenizer.ggml.pre written, llama.cpp will \
             use its default"
                .into(),
        );
    }
    if let Some(template) = chat_template(dir) {
        w.set("tokenizer.chat_template", Value::String(template))?;
    }

    let plan = tensor_plan(&config, options);
    for (name, ty, dims, _) in &plan {
        w.declare_tensor(name, dims, *ty)?;
    }
    let total = plan.len();
    let mut failure = None;
    let mut done = 0;
    let written = w.write_file_with(out, |name| {
        let (_, ty, dims, source) = plan
            .iter()
            .find(|p| p.0 == name)
            .expect("every declared tensor is planned");
        let bytes = tensor_bytes(&ckpt, name, *ty, dims, source).map_err(|e| {
            let message = e.to_string();
            failure = Some(e);
            std::io::Error::other(message)
        })?;
        done += 1;
        progress(done, total);
        Ok(bytes)
    });
    if let Some(e) = failure {
        return Err(e);
    }
    written?;
    let bytes = std::fs::metadata(out)
        .map_err(|source| LoadError::Io {
            path: out.display().to_string(),
            source,
        })?
        .len();
    Ok(ConvertSummary {
        architecture: arch.into(),
        config,
        tensors: total,
        bytes,
        notes,
    })
}

/// Model hyper-parameters under `arch`, as llama.cpp's converter names them, plus the activation (which llama.cpp
/// ignores and our importer reads, since stock llama.cpp assumes SiLU).
fn write_metadata(
    w: &mut GgufWriter,
    ckpt: &HfCheckpoint,
    c: &ModelConfig,
    arch: &str,
    linear: GgmlType,
) -> Result<(), ConvertError> {
    let name = ckpt
        .dir()
        .canonicalize()
        .ok()
        .and_then(|d| d.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "bitnet".into());
    // llama.cpp's LLAMA_FTYPE values (I2_S: bitnet.cpp's 40).
    let file_type = match linear {
        GgmlType::F32 => 0,
        GgmlType::F16 => 1,
        GgmlType::BF16 => 32,
        GgmlType::TQ1_0 => 36,
        GgmlType::TQ2_0 => 37,
        _ => 40,
    };
    let u32v = |v: usize| Value::U32(v as u32);
    let entries = [
        (
            "general.architecture".to_string(),
            Value::String(arch.into()),
        ),
        ("general.name".into(), Value::String(name)),
        ("general.file_type".into(), Value::U32(file_type)),
        ("general.quantization_version".into(), Value::U32(2)),
        (format!("{arch}.vocab_size"), u32v(c.vocab_size)),
        (format!("{arch}.context_length"), u32v(c.context_length)),
        (format!("{arch}.embedding_length"), u32v(c.hidden_size)),
        (format!("{arch}.block_count"), u32v(c.n_layers)),
        (format!("{arch}.feed_forward_length"), u32v(c.ffn_size)),
        (format!("{arch}.attention.head_count"), u32v(c.n_heads)),
        (
            format!("{arch}.attention.head_count_kv"),
            u32v(c.n_kv_heads),
        ),
        (format!("{arch}.rope.freq_base"), Value::F32(c.rope_theta)),
        (format!("{arch}.rope.dimension_count"), u32v(c.rope_dim)),
        (
            format!("{arch}.attention.layer_norm_rms_epsilon"),
            Value::F32(c.rms_eps),
        ),
        (
            format!("{arch}.hidden_act"),
            Value::String(c.activation.name().into()),
        ),
    ];
    for (k, v) in entries {
        w.set(&k, v)?;
    }
    Ok(())
}

/// Pads the token list to the model's vocabulary with unused `[PAD<id>]` tokens (llama.cpp needs one token per
/// embedding row, as its converter writes them); more tokens than rows is an error.
fn pad_vocabulary(
    meta: &mut [(String, Value)],
    vocab: usize,
    tokenizer_json: &Path,
) -> Result<(), ConvertError> {
    for (key, value) in meta.iter_mut() {
        match (key.as_str(), value) {
            ("tokenizer.ggml.tokens", Value::Array(Array::String(tokens))) => {
                if tokens.len() > vocab {
                    return Err(ConvertError::Unsupported(format!(
                        "{}: {} tokens for a model with vocab_size {vocab}",
                        tokenizer_json.display(),
                        tokens.len()
                    )));
                }
                let n = tokens.len();
                tokens.extend((n..vocab).map(|i| format!("[PAD{i}]")));
            }
            ("tokenizer.ggml.token_type", Value::Array(Array::I32(types))) => {
                types.resize(vocab.max(types.len()), UNUSED_TOKEN);
            }
            _ => {}
        }
    }
    Ok(())
}

/// `chat_template` from tokenizer_config.json, if there is one.
fn chat_template(dir: &Path) -> Option<String> {
    let bytes = std::fs::read(dir.join("tokenizer_config.json")).ok()?;
    let j: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    j["chat_template"].as_str().map(String::from)
}

/// Every output tensor in llama.cpp's order: name, type, ggml dims (ne0 first), source.
fn tensor_plan(
    c: &ModelConfig,
    options: ConvertOptions,
) -> Vec<(String, GgmlType, Vec<u64>, Source)> {
    let (h, f, hd) = (c.hidden_size, c.ffn_size, c.head_dim());
    let mut plan = vec![(
        "token_embd.weight".to_string(),
        options.embedding,
        vec![h as u64, c.vocab_size as u64],
        Source::Matrix,
    )];
    let norm = |name: String, n: usize| (name, GgmlType::F32, vec![n as u64], Source::Norm);
    plan.push(norm("output_norm.weight".into(), h));
    if !c.tied_embeddings {
        plan.push((
            "output.weight".into(),
            options.embedding,
            vec![h as u64, c.vocab_size as u64],
            Source::Matrix,
        ));
    }
    let ternary = |name: String, in_f: usize, out_f: usize| {
        (
            name,
            options.linear,
            vec![in_f as u64, out_f as u64],
            Source::Ternary { in_f, out_f },
        )
    };
    for l in 0..c.n_layers {
        let n = |t: &str| format!("blk.{l}.{t}.weight");
        let (q, kv) = (c.n_heads * hd, c.n_kv_heads * hd);
        plan.extend([
            norm(n("attn_norm"), h),
            ternary(n("attn_q"), h, q),
            ternary(n("attn_k"), h, kv),
            ternary(n("attn_v"), h, kv),
            ternary(n("attn_output"), q, h),
            norm(n("attn_sub_norm"), q),
            norm(n("ffn_norm"), h),
            ternary(n("ffn_gate"), h, f),
            ternary(n("ffn_up"), h, f),
            ternary(n("ffn_down"), f, h),
            norm(n("ffn_sub_norm"), f),
        ]);
    }
    plan
}

/// One tensor's bytes in the output type.
fn tensor_bytes(
    ckpt: &HfCheckpoint,
    name: &str,
    ty: GgmlType,
    dims: &[u64],
    source: &Source,
) -> Result<Vec<u8>, ConvertError> {
    let encode = |values: &[f32], row_len: usize| {
        quant::quantize(name, ty, values, row_len)
            .map_err(|kind| GgufError::new(ckpt.dir().display(), kind))
    };
    let expected = dims.iter().product::<u64>() as usize;
    match *source {
        Source::Norm => {
            let v = crate::io::import::WeightSource::float(ckpt, name, expected)?;
            Ok(encode(&v, v.len())?)
        }
        Source::Matrix => {
            let row_len = dims[0] as usize;
            let piece = row_len * EMBEDDING_ROWS_PER_PIECE;
            let mut out = Vec::new();
            for start in (0..expected).step_by(piece) {
                let v = ckpt.float_piece(name, expected, start..expected.min(start + piece))?;
                out.extend(encode(&v, row_len)?);
            }
            Ok(out)
        }
        Source::Ternary { in_f, out_f } => {
            let mut trits = vec![0i8; in_f * out_f];
            let scale = ckpt.ternary_rows(name, in_f, out_f, |row, t| {
                trits[row * in_f..(row + 1) * in_f].copy_from_slice(t)
            })?;
            let values: Vec<f32> = trits.iter().map(|&t| t as f32 * scale).collect();
            Ok(encode(&values, in_f)?)
        }
    }
}
