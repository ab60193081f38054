//! The [`TernaryBackend`] ops on Burn `Tensor`s, so model code never handles the backend's primitives. Each
//! function is the op of the same name; see it for the semantics.

use burn::tensor::{Int, Tensor, TensorPrimitive};

use crate::{Activation, StepKv, TernaryBackend};

fn float<B: TernaryBackend, const D: usize>(t: Tensor<B, D>) -> burn::tensor::ops::FloatTensor<B> {
    t.into_primitive().tensor()
}

fn tensor<B: TernaryBackend, const D: usize>(t: burn::tensor::ops::FloatTensor<B>) -> Tensor<B, D> {
    Tensor::from_primitive(TensorPrimitive::Float(t))
}

/// An RMSNorm's weight and epsilon, as the fused ops take them.
pub type Norm<B> = (Tensor<B, 1>, f64);

/// Packed ternary words `[n, ceil(k/16)]` and their scales `[n, blocks]`: one BitLinear's weights.
pub type Ternary<B> = (Tensor<B, 2, Int>, Tensor<B, 2>);

/// [`TernaryBackend::reshape`]: `t` as `dims`, without a copy where the backend can.
pub fn reshape<B: TernaryBackend, const D1: usize, const D2: usize>(
    t: Tensor<B, D1>,
    dims: [usize; D2],
) -> Tensor<B, D2> {
    tensor(B::reshape(float(t), dims.into()))
}

/// `t [..., n]` as the rows `[m, n]` the ops take ([`reshape`]).
pub fn rows<B: TernaryBackend, const D: usize>(t: Tensor<B, D>) -> Tensor<B, 2> {
    let dims = t.dims();
    reshape(t, [dims[..D - 1].iter().product(), dims[D - 1]])
}

/// [`TernaryBackend::dense_weights`]: packed weights and scales just uploaded, as the kernels read them.
pub fn dense_weights<B: TernaryBackend>((w, scales): Ternary<B>) -> Ternary<B> {
    let (w, scales) = B::dense_weights(w.into_primitive(), float(scales));
    (Tensor::from_primitive(w), tensor(scales))
}

/// [`TernaryBackend::ternary_matmul`]: `x [m, k]` by packed trits, float activations.
pub fn ternary_matmul<B: TernaryBackend>(x: Tensor<B, 2>, (w, scales): Ternary<B>) -> Tensor<B, 2> {
    tensor(B::ternary_matmul(
        float(x),
        w.into_primitive(),
        float(scales),
    ))
}

/// [`TernaryBackend::ternary_matmul_i8`]: `x [m, k]` quantized per token to int8, then by packed trits.
pub fn ternary_matmul_i8<B: TernaryBackend>(
    x: Tensor<B, 2>,
    (w, scales): Ternary<B>,
) -> Tensor<B, 2> {
    tensor(B::ternary_matmul_i8(
        float(x),
        w.into_primitive(),
        float(scales),
    ))
}

/// [`TernaryBackend::bit_linears_i8`]: `x [m, k]`, normalized by `norm` when given, by each of `layers`.
pub fn bit_linears_i8<B: TernaryBackend>(
    x: Tensor<B, 2>,
    norm: Option<Norm<B>>,
    layers: Vec<Ternary<B>>,
) -> Vec<Tensor<B, 2>> {
    let norm = norm.map(|(w, eps)| (float(w), eps));
    let layers = layers
        .into_iter()
        .map(|(w, s)| (w.into_primitive(), float(s)))
        .collect();
    B::bit_linears_i8(float(x), norm, layers)
        .into_iter()
        .map(tensor)
        .collect()
}

/// [`TernaryBackend::bit_linear_i8_residual`]: `residual [m, n] + layer(norm(x))`.
pub fn bit_linear_i8_residual<B: TernaryBackend>(
    x: Tensor<B, 2>,
    norm: Option<Norm<B>>,
    (w, scales): Ternary<B>,
    residual: Tensor<B, 2>,
) -> Tensor<B, 2> {
    let norm = norm.map(|(w, eps)| (float(w), eps));
    tensor(B::bit_linear_i8_residual(
        float(x),
        norm,
        (w.into_primitive(), float(scales)),
        float(residual),
    ))
}

