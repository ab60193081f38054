//! The cached-attention op (the CPU kernel, the Burn-ops composition and the CubeCL kernel) against a direct f64
//! evaluation of causal grouped-query attention, on shapes with several sequences, query groups, prefill chunks
//! that start mid-cache, caches with unused room, head widths that are not multiples of 4, and caches longer
//! than the GPU kernel's 128-key chunks, whose keys it splits among cubes (on the last shape the earlier rows
//! of a chunk see no key of the last split); for the CPU's prefill tiles (16 query vectors, 32 on AVX-512:
//! positions × the group's heads, keys in blocks of 32), prompts of several tiles and key blocks, groups that
//! leave a tile's rows unused (3 heads: 5 or 10 positions and padding rows) and a group of 24 (one position per
//! unit, as in decode); decode queries whose keys are split into chunks of 512 (a cache of 701 keys: a ragged
//! last chunk) and a wide group's prompt across a chunk's edge (its first position sees none of the second
//! chunk); for the decode kernels (one query per
//! sequence: heads in passes of up to 4, keys in pairs, outputs in runs of 16 and 8), groups of 1, 3, 6 and 7
//! heads, odd key counts and head widths of one, three and five vectors of 8.

use bitnet_kernels_cubecl::cpu::{self, AttentionShape};
use bitnet_kernels_cubecl::{burn_ops, TernaryBackend};
use burn::tensor::{Tensor, TensorData, TensorPrimitive};
use burn_ndarray::NdArray;

use crate::common;
use crate::common::Lcg;

/// Query `i` sits at position `len - seq + i` and sees keys `0..=position`; group `h / (heads / kv_heads)`;
/// the output is token-major, `[batch, seq, heads, d]`.
pub(crate) fn reference(q: &[f32], k: &[f32], v: &[f32], s: AttentionShape) -> Vec<f32> {
    let d = s.head_dim;
    let mut out = vec![0f32; q.len()];
    for b in 0..s.batch {
        for h in 0..s.heads {
            let cache = (b * s.kv_heads + h / (s.heads / s.kv_heads)) * s.max_len * d;
            for i in 0..s.seq {
                let qi = &q[((b * s.heads + h) * s.seq + i) * d..][..d];
                let visible = s.len - s.seq + i + 1;
                let scores: Vec<f64> = (0..visible)
                    .map(|j| {
                        let kj = &k[cache + j * d..][..d];
                        qi.iter()
                            .zip(kj)
                            .map(|(a, b)| *a as f64 * *b as f64)
                            .sum::<f64>()
                            / (d as f64).sqrt()
                    })
                    .collect();
                let max = scores.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                let e: Vec<f64> = scores.iter().map(|x| (x - max).exp()).collect();
                let sum: f64 = e.iter().sum();
                let o = &mut out[((b * s.seq + i) * s.heads + h) * d..][..d];
                for (c, o) in o.iter_mut().enumerate() {
                    *o = (0..visible)
                        .map(|j| e[j] / sum * v[cache + j * d + c] as f64)
                        .sum::<f64>() as f32;
                }
            }
        }
    }
    out
}

const SHAPES: [AttentionShape; 19] = [
    shape(1, 20, 5, 1, 128, 64, 37),
    shape(1, 4, 2, 2, 64, 400, 333),
    shape(1, 2, 1, 3, 258, 300, 290),
    shape(2, 4, 2, 3, 16, 10, 7),
    shape(1, 6, 6, 5, 8, 5, 5),
    shape(3, 8, 1, 1, 12, 9, 1),
    shape(1, 4, 2, 17, 32, 40, 30),
    shape(1, 20, 5, 70, 128, 200, 150),
    shape(1, 12, 4, 9, 100, 40, 33),
    shape(1, 8, 1, 3, 32, 300, 290),
    shape(1, 24, 1, 4, 16, 8, 6),
    shape(1, 12, 4, 1, 64, 300, 291),
    shape(2, 6, 1, 1, 24, 50, 45),
    shape(1, 5, 5, 1, 8, 40, 33),
    shape(1, 14, 2, 1, 40, 1000, 701),
    shape(1, 2, 1, 3, 16, 260, 257),
    shape(1, 24, 1, 3, 16, 520, 514),
    shape(1, 6, 2, 1, 48, 70, 69),
    shape(1, 8, 2, 1, 80, 1200, 1111),
];

