//! x86-64 AVX-512 VNNI path: one 64-byte load of packed words holds 256 trits, shifted by `2s` and masked into
//! the unsigned codes (trit + 1) of 64 columns, and `vpdpbusd` multiplies them by 64 signed int8 activations
//! and adds each group of four products into an i32 lane in one instruction (no i16 stage to widen, so no
//! overflow bound). Tiles of 4 rows × 1..=4 tokens share both the activation loads (across rows) and the
//! unpacking (across tokens), and give 4-16 independent accumulator chains.

use std::arch::x86_64::*;

use super::scalar;
use super::ternary::{prefetch_distance, ActTile};
use crate::reference::TernaryShape;

/// Columns per 64-byte load of packed words (see [`super::Isa::chunk`]).
const CHUNK: usize = 256;
/// Rows of a tile.
const ROWS: usize = 4;

/// See [`super::ternary::ternary_tile_dots`]: `rows` packed rows (`row_bytes` apart) × `tokens` activations
/// permuted in [`CHUNK`]-column chunks, cut into tiles of 4 rows (and a ragged last tile) × all the tokens.
///
/// # Safety
/// The CPU supports AVX-512 F, BW and VNNI; `tokens` is 1..=4; blocks are one per row or a multiple of
/// [`CHUNK`] columns; `q` holds `tokens` rows of `stride` bytes permuted in [`CHUNK`]-column chunks, spanning
/// every chunk of a row; `out` holds every row's dots.
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
pub(crate) unsafe fn ternary_tile_dots(
    rows: &[u8],
    row_bytes: usize,
    q: &[i8],
    stride: usize,
    tokens: usize,
    shape: TernaryShape,
    out: &mut [i32],
) {
    let tiles = Tiles {
        rows,
        row_bytes,
        q,
        stride,
        shape,
    };
    match tokens {
        1 => tiles.all::<1>(out),
        2 => tiles.all::<2>(out),
        3 => tiles.all::<3>(out),
        4 => tiles.all::<4>(out),
        other => unreachable!("{other} tokens"),
    }
}

/// The operands of a block of rows.
struct Tiles<'a> {
    rows: &'a [u8],
    row_bytes: usize,
    q: &'a [i8],
    stride: usize,
    shape: TernaryShape,
}

