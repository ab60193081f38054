//! Causal grouped-query attention over the KV cache as one CubeCL kernel (in Burn ops it is a dozen launches:
//! mask, two matmuls, the softmax's reductions and element-wise steps). One cube per query row walks the visible
//! keys in chunks of [`UNITS`] positions with an online softmax: each unit scores one key of the chunk, the
//! cube takes the chunk's maximum and sum with shared-memory trees, and the units then add the chunk's weighted
//! values to their slice of the output row (consecutive units read consecutive values: coalesced). Caches of
//! packed halves ([`super::half`]) and q8_0 words ([`super::q8`]) are unpacked in registers: a vector of words
//! is two or four vectors of the row; with a q8_0 cache the query is turned by the keys' rotation first and the
//! output turned back by the values'.

use burn::tensor::TensorMetadata;
use burn_cubecl::kernel::into_contiguous;
use burn_cubecl::tensor::CubeTensor;
use burn_cubecl::CubeRuntime;
use cubecl::prelude::*;

use super::half::to_float;
use super::kv::Layout;
use super::q8;
use super::rows::tree;

/// Units per query row, and keys per chunk.
const UNITS: usize = 128;
/// Below every score: the start of a running maximum, and the score of positions past the causal limit.
const LOWEST: f32 = -3.0e38;

/// Plane `p` of a vector of cache words in a layout of `planes` ([`Layout::planes`]), unscaled for q8_0.
#[cube]
fn plane<F: Float, K: Numeric, N: Size>(
    w: Vector<K, N>,
    #[comptime] p: usize,
    #[comptime] planes: usize,
) -> Vector<F, N> {
    if comptime!(planes == q8::PLANES) {
        q8::plane::<F, K, N>(w, p)
    } else if comptime!(planes == 2) {
        to_float::<F, K, N>(w, comptime!(p == 1))
    } else {
        Vector::<F, N>::cast_from(w)
    }
}

/// Plane `p` of word vector `c` of the cached row at `row` ([`plane`]), scaled for q8_0 (the scale of the
/// block its first element is in: a vector's elements share a block, see [`cached_attention`]).
#[cube]
#[allow(clippy::too_many_arguments)]
fn cached<F: Float, K: Numeric, N: Size>(
    cache: &Tensor<Vector<K, N>>,
    row: usize,
    c: usize,
    w: Vector<K, N>,
    #[comptime] p: usize,
    #[comptime] planes: usize,
    #[comptime] words: usize,
    #[comptime] width: usize,
) -> Vector<F, N> {
    let mut x = plane::<F, K, N>(w, p, planes);
    if comptime!(planes == q8::PLANES) {
        let first = comptime!(p * width / q8::PLANES) + c * cache.vector_size();
        let s = q8::scale::<F, K, N>(cache, row, words, first / q8::BLOCK);
        x *= Vector::<F, N>::new(s);
    }
    x
}

/// Stores the vector `x` as elements `j · N..` of `s`.
#[cube]
fn spill<F: Float, N: Size>(s: &mut SharedMemory<f32>, j: usize, x: Vector<F, N>) {
    #[unroll]
    for l in 0..N::value() {
        s[j * N::value() + l] = f32::cast_from(x[l]);
    }
}

/// Elements `j · N..` of `s` as a vector.
#[cube]
fn gather<F: Float, N: Size>(s: &SharedMemory<f32>, j: usize) -> Vector<F, N> {
    let mut x = Vector::<F, N>::new(F::new(0.0));
    #[unroll]
    for l in 0..N::value() {
        x[l] = F::cast_from(s[j * N::value() + l]);
    }
    x
}