const fn shape(
    batch: usize,
    heads: usize,
    kv_heads: usize,
    seq: usize,
    head_dim: usize,
    max_len: usize,
    len: usize,
) -> AttentionShape {
    AttentionShape {
        batch,
        heads,
        kv_heads,
        seq,
        head_dim,
        max_len,
        len,
    }
}

/// Random `q`, `k`, `v` for `s` and the reference output. Heavy-tailed values on short caches; uniform ones
/// from 64 positions on, where the f32 rounding of outlier scores (|q·k| up to 1600 per term) alone moves
/// the softmax by more than the 1e-5 tolerance, in any summation order.
fn case(rng: &mut Lcg, s: AttentionShape) -> [Vec<f32>; 4] {
    let d = s.head_dim;
    let heavy = s.len <= 64;
    let mut values = |n: usize| {
        (0..n)
            .map(|_| if heavy { rng.heavy() } else { rng.uniform() })
            .collect::<Vec<f32>>()
    };
    let q = values(s.batch * s.heads * s.seq * d);
    let k = values(s.batch * s.kv_heads * s.max_len * d);
    let v = values(s.batch * s.kv_heads * s.max_len * d);
    let want = reference(&q, &k, &v, s);
    [q, k, v, want]
}

/// The backend's op on every shape, and a query's bits independent of its call ([`same_bits_in_any_call`]).
fn check_backend<B: TernaryBackend>(device: &B::Device, what: &str) {
    same_bits_in_any_call::<B>(device, what);
    let mut rng = Lcg(11);
    for s in SHAPES {
        let [q, k, v, want] = case(&mut rng, s);
        let t = |x: &[f32], dims: [usize; 4]| {
            Tensor::<B, 4>::from_data(TensorData::new(x.to_vec(), dims), device)
                .into_primitive()
                .tensor()
        };
        let kv_dims = [s.batch, s.kv_heads, s.max_len, s.head_dim];
        let y = B::cached_attention(
            t(&q, [s.batch, s.heads, s.seq, s.head_dim]),
            t(&k, kv_dims),
            t(&v, kv_dims),
            s.len,
        );
        let got = Tensor::<B, 4>::from_primitive(TensorPrimitive::Float(y)).into_data();
        common::assert_close(
            &got.to_vec::<f32>().unwrap(),
            &want,
            &format!("{what}, {s:?}"),
        );
    }
}

backend_tests!(check_backend);

/// A query's result depends on its position and its cache alone on the backend (what the engine's prompt chunks,
/// prefix reuse and batches rely on): a prompt's last 4 rows give the same bits in one 37-row pass as in a pass of
/// their own, and a decode query the same bits alone as first of a batch of three, 1500 keys deep (where a GPU
/// splits a decode query's keys among cubes).
fn same_bits_in_any_call<B: TernaryBackend>(device: &B::Device, what: &str) {
    let (heads, kv_heads, d, max_len, len) = (8, 2, 64, 1600, 1500);
    let mut rng = Lcg(23);
    let mut values = |n: usize| (0..n).map(|_| rng.uniform()).collect::<Vec<f32>>();
    let tensor = |x: &[f32], dims: [usize; 4]| {
        Tensor::<B, 4>::from_data(TensorData::new(x.to_vec(), dims), device)
    };
    let attend = |q: Tensor<B, 4>, k: &Tensor<B, 4>, v: &Tensor<B, 4>| {
        let y = B::cached_attention(
            q.into_primitive().tensor(),
            k.clone().into_primitive().tensor(),
            v.clone().into_primitive().tensor(),
            len,
        );
        let y = Tensor::<B, 4>::from_primitive(TensorPrimitive::Float(y));
        y.into_data().to_vec::<f32>().unwrap()
    };
    let same = |got: &[f32], want: &[f32], case: &str| {
        common::assert_same_bits(got, want, &format!("{what}, {case}"))
    };
    let kv_dims = |batch| [batch, kv_heads, max_len, d];
    let [k, v] = [0; 2].map(|_| tensor(&values(3 * kv_heads * max_len * d), kv_dims(3)));
    let [k0, v0] = [&k, &v].map(|x| x.clone().narrow(0, 0, 1));

    let prompt = tensor(&values(heads * 37 * d), [1, heads, 37, d]);
    let one_pass = attend(prompt.clone(), &k0, &v0);
    let last_rows = attend(prompt.narrow(2, 33, 4), &k0, &v0);
    same(
        &last_rows,
        &one_pass[33 * heads * d..],
        "a prompt's last rows",
    );

    let decode = tensor(&values(3 * heads * d), [3, heads, 1, d]);
    let batch = attend(decode.clone(), &k, &v);
    let alone = attend(decode.narrow(0, 0, 1), &k0, &v0);
    same(&alone, &batch[..heads * d], "a decode query");
}

