//! Every backend's int8 output head against an integer reference, on ragged shapes (widths that are not
//! whole packed words, partial row and token tiles) and heavy-tailed weights and activations.

use bitnet_kernels_cubecl::packing::{i8_at, i8_words_per_row};
use bitnet_kernels_cubecl::reference;
use bitnet_kernels_cubecl::{burn_ops, TernaryBackend};
use burn::backend::NdArray;
use burn::tensor::ops::{FloatTensor, IntTensor};
use burn::tensor::{DType, Int, Tensor, TensorData, TensorPrimitive};

use crate::common::Lcg;

/// `(m, n, k)`: one token and prefill tiles, rows past a cube's 8, widths of 1..many words with remainders.
const SHAPES: [(usize, usize, usize); 6] = [
    (1, 5, 16),
    (2, 7, 33),
    (1, 129, 100),
    (9, 17, 64),
    (3, 40, 2560),
    (17, 3, 6),
];

/// An int8 head op on primitives: `(x, packed int8 words, row scales) -> y`.
type Op<B> = fn(FloatTensor<B>, IntTensor<B>, FloatTensor<B>) -> FloatTensor<B>;

/// The backend's head quantization of `w [n, k]`, read back: packed words and row scales.
fn quantize_head<B: TernaryBackend>(
    device: &B::Device,
    w: &[f32],
    n: usize,
    k: usize,
) -> (Vec<u32>, Vec<f32>) {
    let wt = Tensor::<B, 2>::from_data(TensorData::new(w.to_vec(), [n, k]), device);
    let (q, scales) = B::quantize_rows_i8(wt.into_primitive().tensor());
    let q = Tensor::<B, 2, Int>::from_primitive(q).into_data();
    let words = q.convert::<u32>().to_vec::<u32>().unwrap();
    let scales = Tensor::<B, 2>::from_primitive(TensorPrimitive::Float(scales))
        .into_data()
        .to_vec::<f32>()
        .unwrap();
    (words, scales)
}

/// Quantizes random weights with the backend's [`TernaryBackend::quantize_rows_i8`] (checked against its
/// definition), then runs `op` on every shape against `y[t, r] = (Σ q·w as i32) · scale[r] / s[t]` with the
/// reference's quantization: the integers must be exact, so the only allowed difference is the rounding of the final
/// multiply and divide (2 ulp; a GPU's f32 division need not be correctly rounded).
fn check<B: TernaryBackend>(device: &B::Device, op: Op<B>, what: &str) {
    let mut rng = Lcg(404);
    for (m, n, k) in SHAPES {
        let w: Vec<f32> = (0..n * k).map(|_| rng.heavy()).collect();
        let (words, scales) = quantize_head::<B>(device, &w, n, k);
        for r in 0..n {
            let row = &w[r * k..(r + 1) * k];
            let amax = row.iter().fold(0f32, |a, v| a.max(v.abs()));
            assert_eq!(
                scales[r],
                amax / 127.0,
                "{what} n{n} k{k}: scale of row {r}"
            );
            for (i, &v) in row.iter().enumerate() {
                let want = (v * (127.0 / amax)).round_ties_even();
                let got = i8_at(&words[r * i8_words_per_row(k)..], i);
                assert_eq!(got as f32, want, "{what} n{n} k{k}: row {r} column {i}");
            }
        }
        let x: Vec<f32> = (0..m * k).map(|_| rng.heavy()).collect();
        let kw = i8_words_per_row(k);
        let mut expected = vec![0f32; m * n];
        for t in 0..m {
            let mut q = vec![0i8; k];
            let s = reference::quantize_row_i8(&x[t * k..(t + 1) * k], &mut q);
            for r in 0..n {
                let row = &words[r * kw..(r + 1) * kw];
                let d: i32 = (0..k).map(|i| q[i] as i32 * i8_at(row, i) as i32).sum();
                expected[t * n + r] = d as f32 * scales[r] / s;
            }
        }
        let y = op(
            Tensor::<B, 2>::from_data(TensorData::new(x, [m, k]), device)
                .into_primitive()
                .tensor(),
            Tensor::<B, 2, Int>::from_data(TensorData::new(words, [n, kw]), (device, DType::U32))
                .into_primitive(),
            Tensor::<B, 2>::from_data(TensorData::new(scales, [n, 1]), device)
                .into_primitive()
                .tensor(),
        );
        let got: Vec<f32> = Tensor::<B, 2>::from_primitive(TensorPrimitive::Float(y))
            .into_data()
            .convert::<f32>()
            .to_vec()
            .unwrap();
        for (i, (g, e)) in got.iter().zip(&expected).enumerate() {
            assert!(
                (g - e).abs() <= 2.0 * f32::EPSILON * e.abs(),
                "{what} m{m} n{n} k{k} [{i}]: {g} vs {e}"
            );
        }
    }
}

#[test]
fn ndarray_int8_head_matches_integer_reference() {
    check::<NdArray>(&Default::default(), NdArray::int8_matmul, "ndarray");
}

#[test]
fn burn_ops_int8_head_matches_integer_reference() {
    check::<NdArray>(
        &Default::default(),
        burn_ops::int8_matmul::<NdArray>,
        "burn-ops on ndarray",
    );
}

/// The GPU test, instantiated for each GPU backend compiled in; it skips with a message without a device.
#[cfg(any(feature = "wgpu", feature = "cuda"))]
macro_rules! gpu_test {
    ($name:ident, $backend:ty, $device:path) => {
        #[test]
        fn $name() {
            let Some(d) = $device() else { return };
            check::<$backend>(
                &d,
                <$backend as TernaryBackend>::int8_matmul,
                stringify!($name),
            );
        }
    };
}

#[cfg(feature = "wgpu")]
gpu_test!(
    wgpu_int8_head_matches_integer_reference,
    burn::backend::Wgpu,
    crate::common::wgpu_device
);
#[cfg(feature = "cuda")]
gpu_test!(
    cuda_int8_head_matches_integer_reference,
    burn::backend::Cuda,
    crate::common::cuda_device
);
