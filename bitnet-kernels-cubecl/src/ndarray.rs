//! The CPU (burn-ndarray) side of the ops: the hand-written kernels of [`crate::cpu`] on the tensors' buffers.

use burn::tensor::ops::{FloatTensor, FloatTensorOps, IntTensor};
use burn::tensor::{Shape, TensorData, TensorMetadata};
use burn_ndarray::{NdArray, NdArrayTensor, SharedArray};
use ndarray::{Axis, IxDyn};
use std::borrow::Cow;

use crate::cpu::{self, AttentionShape, Isa, TernaryMatrix};
use crate::packing::i8_words_per_row;
use crate::reference::TernaryShape;
use crate::{Activation, CacheType, StepKv, TernaryBackend};
use half::f16;
use half::slice::HalfBitsSliceExt;

/// A contiguous view of a tensor's elements (borrowed when the storage is already standard-layout).
fn elements<'a, E: Clone>(view: ndarray::ArrayViewD<'a, E>) -> (Vec<usize>, Cow<'a, [E]>) {
    let shape = view.shape().to_vec();
    match view.to_slice() {
        Some(s) => (shape, Cow::Borrowed(s)),
        None => (shape, Cow::Owned(view.iter().cloned().collect())),
    }
}

fn f32s<'a>(t: &'a NdArrayTensor, what: &str) -> (Vec<usize>, Cow<'a, [f32]>) {
    match t {
        NdArrayTensor::F32(s) => elements(s.view()),
        other => panic!("{what} must be f32, found {:?}", other.dtype()),
    }
}

/// A sequence's key and value caches as arrays.
type KvArrays<E> = [SharedArray<E>; 2];

/// `a` in standard layout and not shared, so that an op may write it in place (a cache moved into the op is
/// both already: then nothing is copied).
fn writable<E: Clone>(a: SharedArray<E>) -> SharedArray<E> {
    if a.is_standard_layout() {
        a
    } else {
        a.as_standard_layout().into_owned().into_shared()
    }
}

/// `dst` with positions `0..len` of each `[b, kv_heads, positions, row]` cache row block copied from `src`.
fn copy_positions<E: Copy>(
    src: ndarray::ArrayViewD<'_, E>,
    dst: SharedArray<E>,
    len: usize,
) -> SharedArray<E> {
    let mut dst = writable(dst);
    let (from, to) = (src.shape()[2], dst.shape()[2]);
    let row = dst.shape()[3];
    assert!(
        src.shape()[3] == row && src.len() / from == dst.len() / to && len <= from.min(to),
        "kv_cache_copy: {len} positions of a {:?} cache do not fit a {:?} one",
        src.shape(),
        dst.shape()
    );
    let src = elements(src).1;
    let out = dst.as_slice_mut().expect("a standard-layout cache");
    for (s, d) in src.chunks(from * row).zip(out.chunks_mut(to * row)) {
        d[..len * row].copy_from_slice(&s[..len * row]);
    }
    dst
}

/// A step's caches as writable arrays, all of one element type: f32, f16 held as its bits (burn-ndarray has
/// no f16 float; [`TernaryBackend::kv_cache_zeros`] makes them `U16`), or q8_0 blocks held as their bytes (`U8`).
enum StepCaches {
    F32(Vec<KvArrays<f32>>),
    F16(Vec<KvArrays<u16>>),
    Q8_0(Vec<KvArrays<u8>>),
}

