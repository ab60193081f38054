//! Grouped-query self-attention with BitLinear projections, NEOX RoPE, a KV cache and the BitNet sub-norm
//! (applied to the attention output before the output projection).

use bitnet_kernels_cubecl::TernaryBackend;
use burn::config::Config;
use burn::module::Module;
use burn::tensor::Tensor;

use super::bit_linear::{forward_shared, ActQuant, BitLinear, BitLinearConfig, Projection};
use super::cache::LayerCache;
use super::norm::{Normed, RmsNorm, RmsNormConfig};
use super::rope::Rope;

/// Shape of an [`Attention`].
#[derive(Config, Debug)]
pub struct AttentionConfig {
    /// Model width.
    pub hidden: usize,
    /// Query heads.
    pub n_heads: usize,
    /// Key/value heads.
    pub n_kv_heads: usize,
    /// Epsilon of the sub-norm.
    #[config(default = 1e-5)]
    pub rms_eps: f64,
    /// Whether the BitNet `attn_sub_norm` is present.
    #[config(default = true)]
    pub sub_norm: bool,
    /// Projections with latent float weights for training (see [`BitLinearConfig::trainable`]).
    #[config(default = false)]
    pub trainable: bool,
}

impl AttentionConfig {
    /// Zero weights, unit norms (weights come from an importer or training).
    pub fn init<B: TernaryBackend>(&self, device: &B::Device) -> Attention<B> {
        let head_dim = self.hidden / self.n_heads;
        let lin = |i: usize, o: usize| {
            BitLinearConfig::new(i, o, i)
                .with_trainable(self.trainable)
                .init(device)
        };
        Attention {
            wq: lin(self.hidden, self.hidden),
            wk: lin(self.hidden, self.n_kv_heads * head_dim),
            wv: lin(self.hidden, self.n_kv_heads * head_dim),
            wo: lin(self.hidden, self.hidden),
            sub_norm: self.sub_norm.then(|| {
                RmsNormConfig::new(self.hidden)
                    .with_eps(self.rms_eps)
                    .init(device)
            }),
            n_heads: self.n_heads,
            n_kv_heads: self.n_kv_heads,
        }
    }
}

/// Self-attention of one block.
#[derive(Module, Debug)]
pub struct Attention<B: TernaryBackend> {
    /// Query projection `[hidden → heads · head_dim]`.
    pub wq: BitLinear<B>,
    /// Key projection `[hidden → kv_heads · head_dim]`.
    pub wk: BitLinear<B>,
    /// Value projection.
    pub wv: BitLinear<B>,
    /// Output projection.
    pub wo: BitLinear<B>,
    /// `attn_sub_norm` (BitNet b1.58); absent in plain llama-architecture files.
    pub sub_norm: Option<RmsNorm<B>>,
    /// Query heads.
    pub n_heads: usize,
    /// Key/value heads.
    pub n_kv_heads: usize,
}

impl<B: TernaryBackend> Attention<B> {
    /// Attention of `x [batch, rows, hidden]` (the block's normalized input), whose rows are consecutive runs
    /// of tokens of different sequences, one run per cache in `caches` (`caches[i].seq()` rows each, at positions
    /// `caches[i].start()..`): the projections see all rows at once, attention runs per sequence over its own
    /// cache. Returns the output projection unapplied so the block adds it to the residual stream in one op.
    pub fn forward<'a>(
        &'a self,
        x: Normed<'a, B, 3>,
        caches: &mut [LayerCache<'_, B>],
        rope: &Rope<B>,
        act: ActQuant,
    ) -> Projection<'a, B, 3> {
        let qkv: [Tensor<B, 3>; 3] = forward_shared(&[&self.wq, &self.wk, &self.wv], x, act)
            .try_into()
            .expect("three projections");
        let steps = caches.iter_mut().map(LayerCache::take).collect();
        let (out, kept) = rope.attention_step(qkv, self.n_heads, steps);
        for (cache, kv) in caches.iter_mut().zip(kept) {
            cache.put(kv);
        }
        let out = Normed {
            x: out,
            norm: self.sub_norm.as_ref(),
        };
        self.wo.project(out, act)
    }
}
