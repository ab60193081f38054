//! x86-64 AVX2 path: `vpmaddubsw` multiplies the unsigned 2-bit codes (trit + 1) by signed int8 activations
//! into i16 pairs, which accumulate in i16 for up to 8 chunks before `vpmaddwd` widens them to i32.

use std::arch::x86_64::*;

use super::acts::CHUNK;
use super::scalar;
use crate::reference::TernaryShape;

/// Bytes ahead of the current chunk to prefetch (rows are contiguous, so this runs into the next rows).
const PREFETCH: usize = 1024;

/// Chunks an i16 accumulator takes before widening, with `S` accumulators per token: each `vpmaddubsw` adds at
/// most 2 · 2 · 128 = 512 to a lane, and a chunk does `4 / S` of them per accumulator.
const fn chunks_per_i16(s: usize) -> usize {
    32767 / (512 * 4 / s)
}

/// See [`scalar::ternary_row_dots`]; the whole row, `tokens` in 1..=4.
///
/// # Safety
/// The CPU supports AVX2; blocks are one per row or a multiple of [`CHUNK`] columns; `q` holds `tokens`
/// permuted rows of `stride ≥ row.len() · 4` rounded up to whole chunks.
#[target_feature(enable = "avx2")]
pub(crate) unsafe fn ternary_row_dots(
    row: &[u8],
    q: &[i8],
    stride: usize,
    tokens: usize,
    shape: TernaryShape,
    out: &mut [i32],
) {
    match tokens {
        1 => ternary_dots::<1, 4>(row, q, stride, shape, out),
        2 => ternary_dots::<2, 2>(row, q, stride, shape, out),
        3 => ternary_dots::<3, 1>(row, q, stride, shape, out),
        4 => ternary_dots::<4, 1>(row, q, stride, shape, out),
        _ => unreachable!("token tiles are 1..=4"),
    }
}

/// `T` tokens, `S` independent i16 accumulators per token (so a tile of one token is not bound by the
/// latency of one chain of adds).
#[target_feature(enable = "avx2")]
#[inline]
unsafe fn ternary_dots<const T: usize, const S: usize>(
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
    let mask = _mm256_set1_epi8(3);
    let ones = _mm256_set1_epi16(1);
    let zero = _mm256_setzero_si256();
    let (wp, qp) = (row.as_ptr(), q.as_ptr());
    let mut c = 0;
    for b in 0..nb {
        let block_end = (c + block_chunks).min(chunks);
        let mut acc32 = [zero; T];
        while c < block_end {
            let run_end = (c + chunks_per_i16(S)).min(block_end);
            let mut acc16 = [[zero; S]; T];
            for c in c..run_end {
                _mm_prefetch::<_MM_HINT_T0>(wp.add(c * 32 + PREFETCH) as *const i8);
                let w = _mm256_loadu_si256(wp.add(c * 32) as *const __m256i);
                let codes = [
                    _mm256_and_si256(w, mask),
                    _mm256_and_si256(_mm256_srli_epi16::<2>(w), mask),
                    _mm256_and_si256(_mm256_srli_epi16::<4>(w), mask),
                    _mm256_and_si256(_mm256_srli_epi16::<6>(w), mask),
                ];
                for (s, &code) in codes.iter().enumerate() {
                    for (t, acc) in acc16.iter_mut().enumerate() {
                        let a = _mm256_loadu_si256(
                            qp.add(t * stride + c * CHUNK + s * 32) as *const __m256i
                        );
                        acc[s % S] = _mm256_add_epi16(acc[s % S], _mm256_maddubs_epi16(code, a));
                    }
                }
            }
            for t in 0..T {
                for &acc in &acc16[t] {
                    acc32[t] = _mm256_add_epi32(acc32[t], _mm256_madd_epi16(acc, ones));
                }
            }
            c = run_end;
        }
        for (t, &acc) in acc32.iter().enumerate() {
            out[t * nb + b] += hsum(acc);
        }
    }
    scalar::ternary_row_dots(row, chunks * 32, q, stride, T, shape, out);
}

/// See [`scalar::int8_row_dots`]; the whole row, `tokens` in 1..=4. `vpsignb` moves the sign of each
/// activation onto the weight so `vpmaddubsw` can take |activation| as its unsigned operand.
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
    match tokens {
        1 => int8_dots::<1>(w, q, stride, out),
        2 => int8_dots::<2>(w, q, stride, out),
        3 => int8_dots::<3>(w, q, stride, out),
        4 => int8_dots::<4>(w, q, stride, out),
        _ => unreachable!("token tiles are 1..=4"),
    }
}

#[target_feature(enable = "avx2")]
#[inline]
unsafe fn int8_dots<const T: usize>(w: &[i8], q: &[i8], stride: usize, out: &mut [i32]) {
    let ones = _mm256_set1_epi16(1);
    let mut acc = [_mm256_setzero_si256(); T];
    let vectors = w.len() / 32;
    let (wp, qp) = (w.as_ptr(), q.as_ptr());
    for v in 0..vectors {
        let wv = _mm256_loadu_si256(wp.add(v * 32) as *const __m256i);
        for t in 0..T {
            let a = _mm256_loadu_si256(qp.add(t * stride + v * 32) as *const __m256i);
            let pairs = _mm256_maddubs_epi16(_mm256_abs_epi8(a), _mm256_sign_epi8(wv, a));
            acc[t] = _mm256_add_epi32(acc[t], _mm256_madd_epi16(pairs, ones));
        }
    }
    for t in 0..T {
        out[t] += hsum(acc[t]);
    }
    scalar::int8_row_dots(w, vectors * 32, q, stride, T, out);
}

#[target_feature(enable = "avx2")]
#[inline]
unsafe fn hsum(v: __m256i) -> i32 {
    let s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256::<1>(v));
    let s = _mm_add_epi32(s, _mm_shuffle_epi32::<0b01_00_11_10>(s));
    let s = _mm_add_epi32(s, _mm_shuffle_epi32::<0b10_11_00_01>(s));
    _mm_cvtsi128_si32(s)
}
