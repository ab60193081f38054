//! The float head op `x · wᵀ` (Burn's matmul on the CPU, one kernel on the CubeCL backends) against an f64
//! evaluation: f32 arithmetic, which a TF32 tensor-core matmul (10-bit mantissas, CUDA's for f32 in Burn) fails.

use bitnet_kernels_cubecl::TernaryBackend;
use burn::tensor::{Tensor, TensorData, TensorPrimitive};

use crate::common::Lcg;

/// `(m, n, k)`: one token on a 2B-4T-wide row, a prompt over several cube rows of tokens, widths that take
/// vectors of 4, 2 and 1.
const SHAPES: [(usize, usize, usize); 4] =
    [(1, 1000, 2560), (9, 33, 258), (3, 100, 37), (16, 7, 64)];

/// Within 2e-6 of `Σ|x·w|` per output: f32 sums of `k` products in any order stay under `k · 6e-8` of it, and
/// far under in practice; TF32's rounding of each operand (2⁻¹¹ relative) is ~40 times that at `k` = 2560.
fn check<B: TernaryBackend>(device: &B::Device, what: &str) {
    let mut rng = Lcg(17);
    for (m, n, k) in SHAPES {
        let x: Vec<f32> = (0..m * k).map(|_| rng.heavy()).collect();
        let w: Vec<f32> = (0..n * k).map(|_| rng.uniform()).collect();
        let y = B::float_matmul_nt(
            Tensor::<B, 2>::from_data(TensorData::new(x.clone(), [m, k]), device)
                .into_primitive()
                .tensor(),
            Tensor::<B, 2>::from_data(TensorData::new(w.clone(), [n, k]), device)
                .into_primitive()
                .tensor(),
        );
        let got = Tensor::<B, 2>::from_primitive(TensorPrimitive::Float(y))
            .into_data()
            .to_vec::<f32>()
            .unwrap();
        assert_eq!(got.len(), m * n, "{what}: output shape");
        for (i, g) in got.iter().enumerate() {
            let (xr, wr) = (&x[i / n * k..][..k], &w[i % n * k..][..k]);
            let want: f64 = xr.iter().zip(wr).map(|(&a, &b)| a as f64 * b as f64).sum();
            let size: f64 = xr
                .iter()
                .zip(wr)
                .map(|(&a, &b)| (a as f64 * b as f64).abs())
                .sum();
            assert!(
                (*g as f64 - want).abs() <= 2e-6 * size,
                "{what} m{m} n{n} k{k}: element {i}: {g} vs {want}"
            );
        }
    }
}

backend_tests!(check);
