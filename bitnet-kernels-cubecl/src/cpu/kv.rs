//! What a CPU KV cache stores: f32; f16 (llama.cpp's default), which halves the bytes a step reads per
//! attended key and value and the cache's memory; or q8_0 blocks (llama.cpp's `-ctk q8_0 -ctv q8_0`), a
//! quarter of f32's bytes plus a scale per 32 values, of rows rotated as llama.cpp rotates them
//! ([`super::hadamard`]). The attention loops run in f32 on values read back from it.

use bitnet_gguf::quant::{dequantize_q8_0_block, quantize_q8_0_block, Q8_0_BYTES, Q8_0_VALUES};
use bytemuck::{Pod, Zeroable};
use half::f16;
use half::slice::HalfFloatSliceExt;

/// How the SIMD kernels read a [`KvElem`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KvKind {
    /// Loaded as is.
    F32,
    /// Widened from f16.
    F16,
    /// Scaled from a [`Q8Block`]'s int8 values.
    Q8_0,
}

/// A KV cache element: rows are written from f32 and read back as f32 in blocks. An element holds
/// [`KvElem::VALUES`] values, so a row of `d` values is `d / VALUES` elements.
pub trait KvElem: Copy + Send + Sync + 'static {
    /// How the SIMD kernels read it.
    const KIND: KvKind;
    /// Values per element.
    const VALUES: usize = 1;
    /// Writes `src` into `dst` (`src.len() / VALUES` elements; rounded to the nearest f16 for f16, quantized
    /// with ggml's reference quantizer for q8_0).
    fn store(src: &[f32], dst: &mut [Self]);
    /// `src` as f32: itself for f32, else converted into `buf`.
    fn load<'a>(src: &'a [Self], buf: &'a mut Vec<f32>) -> &'a [f32];

    /// Elements per row of `d` values (`d` a multiple of [`KvElem::VALUES`]).
    #[inline(always)]
    fn row(d: usize) -> usize {
        d / Self::VALUES
    }

    /// The chunk widths (keys and queries, values) of the [`super::hadamard`] rotation the rows of `d` values
    /// are stored in, if any: quantized caches only.
    fn rotation(_d: usize) -> Option<(usize, usize)> {
        None
    }
}

impl KvElem for f32 {
    const KIND: KvKind = KvKind::F32;

    fn store(src: &[f32], dst: &mut [f32]) {
        dst.copy_from_slice(src);
    }

    #[inline(always)]
    fn load<'a>(src: &'a [f32], _: &'a mut Vec<f32>) -> &'a [f32] {
        src
    }
}

impl KvElem for f16 {
    const KIND: KvKind = KvKind::F16;

    fn store(src: &[f32], dst: &mut [f16]) {
        dst.convert_from_f32_slice(src);
    }

    #[inline(always)]
    fn load<'a>(src: &'a [f16], buf: &'a mut Vec<f32>) -> &'a [f32] {
        buf.resize(src.len(), 0.0);
        #[cfg(target_arch = "x86_64")]
        if std::is_x86_feature_detected!("f16c") {
            // SAFETY: the CPU has F16C (and so AVX).
            unsafe { widen_f16c(src, buf) };
            return buf;
        }
        src.convert_to_f32_slice(buf);
        buf
    }
}

/// A q8_0 block of a KV cache row: 32 values as int8 with an f16 scale, GGUF's Q8_0 layout (34 bytes, so
/// byte-aligned: burn-ndarray holds the cache as `U8`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(transparent)]
pub struct Q8Block(pub [u8; Q8_0_BYTES]);

// SAFETY: a transparent wrapper of a byte array: every bit pattern is valid, zero included, and there is no padding.
unsafe impl Zeroable for Q8Block {}
// SAFETY: as above.
unsafe impl Pod for Q8Block {}

impl KvElem for Q8Block {
    const KIND: KvKind = KvKind::Q8_0;
    const VALUES: usize = Q8_0_VALUES;

