//! `bit_linears_i8` (several BitLinears on one input, after an optional RMSNorm) on every backend: bit for bit
//! the composition it stands for (`rms_norm`, then `ternary_matmul_i8` per layer, which the other tests hold
//! to their references), and against an f64 norm plus the scalar reference matmul; `bit_linear_i8_residual`
//! as exactly those outputs plus the residual; and `gated_bit_linear_i8_residual` as exactly the gate and then
//! `bit_linear_i8_residual`.

use bitnet_kernels_cubecl::packing::words_per_row;
use bitnet_kernels_cubecl::reference::{self, TernaryShape};
use bitnet_kernels_cubecl::{Activation, TernaryBackend};
use burn::tensor::ops::{FloatTensor, IntTensor};
use burn::tensor::{DType, Int, Tensor, TensorData, TensorPrimitive};

use crate::common;
use crate::common::Lcg;

const EPS: f64 = 1e-5;

/// `(tokens, k, block, rows of each layer)`: decode q/k/v, per-block scales, a width off the packed grid,
/// prefill through the tiled GPU kernel.
const CASES: [(usize, usize, usize, &[usize]); 4] = [
    (1, 2560, 2560, &[2560, 640, 640]),
    (5, 272, 16, &[11, 3]),
    (3, 100, 100, &[7, 9]),
    (40, 512, 256, &[67, 64, 5]),
];

struct Layer {
    words: Vec<u32>,
    scales: Vec<f32>,
    shape: TernaryShape,
}

fn layer(rng: &mut Lcg, n: usize, k: usize, block: usize) -> Layer {
    let shape = TernaryShape { n, k, block };
    Layer {
        words: common::packed_trits(rng, n, k),
        scales: common::scales(rng, n * shape.blocks()),
        shape,
    }
}

fn float<B: TernaryBackend, const D: usize>(
    v: Vec<f32>,
    dims: [usize; D],
    d: &B::Device,
) -> FloatTensor<B> {
    Tensor::<B, D>::from_data(TensorData::new(v, dims), d)
        .into_primitive()
        .tensor()
}

fn weights<B: TernaryBackend>(l: &Layer, d: &B::Device) -> (IntTensor<B>, FloatTensor<B>) {
    let kw = words_per_row(l.shape.k);
    let w = Tensor::<B, 2, Int>::from_data(
        TensorData::new(l.words.clone(), [l.shape.n, kw]),
        (d, DType::U32),
    );
    let blocks = l.shape.blocks();
    (
        w.into_primitive(),
        float::<B, 2>(l.scales.clone(), [l.shape.n, blocks], d),
    )
}

fn values_of<B: TernaryBackend>(y: FloatTensor<B>) -> Vec<f32> {
    Tensor::<B, 2>::from_primitive(TensorPrimitive::Float(y))
        .into_data()
        .convert::<f32>()
        .to_vec()
        .unwrap()
}

/// `got` equals `composed`, the ops it stands for, bit for bit.
fn assert_composition(got: &[f32], composed: &[f32], what: &str) {
    common::assert_same_bits(got, composed, &format!("{what}: not the composition"));
}

/// Reference outputs of one layer on `x`, and each output's size of one int8 level (`scale / s`).
fn reference_layer(x: &[f32], m: usize, l: &Layer) -> (Vec<f32>, Vec<f32>) {
    let (n, k) = (l.shape.n, l.shape.k);
    let mut q = vec![0i8; m * k];
    let s: Vec<f32> = (0..m)
        .map(|t| reference::quantize_row_i8(&x[t * k..][..k], &mut q[t * k..][..k]))
        .collect();
    let qf: Vec<f32> = q.iter().map(|&v| v as f32).collect();
    let y = reference::ternary_matmul(&qf, m, &l.words, &l.scales, l.shape);
    let nb = l.shape.blocks();
    let level = (0..m * n)
        .map(|i| {
            let row = &l.scales[(i % n) * nb..][..nb];
            row.iter().fold(0f32, |a, &v| a.max(v)) / s[i / n]
        })
        .collect();
    (
        y.iter().enumerate().map(|(i, v)| v / s[i / n]).collect(),
        level,
    )
}

