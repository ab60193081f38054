//! WebAssembly SIMD128 paths (the browser build): the 2-bit codes (trit + 1) times int8 activations by widening
//! multiplies (`i16x8.extmul`) into i16 lanes, widened to i32 by pairwise adds every 8 chunks; the int8 head the
//! same way, widened at once. SIMD128 has no run-time detection: the module is compiled with it (the workspace's
//! `.cargo/config.toml`), and every current browser runs it. A second module, built with relaxed SIMD as well
//! (`scripts/build-web.sh`; the page loads it where the browser validates it), also has the relaxed ternary
//! path: `i32x4.relaxed_dot_i8x16_i7x16_add` multiplies 16 int8 activations by 16 codes and adds each group of
//! four into an i32 lane in one instruction.

use std::arch::wasm32::*;

use super::acts::CHUNK;
use super::scalar;
use super::ternary::{ActTile, RowTile};
use crate::reference::TernaryShape;

/// i16 lanes gain at most 16 · 2 · 127 = 4064 per chunk (two products of each of the 4 slices of each 16-byte
/// half); 8 chunks stay below 32767.
const CHUNKS_PER_I16: usize = 8;

/// See [`super::ternary::ternary_tile_dots`]: `rows` packed rows (`row_bytes` apart) × the tile's tokens, cut
/// into tiles of 4 rows × 1 token (decode) or 1 row × `tokens` (prefill); `relaxed` takes the relaxed-SIMD dot
/// products (only in a module built with them).
///
/// # Safety
/// The tile has 1..=4 tokens; blocks are one per row or a multiple of [`CHUNK`] columns; `q` holds the tokens'
/// permuted rows spanning every chunk of a row; `out` holds every row's dots.
#[target_feature(enable = "simd128")]
pub(crate) unsafe fn ternary_tile_dots(
    rows: &[u8],
    row_bytes: usize,
    acts: ActTile,
    shape: TernaryShape,
    out: &mut [i32],
    relaxed: bool,
) {
    let all = RowTile::new(rows, row_bytes, acts.q, acts.stride, shape);
    #[cfg(target_feature = "relaxed-simd")]
    if relaxed {
        return row_tiles!(all, acts.tokens, out, relaxed_dots);
    }
    debug_assert!(!relaxed, "a module built without relaxed SIMD");
    row_tiles!(all, acts.tokens, out, dots)
}

/// How a tile's code × activation products accumulate in a `v128`, and how the accumulator becomes i32 lanes.
trait Accumulate {
    /// Chunks an accumulator takes before it is widened.
    const RUN: usize;
    /// `acc` plus the 16 products `code · a`.
    fn add(acc: v128, code: v128, a: v128) -> v128;
    /// i32 lanes with the same sum as `acc`.
    fn widen(acc: v128) -> v128;
}

/// SIMD128: widening `i16x8.extmul` products into i16 lanes, pairwise-added into i32 every [`CHUNKS_PER_I16`].
struct Extmul;

impl Accumulate for Extmul {
    const RUN: usize = CHUNKS_PER_I16;
    #[inline(always)]
    fn add(acc: v128, code: v128, a: v128) -> v128 {
        let lo = i16x8_extmul_low_i8x16(code, a);
        let hi = i16x8_extmul_high_i8x16(code, a);
        i16x8_add(acc, i16x8_add(lo, hi))
    }
    #[inline(always)]
    fn widen(acc: v128) -> v128 {
        i32x4_extadd_pairwise_i16x8(acc)
    }
}

/// Relaxed SIMD's dot product: the codes (0..=2) are its 7-bit operand, for which every engine gives the exact
/// sum, and each group of four products goes into an i32 lane at once (no i16 stage).
#[cfg(target_feature = "relaxed-simd")]
struct RelaxedDot;

#[cfg(target_feature = "relaxed-simd")]
impl Accumulate for RelaxedDot {
    const RUN: usize = usize::MAX;
    #[inline(always)]
    fn add(acc: v128, code: v128, a: v128) -> v128 {
        i32x4_relaxed_dot_i8x16_i7x16_add(a, code, acc)
    }
    #[inline(always)]
    fn widen(acc: v128) -> v128 {
        acc
    }
}

