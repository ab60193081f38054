//! The FFN's gated activation `act(gate) · up` as one CubeCL kernel (ReLU² is four launches in Burn ops:
//! compare, mask-fill, square, product).

use burn::tensor::TensorMetadata;
use burn_cubecl::kernel::into_contiguous;
use burn_cubecl::tensor::CubeTensor;
use burn_cubecl::CubeRuntime;
use cubecl::prelude::*;

use crate::Activation;

/// Units per cube.
const UNITS: usize = 256;

/// `act(gate) · up` of one element: ReLU² when `relu2`, else SiLU (the quantization kernel computes the FFN's
/// down-projection input with it too, so both give the same bits).
#[cube]
pub(super) fn gated_value<F: Float>(g: F, up: F, #[comptime] relu2: bool) -> F {
    let a = if relu2 {
        let r = F::max(g, F::new(0.0));
        r * r
    } else {
        g / (F::new(1.0) + F::exp(-g))
    };
    a * up
}

#[cube(launch)]
fn gate_elements<F: Float>(
    gate: &Tensor<F>,
    up: &Tensor<F>,
    y: &mut Tensor<F>,
    #[comptime] relu2: bool,
    #[define(F)] _dtype: StorageType,
) {
    let i = ABSOLUTE_POS;
    if i < y.len() {
        y[i] = gated_value::<F>(gate[i], up[i], relu2);
    }
}

/// [`crate::TernaryBackend::gated`] on same-shape `gate` and `up`.
pub(crate) fn gated<R: CubeRuntime>(
    gate: CubeTensor<R>,
    up: CubeTensor<R>,
    act: Activation,
) -> CubeTensor<R> {
    let [gate, up] = [gate, up].map(into_contiguous);
    let shape = gate.shape();
    let n = shape.num_elements();
    let y = super::dense_like(&gate, shape);
    let cubes = n.div_ceil(UNITS);
    gate_elements::launch::<R>(
        &gate.client,
        CubeCount::Static(cubes as u32, 1, 1),
        CubeDim::new_1d(UNITS as u32),
        gate.clone().into_tensor_arg(),
        up.into_tensor_arg(),
        y.clone().into_tensor_arg(),
        act == Activation::Relu2,
        gate.dtype.into(),
    );
    y
}
