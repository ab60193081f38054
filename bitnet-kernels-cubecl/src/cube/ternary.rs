//! The ternary matmul as one CubeCL kernel for every CubeCL runtime (wgpu/Vulkan/Metal, CUDA): weights stay
//! packed 16 trits per `u32` on the device and are decoded in registers.
//!
//! Cubes and lanes as [`super::rows`] lays them out; each unit loads four packed words at once where rows
//! allow, decodes each word's 16 trits once, multiplies them with 16 activations of each token read as
//! 4-wide vectors, scales the word's sum by its block's scale, and the lanes' sums are added by
//! [`super::rows::row_totals`]. Integer-valued activations (BitLinear's int8 mode) give exact integer sums per
//! word in f32, so only the scaling rounds.

use burn::tensor::TensorMetadata;
use burn_cubecl::kernel::into_contiguous;
use burn_cubecl::ops::numeric::add;
use burn_cubecl::tensor::CubeTensor;
use burn_cubecl::CubeRuntime;
use cubecl::prelude::*;

use super::output;
use super::rows::{launch, row_totals, LANES, ROWS, VECTOR};
use super::tiles::{self, ternary_tiles, TILE};
use crate::packing::words_per_row;

/// From this many tokens on, the tiled kernel of [`tiles`] (each word decoded once per [`TILE`] tokens) takes
/// over from the row kernel (once per 8): half a tile, below which most of a tile would be padding.
const TILED_FROM_TOKENS: usize = TILE / 2;

/// Every layer's rows in one launch (decode runs q/k/v, and gate/up, as one kernel each): the cubes are laid
/// out layer after layer, and each computes [`ROWS`] rows of the layer it falls in. With `add` (one layer),
/// the residual `r` is added to the outputs.
#[cube(launch)]
fn ternary_rows<F: Float, N: Size, L: Size>(
    x: &Tensor<Vector<F, N>>,
    s: &Tensor<F>,
    w: &Sequence<Tensor<Vector<u32, L>>>,
    scales: &Sequence<Tensor<F>>,
    y: &mut Sequence<Tensor<F>>,
    r: &Tensor<F>,
    k: usize,
    #[comptime] tokens: usize,
    #[comptime] plane: bool,
    #[comptime] add: bool,
    #[define(F)] _dtype: StorageType,
) {
    let cube = CUBE_POS_X as usize;
    let mut first = 0usize;
    #[unroll]
    for l in 0..w.len() {
        let cubes = w.index(l).shape(0).div_ceil(ROWS);
        if cube >= first && cube < first + cubes {
            layer_rows::<F, N, L>(
                x,
                s,
                w.index(l),
                scales.index(l),
                y.index_mut(l),
                r,
                k,
                cube - first,
                tokens,
                plane,
                add,
            );
        }
        first += cubes;
    }
}

/// Rows `cube · ROWS ..` of one layer for the cube's tokens, plus `r [m, n]` when `add`.
#[cube]
#[allow(clippy::too_many_arguments)]
fn layer_rows<F: Float, N: Size, L: Size>(
    x: &Tensor<Vector<F, N>>,
    s: &Tensor<F>,
    w: &Tensor<Vector<u32, L>>,
    scales: &Tensor<F>,
    y: &mut Tensor<F>,
    r: &Tensor<F>,
    k: usize,
    cube: usize,
    #[comptime] tokens: usize,
    #[comptime] plane: bool,
    #[comptime] add: bool,
) {
    let (m, n, kw, nb) = (y.shape(0), w.shape(0), w.shape(1), scales.shape(1));
    let block_words = if nb == 1 { kw } else { k / nb / 16 };
    let words = w.vector_size();
    let loads = kw / words;
    let lane = UNIT_POS_X as usize;
    let row = cube * ROWS + UNIT_POS_Y as usize;
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
        while j < loads {
            let packed = w[row * loads + j];
            #[unroll]
            for u in 0..words {
                let word = packed[u];
                let col = j * words + u;
                #[unroll]
                for v in 0..per_word {
                    #[unroll]
                    for l in 0..VECTOR {
                        shifts[l] = comptime!(2 * (v * VECTOR + l)) as u32;
                    }
                    let codes =
                        (Vector::<u32, N>::new(word) >> shifts) & Vector::<u32, N>::new(3u32);
                    trits[v] = Vector::<F, N>::cast_from(codes) - Vector::<F, N>::new(F::new(1.0));
                }
                let scale = scales[row * nb + col / block_words];
                #[unroll]
                for t in 0..tokens {
                    if first + t < m {
                        let mut sum = Vector::<F, N>::new(F::new(0.0));
                        #[unroll]
                        for v in 0..per_word {
                            sum += x[((first + t) * kw + col) * per_word + v] * trits[v];
                        }
                        let mut word_sum = F::new(0.0);
                        #[unroll]
                        for l in 0..VECTOR {
                            word_sum += sum[l];
                        }
                        acc[t] += word_sum * scale;
                    }
                }
            }
            j += LANES;
        }
    }
    row_totals::<F>(&mut acc, tokens, plane);
    if lane == 0 && row < n {
        #[unroll]
        for t in 0..tokens {
            if first + t < m {
                let at = (first + t) * n + row;
                let mut value = acc[t] / s[first + t];
                if comptime!(add) {
                    value += r[at];
                }
                y[at] = value;
            }
        }
    }
}

