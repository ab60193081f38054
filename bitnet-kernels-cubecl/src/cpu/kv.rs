//! What a CPU KV cache stores: f32, or f16 (llama.cpp's default), which halves the bytes a step reads per
//! attended key and value and the cache's memory. The attention loops run in f32 on blocks read back from it.

use half::f16;
use half::slice::HalfFloatSliceExt;

/// A KV cache element: rows are written from f32 and read back as f32 in blocks.
pub trait KvElem: Copy + Send + Sync + 'static {
    /// Whether the elements are f16 (the SIMD kernels widen them as they load them).
    const HALF: bool;
    /// Writes `src` into `dst` (rounded to the nearest f16 for f16).
    fn store(src: &[f32], dst: &mut [Self]);
    /// `src` as f32: itself for f32, else converted into `buf`.
    fn load<'a>(src: &'a [Self], buf: &'a mut Vec<f32>) -> &'a [f32];
}

impl KvElem for f32 {
    const HALF: bool = false;

    fn store(src: &[f32], dst: &mut [f32]) {
        dst.copy_from_slice(src);
    }

    #[inline(always)]
    fn load<'a>(src: &'a [f32], _: &'a mut Vec<f32>) -> &'a [f32] {
        src
    }
}

impl KvElem for f16 {
    const HALF: bool = true;

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
