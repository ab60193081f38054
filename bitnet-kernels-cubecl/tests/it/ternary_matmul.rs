//! Every implementation of the ternary op against the scalar reference, on random shapes with ragged edges
//! (widths that are not multiples of 16, odd row and token counts), plus the rounding rule the int8
//! activation quantization depends on.

use bitnet_kernels_cubecl::packing::{pack_row, trit_at, unpack_row, words_per_row};
use bitnet_kernels_cubecl::reference::{self, TernaryShape};
use bitnet_kernels_cubecl::{burn_ops, TernaryBackend};
use burn::backend::NdArray;
use burn::tensor::ops::{FloatTensor, IntTensor};
use burn::tensor::{DType, Int, Tensor, TensorData, TensorPrimitive};

use crate::common;
use crate::common::Lcg;

struct Case {
    m: usize,
    shape: TernaryShape,
    x: Vec<f32>,
    words: Vec<u32>,
    scales: Vec<f32>,
}

fn case(rng: &mut Lcg, m: usize, n: usize, k: usize, block: usize, int_valued: bool) -> Case {
    let shape = TernaryShape { n, k, block };
    let words = common::packed_trits(rng, n, k);
    let x = (0..m * k)
        .map(|_| {
            if int_valued {
                (rng.uniform() * 127.0).round()
            } else {
                rng.uniform() * 3.0
            }
        })
        .collect();
    let scales = common::scales(rng, n * shape.blocks());
    Case {
        m,
        shape,
        x,
        words,
        scales,
    }
}

/// `(m, n, k, block)`: widths of 1..160 words, a multiple of the GPU kernels' 4-word loads or not, and blocks
/// of 1 to 160 words (2 inside one 4-word load).
const SHAPES: [(usize, usize, usize, usize); 11] = [
    (1, 1, 16, 16),
    (3, 5, 32, 32),
    (1, 7, 37, 37),
    (4, 9, 512, 256),
    (2, 3, 768, 256),
    (5, 4, 100, 50),
    (1, 64, 2560, 2560),
    (19, 11, 272, 16),
    (70, 67, 272, 16),
    (32, 5, 2560, 2560),
    (3, 6, 128, 32),
];

/// A ternary op on primitives: `(x, packed words, scales) -> y`.
type Op<B> = fn(FloatTensor<B>, IntTensor<B>, FloatTensor<B>) -> FloatTensor<B>;

fn run_op<B: TernaryBackend>(c: &Case, device: &B::Device, op: Op<B>) -> Vec<f32> {
    let x = Tensor::<B, 2>::from_data(TensorData::new(c.x.clone(), [c.m, c.shape.k]), device);
    let w = Tensor::<B, 2, Int>::from_data(
        TensorData::new(c.words.clone(), [c.shape.n, words_per_row(c.shape.k)]),
        (device, DType::U32),
    );
    let s = Tensor::<B, 2>::from_data(
        TensorData::new(c.scales.clone(), [c.shape.n, c.shape.blocks()]),
        device,
    );
    let (x, w, s) = (
        x.into_primitive().tensor(),
        w.into_primitive(),
        s.into_primitive().tensor(),
    );
    Tensor::<B, 2>::from_primitive(TensorPrimitive::Float(op(x, w, s)))
        .into_data()
        .convert::<f32>()
        .to_vec()
        .unwrap()
}

/// Int-valued activations sum exactly in f32 at these sizes, so only the final scaling rounds: 1e-6 relative
/// (of the output's magnitude) on the CPU. Float activations, and anything through a GPU matmul (lavapipe's
/// Burn matmul does not sum integer-valued f32 exactly at k = 2560), are held to the 1e-5 relative.
fn check<B: TernaryBackend>(device: &B::Device, op: Op<B>, what: &str, int_tol: f32) {
    let mut rng = Lcg(2025);
    for &(m, n, k, block) in &SHAPES {
        for int_valued in [true, false] {
            let c = case(&mut rng, m, n, k, block, int_valued);
            let expected = reference::ternary_matmul(&c.x, c.m, &c.words, &c.scales, c.shape);
            let got = run_op::<B>(&c, device, op);
            let scale = expected.iter().fold(1f32, |a, v| a.max(v.abs()));
            for (i, (g, e)) in got.iter().zip(&expected).enumerate() {
                let tol = if int_valued {
                    int_tol * scale
                } else {
                    1e-5 * scale
                };
                assert!(
                    (g - e).abs() <= tol,
                    "{what} m{m} n{n} k{k} block{block} int{int_valued} [{i}]: {g} vs {e}"
                );
            }
        }
    }
}