/// [`TernaryBackend::float_matmul_nt`]: `x [m, k] · w [n, k]ᵀ`.
pub fn float_matmul_nt<B: TernaryBackend>(x: Tensor<B, 2>, w: Tensor<B, 2>) -> Tensor<B, 2> {
    tensor(B::float_matmul_nt(float(x), float(w)))
}

/// [`TernaryBackend::int8_matmul`]: `x [m, k]` by int8 rows `w` (packed 4 per word) with scales `[n, 1]`.
pub fn int8_matmul<B: TernaryBackend>(
    x: Tensor<B, 2>,
    w: Tensor<B, 2, Int>,
    scales: Tensor<B, 2>,
) -> Tensor<B, 2> {
    tensor(B::int8_matmul(float(x), w.into_primitive(), float(scales)))
}

/// [`TernaryBackend::quantize_rows_i8`]: float rows `w [n, k]` to packed int8 words and per-row scales.
pub fn quantize_rows_i8<B: TernaryBackend>(w: Tensor<B, 2>) -> (Tensor<B, 2, Int>, Tensor<B, 2>) {
    let (q, scales) = B::quantize_rows_i8(float(w));
    (Tensor::from_primitive(q), tensor(scales))
}

/// [`TernaryBackend::rms_norm`] over the last dimension of `x [..., size]`.
pub fn rms_norm<B: TernaryBackend, const D: usize>(
    x: Tensor<B, D>,
    weight: Tensor<B, 1>,
    eps: f64,
) -> Tensor<B, D> {
    let dims = x.dims();
    let rows = rows(x);
    reshape(
        tensor::<B, 2>(B::rms_norm(float(rows), float(weight), eps)),
        dims,
    )
}

/// [`TernaryBackend::gated_bit_linear_i8_residual`]: `residual [m, n] + layer(norm(act(gate) · up))`.
pub fn gated_bit_linear_i8_residual<B: TernaryBackend>(
    [gate, up]: [Tensor<B, 2>; 2],
    act: Activation,
    norm: Option<Norm<B>>,
    (w, scales): Ternary<B>,
    residual: Tensor<B, 2>,
) -> Tensor<B, 2> {
    let norm = norm.map(|(w, eps)| (float(w), eps));
    tensor(B::gated_bit_linear_i8_residual(
        float(gate),
        float(up),
        act,
        norm,
        (w.into_primitive(), float(scales)),
        float(residual),
    ))
}

/// [`TernaryBackend::gated`]: `act(gate) · up` over `[..., n]`, kept in f32.
pub fn gated<B: TernaryBackend, const D: usize>(
    gate: Tensor<B, D>,
    up: Tensor<B, D>,
    act: Activation,
) -> Tensor<B, D> {
    let dims = gate.dims();
    let y = B::gated(float(rows(gate)), float(rows(up)), act);
    reshape(tensor::<B, 2>(y), dims)
}

/// [`TernaryBackend::attention_step`]: the attention output `[b, rows, heads·d]` of a step of several
/// sequences, and each sequence's caches with its rotated keys and its values written.
pub fn attention_step<B: TernaryBackend>(
    qkv: [Tensor<B, 3>; 3],
    (cos, sin): (Tensor<B, 2>, Tensor<B, 2>),
    heads: usize,
    caches: Vec<StepKv<Tensor<B, 4>>>,
) -> (Tensor<B, 3>, Vec<[Tensor<B, 4>; 2]>) {
    let caches = caches
        .into_iter()
        .map(|c| StepKv {
            k: float(c.k),
            v: float(c.v),
            start: c.start,
            seq: c.seq,
        })
        .collect();
    let (out, kept) = B::attention_step(qkv.map(float), (float(cos), float(sin)), heads, caches);
    (
        tensor(out),
        kept.into_iter().map(|kv| kv.map(tensor)).collect(),
    )
}
