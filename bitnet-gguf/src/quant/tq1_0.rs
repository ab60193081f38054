//! TQ1_0 (llama.cpp, type 34): 256 trits packed five per byte in base 3 (scaled to fill a byte), then four per
//! byte in `qh`, then an f16 block scale (54 bytes).

use super::float::{f16_to_f32, f32_to_f16};

const POW3: [u8; 5] = [1, 3, 9, 27, 81];

/// The `n`-th trit (most significant first) of a byte that stores trits as `ceil(q · 256 / 243)`.
fn unpack(byte: u8, n: usize) -> i8 {
    let q = byte.wrapping_mul(POW3[n]);
    ((q as u16 * 3) >> 8) as i8 - 1
}

/// Elements `32n + m` come from `qs[m]`, `160 + 16n + m` from `qs[32 + m]`, `240 + 4n + j` from `qh[j]`.
pub(super) fn trits(b: &[u8], out: &mut [i8]) {
    for n in 0..5 {
        for m in 0..32 {
            out[32 * n + m] = unpack(b[m], n);
        }
        for m in 0..16 {
            out[160 + 16 * n + m] = unpack(b[32 + m], n);
        }
    }
    for n in 0..4 {
        for j in 0..4 {
            out[240 + 4 * n + j] = unpack(b[48 + j], n);
        }
    }
}

pub(super) fn scale(b: &[u8]) -> f32 {
    f16_to_f32(u16::from_le_bytes([b[52], b[53]]))
}

pub(super) fn dequantize(data: &[u8], out: &mut [f32]) {
    let mut t = [0i8; 256];
    for (b, y) in data.chunks_exact(54).zip(out.chunks_exact_mut(256)) {
        trits(b, &mut t);
        let d = scale(b);
        for (o, &q) in y.iter_mut().zip(&t) {
            *o = q as f32 * d;
        }
    }
}

fn pack(codes: impl Iterator<Item = u8>) -> u8 {
    let q = codes.fold(0u16, |q, c| q * 3 + c as u16);
    (q * 256).div_ceil(243) as u8
}

pub(super) fn quantize(values: &[f32]) -> Vec<u8> {
    let mut out = Vec::with_capacity(values.len() / 256 * 54);
    for x in values.chunks_exact(256) {
        let d = super::absmax(x);
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        let code = |i: usize| (super::trit(x[i], id) + 1) as u8;
        for m in 0..32 {
            out.push(pack((0..5).map(|n| code(32 * n + m))));
        }
        for m in 0..16 {
            out.push(pack((0..5).map(|n| code(160 + 16 * n + m))));
        }
        for j in 0..4 {
            // Four trits, shifted so the first is the most significant of five.
            out.push(pack((0..4).map(|n| code(240 + 4 * n + j)).chain([0])));
        }
        out.extend_from_slice(&f32_to_f16(d).to_le_bytes());
    }
    out
}
