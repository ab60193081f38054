//! x86-64 AVX2 path: `vpmaddubsw` multiplies the unsigned 2-bit codes (trit + 1) by signed int8 activations
//! into i16 pairs, which accumulate in i16 for up to 15 chunks before `vpmaddwd` widens them to i32. Tiles of
//! several rows (decode) share the activation loads; tiles of several tokens (prefill) share the unpacking.

use std::arch::x86_64::*;

use super::acts::CHUNK;
use super::scalar;
use super::ternary::{prefetch_distance, RowTile};
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
    let all = RowTile::new(rows, row_bytes, q, stride, shape);
    if tokens == 1 {
        let whole = n_rows - n_rows % 4;
        for r0 in (0..whole).step_by(4) {
            all.rows(r0, r0 + 4).dots::<4, 1, 1>(&mut out[r0 * nb..]);
        }
        let rest = &mut out[whole * nb..];
        match n_rows - whole {
            0 => {}
            1 => all.rows(whole, n_rows).dots::<1, 1, 4>(rest),
            2 => all.rows(whole, n_rows).dots::<2, 1, 2>(rest),
            _ => all.rows(whole, n_rows).dots::<3, 1, 1>(rest),
        }
        return;
    }
    for r in 0..n_rows {
        let out = &mut out[r * nb..];
        match tokens {
            2 => all.rows(r, r + 1).dots::<1, 2, 2>(out),
            3 => all.rows(r, r + 1).dots::<1, 3, 1>(out),
            4 => all.rows(r, r + 1).dots::<1, 4, 1>(out),
            other => unreachable!("{other} tokens"),
        }
    }
}

impl RowTile<'_> {
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
        self.tail(T, out);
    }
}

/// Rows of the int8 head's tile for `tokens` tokens (see [`super::int8`]'s `head_rows`): 2 for 1 and 2 tokens
/// (the 2B-4T head, 2 threads, `BITNET_ISA=avx2` on an Emerald Rapids core, medians of 7 alternating runs: 1 token
/// 10.6 → 10.2 ms, 2 tokens 10.4 → 9.7), 1 for more (registers: each token's activations and their magnitudes).
pub(crate) fn head_rows(tokens: usize) -> usize {
    if tokens <= 2 {
        2
    } else {
        1
    }
}

/// See [`scalar::int8_row_dots`]; `rows` (1 or [`head_rows`]) whole rows `row_bytes` apart from `w` on,
/// `tokens` in 1..=4; row `r`'s dots go to `out[r · tokens..]`. `vpsignb` moves the sign of each activation
/// onto the weight so `vpmaddubsw` can take |activation| as its unsigned operand. The rows' lines are
/// prefetched [`prefetch_distance`] ahead as in the VNNI heads: without it the head read 19 GB/s where the
/// AVX-512 one reads ~29 (`BITNET_ISA=avx2` on an Emerald Rapids core, 2 threads: decode 23.2 → 27.2 tok/s,
/// 4 streams 54.1 → 60.8, medians of 4 alternating pairs).
///
/// # Safety
/// The CPU supports AVX2; weights lie in [-127, 127]; `w` holds `rows` rows of `k` bytes `row_bytes` apart;
/// `q` holds `tokens` rows of `stride ≥ k` bytes; `out` holds `rows · tokens` values.
#[target_feature(enable = "avx2")]
pub(crate) unsafe fn int8_row_dots(
    (w, row_bytes, rows, k): (&[i8], usize, usize, usize),
    q: &[i8],
    stride: usize,
    tokens: usize,
    out: &mut [i32],
) {
    let at = (w, row_bytes, k, q, stride, out);
    match (rows, tokens) {
        (2, 1) => int8_dots::<2, 1>(at),
        (2, 2) => int8_dots::<2, 2>(at),
        (1, 1) => int8_dots::<1, 1>(at),
        (1, 2) => int8_dots::<1, 2>(at),
        (1, 3) => int8_dots::<1, 3>(at),
        (1, 4) => int8_dots::<1, 4>(at),
        other => unreachable!("{other:?} rows and tokens"),
    }
}

#[target_feature(enable = "avx2")]
#[inline]
unsafe fn int8_dots<const R: usize, const T: usize>(
    (w, row_bytes, k, q, stride, out): (&[i8], usize, usize, &[i8], usize, &mut [i32]),
) {
    let ones = _mm256_set1_epi16(1);
    let mut acc = [[_mm256_setzero_si256(); T]; R];
    let vectors = k / 32;
    let (wp, qp) = (w.as_ptr(), q.as_ptr());
    let ahead = prefetch_distance(R, row_bytes);
    for v in 0..vectors {
        let mut wv = [_mm256_setzero_si256(); R];
        for (r, wv) in wv.iter_mut().enumerate() {
            let at = r * row_bytes + v * 32;
            _mm_prefetch::<_MM_HINT_T0>(wp.wrapping_add(ahead + at));
            *wv = _mm256_loadu_si256(wp.add(at) as *const __m256i);
        }
        for t in 0..T {
            let a = _mm256_loadu_si256(qp.add(t * stride + v * 32) as *const __m256i);
            let magnitude = _mm256_abs_epi8(a);
            for (acc, &wv) in acc.iter_mut().zip(&wv) {
                let pairs = _mm256_maddubs_epi16(magnitude, _mm256_sign_epi8(wv, a));
                acc[t] = _mm256_add_epi32(acc[t], _mm256_madd_epi16(pairs, ones));
            }
        }
    }
    for (r, acc) in acc.iter().enumerate() {
        let out = &mut out[r * T..(r + 1) * T];
        for (o, &acc) in out.iter_mut().zip(acc) {
            *o = hsum(acc);
        }
        scalar::int8_row_dots(
            &w[r * row_bytes..r * row_bytes + k],
            vectors * 32,
            q,
            stride,
            T,
            out,
        );
    }
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
