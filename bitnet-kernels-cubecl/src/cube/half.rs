//! The f16 KV cache on devices without f16 arithmetic in shaders (WebGPU's `shader-f16` is optional, lavapipe
//! lacks it): a row of `d` values is stored as `d/2` 32-bit words, word `j` holding elements `j` and `j + d/2`
//! as its low and high IEEE half-precision bits, so one vector of words unpacks into two vectors of the row.
//! Writers round to nearest even like llama.cpp's f32→f16 conversion; readers unpack in registers.

use cubecl::prelude::*;

/// 2^112: moves a half's exponent field, shifted into f32's place, to f32's bias (127 - 15 = 112).
const HALF_TO_F32_BIAS: f32 = 5.192_297e33;

/// The IEEE half-precision bits of `x`, rounded to nearest even (overflow to infinity, NaN kept).
#[cube]
pub fn to_bits(x: f32) -> u32 {
    let bits = u32::reinterpret(x);
    let sign = (bits >> 16u32) & 0x8000u32;
    let magnitude = bits & 0x7fff_ffffu32;
    // 65520 and above round to infinity; NaN stays NaN.
    let mut half = 0x7c00u32;
    if magnitude > 0x7f80_0000u32 {
        half = 0x7e00u32;
    } else if magnitude < 0x3880_0000u32 {
        // Below 2^-14 (subnormal halves): adding 0.5 lines the half's last bit up with f32's, whose adder
        // rounds to nearest even.
        let shifted = f32::reinterpret(magnitude) + 0.5f32;
        half = u32::reinterpret(shifted) - 0x3f00_0000u32;
    } else if magnitude < 0x4780_0000u32 {
        // Rebias the exponent (-112 << 23, wrapping) and round the 13 dropped bits to nearest even.
        let odd = (magnitude >> 13u32) & 1u32;
        half = (magnitude + 0xc800_0fffu32 + odd) >> 13u32;
    }
    half | sign
}

/// The low (or `high`) halves of the words `w` as floats: exact for finite halves, except that subnormal ones
/// (below 6.1e-5) read as zero on devices that flush f32 subnormals; infinities read as ±65536.
#[cube]
pub fn to_float<F: Float, K: Numeric, N: Size>(
    w: Vector<K, N>,
    #[comptime] high: bool,
) -> Vector<F, N> {
    let shift = comptime!(if high { 16u32 } else { 0u32 });
    let bits = Vector::<u32, N>::reinterpret(w) >> Vector::<u32, N>::new(shift);
    let magnitude = (bits & Vector::<u32, N>::new(0x7fffu32)) << Vector::<u32, N>::new(13u32);
    let sign = (bits & Vector::<u32, N>::new(0x8000u32)) << Vector::<u32, N>::new(16u32);
    let value = Vector::<f32, N>::reinterpret(magnitude) * Vector::<f32, N>::new(HALF_TO_F32_BIAS);
    let signed = Vector::<f32, N>::reinterpret(Vector::<u32, N>::reinterpret(value) | sign);
    Vector::<F, N>::cast_from(signed)
}