/// Whether [`ternary_matmuls`] takes this layout: every packed word inside one scale block.
pub(crate) fn supported(k: usize, blocks: usize) -> bool {
    blocks == 1 || (k / blocks).is_multiple_of(16)
}

/// `y_i [m, n_i] = x [m, k] · (trits_i ⊙ scales_i)ᵀ / s[m]` for every layer `(w_i [n_i, words], scales_i
/// [n_i, blocks_i])` (see [`supported`]), `x` with its rows padded with zeros to the packed width
/// (`16 · words` columns) and token divisors `s [m, 1]`, plus `residual [m, n]` when given (one layer). Short
/// inputs take one launch for all layers, the addition included; from [`TILED_FROM_TOKENS`] tokens on, each
/// layer is one tiled launch and the addition another.
pub(crate) fn ternary_matmuls<R: CubeRuntime>(
    x: CubeTensor<R>,
    s: CubeTensor<R>,
    layers: Vec<(CubeTensor<R>, CubeTensor<R>)>,
    k: usize,
    residual: Option<CubeTensor<R>>,
) -> Vec<CubeTensor<R>> {
    assert!(
        residual.is_none() || layers.len() == 1,
        "a residual is added to one layer"
    );
    let [x, s] = [x, s].map(into_contiguous);
    let residual = residual.map(into_contiguous);
    let layers: Vec<_> = layers
        .into_iter()
        .map(|(w, scales)| (into_contiguous(w), into_contiguous(scales)))
        .collect();
    let (m, kw) = (x.shape()[0], words_per_row(k));
    assert_eq!(
        x.shape()[1],
        kw * 16,
        "activations padded to the packed width"
    );
    let mut ys: Vec<_> = layers
        .iter()
        .map(|(w, _)| output(&x, m, w.shape()[0]))
        .collect();
    let (client, dtype) = (x.client.clone(), x.dtype.into());
    if m >= TILED_FROM_TOKENS {
        for ((w, scales), y) in layers.into_iter().zip(&mut ys) {
            let (n, nb) = (w.shape()[0], scales.shape()[1]);
            let block_words = if nb == 1 { kw } else { k / nb / 16 };
            let (count, dim) = tiles::geometry(n, m);
            ternary_tiles::launch::<R>(
                &client,
                count,
                dim,
                VECTOR,
                x.clone().into_tensor_arg(),
                s.clone().into_tensor_arg(),
                w.into_tensor_arg(),
                scales.into_tensor_arg(),
                y.clone().into_tensor_arg(),
                block_words,
                dtype,
            );
            if let Some(r) = &residual {
                *y = add(r.clone(), y.clone());
            }
        }
    } else {
        // x, s and r, then w, scales and y per layer: as many layers per launch as the device binds buffers
        // (WebGPU in Chromium binds 10 storage buffers: two layers, where lavapipe and CUDA take all three)
        let per_launch =
            ((client.properties().hardware.max_bindings as usize).saturating_sub(3) / 3).max(1);
        let mut layers = layers.into_iter();
        for ys in ys.chunks(per_launch) {
            let group: Vec<_> = layers.by_ref().take(ys.len()).collect();
            let rows: Vec<usize> = group.iter().map(|(w, _)| w.shape()[0]).collect();
            let plan = launch(&client, &rows, m, kw);
            let (mut w, mut scales, mut out) =
                (SequenceArg::new(), SequenceArg::new(), SequenceArg::new());
            for ((wi, si), y) in group.into_iter().zip(ys) {
                w.push(wi.into_tensor_arg());
                scales.push(si.into_tensor_arg());
                out.push(y.clone().into_tensor_arg());
            }
            ternary_rows::launch::<R>(
                &client,
                plan.count,
                plan.dim,
                VECTOR,
                plan.words,
                x.clone().into_tensor_arg(),
                s.clone().into_tensor_arg(),
                w,
                scales,
                out,
                residual.as_ref().unwrap_or(&s).clone().into_tensor_arg(),
                k,
                plan.tokens,
                plan.plane,
                residual.is_some(),
                dtype,
            );
        }
    }
    ys
}
