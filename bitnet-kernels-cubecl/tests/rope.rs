//! The RoPE op (a CPU loop on burn-ndarray, one kernel on the CubeCL backends) against an f64 evaluation, on
//! inputs in the layout the model hands over (a projection's `[b, seq, heads, d]` with dims 1 and 2 swapped,
//! not contiguous), with partial rotation (`2·half < d`) and prompts that start mid-table.

use bitnet_kernels_cubecl::TernaryBackend;
use burn::tensor::{Tensor, TensorData, TensorPrimitive};

#[macro_use]
mod common;
use common::Lcg;

/// `(batch, heads, seq, d, half, start)`.
const SHAPES: [(usize, usize, usize, usize, usize, usize); 4] = [
    (1, 4, 1, 128, 64, 37),
    (2, 3, 5, 10, 4, 0),
    (1, 2, 7, 64, 32, 9),
    (1, 1, 3, 6, 3, 60),
];
const POSITIONS: usize = 64;

fn reference(x: &[f32], dims: [usize; 4], half: usize, start: usize, angles: &[f64]) -> Vec<f32> {
    let [b, h, seq, d] = dims;
    let mut out = vec![0f32; x.len()];
    for bb in 0..b {
        for t in 0..seq {
            for hh in 0..h {
                // `x` is `[b, seq, h, d]`; the output `[b, h, seq, d]`.
                let src = &x[((bb * seq + t) * h + hh) * d..][..d];
                let dst = &mut out[((bb * h + hh) * seq + t) * d..][..d];
                for i in 0..d {
                    dst[i] = if i < 2 * half {
                        let a = angles[(start + t) * half + i % half];
                        let (c, s) = (a.cos(), a.sin());
                        let (x1, x2) = (src[i % half] as f64, src[i % half + half] as f64);
                        (if i < half {
                            x1 * c - x2 * s
                        } else {
                            x2 * c + x1 * s
                        }) as f32
                    } else {
                        src[i]
                    };
                }
            }
        }
    }
    out
}

fn check<B: TernaryBackend>(device: &B::Device, what: &str) {
    let mut rng = Lcg(3);
    for (b, h, seq, d, half, start) in SHAPES {
        let angles: Vec<f64> = (0..POSITIONS * half)
            .map(|i| {
                (i / half) as f64 * 10000f64.powf(-2.0 * (i % half) as f64 / (2 * half) as f64)
            })
            .collect();
        let table = |f: fn(f64) -> f64| {
            let v: Vec<f32> = angles.iter().map(|&a| f(a) as f32).collect();
            Tensor::<B, 2>::from_data(TensorData::new(v, [POSITIONS, half]), device)
                .into_primitive()
                .tensor()
        };
        let x: Vec<f32> = (0..b * seq * h * d).map(|_| rng.heavy()).collect();
        let want = reference(&x, [b, h, seq, d], half, start, &angles);
        let xt =
            Tensor::<B, 4>::from_data(TensorData::new(x, [b, seq, h, d]), device).swap_dims(1, 2);
        let y = B::rope(
            xt.into_primitive().tensor(),
            table(f64::cos),
            table(f64::sin),
            start,
        );
        let got = Tensor::<B, 4>::from_primitive(TensorPrimitive::Float(y));
        assert_eq!(got.dims(), [b, h, seq, d], "{what}: shape");
        let got = got.into_data().to_vec::<f32>().unwrap();
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            // Two f32 products and a sum, with cos/sin rounded to f32: a few ulp of the inputs' magnitude.
            assert!(
                (g - w).abs() <= 1e-5 * (1.0 + w.abs()),
                "{what} {b}x{h}x{seq}x{d}, half {half}, start {start}: element {i}: {g} vs {w}"
            );
        }
    }
}

backend_tests!(check);
