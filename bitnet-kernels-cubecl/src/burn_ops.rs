//! The extension's ops written in plain Burn tensor ops: correct on every backend (and differentiable under
//! Autodiff), used where no dedicated kernel exists.

use burn::tensor::activation::{relu, silu, softmax};
use burn::tensor::backend::Backend;
use burn::tensor::ops::{FloatTensor, IntTensor};
use burn::tensor::{
    DType, ElementConversion, Int, Tensor, TensorData, TensorMetadata, TensorPrimitive,
};

use crate::packing::{i8_words_per_row, I8_PER_WORD, TRITS_PER_WORD};
use crate::{Activation, StepKv, TernaryBackend};

/// The unsigned `bits`-wide fields of `[n, words]` packed words as floats `[n, k]`, field `f` of word `j` at
/// column `j · (32 / bits) + f`.
fn fields<B: Backend>(w: Tensor<B, 2, Int>, bits: usize, k: usize) -> Tensor<B, 2> {
    let [n, kw] = w.dims();
    let per_word = 32 / bits;
    let mask = (1i64 << bits) - 1;
    let codes: Vec<Tensor<B, 3, Int>> = (0..per_word)
        .map(|f| {
            w.clone()
                .bitwise_right_shift_scalar(((bits * f) as i64).elem())
                .bitwise_and_scalar(mask.elem())
                .unsqueeze_dim(2)
        })
        .collect();
    Tensor::cat(codes, 2)
        .reshape([n, kw * per_word])
        .float()
        .slice([0..n, 0..k])
}

/// Unpacks `[n, k/16]` packed words into a `[n, k]` float tensor of trits.
pub fn unpack<B: Backend>(w: Tensor<B, 2, Int>, k: usize) -> Tensor<B, 2> {
    fields(w, 32 / TRITS_PER_WORD, k) - 1.0
}

/// Unpacks `[n, k/4]` packed int8 words into a `[n, k]` float tensor of their values.
pub fn unpack_i8<B: Backend>(w: Tensor<B, 2, Int>, k: usize) -> Tensor<B, 2> {
    let bytes = fields(w, 32 / I8_PER_WORD, k);
    bytes.clone() - bytes.greater_equal_elem(128).float() * 256.0
}

/// `x [m, k] · (trits ⊙ scales)ᵀ` with `scales [n, k/block]`: the weights dequantized, then the backend's f32
/// [`TernaryBackend::float_matmul_nt`] (not Burn's matmul, which rounds to TF32 on CUDA tensor cores).
pub fn ternary_matmul<B: TernaryBackend>(
    x: FloatTensor<B>,
    w: IntTensor<B>,
    scales: FloatTensor<B>,
) -> FloatTensor<B> {
    let k = x.shape()[1];
    let scales = Tensor::<B, 2>::from_primitive(TensorPrimitive::Float(scales));
    let [n, nb] = scales.dims();
    let trits = unpack(Tensor::<B, 2, Int>::from_primitive(w), k);
    let block = k / nb;
    let weights = (trits.reshape([n, nb, block]) * scales.reshape([n, nb, 1])).reshape([n, k]);
    B::float_matmul_nt(x, weights.into_primitive().tensor())
}

/// `x` through [`crate::TernaryBackend::rms_norm`] when `norm = (weight, eps)` is given.
pub(crate) fn pre_norm<B: TernaryBackend>(
    x: FloatTensor<B>,
    norm: Option<(FloatTensor<B>, f64)>,
) -> FloatTensor<B> {
    match norm {
        Some((weight, eps)) => B::rms_norm(x, weight, eps),
        None => x,
    }
}

/// [`crate::TernaryBackend::bit_linears_i8`] as the ops it stands for: the norm, then one int8 matmul per layer.
pub fn bit_linears_i8<B: TernaryBackend>(
    x: FloatTensor<B>,
    norm: Option<(FloatTensor<B>, f64)>,
    layers: Vec<(IntTensor<B>, FloatTensor<B>)>,
) -> Vec<FloatTensor<B>> {
    let x = pre_norm::<B>(x, norm);
    layers
        .into_iter()
        .map(|(w, scales)| B::ternary_matmul_i8(x.clone(), w, scales))
        .collect()
}

