//! RMSNorm of rows on the CPU.

/// Partial sums of the squares (independent chains the compiler keeps in vector registers).
const LANES: usize = 16;

/// RMSNorm of each `weight.len()`-wide row of `x`: `x · (1 / sqrt(mean(x²) + eps)) · weight`, in the order
/// [`crate::TernaryBackend::rms_norm`] defines. One pass over the row for the sum and one for the output:
/// the Burn-ops composition made six tensors per call, serial work the kernel threads waited on (~4% of a
/// 4-stream decode step).
pub fn rms_norm(x: &[f32], weight: &[f32], eps: f32) -> Vec<f32> {
    let k = weight.len();
    assert!(
        k > 0 && x.len().is_multiple_of(k),
        "rms_norm: {} values in rows of {k}",
        x.len()
    );
    let mut y = Vec::with_capacity(x.len());
    for row in x.chunks_exact(k) {
        let inv = 1.0 / (sum_of_squares(row) / k as f32 + eps).sqrt();
        y.extend(row.iter().zip(weight).map(|(&v, &w)| v * inv * w));
    }
    y
}

/// Σ v² over `row` in f64, rounded once to f32: as near the exact sum as transformers' (pairwise) f32 sum is.
/// A 16-lane f32 sum flipped an int8 activation rounding downstream on the 2B-4T-graph fixture (its NLL
/// against transformers' off by 1e-4 relative, `tests/it/perplexity.rs`).
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
