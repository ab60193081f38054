//! The BitNet b1.58 transformer: embedding, blocks (pre-norm attention and FFN with residuals), final norm and
//! a tied or separate output head.

use bitnet_gguf::ModelConfig;
use bitnet_kernels_cubecl::TernaryBackend;
use burn::module::{Module, Param};
use burn::tensor::{Int, Tensor, TensorData};

use crate::attention::Attention;
use crate::bit_linear::ActQuant;
use crate::cache::KvCache;
use crate::error::ForwardError;
use crate::ffn::FeedForward;
use crate::norm::RmsNorm;
use crate::rope::Rope;

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

/// The network's weights.
#[derive(Module, Debug)]
pub struct BitNetModel<B: TernaryBackend> {
    /// Token embedding `[vocab, hidden]` (also the head when tied).
    pub embedding: Param<Tensor<B, 2>>,
    /// Blocks.
    pub blocks: Vec<Block<B>>,
    /// Final norm.
    pub norm: RmsNorm<B>,
    /// Separate output head `[vocab, hidden]`, `None` when tied to the embedding.
    pub output: Option<Param<Tensor<B, 2>>>,
}

/// A loaded model: weights, config and RoPE tables, ready to run.
#[derive(Debug)]
pub struct BitNet<B: TernaryBackend> {
    /// Weights.
    pub model: BitNetModel<B>,
    /// Hyper-parameters.
    pub config: ModelConfig,
    rope: Rope<B>,
    device: B::Device,
}

impl<B: TernaryBackend> BitNet<B> {
    /// Wraps weights with their config (builds the RoPE tables for the full context).
    pub fn new(model: BitNetModel<B>, config: ModelConfig, device: &B::Device) -> Self {
        let rope = Rope::new(
            config.rope_dim,
            config.rope_theta,
            config.context_length,
            device,
        );
        Self {
            model,
            config,
            rope,
            device: device.clone(),
        }
    }

    /// The device the weights live on.
    pub fn device(&self) -> &B::Device {
        &self.device
    }

    /// An empty KV cache for `batch` sequences of up to `max_len` positions (capped at the model's context).
    pub fn new_cache(&self, batch: usize, max_len: usize) -> KvCache<B> {
        let c = &self.config;
        KvCache::new(
            c.n_layers,
            batch,
            c.n_kv_heads,
            c.head_dim(),
            max_len.min(c.context_length),
            &self.device,
        )
    }

    /// Runs `tokens [batch, seq]` after what `cache` holds and returns the final hidden states `[batch, seq, hidden]`.
    pub fn forward_hidden(
        &self,
        tokens: &[Vec<u32>],
        cache: &mut KvCache<B>,
        act: ActQuant,
    ) -> Result<Tensor<B, 3>, ForwardError> {
        let batch = tokens.len();
        let seq = tokens.first().map_or(0, Vec::len);
        if seq == 0 || tokens.iter().any(|t| t.len() != seq) {
            return Err(ForwardError::Empty);
        }
        let limit = cache.max_len().min(self.rope.max_positions());
        if cache.len() + seq > limit {
            return Err(ForwardError::ContextOverflow {
                needed: cache.len() + seq,
                limit,
            });
        }
        let vocab = self.config.vocab_size;
        if let Some(&id) = tokens.iter().flatten().find(|&&id| id as usize >= vocab) {
            return Err(ForwardError::BadToken { id, vocab });
        }
        let ids: Vec<i32> = tokens.iter().flatten().map(|&t| t as i32).collect();
        let ids = Tensor::<B, 1, Int>::from_data(TensorData::new(ids, [batch * seq]), &self.device);
        let mut x = self.model.embedding.val().select(0, ids).reshape([
            batch,
            seq,
            self.config.hidden_size,
        ]);
        for (layer, block) in self.model.blocks.iter().enumerate() {
            x = x.clone()
                + block
                    .attn
                    .forward(block.attn_norm.forward(x), layer, cache, &self.rope, act);
            x = x.clone() + block.ffn.forward(block.ffn_norm.forward(x), act);
        }
        cache.advance(seq);
        Ok(self.model.norm.forward(x))
    }

    /// Logits `[batch, seq, vocab]` of hidden states from [`Self::forward_hidden`].
    pub fn logits(&self, hidden: Tensor<B, 3>) -> Tensor<B, 3> {
        let head = self
            .model
            .output
            .as_ref()
            .unwrap_or(&self.model.embedding)
            .val();
        hidden.matmul(head.transpose().unsqueeze())
    }

    /// Logits of every position of `tokens`.
    pub fn forward(
        &self,
        tokens: &[Vec<u32>],
        cache: &mut KvCache<B>,
        act: ActQuant,
    ) -> Result<Tensor<B, 3>, ForwardError> {
        self.forward_hidden(tokens, cache, act)
            .map(|h| self.logits(h))
    }

    /// Logits of the last position only `[batch, vocab]` (what generation needs; skips the head elsewhere).
    pub fn forward_last(
        &self,
        tokens: &[Vec<u32>],
        cache: &mut KvCache<B>,
        act: ActQuant,
    ) -> Result<Tensor<B, 2>, ForwardError> {
        let h = self.forward_hidden(tokens, cache, act)?;
        let [b, seq, _] = h.dims();
        Ok(self
            .logits(h.narrow(1, seq - 1, 1))
            .reshape([b, self.config.vocab_size]))
    }
}
