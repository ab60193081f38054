//! Integer dot products back to f32 outputs: `y = d · w / s`, the division's exact bits without a division.
//!
//! A division per output cost ~4% of a step decoding 8 streams (the compiler keeps the division, since
//! multiplying by `1 / s` rounds differently, and `divps` is slow). Markstein's theorem gives the division's
//! correctly rounded result from the reciprocal: with `r = RN(1 / s)` and `q = RN(a · r)` (within one ulp of
//! `a / s`), the remainder `a - q · s` is exact in one FMA and `RN(q + (a - q · s) · r) = RN(a / s)`, barring
//! overflow and subnormals, which scaled int8 dot products do not reach.

use std::mem::MaybeUninit;

/// `y[r] = (dots[r] - sum) as f32 · w[r] / s` for every row, with the same bits as written.
pub(crate) fn rescale(y: &mut [MaybeUninit<f32>], dots: &[i32], sum: i32, w: &[f32], s: f32) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
        // SAFETY: the features were just detected.
        return unsafe { rescale_fma(y, dots, sum, w, s) };
    }
    for ((y, &d), &w) in y.iter_mut().zip(dots).zip(w) {
        *y = MaybeUninit::new((d - sum) as f32 * w / s);
    }
}

/// [`rescale`] by the reciprocal and one FMA correction, a loop the compiler vectorizes.
///
/// # Safety
/// The CPU has AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn rescale_fma(y: &mut [MaybeUninit<f32>], dots: &[i32], sum: i32, w: &[f32], s: f32) {
    let r = 1.0 / s;
    for ((y, &d), &w) in y.iter_mut().zip(dots).zip(w) {
        let a = (d - sum) as f32 * w;
        let q = a * r;
        *y = MaybeUninit::new((-q).mul_add(s, a).mul_add(r, q));
    }
}
