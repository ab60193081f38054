//! NEOX rotary embedding as one CubeCL kernel (ten launches in Burn ops: slices, products, sums and the
//! concatenation), and the KV-cache step that rotates q and k and writes k and v into the cache in one launch.
//! One cube per `(sequence, head, token)` row; inputs are read through their strides, so the heads view of a
//! projection's output (`[b, seq, heads, d]` with dims 1 and 2 swapped) needs no copy first. Caches are written
//! in their layout ([`super::kv`]): f32, packed halves, or q8_0 rows (gathered, rotated and quantized in shared
//! memory).

use burn::tensor::TensorMetadata;
use burn_cubecl::kernel::into_contiguous;
use burn_cubecl::tensor::CubeTensor;
use burn_cubecl::CubeRuntime;
use cubecl::prelude::*;

use super::half::to_bits;
use super::kv::Layout;
use super::q8;

/// Units per row.
const UNITS: usize = 64;

/// Element `i` of the row of `x` at `base` (elements `step` apart), rotated with the table row at `table`
/// when `rotate`.
#[cube]
#[allow(clippy::too_many_arguments)]
fn element<F: Float>(
    x: &Tensor<F>,
    cos: &Tensor<F>,
    sin: &Tensor<F>,
    base: usize,
    step: usize,
    table: usize,
    i: usize,
    #[comptime] rotate: bool,
) -> F {
    let half = cos.shape(1);
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
    value
}

/// Where row `row` of `x [b, heads, seq, d]` (token `t`, at position `start + t`) goes to `out`'s row at token
/// `offset + t`: its first element in `x`, their step, its first element in `out`, and its row of the RoPE tables.
#[cube]
fn places<F: Float, K: Numeric>(
    x: &Tensor<F>,
    cos: &Tensor<F>,
    out: &Tensor<K>,
    row: usize,
    start: usize,
    offset: usize,
) -> (usize, usize, usize, usize) {
    let (heads, seq) = (x.shape(1), x.shape(2));
    let (t, head, batch) = (row % seq, (row / seq) % heads, row / (seq * heads));
    let base = batch * x.stride(0) + head * x.stride(1) + t * x.stride(2);
    let dst = batch * out.stride(0) + head * out.stride(1) + (offset + t) * out.stride(2);
    (base, x.stride(3), dst, (start + t) * cos.shape(1))
}

/// Row `row` of `x [b, heads, seq, d]` (token `t` at position `start + t`) rotated when `rotate`, else copied,
/// into `out`'s row at token `offset + t`; both read and written through their strides. A `packed` row holds
/// elements `j` and `j + d/2` as the low and high IEEE halves of its word `j` (see [`super::half`]).
#[cube]
#[allow(clippy::too_many_arguments)]
fn write_row<F: Float, K: Numeric>(
    x: &Tensor<F>,
    cos: &Tensor<F>,
    sin: &Tensor<F>,
    out: &mut Tensor<K>,
    row: usize,
    start: usize,
    offset: usize,
    #[comptime] rotate: bool,
    #[comptime] packed: bool,
) {
    let d = x.shape(3);
    let (base, step, dst, table) = places::<F, K>(x, cos, out, row, start, offset);
    let dst_step = out.stride(3);
    let mut words = d;
    if comptime!(packed) {
        words = d / 2;
    }
    let mut j = UNIT_POS_X as usize;
    while j < words {
        let low = element::<F>(x, cos, sin, base, step, table, j, rotate);
        if comptime!(packed) {
            let high = element::<F>(x, cos, sin, base, step, table, j + words, rotate);
            let word = to_bits(f32::cast_from(low)) | (to_bits(f32::cast_from(high)) << 16u32);
            out[dst + j * dst_step] = K::reinterpret(word);
        } else {
            out[dst + j * dst_step] = K::cast_from(low);
        }
        j += UNITS;
    }
}

