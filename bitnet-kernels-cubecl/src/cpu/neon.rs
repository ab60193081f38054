//! AArch64 NEON path: widening multiply-accumulate (`smlal`) of the 2-bit codes (trit + 1) by int8
//! activations into i16, widened to i32 with `sadalp` every 8 chunks.

use std::arch::aarch64::*;

use super::acts::CHUNK;
use super::scalar;
use crate::reference::TernaryShape;

/// i16 lanes gain at most 4 · 2 · 2 · 128 = 2048 per chunk; 8 chunks stay below 32767.
const CHUNKS_PER_I16: usize = 8;

/// See [`scalar::ternary_row_dots`]; the whole row, `tokens` in 1..=4.
///
/// # Safety
/// Blocks are one per row or a multiple of [`CHUNK`] columns; `q` holds `tokens` permuted rows of
/// `stride ≥ row.len() · 4` rounded up to whole chunks.
#[target_feature(enable = "neon")]
pub(crate) unsafe fn ternary_row_dots(
    row: &[u8],
    q: &[i8],
    stride: usize,
    tokens: usize,
    shape: TernaryShape,
    out: &mut [i32],
) {
    match tokens {
        1 => ternary_dots::<1>(row, q, stride, shape, out),
        2 => ternary_dots::<2>(row, q, stride, shape, out),
        3 => ternary_dots::<3>(row, q, stride, shape, out),
        4 => ternary_dots::<4>(row, q, stride, shape, out),
        _ => unreachable!("token tiles are 1..=4"),
    }
}

#[target_feature(enable = "neon")]
#[inline]
unsafe fn ternary_dots<const T: usize>(
    row: &[u8],
    q: &[i8],
    stride: usize,
    shape: TernaryShape,
    out: &mut [i32],
) {
    let nb = shape.blocks();
    let chunks = row.len() / 32;
    let block_chunks = if nb == 1 { chunks } else { shape.block / CHUNK };
    debug_assert!(q.len() >= (T - 1) * stride + chunks * CHUNK);
    let mask = vdupq_n_u8(3);
    let (wp, qp) = (row.as_ptr(), q.as_ptr());
    let mut c = 0;
    for b in 0..nb {
        let block_end = (c + block_chunks).min(chunks);
        let mut acc32 = [vdupq_n_s32(0); T];
        while c < block_end {
            let run_end = (c + CHUNKS_PER_I16).min(block_end);
            let mut acc16 = [vdupq_n_s16(0); T];
            for c in c..run_end {
                for half in 0..2 {
                    let w = vld1q_u8(wp.add(c * 32 + half * 16));
                    let codes = [
                        vandq_u8(w, mask),
                        vandq_u8(vshrq_n_u8::<2>(w), mask),
                        vandq_u8(vshrq_n_u8::<4>(w), mask),
                        vandq_u8(vshrq_n_u8::<6>(w), mask),
                    ];
                    for (s, &code) in codes.iter().enumerate() {
                        let code = vreinterpretq_s8_u8(code);
                        for (t, acc) in acc16.iter_mut().enumerate() {
                            let a = vld1q_s8(qp.add(t * stride + c * CHUNK + s * 32 + half * 16));
                            *acc = vmlal_s8(*acc, vget_low_s8(code), vget_low_s8(a));
                            *acc = vmlal_high_s8(*acc, code, a);
                        }
                    }
                }
            }
            for t in 0..T {
                acc32[t] = vpadalq_s16(acc32[t], acc16[t]);
            }
            c = run_end;
        }
        for (t, &acc) in acc32.iter().enumerate() {
            out[t * nb + b] += vaddvq_s32(acc);
        }
    }
    scalar::ternary_row_dots(row, chunks * 32, q, stride, T, shape, out);
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
        for t in 0..T {
            let a = vld1q_s8(qp.add(t * stride + v * 16));
            acc[t] = vpadalq_s16(acc[t], vmull_s8(vget_low_s8(wv), vget_low_s8(a)));
            acc[t] = vpadalq_s16(acc[t], vmull_high_s8(wv, a));
        }
    }
    for t in 0..T {
        out[t] += vaddvq_s32(acc[t]);
    }
    scalar::int8_row_dots(w, vectors * 16, q, stride, T, out);
}
