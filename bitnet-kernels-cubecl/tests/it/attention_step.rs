//! The attention step of several sequences (continuous batching: each sequence's rows rotated at its own
//! positions, written into its own cache, attending over it) against the f64 RoPE and attention references, on
//! steps that mix decode rows and prompt chunks at different depths, a single sequence of batch 2, and partial
//! rotation. The caches must hold the new rotated keys and values and keep every other position.

use bitnet_kernels_cubecl::cpu::AttentionShape;
use bitnet_kernels_cubecl::{StepKv, TernaryBackend};
use burn::tensor::{Tensor, TensorData, TensorMetadata, TensorPrimitive};

use crate::common;
use crate::common::Lcg;

const POSITIONS: usize = 64;

/// `(batch, heads, kv_heads, d, half, max_len, [(start, seq)])`.
type Step = (
    usize,
    usize,
    usize,
    usize,
    usize,
    usize,
    &'static [(usize, usize)],
);

const STEPS: [Step; 4] = [
    (1, 4, 2, 16, 8, 40, &[(5, 1), (0, 3), (17, 1), (30, 2)]),
    (2, 4, 1, 12, 4, 20, &[(3, 4)]),
    (1, 6, 3, 8, 4, 48, &[(0, 9), (47, 1)]),
    (1, 2, 2, 10, 5, 33, &[(32, 1), (1, 1), (0, 1)]),
];

/// The step's rows and random projections `q [batch, rows, heads·d]`, `k`, `v` `[batch, rows, kv·d]`.
fn projections(
    rng: &mut Lcg,
    batch: usize,
    (heads, kv, d): (usize, usize, usize),
    seqs: &[(usize, usize)],
) -> (usize, [Vec<f32>; 3]) {
    let rows: usize = seqs.iter().map(|s| s.1).sum();
    let mut values = |n: usize| (0..n).map(|_| rng.uniform()).collect::<Vec<f32>>();
    let q = values(batch * rows * heads * d);
    (
        rows,
        [
            q,
            values(batch * rows * kv * d),
            values(batch * rows * kv * d),
        ],
    )
}