fn check<B: TernaryBackend>(device: &B::Device, what: &str) {
    let mut rng = Lcg(77);
    for (m, k, block, ns) in CASES {
        let x: Vec<f32> = (0..m * k).map(|_| rng.heavy() * 2.0).collect();
        let weight: Vec<f32> = (0..k).map(|_| 0.5 + rng.uniform().abs()).collect();
        let layers: Vec<Layer> = ns.iter().map(|&n| layer(&mut rng, n, k, block)).collect();
        for normed in [true, false] {
            let case = format!("{what} m{m} k{k} block{block} norm {normed}");
            let xt = || float::<B, 2>(x.clone(), [m, k], device);
            let norm = normed.then(|| (float::<B, 1>(weight.clone(), [k], device), EPS));
            let ws = layers.iter().map(|l| weights::<B>(l, device)).collect();
            let got: Vec<Vec<f32>> = B::bit_linears_i8(xt(), norm.clone(), ws)
                .into_iter()
                .map(values_of::<B>)
                .collect();
            assert_eq!(got.len(), layers.len(), "{case}");

            let input = match norm.clone() {
                Some((w, eps)) => B::rms_norm(xt(), w, eps),
                None => xt(),
            };
            let normed_x = if normed {
                common::rms_norm_f64(&x, &weight, EPS)
            } else {
                x.clone()
            };
            for (i, (l, got)) in layers.iter().zip(&got).enumerate() {
                let (w, s) = weights::<B>(l, device);
                let composed = values_of::<B>(B::ternary_matmul_i8(input.clone(), w, s));
                assert_composition(got, &composed, &format!("{case} layer {i}"));
                // The output projection's op adds the residual to exactly these outputs (one rounding).
                let r: Vec<f32> = (0..m * l.shape.n).map(|_| rng.heavy()).collect();
                let with_residual = values_of::<B>(B::bit_linear_i8_residual(
                    xt(),
                    norm.clone(),
                    weights::<B>(l, device),
                    float::<B, 2>(r.clone(), [m, l.shape.n], device),
                ));
                let sums: Vec<f32> = got.iter().zip(&r).map(|(y, r)| y + r).collect();
                assert_eq!(with_residual, sums, "{case} layer {i}: residual");
                let (want, level) = reference_layer(&normed_x, m, l);
                let scale = want.iter().fold(1f32, |a, v| a.max(v.abs()));
                for (j, ((g, w), level)) in got.iter().zip(&want).zip(&level).enumerate() {
                    // An f32 norm an ulp off the f64 one may move an activation across a rounding boundary:
                    // allow two int8 levels on top of the float summation error.
                    let tol = 1e-5 * scale + 2.0 * level;
                    assert!((g - w).abs() <= tol, "{case} layer {i} [{j}]: {g} vs {w}");
                }
            }
        }
    }
}

/// `gated_bit_linear_i8_residual` (the FFN's down projection on `act(gate) · up`, GPU kernels computing the gate
/// inside the activation quantization) is bit for bit `gated` then `bit_linear_i8_residual`, for both activations,
/// with and without the sub-norm, on every layout of [`CASES`].
fn gated_down_projection<B: TernaryBackend>(device: &B::Device, what: &str) {
    let mut rng = Lcg(79);
    for (m, k, block, ns) in CASES {
        let mut values =
            |n: usize, scale: f32| (0..n).map(|_| rng.heavy() * scale).collect::<Vec<f32>>();
        let (gate, up, weight) = (values(m * k, 2.0), values(m * k, 1.0), values(k, 1.0));
        let l = layer(&mut rng, ns[0], k, block);
        let r: Vec<f32> = (0..m * l.shape.n).map(|_| rng.heavy()).collect();
        for act in [Activation::Relu2, Activation::Silu] {
            for normed in [true, false] {
                let case = format!("{what} m{m} k{k} block{block} {act:?} norm {normed}");
                let t = |x: &[f32]| float::<B, 2>(x.to_vec(), [m, k], device);
                let norm = || normed.then(|| (float::<B, 1>(weight.clone(), [k], device), EPS));
                let residual = || float::<B, 2>(r.clone(), [m, l.shape.n], device);
                let fused = values_of::<B>(B::gated_bit_linear_i8_residual(
                    t(&gate),
                    t(&up),
                    act,
                    norm(),
                    weights::<B>(&l, device),
                    residual(),
                ));
                let composed = values_of::<B>(B::bit_linear_i8_residual(
                    B::gated(t(&gate), t(&up), act),
                    norm(),
                    weights::<B>(&l, device),
                    residual(),
                ));
                assert_composition(&fused, &composed, &case);
            }
        }
    }
}

fn check_all<B: TernaryBackend>(device: &B::Device, what: &str) {
    check::<B>(device, what);
    gated_down_projection::<B>(device, what);
}

backend_tests!(check_all);
