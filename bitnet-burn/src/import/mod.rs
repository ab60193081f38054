//! Importers: GGUF files (every type bitnet-gguf reads) and transformers checkpoints, into one packed layout.

mod gguf;
mod hf;

pub(crate) use hf::hf_name;
pub use hf::HfCheckpoint;

use std::path::Path;

use bitnet_gguf::ModelConfig;
use bitnet_kernels_cubecl::TernaryBackend;

use crate::attention::Attention;
use crate::bit_linear::BitLinear;
use crate::error::LoadError;
use crate::ffn::FeedForward;
use crate::model::{BitNet, BitNetModel, Block};
use crate::norm::RmsNorm;
use burn::module::Param;
use burn::tensor::{Tensor, TensorData};

/// Loads a model from a `.gguf` file or a transformers checkpoint directory.
pub fn load<B: TernaryBackend>(
    path: impl AsRef<Path>,
    device: &B::Device,
) -> Result<BitNet<B>, LoadError> {
    load_with_progress(path, device, |_| {})
}

/// How far loading has got: `done` of `total` parts (the embedding, each layer, the output norm and head).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LoadProgress {
    /// Parts loaded.
    pub done: usize,
    /// Parts in all.
    pub total: usize,
}

/// [`load`], calling `progress` after each part (for a progress bar on large files).
pub fn load_with_progress<B: TernaryBackend>(
    path: impl AsRef<Path>,
    device: &B::Device,
    mut progress: impl FnMut(LoadProgress),
) -> Result<BitNet<B>, LoadError> {
    let path = path.as_ref();
    if path.is_dir() {
        let ckpt = HfCheckpoint::open(path)?;
        let config = ckpt.model_config()?;
        build(&ckpt, config, device, &mut progress)
    } else {
        let file = bitnet_gguf::GgufFile::open(path)?;
        let config = ModelConfig::from_gguf(&file)?;
        build(&file, config, device, &mut progress)
    }
}

/// Where weights come from: names follow GGUF (`blk.N.attn_q.weight`); each source maps them to its own.
pub(crate) trait WeightSource {
    /// A float tensor's values, checked to have `len` elements.
    fn float(&self, name: &str, len: usize) -> Result<Vec<f32>, LoadError>;
    /// Whether a tensor exists.
    fn has(&self, name: &str) -> bool;
    /// A ternary matrix `[out, in]` packed into a BitLinear.
    fn bit_linear<B: TernaryBackend>(
        &self,
        name: &str,
        in_f: usize,
        out_f: usize,
        device: &B::Device,
    ) -> Result<BitLinear<B>, LoadError>;
}

/// Assembles the model from any weight source.
pub(crate) fn build<B: TernaryBackend>(
    src: &impl WeightSource,
    config: ModelConfig,
    device: &B::Device,
    progress: &mut dyn FnMut(LoadProgress),
) -> Result<BitNet<B>, LoadError> {
    let c = &config;
    let total = c.n_layers + 2;
    let mut report = |done| progress(LoadProgress { done, total });
    let (h, f, hd) = (c.hidden_size, c.ffn_size, c.head_dim());
    let norm = |name: &str, len: usize| -> Result<_, LoadError> {
        Ok(RmsNorm::<B>::from_weights(
            src.float(name, len)?,
            c.rms_eps,
            device,
        ))
    };
    let opt_norm = |name: &str, len: usize| {
        if src.has(name) {
            norm(name, len).map(Some)
        } else {
            Ok(None)
        }
    };
    let mut blocks = Vec::with_capacity(c.n_layers);
    for i in 0..c.n_layers {
        let n = |t: &str| format!("blk.{i}.{t}.weight");
        let lin = |t: &str, i_f, o_f| src.bit_linear::<B>(&n(t), i_f, o_f, device);
        blocks.push(Block {
            attn_norm: norm(&n("attn_norm"), h)?,
            attn: Attention {
                wq: lin("attn_q", h, c.n_heads * hd)?,
                wk: lin("attn_k", h, c.n_kv_heads * hd)?,
                wv: lin("attn_v", h, c.n_kv_heads * hd)?,
                wo: lin("attn_output", c.n_heads * hd, h)?,
                sub_norm: opt_norm(&n("attn_sub_norm"), c.n_heads * hd)?,
                n_heads: c.n_heads,
                n_kv_heads: c.n_kv_heads,
            },
            ffn_norm: norm(&n("ffn_norm"), h)?,
            ffn: FeedForward {
                gate: lin("ffn_gate", h, f)?,
                up: lin("ffn_up", h, f)?,
                down: lin("ffn_down", f, h)?,
                sub_norm: opt_norm(&n("ffn_sub_norm"), f)?,
                activation: c.activation,
            },
        });
        report(i + 1);
    }
    let matrix = |name: &str| -> Result<Param<Tensor<B, 2>>, LoadError> {
        let v = src.float(name, c.vocab_size * h)?;
        Ok(Param::from_tensor(Tensor::from_data(
            TensorData::new(v, [c.vocab_size, h]),
            device,
        ))
        .set_require_grad(false))
    };
    let embedding = matrix("token_embd.weight")?;
    report(c.n_layers + 1);
    let model = BitNetModel {
        embedding,
        blocks,
        norm: norm("output_norm.weight", h)?,
        output: if c.tied_embeddings {
            None
        } else {
            Some(matrix("output.weight")?)
        },
    };
    report(total);
    Ok(BitNet::new(model, config, device))
}