impl Tiles<'_> {
    /// Every row, `T` tokens: whole tiles of [`ROWS`] rows, then the ragged rest.
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    #[inline]
    unsafe fn all<const T: usize>(&self, out: &mut [i32]) {
        let n_rows = self.rows.len() / self.row_bytes;
        let whole = n_rows - n_rows % ROWS;
        for r0 in (0..whole).step_by(ROWS) {
            self.tile::<ROWS, T>(r0, out);
        }
        match n_rows - whole {
            0 => {}
            1 => self.tile::<1, T>(whole, out),
            2 => self.tile::<2, T>(whole, out),
            _ => self.tile::<3, T>(whole, out),
        }
    }

    /// Rows `r0..r0 + R` × `T` tokens: the shift-free decode tile for one token, the shared-unpacking tile for
    /// more.
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    #[inline]
    unsafe fn tile<const R: usize, const T: usize>(&self, r0: usize, out: &mut [i32]) {
        if T == 1 {
            self.gemv_dots::<R>(r0, out)
        } else {
            self.dots::<R, T>(r0, out)
        }
    }

    /// Rows `r0..r0 + R` × one token. Decode is bound by `vpdpbusd` once the weights are in cache, so the
    /// unpacking here is one AND per slice instead of a shift and an AND: slice `s` is masked in place
    /// (`w & 3 << 2s`, the codes times `4^s`) into its own accumulator, which is a multiple of `4^s` and is
    /// shifted back exactly at the end. Codes are at most 2, so `2 · 64` still fits the unsigned byte.
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    #[inline]
    unsafe fn gemv_dots<const R: usize>(&self, r0: usize, out: &mut [i32]) {
        let Self {
            rows,
            row_bytes,
            q,
            shape,
            ..
        } = *self;
        let nb = shape.blocks();
        let chunks = row_bytes / 64;
        let block_chunks = if nb == 1 { chunks } else { shape.block / CHUNK };
        let masks = [3u8, 3 << 2, 3 << 4, 3 << 6].map(|m| _mm512_set1_epi8(m as i8));
        let (wp, qp) = (rows.as_ptr().add(r0 * row_bytes), q.as_ptr());
        let ahead = prefetch_distance(R, row_bytes);
        let mut c = 0;
        for b in 0..nb {
            let block_end = (c + block_chunks).min(chunks);
            let mut acc = [[_mm512_setzero_si512(); 4]; R];
            for c in c..block_end {
                let w = self.load_prefetching::<R>(wp, c, ahead);
                for (s, &mask) in masks.iter().enumerate() {
                    let a = _mm512_loadu_si512(qp.add(c * CHUNK + s * 64).cast());
                    for (acc, &w) in acc.iter_mut().zip(&w) {
                        acc[s] = _mm512_dpbusd_epi32(acc[s], _mm512_and_si512(w, mask), a);
                    }
                }
            }
            for (r, [a0, a1, a2, a3]) in acc.into_iter().enumerate() {
                let sum = _mm512_add_epi32(
                    _mm512_add_epi32(a0, _mm512_srai_epi32::<2>(a1)),
                    _mm512_add_epi32(_mm512_srai_epi32::<4>(a2), _mm512_srai_epi32::<6>(a3)),
                );
                out[(r0 + r) * nb + b] += _mm512_reduce_add_epi32(sum);
            }
            c = block_end;
        }
        self.tail::<R, 1>(r0, out);
    }

    /// Chunk `c` of each of the `R` rows from `wp`, prefetching the line `ahead` bytes past each in address
    /// order ([`prefetch_distance`]; a hint, so running past the matrix is harmless).
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    #[inline]
    unsafe fn load_prefetching<const R: usize>(
        &self,
        wp: *const u8,
        c: usize,
        ahead: usize,
    ) -> [__m512i; R] {
        let mut w = [_mm512_setzero_si512(); R];
        for (r, w) in w.iter_mut().enumerate() {
            _mm_prefetch::<_MM_HINT_T0>(wp.wrapping_add(ahead + (c * R + r) * 64).cast());
            *w = _mm512_loadu_si512(wp.add(r * self.row_bytes + c * 64).cast());
        }
        w
    }

    /// The ragged tail of rows `r0..r0 + R` (past their whole chunks) × `T` tokens, on the portable path.
    fn tail<const R: usize, const T: usize>(&self, r0: usize, out: &mut [i32]) {
        let (rows, row_bytes, shape) = (self.rows, self.row_bytes, self.shape);
        let nb = shape.blocks();
        let acts = ActTile {
            q: self.q,
            stride: self.stride,
            tokens: T,
            chunk: CHUNK,
        };
        scalar::ternary_rows_dots(
            &rows[r0 * row_bytes..(r0 + R) * row_bytes],
            row_bytes,
            row_bytes / 64 * 64,
            acts,
            shape,
            &mut out[r0 * nb..],
            rows.len() / row_bytes * nb,
        );
    }

    /// Rows `r0..r0 + R` × `T` tokens into `out[t · rows · blocks + r · blocks + b]`, the whole chunks here
    /// and the ragged tail of each row on the portable path.
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    #[inline]
    unsafe fn dots<const R: usize, const T: usize>(&self, r0: usize, out: &mut [i32]) {
        let Self {
            rows,
            row_bytes,
            q,
            stride,
            shape,
        } = *self;
        let (nb, n_rows) = (shape.blocks(), rows.len() / row_bytes);
        let out_stride = n_rows * nb;
        let chunks = row_bytes / 64;
        let block_chunks = if nb == 1 { chunks } else { shape.block / CHUNK };
        let mask = _mm512_set1_epi8(3);
        let (wp, qp) = (rows.as_ptr().add(r0 * row_bytes), q.as_ptr());
        let ahead = prefetch_distance(R, row_bytes);
        let mut c = 0;
        for b in 0..nb {
            let block_end = (c + block_chunks).min(chunks);
            let mut acc = [[_mm512_setzero_si512(); T]; R];
            for c in c..block_end {
                let w = self.load_prefetching::<R>(wp, c, ahead);
                for s in 0..4 {
                    let mut a = [_mm512_setzero_si512(); T];
                    for (t, a) in a.iter_mut().enumerate() {
                        *a = _mm512_loadu_si512(qp.add(t * stride + c * CHUNK + s * 64).cast());
                    }
                    for (r, acc) in acc.iter_mut().enumerate() {
                        let shifted = match s {
                            0 => w[r],
                            1 => _mm512_srli_epi16::<2>(w[r]),
                            2 => _mm512_srli_epi16::<4>(w[r]),
                            _ => _mm512_srli_epi16::<6>(w[r]),
                        };
                        let codes = _mm512_and_si512(shifted, mask);
                        for (acc, &a) in acc.iter_mut().zip(&a) {
                            *acc = _mm512_dpbusd_epi32(*acc, codes, a);
                        }
                    }
                }
            }
            for (r, acc) in acc.iter().enumerate() {
                for (t, &acc) in acc.iter().enumerate() {
                    out[t * out_stride + (r0 + r) * nb + b] += _mm512_reduce_add_epi32(acc);
                }
            }
            c = block_end;
        }
        self.tail::<R, T>(r0, out);
    }
}

