//! x86-64 AVX2 path: `vpmaddubsw` multiplies the unsigned 2-bit codes (trit + 1) by signed int8 activations
//! into i16 pairs, which accumulate in i16 for up to 15 chunks before `vpmaddwd` widens them to i32. Tiles of
//! several rows (decode) share the activation loads; tiles of several tokens (prefill) share the unpacking.

use std::arch::x86_64::*;

use super::acts::CHUNK;
use super::scalar;
use super::ternary::{prefetch_distance, ActTile};
use crate::reference::TernaryShape;

/// Chunks an i16 accumulator takes before widening, with `S` accumulators per (row, token): each `vpmaddubsw`
/// adds at most 2 · 2 · 128 = 512 to a lane, and a chunk does `4 / S` of them per accumulator.
const fn chunks_per_i16(s: usize) -> usize {
    32767 / (512 * 4 / s)
}

/// See [`super::ternary::ternary_tile_dots`]: `rows` packed rows (`row_bytes` apart) × `tokens`, cut into
/// tiles of 4 rows × 1 token (decode) or 1 row × `tokens` (prefill) inside this one call, so the dispatch is
/// paid once per block of rows rather than once per tile.
///
/// # Safety
/// The CPU supports AVX2; `tokens` is 1..=4; blocks are one per row or a multiple of [`CHUNK`] columns; `q`
/// holds `tokens` permuted rows of `stride` bytes spanning every chunk of a row; `out` holds every row's dots.
#[target_feature(enable = "avx2")]
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
            tile(r0, r0 + 4).dots::<4, 1, 1>(&mut out[r0 * nb..]);
        }
        let rest = &mut out[whole * nb..];
        match n_rows - whole {
            0 => {}
            1 => tile(whole, n_rows).dots::<1, 1, 4>(rest),
            2 => tile(whole, n_rows).dots::<2, 1, 2>(rest),
            _ => tile(whole, n_rows).dots::<3, 1, 1>(rest),
        }
        return;
    }
    for r in 0..n_rows {
        let out = &mut out[r * nb..];
        match tokens {
            2 => tile(r, r + 1).dots::<1, 2, 2>(out),
            3 => tile(r, r + 1).dots::<1, 3, 1>(out),
            4 => tile(r, r + 1).dots::<1, 4, 1>(out),
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
    /// `R` rows × `T` tokens, `S` independent i16 accumulators per (row, token) so small tiles are not bound
    /// by the latency of one chain of adds; `out[t · out_stride + r · blocks + b]`.
    #[target_feature(enable = "avx2")]
    #[inline]
    unsafe fn dots<const R: usize, const T: usize, const S: usize>(&self, out: &mut [i32]) {
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
        let mask = _mm256_set1_epi8(3);
        let ones = _mm256_set1_epi16(1);
        let zero = _mm256_setzero_si256();
        let (wp, qp) = (rows.as_ptr(), q.as_ptr());
        let ahead = prefetch_distance(R, row_bytes);
        let mut c = 0;
        for b in 0..nb {
            let block_end = (c + block_chunks).min(chunks);
            let mut acc32 = [[zero; T]; R];
            while c < block_end {
                let run_end = (c + chunks_per_i16(S)).min(block_end);
                let mut acc16 = [[[zero; S]; T]; R];
                for c in c..run_end {
                    for (r, acc) in acc16.iter_mut().enumerate() {
                        let wr = wp.add(r * row_bytes + c * 32);
                        // In address order at the rate the tile is read (a hint: past the matrix is harmless).
                        let next = wp.wrapping_add(ahead + (c * R + r) * 32);
                        _mm_prefetch::<_MM_HINT_T0>(next as *const i8);
                        let w = _mm256_loadu_si256(wr as *const __m256i);
                        let codes = [
                            _mm256_and_si256(w, mask),
                            _mm256_and_si256(_mm256_srli_epi16::<2>(w), mask),
                            _mm256_and_si256(_mm256_srli_epi16::<4>(w), mask),
                            _mm256_and_si256(_mm256_srli_epi16::<6>(w), mask),
                        ];
                        for (s, &code) in codes.iter().enumerate() {
                            for (t, acc) in acc.iter_mut().enumerate() {
                                let a = _mm256_loadu_si256(
                                    qp.add(t * stride + c * CHUNK + s * 32) as *const __m256i
                                );
                                acc[s % S] =
                                    _mm256_add_epi16(acc[s % S], _mm256_maddubs_epi16(code, a));
                            }
                        }
                    }
                }
                for r in 0..R {
                    for t in 0..T {
                        for &acc in &acc16[r][t] {
                            acc32[r][t] =
                                _mm256_add_epi32(acc32[r][t], _mm256_madd_epi16(acc, ones));
                        }
                    }
                }
                c = run_end;
            }
            for (r, acc) in acc32.iter().enumerate() {
                for (t, &acc) in acc.iter().enumerate() {
                    out[t * out_stride + r * nb + b] += hsum(acc);
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

/// See [`scalar::int8_row_dots`]; the whole row, `tokens` in 1..=4. `vpsignb` moves the sign of each
/// activation onto the weight so `vpmaddubsw` can take |activation| as its unsigned operand. The row's lines are
/// prefetched [`prefetch_distance`] ahead as in the VNNI heads: without it the head read 19 GB/s where the
/// AVX-512 one reads ~29 (`BITNET_ISA=avx2` on an Emerald Rapids core, 2 threads: decode 23.2 → 27.2 tok/s,
/// 4 streams 54.1 → 60.8, medians of 4 alternating pairs).
///
/// # Safety
/// The CPU supports AVX2; weights lie in [-127, 127]; `q` holds `tokens` rows of `stride ≥ w.len()` bytes.
#[target_feature(enable = "avx2")]
pub(crate) unsafe fn int8_row_dots(
    w: &[i8],
    q: &[i8],
    stride: usize,
    tokens: usize,
    out: &mut [i32],
) {
    token_tile!(int8_dots(tokens; w, q, stride, out))
}

#[target_feature(enable = "avx2")]
#[inline]
unsafe fn int8_dots<const T: usize>(w: &[i8], q: &[i8], stride: usize, out: &mut [i32]) {
    let ones = _mm256_set1_epi16(1);
    let mut acc = [_mm256_setzero_si256(); T];
    let vectors = w.len() / 32;
    let (wp, qp) = (w.as_ptr(), q.as_ptr());
    let ahead = prefetch_distance(1, w.len());
    for v in 0..vectors {
        _mm_prefetch::<_MM_HINT_T0>(wp.wrapping_add(ahead + v * 32));
        let wv = _mm256_loadu_si256(wp.add(v * 32) as *const __m256i);
        for (t, acc) in acc.iter_mut().enumerate() {
            let a = _mm256_loadu_si256(qp.add(t * stride + v * 32) as *const __m256i);
            let pairs = _mm256_maddubs_epi16(_mm256_abs_epi8(a), _mm256_sign_epi8(wv, a));
            *acc = _mm256_add_epi32(*acc, _mm256_madd_epi16(pairs, ones));
        }
    }
    for t in 0..T {
        out[t] += hsum(acc[t]);
    }
    scalar::int8_row_dots(w, vectors * 32, q, stride, T, out);
}

/// The sum of the eight i32 lanes.
#[target_feature(enable = "avx2")]
#[inline]
pub(crate) unsafe fn hsum(v: __m256i) -> i32 {
    let s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256::<1>(v));
    let s = _mm_add_epi32(s, _mm_shuffle_epi32::<0b01_00_11_10>(s));
    let s = _mm_add_epi32(s, _mm_shuffle_epi32::<0b10_11_00_01>(s));
    _mm_cvtsi128_si32(s)
}
