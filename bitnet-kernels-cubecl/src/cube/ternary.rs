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

use super::norm::inv_rms;
use super::output;
use super::quantize::{level, token_scale, UNITS};
use super::rows::{launch, row_totals, LANES, ROWS, VECTOR};
use super::tiles::{self, ternary_tiles, TILE};
use crate::packing::words_per_row;

// The fused quantization reduces over the row kernel's units in the quantization kernel's order.
const _: () = assert!(LANES * ROWS == UNITS);

/// From this many tokens on, the tiled kernel of [`tiles`] (each word decoded once per [`TILE`] tokens) takes
/// over from the row kernel (once per 8): half a tile, below which most of a tile would be padding.
const TILED_FROM_TOKENS: usize = TILE / 2;

/// Every layer's rows in one launch (decode runs q/k/v, and gate/up, as one kernel each): the cubes are laid
/// out layer after layer, and each computes [`ROWS`] rows of the layer it falls in. With `add` (one layer),
/// the residual `r` is added to the outputs. `sr` is the token divisors `s` of levels `x`; with `fused`, `x`
/// holds raw activations instead, `sr` the same tensor read by element, and each cube normalizes them by
/// `norm_w` (when `norm`) and quantizes them itself, in the arithmetic and summation order of
/// [`super::quantize`], so the levels are the same bits (one launch instead of two per matmul).
#[cube(launch)]
#[allow(clippy::too_many_arguments)]
fn ternary_rows<F: Float, N: Size, L: Size>(
    x: &Tensor<Vector<F, N>>,
    sr: &Tensor<F>,
    norm_w: &Tensor<F>,
    w: &Sequence<Tensor<Vector<u32, L>>>,
    scales: &Sequence<Tensor<F>>,
    y: &mut Sequence<Tensor<F>>,
    r: &Tensor<F>,
    k: usize,
    eps: f32,
    #[comptime] tokens: usize,
    #[comptime] plane: bool,
    #[comptime] add: bool,
    #[comptime] fused: bool,
    #[comptime] norm: bool,
    #[define(F)] _dtype: StorageType,
) {
    let cube = CUBE_POS_X as usize;
    let mut levels = SharedMemory::<F>::new(comptime!(2 * tokens));
    if comptime!(fused) {
        token_levels::<F>(sr, norm_w, &mut levels, eps, tokens, norm);
    }
    let mut first = 0usize;
    #[unroll]
    for l in 0..w.len() {
        let cubes = w.index(l).shape(0).div_ceil(ROWS);
        if cube >= first && cube < first + cubes {
            layer_rows::<F, N, L>(
                x,
                sr,
                norm_w,
                &levels,
                w.index(l),
                scales.index(l),
                y.index_mut(l),
                r,
                k,
                cube - first,
                tokens,
                plane,
                add,
                fused,
                norm,
            );
        }
        first += cubes;
    }
}

/// For each of the cube's tokens of raw `x [m, k]`: `levels[t]` the RMSNorm's `1 / rms` (1 without `norm`) and
/// `levels[tokens + t]` the token scale, as [`super::quantize`] computes them. Every unit of the cube must call it.
#[cube]
fn token_levels<F: Float>(
    x: &Tensor<F>,
    norm_w: &Tensor<F>,
    levels: &mut SharedMemory<F>,
    eps: f32,
    #[comptime] tokens: usize,
    #[comptime] norm: bool,
) {
    let (m, k) = (x.shape(0), x.shape(1));
    let unit = UNIT_POS_Y as usize * LANES + UNIT_POS_X as usize;
    let first = CUBE_POS_Y as usize * tokens;
    // One scratch for every reduction: shared memory is scarce (32 KiB on lavapipe, where one per token and
    // reduction, with two layers' row sums, overflowed it and the launch silently did nothing).
    let mut scratch = SharedMemory::<F>::new(UNITS);
    for t in 0..tokens {
        if first + t < m {
            let base = (first + t) * k;
            let mut inv = F::new(1.0);
            if comptime!(norm) {
                inv = inv_rms::<F>(x, base, k, eps, unit, &mut scratch);
            }
            let scale = token_scale::<F>(x, norm_w, base, k, inv, unit, &mut scratch, norm);
            if unit == 0 {
                levels[t] = inv;
                levels[tokens + t] = scale;
            }
        }
    }
    sync_cube();
}