/// `q [batch, heads, seq, d]` as the CPU kernel reads it, `[batch, seq, heads, d]`.
fn token_major(q: &[f32], s: AttentionShape) -> Vec<f32> {
    let d = s.head_dim;
    let mut out = vec![0f32; q.len()];
    for b in 0..s.batch {
        for h in 0..s.heads {
            for i in 0..s.seq {
                out[((b * s.seq + i) * s.heads + h) * d..][..d]
                    .copy_from_slice(&q[((b * s.heads + h) * s.seq + i) * d..][..d]);
            }
        }
    }
    out
}

#[test]
fn cpu_kernel_and_burn_ops_match_the_f64_reference() {
    let mut rng = Lcg(11);
    for s in SHAPES {
        let [q, k, v, want] = case(&mut rng, s);
        for threads in [1, 3] {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            let got = pool.install(|| cpu::cached_attention(&token_major(&q, s), &k, &v, s));
            common::assert_close(
                &got,
                &want,
                &format!("cpu kernel, {threads} threads, {s:?}"),
            );
        }
        let device = Default::default();
        let t = |x: &[f32], dims: [usize; 4]| {
            Tensor::<NdArray, 4>::from_data(TensorData::new(x.to_vec(), dims), &device)
        };
        let kv_dims = [s.batch, s.kv_heads, s.max_len, s.head_dim];
        let y = burn_ops::cached_attention::<NdArray>(
            t(&q, [s.batch, s.heads, s.seq, s.head_dim])
                .into_primitive()
                .tensor(),
            t(&k, kv_dims).into_primitive().tensor(),
            t(&v, kv_dims).into_primitive().tensor(),
            s.len,
        );
        let got = Tensor::<NdArray, 4>::from_primitive(TensorPrimitive::Float(y)).into_data();
        common::assert_close(
            &got.to_vec::<f32>().unwrap(),
            &want,
            &format!("burn ops, {s:?}"),
        );
    }
}

/// An f16 cache is read back exactly: the kernel on f16 elements gives bit for bit what it gives on the same
/// values widened to f32 (so the f32 path's check against the reference covers it), through the backend op
/// too (the cache as burn-ndarray's `U16` bits, what [`TernaryBackend::kv_cache_zeros`] makes). Against the
/// unrounded f32 cache it stays within the rounding's reach: values here are uniform in [-1, 1] or heavy-tailed
/// (up to 40), each cache element moves by at most 2⁻¹¹ of itself, and so the outputs by at most 1e-2 of
/// the largest value.
#[test]
fn cpu_kernel_reads_f16_caches_exactly() {
    use half::f16;
    use ndarray::{ArrayD, IxDyn};
    let mut rng = Lcg(13);
    for s in SHAPES {
        let [q, k, v, want] = case(&mut rng, s);
        let q = token_major(&q, s);
        let halves = |x: &[f32]| x.iter().map(|&x| f16::from_f32(x)).collect::<Vec<_>>();
        let (k16, v16) = (halves(&k), halves(&v));
        let widened = |x: &[f16]| x.iter().map(|x| x.to_f32()).collect::<Vec<_>>();
        for threads in [1, 3] {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            let got = pool.install(|| cpu::cached_attention(&q, &k16, &v16, s));
            let exact =
                pool.install(|| cpu::cached_attention(&q, &widened(&k16), &widened(&v16), s));
            let bits = |x: &[f32]| x.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&got), bits(&exact), "{threads} threads, {s:?}");
            let largest = v.iter().fold(0f32, |m, x| m.max(x.abs()));
            for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                assert!(
                    (g - w).abs() <= 1e-2 * largest,
                    "f16 against f32 cache, {s:?}, element {i}: {g} vs {w}"
                );
            }
        }
        let kv_dims = [s.batch, s.kv_heads, s.max_len, s.head_dim];
        let cache = |x: &[f16]| {
            let bits = x.iter().map(|x| x.to_bits()).collect();
            burn_ndarray::NdArrayTensor::from(
                ArrayD::<u16>::from_shape_vec(IxDyn(&kv_dims), bits)
                    .unwrap()
                    .into_shared(),
            )
        };
        let device = Default::default();
        let heads_view = Tensor::<NdArray, 4>::from_data(
            TensorData::new(q.clone(), [s.batch, s.seq, s.heads, s.head_dim]),
            &device,
        )
        .swap_dims(1, 2);
        let y = NdArray::cached_attention(
            heads_view.into_primitive().tensor(),
            cache(&k16),
            cache(&v16),
            s.len,
        );
        let got = Tensor::<NdArray, 4>::from_primitive(TensorPrimitive::Float(y)).into_data();
        let exact = cpu::cached_attention(&q, &k16, &v16, s);
        assert_eq!(got.to_vec::<f32>().unwrap(), exact, "backend op, {s:?}");
    }
}