impl RowTile<'_> {
    /// `R` rows × `T` tokens on SIMD128; `out[t · out_stride + r · blocks + b]`.
    #[target_feature(enable = "simd128")]
    #[inline]
    unsafe fn dots<const R: usize, const T: usize>(&self, out: &mut [i32]) {
        self.accumulate::<R, T, Extmul>(out)
    }

    /// [`Self::dots`] with relaxed SIMD's dot product.
    #[cfg(target_feature = "relaxed-simd")]
    #[target_feature(enable = "simd128,relaxed-simd")]
    #[inline]
    unsafe fn relaxed_dots<const R: usize, const T: usize>(&self, out: &mut [i32]) {
        self.accumulate::<R, T, RelaxedDot>(out)
    }

    /// `R` rows × `T` tokens, the products accumulated as `A` does.
    #[target_feature(enable = "simd128")]
    #[inline]
    unsafe fn accumulate<const R: usize, const T: usize, A: Accumulate>(&self, out: &mut [i32]) {
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
        let (wp, qp) = (rows.as_ptr(), q.as_ptr());
        let mut c = 0;
        for b in 0..nb {
            let block_end = (c + block_chunks).min(chunks);
            let mut acc32 = [[i32x4_splat(0); T]; R];
            while c < block_end {
                let run_end = c + A::RUN.min(block_end - c);
                let mut acc = [[i32x4_splat(0); T]; R];
                for c in c..run_end {
                    for (r, acc) in acc.iter_mut().enumerate() {
                        for half in 0..2 {
                            let w = v128_load(wp.add(r * row_bytes + c * 32 + half * 16).cast());
                            for (s, &code) in codes(w).iter().enumerate() {
                                for (t, acc) in acc.iter_mut().enumerate() {
                                    let at = t * stride + c * CHUNK + s * 32 + half * 16;
                                    *acc = A::add(*acc, code, v128_load(qp.add(at).cast()));
                                }
                            }
                        }
                    }
                }
                for r in 0..R {
                    for t in 0..T {
                        acc32[r][t] = i32x4_add(acc32[r][t], A::widen(acc[r][t]));
                    }
                }
                c = run_end;
            }
            for (r, acc) in acc32.iter().enumerate() {
                for (t, &acc) in acc.iter().enumerate() {
                    out[t * out_stride + r * nb + b] += lanes_sum(acc);
                }
            }
        }
        self.tail(T, out);
    }
}

/// The four slices of codes in 16 packed bytes: bits `2s..2s+2` of each byte, shifted in 16-bit lanes and masked
/// (x86 has no 8-bit shift: V8 makes each `i8x16.shr` three instructions, an `i16x8.shr` one).
#[target_feature(enable = "simd128")]
#[inline]
pub(crate) fn codes(w: v128) -> [v128; 4] {
    let mask = u8x16_splat(3);
    [
        v128_and(w, mask),
        v128_and(u16x8_shr(w, 2), mask),
        v128_and(u16x8_shr(w, 4), mask),
        v128_and(u16x8_shr(w, 6), mask),
    ]
}

/// The sum of the four i32 lanes.
#[target_feature(enable = "simd128")]
#[inline]
fn lanes_sum(v: v128) -> i32 {
    i32x4_extract_lane::<0>(v)
        + i32x4_extract_lane::<1>(v)
        + i32x4_extract_lane::<2>(v)
        + i32x4_extract_lane::<3>(v)
}

/// See [`scalar::int8_row_dots`]; the whole row, `tokens` in 1..=4.
///
/// # Safety
/// `q` holds `tokens` rows of `stride ≥ w.len()` bytes.
#[target_feature(enable = "simd128")]
pub(crate) unsafe fn int8_row_dots(
    w: &[i8],
    q: &[i8],
    stride: usize,
    tokens: usize,
    out: &mut [i32],
) {
    token_tile!(int8_dots(tokens; w, q, stride, out))
}

/// Each 16-byte slice: two widening multiplies (each product fits i16: |w·q| ≤ 128 · 127), added pairwise into i32.
#[target_feature(enable = "simd128")]
#[inline]
unsafe fn int8_dots<const T: usize>(w: &[i8], q: &[i8], stride: usize, out: &mut [i32]) {
    let mut acc = [i32x4_splat(0); T];
    let vectors = w.len() / 16;
    let (wp, qp) = (w.as_ptr(), q.as_ptr());
    for v in 0..vectors {
        let wv = v128_load(wp.add(v * 16).cast());
        for (t, acc) in acc.iter_mut().enumerate() {
            let a = v128_load(qp.add(t * stride + v * 16).cast());
            let lo = i32x4_extadd_pairwise_i16x8(i16x8_extmul_low_i8x16(wv, a));
            let hi = i32x4_extadd_pairwise_i16x8(i16x8_extmul_high_i8x16(wv, a));
            *acc = i32x4_add(*acc, i32x4_add(lo, hi));
        }
    }
    for t in 0..T {
        out[t] += lanes_sum(acc[t]);
    }
    scalar::int8_row_dots(w, vectors * 16, q, stride, T, out);
}
