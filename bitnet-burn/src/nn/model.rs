//! The BitNet b1.58 transformer: embedding, blocks (pre-norm attention and FFN with residuals), final norm and
//! a tied or separate output head.

use bitnet_gguf::ModelConfig;
use bitnet_kernels_cubecl::{ops, CacheType, TernaryBackend};
use burn::module::{Module, Param};
use burn::tensor::Tensor;

use super::bit_linear::ActQuant;
use super::block::Block;
use super::cache::KvCache;
use super::embedding::Embedding;
use super::head::{HeadMode, Int8Head};
use super::norm::{RmsNorm, RmsNormConfig};
use super::rope::Rope;
use crate::error::ForwardError;

/// Most tokens [`BitNet::forward_last`] runs in one pass (llama.cpp's default micro-batch).
pub const UBATCH: usize = 512;

/// The network's weights.
#[derive(Module, Debug)]
pub struct BitNetModel<B: TernaryBackend> {
    /// Token embedding `[vocab, hidden]` (also the head when tied).
    pub embedding: Embedding<B>,
    /// Blocks.
    pub blocks: Vec<Block<B>>,
    /// Final norm.
    pub norm: RmsNorm<B>,
    /// Separate output head `[vocab, hidden]`, `None` when tied to the embedding.
    pub output: Option<Embedding<B>>,
}

/// How logits are computed from the final hidden states.
#[derive(Debug)]
enum Head<B: TernaryBackend> {
    /// The head's float parameter, read at each call (training updates it).
    Parameter,
    /// Float weights decoded from an encoded table: the reference numerics, only when asked for.
    Decoded(Tensor<B, 2>),
    /// Int8 weights.
    Int8(Box<Int8Head<B>>),
}

/// A loaded model: weights, config and RoPE tables, ready to run.
#[derive(Debug)]
pub struct BitNet<B: TernaryBackend> {
    /// Weights.
    pub model: BitNetModel<B>,
    /// Hyper-parameters.
    pub config: ModelConfig,
    rope: Rope<B>,
    head: Head<B>,
    cache: CacheType,
    device: B::Device,
}

