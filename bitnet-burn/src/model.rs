//! The BitNet b1.58 transformer: embedding, blocks (pre-norm attention and FFN with residuals), final norm and
//! a tied or separate output head.

use bitnet_gguf::ModelConfig;
use bitnet_kernels_cubecl::TernaryBackend;
use burn::module::{Module, Param};
use burn::tensor::{Int, Tensor, TensorData, TensorPrimitive};

use crate::attention::{Attention, AttentionConfig};
use crate::bit_linear::ActQuant;
use crate::cache::KvCache;
use crate::error::ForwardError;
use crate::ffn::FeedForward;
use crate::ffn::FeedForwardConfig;
use crate::head::{HeadMode, Int8Head};
use crate::norm::RmsNorm;
use crate::norm::RmsNormConfig;
use crate::rope::Rope;
use bitnet_gguf::Activation;
use burn::config::Config;

/// Hyper-parameters of a BitNet model as a Burn `Config` (serializable; convertible to and from the
/// [`ModelConfig`] read from files).
#[derive(Config, Debug)]
pub struct BitNetConfig {
    /// Width.
    pub hidden_size: usize,
    /// Blocks.
    pub n_layers: usize,
    /// Query heads.
    pub n_heads: usize,
    /// Key/value heads.
    pub n_kv_heads: usize,
    /// FFN width.
    pub ffn_size: usize,
    /// Vocabulary.
    pub vocab_size: usize,
    /// Context length.
    #[config(default = 4096)]
    pub context_length: usize,
    /// RoPE base.
    #[config(default = 500000.0)]
    pub rope_theta: f32,
    /// RMSNorm epsilon.
    #[config(default = 1e-5)]
    pub rms_eps: f32,
    /// ReLU² (true) or SiLU FFN.
    #[config(default = true)]
    pub relu2: bool,
    /// LM head tied to the embedding.
    #[config(default = true)]
    pub tied_embeddings: bool,
    /// BitNet sub-norms before the output and down projections.
    #[config(default = true)]
    pub sub_norms: bool,
    /// Linear layers with latent float weights, for training (see [`crate::BitLinearConfig::trainable`]).
    #[config(default = false)]
    pub trainable: bool,
}

impl BitNetConfig {
    /// The Burn config of a file's hyper-parameters.
    pub fn from_model_config(c: &ModelConfig) -> Self {
        Self::new(
            c.hidden_size,
            c.n_layers,
            c.n_heads,
            c.n_kv_heads,
            c.ffn_size,
            c.vocab_size,
        )
        .with_context_length(c.context_length)
        .with_rope_theta(c.rope_theta)
        .with_rms_eps(c.rms_eps)
        .with_relu2(c.activation == Activation::Relu2)
        .with_tied_embeddings(c.tied_embeddings)
        .with_sub_norms(c.sub_norms)
    }

    /// The file-level view of this config.
    pub fn model_config(&self) -> ModelConfig {
        ModelConfig {
            architecture: "bitnet-b1.58".into(),
            hidden_size: self.hidden_size,
            n_layers: self.n_layers,
            n_heads: self.n_heads,
            n_kv_heads: self.n_kv_heads,
            ffn_size: self.ffn_size,
            vocab_size: self.vocab_size,
            context_length: self.context_length,
            rope_theta: self.rope_theta,
            rope_dim: self.hidden_size / self.n_heads,
            rms_eps: self.rms_eps,
            activation: if self.relu2 {
                Activation::Relu2
            } else {
                Activation::Silu
            },
            activation_source: "BitNetConfig".into(),
            tied_embeddings: self.tied_embeddings,
            sub_norms: self.sub_norms,
        }
    }

    /// A model with zero ternary weights, unit norms and an N(0, 0.02²) embedding.
    pub fn init<B: TernaryBackend>(&self, device: &B::Device) -> BitNet<B> {
        let eps = self.rms_eps as f64;
        let norm = |n| RmsNormConfig::new(n).with_eps(eps).init(device);
        let matrix = || {
            Param::from_tensor(Tensor::random(
                [self.vocab_size, self.hidden_size],
                burn::tensor::Distribution::Normal(0.0, 0.02),
                device,
            ))
        };
        let blocks = (0..self.n_layers)
            .map(|_| Block {
                attn_norm: norm(self.hidden_size),
                attn: AttentionConfig::new(self.hidden_size, self.n_heads, self.n_kv_heads)
                    .with_rms_eps(eps)
                    .with_sub_norm(self.sub_norms)
                    .with_trainable(self.trainable)
                    .init(device),
                ffn_norm: norm(self.hidden_size),
                ffn: FeedForwardConfig::new(self.hidden_size, self.ffn_size)
                    .with_relu2(self.relu2)
                    .with_rms_eps(eps)
                    .with_sub_norm(self.sub_norms)
                    .with_trainable(self.trainable)
                    .init(device),
            })
            .collect();
        let model = BitNetModel {
            embedding: matrix(),
            blocks,
            norm: norm(self.hidden_size),
            output: (!self.tied_embeddings).then(matrix),
        };
        BitNet::new(model, self.model_config(), device)
    }
}

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
    head: Option<Int8Head<B>>,
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
            head: None,
            device: device.clone(),
        }
    }

    /// The inference model of a trained one: every linear layer's latent weights ternarized and packed
    /// ([`crate::BitLinear::freeze`]).
    pub fn freeze(self) -> Self {
        let model = BitNetModel {
            blocks: self
                .model
                .blocks
                .into_iter()
                .map(|b| Block {
                    attn: Attention {
                        wq: b.attn.wq.freeze(),
                        wk: b.attn.wk.freeze(),
                        wv: b.attn.wv.freeze(),
                        wo: b.attn.wo.freeze(),
                        ..b.attn
                    },
                    ffn: FeedForward {
                        gate: b.ffn.gate.freeze(),
                        up: b.ffn.up.freeze(),
                        down: b.ffn.down.freeze(),
                        ..b.ffn
                    },
                    ..b
                })
                .collect(),
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
        for (layer, block) in self.model.blocks.iter().enumerate() {
            let attn = &block.attn;
            x = attn.forward(x, &block.attn_norm, layer, cache, &self.rope, act);
            x = block.ffn.forward(x, &block.ffn_norm, act);
        }
        cache.advance(seq);
        Ok(self.model.norm.forward(x))
    }

    /// Logits `[batch, seq, vocab]` of hidden states from [`Self::forward_hidden`].
    pub fn logits(&self, hidden: Tensor<B, 3>) -> Tensor<B, 3> {
        match &self.head {
            None => {
                let [b, seq, h] = hidden.dims();
                let x = hidden.reshape([b * seq, h]).into_primitive().tensor();
                let w = self.head_weight().val().into_primitive().tensor();
                Tensor::<B, 2>::from_primitive(TensorPrimitive::Float(B::float_matmul_nt(x, w)))
                    .reshape([b, seq, self.config.vocab_size])
            }
            Some(head) => {
                let [b, seq, h] = hidden.dims();
                head.forward(hidden.reshape([b * seq, h]))
                    .reshape([b, seq, self.config.vocab_size])
            }
        }
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
