//! The RoPE op (a CPU loop on burn-ndarray, one kernel on the CubeCL backends) against an f64 evaluation, on
//! inputs in the layout the model hands over (a projection's `[b, seq, heads, d]` with dims 1 and 2 swapped,
//! not contiguous), with partial rotation (`2·half < d`) and prompts that start mid-table; and the KV-cache step
//! (`rope_append`) that rotates q and k and writes k and v into the cache, which must leave every other cache
//! position as it was.

use bitnet_kernels_cubecl::TernaryBackend;
use burn::tensor::{Tensor, TensorData, TensorPrimitive};

use crate::common;
use crate::common::Lcg;

/// `(batch, heads, seq, d, half, start)`.
const SHAPES: [(usize, usize, usize, usize, usize, usize); 4] = [
    (1, 4, 1, 128, 64, 37),
    (2, 3, 5, 10, 4, 0),
    (1, 2, 7, 64, 32, 9),
    (1, 1, 3, 6, 3, 60),
];
const POSITIONS: usize = 64;

/// `x [b, seq, h, d]` rotated in f64 at positions `start..`, as `[b, h, seq, d]`.
pub(crate) fn reference(
    x: &[f32],
    dims: [usize; 4],
    half: usize,
    start: usize,
    angles: &[f64],
) -> Vec<f32> {
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

/// `[b, seq, h, d]` values as the `[b, h, seq, d]` heads view the model hands over.
fn heads<B: TernaryBackend>(
    x: &[f32],
    [b, h, seq, d]: [usize; 4],
    device: &B::Device,
) -> Tensor<B, 4> {
    Tensor::<B, 4>::from_data(TensorData::new(x.to_vec(), [b, seq, h, d]), device).swap_dims(1, 2)
}

fn values<B: TernaryBackend>(y: burn::tensor::ops::FloatTensor<B>, dims: [usize; 4]) -> Vec<f32> {
    let y = Tensor::<B, 4>::from_primitive(TensorPrimitive::Float(y));
    assert_eq!(y.dims(), dims, "shape");
    y.into_data().to_vec::<f32>().unwrap()
}

fn check<B: TernaryBackend>(device: &B::Device, what: &str) {
    let mut rng = Lcg(3);
    for (b, h, seq, d, half, start) in SHAPES {
        let what = format!("{what} {b}x{h}x{seq}x{d}, half {half}, start {start}");
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
        let q: Vec<f32> = (0..b * seq * h * d).map(|_| rng.heavy()).collect();
        let q_want = reference(&q, [b, h, seq, d], half, start, &angles);
        let y = B::rope(
            heads::<B>(&q, [b, h, seq, d], device)
                .into_primitive()
                .tensor(),
            table(f64::cos),
            table(f64::sin),
            start,
        );
        common::assert_close(&values::<B>(y, [b, h, seq, d]), &q_want, &what);

        let kv = h.div_ceil(2);
        let k: Vec<f32> = (0..b * seq * kv * d).map(|_| rng.heavy()).collect();
        let v: Vec<f32> = (0..b * seq * kv * d).map(|_| rng.heavy()).collect();
        let k_want = reference(&k, [b, kv, seq, d], half, start, &angles);
        // `v` only changes layout: the reference with no rotated dimensions.
        let v_want = reference(&v, [b, kv, seq, d], 0, start, &angles);
        let cache_dims = [b, kv, POSITIONS, d];
        let old: Vec<f32> = (0..cache_dims.iter().product())
            .map(|_| rng.heavy())
            .collect();
        let cache = || {
            Tensor::<B, 4>::from_data(TensorData::new(old.clone(), cache_dims), device)
                .into_primitive()
                .tensor()
        };
        let input = |x: &[f32]| {
            heads::<B>(x, [b, kv, seq, d], device)
                .into_primitive()
                .tensor()
        };
        let [q_got, k_cache, v_cache] = B::rope_append(
            heads::<B>(&q, [b, h, seq, d], device)
                .into_primitive()
                .tensor(),
            input(&k),
            input(&v),
            table(f64::cos),
            table(f64::sin),
            start,
            cache(),
            cache(),
        );
        common::assert_close(
            &values::<B>(q_got, [b, h, seq, d]),
            &q_want,
            &format!("{what}: q"),
        );
        for (name, got, want) in [
            ("k", values::<B>(k_cache, cache_dims), &k_want),
            ("v", values::<B>(v_cache, cache_dims), &v_want),
        ] {
            for (row, cached) in got.chunks_exact(d).enumerate() {
                let (head_row, pos) = (row / POSITIONS, row % POSITIONS);
                let expected = if (start..start + seq).contains(&pos) {
                    &want[(head_row * seq + pos - start) * d..][..d]
                } else {
                    &old[row * d..][..d]
                };
                common::assert_close(cached, expected, &format!("{what}: {name} cache row {row}"));
            }
        }
    }
}

backend_tests!(check);
