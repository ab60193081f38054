//! NEOX-style rotary position embedding (rotate-half): dimension `i` pairs with `i + rope_dim/2`.

use bitnet_kernels_cubecl::{ops, StepKv, TernaryBackend};
use burn::tensor::{Tensor, TensorData};

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

    /// One layer's attention for a step whose rows are runs of the sequences of `caches`, rotated with these
    /// tables (see [`TernaryBackend::attention_step`]): the output and the caches.
    pub(crate) fn attention_step(
        &self,
        qkv: [Tensor<B, 3>; 3],
        heads: usize,
        caches: Vec<StepKv<Tensor<B, 4>>>,
    ) -> (Tensor<B, 3>, Vec<[Tensor<B, 4>; 2]>) {
        ops::attention_step(qkv, (self.cos.clone(), self.sin.clone()), heads, caches)
    }
}
