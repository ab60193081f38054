//! The CubeCL backends (wgpu/Vulkan/Metal, CUDA) get the ops from one generic impl: the ternary matmul from
//! the CubeCL kernel of [`ternary`], the rest from the Burn-ops compositions.

mod ternary;

use burn::tensor::ops::{FloatTensor, IntTensor};
use burn::tensor::{Tensor, TensorMetadata, TensorPrimitive};
use burn_cubecl::{BoolElement, CubeBackend, CubeRuntime, FloatElement, IntElement};

use crate::packing::words_per_row;
use crate::{burn_ops, TernaryBackend};

type Cube<R, F, I, BT> = CubeBackend<R, F, I, BT>;

/// `x [m, k]` with zero columns up to the packed width `16 · words_per_row(k)`.
fn padded<R: CubeRuntime, F: FloatElement, I: IntElement, BT: BoolElement>(
    x: Tensor<Cube<R, F, I, BT>, 2>,
) -> FloatTensor<Cube<R, F, I, BT>> {
    let [m, k] = x.dims();
    let pad = 16 * words_per_row(k) - k;
    let x = if pad == 0 {
        x
    } else {
        let zeros = Tensor::zeros([m, pad], &x.device());
        Tensor::cat(vec![x, zeros], 1)
    };
    x.into_primitive().tensor()
}

impl<R: CubeRuntime, F: FloatElement, I: IntElement, BT: BoolElement> TernaryBackend
    for CubeBackend<R, F, I, BT>
{
    fn ternary_matmul(
        x: FloatTensor<Self>,
        w: IntTensor<Self>,
        scales: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        let (k, blocks) = (x.shape()[1], scales.shape()[1]);
        if !ternary::supported(k, blocks) {
            return burn_ops::ternary_matmul::<Self>(x, w, scales);
        }
        let x = padded(Tensor::<Self, 2>::from_primitive(TensorPrimitive::Float(x)));
        ternary::ternary_matmul(x, w, scales, k)
    }

    fn ternary_matmul_i8(
        x: FloatTensor<Self>,
        w: IntTensor<Self>,
        scales: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        let (k, blocks) = (x.shape()[1], scales.shape()[1]);
        if !ternary::supported(k, blocks) {
            return burn_ops::ternary_matmul_i8::<Self>(x, w, scales);
        }
        let (q, s) =
            burn_ops::quantize_i8(Tensor::<Self, 2>::from_primitive(TensorPrimitive::Float(x)));
        let y = ternary::ternary_matmul(padded(q), w, scales, k);
        (Tensor::<Self, 2>::from_primitive(TensorPrimitive::Float(y)) / s)
            .into_primitive()
            .tensor()
    }
}
