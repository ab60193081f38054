//! BitLinear's int8-activation ternary matmul on the CPU: quantize, integer block dots, rescale.

use std::cell::RefCell;

use super::acts::{QuantizedActs, CHUNK};
use super::isa::Isa;
use super::par::{band_rows, par_rows, SharedOut};
use super::scalar;
use crate::packing::words_per_row;
use crate::reference::TernaryShape;

/// Tokens sharing one pass over a weight row (the GEMM tile; decode is a tile of one).
const TOKEN_TILE: usize = 4;
/// Rows per band at most: 16 packed rows of 2560 columns (10 KiB) plus a tile of activations stay in L1.
const MAX_BAND: usize = 16;

thread_local! {
    static ACTS: RefCell<QuantizedActs> = RefCell::default();
    static DOTS: RefCell<Vec<i32>> = RefCell::default();
}

/// Σ (trit + 1) · q per scale block of one packed row (its `u32` words as little-endian bytes) for `tokens`
/// (1..=4) tokens of permuted activations `stride` bytes apart, zero beyond column `k`, on the `isa` path:
/// `out[t · blocks + b]` is overwritten. Every path returns the same integers.
pub fn ternary_row_dots(
    isa: Isa,
    row: &[u8],
    q: &[i8],
    stride: usize,
    tokens: usize,
    shape: TernaryShape,
    out: &mut [i32],
) {
    let span = row.len().div_ceil(32) * CHUNK;
    assert!((1..=TOKEN_TILE).contains(&tokens), "{tokens} tokens");
    assert!(row.len() * 4 >= shape.k && stride >= span && q.len() >= (tokens - 1) * stride + span);
    out[..tokens * shape.blocks()].fill(0);
    let simd = shape.blocks() == 1 || shape.block % CHUNK == 0;
    #[cfg(target_arch = "x86_64")]
    if simd && isa == Isa::Avx2 && std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: AVX2 is present, blocks are whole chunks or one per row, `q` spans every chunk (asserted).
        return unsafe { super::avx2::ternary_row_dots(row, q, stride, tokens, shape, out) };
    }
    #[cfg(target_arch = "aarch64")]
    if simd && isa == Isa::Neon {
        // SAFETY: NEON is baseline on AArch64; blocks and `q` as above.
        return unsafe { super::neon::ternary_row_dots(row, q, stride, tokens, shape, out) };
    }
    let _ = (simd, isa);
    scalar::ternary_row_dots(row, 0, q, stride, tokens, shape, out);
}

/// BitLinear in int8 mode on the CPU, `x [m, k]` → `y [m, n]`: each token quantized with
/// [`crate::reference::quantize_row_i8`] (scale `s`), then
/// `y = Σ_b (Σ_{k∈b} (trit+1)·q − Σ_{k∈b} q) · scales[n, b] / s`, rows split across the current rayon pool.
pub fn ternary_matmul_i8(
    x: &[f32],
    m: usize,
    w: &[u32],
    scales: &[f32],
    shape: TernaryShape,
    isa: Isa,
) -> Vec<f32> {
    let TernaryShape { n, k, block } = shape;
    let (nb, kw) = (shape.blocks(), words_per_row(k));
    assert!(x.len() == m * k && w.len() == n * kw && scales.len() == n * nb);
    let bytes: &[u8] = bytemuck::cast_slice(w);
    let mut y = vec![0f32; m * n];
    let out = SharedOut::new(&mut y);
    with_acts(|acts| {
        acts.quantize_permuted(x, m, k, block);
        let acts = &*acts;
        par_rows(n, band_rows(n, MAX_BAND), |rows| {
            DOTS.with_borrow_mut(|dots| {
                dots.resize(TOKEN_TILE * nb, 0);
                for t0 in (0..m).step_by(TOKEN_TILE) {
                    let tokens = TOKEN_TILE.min(m - t0);
                    for r in rows.clone() {
                        let row = &bytes[r * kw * 4..(r + 1) * kw * 4];
                        ternary_row_dots(isa, row, acts.from_token(t0), acts.stride, tokens, shape, dots);
                        for t in 0..tokens {
                            let sums = &acts.block_sums[(t0 + t) * nb..(t0 + t + 1) * nb];
                            let mut acc = 0f32;
                            for b in 0..nb {
                                acc += (dots[t * nb + b] - sums[b]) as f32 * scales[r * nb + b];
                            }
                            // SAFETY: in bounds; row `r` belongs to this band only.
                            unsafe { out.write((t0 + t) * n + r, acc / acts.scale[t0 + t]) };
                        }
                    }
                }
            })
        });
    });
    y
}

/// Runs `f` on this thread's activation buffer (a fresh one if a caller up the stack holds it).
pub(crate) fn with_acts<R>(f: impl FnOnce(&mut QuantizedActs) -> R) -> R {
    ACTS.with(|cell| match cell.try_borrow_mut() {
        Ok(mut acts) => f(&mut acts),
        Err(_) => f(&mut QuantizedActs::default()),
    })
}
