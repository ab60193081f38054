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
    let s = absmax_scale(x);
    for (q, &v) in q.iter_mut().zip(x) {
        *q = quantize_i8(v, s);
    }
    s
}

/// The activation scale `127 / max(max|x|, 1e-5)` of one token.
pub fn absmax_scale(x: &[f32]) -> f32 {
    scale_of_absmax(absmax(x))
}

/// The activation scale of a token whose largest magnitude is `amax`.
pub fn scale_of_absmax(amax: f32) -> f32 {
    127.0 / amax.max(1e-5)
}

/// `max |x|`, in 16 independent lanes so that it vectorizes (one running max is a chain of dependent
/// instructions: 2560 of them per token and projection in decode).
pub fn absmax(x: &[f32]) -> f32 {
    let mut lanes = [0f32; 16];
    let chunks = x.chunks_exact(16);
    let tail = chunks.remainder();
    for c in chunks {
        for (m, v) in lanes.iter_mut().zip(c) {
            *m = m.max(v.abs());
        }
    }
    tail.iter().chain(&lanes).fold(0f32, |m, v| m.max(v.abs()))
}

/// One activation quantized with scale `s`: `clamp(round_half_even(v · s), -128, 127)`.
#[inline]
pub fn quantize_i8(v: f32, s: f32) -> i8 {
    // The clamp comes first, which is the same as after since the bounds are integers; NaN gives 0, as `as` does.
    let x = (v * s).clamp(-128.0, 127.0);
    if x.is_nan() {
        0
    } else {
        round_ties_even(x).1 as i8
    }
}

/// `x` rounded half to even, as a float and as an integer, for |x| < 2^22 (not NaN). Adding and removing 1.5·2^23
/// rounds in f32 (without SSE4.1's `roundps` in the baseline x86-64 target, `f32::round_ties_even` is a libm call
/// per element), and the integer is read from the sum's bits, whose unit is 1: a float-to-int `as` saturates,
/// which kept the compiler from vectorizing the loops that round.
#[inline(always)]
pub(crate) fn round_ties_even(x: f32) -> (f32, i32) {
    const MAGIC: f32 = 12_582_912.0;
    let t = x + MAGIC;
    (t - MAGIC, t.to_bits() as i32 - MAGIC.to_bits() as i32)
}
