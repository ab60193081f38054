//! The key/value cache: preallocated per layer, appended in place, reusable (reset or truncate) across calls.

use bitnet_kernels_cubecl::{CacheType, StepKv, TernaryBackend};
use burn::tensor::backend::Backend;
use burn::tensor::Tensor;
use burn::tensor::TensorPrimitive;

#[derive(Debug, Clone)]
struct LayerKv<B: Backend> {
    k: Tensor<B, 4>,
    v: Tensor<B, 4>,
}

/// Keys and values of every layer for positions `0..len`, with room for `max_len`.
#[derive(Debug, Clone)]
pub struct KvCache<B: Backend> {
    layers: Vec<LayerKv<B>>,
    len: usize,
    max_len: usize,
    cache: CacheType,
    /// `[batch, kv_heads, head_dim]`.
    rows: [usize; 3],
}

impl<B: TernaryBackend> KvCache<B> {
    /// An empty cache for `n_layers` layers of `[batch, kv_heads, max_len, head_dim]`, storing what
    /// [`KvCache::element`] makes of `cache`.
    pub fn new(
        n_layers: usize,
        batch: usize,
        kv_heads: usize,
        head_dim: usize,
        max_len: usize,
        cache: CacheType,
        device: &B::Device,
    ) -> Self {
        let cache = Self::element(cache, head_dim);
        let shape = [batch, kv_heads, max_len, head_dim];
        let zeros = || {
            Tensor::from_primitive(TensorPrimitive::Float(B::kv_cache_zeros(
                shape, cache, device,
            )))
        };
        Self {
            layers: (0..n_layers)
                .map(|_| LayerKv {
                    k: zeros(),
                    v: zeros(),
                })
                .collect(),
            len: 0,
            max_len,
            cache,
            rows: [batch, kv_heads, head_dim],
        }
    }

    /// What a cache of rows `head_dim` wide asked to store `cache` stores on this backend: `cache` where the
    /// backend has it ([`TernaryBackend::CACHE_TYPES`]) and the rows are whole blocks of it, else f16 where it
    /// can, else f32.
    pub fn element(cache: CacheType, head_dim: usize) -> CacheType {
        let fits = |c: CacheType| B::CACHE_TYPES.contains(&c) && head_dim.is_multiple_of(c.block());
        [cache, CacheType::F16]
            .into_iter()
            .find(|&c| fits(c))
            .unwrap_or(CacheType::F32)
    }

    /// What each element is stored as.
    pub fn cache_type(&self) -> CacheType {
        self.cache
    }

    /// Positions held.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Capacity in positions.
    pub fn max_len(&self) -> usize {
        self.max_len
    }

    /// Bytes a position takes (keys and values of every layer).
    pub fn position_bytes(&self) -> usize {
        let [batch, kv_heads, head_dim] = self.rows;
        2 * self.layers.len() * batch * kv_heads * self.cache.row_bytes(head_dim)
    }

    /// A cache holding a copy of the first `len` positions of this one, with room for just those (to keep a
    /// prompt after its cache moves on).
    pub fn snapshot(&self, len: usize) -> Self {
        let [batch, kv_heads, head_dim] = self.rows;
        let device = self.layers[0].k.device();
        let mut copy = Self::new(
            self.layers.len(),
            batch,
            kv_heads,
            head_dim,
            len,
            self.cache,
            &device,
        );
        copy.copy_from(self, len);
        copy
    }

    /// Replaces what this cache holds by the first `len` positions of `src`, a cache of the same model and
    /// [`KvCache::cache_type`] (a prompt moved in instead of run again).
    ///
    /// # Panics
    /// If the caches differ in shape or type, or `len` exceeds what `src` holds or this cache's room.
    pub fn copy_from(&mut self, src: &Self, len: usize) {
        assert!(
            src.rows == self.rows
                && src.cache == self.cache
                && src.layers.len() == self.layers.len()
                && len <= src.len.min(self.max_len),
            "copying {len} positions between KV caches of other shapes or types"
        );
        let copy = |from: &Tensor<B, 4>, to: &mut Tensor<B, 4>| {
            let device = to.device();
            let to_taken = std::mem::replace(to, Tensor::empty([0; 4], &device));
            let [from, to_taken] = [from.clone(), to_taken].map(|t| t.into_primitive().tensor());
            *to = Tensor::from_primitive(TensorPrimitive::Float(B::kv_cache_copy(
                from, to_taken, len,
            )));
        };
        for (from, to) in src.layers.iter().zip(&mut self.layers) {
            copy(&from.k, &mut to.k);
            copy(&from.v, &mut to.v);
        }
        self.len = len;
    }

    /// Forgets everything (the memory is kept).
    pub fn reset(&mut self) {
        self.len = 0;
    }

    /// Keeps only the first `len` positions (e.g. to rewind a chat turn).
    pub fn truncate(&mut self, len: usize) {
        self.len = self.len.min(len);
    }

    /// One handle per layer for a step that appends `seq` positions after those held; call
    /// [`KvCache::advance`] once every layer has appended.
    pub fn layers(&mut self, seq: usize) -> impl Iterator<Item = LayerCache<'_, B>> {
        let start = self.len;
        self.layers
            .iter_mut()
            .map(move |kv| LayerCache { kv, start, seq })
    }

    /// Marks `seq` more positions as filled (after every layer appended).
    pub fn advance(&mut self, seq: usize) {
        self.len += seq;
    }
}

/// One layer's part of a [`KvCache`] during a step that appends [`LayerCache::seq`] positions from
/// [`LayerCache::start`].
#[derive(Debug)]
pub struct LayerCache<'a, B: Backend> {
    kv: &'a mut LayerKv<B>,
    start: usize,
    seq: usize,
}

impl<B: TernaryBackend> LayerCache<'_, B> {
    /// Position of the step's first token.
    pub fn start(&self) -> usize {
        self.start
    }

    /// Positions the step appends.
    pub fn seq(&self) -> usize {
        self.seq
    }

    /// Lends the layer's caches to an attention step that appends [`LayerCache::seq`] positions at
    /// [`LayerCache::start`] ([`bitnet_kernels_cubecl::TernaryBackend::attention_step`]); give them back with
    /// [`LayerCache::put`]. Moved out, not cloned, so the CPU backend writes them in place.
    pub fn take(&mut self) -> StepKv<Tensor<B, 4>> {
        let device = self.kv.k.device();
        let empty = || Tensor::empty([0; 4], &device);
        StepKv {
            k: std::mem::replace(&mut self.kv.k, empty()),
            v: std::mem::replace(&mut self.kv.v, empty()),
            start: self.start,
            seq: self.seq,
        }
    }

    /// Puts back the caches an attention step returned.
    pub fn put(&mut self, [k, v]: [Tensor<B, 4>; 2]) {
        (self.kv.k, self.kv.v) = (k, v);
    }
}
