//! The ternary matmul as one CubeCL kernel for every CubeCL runtime (wgpu/Vulkan/Metal, CUDA): weights stay
//! packed 16 trits per `u32` on the device and are decoded in registers.
//!
//! Cubes and lanes as [`super::rows`] lays them out; each unit decodes a word's 16 trits once, multiplies them
//! with 16 activations of each token read as 4-wide vectors, scales the word's sum by its block's scale, and
//! the lanes' sums are added in shared memory. Integer-valued activations (BitLinear's int8 mode) give exact integer sums per word in f32,
//! so only the scaling rounds.

use burn::tensor::TensorMetadata;
use burn_cubecl::kernel::into_contiguous;
use burn_cubecl::tensor::CubeTensor;
use burn_cubecl::CubeRuntime;
use cubecl::prelude::*;

use super::output;
use super::rows::{geometry, lane_sums, LANES, ROWS, VECTOR};
use super::tiles::{self, ternary_tiles, TILE};

/// From this many tokens on, the tiled kernel of [`tiles`] (each word decoded once per [`TILE`] tokens) takes
/// over from the row kernel (once per 8): half a tile, below which most of a tile would be padding.
const TILED_FROM_TOKENS: usize = TILE / 2;

#[cube(launch)]
fn ternary_rows<F: Float, N: Size>(
    x: &Tensor<Vector<F, N>>,
    s: &Tensor<F>,
    w: &Tensor<u32>,
    scales: &Tensor<F>,
    y: &mut Tensor<F>,
    block_words: usize,
    #[comptime] tokens: usize,
    #[define(F)] _dtype: StorageType,
) {
    let (m, n, kw, nb) = (y.shape(0), w.shape(0), w.shape(1), scales.shape(1));
    let lane = UNIT_POS_X as usize;
    let row = CUBE_POS_X as usize * ROWS + UNIT_POS_Y as usize;
    let first = CUBE_POS_Y as usize * tokens;
    let per_word = comptime!(16 / VECTOR);
    let mut acc = Array::<F>::new(tokens);
    #[unroll]
    for t in 0..tokens {
        acc[t] = F::new(0.0);
    }
    if row < n {
        let mut shifts = Vector::<u32, N>::new(0u32);
        let mut trits = Array::<Vector<F, N>>::new(per_word);
        let mut j = lane;
        while j < kw {
            let word = w[row * kw + j];
            #[unroll]
            for v in 0..per_word {
                #[unroll]
                for l in 0..VECTOR {
                    shifts[l] = comptime!(2 * (v * VECTOR + l)) as u32;
                }
                let codes = (Vector::<u32, N>::new(word) >> shifts) & Vector::<u32, N>::new(3u32);
                trits[v] = Vector::<F, N>::cast_from(codes) - Vector::<F, N>::new(F::new(1.0));
            }
            let scale = scales[row * nb + j / block_words];
            #[unroll]
            for t in 0..tokens {
                if first + t < m {
                    let mut sum = Vector::<F, N>::new(F::new(0.0));
                    #[unroll]
                    for v in 0..per_word {
                        sum += x[((first + t) * kw + j) * per_word + v] * trits[v];
                    }
                    let mut word_sum = F::new(0.0);
                    #[unroll]
                    for l in 0..VECTOR {
                        word_sum += sum[l];
                    }
                    acc[t] += word_sum * scale;
                }
            }
            j += LANES;
        }
    }
    let mut partial = SharedMemory::<F>::new(comptime!(LANES * ROWS * tokens));
    lane_sums::<F>(&acc, &mut partial, tokens);
    let unit = UNIT_POS_Y as usize * LANES + lane;
    if lane == 0 && row < n {
        #[unroll]
        for t in 0..tokens {
            if first + t < m {
                y[(first + t) * n + row] = partial[t * ROWS * LANES + unit] / s[first + t];
            }
        }
    }
}

/// Whether [`ternary_matmul`] takes this layout: every packed word inside one scale block.
pub(crate) fn supported(k: usize, blocks: usize) -> bool {
    blocks == 1 || (k / blocks).is_multiple_of(16)
}

/// `y [m, n] = x [m, k] · (trits ⊙ scales)ᵀ / s[m]` for `x` whose rows are padded with zeros to the packed
/// width (`16 · words` columns), token divisors `s [m, 1]`, `w [n, words]` and `scales [n, blocks]` (see
/// [`supported`]).
pub(crate) fn ternary_matmul<R: CubeRuntime>(
    x: CubeTensor<R>,
    s: CubeTensor<R>,
    w: CubeTensor<R>,
    scales: CubeTensor<R>,
    k: usize,
) -> CubeTensor<R> {
    let [x, s, w, scales] = [x, s, w, scales].map(into_contiguous);
    let (m, n, kw, nb) = (x.shape()[0], w.shape()[0], w.shape()[1], scales.shape()[1]);
    assert_eq!(
        x.shape()[1],
        kw * 16,
        "activations padded to the packed width"
    );
    let block_words = if nb == 1 { kw } else { k / nb / 16 };
    let y = output(&x, m, n);
    let dtype = x.dtype.into();
    let (x, s, w, scales, out) = (
        x.into_tensor_arg(),
        s.into_tensor_arg(),
        w.into_tensor_arg(),
        scales.into_tensor_arg(),
        y.clone().into_tensor_arg(),
    );
    if m >= TILED_FROM_TOKENS {
        let (count, dim) = tiles::geometry(n, m);
        ternary_tiles::launch::<R>(
            &y.client,
            count,
            dim,
            VECTOR,
            x,
            s,
            w,
            scales,
            out,
            block_words,
            dtype,
        );
    } else {
        let (count, dim, tokens) = geometry(n, m);
        ternary_rows::launch::<R>(
            &y.client,
            count,
            dim,
            VECTOR,
            x,
            s,
            w,
            scales,
            out,
            block_words,
            tokens,
            dtype,
        );
    }
    y
}
