//! NEOX-style rotary position embedding (rotate-half): dimension `i` pairs with `i + rope_dim/2`.

use bitnet_kernels_cubecl::TernaryBackend;
use burn::tensor::{Tensor, TensorData, TensorPrimitive};

/// Precomputed cos/sin tables for positions `0..max_positions`.
#[derive(Debug, Clone)]
pub struct Rope<B: TernaryBackend> {
    cos: Tensor<B, 2>,
    sin: Tensor<B, 2>,
}

impl<B: TernaryBackend> Rope<B> {
    /// Tables for `rope_dim` rotated dimensions with base `theta` (angles computed in f64, stored in f32).
    pub fn new(rope_dim: usize, theta: f32, max_positions: usize, device: &B::Device) -> Self {
        let half = rope_dim / 2;
        let (mut cos, mut sin) = (
            Vec::with_capacity(max_positions * half),
            Vec::with_capacity(max_positions * half),
        );
        for p in 0..max_positions {
            for i in 0..half {
                let inv_freq = (theta as f64).powf(-2.0 * i as f64 / rope_dim as f64) as f32;
                let angle = p as f64 * inv_freq as f64;
                cos.push(angle.cos() as f32);
                sin.push(angle.sin() as f32);
            }
        }
        let t = |v: Vec<f32>| Tensor::from_data(TensorData::new(v, [max_positions, half]), device);
        Self {
            cos: t(cos),
            sin: t(sin),
        }
    }

    /// Positions the tables cover.
    pub fn max_positions(&self) -> usize {
        self.cos.dims()[0]
    }

    /// Rotates `q` and `k` whose first token is at position `start` and writes `k` and `v` into the layer's
    /// caches at that position (see [`TernaryBackend::rope_append`]): the rotated `q` and the caches.
    pub(crate) fn append(
        &self,
        q: Tensor<B, 4>,
        k: Tensor<B, 4>,
        v: Tensor<B, 4>,
        start: usize,
        k_cache: Tensor<B, 4>,
        v_cache: Tensor<B, 4>,
    ) -> [Tensor<B, 4>; 3] {
        let t = |x: Tensor<B, 4>| x.into_primitive().tensor();
        let table = |x: &Tensor<B, 2>| x.clone().into_primitive().tensor();
        B::rope_append(
            t(q),
            t(k),
            t(v),
            table(&self.cos),
            table(&self.sin),
            start,
            t(k_cache),
            t(v_cache),
        )
        .map(|y| Tensor::from_primitive(TensorPrimitive::Float(y)))
    }
}