/// A query's result depends on its position and its cache alone (what makes a request's tokens the same served
/// alone or beside others, and a long prompt's logits the same in one pass or in several): a decode query whose
/// keys are split into chunks gives the same bits alone, beside another sequence's prompt rows and two decode
/// rows, and on 1 or 3 threads; a prompt's rows the same bits in one pass as in passes of 33 and 4 rows.
#[test]
fn a_querys_result_does_not_depend_on_the_step_or_the_threads() {
    let (heads, kv_heads, d, max_len) = (8, 1, 64, 700);
    let mut rng = Lcg(17);
    let mut values = |n: usize| (0..n).map(|_| rng.uniform()).collect::<Vec<f32>>();
    // (rows, len) of each sequence: the decode query under test, a prompt, two more decode rows.
    let seqs = [(1, 600), (37, 400), (1, 300), (1, 50)];
    let caches: Vec<[Vec<f32>; 2]> = seqs
        .iter()
        .map(|_| {
            [
                values(kv_heads * max_len * d),
                values(kv_heads * max_len * d),
            ]
        })
        .collect();
    let queries: Vec<Vec<f32>> = seqs
        .iter()
        .map(|&(rows, _)| values(rows * heads * d))
        .collect();
    // `parts` of sequences `(index, first row, rows, len)` as one step, on `threads` threads.
    let step = |parts: &[(usize, usize, usize, usize)], threads: usize| {
        let q: Vec<f32> = parts
            .iter()
            .flat_map(|&(i, first, rows, _)| {
                queries[i][first * heads * d..][..rows * heads * d].to_vec()
            })
            .collect();
        let mut row = 0;
        let attention: Vec<cpu::SeqAttention<f32>> = parts
            .iter()
            .map(|&(i, _, seq, len)| {
                row += seq;
                cpu::SeqAttention {
                    k: &caches[i][0],
                    v: &caches[i][1],
                    first: row - seq,
                    shape: shape(1, heads, kv_heads, seq, d, max_len, len),
                }
            })
            .collect();
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        pool.install(|| cpu::attend_sequences(&q, row, &attention))
    };
    let same = common::assert_same_bits;
    let width = heads * d;
    let alone = step(&[(0, 0, 1, 600)], 1);
    for threads in [1, 3] {
        same(
            &step(&[(0, 0, 1, 600)], threads),
            &alone,
            &format!("alone, {threads} threads"),
        );
        let together = step(
            &[
                (1, 0, 37, 400),
                (0, 0, 1, 600),
                (2, 0, 1, 300),
                (3, 0, 1, 50),
            ],
            threads,
        );
        same(
            &together[37 * width..38 * width],
            &alone,
            &format!("beside others, {threads} threads"),
        );
        let one_pass = step(&[(1, 0, 37, 400)], threads);
        let mut passes = step(&[(1, 0, 33, 396)], threads);
        passes.extend(step(&[(1, 33, 4, 400)], threads));
        same(
            &passes,
            &one_pass,
            &format!("a prompt in passes, {threads} threads"),
        );
        same(
            &together[..37 * width],
            &one_pass,
            &format!("a prompt beside decode rows, {threads} threads"),
        );
    }
}
