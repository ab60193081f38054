//! TQ2_0 (llama.cpp, type 35): 256 trits as 2-bit codes (trit + 1), least significant bits first within 32-byte
//! groups, then an f16 block scale (66 bytes).

use super::float::{f16_to_f32, f32_to_f16};

/// Element `128·h + 32·l + m` of a block is in byte `32·h + m`, bits `2l..2l+2`.
pub(super) fn trits(b: &[u8], out: &mut [i8]) {
    // Fixed-size views: without bounds checks the loops vectorize (decoding the trits is most of a load).
    let (b, out): (&[u8; 64], &mut [i8; 256]) =
        (b[..64].try_into().unwrap(), out.try_into().unwrap());
    for h in 0..2 {
        for l in 0..4 {
            for m in 0..32 {
                out[128 * h + 32 * l + m] = ((b[32 * h + m] >> (2 * l)) & 3) as i8 - 1;
            }
        }
    }
}

pub(super) fn scale(b: &[u8]) -> f32 {
    f16_to_f32(u16::from_le_bytes([b[64], b[65]]))
}

pub(super) fn dequantize(data: &[u8], out: &mut [f32]) {
    let mut t = [0i8; 256];
    for (b, y) in data.chunks_exact(66).zip(out.chunks_exact_mut(256)) {
        trits(b, &mut t);
        let d = scale(b);
        for (o, &q) in y.iter_mut().zip(&t) {
            *o = q as f32 * d;
        }
    }
}

pub(super) fn quantize(values: &[f32]) -> Vec<u8> {
    let mut out = Vec::with_capacity(values.len() / 256 * 66);
    for x in values.chunks_exact(256) {
        let d = super::absmax(x);
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        let mut qs = [0u8; 64];
        for h in 0..2 {
            for m in 0..32 {
                for n in 0..4 {
                    let code = (super::trit(x[128 * h + 32 * n + m], id) + 1) as u8;
                    qs[32 * h + m] |= code << (2 * n);
                }
            }
        }
        out.extend_from_slice(&qs);
        out.extend_from_slice(&f32_to_f16(d).to_le_bytes());
    }
    out
}
