//! The q8_0 KV cache of the CubeCL backends (llama.cpp's `-ctk q8_0 -ctv q8_0`), holding what the CPU's
//! [`crate::cpu::Q8Block`] cache holds: rows turned by llama.cpp's Walsh–Hadamard rotation where the head width is
//! a multiple of 64 ([`crate::cpu::hadamard`]), then each block of 32 values quantized by ggml's reference
//! quantizer (scale `absmax / 127` stored as f16, values `x · (1 / scale)` rounded half away from zero), in the
//! CPU's f32 arithmetic, so the integers and scales are the same.
//!
//! A row of `d` values is `9d/32` `I32` words: first `d/4` words of values, word `j` holding the int8 value of
//! element `j + p · d/4` in its byte `p` (four planes, see [`super::kv`]); then `d/32` words holding each block's
//! f16 scale in their low half. 9 bits a value, where llama.cpp's 34-byte blocks take 8.5: rows of whole words
//! keep every load aligned.

use cubecl::prelude::*;

use super::half::{to_bits, to_float};

/// Values per quantization block.
pub(super) const BLOCK: usize = 32;
/// Values per word.
pub(super) const PLANES: usize = 4;

/// Words of a row of `d` values.
pub(super) fn row_words(d: usize) -> usize {
    d / PLANES + d / BLOCK
}

/// The rotation of rows of `d` values as `[keys, values]` `(chunk, 1/√chunk)` arguments of [`rotate`]: the CPU
/// cache's chunks and its f32 scale, or `(1, 1.0)` where rows are stored as they are.
pub(super) fn rotations(d: usize) -> [(usize, f32); 2] {
    match crate::cpu::hadamard::chunks(d) {
        Some((k, v)) => [k, v].map(|n| (n, 1.0 / (n as f32).sqrt())),
        None => [(1, 1.0); 2],
    }
}

/// `x[..d]` turned in place by the orthonormal Walsh–Hadamard rotation in chunks of `n` values (a power of two;
/// 1: left as it is): the CPU's butterflies in its order, then `scale` = 1/√n, so the results equal its bit for
/// bit. Every unit of the cube (`units` of them) must call it.
#[cube]
pub(super) fn rotate(
    x: &mut SharedMemory<f32>,
    d: usize,
    n: usize,
    scale: f32,
    #[comptime] units: usize,
) {
    let unit = UNIT_POS_X as usize;
    if n > 1 {
        let mut h = 1;
        while h < n {
            let mut p = unit;
            while p < d / 2 {
                let i = (p / h) * 2 * h + p % h;
                let (a, b) = (x[i], x[i + h]);
                x[i] = a + b;
                x[i + h] = a - b;
                p += units;
            }
            sync_cube();
            h *= 2;
        }
        let mut j = unit;
        while j < d {
            x[j] *= scale;
            j += units;
        }
        sync_cube();
    }
}

/// Quantizes `x[..d]` into the row at word `dst` of `out`, `ids` holding a block's `1 / scale` between the two
/// passes. Every unit of the cube (`units` of them) must call it.
#[cube]
pub(super) fn store<K: Numeric>(
    x: &SharedMemory<f32>,
    ids: &mut SharedMemory<f32>,
    out: &mut Tensor<K>,
    dst: usize,
    d: usize,
    #[comptime] units: usize,
) {
    let unit = UNIT_POS_X as usize;
    let quarter = d / PLANES;
    let mut b = unit;
    while b < d / BLOCK {
        let mut amax = 0.0f32;
        for e in 0..BLOCK {
            amax = f32::max(amax, f32::abs(x[b * BLOCK + e]));
        }
        let scale = amax / 127.0f32;
        let mut id = 0.0f32;
        if scale != 0.0f32 {
            id = 1.0f32 / scale;
        }
        ids[b] = id;
        out[dst + quarter + b] = K::reinterpret(to_bits(scale));
        b += units;
    }
    sync_cube();
    let mut j = unit;
    while j < quarter {
        let mut word = 0u32;
        #[unroll]
        for p in 0..PLANES {
            let e = j + p * quarter;
            let v = x[e] * ids[e / BLOCK];
            // Half away from zero, like C's `roundf` (the plain round of shaders is half to even).
            let a = f32::abs(v);
            let mut r = f32::floor(a);
            if a - r >= 0.5f32 {
                r += 1.0f32;
            }
            if v < 0.0f32 {
                r = -r;
            }
            // The two's complement byte: r + 256 is positive for every r ≥ -128.
            let byte = u32::cast_from(r + 256.0f32) & 255u32;
            word |= byte << (comptime!(8 * p) as u32);
        }
        out[dst + j] = K::reinterpret(word);
        j += units;
    }
}

/// The int8 values of plane `p` of a vector of value words, as floats (unscaled).
#[cube]
pub(super) fn plane<F: Float, K: Numeric, N: Size>(
    w: Vector<K, N>,
    #[comptime] p: usize,
) -> Vector<F, N> {
    let shift = Vector::<u32, N>::new(comptime!(8 * p) as u32);
    let bytes = (Vector::<u32, N>::reinterpret(w) >> shift) & Vector::<u32, N>::new(255u32);
    // Two's complement bytes to i32 without a sign-changing cast: (b ^ 128) - 128.
    Vector::<F, N>::cast_from(
        Vector::<i32, N>::cast_from(bytes ^ Vector::<u32, N>::new(128u32))
            - Vector::<i32, N>::new(128i32),
    )
}

/// The scale of block `b` of the cached row whose vectors start at `row` (its `words` vectors of values first).
#[cube]
pub(super) fn scale<F: Float, K: Numeric, N: Size>(
    cache: &Tensor<Vector<K, N>>,
    row: usize,
    words: usize,
    b: usize,
) -> F {
    let n = cache.vector_size();
    let scales = to_float::<F, K, N>(cache[row + words + b / n], false);
    let lane = b % n;
    let mut s = F::new(0.0);
    #[unroll]
    for l in 0..N::value() {
        if l == lane {
            s = scales[l];
        }
    }
    s
}

/// The `blocks` scales of the cached row whose vectors start at `row` (its `words` vectors of values first) into
/// `s`, each vector of scale words read once.
#[cube]
pub(super) fn scales<F: Float, K: Numeric, N: Size>(
    cache: &Tensor<Vector<K, N>>,
    row: usize,
    s: &mut Array<F>,
    #[comptime] words: usize,
    #[comptime] blocks: usize,
) {
    let lanes = N::value();
    #[unroll]
    for v in 0..comptime!(blocks / lanes) {
        let x = to_float::<F, K, N>(cache[row + words + v], false);
        #[unroll]
        for l in 0..lanes {
            s[v * lanes + l] = x[l];
        }
    }
}
