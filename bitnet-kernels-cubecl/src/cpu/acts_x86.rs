//! One whole chunk of a token quantized to int8 and permuted ([`super::acts::permuted`]) in x86 SIMD registers:
//! 256 columns with AVX-512 BW (the AVX-512 chunk), 128 with AVX2 (the AVX2 and AVX-VNNI chunk). The portable
//! loop scattered the bytes one at a time: 2.5% of a 2-thread decode step, on the main thread while the other
//! waited. Results equal [`crate::reference::quantize_i8`] for every input, NaN included (quantized to 0).
//!
//! The permutation is a transpose: byte `b` of the packed weights holds columns `4b..4b + 4`, and slice `s` of
//! the kernels' loads wants column `4b + s` at byte `b`. Quantized in column order, each 16-byte lane holds four
//! such words; a byte shuffle moves byte `s` of the four words into dword `s` of the lane, then a dword
//! transpose across the chunk's vectors gathers each slice's dwords in order.

use std::arch::x86_64::*;

use crate::reference::absmax;

/// Byte shuffle within each 16-byte lane: byte `s` of word `i` to byte `4s + i`.
const LANE_TRANSPOSE: [i8; 16] = [0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15];

/// `cols` (256 floats) times `s`, clamped, rounded half to even into `out` (256 bytes) permuted in 256-column
/// chunks; returns the sum of the quantized values.
///
/// # Safety
/// The CPU has AVX-512 F and BW; `cols` and `out` hold 256 elements.
#[target_feature(enable = "avx512f,avx512bw")]
pub(super) unsafe fn quantize_chunk_256(cols: &[f32], s: f32, out: &mut [i8]) -> i32 {
    assert!(cols.len() == 256 && out.len() == 256);
    let (scale, lo, hi) = (
        _mm512_set1_ps(s),
        _mm512_set1_ps(-128.0),
        _mm512_set1_ps(127.0),
    );
    let lane = _mm512_broadcast_i32x4(_mm_loadu_si128(LANE_TRANSPOSE.as_ptr().cast()));
    let mut sum = _mm512_setzero_si512();
    // plain[j]: columns 64j..64j + 64, each lane's words transposed.
    let mut plain = [_mm512_setzero_si512(); 4];
    for (j, plain) in plain.iter_mut().enumerate() {
        let mut v = _mm512_setzero_si512();
        for i in 0..4 {
            let x = _mm512_mul_ps(_mm512_loadu_ps(cols.as_ptr().add(64 * j + 16 * i)), scale);
            let x = _mm512_maskz_mov_ps(_mm512_cmp_ps_mask::<_CMP_ORD_Q>(x, x), x);
            let q = _mm512_cvtps_epi32(_mm512_max_ps(_mm512_min_ps(x, hi), lo));
            sum = _mm512_add_epi32(sum, q);
            v = insert_128(v, _mm512_cvtsepi32_epi8(q), i);
        }
        *plain = _mm512_shuffle_epi8(v, lane);
    }
    // Slice s: dword 4j + L is dword 4L + s of plain[j]; the low half from plain[0..2], the high from [2..4].
    for s in 0..4 {
        let mut idx = [0i32; 16];
        for (d, idx) in idx.iter_mut().enumerate() {
            let (j, l) = (d / 4 % 2, d % 4);
            *idx = (16 * j + 4 * l + s) as i32;
        }
        let idx = _mm512_loadu_si512(idx.as_ptr().cast());
        let low = _mm512_permutex2var_epi32(plain[0], idx, plain[1]);
        let high = _mm512_permutex2var_epi32(plain[2], idx, plain[3]);
        let slice = _mm512_mask_blend_epi32(0xFF00, low, high);
        _mm512_storeu_si512(out.as_mut_ptr().add(64 * s).cast(), slice);
    }
    _mm512_reduce_add_epi32(sum)
}

/// `v` with its 16-byte lane `i` replaced by `x`.
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn insert_128(v: __m512i, x: __m128i, i: usize) -> __m512i {
    match i {
        0 => _mm512_inserti32x4::<0>(v, x),
        1 => _mm512_inserti32x4::<1>(v, x),
        2 => _mm512_inserti32x4::<2>(v, x),
        _ => _mm512_inserti32x4::<3>(v, x),
    }
}

