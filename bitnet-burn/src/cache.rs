//! The key/value cache: preallocated per layer, appended in place, reusable (reset or truncate) across calls.

use burn::tensor::backend::Backend;
use burn::tensor::Tensor;

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

    /// Stores `k`, `v` `[batch, kv_heads, seq, head_dim]` of `layer` at positions `len..len+seq` and returns
    /// the layer's whole cache `[batch, kv_heads, max_len, head_dim]` (positions `0..len+seq` valid).
    pub(crate) fn append(
        &mut self,
        layer: usize,
        k: Tensor<B, 4>,
        v: Tensor<B, 4>,
    ) -> (Tensor<B, 4>, Tensor<B, 4>) {
        let [b, h, seq, d] = k.dims();
        let (start, end) = (self.len, self.len + seq);
        let c = &mut self.layers[layer];
        c.k.inplace(|t| t.slice_assign([0..b, 0..h, start..end, 0..d], k));
        c.v.inplace(|t| t.slice_assign([0..b, 0..h, start..end, 0..d], v));
        (c.k.clone(), c.v.clone())
    }

    /// Marks `seq` more positions as filled (after every layer appended).
    pub(crate) fn advance(&mut self, seq: usize) {
        self.len += seq;
    }
}
