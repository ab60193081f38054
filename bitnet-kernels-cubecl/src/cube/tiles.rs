//! The ternary matmul for many tokens (prefill) as a shared-memory tiled GEMM: a cube computes a
//! [`TILE`] tokens × [`TILE`] rows block of the output, stepping through the packed width one word (16 trits)
//! at a time. Per step the cube stages the tokens' 16 activations and the rows' 16 decoded trits in shared
//! memory, so each packed word is read and decoded once per [`TILE`] tokens and each activation once per
//! [`TILE`] rows; each unit then accumulates a [`BLOCK`] × [`BLOCK`] register block, and scales each word's
//! sums by the word's block scale (integer-valued activations stay exact per word, as in [`super::ternary`]).

use cubecl::prelude::*;

use super::rows::VECTOR;

/// Units per cube side.
const SIDE: usize = 16;
/// Outputs per unit side (a `BLOCK × BLOCK` register block).
const BLOCK: usize = 4;
/// Tokens and rows per cube: `SIDE · BLOCK`.
pub(super) const TILE: usize = SIDE * BLOCK;
/// Vectors per packed word (16 trits).
const WORD_VECTORS: usize = 16 / VECTOR;

#[cube(launch)]
pub(super) fn ternary_tiles<F: Float, N: Size>(
    x: &Tensor<Vector<F, N>>,
    s: &Tensor<F>,
    w: &Tensor<u32>,
    scales: &Tensor<F>,
    y: &mut Tensor<F>,
    block_words: usize,
    #[define(F)] _dtype: StorageType,
) {
    let (m, n, kw, nb) = (y.shape(0), w.shape(0), w.shape(1), scales.shape(1));
    let (tx, ty) = (UNIT_POS_X as usize, UNIT_POS_Y as usize);
    let unit = ty * SIDE + tx;
    let (row0, token0) = (CUBE_POS_X as usize * TILE, CUBE_POS_Y as usize * TILE);
    let mut xs = SharedMemory::<Vector<F, N>>::new(comptime!(TILE * WORD_VECTORS));
    let mut ws = SharedMemory::<Vector<F, N>>::new(comptime!(TILE * WORD_VECTORS));
    let mut ss = SharedMemory::<F>::new(TILE);
    let mut acc = Array::<F>::new(comptime!(BLOCK * BLOCK));
    let mut part = Array::<Vector<F, N>>::new(comptime!(BLOCK * BLOCK));
    let mut shifts = Vector::<u32, N>::new(0u32);
    #[unroll]
    for i in 0..BLOCK * BLOCK {
        acc[i] = F::new(0.0);
    }
    // Each unit stages one vector of the activations and one of the trits: slot `unit` is (tile row
    // `unit / 4`, vector `unit % 4`).
    let (slot_item, slot_vector) = (unit / WORD_VECTORS, unit % WORD_VECTORS);
    #[unroll]
    for l in 0..VECTOR {
        shifts[l] = comptime!(2 * l) as u32;
    }
    let shifts = shifts + Vector::<u32, N>::new(8u32 * slot_vector as u32);
    for j in 0..kw {
        let token = token0 + slot_item;
        xs[unit] = if token < m {
            x[(token * kw + j) * WORD_VECTORS + slot_vector]
        } else {
            Vector::<F, N>::new(F::new(0.0))
        };
        let row = row0 + slot_item;
        let mut word = 0x5555_5555u32;
        if row < n {
            word = w[row * kw + j];
        }
        let codes = (Vector::<u32, N>::new(word) >> shifts) & Vector::<u32, N>::new(3u32);
        ws[unit] = Vector::<F, N>::cast_from(codes) - Vector::<F, N>::new(F::new(1.0));
        if slot_vector == 0 {
            ss[slot_item] = if row < n {
                scales[row * nb + j / block_words]
            } else {
                F::new(0.0)
            };
        }
        sync_cube();
        #[unroll]
        for i in 0..BLOCK * BLOCK {
            part[i] = Vector::<F, N>::new(F::new(0.0));
        }
        #[unroll]
        for v in 0..WORD_VECTORS {
            #[unroll]
            for a in 0..BLOCK {
                let xv = xs[(ty * BLOCK + a) * WORD_VECTORS + v];
                #[unroll]
                for b in 0..BLOCK {
                    part[a * BLOCK + b] += xv * ws[(tx * BLOCK + b) * WORD_VECTORS + v];
                }
            }
        }
        #[unroll]
        for b in 0..BLOCK {
            let scale = ss[tx * BLOCK + b];
            #[unroll]
            for a in 0..BLOCK {
                let p = part[a * BLOCK + b];
                let mut sum = F::new(0.0);
                #[unroll]
                for l in 0..VECTOR {
                    sum += p[l];
                }
                acc[a * BLOCK + b] += sum * scale;
            }
        }
        sync_cube();
    }
    #[unroll]
    for a in 0..BLOCK {
        let token = token0 + ty * BLOCK + a;
        #[unroll]
        for b in 0..BLOCK {
            let row = row0 + tx * BLOCK + b;
            if token < m && row < n {
                y[token * n + row] = acc[a * BLOCK + b] / s[token];
            }
        }
    }
}

/// The cube grid and shape for `n` rows of `m` tokens.
pub(super) fn geometry(n: usize, m: usize) -> (CubeCount, CubeDim) {
    (
        CubeCount::Static(n.div_ceil(TILE) as u32, m.div_ceil(TILE) as u32, 1),
        CubeDim::new_2d(SIDE as u32, SIDE as u32),
    )
}
