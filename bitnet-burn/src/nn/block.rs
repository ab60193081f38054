//! One transformer block in the paper's order: pre-norm attention, then the pre-norm FFN, each added to the
//! residual stream.

use bitnet_gguf::ModelConfig;
use bitnet_kernels_cubecl::TernaryBackend;
use burn::module::Module;
use burn::tensor::Tensor;

use super::attention::{Attention, AttentionConfig};
use super::bit_linear::ActQuant;
use super::cache::LayerCache;
use super::ffn::{FeedForward, FeedForwardConfig};
use super::norm::{RmsNorm, RmsNormConfig};
use super::rope::Rope;

/// One transformer block.
#[derive(Module, Debug)]
pub struct Block<B: TernaryBackend> {
    /// Pre-attention norm.
    pub attn_norm: RmsNorm<B>,
    /// Self-attention.
    pub attn: Attention<B>,
    /// Pre-FFN norm.
    pub ffn_norm: RmsNorm<B>,
    /// Feed-forward network.
    pub ffn: FeedForward<B>,
}

impl<B: TernaryBackend> Block<B> {
    /// A block of `config`'s shape with zero ternary weights and unit norms (random latent weights when
    /// `trainable`).
    pub fn init(config: &ModelConfig, trainable: bool, device: &B::Device) -> Self {
        let (h, eps) = (config.hidden_size, config.rms_eps as f64);
        let norm = || RmsNormConfig::new(h).with_eps(eps).init(device);
        Self {
            attn_norm: norm(),
            attn: AttentionConfig::new(h, config.n_heads, config.n_kv_heads)
                .with_rms_eps(eps)
                .with_sub_norm(config.sub_norms)
                .with_trainable(trainable)
                .init(device),
            ffn_norm: norm(),
            ffn: FeedForwardConfig::new(h, config.ffn_size)
                .with_activation(config.activation)
                .with_rms_eps(eps)
                .with_sub_norm(config.sub_norms)
                .with_trainable(trainable)
                .init(device),
        }
    }

    /// `x [batch, rows, hidden]` through the block, its rows being runs of tokens of the sequences of `caches`
    /// (see [`Attention::forward`]). The norms are applied by the
    /// projections that read them and each sublayer's last projection is added to the residual stream in its
    /// op ([`super::Projection`]), so on GPUs neither costs a launch of its own.
    pub fn forward(
        &self,
        x: Tensor<B, 3>,
        caches: &mut [LayerCache<'_, B>],
        rope: &Rope<B>,
        act: ActQuant,
    ) -> Tensor<B, 3> {
        let x = x.clone() + self.attn.forward(self.attn_norm.lazy(x), caches, rope, act);
        x.clone() + self.ffn.forward(self.ffn_norm.lazy(x), act)
    }

    /// The inference block of a trained one (every projection [frozen](super::BitLinear::freeze)).
    pub fn freeze(self) -> Self {
        let (attn, ffn) = (self.attn, self.ffn);
        Self {
            attn: Attention {
                wq: attn.wq.freeze(),
                wk: attn.wk.freeze(),
                wv: attn.wv.freeze(),
                wo: attn.wo.freeze(),
                ..attn
            },
            ffn: FeedForward {
                gate: ffn.gate.freeze(),
                up: ffn.up.freeze(),
                down: ffn.down.freeze(),
                ..ffn
            },
            ..self
        }
    }
}
