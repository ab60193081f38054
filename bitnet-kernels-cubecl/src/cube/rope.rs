//! NEOX rotary embedding as one CubeCL kernel (ten launches in Burn ops: slices, products, sums and the
//! concatenation). One cube per `(sequence, head, token)` row; the input is read through its strides, so the
//! heads view of a projection's output (`[b, seq, heads, d]` with dims 1 and 2 swapped) needs no copy first.

use burn::tensor::TensorMetadata;
use burn_cubecl::kernel::into_contiguous;
use burn_cubecl::ops::numeric::empty_device_dtype;
use burn_cubecl::tensor::CubeTensor;
use burn_cubecl::CubeRuntime;
use cubecl::prelude::*;

/// Units per row.
const UNITS: usize = 64;

#[cube(launch)]
fn rope_rows<F: Float>(
    x: &Tensor<F>,
    cos: &Tensor<F>,
    sin: &Tensor<F>,
    y: &mut Tensor<F>,
    start: usize,
    #[define(F)] _dtype: StorageType,
) {
    let (heads, seq, d, half) = (y.shape(1), y.shape(2), y.shape(3), cos.shape(1));
    let row = CUBE_POS_X as usize;
    let (t, head, batch) = (row % seq, (row / seq) % heads, row / (seq * heads));
    let base = batch * x.stride(0) + head * x.stride(1) + t * x.stride(2);
    let step = x.stride(3);
    let table = (start + t) * half;
    let mut i = UNIT_POS_X as usize;
    while i < d {
        let v = x[base + i * step];
        let mut out = v;
        if i < half {
            let (c, s) = (cos[table + i], sin[table + i]);
            out = v * c - x[base + (i + half) * step] * s;
        } else if i < 2 * half {
            let (c, s) = (cos[table + i - half], sin[table + i - half]);
            out = v * c + x[base + (i - half) * step] * s;
        }
        y[row * d + i] = out;
        i += UNITS;
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
    let shape = x.shape();
    let rows = shape[0] * shape[1] * shape[2];
    let y = empty_device_dtype(x.client.clone(), x.device.clone(), shape.clone(), x.dtype);
    rope_rows::launch::<R>(
        &x.client,
        CubeCount::Static(rows as u32, 1, 1),
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
