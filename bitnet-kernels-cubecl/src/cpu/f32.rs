//! The float output head on the CPU: `x · wᵀ` streaming `w` once, where a general matmul would first pack (copy)
//! the whole `[vocab, hidden]` matrix on every call.

use super::par::{band_rows, par_rows, SharedOut};

/// Rows per band at most.
const MAX_BAND: usize = 8;
/// Independent partial sums per dot product, so the compiler can keep them in SIMD lanes.
const LANES: usize = 16;

fn dot(a: &[f32], b: &[f32]) -> f32 {
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
    par_rows(n, band_rows(n, MAX_BAND), |rows| {
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