/// BitLinear's int8 op against the reference on activations quantized by the reference: the quantized integers
/// must be the same (half-to-even rounding of the same f32 products), so only float summation order differs.
fn check_i8<B: TernaryBackend>(device: &B::Device, what: &str) {
    let mut rng = Lcg(99);
    for &(m, n, k, block) in &SHAPES {
        let c = case(&mut rng, m, n, k, block, false);
        let mut q = vec![0i8; m * k];
        let s: Vec<f32> = (0..m)
            .map(|t| reference::quantize_row_i8(&c.x[t * k..][..k], &mut q[t * k..][..k]))
            .collect();
        let qf: Vec<f32> = q.iter().map(|&v| v as f32).collect();
        let expected: Vec<f32> = reference::ternary_matmul(&qf, m, &c.words, &c.scales, c.shape)
            .iter()
            .enumerate()
            .map(|(i, y)| y / s[i / n])
            .collect();
        let got = run_op::<B>(&c, device, B::ternary_matmul_i8);
        let scale = expected.iter().fold(1f32, |a, v| a.max(v.abs()));
        for (i, (g, e)) in got.iter().zip(&expected).enumerate() {
            assert!(
                (g - e).abs() <= 1e-5 * scale,
                "{what} int8 m{m} n{n} k{k} block{block} [{i}]: {g} vs {e}"
            );
        }
    }
}

#[test]
fn ndarray_int8_op_matches_reference() {
    check_i8::<NdArray>(&Default::default(), "ndarray");
}

#[test]
fn packing_round_trips_with_zero_padding() {
    let mut rng = Lcg(7);
    for k in [1, 15, 16, 17, 100] {
        let trits: Vec<i8> = (0..k).map(|_| rng.trit()).collect();
        let mut words = vec![0u32; words_per_row(k)];
        pack_row(&trits, &mut words);
        let mut back = vec![0i8; k];
        unpack_row(&words, &mut back);
        assert_eq!(back, trits);
        for pad in k..words.len() * 16 {
            assert_eq!(trit_at(&words, pad), 0, "padding trit {pad} of k={k}");
        }
    }
}

#[test]
fn ndarray_op_matches_reference() {
    check::<NdArray>(
        &Default::default(),
        NdArray::ternary_matmul,
        "ndarray",
        1e-6,
    );
}

#[test]
fn portable_burn_ops_match_reference_on_ndarray() {
    check::<NdArray>(
        &Default::default(),
        burn_ops::ternary_matmul::<NdArray>,
        "burn-ops on ndarray",
        1e-6,
    );
}

/// Activations on the half-way points of the int8 grid (`max|x| = 127`, so `s = 1`), and the values
/// `ternary_matmul_i8` must give when row `j` of the weights picks column `j`: the levels rounded half to even.
const HALF_WAY: [f32; 8] = [127.0, 0.5, 1.5, 2.5, -0.5, -1.5, 3.5, -126.5];
const HALF_WAY_LEVELS: [f32; 8] = [127.0, 0.0, 2.0, 2.0, 0.0, -2.0, 4.0, -126.0];

/// BitNet's int8 activation quantization rounds half to even (SPIR-V's plain `Round` and C's `roundf` do not).
fn check_rounds_half_to_even<B: TernaryBackend>(device: &B::Device) {
    let k = HALF_WAY.len();
    let kw = words_per_row(k);
    let mut words = vec![0u32; k * kw];
    for (j, row) in words.chunks_exact_mut(kw).enumerate() {
        let trits: Vec<i8> = (0..k).map(|c| i8::from(c == j)).collect();
        pack_row(&trits, row);
    }
    let x = Tensor::<B, 2>::from_data(TensorData::new(HALF_WAY.to_vec(), [1, k]), device);
    let w = Tensor::<B, 2, Int>::from_data(TensorData::new(words, [k, kw]), (device, DType::U32));
    let scales = Tensor::<B, 2>::ones([k, 1], device);
    let y = B::ternary_matmul_i8(
        x.into_primitive().tensor(),
        w.into_primitive(),
        scales.into_primitive().tensor(),
    );
    let y = Tensor::<B, 2>::from_primitive(TensorPrimitive::Float(y));
    assert_eq!(y.into_data().to_vec::<f32>().unwrap(), HALF_WAY_LEVELS);
}

#[test]
fn int8_quantization_rounds_half_to_even() {
    let mut q = [0i8; HALF_WAY.len()];
    let s = reference::quantize_row_i8(&HALF_WAY, &mut q);
    assert_eq!(s, 1.0);
    assert_eq!(q.map(f32::from), HALF_WAY_LEVELS);
    check_rounds_half_to_even::<NdArray>(&Default::default());
}

/// The GPU tests, instantiated for each GPU backend compiled in; each skips with a message without a device.
#[cfg(any(feature = "wgpu", feature = "cuda"))]
macro_rules! gpu_tests {
    ($name:ident, $backend:ty, $device:path) => {
        mod $name {
            use super::*;

            #[test]
            fn op_matches_reference() {
                let Some(d) = $device() else { return };
                check::<$backend>(
                    &d,
                    <$backend as TernaryBackend>::ternary_matmul,
                    stringify!($name),
                    1e-5,
                );
            }

            #[test]
            fn int8_op_matches_reference() {
                let Some(d) = $device() else { return };
                check_i8::<$backend>(&d, stringify!($name));
            }

            #[test]
            fn rounds_half_to_even() {
                let Some(d) = $device() else { return };
                check_rounds_half_to_even::<$backend>(&d);
            }
        }
    };
}

#[cfg(feature = "wgpu")]
gpu_tests!(wgpu, burn::backend::Wgpu, common::wgpu_device);
#[cfg(feature = "cuda")]
gpu_tests!(cuda, burn::backend::Cuda, common::cuda_device);