impl StepCaches {
    fn new(caches: impl IntoIterator<Item = [NdArrayTensor; 2]>) -> Self {
        let (mut f32s, mut f16s, mut q8s) = (Vec::new(), Vec::new(), Vec::new());
        for kv in caches {
            match kv {
                [NdArrayTensor::F32(k), NdArrayTensor::F32(v)] => {
                    f32s.push([k, v].map(|s| writable(s.into_owned())))
                }
                [NdArrayTensor::U16(k), NdArrayTensor::U16(v)] => {
                    f16s.push([k, v].map(|s| writable(s.into_owned())))
                }
                [NdArrayTensor::U8(k), NdArrayTensor::U8(v)] => {
                    q8s.push([k, v].map(|s| writable(s.into_owned())))
                }
                [k, v] => panic!(
                    "attention_step: a cache must be f32, f16 bits (u16) or q8_0 bytes (u8), found {:?} and \
                     {:?}",
                    k.dtype(),
                    v.dtype()
                ),
            }
        }
        match (f32s.is_empty(), f16s.is_empty(), q8s.is_empty()) {
            (_, true, true) => Self::F32(f32s),
            (true, false, true) => Self::F16(f16s),
            (true, true, false) => Self::Q8_0(q8s),
            _ => panic!("attention_step: a step's caches must share an element type"),
        }
    }
}

/// [`cpu::attention_step`] on `caches`, whose elements `view` reads as the cache type `T`; `shape` makes the
/// step's shape from the caches' dimensions. Returns the output and the caches as tensors again.
fn attention_step_on<E: Clone, T: cpu::KvElem>(
    q: &mut [f32],
    kv: [&[f32]; 2],
    rope: (&[f32], &[f32], usize),
    shape: impl Fn(&[usize]) -> AttentionShape,
    mut caches: Vec<KvArrays<E>>,
    spans: &[(usize, usize)],
    view: fn(&mut [E]) -> &mut [T],
) -> (Vec<f32>, Vec<[NdArrayTensor; 2]>)
where
    NdArrayTensor: From<SharedArray<E>>,
{
    let shape = shape(caches[0][0].shape());
    let mut steps: Vec<StepKv<&mut [T]>> = caches
        .iter_mut()
        .zip(spans)
        .map(|([kc, vc], &(start, seq))| StepKv {
            k: view(kc.as_slice_mut().expect("a standard-layout cache")),
            v: view(vc.as_slice_mut().expect("a standard-layout cache")),
            start,
            seq,
        })
        .collect();
    let y = cpu::attention_step(q, kv, rope, shape, &mut steps);
    let tensors = caches
        .into_iter()
        .map(|kv| kv.map(NdArrayTensor::from))
        .collect();
    (y, tensors)
}

/// The operands of a ternary op, viewed as slices.
struct TernaryArgs<'a> {
    x: Cow<'a, [f32]>,
    m: usize,
    w: Cow<'a, [u32]>,
    scales: Cow<'a, [f32]>,
    shape: TernaryShape,
}

fn ternary_args<'a>(
    x: &'a NdArrayTensor,
    w: &'a NdArrayTensor,
    scales: &'a NdArrayTensor,
) -> TernaryArgs<'a> {
    let (xs, x) = f32s(x, "ternary_matmul: x");
    let (ss, scales) = f32s(scales, "ternary_matmul: scales");
    let NdArrayTensor::U32(ws) = w else {
        panic!(
            "ternary_matmul: packed weights must be u32, found {:?}",
            w.dtype()
        )
    };
    let (_, w) = elements(ws.view());
    let k = xs[1];
    TernaryArgs {
        x,
        m: xs[0],
        w,
        scales,
        shape: TernaryShape {
            n: ss[0],
            k,
            block: k.div_ceil(ss[1]),
        },
    }
}

impl TernaryBackend for NdArray<f32> {
    const CACHE_TYPES: &'static [CacheType] = &[CacheType::F16, CacheType::F32, CacheType::Q8_0];

    fn kv_cache_zeros(shape: [usize; 4], cache: CacheType, _: &Self::Device) -> FloatTensor<Self> {
        let [b, kv_heads, max_len, d] = shape;
        let shape = IxDyn(&shape);
        match cache {
            CacheType::F32 => ndarray::ArrayD::<f32>::zeros(shape).into_shared().into(),
            CacheType::F16 => ndarray::ArrayD::<u16>::zeros(shape).into_shared().into(),
            CacheType::Q8_0 => {
                let row = d / cache.block() * size_of::<cpu::Q8Block>();
                ndarray::ArrayD::<u8>::zeros(IxDyn(&[b, kv_heads, max_len, row]))
                    .into_shared()
                    .into()
            }
        }
    }

