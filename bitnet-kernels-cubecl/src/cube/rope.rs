//! NEOX rotary embedding as one CubeCL kernel (ten launches in Burn ops: slices, products, sums and the
//! concatenation), and the KV-cache step that rotates q and k and writes k and v into the cache in one launch.
//! One cube per `(sequence, head, token)` row; inputs are read through their strides, so the heads view of a
//! projection's output (`[b, seq, heads, d]` with dims 1 and 2 swapped) needs no copy first.

use burn::tensor::TensorMetadata;
use burn_cubecl::kernel::into_contiguous;
use burn_cubecl::ops::numeric::empty_device_dtype;
use burn_cubecl::tensor::CubeTensor;
use burn_cubecl::CubeRuntime;
use cubecl::prelude::*;

/// Units per row.
const UNITS: usize = 64;

/// Row `row` of `x [b, heads, seq, d]` (token `t` at position `start + t`) rotated when `rotate`, else copied,
/// into `out`'s row at token `offset + t`; both read and written through their strides.
#[cube]
fn write_row<F: Float>(
    x: &Tensor<F>,
    cos: &Tensor<F>,
    sin: &Tensor<F>,
    out: &mut Tensor<F>,
    row: usize,
    start: usize,
    offset: usize,
    #[comptime] rotate: bool,
) {
    let (heads, seq, d, half) = (x.shape(1), x.shape(2), x.shape(3), cos.shape(1));
    let (t, head, batch) = (row % seq, (row / seq) % heads, row / (seq * heads));
    let base = batch * x.stride(0) + head * x.stride(1) + t * x.stride(2);
    let step = x.stride(3);
    let dst = batch * out.stride(0) + head * out.stride(1) + (offset + t) * out.stride(2);
    let dst_step = out.stride(3);
    let table = (start + t) * half;
    let mut i = UNIT_POS_X as usize;
    while i < d {
        let v = x[base + i * step];
        let mut value = v;
        if comptime!(rotate) {
            if i < half {
                let (c, s) = (cos[table + i], sin[table + i]);
                value = v * c - x[base + (i + half) * step] * s;
            } else if i < 2 * half {
                let (c, s) = (cos[table + i - half], sin[table + i - half]);
                value = v * c + x[base + (i - half) * step] * s;
            }
        }
        out[dst + i * dst_step] = value;
        i += UNITS;
    }
}

#[cube(launch)]
fn rope_rows<F: Float>(
    x: &Tensor<F>,
    cos: &Tensor<F>,
    sin: &Tensor<F>,
    y: &mut Tensor<F>,
    start: usize,
    #[define(F)] _dtype: StorageType,
) {
    write_row::<F>(x, cos, sin, y, CUBE_POS_X as usize, start, 0, true);
}

/// The rows of `q`, then of `k`, then of `v`, one cube each.
#[cube(launch)]
#[allow(clippy::too_many_arguments)]
fn rope_append_rows<F: Float>(
    q: &Tensor<F>,
    k: &Tensor<F>,
    v: &Tensor<F>,
    cos: &Tensor<F>,
    sin: &Tensor<F>,
    q_out: &mut Tensor<F>,
    k_cache: &mut Tensor<F>,
    v_cache: &mut Tensor<F>,
    start: usize,
    #[define(F)] _dtype: StorageType,
) {
    let row = CUBE_POS_X as usize;
    let q_rows = q.shape(0) * q.shape(1) * q.shape(2);
    let k_rows = k.shape(0) * k.shape(1) * k.shape(2);
    if row < q_rows {
        write_row::<F>(q, cos, sin, q_out, row, start, 0, true);
    } else if row < q_rows + k_rows {
        write_row::<F>(k, cos, sin, k_cache, row - q_rows, start, start, true);
    } else {
        write_row::<F>(
            v,
            cos,
            sin,
            v_cache,
            row - q_rows - k_rows,
            start,
            start,
            false,
        );
    }
}

/// Rows of a `[b, heads, seq, d]` tensor.
fn rows<R: CubeRuntime>(x: &CubeTensor<R>) -> usize {
    let shape = x.shape();
    shape[0] * shape[1] * shape[2]
}

/// A new contiguous tensor shaped and typed as `x`.
fn like<R: CubeRuntime>(x: &CubeTensor<R>) -> CubeTensor<R> {
    empty_device_dtype(x.client.clone(), x.device.clone(), x.shape(), x.dtype)
}

/// `cache` when its buffer can be written in place, else a copy (Burn's slice assignment does the same).
fn writable<R: CubeRuntime>(cache: CubeTensor<R>) -> CubeTensor<R> {
    if cache.can_mut() && cache.is_contiguous() {
        cache
    } else {
        cache.copy()
    }
}

/// [`crate::TernaryBackend::rope`] on `x [b, heads, seq, d]` in any layout; contiguous `cos`, `sin`.
pub(crate) fn rope<R: CubeRuntime>(
    x: CubeTensor<R>,
    cos: CubeTensor<R>,
    sin: CubeTensor<R>,
    start: usize,
) -> CubeTensor<R> {
    let [cos, sin] = [cos, sin].map(into_contiguous);
    let y = like(&x);
    rope_rows::launch::<R>(
        &x.client,
        CubeCount::Static(rows(&x) as u32, 1, 1),
        CubeDim::new_1d(UNITS as u32),
        x.clone().into_tensor_arg(),
        cos.into_tensor_arg(),
        sin.into_tensor_arg(),
        y.clone().into_tensor_arg(),
        start,
        x.dtype.into(),
    );
    y
}

/// [`crate::TernaryBackend::rope_append`] as one launch: `q`, `k`, `v` in any layout, the caches written in place
/// where nothing else holds them.
#[allow(clippy::too_many_arguments)]
pub(crate) fn rope_append<R: CubeRuntime>(
    q: CubeTensor<R>,
    k: CubeTensor<R>,
    v: CubeTensor<R>,
    cos: CubeTensor<R>,
    sin: CubeTensor<R>,
    start: usize,
    k_cache: CubeTensor<R>,
    v_cache: CubeTensor<R>,
) -> [CubeTensor<R>; 3] {
    let [cos, sin] = [cos, sin].map(into_contiguous);
    let [k_cache, v_cache] = [k_cache, v_cache].map(writable);
    let q_out = like(&q);
    let count = rows(&q) + rows(&k) + rows(&v);
    rope_append_rows::launch::<R>(
        &q.client,
        CubeCount::Static(count as u32, 1, 1),
        CubeDim::new_1d(UNITS as u32),
        q.clone().into_tensor_arg(),
        k.into_tensor_arg(),
        v.into_tensor_arg(),
        cos.into_tensor_arg(),
        sin.into_tensor_arg(),
        q_out.clone().into_tensor_arg(),
        k_cache.clone().into_tensor_arg(),
        v_cache.clone().into_tensor_arg(),
        start,
        q.dtype.into(),
    );
    [q_out, k_cache, v_cache]
}
