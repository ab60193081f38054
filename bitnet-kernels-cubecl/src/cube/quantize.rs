//! Per-token int8 quantization of activations as one CubeCL kernel (in Burn ops it is ten launches: abs, max,
//! clamp, divide, multiply, round, clamp and the zero padding): one cube per token finds the absmax with a
//! shared-memory tree, then writes `clamp(round(x · s), -128, 127)` as integer-valued floats, zero-padded to the
//! packed width, and `s = 127 / max(|x|, 1e-5)`.

use burn::tensor::TensorMetadata;
use burn_cubecl::kernel::into_contiguous;
use burn_cubecl::tensor::CubeTensor;
use burn_cubecl::CubeRuntime;
use cubecl::prelude::*;

use super::output;
use super::rows::tree;

/// Units per token.
pub(super) const UNITS: usize = 256;

#[cube(launch)]
fn quantize_rows<F: Float>(
    x: &Tensor<F>,
    q: &mut Tensor<F>,
    s: &mut Tensor<F>,
    #[define(F)] _dtype: StorageType,
) {
    let (k, width) = (x.shape(1), q.shape(1));
    let token = CUBE_POS_X as usize;
    let unit = UNIT_POS_X as usize;
    let mut amax = F::new(0.0);
    let mut j = unit;
    while j < k {
        amax = F::max(amax, F::abs(x[token * k + j]));
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
                F::round(x[token * k + j] * scale),
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

/// `(q [m, width], s [m, 1])` for `x [m, k]`: the int8 levels of each token as floats, zero columns from `k` to
/// `width`, and the token scales, with [`crate::reference::quantize_row_i8`]'s arithmetic.
pub(crate) fn quantize_i8<R: CubeRuntime>(
    x: CubeTensor<R>,
    width: usize,
) -> (CubeTensor<R>, CubeTensor<R>) {
    let x = into_contiguous(x);
    let m = x.shape()[0];
    let (q, s) = (output(&x, m, width), output(&x, m, 1));
    quantize_rows::launch::<R>(
        &x.client,
        CubeCount::Static(m as u32, 1, 1),
        CubeDim::new_1d(UNITS as u32),
        x.clone().into_tensor_arg(),
        q.clone().into_tensor_arg(),
        s.clone().into_tensor_arg(),
        x.dtype.into(),
    );
    (q, s)
}
