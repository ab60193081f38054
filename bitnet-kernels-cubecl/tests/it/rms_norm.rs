//! The RMSNorm op (a row loop on the CPU, one kernel on the CubeCL backends) against an f64 evaluation, on rows
//! whose widths are not multiples of the kernel's 256 units and with values spanning several magnitudes.

use bitnet_kernels_cubecl::TernaryBackend;
use burn::tensor::{Tensor, TensorData, TensorPrimitive};

use crate::common;
use crate::common::Lcg;

/// `(rows, size)`: one token, a prompt, widths below, at and above a multiple of 256, the 2B-4T FFN width, and a
/// prompt long enough that the CPU splits its rows across threads, in bands with a ragged last one.
const SHAPES: [(usize, usize); 6] = [
    (1, 2560),
    (7, 100),
    (3, 256),
    (2, 300),
    (1, 6912),
    (77, 300),
];
const EPS: f64 = 1e-5;

/// Within 1e-5 relative to the row's scale: f32 sums of up to 6912 squares in any order differ from f64 by a
/// few 1e-7 relative.
fn check<B: TernaryBackend>(device: &B::Device, what: &str) {
    let mut rng = Lcg(5);
    for (rows, size) in SHAPES {
        let x: Vec<f32> = (0..rows * size).map(|_| rng.heavy() * 3.0).collect();
        let weight: Vec<f32> = (0..size).map(|_| 1.0 + rng.uniform()).collect();
        let want = common::rms_norm_f64(&x, &weight, EPS);
        let xt = Tensor::<B, 2>::from_data(TensorData::new(x, [rows, size]), device);
        let wt = Tensor::<B, 1>::from_data(TensorData::new(weight, [size]), device);
        let y = B::rms_norm(
            xt.into_primitive().tensor(),
            wt.into_primitive().tensor(),
            EPS,
        );
        let got = Tensor::<B, 2>::from_primitive(TensorPrimitive::Float(y))
            .into_data()
            .to_vec::<f32>()
            .unwrap();
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            assert!(
                (g - w).abs() <= 1e-5 * (1.0 + w.abs()),
                "{what} {rows}x{size}: element {i}: {g} vs {w}"
            );
        }
    }
}

backend_tests!(check);