impl<B: TernaryBackend> BitNet<B> {
    /// A model of `config`'s shape with zero ternary weights, unit norms and an N(0, 0.02²) embedding (weights
    /// come from an importer); with `trainable`, random latent weights for quantization-aware training
    /// ([`super::BitLinearConfig::trainable`]).
    pub fn init(config: ModelConfig, trainable: bool, device: &B::Device) -> Self {
        let c = &config;
        let matrix = || {
            Embedding::Float(Param::from_tensor(Tensor::random(
                [c.vocab_size, c.hidden_size],
                burn::tensor::Distribution::Normal(0.0, 0.02),
                device,
            )))
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

    /// Wraps weights with their config (builds the RoPE tables for the full context), with the float head
    /// (what training needs).
    pub fn new(model: BitNetModel<B>, config: ModelConfig, device: &B::Device) -> Self {
        Self::with_head(model, config, HeadMode::Float, device)
    }

    /// [`BitNet::new`] with the head computed as `head` says.
    pub fn with_head(
        model: BitNetModel<B>,
        config: ModelConfig,
        head: HeadMode,
        device: &B::Device,
    ) -> Self {
        let rope = Rope::new(
            config.rope_dim,
            config.rope_theta,
            config.context_length,
            device,
        );
        let mut net = Self {
            model,
            config,
            rope,
            head: Head::Parameter,
            cache: CacheType::default(),
            device: device.clone(),
        };
        net.set_head(head);
        net
    }

    /// The inference model of a trained one: every linear layer's latent weights ternarized and packed
    /// ([`super::BitLinear::freeze`]).
    pub fn freeze(self) -> Self {
        let (head, cache) = (self.head_mode(), self.cache);
        let model = BitNetModel {
            blocks: self.model.blocks.into_iter().map(Block::freeze).collect(),
            ..self.model
        };
        let mut net = Self::with_head(model, self.config, head, &self.device);
        net.set_cache_type(cache);
        net
    }

    /// Chooses what the KV caches of [`BitNet::new_cache`] store (f16 by default; what the backend and the head
    /// width allow instead of an unavailable type: [`KvCache::element`]).
    pub fn set_cache_type(&mut self, cache: CacheType) {
        self.cache = cache;
    }

    /// What the KV caches of [`BitNet::new_cache`] store on this backend.
    pub fn cache_type(&self) -> CacheType {
        KvCache::<B>::element(self.cache, self.config.head_dim())
    }

    /// Chooses how the output head is stored and computed (quantizing it now for [`HeadMode::Int8`], decoding
    /// an encoded table to f32 for [`HeadMode::Float`]).
    pub fn set_head(&mut self, mode: HeadMode) {
        self.head = Head::Parameter; // drops the old head's weights before the new ones are made
        let weights = self.head_weights();
        self.head = match (mode, weights) {
            (HeadMode::Float, Embedding::Float(_)) => Head::Parameter,
            (HeadMode::Float, Embedding::Encoded(_)) => Head::Decoded(weights.float(&self.device)),
            (HeadMode::Int8, _) => {
                Head::Int8(Box::new(Int8Head::from_embedding(weights, &self.device)))
            }
        };
    }

    /// The current head mode.
    pub fn head_mode(&self) -> HeadMode {
        match self.head {
            Head::Int8(_) => HeadMode::Int8,
            Head::Parameter | Head::Decoded(_) => HeadMode::Float,
        }
    }

    fn head_weights(&self) -> &Embedding<B> {
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
            self.cache,
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
        let seq = tokens.first().map_or(0, Vec::len);
        if tokens.iter().any(|t| t.len() != seq) {
            return Err(ForwardError::Empty);
        }
        let ids: Vec<u32> = tokens.iter().flatten().copied().collect();
        self.run(&ids, tokens.len(), &mut [(cache, seq)], act)
    }

    /// One step of several sequences at once, each appending its tokens to its own cache (of batch 1) at its
    /// own position: the projections and the FFN see all the step's rows together (one pass over the weights),
    /// attention runs per sequence. Returns the logits of each sequence's last token, or of all its tokens
    /// where `every[i]` (to score a prompt), in order: `[rows, vocab]`. On the integer paths a sequence's logits
    /// do not depend on what else is in the step.
    pub fn forward_sequences(
        &self,
        steps: &mut [(&mut KvCache<B>, &[u32])],
        every: &[bool],
        act: ActQuant,
    ) -> Result<Tensor<B, 2>, ForwardError> {
        assert_eq!(every.len(), steps.len(), "a flag per sequence");
        let ids: Vec<u32> = steps.iter().flat_map(|(_, t)| t.iter().copied()).collect();
        let mut caches: Vec<(&mut KvCache<B>, usize)> =
            steps.iter_mut().map(|(c, t)| (&mut **c, t.len())).collect();
        let hidden = self.run(&ids, 1, &mut caches, act)?;
        let mut start = 0;
        let mut picked: Vec<i64> = Vec::new();
        for ((_, t), &all) in steps.iter().zip(every) {
            let end = start + t.len() as i64;
            picked.extend(if all { start..end } else { end - 1..end });
            start = end;
        }
        let [_, rows, h] = hidden.dims();
        let n = picked.len();
        let picked = Tensor::from_data(burn::tensor::TensorData::new(picked, [n]), &self.device);
        let x = ops::reshape(ops::reshape(hidden, [rows, h]).select(0, picked), [n, 1, h]);
        Ok(ops::reshape(self.logits(x), [n, self.config.vocab_size]))
    }

    /// `ids` (`batch` rows of consecutive runs, one run of `seq` tokens per cache) through the blocks.
    fn run(
        &self,
        ids: &[u32],
        batch: usize,
        caches: &mut [(&mut KvCache<B>, usize)],
        act: ActQuant,
    ) -> Result<Tensor<B, 3>, ForwardError> {
        if caches.is_empty() || caches.iter().any(|(_, seq)| *seq == 0) {
            return Err(ForwardError::Empty);
        }
        for (cache, seq) in caches.iter() {
            self.check_room(cache, *seq)?;
        }
        let vocab = self.config.vocab_size;
        if let Some(&id) = ids.iter().find(|&&id| id as usize >= vocab) {
            return Err(ForwardError::BadToken { id, vocab });
        }
        let rows = self.model.embedding.lookup(ids, &self.device)?;
        let mut x = ops::reshape(rows, [batch, ids.len() / batch, self.config.hidden_size]);
        let mut layers: Vec<_> = caches.iter_mut().map(|(c, seq)| c.layers(*seq)).collect();
        for block in &self.model.blocks {
            let mut step: Vec<_> = layers
                .iter_mut()
                .map(|l| l.next().expect("a cache layer per block"))
                .collect();
            x = block.forward(x, &mut step, &self.rope, act);
        }
        drop(layers);
        for (cache, seq) in caches.iter_mut() {
            cache.advance(*seq);
        }
        Ok(self.model.norm.forward(x))
    }

    /// Whether `cache` and the model's positions have room for `seq` more tokens.
    fn check_room(&self, cache: &KvCache<B>, seq: usize) -> Result<(), ForwardError> {
        let limit = cache.max_len().min(self.rope.max_positions());
        if cache.len() + seq > limit {
            return Err(ForwardError::ContextOverflow {
                needed: cache.len() + seq,
                limit,
            });
        }
        Ok(())
    }

    /// Logits `[batch, seq, vocab]` of hidden states from [`Self::forward_hidden`].
    pub fn logits(&self, hidden: Tensor<B, 3>) -> Tensor<B, 3> {
        let [b, seq, h] = hidden.dims();
        let x = ops::reshape(hidden, [b * seq, h]);
        let logits = match &self.head {
            Head::Parameter => ops::float_matmul_nt(x, self.head_weights().float(&self.device)),
            Head::Decoded(w) => ops::float_matmul_nt(x, w.clone()),
            Head::Int8(head) => head.forward(x),
        };
        ops::reshape(logits, [b, seq, self.config.vocab_size])
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

    /// Logits of every position of one sequence run from an empty cache, as f32 `[positions · vocab]` on the
    /// host (what engines are compared on: `bitnet logits`, the Python `logits`).
    pub fn sequence_logits(&self, ids: &[u32], act: ActQuant) -> Result<Vec<f32>, ForwardError> {
        let mut cache = self.new_cache(1, ids.len().max(1));
        let logits = self.forward(&[ids.to_vec()], &mut cache, act)?;
        Ok(logits
            .into_data()
            .convert::<f32>()
            .to_vec()
            .expect("f32 logits"))
    }

    /// Logits of the last position only `[batch, vocab]` (what generation needs; skips the head elsewhere). A
    /// prompt longer than [`UBATCH`] tokens runs in passes of that many: the same results, and each pass's
    /// activations are a quarter of a 2048-token prompt's (they stay within what malloc reuses instead of
    /// mapping fresh zeroed pages for every op).
    pub fn forward_last(
        &self,
        tokens: &[Vec<u32>],
        cache: &mut KvCache<B>,
        act: ActQuant,
    ) -> Result<Tensor<B, 2>, ForwardError> {
        let len = tokens.first().map_or(0, Vec::len);
        if len == 0 || tokens.iter().any(|t| t.len() != len) {
            return Err(ForwardError::Empty);
        }
        self.check_room(cache, len)?;
        let mut h = None;
        for start in (0..len).step_by(UBATCH) {
            let end = (start + UBATCH).min(len);
            let pass: Vec<Vec<u32>> = tokens.iter().map(|t| t[start..end].to_vec()).collect();
            h = Some(self.forward_hidden(&pass, cache, act)?);
        }
        let h = h.expect("at least one pass");
        let [b, seq, _] = h.dims();
        let logits = self.logits(h.narrow(1, seq - 1, 1));
        Ok(ops::reshape(logits, [b, self.config.vocab_size]))
    }
}