#[cube(launch)]
#[allow(clippy::too_many_arguments)]
fn attention_rows<F: Float, K: Numeric, N: Size>(
    q: &Tensor<Vector<F, N>>,
    k: &Tensor<Vector<K, N>>,
    v: &Tensor<Vector<K, N>>,
    out: &mut Tensor<Vector<F, N>>,
    len: usize,
    sqrt_d: f32,
    k_chunk: usize,
    k_scale: f32,
    v_chunk: usize,
    v_scale: f32,
    #[comptime] width: usize,
    #[comptime] vectors: usize,
    #[comptime] planes: usize,
    #[comptime] row_vectors: usize,
    #[define(F, K)] _dtypes: [StorageType; 2],
) {
    let (heads, seq, kv_heads, max_len) = (q.shape(1), q.shape(2), k.shape(1), k.shape(2));
    let query = CUBE_POS_X as usize;
    let unit = UNIT_POS_X as usize;
    let (i, head, batch) = (query % seq, (query / seq) % heads, query / (seq * heads));
    let kv = head / (heads / kv_heads);
    // Vectors of a cache row's values: word vector `c` also holds the row's vectors `c + p · words`.
    let words = comptime!(vectors / planes);
    let quantized = comptime!(planes == q8::PLANES);
    let cache = (batch * kv_heads + kv) * max_len * row_vectors;
    let visible = len - seq + i + 1;
    let per_unit = comptime!(words.div_ceil(UNITS));

    let mut qs = SharedMemory::<Vector<F, N>>::new(vectors);
    // A q8_0 cache's rows are rotated: the query and output rows pass through here to be turned likewise.
    let mut turned = SharedMemory::<f32>::new(comptime!(if quantized { width } else { 1 }));
    let mut j = unit;
    if comptime!(quantized) {
        while j < vectors {
            spill::<F, N>(&mut turned, j, q[query * vectors + j]);
            j += UNITS;
        }
        sync_cube();
        q8::rotate(&mut turned, width, k_chunk, k_scale, UNITS);
        j = unit;
        while j < vectors {
            qs[j] = gather::<F, N>(&turned, j);
            j += UNITS;
        }
    } else {
        while j < vectors {
            qs[j] = q[query * vectors + j];
            j += UNITS;
        }
    }
    let mut weights = SharedMemory::<F>::new(UNITS);
    let mut red = SharedMemory::<F>::new(UNITS);
    let mut acc = Array::<Vector<F, N>>::new(comptime!(per_unit * planes));
    #[unroll]
    for e in 0..comptime!(per_unit * planes) {
        acc[e] = Vector::<F, N>::new(F::new(0.0));
    }
    let (mut run_max, mut run_sum) = (F::new(LOWEST), F::new(0.0));
    sync_cube();
    let mut start = 0;
    while start < visible {
        let key = start + unit;
        let mut score = F::new(LOWEST);
        if key < visible {
            let row = cache + key * row_vectors;
            let mut dot = Vector::<F, N>::new(F::new(0.0));
            for c in 0..words {
                let w = k[row + c];
                #[unroll]
                for p in 0..planes {
                    dot += qs[c + p * words]
                        * cached::<F, K, N>(k, row, c, w, p, planes, words, width);
                }
            }
            let mut sum = F::new(0.0);
            #[unroll]
            for l in 0..N::value() {
                sum += dot[l];
            }
            score = sum / F::cast_from(sqrt_d);
        }
        red[unit] = score;
        tree::<F>(&mut red, unit, UNITS, true);
        let new_max = F::max(run_max, red[0]);
        let mut p = F::new(0.0);
        if key < visible {
            p = F::exp(score - new_max);
        }
        sync_cube();
        weights[unit] = p;
        red[unit] = p;
        tree::<F>(&mut red, unit, UNITS, false);
        let correction = F::exp(run_max - new_max);
        run_sum = run_sum * correction + red[0];
        run_max = new_max;
        let keys = usize::min(UNITS, visible - start);
        #[unroll]
        for e in 0..per_unit {
            let c = unit + e * UNITS;
            if c < words {
                let scale = Vector::<F, N>::new(correction);
                #[unroll]
                for p in 0..planes {
                    acc[e * planes + p] = acc[e * planes + p] * scale;
                }
                for t in 0..keys {
                    let weight = Vector::<F, N>::new(weights[t]);
                    let row = cache + (start + t) * row_vectors;
                    let w = v[row + c];
                    #[unroll]
                    for p in 0..planes {
                        let x = cached::<F, K, N>(v, row, c, w, p, planes, words, width);
                        acc[e * planes + p] += weight * x;
                    }
                }
            }
        }
        sync_cube();
        start += UNITS;
    }
    let total = Vector::<F, N>::new(run_sum);
    let row = ((batch * seq + i) * heads + head) * vectors;
    #[unroll]
    for e in 0..per_unit {
        let c = unit + e * UNITS;
        if c < words {
            #[unroll]
            for p in 0..planes {
                let y = acc[e * planes + p] / total;
                if comptime!(quantized) {
                    spill::<F, N>(&mut turned, c + p * words, y);
                } else {
                    out[row + c + p * words] = y;
                }
            }
        }
    }
    if comptime!(quantized) {
        // Turned back from the rotation of a q8_0 cache's values (its own inverse).
        sync_cube();
        q8::rotate(&mut turned, width, v_chunk, v_scale, UNITS);
        j = unit;
        while j < vectors {
            out[row + j] = gather::<F, N>(&turned, j);
            j += UNITS;
        }
    }
}

/// [`crate::TernaryBackend::cached_attention`]: `q [b, heads, seq, d]`, caches `[b, kv_heads, max_len, _]` in
/// one of the [`Layout`]s of which `len` positions are valid; the output is `[b, seq, heads, d]`.
pub(crate) fn cached_attention<R: CubeRuntime>(
    q: CubeTensor<R>,
    k: CubeTensor<R>,
    v: CubeTensor<R>,
    len: usize,
) -> CubeTensor<R> {
    let [q, k, v] = [q, k, v].map(into_contiguous);
    let layout = Layout::of(&k);
    let shape = q.shape();
    let d = shape[3];
    let row = layout.row(d);
    // One width for the query's vectors and the cache's: a row's values, and its q8_0 scales, split into them.
    let vector = super::vector_width(row);
    let out_shape = burn::tensor::Shape::new([shape[0], shape[2], shape[1], d]);
    let out = super::dense_like(&q, out_shape);
    // Used by the kernel for q8_0 caches only.
    let [(k_chunk, k_scale), (v_chunk, v_scale)] = q8::rotations(d);
    attention_rows::launch::<R>(
        &q.client,
        CubeCount::Static((shape[0] * shape[1] * shape[2]) as u32, 1, 1),
        CubeDim::new_1d(UNITS as u32),
        vector,
        q.clone().into_tensor_arg(),
        k.clone().into_tensor_arg(),
        v.into_tensor_arg(),
        out.clone().into_tensor_arg(),
        len,
        (d as f32).sqrt(),
        k_chunk,
        k_scale,
        v_chunk,
        v_scale,
        d,
        d / vector,
        layout.planes(),
        row / vector,
        [q.dtype.into(), k.dtype.into()],
    );
    out
}
