//! Q8_0: blocks of 32 int8 values with one f16 scale (34 bytes).

use super::float::{f16_to_f32, f32_to_f16};

/// Values per Q8_0 block.
pub const Q8_0_VALUES: usize = 32;
/// Bytes per Q8_0 block: the f16 scale (little-endian), then the 32 int8 values.
pub const Q8_0_BYTES: usize = 34;

/// Encodes 32 values as one Q8_0 block with ggml's reference quantizer (`quantize_row_q8_0_ref`): scale
/// `absmax / 127`, each value rounded half away from zero.
pub fn quantize_q8_0_block(x: &[f32; Q8_0_VALUES], out: &mut [u8; Q8_0_BYTES]) {
    let d = super::absmax(x) / 127.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    out[..2].copy_from_slice(&f32_to_f16(d).to_le_bytes());
    for (o, v) in out[2..].iter_mut().zip(x) {
        *o = (v * id).round() as i8 as u8;
    }
}

/// Decodes one Q8_0 block into its 32 values (bit-identical to ggml's `dequantize_row_q8_0`).
pub fn dequantize_q8_0_block(b: &[u8; Q8_0_BYTES], out: &mut [f32; Q8_0_VALUES]) {
    let d = f16_to_f32(u16::from_le_bytes([b[0], b[1]]));
    for (o, &q) in out.iter_mut().zip(&b[2..]) {
        *o = (q as i8) as f32 * d;
    }
}

pub(super) fn dequantize(data: &[u8], out: &mut [f32]) {
    let (blocks, _) = data.as_chunks::<Q8_0_BYTES>();
    let (values, _) = out.as_chunks_mut::<Q8_0_VALUES>();
    for (b, y) in blocks.iter().zip(values) {
        dequantize_q8_0_block(b, y);
    }
}

pub(super) fn quantize(values: &[f32]) -> Vec<u8> {
    let (x, _) = values.as_chunks::<Q8_0_VALUES>();
    let mut out = vec![[0u8; Q8_0_BYTES]; x.len()];
    for (x, o) in x.iter().zip(&mut out) {
        quantize_q8_0_block(x, o);
    }
    out.into_flattened()
}
