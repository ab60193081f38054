//! AArch64 NEON path: widening multiply-accumulate (`smlal`) of the 2-bit codes (trit + 1) by int8
//! activations into i16, widened to i32 with `sadalp` every 8 chunks.

use std::arch::aarch64::*;

use super::acts::CHUNK;
use super::scalar;
use super::ternary::ActTile;
use crate::reference::TernaryShape;

/// i16 lanes gain at most 4 · 2 · 2 · 128 = 2048 per chunk; 8 chunks stay below 32767.
const CHUNKS_PER_I16: usize = 8;

/// See [`super::ternary::ternary_tile_dots`]: `rows` packed rows (`row_bytes` apart) × `tokens`, cut into
/// tiles of 4 rows × 1 token (decode) or 1 row × `tokens` (prefill) inside this one call.
///
/// # Safety
/// `tokens` is 1..=4; blocks are one per row or a multiple of [`CHUNK`] columns; `q` holds `tokens` permuted
/// rows of `stride` bytes spanning every chunk of a row; `out` holds every row's dots.
#[target_feature(enable = "neon")]
pub(crate) unsafe fn ternary_tile_dots(
    rows: &[u8],
    row_bytes: usize,
    q: &[i8],
    stride: usize,
    tokens: usize,
    shape: TernaryShape,
    out: &mut [i32],
) {
    let n_rows = rows.len() / row_bytes;
    let nb = shape.blocks();
    let tile = |r0: usize, r1: usize| Tile {
        rows: &rows[r0 * row_bytes..r1 * row_bytes],
        row_bytes,
        q,
        stride,
        shape,
        out_stride: n_rows * nb,
    };
    if tokens == 1 {
        let whole = n_rows - n_rows % 4;
        for r0 in (0..whole).step_by(4) {
            tile(r0, r0 + 4).dots::<4, 1>(&mut out[r0 * nb..]);
        }
        let rest = &mut out[whole * nb..];
        match n_rows - whole {
            0 => {}
            1 => tile(whole, n_rows).dots::<1, 1>(rest),
            2 => tile(whole, n_rows).dots::<2, 1>(rest),
            _ => tile(whole, n_rows).dots::<3, 1>(rest),
        }
        return;
    }
    for r in 0..n_rows {
        let out = &mut out[r * nb..];
        match tokens {
            2 => tile(r, r + 1).dots::<1, 2>(out),
            3 => tile(r, r + 1).dots::<1, 3>(out),
            4 => tile(r, r + 1).dots::<1, 4>(out),
            other => unreachable!("{other} tokens"),
        }
    }
}

/// The operands of one tile.
struct Tile<'a> {
    rows: &'a [u8],
    row_bytes: usize,
    q: &'a [i8],
    stride: usize,
    shape: TernaryShape,
    /// Distance between tokens in `out`.
    out_stride: usize,
}

impl Tile<'_> {
    /// `R` rows × `T` tokens; `out[t · out_stride + r · blocks + b]`.
    #[target_feature(enable = "neon")]
    #[inline]
    unsafe fn dots<const R: usize, const T: usize>(&self, out: &mut [i32]) {
        let Self {
            rows,
            row_bytes,
            q,
            stride,
            shape,
            out_stride,
        } = *self;
        let nb = shape.blocks();
        let chunks = row_bytes / 32;
        let block_chunks = if nb == 1 { chunks } else { shape.block / CHUNK };
        let mask = vdupq_n_u8(3);
        let (wp, qp) = (rows.as_ptr(), q.as_ptr());
        let mut c = 0;
        for b in 0..nb {
            let block_end = (c + block_chunks).min(chunks);
            let mut acc32 = [[vdupq_n_s32(0); T]; R];
            while c < block_end {
                let run_end = (c + CHUNKS_PER_I16).min(block_end);
                let mut acc16 = [[vdupq_n_s16(0); T]; R];
                for c in c..run_end {
                    for (r, acc) in acc16.iter_mut().enumerate() {
                        for half in 0..2 {
                            let w = vld1q_u8(wp.add(r * row_bytes + c * 32 + half * 16));
                            let codes = [
                                vandq_u8(w, mask),
                                vandq_u8(vshrq_n_u8::<2>(w), mask),
                                vandq_u8(vshrq_n_u8::<4>(w), mask),
                                vandq_u8(vshrq_n_u8::<6>(w), mask),
                            ];
                            for (s, &code) in codes.iter().enumerate() {
                                let code = vreinterpretq_s8_u8(code);
                                for (t, acc) in acc.iter_mut().enumerate() {
                                    let a = vld1q_s8(
                                        qp.add(t * stride + c * CHUNK + s * 32 + half * 16),
                                    );
                                    *acc = vmlal_s8(*acc, vget_low_s8(code), vget_low_s8(a));
                                    *acc = vmlal_high_s8(*acc, code, a);
                                }
                            }
                        }
                    }
                }
                for r in 0..R {
                    for t in 0..T {
                        acc32[r][t] = vpadalq_s16(acc32[r][t], acc16[r][t]);
                    }
                }
                c = run_end;
            }
            for (r, acc) in acc32.iter().enumerate() {
                for (t, &acc) in acc.iter().enumerate() {
                    out[t * out_stride + r * nb + b] += vaddvq_s32(acc);
                }
            }
        }
        let acts = ActTile {
            q,
            stride,
            tokens: T,
            chunk: CHUNK,
        };
        scalar::ternary_rows_dots(rows, row_bytes, chunks * 32, acts, shape, out, out_stride);
    }
}

/// See [`scalar::int8_row_dots`]; the whole row, `tokens` in 1..=4.
///
/// # Safety
/// `q` holds `tokens` rows of `stride ≥ w.len()` bytes.
#[target_feature(enable = "neon")]
pub(crate) unsafe fn int8_row_dots(
    w: &[i8],
    q: &[i8],
    stride: usize,
    tokens: usize,
    out: &mut [i32],
) {
    match tokens {
        1 => int8_dots::<1>(w, q, stride, out),
        2 => int8_dots::<2>(w, q, stride, out),
        3 => int8_dots::<3>(w, q, stride, out),
        4 => int8_dots::<4>(w, q, stride, out),
        _ => unreachable!("token tiles are 1..=4"),
    }
}

#[target_feature(enable = "neon")]
#[inline]
unsafe fn int8_dots<const T: usize>(w: &[i8], q: &[i8], stride: usize, out: &mut [i32]) {
    let mut acc = [vdupq_n_s32(0); T];
    let vectors = w.len() / 16;
    let (wp, qp) = (w.as_ptr(), q.as_ptr());
    for v in 0..vectors {
        let wv = vld1q_s8(wp.add(v * 16));
        for (t, acc) in acc.iter_mut().enumerate() {
            let a = vld1q_s8(qp.add(t * stride + v * 16));
            *acc = vpadalq_s16(*acc, vmull_s8(vget_low_s8(wv), vget_low_s8(a)));
            *acc = vpadalq_s16(*acc, vmull_high_s8(wv, a));
        }
    }
    for t in 0..T {
        out[t] += vaddvq_s32(acc[t]);
    }
    scalar::int8_row_dots(w, vectors * 16, q, stride, T, out);
}