/// [`crate::TernaryBackend::bit_linear_i8_residual`] as the backend's [`crate::TernaryBackend::bit_linears_i8`]
/// and an addition.
pub fn bit_linear_i8_residual<B: TernaryBackend>(
    x: FloatTensor<B>,
    norm: Option<(FloatTensor<B>, f64)>,
    layer: (IntTensor<B>, FloatTensor<B>),
    residual: FloatTensor<B>,
) -> FloatTensor<B> {
    let float = |t| Tensor::<B, 2>::from_primitive(TensorPrimitive::Float(t));
    let y = B::bit_linears_i8(x, norm, vec![layer]).remove(0);
    (float(residual) + float(y)).into_primitive().tensor()
}

/// Per-token int8 quantization in Burn ops: `(q, s)` with `q = clamp(round(x · s), -128, 127)`, `s = 127 / max|x|`.
pub(crate) fn quantize_i8<B: Backend>(x: Tensor<B, 2>) -> (Tensor<B, 2>, Tensor<B, 2>) {
    let amax = x.clone().abs().max_dim(1).clamp_min(1e-5);
    let s = amax.ones_like().mul_scalar(127.0) / amax;
    ((x * s.clone()).round().clamp(-128.0, 127.0), s)
}

/// [`crate::TernaryBackend::ternary_matmul_i8`] in Burn ops.
pub fn ternary_matmul_i8<B: TernaryBackend>(
    x: FloatTensor<B>,
    w: IntTensor<B>,
    scales: FloatTensor<B>,
) -> FloatTensor<B> {
    let (q, s) = quantize_i8(Tensor::<B, 2>::from_primitive(TensorPrimitive::Float(x)));
    let y = ternary_matmul::<B>(q.into_primitive().tensor(), w, scales);
    (Tensor::<B, 2>::from_primitive(TensorPrimitive::Float(y)) / s)
        .into_primitive()
        .tensor()
}

/// [`crate::TernaryBackend::int8_matmul`] in Burn ops.
pub fn int8_matmul<B: Backend>(
    x: FloatTensor<B>,
    w: IntTensor<B>,
    scales: FloatTensor<B>,
) -> FloatTensor<B> {
    let x = Tensor::<B, 2>::from_primitive(TensorPrimitive::Float(x));
    let w = unpack_i8(Tensor::<B, 2, Int>::from_primitive(w), x.dims()[1]);
    let (q, s) = quantize_i8(x);
    let scales = Tensor::<B, 2>::from_primitive(TensorPrimitive::Float(scales));
    (q.matmul(w.transpose()) * scales.transpose() / s)
        .into_primitive()
        .tensor()
}

/// [`crate::TernaryBackend::quantize_rows_i8`] through the host: the weights read back, quantized by
/// [`crate::cpu::quantize_rows_i8`], and uploaded.
pub fn quantize_rows_i8<B: Backend>(w: FloatTensor<B>) -> (IntTensor<B>, FloatTensor<B>) {
    let w = Tensor::<B, 2>::from_primitive(TensorPrimitive::Float(w));
    let ([n, k], device) = (w.dims(), w.device());
    let values = w.into_data().convert::<f32>().into_vec::<f32>();
    let (q, scales) = crate::cpu::quantize_rows_i8(&values.expect("f32 after convert"), k);
    let q = Tensor::<B, 2, Int>::from_data(
        TensorData::new(q, [n, i8_words_per_row(k)]),
        (&device, DType::U32),
    );
    let scales = Tensor::<B, 2>::from_data(TensorData::new(scales, [n, 1]), &device);
    (q.into_primitive(), scales.into_primitive().tensor())
}

