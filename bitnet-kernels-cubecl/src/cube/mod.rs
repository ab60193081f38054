//! The CubeCL backends (wgpu/Vulkan/Metal, CUDA) get the ops from one generic impl: the ternary matmul and
//! the int8 head from the CubeCL kernels of [`ternary`] and [`int8`], the rest from the Burn-ops compositions.

mod int8;
mod rows;
mod ternary;
mod tiles;

use burn::tensor::ops::{FloatTensor, IntTensor};
use burn::tensor::{Tensor, TensorMetadata, TensorPrimitive};
use burn_cubecl::{BoolElement, CubeBackend, CubeRuntime, FloatElement, IntElement};

use crate::packing::{i8_words_per_row, words_per_row, I8_PER_WORD, TRITS_PER_WORD};
use crate::{burn_ops, TernaryBackend};

type Cube<R, F, I, BT> = CubeBackend<R, F, I, BT>;

/// `x [m, k]` with zero columns up to the packed width `width`.
fn padded<R: CubeRuntime, F: FloatElement, I: IntElement, BT: BoolElement>(
    x: Tensor<Cube<R, F, I, BT>, 2>,
    width: usize,
) -> FloatTensor<Cube<R, F, I, BT>> {
    let [m, k] = x.dims();
    let pad = width - k;
    let x = if pad == 0 {
        x
    } else {
        let zeros = Tensor::zeros([m, pad], &x.device());
        Tensor::cat(vec![x, zeros], 1)
    };
    x.into_primitive().tensor()
}

/// The ternary op on the CubeCL kernel, on float activations or (`int8`) on activations quantized per token as
/// [`TernaryBackend::ternary_matmul_i8`] defines; layouts the kernel does not take use the Burn-ops composition.
fn kernel_matmul<R: CubeRuntime, F: FloatElement, I: IntElement, BT: BoolElement>(
    x: FloatTensor<Cube<R, F, I, BT>>,
    w: IntTensor<Cube<R, F, I, BT>>,
    scales: FloatTensor<Cube<R, F, I, BT>>,
    int8: bool,
) -> FloatTensor<Cube<R, F, I, BT>> {
    let (k, blocks) = (x.shape()[1], scales.shape()[1]);
    let width = TRITS_PER_WORD * words_per_row(k);
    match (ternary::supported(k, blocks), int8) {
        (false, false) => burn_ops::ternary_matmul::<Cube<R, F, I, BT>>(x, w, scales),
        (false, true) => burn_ops::ternary_matmul_i8::<Cube<R, F, I, BT>>(x, w, scales),
        (true, false) => {
            let x = Tensor::<Cube<R, F, I, BT>, 2>::from_primitive(TensorPrimitive::Float(x));
            ternary::ternary_matmul(padded(x, width), w, scales, k)
        }
        (true, true) => {
            let x = Tensor::<Cube<R, F, I, BT>, 2>::from_primitive(TensorPrimitive::Float(x));
            let (q, s) = burn_ops::quantize_i8(x);
            let y = ternary::ternary_matmul(padded(q, width), w, scales, k);
            (Tensor::<Cube<R, F, I, BT>, 2>::from_primitive(TensorPrimitive::Float(y)) / s)
                .into_primitive()
                .tensor()
        }
    }
}

impl<R: CubeRuntime, F: FloatElement, I: IntElement, BT: BoolElement> TernaryBackend
    for CubeBackend<R, F, I, BT>
{
    fn ternary_matmul(
        x: FloatTensor<Self>,
        w: IntTensor<Self>,
        scales: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        kernel_matmul::<R, F, I, BT>(x, w, scales, false)
    }

    fn ternary_matmul_i8(
        x: FloatTensor<Self>,
        w: IntTensor<Self>,
        scales: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        kernel_matmul::<R, F, I, BT>(x, w, scales, true)
    }

    fn int8_matmul(
        x: FloatTensor<Self>,
        w: IntTensor<Self>,
        scales: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        let x = Tensor::<Self, 2>::from_primitive(TensorPrimitive::Float(x));
        let width = I8_PER_WORD * i8_words_per_row(x.dims()[1]);
        let (q, s) = burn_ops::quantize_i8(x);
        int8::int8_matmul(padded(q, width), s.into_primitive().tensor(), w, scales)
    }
}
