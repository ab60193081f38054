//! BitLinear's int8-activation ternary matmul on the CPU: quantize, integer block dots, rescale.

use std::cell::RefCell;

use super::acts::{QuantizedActs, CHUNK};
use super::isa::Isa;
use super::par::{band_rows, par_rows, SharedOut};
use super::scalar;
use crate::packing::words_per_row;
use crate::reference::TernaryShape;

/// Tokens sharing one pass over a weight row (prefill).
const TOKEN_TILE: usize = 4;
/// Rows sharing each activation load (decode).
const ROW_TILE: usize = 4;
/// Rows per band at most: 16 packed rows of 2560 columns (10 KiB) plus a tile of activations stay in L1.
const MAX_BAND: usize = 16;

thread_local! {
    static ACTS: RefCell<QuantizedActs> = RefCell::default();
    static DOTS: RefCell<Vec<i32>> = RefCell::default();
}

/// The activations of a tile: `tokens` tokens of permuted int8 values, `stride` bytes apart.
#[derive(Clone, Copy, Debug)]
pub struct ActTile<'a> {
    /// Quantized values from the tile's first token on.
    pub q: &'a [i8],
    /// Bytes per token.
    pub stride: usize,
    /// Tokens in the tile.
    pub tokens: usize,
}

/// Σ (trit + 1) · q per scale block for a tile of packed rows (`rows`: whole rows of `row_bytes` bytes, the
/// `u32` words as little-endian bytes) and `tokens` tokens of permuted activations `stride` bytes apart, zero
/// beyond column `k`, on the `isa` path: `out[(r · tokens + t) · blocks + b]` is overwritten. Tiles are one
/// row × 1..=4 tokens (prefill) or 1..=4 rows × one token (decode). Every path returns the same integers.
pub fn ternary_tile_dots(
    isa: Isa,
    rows: &[u8],
    row_bytes: usize,
    acts: ActTile,
    shape: TernaryShape,
    out: &mut [i32],
) {
    let ActTile { q, stride, tokens } = acts;
    let span = row_bytes.div_ceil(32) * CHUNK;
    let n_rows = rows.len() / row_bytes;
    assert!(rows.len().is_multiple_of(row_bytes) && row_bytes * 4 >= shape.k);
    assert!(
        (n_rows == 1 && (1..=TOKEN_TILE).contains(&tokens))
            || ((2..=ROW_TILE).contains(&n_rows) && tokens == 1),
        "tile of {n_rows} rows × {tokens} tokens"
    );
    assert!(stride >= span && q.len() >= (tokens - 1) * stride + span);
    out[..n_rows * tokens * shape.blocks()].fill(0);
    let simd = shape.blocks() == 1 || shape.block.is_multiple_of(CHUNK);
    #[cfg(target_arch = "x86_64")]
    if simd && isa == Isa::Avx2 && std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: AVX2 is present; tile shape, blocks and the span of `q` are asserted above.
        return unsafe {
            super::avx2::ternary_tile_dots(rows, row_bytes, q, stride, tokens, shape, out)
        };
    }
    #[cfg(target_arch = "aarch64")]
    if simd && isa == Isa::Neon {
        // SAFETY: NEON is baseline on AArch64; tile shape, blocks and the span of `q` are asserted above.
        return unsafe {
            super::neon::ternary_tile_dots(rows, row_bytes, q, stride, tokens, shape, out)
        };
    }
    let _ = (simd, isa);
    let nb = shape.blocks();
    for (r, row) in rows.chunks_exact(row_bytes).enumerate() {
        let out = &mut out[r * tokens * nb..(r + 1) * tokens * nb];
        scalar::ternary_row_dots(row, 0, q, stride, tokens, shape, out);
    }
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
                dots.resize(ROW_TILE.max(TOKEN_TILE) * nb, 0);
                let (row_tile, token_tile) = if m == 1 {
                    (ROW_TILE, 1)
                } else {
                    (1, TOKEN_TILE)
                };
                for t0 in (0..m).step_by(token_tile) {
                    let tokens = token_tile.min(m - t0);
                    for r0 in rows.clone().step_by(row_tile) {
                        let r1 = (r0 + row_tile).min(rows.end);
                        let tile = &bytes[r0 * kw * 4..r1 * kw * 4];
                        let a = ActTile {
                            q: acts.from_token(t0),
                            stride: acts.stride,
                            tokens,
                        };
                        ternary_tile_dots(isa, tile, kw * 4, a, shape, dots);
                        for (i, r) in (r0..r1).enumerate() {
                            for t in 0..tokens {
                                let dots = &dots[(i * tokens + t) * nb..];
                                let sums = &acts.block_sums[(t0 + t) * nb..(t0 + t + 1) * nb];
                                let mut acc = 0f32;
                                for b in 0..nb {
                                    acc += (dots[b] - sums[b]) as f32 * scales[r * nb + b];
                                }
                                // SAFETY: in bounds; row `r` belongs to this band only.
                                unsafe { out.write((t0 + t) * n + r, acc / acts.scale[t0 + t]) };
                            }
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