/// [`crate::TernaryBackend::rms_norm`] in Burn ops.
pub fn rms_norm<B: Backend>(x: FloatTensor<B>, weight: FloatTensor<B>, eps: f64) -> FloatTensor<B> {
    let x = Tensor::<B, 2>::from_primitive(TensorPrimitive::Float(x));
    let weight = Tensor::<B, 1>::from_primitive(TensorPrimitive::Float(weight));
    let inv = (x.clone().square().mean_dim(1) + eps).sqrt().recip();
    (x * inv * weight.unsqueeze()).into_primitive().tensor()
}

/// [`crate::TernaryBackend::rope`] in Burn ops.
pub fn rope<B: Backend>(
    x: FloatTensor<B>,
    cos: FloatTensor<B>,
    sin: FloatTensor<B>,
    start: usize,
) -> FloatTensor<B> {
    let x = Tensor::<B, 4>::from_primitive(TensorPrimitive::Float(x));
    let [_, _, seq, d] = x.dims();
    let table = |t: FloatTensor<B>| {
        let t = Tensor::<B, 2>::from_primitive(TensorPrimitive::Float(t));
        let half = t.dims()[1];
        t.narrow(0, start, seq).reshape([1, 1, seq, half])
    };
    let (cos, sin) = (table(cos), table(sin));
    let half = cos.dims()[3];
    let x1 = x.clone().narrow(3, 0, half);
    let x2 = x.clone().narrow(3, half, half);
    let mut parts = vec![
        x1.clone() * cos.clone() - x2.clone() * sin.clone(),
        x2 * cos + x1 * sin,
    ];
    if 2 * half < d {
        parts.push(x.narrow(3, 2 * half, d - 2 * half));
    }
    Tensor::cat(parts, 3).into_primitive().tensor()
}

/// [`crate::TernaryBackend::rope_append`] from the backend's [`crate::TernaryBackend::rope`] and slice
/// assignments.
#[allow(clippy::too_many_arguments)]
pub fn rope_append<B: TernaryBackend>(
    q: FloatTensor<B>,
    k: FloatTensor<B>,
    v: FloatTensor<B>,
    cos: FloatTensor<B>,
    sin: FloatTensor<B>,
    start: usize,
    k_cache: FloatTensor<B>,
    v_cache: FloatTensor<B>,
) -> [FloatTensor<B>; 3] {
    let q = B::rope(q, cos.clone(), sin.clone(), start);
    let k = B::rope(k, cos, sin, start);
    let write = |cache: FloatTensor<B>, x: FloatTensor<B>| {
        let x = Tensor::<B, 4>::from_primitive(TensorPrimitive::Float(x));
        let [b, h, seq, d] = x.dims();
        Tensor::<B, 4>::from_primitive(TensorPrimitive::Float(cache))
            .slice_assign([0..b, 0..h, start..start + seq, 0..d], x)
            .into_primitive()
            .tensor()
    };
    [q, write(k_cache, k), write(v_cache, v)]
}

/// [`crate::TernaryBackend::gated`] in Burn ops.
pub fn gated<B: Backend>(
    gate: FloatTensor<B>,
    up: FloatTensor<B>,
    act: Activation,
) -> FloatTensor<B> {
    let g = Tensor::<B, 2>::from_primitive(TensorPrimitive::Float(gate));
    let up = Tensor::<B, 2>::from_primitive(TensorPrimitive::Float(up));
    let g = match act {
        Activation::Relu2 => relu(g).powi_scalar(2),
        Activation::Silu => silu(g),
    };
    (g * up).into_primitive().tensor()
}

/// [`crate::TernaryBackend::float_matmul_nt`] in Burn ops, as `(w · xᵀ)ᵀ`: the big matrix keeps its stored layout
/// (`x · wᵀ` would make backends that need contiguous operands copy it on every call).
pub fn float_matmul_nt<B: Backend>(x: FloatTensor<B>, w: FloatTensor<B>) -> FloatTensor<B> {
    let x = Tensor::<B, 2>::from_primitive(TensorPrimitive::Float(x));
    let w = Tensor::<B, 2>::from_primitive(TensorPrimitive::Float(w));
    w.matmul(x.transpose())
        .transpose()
        .into_primitive()
        .tensor()
}

