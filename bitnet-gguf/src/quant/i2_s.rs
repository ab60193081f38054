//! I2_S (bitnet.cpp, type 36): the row-major flattened tensor in 128-element blocks of 32 bytes, element `j` of a
//! block in byte `j % 32` at bits `6 - 2·(j / 32)`, codes 0/1/2 for -1/0/+1; then one f32 per-tensor scale and 28
//! bytes of padding.

use crate::ggml_type::I2S_TRAILER;

/// The per-tensor scale stored after the codes.
pub(super) fn scale(data: &[u8]) -> f32 {
    let at = data.len() - I2S_TRAILER as usize;
    f32::from_le_bytes(data[at..at + 4].try_into().unwrap())
}

/// Trits of elements `[start, start + out.len())` of the flattened tensor (`start` a multiple of 128).
pub(super) fn trits(data: &[u8], start: usize, out: &mut [i8]) {
    for (bi, y) in out.chunks_exact_mut(128).enumerate() {
        // Fixed-size views: without bounds checks the loops vectorize.
        let b: &[u8; 32] = data[(start / 128 + bi) * 32..][..32].try_into().unwrap();
        let y: &mut [i8; 128] = y.try_into().unwrap();
        for g in 0..4 {
            for m in 0..32 {
                y[32 * g + m] = ((b[m] >> (6 - 2 * g)) & 3) as i8 - 1;
            }
        }
    }
}

pub(super) fn dequantize(data: &[u8], out: &mut [f32]) {
    let s = scale(data);
    let mut t = vec![0i8; out.len()];
    trits(data, 0, &mut t);
    for (o, &q) in out.iter_mut().zip(&t) {
        *o = q as f32 * s;
    }
}

pub(super) fn quantize(values: &[f32]) -> Vec<u8> {
    let s = super::absmax(values);
    let id = if s != 0.0 { 1.0 / s } else { 0.0 };
    let mut out = vec![0u8; values.len() / 4 + I2S_TRAILER as usize];
    for (bi, x) in values.chunks_exact(128).enumerate() {
        for (j, &v) in x.iter().enumerate() {
            let code = (super::trit(v, id) + 1) as u8;
            out[bi * 32 + j % 32] |= code << (6 - 2 * (j / 32));
        }
    }
    let at = values.len() / 4;
    out[at..at + 4].copy_from_slice(&s.to_le_bytes());
    out
}