    fn kv_cache_copy(
        src: FloatTensor<Self>,
        dst: FloatTensor<Self>,
        len: usize,
    ) -> FloatTensor<Self> {
        match (src, dst) {
            (NdArrayTensor::F32(s), NdArrayTensor::F32(d)) => {
                copy_positions(s.view(), d.into_owned(), len).into()
            }
            (NdArrayTensor::U16(s), NdArrayTensor::U16(d)) => {
                copy_positions(s.view(), d.into_owned(), len).into()
            }
            (NdArrayTensor::U8(s), NdArrayTensor::U8(d)) => {
                copy_positions(s.view(), d.into_owned(), len).into()
            }
            (s, d) => panic!(
                "kv_cache_copy: caches of one type expected, found {:?} and {:?}",
                s.dtype(),
                d.dtype()
            ),
        }
    }

    fn ternary_matmul(
        x: FloatTensor<Self>,
        w: IntTensor<Self>,
        scales: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        let a = ternary_args(&x, &w, &scales);
        let y = cpu::ternary_matmul_f32(&a.x, a.m, &a.w, &a.scales, a.shape);
        NdArrayTensor::from_data(TensorData::new(y, [a.m, a.shape.n]))
    }

    fn ternary_matmul_i8(
        x: FloatTensor<Self>,
        w: IntTensor<Self>,
        scales: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        let a = ternary_args(&x, &w, &scales);
        let y = cpu::ternary_matmul_i8(&a.x, a.m, &a.w, &a.scales, a.shape, Isa::detect());
        NdArrayTensor::from_data(TensorData::new(y, [a.m, a.shape.n]))
    }

    fn bit_linears_i8(
        x: FloatTensor<Self>,
        norm: Option<(FloatTensor<Self>, f64)>,
        layers: Vec<(IntTensor<Self>, FloatTensor<Self>)>,
    ) -> Vec<FloatTensor<Self>> {
        let x = crate::burn_ops::pre_norm::<Self>(x, norm);
        let blocks = |(_, scales): &(IntTensor<Self>, FloatTensor<Self>)| scales.shape()[1];
        if layers.iter().any(|l| blocks(l) != blocks(&layers[0])) {
            return crate::burn_ops::bit_linears_i8::<Self>(x, None, layers);
        }
        let args: Vec<TernaryArgs> = layers.iter().map(|(w, s)| ternary_args(&x, w, s)).collect();
        let matrices: Vec<TernaryMatrix> = args
            .iter()
            .map(|a| TernaryMatrix {
                w: &a.w,
                scales: &a.scales,
                shape: a.shape,
            })
            .collect();
        let (xs, xv) = f32s(&x, "bit_linears_i8: x");
        let ys = cpu::ternary_matmuls_i8(&xv, xs[0], &matrices, Isa::detect());
        ys.into_iter()
            .zip(&matrices)
            .map(|(y, a)| NdArrayTensor::from_data(TensorData::new(y, [xs[0], a.shape.n])))
            .collect()
    }

    fn bit_linear_i8_residual(
        x: FloatTensor<Self>,
        norm: Option<(FloatTensor<Self>, f64)>,
        layer: (IntTensor<Self>, FloatTensor<Self>),
        residual: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        let y = Self::bit_linears_i8(x, norm, vec![layer]).remove(0);
        let NdArrayTensor::F32(y) = y else {
            unreachable!("bit_linears_i8 returns f32")
        };
        let mut y = y.into_owned();
        let (_, residual) = f32s(&residual, "bit_linear_i8_residual: residual");
        let out = y.as_slice_mut().expect("a fresh standard-layout output");
        assert_eq!(
            out.len(),
            residual.len(),
            "bit_linear_i8_residual: residual"
        );
        for (y, &r) in out.iter_mut().zip(residual.iter()) {
            *y += r;
        }
        y.into()
    }