/// [`crate::TernaryBackend::attention_step`] from the backend's own ops, one sequence at a time: its rows
/// narrowed out of the projections, [`crate::TernaryBackend::rope_append`], then
/// [`crate::TernaryBackend::cached_attention`], the outputs joined along the rows.
pub fn attention_step<B: TernaryBackend>(
    [q, k, v]: [FloatTensor<B>; 3],
    (cos, sin): (FloatTensor<B>, FloatTensor<B>),
    heads: usize,
    caches: Vec<StepKv<FloatTensor<B>>>,
) -> (FloatTensor<B>, Vec<[FloatTensor<B>; 2]>) {
    let [q, k, v] = [q, k, v].map(|x| Tensor::<B, 3>::from_primitive(TensorPrimitive::Float(x)));
    let [b, _, width] = q.dims();
    let d = width / heads;
    let mut row = 0;
    let mut outs = Vec::with_capacity(caches.len());
    let mut kept = Vec::with_capacity(caches.len());
    for StepKv {
        k: kc,
        v: vc,
        start,
        seq,
    } in caches
    {
        let kv_heads = kc.shape()[1];
        let part = |x: &Tensor<B, 3>, h: usize| {
            x.clone()
                .narrow(1, row, seq)
                .reshape([b, seq, h, d])
                .swap_dims(1, 2)
                .into_primitive()
                .tensor()
        };
        let [q, kc, vc] = B::rope_append(
            part(&q, heads),
            part(&k, kv_heads),
            part(&v, kv_heads),
            cos.clone(),
            sin.clone(),
            start,
            kc,
            vc,
        );
        let out = B::cached_attention(q, kc.clone(), vc.clone(), start + seq);
        outs.push(
            Tensor::<B, 4>::from_primitive(TensorPrimitive::Float(out)).reshape([b, seq, width]),
        );
        kept.push([kc, vc]);
        row += seq;
    }
    let out = match outs.len() {
        1 => outs.pop().expect("one sequence"),
        _ => Tensor::cat(outs, 1),
    };
    (out.into_primitive().tensor(), kept)
}

/// [`crate::TernaryBackend::cached_attention`] in Burn ops. The `group` query heads that share a KV head become
/// `group · seq` rows of one matmul against that head's keys, so K and V are never repeated.
pub fn cached_attention<B: Backend>(
    q: FloatTensor<B>,
    k: FloatTensor<B>,
    v: FloatTensor<B>,
    len: usize,
) -> FloatTensor<B> {
    let q = Tensor::<B, 4>::from_primitive(TensorPrimitive::Float(q));
    let k = Tensor::<B, 4>::from_primitive(TensorPrimitive::Float(k)).narrow(2, 0, len);
    let v = Tensor::<B, 4>::from_primitive(TensorPrimitive::Float(v)).narrow(2, 0, len);
    let [b, heads, seq, d] = q.dims();
    let kv = k.dims()[1];
    let group = heads / kv;
    let scores = q
        .reshape([b, kv, group * seq, d])
        .matmul(k.swap_dims(2, 3))
        .div_scalar((d as f32).sqrt());
    let scores = if seq > 1 {
        let mask = causal_mask::<B>(len - seq, seq, &scores.device());
        (scores.reshape([b * kv, group, seq, len]) + mask).reshape([b, kv, group * seq, len])
    } else {
        scores
    };
    softmax(scores, 3)
        .matmul(v)
        .reshape([b, heads, seq, d])
        .swap_dims(1, 2)
        .into_primitive()
        .tensor()
}

/// `[1, 1, seq, start + seq]`: 0 where query `i` (position `start + i`) may see key `j`, −∞ after it.
fn causal_mask<B: Backend>(start: usize, seq: usize, device: &B::Device) -> Tensor<B, 4> {
    let total = start + seq;
    let mask: Vec<f32> = (0..seq)
        .flat_map(|i| {
            (0..total).map(move |j| {
                if j > start + i {
                    f32::NEG_INFINITY
                } else {
                    0.0
                }
            })
        })
        .collect();
    Tensor::from_data(TensorData::new(mask, [1, 1, seq, total]), device)
}
