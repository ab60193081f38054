//! Causal grouped-query attention over the KV cache as CubeCL kernels (in Burn ops it is a dozen launches:
//! mask, two matmuls, the softmax's reductions and element-wise steps). A cube of [`UNITS`] units walks a query
//! row's visible keys in chunks of [`UNITS`] positions with an online softmax ([`rows`]). A decode query has too
//! few rows to fill the device (one per head), so its keys are split among several cubes per row and a second
//! launch merges their partial sums ([`merge`]), as flash-decoding does: one cube per head would walk 4000 keys
//! alone while most of a GPU idles. The split is a function of the sequence's heads and keys alone, so a query's
//! result does not depend on the batch it shares a call with, nor a prompt row's on how the prompt was cut into
//! passes (prompt rows are never split).

mod merge;
mod rows;

use burn::tensor::{Shape, TensorMetadata};
use burn_cubecl::kernel::into_contiguous;
use burn_cubecl::tensor::CubeTensor;
use burn_cubecl::CubeRuntime;
use cubecl::prelude::*;

use super::kv::Layout;
use super::q8;

/// Units per cube, and keys per chunk.
const UNITS: usize = 128;
/// Below every score: the start of a running maximum, and the score of positions past the causal limit.
const LOWEST: f32 = -3.0e38;
/// Cubes a split aims for per multiprocessor where the device says how many it has (CUDA)...
const CUBES_PER_SM: usize = 4;
/// ... and in all where it does not (wgpu): a mid-sized GPU's multiprocessors, four cubes each.
const CUBES: usize = 256;

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

/// Writes an output row of a q8_0 cache's attention from `turned`, where every unit has [`spill`]ed its
/// vectors: turned back from the rotation of the cache's values (its own inverse) into `out` at vector `row`.
/// Every unit of the cube must call it.
#[cube]
#[allow(clippy::too_many_arguments)]
fn unturned<F: Float, N: Size>(
    turned: &mut SharedMemory<f32>,
    out: &mut Tensor<Vector<F, N>>,
    row: usize,
    v_chunk: usize,
    v_scale: f32,
    #[comptime] width: usize,
    #[comptime] vectors: usize,
) {
    sync_cube();
    q8::rotate(turned, width, v_chunk, v_scale, UNITS);
    let mut j = UNIT_POS_X as usize;
    while j < vectors {
        out[row + j] = gather::<F, N>(turned, j);
        j += UNITS;
    }
}

/// How many cubes share each query row's `len` keys, for `seq` query positions of `heads` heads per sequence:
/// for decode (`seq` 1), enough for the device's multiprocessors to hold one sequence's rows, each cube at least
/// a chunk of keys; prompt rows keep their keys whole (a pass of a few rows walks them in fewer cubes, once).
fn key_splits(multiprocessors: Option<u32>, heads: usize, seq: usize, len: usize) -> usize {
    if seq > 1 {
        return 1;
    }
    let target = multiprocessors.map_or(CUBES, |n| n as usize * CUBES_PER_SM);
    len.div_ceil(UNITS).min(target.div_ceil(heads)).max(1)
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
    let (d, rows) = (shape[3], shape[0] * shape[1] * shape[2]);
    let row = layout.row(d);
    // One width for the query's vectors and the cache's: a row's values, and its q8_0 scales, split into them.
    let vector = super::vector_width(row);
    let out = super::dense_like(&q, Shape::new([shape[0], shape[2], shape[1], d]));
    // Keys per split, a whole number of chunks; then no split is left without keys for the last query row.
    let multiprocessors = q.client.properties().hardware.num_streaming_multiprocessors;
    let span = len
        .div_ceil(key_splits(multiprocessors, shape[1], shape[2], len))
        .next_multiple_of(UNITS);
    let splits = len.div_ceil(span);
    // Split: each cube's unnormalized output row and its running maximum and sum, for the merge.
    let (partial, stats) = if splits > 1 {
        let at = |n| super::dense_like(&q, Shape::new([rows * splits, n]));
        (at(d), at(2))
    } else {
        (out.clone(), super::dense_like(&q, Shape::new([1])))
    };
    // Used by the kernels for q8_0 caches only.
    let [(k_chunk, k_scale), (v_chunk, v_scale)] = q8::rotations(d);
    rows::attention_rows::launch::<R>(
        &q.client,
        CubeCount::Static(rows as u32, splits as u32, 1),
        CubeDim::new_1d(UNITS as u32),
        vector,
        q.clone().into_tensor_arg(),
        k.clone().into_tensor_arg(),
        v.into_tensor_arg(),
        partial.clone().into_tensor_arg(),
        stats.clone().into_tensor_arg(),
        len,
        span,
        (d as f32).sqrt(),
        k_chunk,
        k_scale,
        v_chunk,
        v_scale,
        d,
        d / vector,
        layout.planes(),
        row / vector,
        splits > 1,
        [q.dtype.into(), k.dtype.into()],
    );
    if splits > 1 {
        merge::merge_splits::launch::<R>(
            &q.client,
            CubeCount::Static(rows as u32, 1, 1),
            CubeDim::new_1d(UNITS as u32),
            vector,
            partial.into_tensor_arg(),
            stats.into_tensor_arg(),
            out.clone().into_tensor_arg(),
            splits,
            v_chunk,
            v_scale,
            d,
            d / vector,
            layout.planes() == q8::PLANES,
            q.dtype.into(),
        );
    }
    out
}
