//! Causal grouped-query attention over the KV cache as one CubeCL kernel (in Burn ops it is a dozen launches:
//! mask, two matmuls, the softmax's reductions and element-wise steps). One cube per query row walks the visible
//! keys in chunks of [`UNITS`] positions with an online softmax: each unit scores one key of the chunk, the
//! cube takes the chunk's maximum and sum with shared-memory trees, and the units then add the chunk's weighted
//! values to their slice of the output row (consecutive units read consecutive values: coalesced). Caches of
//! packed halves ([`super::half`]) are unpacked in registers: a vector of words is two vectors of the row.

use burn::tensor::TensorMetadata;
use burn_cubecl::kernel::into_contiguous;
use burn_cubecl::tensor::CubeTensor;
use burn_cubecl::CubeRuntime;
use cubecl::prelude::*;

use super::half::{is_packed, to_float};

use super::rows::tree;

/// Units per query row, and keys per chunk.
const UNITS: usize = 128;
/// Below every score: the start of a running maximum, and the score of positions past the causal limit.
const LOWEST: f32 = -3.0e38;

/// Vector `c` of a cache row of `words` vectors, and (`packed`) vector `c + words` of the row.
#[cube]
fn cache_vectors<F: Float, K: Numeric, N: Size>(
    cache: &Tensor<Vector<K, N>>,
    index: usize,
    #[comptime] packed: bool,
) -> (Vector<F, N>, Vector<F, N>) {
    let w = cache[index];
    if comptime!(packed) {
        (to_float::<F, K, N>(w, false), to_float::<F, K, N>(w, true))
    } else {
        (
            Vector::<F, N>::cast_from(w),
            Vector::<F, N>::new(F::new(0.0)),
        )
    }
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
    #[comptime] vectors: usize,
    #[comptime] packed: bool,
    #[define(F, K)] _dtypes: [StorageType; 2],
) {
    let (heads, seq, kv_heads, max_len) = (q.shape(1), q.shape(2), k.shape(1), k.shape(2));
    let query = CUBE_POS_X as usize;
    let unit = UNIT_POS_X as usize;
    let (i, head, batch) = (query % seq, (query / seq) % heads, query / (seq * heads));
    let kv = head / (heads / kv_heads);
    // Vectors of a cache row: a packed row's vector `c` also holds the row's vector `c + words`.
    let words = comptime!(if packed { vectors / 2 } else { vectors });
    let cache = (batch * kv_heads + kv) * max_len * words;
    let visible = len - seq + i + 1;
    let per_unit = comptime!(words.div_ceil(UNITS));

    let mut qs = SharedMemory::<Vector<F, N>>::new(vectors);
    let mut j = unit;
    while j < vectors {
        qs[j] = q[query * vectors + j];
        j += UNITS;
    }
    let mut weights = SharedMemory::<F>::new(UNITS);
    let mut red = SharedMemory::<F>::new(UNITS);
    let mut acc = Array::<Vector<F, N>>::new(per_unit);
    let mut acc_high = Array::<Vector<F, N>>::new(per_unit);
    #[unroll]
    for e in 0..per_unit {
        acc[e] = Vector::<F, N>::new(F::new(0.0));
        acc_high[e] = Vector::<F, N>::new(F::new(0.0));
    }
    let (mut run_max, mut run_sum) = (F::new(LOWEST), F::new(0.0));
    sync_cube();
    let mut start = 0;
    while start < visible {
        let key = start + unit;
        let mut score = F::new(LOWEST);
        if key < visible {
            let mut dot = Vector::<F, N>::new(F::new(0.0));
            for c in 0..words {
                let (low, high) = cache_vectors::<F, K, N>(k, cache + key * words + c, packed);
                dot += qs[c] * low;
                if comptime!(packed) {
                    dot += qs[c + words] * high;
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
                let (mut a, mut b) = (acc[e] * scale, acc_high[e] * scale);
                for t in 0..keys {
                    let weight = Vector::<F, N>::new(weights[t]);
                    let (low, high) =
                        cache_vectors::<F, K, N>(v, cache + (start + t) * words + c, packed);
                    a += weight * low;
                    if comptime!(packed) {
                        b += weight * high;
                    }
                }
                acc[e] = a;
                acc_high[e] = b;
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
            out[row + c] = acc[e] / total;
            if comptime!(packed) {
                out[row + c + words] = acc_high[e] / total;
            }
        }
    }
}

/// [`crate::TernaryBackend::cached_attention`]: `q [b, heads, seq, d]`, caches `[b, kv_heads, max_len, d]` of
/// which `len` positions are valid; the output is `[b, seq, heads, d]`.
pub(crate) fn cached_attention<R: CubeRuntime>(
    q: CubeTensor<R>,
    k: CubeTensor<R>,
    v: CubeTensor<R>,
    len: usize,
) -> CubeTensor<R> {
    let [q, k, v] = [q, k, v].map(into_contiguous);
    let packed = is_packed(&k);
    let shape = q.shape();
    let d = shape[3];
    let words = if packed { d / 2 } else { d };
    let vector = super::vector_width(words);
    let out_shape = burn::tensor::Shape::new([shape[0], shape[2], shape[1], d]);
    let out = super::dense_like(&q, out_shape);
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
        d / vector,
        packed,
        [q.dtype.into(), k.dtype.into()],
    );
    out
}
