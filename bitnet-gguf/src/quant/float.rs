//! F32, F16 and BF16 conversions.

use half::slice::HalfFloatSliceExt;
use half::{bf16, f16};

/// IEEE half bits to f32.
pub fn f16_to_f32(bits: u16) -> f32 {
    f16::from_bits(bits).to_f32()
}

/// f32 to IEEE half bits (round to nearest even).
pub fn f32_to_f16(v: f32) -> u16 {
    f16::from_f32(v).to_bits()
}

/// bfloat16 bits to f32.
pub fn bf16_to_f32(bits: u16) -> f32 {
    bf16::from_bits(bits).to_f32()
}

/// f32 to bfloat16 bits (round to nearest even).
pub fn f32_to_bf16(v: f32) -> u16 {
    bf16::from_f32(v).to_bits()
}

pub(super) fn dequantize_f32(data: &[u8], out: &mut [f32]) {
    for (o, c) in out.iter_mut().zip(data.chunks_exact(4)) {
        *o = f32::from_le_bytes(c.try_into().unwrap());
    }
}

/// Little-endian 16-bit values as a slice of `T`, where the bytes are aligned (tensor data is, at 32 bytes).
fn halves<T: bytemuck::Pod>(data: &[u8]) -> Option<&[T]> {
    if cfg!(target_endian = "little") {
        bytemuck::try_cast_slice(data).ok()
    } else {
        None
    }
}

// The slice conversions use F16C/NEON where the CPU has them: an int8 head quantized from the F16 embedding of
// the 2B-4T shape converts 328 M values at load.
pub(super) fn dequantize_f16(data: &[u8], out: &mut [f32]) {
    match halves::<f16>(data) {
        Some(h) => h.convert_to_f32_slice(out),
        None => {
            for (o, c) in out.iter_mut().zip(data.chunks_exact(2)) {
                *o = f16_to_f32(u16::from_le_bytes([c[0], c[1]]));
            }
        }
    }
}

pub(super) fn dequantize_bf16(data: &[u8], out: &mut [f32]) {
    match halves::<bf16>(data) {
        Some(h) => h.convert_to_f32_slice(out),
        None => {
            for (o, c) in out.iter_mut().zip(data.chunks_exact(2)) {
                *o = bf16_to_f32(u16::from_le_bytes([c[0], c[1]]));
            }
        }
    }
}
