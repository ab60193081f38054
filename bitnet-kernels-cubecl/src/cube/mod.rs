//! The CubeCL backends (wgpu/Vulkan/Metal, CUDA) get the ops from one generic impl of CubeCL kernels: the
//! ternary matmul ([`ternary`], [`tiles`]), activation quantization fused with the RMSNorm before it
//! ([`quantize`]), the int8 head ([`int8`]), the float head ([`float`]),
//! RMSNorm ([`norm`]), RoPE ([`rope`]), cached attention ([`attention`]) and
//! the FFN gate ([`gate`]).
//!
//! The kernels index rows back to back, but CUDA (and HIP) allocate tensors "pitched", each row padded to a
//! 512-byte boundary unless its size is a power of two: so every kernel output and cache is allocated dense
//! ([`output`], [`dense_zeros`]), every input goes through `into_contiguous` (which copies a padded tensor),
//! and packed weights are made dense once at load ([`TernaryBackend::dense_weights`]).

mod attention;
mod float;
mod gate;
mod half;
mod int8;
mod kv;
mod norm;
mod q8;
mod quantize;
mod rope;
mod rows;
mod ternary;
mod tiles;

use burn::tensor::ops::{FloatTensor, IntTensor};
use burn::tensor::{DType, Shape, Tensor, TensorMetadata, TensorPrimitive};
use burn_cubecl::kernel::into_contiguous;
use burn_cubecl::ops::numeric::{empty_device_contiguous_dtype, zeros};
use burn_cubecl::tensor::CubeTensor;
use burn_cubecl::{BoolElement, CubeBackend, CubeRuntime, FloatElement, IntElement};

use crate::packing::{i8_words_per_row, words_per_row, I8_PER_WORD, TRITS_PER_WORD};
use crate::{burn_ops, Activation, CacheType, TernaryBackend};

type Cube<R, F, I, BT> = CubeBackend<R, F, I, BT>;

/// An uninitialized dense `[m, n]` tensor on `like`'s device, of its dtype: a kernel's output.
fn output<R: CubeRuntime>(like: &CubeTensor<R>, m: usize, n: usize) -> CubeTensor<R> {
    dense_like(like, Shape::new([m, n]))
}

/// An uninitialized dense tensor of `shape` on `like`'s device, of its dtype.
fn dense_like<R: CubeRuntime>(like: &CubeTensor<R>, shape: Shape) -> CubeTensor<R> {
    empty_device_contiguous_dtype(like.client.clone(), like.device.clone(), shape, like.dtype)
}

/// The widest vector (4, 2 or 1 elements) that rows of `len` elements split into evenly.
fn vector_width(len: usize) -> usize {
    [4, 2]
        .into_iter()
        .find(|&v| len.is_multiple_of(v))
        .unwrap_or(1)
}

/// A dense zeroed tensor: a KV cache, which the kernels write and read in place row after row.
fn dense_zeros<R: CubeRuntime>(device: &R::Device, shape: Shape, dtype: DType) -> CubeTensor<R> {
    into_contiguous(zeros(device.clone(), shape, dtype))
}

/// The one output of a one-layer [`ternary::ternary_matmuls`].
fn single<R: CubeRuntime>(mut ys: Vec<CubeTensor<R>>) -> CubeTensor<R> {
    ys.pop().expect("one output per layer")
}

/// `layers` (see [`ternary::supported`]) on `x [m, k]` (or on `act(x) · up` with `gate = (up, act)`) after one
/// kernel that normalizes by `norm` when given and quantizes per token, plus `residual` when given (one layer).
fn quantized_matmuls<R: CubeRuntime>(
    x: CubeTensor<R>,
    gate: Option<(CubeTensor<R>, Activation)>,
    norm: Option<(CubeTensor<R>, f64)>,
    layers: Vec<(CubeTensor<R>, CubeTensor<R>)>,
    residual: Option<CubeTensor<R>>,
) -> Vec<CubeTensor<R>> {
    let k = x.shape()[1];
    let (q, s) = quantize::quantize_i8(x, gate, norm, TRITS_PER_WORD * words_per_row(k));
    ternary::ternary_matmuls(q, s, layers, k, residual)
}

