//! The gated FFN activation op (a CPU loop on burn-ndarray, one kernel on the CubeCL backends), ReLU² and SiLU,
//! against an f64 evaluation, on element counts that are not multiples of the kernel's 256 units.

use bitnet_kernels_cubecl::{Activation, TernaryBackend};
use burn::tensor::{Tensor, TensorData, TensorPrimitive};

use crate::common::Lcg;

const SHAPES: [(usize, usize); 3] = [(1, 6912), (3, 100), (2, 257)];

fn reference(g: f64, u: f64, act: Activation) -> f64 {
    match act {
        Activation::Relu2 => g.max(0.0).powi(2) * u,
        Activation::Silu => g / (1.0 + (-g).exp()) * u,
    }
}

fn check<B: TernaryBackend>(device: &B::Device, what: &str) {
    let mut rng = Lcg(9);
    for act in [Activation::Relu2, Activation::Silu] {
        for (rows, n) in SHAPES {
            let mut values = || {
                (0..rows * n)
                    .map(|_| rng.heavy() * 3.0)
                    .collect::<Vec<f32>>()
            };
            let (g, u) = (values(), values());
            let t = |v: &[f32]| {
                Tensor::<B, 2>::from_data(TensorData::new(v.to_vec(), [rows, n]), device)
                    .into_primitive()
                    .tensor()
            };
            let y = B::gated(t(&g), t(&u), act);
            let got = Tensor::<B, 2>::from_primitive(TensorPrimitive::Float(y))
                .into_data()
                .to_vec::<f32>()
                .unwrap();
            for (i, got) in got.iter().enumerate() {
                let want = reference(g[i] as f64, u[i] as f64, act) as f32;
                // Two or three roundings of f32 products (and `exp` within a few ulp).
                assert!(
                    (got - want).abs() <= 1e-5 * (1.0 + want.abs()),
                    "{what} {act:?} {rows}x{n}: element {i}: {got} vs {want}"
                );
            }
        }
    }
}

backend_tests!(check);
