//! Float activations on the CPU: the output head `x · wᵀ` streaming `w` once (a general matmul would first pack
//! (copy) the whole `[vocab, hidden]` matrix on every call), and the ternary matmul with float activations (each
//! packed row unpacked once per call, then dotted with every token).

use super::par::{par_bands, SharedOut};
use crate::packing::{unpack_row, words_per_row};
use crate::reference::TernaryShape;

/// Independent partial sums per dot product, so the compiler can keep them in SIMD lanes.
const LANES: usize = 16;

/// `Σ a·b` in independent lanes (vectorizable without reassociating one sum); inlined so that callers compiled
/// for a wider instruction set vectorize it with that set.
#[inline(always)]
pub(super) fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; LANES];
    let (ca, cb) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let tail: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in ca.zip(cb) {
        for l in 0..LANES {
            acc[l] += x[l] * y[l];
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// `y[m, n] = x[m, k] · w[n, k]ᵀ` in f32, rows of `w` split across the current rayon pool.
pub fn f32_matmul_nt(x: &[f32], m: usize, w: &[f32], k: usize) -> Vec<f32> {
    let n = w.len() / k;
    assert!(x.len() == m * k && w.len() == n * k);
    let mut y = vec![0f32; m * n];
    let out = SharedOut::new(&mut y);
    par_bands(n, 1, |rows| {
        for r in rows {
            let wr = &w[r * k..(r + 1) * k];
            for (t, xt) in x.chunks_exact(k).enumerate() {
                // SAFETY: in bounds; row `r` belongs to this band only.
                unsafe { out.write(t * n + r, dot(xt, wr)) };
            }
        }
    });
    y
}

/// `y[m, n] = Σ_b scales[n, b] · Σ_{k ∈ b} x[m, k] · trit[n, k]` in f32 (the reference's semantics, summed in
/// [`LANES`] partial sums instead of f64), rows split across the current rayon pool.
pub fn ternary_matmul_f32(
    x: &[f32],
    m: usize,
    w: &[u32],
    scales: &[f32],
    shape: TernaryShape,
) -> Vec<f32> {
    let TernaryShape { n, k, block } = shape;
    let (kw, nb) = (words_per_row(k), shape.blocks());
    assert!(x.len() == m * k && w.len() == n * kw && scales.len() == n * nb);
    let mut y = vec![0f32; m * n];
    let out = SharedOut::new(&mut y);
    par_bands(n, 1, |rows| {
        let (mut trits, mut row) = (vec![0i8; k], vec![0f32; k]);
        for r in rows {
            unpack_row(&w[r * kw..(r + 1) * kw], &mut trits);
            for (v, &t) in row.iter_mut().zip(&trits) {
                *v = t as f32;
            }
            let rs = &scales[r * nb..(r + 1) * nb];
            for (t, xt) in x.chunks_exact(k).enumerate() {
                let acc: f32 = xt
                    .chunks(block)
                    .zip(row.chunks(block))
                    .zip(rs)
                    .map(|((xb, wb), s)| dot(xb, wb) * s)
                    .sum();
                // SAFETY: in bounds; row `r` belongs to this band only.
                unsafe { out.write(t * n + r, acc) };
            }
        }
    });
    y
}