/// [`write_row`] into a q8_0 cache (see [`super::q8`]): the row of `d = width` values gathered into shared
/// memory, rotated in chunks of `chunk` (scale `scale`), and quantized. Every unit of the cube must call it.
#[cube]
#[allow(clippy::too_many_arguments)]
fn write_q8_row<F: Float, K: Numeric>(
    x: &Tensor<F>,
    cos: &Tensor<F>,
    sin: &Tensor<F>,
    out: &mut Tensor<K>,
    row: usize,
    start: usize,
    chunk: usize,
    scale: f32,
    #[comptime] rotate: bool,
    #[comptime] width: usize,
) {
    let (base, step, dst, table) = places::<F, K>(x, cos, out, row, start, start);
    let mut values = SharedMemory::<f32>::new(width);
    let mut ids = SharedMemory::<f32>::new(comptime!(width / q8::BLOCK));
    let mut j = UNIT_POS_X as usize;
    while j < width {
        values[j] = f32::cast_from(element::<F>(x, cos, sin, base, step, table, j, rotate));
        j += UNITS;
    }
    sync_cube();
    q8::rotate(&mut values, width, chunk, scale, UNITS);
    q8::store::<K>(&values, &mut ids, out, dst, width, UNITS);
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
    write_row::<F, F>(x, cos, sin, y, CUBE_POS_X as usize, start, 0, true, false);
}

/// Row `row` of `x` (keys, rotated when `rotate`, or values) into its cache in the layout of `planes` parts a
/// word ([`Layout::planes`]): for q8_0 turned in chunks of `chunk` (scale `scale`) and quantized, rows `width`
/// values long. Every unit of the cube must call it.
#[cube]
#[allow(clippy::too_many_arguments)]
fn write_cache_row<F: Float, K: Numeric>(
    x: &Tensor<F>,
    cos: &Tensor<F>,
    sin: &Tensor<F>,
    cache: &mut Tensor<K>,
    row: usize,
    start: usize,
    chunk: usize,
    scale: f32,
    #[comptime] rotate: bool,
    #[comptime] planes: usize,
    #[comptime] width: usize,
) {
    if comptime!(planes == q8::PLANES) {
        write_q8_row::<F, K>(x, cos, sin, cache, row, start, chunk, scale, rotate, width);
    } else {
        write_row::<F, K>(
            x,
            cos,
            sin,
            cache,
            row,
            start,
            start,
            rotate,
            comptime!(planes == 2),
        );
    }
}

/// The rows of `q`, then of `k`, then of `v`, one cube each, the keys and values written into their caches by
/// [`write_cache_row`] (a q8_0 cache's with the chunks and scales of [`q8::rotations`]).
#[cube(launch)]
#[allow(clippy::too_many_arguments)]
fn rope_append_rows<F: Float, K: Numeric>(
    q: &Tensor<F>,
    k: &Tensor<F>,
    v: &Tensor<F>,
    cos: &Tensor<F>,
    sin: &Tensor<F>,
    q_out: &mut Tensor<F>,
    k_cache: &mut Tensor<K>,
    v_cache: &mut Tensor<K>,
    start: usize,
    k_chunk: usize,
    k_scale: f32,
    v_chunk: usize,
    v_scale: f32,
    #[comptime] planes: usize,
    #[comptime] width: usize,
    #[define(F, K)] _dtypes: [StorageType; 2],
) {
    let row = CUBE_POS_X as usize;
    let q_rows = q.shape(0) * q.shape(1) * q.shape(2);
    let k_rows = k.shape(0) * k.shape(1) * k.shape(2);
    if row < q_rows {
        write_row::<F, F>(q, cos, sin, q_out, row, start, 0, true, false);
    } else if row < q_rows + k_rows {
        let row = row - q_rows;
        write_cache_row::<F, K>(
            k, cos, sin, k_cache, row, start, k_chunk, k_scale, true, planes, width,
        );
    } else {
        let row = row - q_rows - k_rows;
        write_cache_row::<F, K>(
            v, cos, sin, v_cache, row, start, v_chunk, v_scale, false, planes, width,
        );
    }
}

/// Rows of a `[b, heads, seq, d]` tensor.
fn rows<R: CubeRuntime>(x: &CubeTensor<R>) -> usize {
    let shape = x.shape();
    shape[0] * shape[1] * shape[2]
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
    let y = super::dense_like(&x, x.shape());
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
    let q_out = super::dense_like(&q, q.shape());
    let count = rows(&q) + rows(&k) + rows(&v);
    let layout = Layout::of(&k_cache);
    let d = k.shape()[3];
    let [(k_chunk, k_scale), (v_chunk, v_scale)] = q8::rotations(d);
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
        k_chunk,
        k_scale,
        v_chunk,
        v_scale,
        layout.planes(),
        // Only a q8_0 row is gathered in shared memory.
        if layout == Layout::Q8_0 { d } else { q8::BLOCK },
        [q.dtype.into(), k_cache.dtype.into()],
    );
    [q_out, k_cache, v_cache]
}
