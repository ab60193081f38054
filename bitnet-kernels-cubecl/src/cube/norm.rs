//! RMSNorm as one CubeCL kernel (seven launches in Burn ops): one cube per row sums the squares with a
//! shared-memory tree, then writes `x · (1 / sqrt(mean + eps)) · weight`.

use burn::tensor::TensorMetadata;
use burn_cubecl::kernel::into_contiguous;
use burn_cubecl::tensor::CubeTensor;
use burn_cubecl::CubeRuntime;
use cubecl::prelude::*;

use super::gate::gated_value;
use super::output;
use super::quantize::UNITS;
use super::rows::tree;

/// Element `i` of the rows being normalized: `x[i]`, or with `gated` the FFN's `act(x[i]) · up[i]` (see
/// [`super::gate::gated_value`]; ReLU² when `relu2`), computed where it is read instead of by its own launch.
#[cube]
pub(super) fn input<F: Float>(
    x: &Tensor<F>,
    up: &Tensor<F>,
    i: usize,
    #[comptime] gated: bool,
    #[comptime] relu2: bool,
) -> F {
    let mut v = x[i];
    if comptime!(gated) {
        v = gated_value::<F>(v, up[i], relu2);
    }
    v
}

/// `1 / sqrt(mean(v²) + eps)` of the `size` values [`input`] gives from `base` on, summed by [`UNITS`] units in
/// a fixed order (the fused norm-and-quantize kernel calls it too, so both give the same bits). Every unit of
/// the cube must call it.
#[cube]
#[allow(clippy::too_many_arguments)]
pub(super) fn inv_rms<F: Float>(
    x: &Tensor<F>,
    up: &Tensor<F>,
    base: usize,
    size: usize,
    eps: f32,
    #[comptime] gated: bool,
    #[comptime] relu2: bool,
) -> F {
    let unit = UNIT_POS_X as usize;
    let mut sum = F::new(0.0);
    let mut j = unit;
    while j < size {
        let v = input::<F>(x, up, base + j, gated, relu2);
        sum += v * v;
        j += UNITS;
    }
    let mut shared = SharedMemory::<F>::new(UNITS);
    shared[unit] = sum;
    tree::<F>(&mut shared, unit, UNITS, false);
    F::new(1.0) / F::sqrt(shared[0] / F::cast_from(size) + F::cast_from(eps))
}

#[cube(launch)]
fn rms_rows<F: Float>(
    x: &Tensor<F>,
    weight: &Tensor<F>,
    y: &mut Tensor<F>,
    eps: f32,
    #[define(F)] _dtype: StorageType,
) {
    let size = x.shape(1);
    let base = CUBE_POS_X as usize * size;
    let inv = inv_rms::<F>(x, x, base, size, eps, false, false);
    let mut j = UNIT_POS_X as usize;
    while j < size {
        y[base + j] = x[base + j] * inv * weight[j];
        j += UNITS;
    }
}

/// [`crate::TernaryBackend::rms_norm`] of `x [rows, size]` with `weight [size]`.
pub(crate) fn rms_norm<R: CubeRuntime>(
    x: CubeTensor<R>,
    weight: CubeTensor<R>,
    eps: f64,
) -> CubeTensor<R> {
    let [x, weight] = [x, weight].map(into_contiguous);
    let (rows, size) = (x.shape()[0], x.shape()[1]);
    let y = output(&x, rows, size);
    rms_rows::launch::<R>(
        &x.client,
        CubeCount::Static(rows as u32, 1, 1),
        CubeDim::new_1d(UNITS as u32),
        x.clone().into_tensor_arg(),
        weight.into_tensor_arg(),
        y.clone().into_tensor_arg(),
        eps as f32,
        x.dtype.into(),
    );
    y
}
