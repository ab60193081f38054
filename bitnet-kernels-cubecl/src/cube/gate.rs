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
        let g = gate[i];
        let a = if relu2 {
            let r = F::max(g, F::new(0.0));
            r * r
        } else {
            g / (F::new(1.0) + F::exp(-g))
        };
        y[i] = a * up[i];
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