    fn store(src: &[f32], dst: &mut [Q8Block]) {
        let (values, rest) = src.as_chunks::<Q8_0_VALUES>();
        assert!(
            rest.is_empty() && values.len() == dst.len(),
            "whole q8_0 blocks"
        );
        for (x, b) in values.iter().zip(dst) {
            quantize_q8_0_block(x, &mut b.0);
        }
    }

    fn rotation(d: usize) -> Option<(usize, usize)> {
        super::hadamard::chunks(d)
    }

    fn load<'a>(src: &'a [Q8Block], buf: &'a mut Vec<f32>) -> &'a [f32] {
        buf.resize(src.len() * Q8_0_VALUES, 0.0);
        #[cfg(target_arch = "x86_64")]
        if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("f16c") {
            // SAFETY: the CPU has AVX2 and F16C.
            unsafe { widen_q8_avx2(src, buf) };
            return buf;
        }
        let (values, _) = buf.as_chunks_mut::<Q8_0_VALUES>();
        for (b, y) in src.iter().zip(values) {
            dequantize_q8_0_block(&b.0, y);
        }
        buf
    }
}

/// The f16 scale of `b` widened by F16C, in the lowest lane.
///
/// # Safety
/// The CPU supports F16C.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx,f16c")]
#[inline]
pub(super) unsafe fn q8_scale(b: &Q8Block) -> std::arch::x86_64::__m128 {
    use std::arch::x86_64::*;
    _mm_cvtph_ps(_mm_cvtsi32_si128(
        u16::from_le_bytes([b.0[0], b.0[1]]) as i32
    ))
}

/// Values `8i..8i + 8` of `b` as f32 lanes: int8 widened and converted, times the scale widened by F16C (the
/// same arithmetic as [`dequantize_q8_0_block`]: one exact product per value).
///
/// # Safety
/// The CPU supports AVX2 and F16C; `i < 4`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,f16c")]
#[inline]
pub(super) unsafe fn q8_lanes(b: &Q8Block, i: usize) -> std::arch::x86_64::__m256 {
    use std::arch::x86_64::*;
    let scale = _mm256_broadcastss_ps(q8_scale(b));
    let q = _mm_loadl_epi64(b.0.as_ptr().add(2 + 8 * i).cast());
    _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(q)), scale)
}

/// `dst` = the values of `src`, eight at a time by [`q8_lanes`] (the portable loop took 7.6% of a q8_0 pp2048).
///
/// # Safety
/// The CPU supports AVX2 and F16C.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,f16c")]
unsafe fn widen_q8_avx2(src: &[Q8Block], dst: &mut [f32]) {
    use std::arch::x86_64::_mm256_storeu_ps;
    assert_eq!(src.len() * Q8_0_VALUES, dst.len());
    for (b, y) in src.iter().zip(dst.chunks_exact_mut(Q8_0_VALUES)) {
        for i in 0..Q8_0_VALUES / 8 {
            // SAFETY: `y` holds 32 values, `8i + 8 <= 32`.
            unsafe { _mm256_storeu_ps(y.as_mut_ptr().add(8 * i), q8_lanes(b, i)) };
        }
    }
}

/// `dst = src` widened 8 at a time by `vcvtph2ps`, in one loop (`half`'s slice conversion calls a function per 8
/// elements: 9% of a decode step at depth 2048).
///
/// # Safety
/// The CPU supports F16C.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx,f16c")]
unsafe fn widen_f16c(src: &[f16], dst: &mut [f32]) {
    use std::arch::x86_64::{__m128i, _mm256_cvtph_ps, _mm256_storeu_ps, _mm_loadu_si128};
    assert_eq!(src.len(), dst.len());
    let whole = src.len() - src.len() % 8;
    for i in (0..whole).step_by(8) {
        // SAFETY: `i + 8 <= whole <= len` for both slices.
        unsafe {
            let h = _mm_loadu_si128(src.as_ptr().add(i).cast::<__m128i>());
            _mm256_storeu_ps(dst.as_mut_ptr().add(i), _mm256_cvtph_ps(h));
        }
    }
    for (d, s) in dst[whole..].iter_mut().zip(&src[whole..]) {
        *d = s.to_f32();
    }
}
