//! RMSNorm of rows on the CPU.

use std::mem::MaybeUninit;
use std::ops::Range;

use super::par::{par_claimed, SharedOut};

/// Partial sums of the squares (independent chains the compiler keeps in vector registers).
const LANES: usize = 16;

/// Rows per band of a parallel norm: below two bands' worth the threads' start-up costs more than they save.
const BAND_ROWS: usize = 16;

/// RMSNorm of each `weight.len()`-wide row of `x`: `x · (1 / sqrt(mean(x²) + eps)) · weight`, in the order
/// [`crate::TernaryBackend::rms_norm`] defines. One pass over the row for the sum and one for the output:
/// the Burn-ops composition made six tensors per call, serial work the kernel threads waited on (~4% of a
/// 4-stream decode step). A prompt's rows are split across the threads: on one thread the norms of a
/// 512-token prompt were 3% of its samples, with the other thread waiting.
pub fn rms_norm(x: &[f32], weight: &[f32], eps: f32) -> Vec<f32> {
    let k = weight.len();
    assert!(
        k > 0 && x.len().is_multiple_of(k),
        "rms_norm: {} values in rows of {k}",
        x.len()
    );
    let rows = x.len() / k;
    let mut y = Vec::new();
    let out = SharedOut::output(&mut y, x.len());
    let band = |r: Range<usize>| {
        // SAFETY: each band writes its own rows of `y`, whose allocation holds every row.
        let y = unsafe { out.uninit(r.start * k, r.len() * k) };
        norm_rows(&x[r.start * k..r.end * k], weight, eps, y);
    };
    if rows >= 2 * BAND_ROWS {
        par_claimed(rows, BAND_ROWS, band);
    } else {
        band(0..rows);
    }
    // SAFETY: the bands wrote every row.
    unsafe { y.set_len(x.len()) };
    y
}

/// The rows' norms into `y`, on AVX2 where the CPU has it.
fn norm_rows(x: &[f32], weight: &[f32], eps: f32, y: &mut [MaybeUninit<f32>]) {
    #[cfg(target_arch = "x86_64")]
    if super::Isa::detect().has_avx2() {
        // SAFETY: AVX2 is present.
        return unsafe { rms_norm_avx2(x, weight, eps, y) };
    }
    rms_norm_rows(x, weight, eps, y)
}

/// [`rms_norm_rows`] compiled for AVX2: the f64 sums four lanes to an instruction instead of SSE2's two, 1.8×
/// faster on 4 × 2560 values (1.6 against 2.9 µs in cache; the same operations in the same order, so the same
/// floats). AVX-512 ran no faster.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn rms_norm_avx2(x: &[f32], weight: &[f32], eps: f32, y: &mut [MaybeUninit<f32>]) {
    rms_norm_rows(x, weight, eps, y)
}

/// The rows' norms on whatever instructions the caller was compiled for.
#[inline(always)]
fn rms_norm_rows(x: &[f32], weight: &[f32], eps: f32, y: &mut [MaybeUninit<f32>]) {
    let k = weight.len();
    for (row, y) in x.chunks_exact(k).zip(y.chunks_exact_mut(k)) {
        let inv = 1.0 / (sum_of_squares(row) / k as f32 + eps).sqrt();
        for ((y, &v), &w) in y.iter_mut().zip(row).zip(weight) {
            y.write(v * inv * w);
        }
    }
}

/// Σ v² over `row` in f64, rounded once to f32: as near the exact sum as transformers' (pairwise) f32 sum is.
/// A 16-lane f32 sum flipped an int8 activation rounding downstream on the 2B-4T-graph fixture (its NLL
/// against transformers' off by 1e-4 relative, `tests/it/perplexity.rs`).
#[inline(always)]
fn sum_of_squares(row: &[f32]) -> f32 {
    let mut lanes = [0f64; LANES];
    let chunks = row.chunks_exact(LANES);
    let rest: f64 = chunks
        .remainder()
        .iter()
        .map(|&v| v as f64 * v as f64)
        .sum();
    for chunk in chunks {
        for (l, &v) in lanes.iter_mut().zip(chunk) {
            *l += v as f64 * v as f64;
        }
    }
    (lanes.iter().sum::<f64>() + rest) as f32
}
