//! AArch64 NEON paths: the 2-bit codes (trit + 1) times int8 activations either by widening multiply-accumulate
//! (`smlal`) into i16, widened to i32 with `sadalp` every 8 chunks, or, where the CPU has the dot-product
//! extension, by `sdot` straight into i32 (half the multiply instructions, no i16 stage).

use std::arch::aarch64::*;

use super::acts::CHUNK;
use super::scalar;
use super::ternary::{ActTile, RowTile};
use crate::reference::TernaryShape;

/// i16 lanes gain at most 4 · 2 · 2 · 128 = 2048 per chunk; 8 chunks stay below 32767.
const CHUNKS_PER_I16: usize = 8;

/// See [`super::ternary::ternary_tile_dots`]: `rows` packed rows (`row_bytes` apart) × the tile's tokens, cut
/// into tiles of 4 rows × 1 token (decode) or 1 row × `tokens` (prefill) inside this one call; `dot` picks
/// `sdot`.
///
/// # Safety
/// The CPU has the dot-product extension if `dot`; the tile has 1..=4 tokens; blocks are one per row or a
/// multiple of [`CHUNK`] columns; `q` holds the tokens' permuted rows spanning every chunk of a row; `out`
/// holds every row's dots.
#[target_feature(enable = "neon")]
pub(crate) unsafe fn ternary_tile_dots(
    rows: &[u8],
    row_bytes: usize,
    acts: ActTile,
    shape: TernaryShape,
    out: &mut [i32],
    dot: bool,
) {
    let all = RowTile::new(rows, row_bytes, acts.q, acts.stride, shape);
    // SAFETY (sdots): `dot` is set only where the CPU has the dot-product extension.
    if dot {
        row_tiles!(all, acts.tokens, out, sdots)
    } else {
        row_tiles!(all, acts.tokens, out, dots)
    }
}

impl RowTile<'_> {
    /// `R` rows × `T` tokens with `sdot`, one i32 accumulator per (row, token, slice) so that 4-16 independent
    /// chains hide its latency; `out[t · out_stride + r · blocks + b]`.
    #[target_feature(enable = "neon,dotprod")]
    #[inline]
    unsafe fn sdots<const R: usize, const T: usize>(&self, out: &mut [i32]) {
        let nb = self.shape.blocks();
        let chunks = self.row_bytes / 32;
        let block_chunks = if nb == 1 {
            chunks
        } else {
            self.shape.block / CHUNK
        };
        let (wp, qp) = (self.rows.as_ptr(), self.q.as_ptr());
        let mut c = 0;
        for b in 0..nb {
            let block_end = (c + block_chunks).min(chunks);
            let mut acc = [[[vdupq_n_s32(0); 4]; T]; R];
            for c in c..block_end {
                for (r, acc) in acc.iter_mut().enumerate() {
                    for half in 0..2 {
                        let codes =
                            codes(vld1q_u8(wp.add(r * self.row_bytes + c * 32 + half * 16)));
                        for (s, &code) in codes.iter().enumerate() {
                            for (t, acc) in acc.iter_mut().enumerate() {
                                let at = t * self.stride + c * CHUNK + s * 32 + half * 16;
                                acc[s] = sdot(acc[s], code, vld1q_s8(qp.add(at)));
                            }
                        }
                    }
                }
            }
            for (r, acc) in acc.iter().enumerate() {
                for (t, [a0, a1, a2, a3]) in acc.iter().enumerate() {
                    let sum = vaddq_s32(vaddq_s32(*a0, *a1), vaddq_s32(*a2, *a3));
                    out[t * self.out_stride + r * nb + b] += vaddvq_s32(sum);
                }
            }
            c = block_end;
        }
        self.tail(T, out);
    }

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
            ..
        } = *self;
        let nb = shape.blocks();
        let chunks = row_bytes / 32;
        let block_chunks = if nb == 1 { chunks } else { shape.block / CHUNK };
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
                            let codes = codes(vld1q_u8(wp.add(r * row_bytes + c * 32 + half * 16)));
                            for (s, &code) in codes.iter().enumerate() {
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
        self.tail(T, out);
    }
}

/// The four slices of codes in 16 packed bytes: bits `2s..2s+2` of each byte.
#[target_feature(enable = "neon")]
#[inline]
unsafe fn codes(w: uint8x16_t) -> [int8x16_t; 4] {
    let mask = vdupq_n_u8(3);
    [
        vandq_u8(w, mask),
        vandq_u8(vshrq_n_u8::<2>(w), mask),
        vandq_u8(vshrq_n_u8::<4>(w), mask),
        vshrq_n_u8::<6>(w),
    ]
    .map(|c| vreinterpretq_s8_u8(c))
}

/// `acc + Σ a·b` over each group of four int8 lanes (`sdot`, not yet a stable intrinsic in Rust).
#[target_feature(enable = "neon,dotprod")]
#[inline]
unsafe fn sdot(mut acc: int32x4_t, a: int8x16_t, b: int8x16_t) -> int32x4_t {
    std::arch::asm!(
        "sdot {acc:v}.4s, {a:v}.16b, {b:v}.16b",
        acc = inout(vreg) acc,
        a = in(vreg) a,
        b = in(vreg) b,
        options(pure, nomem, nostack, preserves_flags)
    );
    acc
}

/// See [`scalar::int8_row_dots`]; the whole row, `tokens` in 1..=4, with `sdot` if `dot`.
///
/// # Safety
/// The CPU has the dot-product extension if `dot`; `q` holds `tokens` rows of `stride ≥ w.len()` bytes.
#[target_feature(enable = "neon")]
pub(crate) unsafe fn int8_row_dots(
    w: &[i8],
    q: &[i8],
    stride: usize,
    tokens: usize,
    out: &mut [i32],
    dot: bool,
) {
    if dot {
        token_tile!(int8_sdots(tokens; w, q, stride, out))
    } else {
        token_tile!(int8_dots(tokens; w, q, stride, out))
    }
}

/// [`int8_dots`] with `sdot`: two accumulators per token, each `sdot` adding at most 4 · 127² to a lane.
#[target_feature(enable = "neon,dotprod")]
#[inline]
unsafe fn int8_sdots<const T: usize>(w: &[i8], q: &[i8], stride: usize, out: &mut [i32]) {
    let mut acc = [[vdupq_n_s32(0); 2]; T];
    let vectors = w.len() / 16;
    let (wp, qp) = (w.as_ptr(), q.as_ptr());
    for v in 0..vectors {
        let wv = vld1q_s8(wp.add(v * 16));
        for (t, acc) in acc.iter_mut().enumerate() {
            acc[v % 2] = sdot(acc[v % 2], wv, vld1q_s8(qp.add(t * stride + v * 16)));
        }
    }
    for (t, [a, b]) in acc.iter().enumerate() {
        out[t] += vaddvq_s32(vaddq_s32(*a, *b));
    }
    scalar::int8_row_dots(w, vectors * 16, q, stride, T, out);
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
