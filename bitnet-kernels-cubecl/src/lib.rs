//! The ternary (BitNet b1.58) matmul as a Burn backend extension.
//!
//! Weights are stored once, packed 2 bits per trit in `u32` words ([`packing`]), with one float scale per row
//! block; each backend implements [`TernaryBackend::ternary_matmul`] on that layout: burn-ndarray on the CPU
//! directly on the packed words, CubeCL backends (wgpu, CUDA) and Autodiff through the portable Burn-ops
//! composition in [`burn_ops`].
#![warn(missing_docs)]

mod autodiff;
pub mod burn_ops;
#[cfg(feature = "cube")]
mod cube;
mod ndarray;
pub mod packing;
pub mod reference;

use burn::tensor::backend::Backend;
use burn::tensor::ops::{FloatTensor, IntTensor};

/// A backend that can multiply activations by packed ternary weights.
pub trait TernaryBackend: Backend {
    /// `y[m, n] = Σ_b scales[n, b] · Σ_{k ∈ block b} x[m, k] · trit[n, k]`.
    ///
    /// `x` is `[m, k]` float, `w` the `[n, ceil(k/16)]` packed words (dtype `U32`), `scales` `[n, k/block]`
    /// where `k` is a whole number of blocks (every format has whole blocks: TQ* 256, per-tensor scales `k`).
    fn ternary_matmul(
        x: FloatTensor<Self>,
        w: IntTensor<Self>,
        scales: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        burn_ops::ternary_matmul::<Self>(x, w, scales)
    }
}