/// Rows `cube · ROWS ..` of one layer for the cube's tokens, plus `r [m, n]` when `add`; with `fused`, the
/// activations quantized here with the cube's [`token_levels`].
#[cube]
#[allow(clippy::too_many_arguments)]
fn layer_rows<F: Float, N: Size, L: Size>(
    x: &Tensor<Vector<F, N>>,
    s: &Tensor<F>,
    norm_w: &Tensor<F>,
    levels: &SharedMemory<F>,
    w: &Tensor<Vector<u32, L>>,
    scales: &Tensor<F>,
    y: &mut Tensor<F>,
    r: &Tensor<F>,
    k: usize,
    cube: usize,
    #[comptime] tokens: usize,
    #[comptime] plane: bool,
    #[comptime] add: bool,
    #[comptime] fused: bool,
    #[comptime] norm: bool,
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
                            let mut a = x[((first + t) * kw + col) * per_word + v];
                            if comptime!(fused) {
                                #[unroll]
                                for l in 0..VECTOR {
                                    let mut e = a[l];
                                    if comptime!(norm) {
                                        e = e * levels[t] * norm_w[col * 16 + v * VECTOR + l];
                                    }
                                    a[l] = level::<F>(e, levels[tokens + t]);
                                }
                            }
                            sum += a * trits[v];
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
                let divisor = if comptime!(fused) {
                    levels[tokens + t]
                } else {
                    s[first + t]
                };
                let mut value = acc[t] / divisor;
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

/// The activations of a ternary launch.
pub(crate) enum Acts<R: CubeRuntime> {
    /// `x [m, 16 · words]` (int8 levels or float activations, zero past `k`) and the token divisors `s [m, 1]`.
    Levels(CubeTensor<R>, CubeTensor<R>),
    /// Raw activations `[m, k]`, to be normalized by the RMSNorm `(weight, eps)` when given and quantized per
    /// token as [`super::quantize::quantize_i8`] does.
    Raw(CubeTensor<R>, Option<(CubeTensor<R>, f64)>),
}

/// `y_i [m, n_i] = x [m, k] · (trits_i ⊙ scales_i)ᵀ / s[m]` for every layer `(w_i [n_i, words], scales_i
/// [n_i, blocks_i])` (see [`supported`]) on `acts`, plus `residual [m, n]` when given (one layer). Short inputs
/// take one launch for all layers, the addition included, and quantize raw activations in it when rows are whole
/// packed words (a decode step's matmul is then one launch, not two); from [`TILED_FROM_TOKENS`] tokens on, raw
/// activations are quantized by their own launch, each layer is one tiled launch and the addition another.
pub(crate) fn ternary_matmuls<R: CubeRuntime>(
    acts: Acts<R>,
    layers: Vec<(CubeTensor<R>, CubeTensor<R>)>,
    k: usize,
    residual: Option<CubeTensor<R>>,
) -> Vec<CubeTensor<R>> {
    assert!(
        residual.is_none() || layers.len() == 1,
        "a residual is added to one layer"
    );
    let kw = words_per_row(k);
    let m = match &acts {
        Acts::Levels(x, _) | Acts::Raw(x, _) => x.shape()[0],
    };
    let acts = match acts {
        Acts::Raw(x, norm) if m >= TILED_FROM_TOKENS || kw * 16 != k => {
            let (q, s) = super::quantize::quantize_i8(x, norm, kw * 16);
            Acts::Levels(q, s)
        }
        Acts::Raw(x, norm) => Acts::Raw(
            into_contiguous(x),
            norm.map(|(w, eps)| (into_contiguous(w), eps)),
        ),
        Acts::Levels(x, s) => Acts::Levels(into_contiguous(x), into_contiguous(s)),
    };
    let residual = residual.map(into_contiguous);
    let layers: Vec<_> = layers
        .into_iter()
        .map(|(w, scales)| (into_contiguous(w), into_contiguous(scales)))
        .collect();
    let x = match &acts {
        Acts::Levels(x, _) | Acts::Raw(x, _) => x.clone(),
    };
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
    match acts {
        Acts::Levels(x, s) if m >= TILED_FROM_TOKENS => {
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
        }
        acts => {
            // (levels, divisors or the raw activations again, the norm's weight, its eps, fused, normed)
            let (x, sr, norm_w, eps, fused, normed) = match acts {
                Acts::Levels(x, s) => (x, s.clone(), s, 0.0, false, false),
                Acts::Raw(x, Some((w, eps))) => (x.clone(), x, w, eps as f32, true, true),
                Acts::Raw(x, None) => (x.clone(), x.clone(), x, 0.0, true, false),
            };
            // x, sr, the norm's weight and r, then w, scales and y per layer: as many layers per launch as the
            // device binds buffers (WebGPU in Chromium binds 10 storage buffers: two layers, where lavapipe and
            // CUDA take all three)
            let per_launch =
                ((client.properties().hardware.max_bindings as usize).saturating_sub(4) / 3).max(1);
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
                    sr.clone().into_tensor_arg(),
                    norm_w.clone().into_tensor_arg(),
                    w,
                    scales,
                    out,
                    residual.as_ref().unwrap_or(&sr).clone().into_tensor_arg(),
                    k,
                    eps,
                    plan.tokens,
                    plan.plane,
                    residual.is_some(),
                    fused,
                    normed,
                    dtype,
                );
            }
        }
    }
    ys
}
