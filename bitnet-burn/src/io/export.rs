//! A model being trained, saved as a transformers `BitNetForCausalLM` checkpoint with float master weights
//! (config.json, model.safetensors, tokenizer.json): what transformers loads, and what
//! [`crate::io::convert::convert_checkpoint`] turns into I2_S, TQ2_0 or TQ1_0 GGUF files, ternarizing each matrix
//! exactly as the training forward does.

use std::path::Path;

use bitnet_kernels_cubecl::TernaryBackend;
use burn::module::Param;
use burn::tensor::Tensor;
use safetensors::tensor::TensorView;
use safetensors::Dtype;

use crate::io::import::hf_name;
use crate::nn::BitLinear;
use crate::nn::BitNet;

/// Why a checkpoint could not be written.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// A linear layer holds packed ternary weights only (a loaded or frozen model).
    #[error("{0}: no latent float weights (export a model being trained, before freeze)")]
    NoLatent(String),
    /// Writing failed.
    #[error("{path}: {message}")]
    Write {
        /// The file.
        path: String,
        /// What failed.
        message: String,
    },
}

/// Writes `net` (latent weights, as [`crate::train::Trainer`] holds them) with `tokenizer_json` into `dir`.
pub fn save_checkpoint<B: TernaryBackend>(
    net: &BitNet<B>,
    tokenizer_json: &Path,
    dir: &Path,
) -> Result<(), ExportError> {
    let write_err = |path: &Path, message: String| ExportError::Write {
        path: path.display().to_string(),
        message,
    };
    std::fs::create_dir_all(dir).map_err(|e| write_err(dir, e.to_string()))?;
    let c = &net.config;
    let m = &net.model;
    let mut tensors: Vec<(String, Vec<usize>, Vec<u8>)> = Vec::new();
    let mut push = |gguf: &str, t: Tensor<B, 2>, shape: Vec<usize>| {
        tensors.push((hf_name(gguf), shape, f32_bytes(t)));
    };
    let matrix = |t: Tensor<B, 2>| (t.dims().to_vec(), t);
    let vector = |p: &Param<Tensor<B, 1>>| (p.dims().to_vec(), p.val().unsqueeze::<2>());
    let (shape, t) = matrix(m.embedding.float(net.device()));
    push("token_embd.weight", t, shape);
    if let Some(out) = &m.output {
        let (shape, t) = matrix(out.float(net.device()));
        push("output.weight", t, shape);
    }
    let (shape, t) = vector(&m.norm.weight);
    push("output_norm.weight", t, shape);
    for (l, b) in m.blocks.iter().enumerate() {
        let n = |t: &str| format!("blk.{l}.{t}.weight");
        let norms = [
            ("attn_norm", Some(&b.attn_norm)),
            ("ffn_norm", Some(&b.ffn_norm)),
            ("attn_sub_norm", b.attn.sub_norm.as_ref()),
            ("ffn_sub_norm", b.ffn.sub_norm.as_ref()),
        ];
        for (name, norm) in norms {
            if let Some(norm) = norm {
                let (shape, t) = vector(&norm.weight);
                push(&n(name), t, shape);
            }
        }
        let linears: [(&str, &BitLinear<B>); 7] = [
            ("attn_q", &b.attn.wq),
            ("attn_k", &b.attn.wk),
            ("attn_v", &b.attn.wv),
            ("attn_output", &b.attn.wo),
            ("ffn_gate", &b.ffn.gate),
            ("ffn_up", &b.ffn.up),
            ("ffn_down", &b.ffn.down),
        ];
        for (name, lin) in linears {
            let latent = lin
                .latent
                .as_ref()
                .ok_or_else(|| ExportError::NoLatent(n(name)))?;
            let (shape, t) = matrix(latent.val());
            push(&n(name), t, shape);
        }
    }
    let views = tensors
        .iter()
        .map(|(name, shape, bytes)| {
            TensorView::new(Dtype::F32, shape.clone(), bytes)
                .map(|v| (name.clone(), v))
                .map_err(|e| write_err(dir, e.to_string()))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let weights = dir.join("model.safetensors");
    safetensors::serialize_to_file(views, None, &weights)
        .map_err(|e| write_err(&weights, e.to_string()))?;

    let config = serde_json::json!({
        "architectures": ["BitNetForCausalLM"],
        "model_type": "bitnet",
        "hidden_size": c.hidden_size,
        "intermediate_size": c.ffn_size,
        "num_hidden_layers": c.n_layers,
        "num_attention_heads": c.n_heads,
        "num_key_value_heads": c.n_kv_heads,
        "vocab_size": c.vocab_size,
        "max_position_embeddings": c.context_length,
        "rms_norm_eps": c.rms_eps,
        "rope_theta": c.rope_theta,
        "hidden_act": c.activation.name(),
        "tie_word_embeddings": c.tied_embeddings,
        "torch_dtype": "float32",
    });
    let config_path = dir.join("config.json");
    std::fs::write(&config_path, format!("{config:#}"))
        .map_err(|e| write_err(&config_path, e.to_string()))?;
    let tok_path = dir.join("tokenizer.json");
    std::fs::copy(tokenizer_json, &tok_path).map_err(|e| write_err(&tok_path, e.to_string()))?;
    Ok(())
}

fn f32_bytes<B: TernaryBackend>(t: Tensor<B, 2>) -> Vec<u8> {
    t.into_data()
        .convert::<f32>()
        .to_vec::<f32>()
        .expect("float tensor")
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect()
}