/// See [`scalar::int8_row_dots`]; the whole row, `tokens` in 1..=8, with `sums[t]` = Σ of token `t`'s values.
/// `vpdpbusd` multiplies unsigned by signed bytes, so each weight vector is offset once to `w + 128` (a flip of
/// its sign bit, exact for every int8) and shared by the tokens, whose dot products are then one instruction
/// per 64 columns (the sign-moving form took five); `128 · Σ q` comes off at the end. The ragged end of the row
/// is a masked load of both operands (zeros contribute nothing). The row's lines are prefetched
/// [`prefetch_distance`] ahead, as in the ternary kernels: 1.8× on 8 tokens with it.
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
pub(crate) unsafe fn int8_row_dots(
    w: &[i8],
    q: &[i8],
    stride: usize,
    sums: &[i32],
    tokens: usize,
    out: &mut [i32],
) {
    match tokens {
        1 => int8_dots::<1>(w, q, stride, sums, out),
        2 => int8_dots::<2>(w, q, stride, sums, out),
        3 => int8_dots::<3>(w, q, stride, sums, out),
        4 => int8_dots::<4>(w, q, stride, sums, out),
        5 => int8_dots::<5>(w, q, stride, sums, out),
        6 => int8_dots::<6>(w, q, stride, sums, out),
        7 => int8_dots::<7>(w, q, stride, sums, out),
        8 => int8_dots::<8>(w, q, stride, sums, out),
        other => unreachable!("{other} tokens: the head's passes take 1..=8"),
    }
}

#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
#[inline]
unsafe fn int8_dots<const T: usize>(
    w: &[i8],
    q: &[i8],
    stride: usize,
    sums: &[i32],
    out: &mut [i32],
) {
    let offset = _mm512_set1_epi8(i8::MIN);
    let mut acc = [_mm512_setzero_si512(); T];
    let (whole, rest) = (w.len() / 64, w.len() % 64);
    let (wp, qp, ahead) = (w.as_ptr(), q.as_ptr(), prefetch_distance(1, w.len()));
    for v in 0..whole {
        _mm_prefetch::<_MM_HINT_T0>(wp.wrapping_add(ahead + v * 64).cast());
        let wu = _mm512_xor_si512(_mm512_loadu_si512(wp.add(v * 64).cast()), offset);
        for (t, acc) in acc.iter_mut().enumerate() {
            let a = _mm512_loadu_si512(qp.add(t * stride + v * 64).cast());
            *acc = _mm512_dpbusd_epi32(*acc, wu, a);
        }
    }
    if rest > 0 {
        let mask: __mmask64 = (1 << rest) - 1;
        let at = whole * 64;
        let wu = _mm512_xor_si512(_mm512_maskz_loadu_epi8(mask, wp.add(at)), offset);
        for (t, acc) in acc.iter_mut().enumerate() {
            let a = _mm512_maskz_loadu_epi8(mask, qp.add(t * stride + at));
            *acc = _mm512_dpbusd_epi32(*acc, wu, a);
        }
    }
    for t in 0..T {
        out[t] += _mm512_reduce_add_epi32(acc[t]) - 128 * sums[t];
    }
}