    fn reshape(x: FloatTensor<Self>, shape: Shape) -> FloatTensor<Self> {
        match x {
            NdArrayTensor::F32(a) if a.view().is_standard_layout() => a
                .into_owned()
                .into_shape_with_order(IxDyn(&shape))
                .expect("reshape: the element count is kept")
                .into(),
            x => Self::float_reshape(x, shape),
        }
    }

    fn float_matmul_nt(x: FloatTensor<Self>, w: FloatTensor<Self>) -> FloatTensor<Self> {
        let (xs, x) = f32s(&x, "float_matmul_nt: x");
        let (ws, w) = f32s(&w, "float_matmul_nt: w");
        let y = cpu::f32_matmul_nt(&x, xs[0], &w, xs[1]);
        NdArrayTensor::from_data(TensorData::new(y, [xs[0], ws[0]]))
    }

    fn int8_matmul(
        x: FloatTensor<Self>,
        w: IntTensor<Self>,
        scales: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        let (xs, x) = f32s(&x, "int8_matmul: x");
        let (_, scales) = f32s(&scales, "int8_matmul: scales");
        let NdArrayTensor::U32(ws) = &w else {
            panic!(
                "int8_matmul: packed weights must be u32, found {:?}",
                w.dtype()
            )
        };
        let (_, w) = elements(ws.view());
        let (m, k) = (xs[0], xs[1]);
        let y = cpu::int8_matmul(&x, m, &w, &scales, k, Isa::detect());
        NdArrayTensor::from_data(TensorData::new(y, [m, scales.len()]))
    }

    fn quantize_rows_i8(w: FloatTensor<Self>) -> (IntTensor<Self>, FloatTensor<Self>) {
        let (ws, values) = f32s(&w, "quantize_rows_i8: w");
        let (n, k) = (ws[0], ws[1]);
        let (q, scales) = cpu::quantize_rows_i8(&values, k);
        (
            NdArrayTensor::from_data(TensorData::new(q, [n, i8_words_per_row(k)])),
            NdArrayTensor::from_data(TensorData::new(scales, [n, 1])),
        )
    }

    fn rope(
        x: FloatTensor<Self>,
        cos: FloatTensor<Self>,
        sin: FloatTensor<Self>,
        start: usize,
    ) -> FloatTensor<Self> {
        let NdArrayTensor::F32(xs) = &x else {
            panic!("rope: x must be f32, found {:?}", x.dtype())
        };
        let (view, (cs, cos), (_, sin)) =
            (xs.view(), f32s(&cos, "rope: cos"), f32s(&sin, "rope: sin"));
        let dims = view.shape().to_vec();
        let (seq, d, half) = (dims[2], dims[3], cs[1]);
        let mut y = vec![0f32; view.len()];
        let mut strided = Vec::new();
        // Lanes of the head dimension in [b, heads, seq] order, read through the view's strides.
        for (i, (lane, out)) in view
            .lanes(Axis(3))
            .into_iter()
            .zip(y.chunks_exact_mut(d))
            .enumerate()
        {
            let pos = (start + i % seq) * half;
            let x = match lane.to_slice() {
                Some(x) => x,
                None => {
                    strided.clear();
                    strided.extend(lane.iter());
                    &strided
                }
            };
            cpu::rope_row(x, &cos[pos..pos + half], &sin[pos..pos + half], out);
        }
        NdArrayTensor::from_data(TensorData::new(y, dims))
    }

    fn rms_norm(x: FloatTensor<Self>, weight: FloatTensor<Self>, eps: f64) -> FloatTensor<Self> {
        let (shape, x) = f32s(&x, "rms_norm: x");
        let (_, weight) = f32s(&weight, "rms_norm: weight");
        let y = cpu::rms_norm(&x, &weight, eps as f32);
        NdArrayTensor::from_data(TensorData::new(y, shape))
    }

