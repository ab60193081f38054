//! The key/value cache: preallocated per layer, appended in place, reusable (reset or truncate) across calls.

use bitnet_kernels_cubecl::TernaryBackend;
use burn::tensor::backend::Backend;
use burn::tensor::Tensor;

use super::rope::Rope;

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
}

impl<B: Backend> KvCache<B> {
    /// An empty cache for `n_layers` layers of `[batch, kv_heads, max_len, head_dim]`.
    pub fn new(
        n_layers: usize,
        batch: usize,
        kv_heads: usize,
        head_dim: usize,
        max_len: usize,
        device: &B::Device,
    ) -> Self {
        let zeros = || Tensor::zeros([batch, kv_heads, max_len, head_dim], device);
        Self {
            layers: (0..n_layers)
                .map(|_| LayerKv {
                    k: zeros(),
                    v: zeros(),
                })
                .collect(),
            len: 0,
            max_len,
        }
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

    /// Rotates `q [batch, heads, seq, head_dim]` and `k` with `rope`, stores `k` and `v`
    /// `[batch, kv_heads, seq, head_dim]` at positions `start..start+seq` (one [`TernaryBackend::rope_append`]),
    /// and returns the rotated `q` and the whole cache `[batch, kv_heads, max_len, head_dim]` (positions
    /// `0..start+seq` valid).
    pub fn append(&mut self, qkv: [Tensor<B, 4>; 3], rope: &Rope<B>) -> [Tensor<B, 4>; 3] {
        let empty = || Tensor::empty([0; 4], &qkv[0].device());
        let caches = [
            std::mem::replace(&mut self.kv.k, empty()),
            std::mem::replace(&mut self.kv.v, empty()),
        ];
        let [q, k, v] = rope.append(qkv, self.start, caches);
        (self.kv.k, self.kv.v) = (k.clone(), v.clone());
        [q, k, v]
    }
}
