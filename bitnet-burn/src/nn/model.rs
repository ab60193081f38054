//! The BitNet b1.58 transformer: embedding, blocks (pre-norm attention and FFN with residuals), final norm and
//! a tied or separate output head.

use bitnet_gguf::ModelConfig;
use bitnet_kernels_cubecl::{ops, TernaryBackend};
use burn::module::{Module, Param};
use burn::tensor::{Int, Tensor, TensorData};

use super::bit_linear::ActQuant;
use super::block::Block;
use super::cache::KvCache;
use super::head::{HeadMode, Int8Head};
use super::norm::{RmsNorm, RmsNormConfig};
use super::rope::Rope;
use crate::error::ForwardError;

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
    head: Option<Int8Head<B>>,
    device: B::Device,
}

impl<B: TernaryBackend> BitNet<B> {
    /// A model of `config`'s shape with zero ternary weights, unit norms and an N(0, 0.02²) embedding (weights
    /// come from an importer); with `trainable`, random latent weights for quantization-aware training
    /// ([`super::BitLinearConfig::trainable`]).
    pub fn init(config: ModelConfig, trainable: bool, device: &B::Device) -> Self {
        let c = &config;
        let matrix = || {
            Param::from_tensor(Tensor::random(
                [c.vocab_size, c.hidden_size],
                burn::tensor::Distribution::Normal(0.0, 0.02),
                device,
            ))
        };
        let model = BitNetModel {
            embedding: matrix(),
            blocks: (0..c.n_layers)
                .map(|_| Block::init(c, trainable, device))
                .collect(),
            norm: RmsNormConfig::new(c.hidden_size)
                .with_eps(c.rms_eps as f64)
                .init(device),
            output: (!c.tied_embeddings).then(matrix),
        };
        Self::new(model, config, device)
    }

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
            head: None,
            device: device.clone(),
        }
    }

    /// The inference model of a trained one: every linear layer's latent weights ternarized and packed
    /// ([`super::BitLinear::freeze`]).
    pub fn freeze(self) -> Self {
        let model = BitNetModel {
            blocks: self.model.blocks.into_iter().map(Block::freeze).collect(),
            ..self.model
        };
        Self::new(model, self.config, &self.device)
    }

    /// Chooses how the output head is stored and computed (quantizing it now for [`HeadMode::Int8`]).
    pub fn set_head(&mut self, mode: HeadMode) {
        self.head = match mode {
            HeadMode::Float => None,
            HeadMode::Int8 => Some(Int8Head::quantize(self.head_weight().val())),
        };
    }

    /// The current head mode.
    pub fn head_mode(&self) -> HeadMode {
        match self.head {
            Some(_) => HeadMode::Int8,
            None => HeadMode::Float,
        }
    }

    fn head_weight(&self) -> &Param<Tensor<B, 2>> {
        self.model.output.as_ref().unwrap_or(&self.model.embedding)
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
        for (block, mut layer_cache) in self.model.blocks.iter().zip(cache.layers()) {
            x = block.forward(x, &mut layer_cache, &self.rope, act);
        }
        cache.advance(seq);
        Ok(self.model.norm.forward(x))
    }

    /// Logits `[batch, seq, vocab]` of hidden states from [`Self::forward_hidden`].
    pub fn logits(&self, hidden: Tensor<B, 3>) -> Tensor<B, 3> {
        let [b, seq, h] = hidden.dims();
        let x = hidden.reshape([b * seq, h]);
        let logits = match &self.head {
            None => ops::float_matmul_nt(x, self.head_weight().val()),
            Some(head) => head.forward(x),
        };
        logits.reshape([b, seq, self.config.vocab_size])
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
