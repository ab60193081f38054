//! The key/value cache: preallocated per layer, appended in place, reusable (reset or truncate) across calls.

use bitnet_kernels_cubecl::TernaryBackend;
use burn::tensor::backend::Backend;
use burn::tensor::Tensor;

use crate::rope::Rope;

#[derive(Debug, Clone)]
struct LayerCache<B: Backend> {
    k: Tensor<B, 4>,
    v: Tensor<B, 4>,
}

/// Keys and values of every layer for positions `0..len`, with room for `max_len`.
#[derive(Debug, Clone)]
pub struct KvCache<B: Backend> {
    layers: Vec<LayerCache<B>>,
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
                .map(|_| LayerCache {
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

    /// Marks `seq` more positions as filled (after every layer appended).
    pub(crate) fn advance(&mut self, seq: usize) {
        self.len += seq;
    }
}

impl<B: TernaryBackend> KvCache<B> {
    /// Rotates `q [batch, heads, seq, head_dim]` and `k` with `rope`, stores `k` and `v`
    /// `[batch, kv_heads, seq, head_dim]` of `layer` at positions `len..len+seq` (one
    /// [`TernaryBackend::rope_append`]), and returns the rotated `q` and the layer's whole cache
    /// `[batch, kv_heads, max_len, head_dim]` (positions `0..len+seq` valid).
    pub(crate) fn append(
        &mut self,
        layer: usize,
        [q, k, v]: [Tensor<B, 4>; 3],
        rope: &Rope<B>,
    ) -> [Tensor<B, 4>; 3] {
        let c = &mut self.layers[layer];
        let empty = || Tensor::empty([0; 4], &q.device());
        let (k_cache, v_cache) = (
            std::mem::replace(&mut c.k, empty()),
            std::mem::replace(&mut c.v, empty()),
        );
        let [q, k_cache, v_cache] = rope.append(q, k, v, self.len, k_cache, v_cache);
        (c.k, c.v) = (k_cache.clone(), v_cache.clone());
        [q, k_cache, v_cache]
    }
}
