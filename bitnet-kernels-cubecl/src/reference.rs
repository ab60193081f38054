//! Plain-Rust reference semantics of the ternary ops, used by the CPU backend and as the oracle of every test.

use crate::packing::{unpack_row, words_per_row};

/// Shape of a packed ternary matrix `[n, k]` with `k / block` scales per row.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TernaryShape {
    /// Output features (rows).
    pub n: usize,
    /// Input features (columns).
    pub k: usize,
    /// Columns sharing one scale (`k` for a per-tensor or per-row scale, 256 for TQ1_0/TQ2_0).
    pub block: usize,
}

impl TernaryShape {
    /// Scales per row.
    pub fn blocks(&self) -> usize {
        self.k.div_ceil(self.block)
    }
}

/// `y[m, n] = Σ_b scales[n, b] · Σ_{k ∈ b} x[m, k] · trit[n, k]`, accumulating each block before scaling
/// (so int-valued activations accumulate exactly).
pub fn ternary_matmul(
    x: &[f32],
    m: usize,
    w: &[u32],
    scales: &[f32],
    shape: TernaryShape,
) -> Vec<f32> {
    let TernaryShape { n, k, block } = shape;
    let (kw, nb) = (words_per_row(k), shape.blocks());
    let mut y = vec![0f32; m * n];
    let mut t = vec![0i8; k];
    for row in 0..n {
        unpack_row(&w[row * kw..(row + 1) * kw], &mut t);
        for i in 0..m {
            let xi = &x[i * k..(i + 1) * k];
            let mut acc = 0f32;
            for b in 0..nb {
                let range = b * block..((b + 1) * block).min(k);
                // f64 keeps float activations as exact as the references' blocked f32 sums; int8-valued
                // activations sum exactly either way.
                let s: f64 = xi[range.clone()]
                    .iter()
                    .zip(&t[range])
                    .map(|(&a, &t)| a as f64 * t as f64)
                    .sum();
                acc += s as f32 * scales[row * nb + b];
            }
            y[i * n + row] = acc;
        }
    }
    y
}

/// Per-token absmax int8 quantization as BitNet b1.58 defines it: `s = 127 / max(max|x|, 1e-5)`,
/// `q = clamp(round_half_even(x · s), -128, 127)`. Returns `s`.
pub fn quantize_row_i8(x: &[f32], q: &mut [i8]) -> f32 {
    let amax = x.iter().fold(0f32, |a, v| a.max(v.abs())).max(1e-5);
    let s = 127.0 / amax;
    for (q, &v) in q.iter_mut().zip(x) {
        *q = (v * s).round_ties_even().clamp(-128.0, 127.0) as i8;
    }
    s
}