fn check<B: TernaryBackend>(device: &B::Device, what: &str) {
    let mut rng = Lcg(29);
    for (batch, heads, kv, d, half, max_len, seqs) in STEPS {
        let what = format!("{what}: b{batch} {heads}/{kv} heads d{d} half{half}, {seqs:?}");
        let (rows, [q, k, v]) = projections(&mut rng, batch, (heads, kv, d), seqs);
        let mut values = |n: usize| (0..n).map(|_| rng.uniform()).collect::<Vec<f32>>();
        let cache_len = batch * kv * max_len * d;
        let old: Vec<[Vec<f32>; 2]> = seqs
            .iter()
            .map(|_| [values(cache_len), values(cache_len)])
            .collect();
        let angles: Vec<f64> = (0..POSITIONS * half)
            .map(|i| {
                (i / half) as f64 * 10000f64.powf(-2.0 * (i % half) as f64 / (2 * half) as f64)
            })
            .collect();

        // The reference, one sequence at a time.
        let mut want = vec![0f32; q.len()];
        let mut want_caches = old.clone();
        let mut first = 0;
        for ((start, seq), [kc, vc]) in seqs.iter().copied().zip(&mut want_caches) {
            // Rows `first..first + seq` of a `[batch, rows, h, d]` buffer, as `[batch, seq, h, d]`.
            let rows_of = |x: &[f32], h: usize| -> Vec<f32> {
                (0..batch)
                    .flat_map(|b| x[(b * rows + first) * h * d..][..seq * h * d].to_vec())
                    .collect()
            };
            let q_rot = crate::rope::reference(
                &rows_of(&q, heads),
                [batch, heads, seq, d],
                half,
                start,
                &angles,
            );
            let k_rot =
                crate::rope::reference(&rows_of(&k, kv), [batch, kv, seq, d], half, start, &angles);
            let v_heads =
                crate::rope::reference(&rows_of(&v, kv), [batch, kv, seq, d], 0, start, &angles);
            for (cache, new) in [(&mut *kc, &k_rot), (&mut *vc, &v_heads)] {
                for b in 0..batch {
                    for h in 0..kv {
                        for i in 0..seq {
                            cache[((b * kv + h) * max_len + start + i) * d..][..d]
                                .copy_from_slice(&new[((b * kv + h) * seq + i) * d..][..d]);
                        }
                    }
                }
            }
            let shape = AttentionShape {
                batch,
                heads,
                kv_heads: kv,
                seq,
                head_dim: d,
                max_len,
                len: start + seq,
            };
            let out = crate::attention::reference(&q_rot, kc, vc, shape);
            for b in 0..batch {
                want[(b * rows + first) * heads * d..][..seq * heads * d]
                    .copy_from_slice(&out[b * seq * heads * d..][..seq * heads * d]);
            }
            first += seq;
        }

        let t3 = |x: &[f32], h: usize| {
            Tensor::<B, 3>::from_data(TensorData::new(x.to_vec(), [batch, rows, h * d]), device)
                .into_primitive()
                .tensor()
        };
        let table = |f: fn(f64) -> f64| {
            let v: Vec<f32> = angles.iter().map(|&a| f(a) as f32).collect();
            Tensor::<B, 2>::from_data(TensorData::new(v, [POSITIONS, half]), device)
                .into_primitive()
                .tensor()
        };
        let caches = seqs
            .iter()
            .zip(&old)
            .map(|(&(start, seq), [kc, vc])| {
                let t = |x: &Vec<f32>| {
                    Tensor::<B, 4>::from_data(
                        TensorData::new(x.clone(), [batch, kv, max_len, d]),
                        device,
                    )
                    .into_primitive()
                    .tensor()
                };
                StepKv {
                    k: t(kc),
                    v: t(vc),
                    start,
                    seq,
                }
            })
            .collect();
        let (out, kept) = B::attention_step(
            [t3(&q, heads), t3(&k, kv), t3(&v, kv)],
            (table(f64::cos), table(f64::sin)),
            heads,
            caches,
        );
        let host = |y, dims: &[usize]| {
            let y = Tensor::<B, 4>::from_primitive(TensorPrimitive::Float(y));
            assert_eq!(y.dims().as_slice(), dims, "{what}: shape");
            y.into_data().to_vec::<f32>().unwrap()
        };
        let out = Tensor::<B, 3>::from_primitive(TensorPrimitive::Float(out))
            .reshape([batch, rows, heads, d]);
        common::assert_close(
            &out.into_data().to_vec::<f32>().unwrap(),
            &want,
            &format!("{what}: output"),
        );
        assert_eq!(kept.len(), seqs.len(), "{what}: caches returned");
        for (i, ([kc, vc], [wk, wv])) in kept.into_iter().zip(&want_caches).enumerate() {
            let dims = [batch, kv, max_len, d];
            common::assert_close(&host(kc, &dims), wk, &format!("{what}: sequence {i} keys"));
            common::assert_close(
                &host(vc, &dims),
                wv,
                &format!("{what}: sequence {i} values"),
            );
        }
    }
}

backend_tests!(check);

