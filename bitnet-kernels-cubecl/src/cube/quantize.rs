//! Per-token int8 quantization of activations as one CubeCL kernel (in Burn ops it is ten launches: abs, max,
//! clamp, divide, multiply, round, clamp and the zero padding), optionally after an RMSNorm in the same kernel:
//! one cube per token finds the absmax with a shared-memory tree, then writes `clamp(round(x · s), -128, 127)`
//! as integer-valued floats, zero-padded to the packed width, and `s = 127 / max(|x|, 1e-5)`.

use burn::tensor::TensorMetadata;
use burn_cubecl::kernel::into_contiguous;
use burn_cubecl::tensor::CubeTensor;
use burn_cubecl::CubeRuntime;
use cubecl::prelude::*;

use super::norm::{input, inv_rms};
use super::output;
use super::rows::tree;
use crate::Activation;

/// Units per token.
pub(super) const UNITS: usize = 256;

/// Element `j` of row `base` as the quantization sees it: the [`input`] `v`, times `inv · weight[j]` (RMSNorm's
/// arithmetic, see [`super::norm`]) when `norm`.
#[cube]
#[allow(clippy::too_many_arguments)]
fn value<F: Float>(
    x: &Tensor<F>,
    up: &Tensor<F>,
    weight: &Tensor<F>,
    base: usize,
    j: usize,
    inv: F,
    #[comptime] norm: bool,
    #[comptime] gated: bool,
    #[comptime] relu2: bool,
) -> F {
    let mut v = input::<F>(x, up, base + j, gated, relu2);
    if comptime!(norm) {
        v = v * inv * weight[j];
    }
    v
}

#[cube(launch)]
#[allow(clippy::too_many_arguments)]
fn quantize_rows<F: Float>(
    x: &Tensor<F>,
    up: &Tensor<F>,
    weight: &Tensor<F>,
    q: &mut Tensor<F>,
    s: &mut Tensor<F>,
    eps: f32,
    #[comptime] norm: bool,
    #[comptime] gated: bool,
    #[comptime] relu2: bool,
    #[define(F)] _dtype: StorageType,
) {
    let (k, width) = (x.shape(1), q.shape(1));
    let token = CUBE_POS_X as usize;
    let unit = UNIT_POS_X as usize;
    let base = token * k;
    let mut inv = F::new(1.0);
    if comptime!(norm) {
        inv = inv_rms::<F>(x, up, base, k, eps, gated, relu2);
    }
    let mut amax = F::new(0.0);
    let mut j = unit;
    while j < k {
        let v = value::<F>(x, up, weight, base, j, inv, norm, gated, relu2);
        amax = F::max(amax, F::abs(v));
        j += UNITS;
    }
    let mut shared = SharedMemory::<F>::new(UNITS);
    shared[unit] = amax;
    tree::<F>(&mut shared, unit, UNITS, true);
    let scale = F::new(127.0) / F::max(shared[0], F::new(1e-5));
    j = unit;
    while j < width {
        let mut v = F::new(0.0);
        if j < k {
            v = F::clamp(
                F::round(value::<F>(x, up, weight, base, j, inv, norm, gated, relu2) * scale),
                F::new(-128.0),
                F::new(127.0),
            );
        }
        q[token * width + j] = v;
        j += UNITS;
    }
    if unit == 0 {
        s[token] = scale;
    }
}

/// `(q [m, width], s [m, 1])` for `x [m, k]` (or, with `gate = Some((up, act))`, for the FFN's `act(x) · up`,
/// computed here instead of by its own launch), RMS-normalized first when `norm = (weight, eps)` is given (in one
/// kernel, with [`super::norm`]'s arithmetic): the int8 levels of each token as floats, zero columns from `k`
/// to `width`, and the token scales, with [`crate::reference::quantize_row_i8`]'s arithmetic.
pub(crate) fn quantize_i8<R: CubeRuntime>(
    x: CubeTensor<R>,
    gate: Option<(CubeTensor<R>, Activation)>,
    norm: Option<(CubeTensor<R>, f64)>,
    width: usize,
) -> (CubeTensor<R>, CubeTensor<R>) {
    let x = into_contiguous(x);
    let m = x.shape()[0];
    let (q, s) = (output(&x, m, width), output(&x, m, 1));
    let fused = norm.is_some();
    // Without a norm (or a gate) the weight (or up) argument is unused: `x` stands in for it.
    let (weight, eps) = norm.map_or((x.clone(), 0.0), |(w, eps)| (into_contiguous(w), eps));
    let gated = gate.is_some();
    let (up, act) = gate.map_or((x.clone(), Activation::Relu2), |(up, act)| {
        (into_contiguous(up), act)
    });
    quantize_rows::launch::<R>(
        &x.client,
        CubeCount::Static(m as u32, 1, 1),
        CubeDim::new_1d(UNITS as u32),
        x.clone().into_tensor_arg(),
        up.into_tensor_arg(),
        weight.into_tensor_arg(),
        q.clone().into_tensor_arg(),
        s.clone().into_tensor_arg(),
        eps as f32,
        fused,
        gated,
        act == Activation::Relu2,
        x.dtype.into(),
    );
    (q, s)
}