/// The ternary op on the CubeCL kernel, on float activations or (`int8`) on activations quantized per token as
/// [`TernaryBackend::ternary_matmul_i8`] defines; layouts the kernel does not take use the Burn-ops composition.
fn kernel_matmul<R: CubeRuntime, F: FloatElement, I: IntElement, BT: BoolElement>(
    x: FloatTensor<Cube<R, F, I, BT>>,
    w: IntTensor<Cube<R, F, I, BT>>,
    scales: FloatTensor<Cube<R, F, I, BT>>,
    int8: bool,
) -> FloatTensor<Cube<R, F, I, BT>> {
    let (m, k, blocks) = (x.shape()[0], x.shape()[1], scales.shape()[1]);
    let width = TRITS_PER_WORD * words_per_row(k);
    match (ternary::supported(k, blocks), int8) {
        (false, false) => burn_ops::ternary_matmul::<Cube<R, F, I, BT>>(x, w, scales),
        (false, true) => burn_ops::ternary_matmul_i8::<Cube<R, F, I, BT>>(x, w, scales),
        (true, false) => {
            let x = Tensor::<Cube<R, F, I, BT>, 2>::from_primitive(TensorPrimitive::Float(x));
            let device = x.device();
            let x = if width == k {
                x
            } else {
                Tensor::cat(vec![x, Tensor::zeros([m, width - k], &device)], 1)
            };
            let ones = Tensor::<Cube<R, F, I, BT>, 2>::ones([m, 1], &device);
            let [x, ones] = [x, ones].map(|t| t.into_primitive().tensor());
            single(ternary::ternary_matmuls(
                x,
                ones,
                vec![(w, scales)],
                k,
                None,
            ))
        }
        (true, true) => single(quantized_matmuls(x, None, None, vec![(w, scales)], None)),
    }
}

impl<R: CubeRuntime, F: FloatElement, I: IntElement, BT: BoolElement> TernaryBackend
    for CubeBackend<R, F, I, BT>
{
    const CACHE_TYPES: &'static [CacheType] = &[CacheType::F16, CacheType::F32, CacheType::Q8_0];

    fn kv_cache_zeros(
        shape: [usize; 4],
        cache: CacheType,
        device: &Self::Device,
    ) -> FloatTensor<Self> {
        kv::zeros::<R>(shape, cache, device)
    }

    fn dense_weights(
        w: IntTensor<Self>,
        scales: FloatTensor<Self>,
    ) -> (IntTensor<Self>, FloatTensor<Self>) {
        (into_contiguous(w), into_contiguous(scales))
    }

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

    fn bit_linears_i8(
        x: FloatTensor<Self>,
        norm: Option<(FloatTensor<Self>, f64)>,
        layers: Vec<(IntTensor<Self>, FloatTensor<Self>)>,
    ) -> Vec<FloatTensor<Self>> {
        let k = x.shape()[1];
        if !layers
            .iter()
            .all(|(_, s)| ternary::supported(k, s.shape()[1]))
        {
            return burn_ops::bit_linears_i8::<Self>(x, norm, layers);
        }
        quantized_matmuls(x, None, norm, layers, None)
    }

    fn bit_linear_i8_residual(
        x: FloatTensor<Self>,
        norm: Option<(FloatTensor<Self>, f64)>,
        layer: (IntTensor<Self>, FloatTensor<Self>),
        residual: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        let k = x.shape()[1];
        if !ternary::supported(k, layer.1.shape()[1]) {
            return burn_ops::bit_linear_i8_residual::<Self>(x, norm, layer, residual);
        }
        single(quantized_matmuls(
            x,
            None,
            norm,
            vec![layer],
            Some(residual),
        ))
    }

    fn gated_bit_linear_i8_residual(
        gate: FloatTensor<Self>,
        up: FloatTensor<Self>,
        act: Activation,
        norm: Option<(FloatTensor<Self>, f64)>,
        layer: (IntTensor<Self>, FloatTensor<Self>),
        residual: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        let k = gate.shape()[1];
        if !ternary::supported(k, layer.1.shape()[1]) {
            return Self::bit_linear_i8_residual(Self::gated(gate, up, act), norm, layer, residual);
        }
        single(quantized_matmuls(
            gate,
            Some((up, act)),
            norm,
            vec![layer],
            Some(residual),
        ))
    }

    fn float_matmul_nt(x: FloatTensor<Self>, w: FloatTensor<Self>) -> FloatTensor<Self> {
        float::float_matmul_nt(x, w)
    }

    fn int8_matmul(
        x: FloatTensor<Self>,
        w: IntTensor<Self>,
        scales: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        let width = I8_PER_WORD * i8_words_per_row(x.shape()[1]);
        let (q, s) = quantize::quantize_i8(x, None, None, width);
        int8::int8_matmul(q, s, w, scales)
    }

    fn rms_norm(x: FloatTensor<Self>, weight: FloatTensor<Self>, eps: f64) -> FloatTensor<Self> {
        norm::rms_norm(x, weight, eps)
    }

    fn cached_attention(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        len: usize,
    ) -> FloatTensor<Self> {
        attention::cached_attention(q, k, v, len)
    }

    fn rope(
        x: FloatTensor<Self>,
        cos: FloatTensor<Self>,
        sin: FloatTensor<Self>,
        start: usize,
    ) -> FloatTensor<Self> {
        rope::rope(x, cos, sin, start)
    }

    fn rope_append(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        cos: FloatTensor<Self>,
        sin: FloatTensor<Self>,
        start: usize,
        k_cache: FloatTensor<Self>,
        v_cache: FloatTensor<Self>,
    ) -> [FloatTensor<Self>; 3] {
        rope::rope_append(q, k, v, cos, sin, start, k_cache, v_cache)
    }

    fn gated(gate: FloatTensor<Self>, up: FloatTensor<Self>, act: Activation) -> FloatTensor<Self> {
        gate::gated(gate, up, act)
    }
}