/// With f16 caches (burn-ndarray's default, [`TernaryBackend::kv_cache_zeros`]) the step stores exactly the f16
/// rounding of what the f32 step stores (old positions kept, new rotated keys and values rounded to nearest),
/// and its output stays within the new rows' rounding of the f32 step's (values uniform in [-1, 1]: 2⁻¹¹ of an
/// element moves a score by at most √d · 2⁻¹¹, an output by well under 1e-2).
#[test]
fn f16_caches_hold_the_rounded_rows() {
    use bitnet_kernels_cubecl::CacheType;
    use burn::backend::NdArray;
    use half::f16;
    let device = Default::default();
    let mut rng = Lcg(31);
    for (batch, heads, kv, d, half, max_len, seqs) in STEPS {
        let what = format!("b{batch} {heads}/{kv} heads d{d} half{half}, {seqs:?}");
        let (rows, [q, k, v]) = projections(&mut rng, batch, (heads, kv, d), seqs);
        let mut values = |n: usize| (0..n).map(|_| rng.uniform()).collect::<Vec<f32>>();
        let kv_dims = [batch, kv, max_len, d];
        let cache_len = kv_dims.iter().product();
        // Old contents already f16 values, so both runs start from the same cache.
        let old: Vec<Vec<f32>> = (0..2 * seqs.len())
            .map(|_| {
                values(cache_len)
                    .into_iter()
                    .map(|x| f16::from_f32(x).to_f32())
                    .collect()
            })
            .collect();
        let tables: Vec<Vec<f32>> = [f64::cos, f64::sin]
            .iter()
            .map(|f| {
                (0..POSITIONS * half)
                    .map(|i| f((i / half) as f64 * 0.3 / (1 + i % half) as f64) as f32)
                    .collect()
            })
            .collect();
        let run = |cache: CacheType| {
            let t3 = |x: &[f32], h: usize| {
                Tensor::<NdArray, 3>::from_data(
                    TensorData::new(x.to_vec(), [batch, rows, h * d]),
                    &device,
                )
                .into_primitive()
                .tensor()
            };
            let table = |x: &[f32]| {
                Tensor::<NdArray, 2>::from_data(
                    TensorData::new(x.to_vec(), [POSITIONS, half]),
                    &device,
                )
                .into_primitive()
                .tensor()
            };
            // The old contents in the cache's element type (f16 as burn-ndarray's `U16` bits).
            let filled = |x: &[f32]| match cache {
                CacheType::F32 => {
                    Tensor::<NdArray, 4>::from_data(TensorData::new(x.to_vec(), kv_dims), &device)
                        .into_primitive()
                        .tensor()
                }
                CacheType::F16 => {
                    let bits: Vec<u16> = x.iter().map(|&x| f16::from_f32(x).to_bits()).collect();
                    ndarray::ArrayD::from_shape_vec(ndarray::IxDyn(&kv_dims), bits)
                        .unwrap()
                        .into_shared()
                        .into()
                }
            };
            let caches = seqs
                .iter()
                .zip(old.chunks_exact(2))
                .map(|(&(start, seq), kv)| StepKv {
                    k: filled(&kv[0]),
                    v: filled(&kv[1]),
                    start,
                    seq,
                })
                .collect();
            let (out, kept) = NdArray::attention_step(
                [t3(&q, heads), t3(&k, kv), t3(&v, kv)],
                (table(&tables[0]), table(&tables[1])),
                heads,
                caches,
            );
            let out = Tensor::<NdArray, 3>::from_primitive(TensorPrimitive::Float(out))
                .into_data()
                .to_vec::<f32>()
                .unwrap();
            (out, kept)
        };
        let (want, kept32) = run(CacheType::F32);
        let (got, kept16) = run(CacheType::F16);
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            assert!((g - w).abs() <= 1e-2, "{what}: output {i}: {g} vs {w}");
        }
        for (c, (half_cache, full)) in kept16
            .into_iter()
            .flatten()
            .zip(kept32.into_iter().flatten())
            .enumerate()
        {
            let burn_ndarray::NdArrayTensor::U16(bits) = half_cache else {
                panic!(
                    "{what}: cache {c} is not f16 bits: {:?}",
                    half_cache.dtype()
                )
            };
            let full = Tensor::<NdArray, 4>::from_primitive(TensorPrimitive::Float(full))
                .into_data()
                .to_vec::<f32>()
                .unwrap();
            let rounded: Vec<u16> = full.iter().map(|&x| f16::from_f32(x).to_bits()).collect();
            assert_eq!(
                bits.view().iter().copied().collect::<Vec<u16>>(),
                rounded,
                "{what}: cache {c}"
            );
        }
    }
}