    fn gated(gate: FloatTensor<Self>, up: FloatTensor<Self>, act: Activation) -> FloatTensor<Self> {
        let (shape, gate) = f32s(&gate, "gated: gate");
        let (_, up) = f32s(&up, "gated: up");
        NdArrayTensor::from_data(TensorData::new(cpu::gated(&gate, &up, act), shape))
    }

    fn cached_attention(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        len: usize,
    ) -> FloatTensor<Self> {
        let NdArrayTensor::F32(qs) = &q else {
            panic!("cached_attention: q must be f32, found {:?}", q.dtype())
        };
        // The kernel reads token-major queries: the heads view the model hands over, swapped back (no copy).
        let (qs, q) = elements(qs.view().permuted_axes(IxDyn(&[0, 2, 1, 3])));
        let shape = |ks: &[usize]| AttentionShape {
            batch: qs[0],
            heads: qs[2],
            kv_heads: ks[1],
            seq: qs[1],
            head_dim: qs[3],
            max_len: ks[2],
            len,
        };
        let y = match (&k, &v) {
            (NdArrayTensor::U16(k), NdArrayTensor::U16(v)) => {
                let ((ks, k), (_, v)) = (elements(k.view()), elements(v.view()));
                cpu::cached_attention::<f16>(
                    &q,
                    k.reinterpret_cast(),
                    v.reinterpret_cast(),
                    shape(&ks),
                )
            }
            (NdArrayTensor::U8(k), NdArrayTensor::U8(v)) => {
                let ((ks, k), (_, v)) = (elements(k.view()), elements(v.view()));
                cpu::cached_attention::<cpu::Q8Block>(
                    &q,
                    bytemuck::cast_slice(&k),
                    bytemuck::cast_slice(&v),
                    shape(&ks),
                )
            }
            _ => {
                let (ks, k) = f32s(&k, "cached_attention: k");
                let (_, v) = f32s(&v, "cached_attention: v");
                cpu::cached_attention(&q, &k, &v, shape(&ks))
            }
        };
        NdArrayTensor::from_data(TensorData::new(y, qs))
    }

    fn attention_step(
        [q, k, v]: [FloatTensor<Self>; 3],
        (cos, sin): (FloatTensor<Self>, FloatTensor<Self>),
        heads: usize,
        caches: Vec<StepKv<FloatTensor<Self>>>,
    ) -> (FloatTensor<Self>, Vec<[FloatTensor<Self>; 2]>) {
        let (qs, q) = f32s(&q, "attention_step: q");
        let (_, k) = f32s(&k, "attention_step: k");
        let (_, v) = f32s(&v, "attention_step: v");
        let (cs, cos) = f32s(&cos, "attention_step: cos");
        let (_, sin) = f32s(&sin, "attention_step: sin");
        let mut q = q.into_owned();
        let spans: Vec<(usize, usize)> = caches.iter().map(|c| (c.start, c.seq)).collect();
        // Moved out of `caches`, so that nothing else holds them and they are written in place.
        let arrays = StepCaches::new(caches.into_iter().map(|c| [c.k, c.v]));
        let shape = |cache_dims: &[usize]| AttentionShape {
            batch: qs[0],
            heads,
            kv_heads: cache_dims[1],
            seq: 0,
            head_dim: qs[2] / heads,
            max_len: cache_dims[2],
            len: 0,
        };
        let (kv, rope) = ([&*k, &*v], (&*cos, &*sin, cs[1]));
        let (y, kept) = match arrays {
            StepCaches::F32(a) => attention_step_on(&mut q, kv, rope, shape, a, &spans, |s| s),
            StepCaches::F16(a) => attention_step_on(&mut q, kv, rope, shape, a, &spans, |s| {
                s.reinterpret_cast_mut::<f16>()
            }),
            StepCaches::Q8_0(a) => attention_step_on(
                &mut q,
                kv,
                rope,
                shape,
                a,
                &spans,
                bytemuck::cast_slice_mut::<u8, cpu::Q8Block>,
            ),
        };
        (NdArrayTensor::from_data(TensorData::new(y, qs)), kept)
    }
}