/// [`quantize_chunk_256`] for 128 columns permuted in 128-column chunks, on AVX2.
///
/// # Safety
/// The CPU has AVX2; `cols` and `out` hold 128 elements.
#[target_feature(enable = "avx2")]
pub(super) unsafe fn quantize_chunk_128(cols: &[f32], s: f32, out: &mut [i8]) -> i32 {
    assert!(cols.len() == 128 && out.len() == 128);
    let (scale, lo, hi) = (
        _mm256_set1_ps(s),
        _mm256_set1_ps(-128.0),
        _mm256_set1_ps(127.0),
    );
    let lane = _mm256_broadcastsi128_si256(_mm_loadu_si128(LANE_TRANSPOSE.as_ptr().cast()));
    // packs_epi32 then packs_epi16 interleave the 4-value groups of their lanes: dword order 0,4,1,5,...
    let unpack = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    let mut sum = _mm256_setzero_si256();
    // plain[j]: columns 32j..32j + 32, each lane's words transposed.
    let mut plain = [_mm256_setzero_si256(); 4];
    for (j, plain) in plain.iter_mut().enumerate() {
        let mut v = [_mm256_setzero_si256(); 4];
        for (i, v) in v.iter_mut().enumerate() {
            let x = _mm256_mul_ps(_mm256_loadu_ps(cols.as_ptr().add(32 * j + 8 * i)), scale);
            let x = _mm256_and_ps(x, _mm256_cmp_ps::<_CMP_ORD_Q>(x, x));
            *v = _mm256_cvtps_epi32(_mm256_max_ps(_mm256_min_ps(x, hi), lo));
            sum = _mm256_add_epi32(sum, *v);
        }
        let words = _mm256_packs_epi16(
            _mm256_packs_epi32(v[0], v[1]),
            _mm256_packs_epi32(v[2], v[3]),
        );
        *plain = _mm256_shuffle_epi8(_mm256_permutevar8x32_epi32(words, unpack), lane);
    }
    // Per lane, a 4 × 4 dword transpose across plain[0..4] gives slice s lane L = dword s of each plain[j];
    // the slice wants j-major order (dword 2j + L), one dword permutation away.
    let (t0, t1) = (
        _mm256_unpacklo_epi32(plain[0], plain[1]),
        _mm256_unpackhi_epi32(plain[0], plain[1]),
    );
    let (t2, t3) = (
        _mm256_unpacklo_epi32(plain[2], plain[3]),
        _mm256_unpackhi_epi32(plain[2], plain[3]),
    );
    let slices = [
        _mm256_unpacklo_epi64(t0, t2),
        _mm256_unpackhi_epi64(t0, t2),
        _mm256_unpacklo_epi64(t1, t3),
        _mm256_unpackhi_epi64(t1, t3),
    ];
    for (s, slice) in slices.into_iter().enumerate() {
        let slice = _mm256_permutevar8x32_epi32(slice, unpack);
        _mm256_storeu_si256(out.as_mut_ptr().add(32 * s).cast(), slice);
    }
    let sum = _mm_add_epi32(
        _mm256_castsi256_si128(sum),
        _mm256_extracti128_si256::<1>(sum),
    );
    let sum = _mm_add_epi32(sum, _mm_shuffle_epi32::<0b01_00_11_10>(sum));
    _mm_cvtsi128_si32(_mm_add_epi32(sum, _mm_shuffle_epi32::<0b10_11_00_01>(sum)))
}

/// [`absmax`] on AVX2: `vmaxps` returns its second operand where either is NaN, so with the running maximum
/// second a NaN leaves it as it was, as [`f32::max`] does; the same float (a maximum does not depend on the
/// order). The baseline build's SSE2 loop was 2.6% of a 512-token prompt's samples.
///
/// # Safety
/// The CPU has AVX2.
#[target_feature(enable = "avx2")]
pub(super) unsafe fn absmax_avx2(row: &[f32]) -> f32 {
    let magnitude = _mm256_castsi256_ps(_mm256_set1_epi32(i32::MAX));
    // four independent chains of maxima
    let mut m = [_mm256_setzero_ps(); 4];
    let chunks = row.chunks_exact(32);
    let tail = chunks.remainder();
    for c in chunks {
        for (i, m) in m.iter_mut().enumerate() {
            let v = _mm256_and_ps(_mm256_loadu_ps(c.as_ptr().add(8 * i)), magnitude);
            *m = _mm256_max_ps(v, *m);
        }
    }
    let m = _mm256_max_ps(_mm256_max_ps(m[0], m[1]), _mm256_max_ps(m[2], m[3]));
    let mut lanes = [0f32; 8];
    _mm256_storeu_ps(lanes.as_mut_ptr(), m);
    lanes.iter().fold(absmax(tail), |a, &b| a.max(b))
}
