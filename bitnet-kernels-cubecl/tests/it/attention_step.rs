//! The attention step of several sequences (continuous batching: each sequence's rows rotated at its own
//! positions, written into its own cache, attending over it) against the f64 RoPE and attention references, on
//! steps that mix decode rows and prompt chunks at different depths, a single sequence of batch 2, and partial
//! rotation. The caches must hold the new rotated keys and values and keep every other position.

use bitnet_gguf::GgmlType;
use bitnet_kernels_cubecl::cpu::AttentionShape;
use bitnet_kernels_cubecl::{CacheType, StepKv, TernaryBackend};
use burn::tensor::ops::FloatTensor;
use burn::tensor::{DType, Tensor, TensorData, TensorMetadata, TensorPrimitive};

use crate::common;
use crate::common::Lcg;

/// Positions of the RoPE tables: the longest cache of the steps.
const POSITIONS: usize = 224;

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

/// The step on `caches` (one `[k, v]` per sequence of `seqs`) from projections `[q, k, v]` of `rows` rows:
/// the output `[batch, rows, heads·d]` and the caches.
#[allow(clippy::type_complexity)]
fn run_step<B: TernaryBackend>(
    device: &B::Device,
    (batch, heads, kv, d, half): (usize, usize, usize, usize, usize),
    (rows, [q, k, v]): (usize, &[Vec<f32>; 3]),
    seqs: &[(usize, usize)],
    caches: Vec<[FloatTensor<B>; 2]>,
) -> (Vec<f32>, Vec<[FloatTensor<B>; 2]>) {
    let t3 = |x: &[f32], h: usize| {
        Tensor::<B, 3>::from_data(TensorData::new(x.to_vec(), [batch, rows, h * d]), device)
            .into_primitive()
            .tensor()
    };
    let table = |f: fn(f64) -> f64| {
        let v: Vec<f32> = (0..POSITIONS * half)
            .map(|i| f((i / half) as f64 * 0.3 / (1 + i % half) as f64) as f32)
            .collect();
        Tensor::<B, 2>::from_data(TensorData::new(v, [POSITIONS, half]), device)
            .into_primitive()
            .tensor()
    };
    let steps = seqs
        .iter()
        .zip(caches)
        .map(|(&(start, seq), [k, v])| StepKv { k, v, start, seq })
        .collect();
    let (out, kept) = B::attention_step(
        [t3(q, heads), t3(k, kv), t3(v, kv)],
        (table(f64::cos), table(f64::sin)),
        heads,
        steps,
    );
    let out = Tensor::<B, 3>::from_primitive(TensorPrimitive::Float(out));
    (out.into_data().to_vec::<f32>().unwrap(), kept)
}

/// [`run_step`] on a step's projections with empty caches of type `cache`, one pair per sequence.
#[allow(clippy::type_complexity)]
fn from_empty<B: TernaryBackend>(
    device: &B::Device,
    (batch, heads, kv, d, half, max_len, seqs): Step,
    projections: (usize, &[Vec<f32>; 3]),
    cache: CacheType,
) -> (Vec<f32>, Vec<[FloatTensor<B>; 2]>) {
    let caches = seqs
        .iter()
        .map(|_| [0, 1].map(|_| B::kv_cache_zeros([batch, kv, max_len, d], cache, device)))
        .collect();
    run_step::<B>(
        device,
        (batch, heads, kv, d, half),
        projections,
        seqs,
        caches,
    )
}

/// The f16 bits a backend's f16 cache holds, row-major `[.., d]`: burn-ndarray stores `U16` elements, the
/// CubeCL backends `U32` words holding elements `j` and `j + d/2` of a row as their low and high halves.
fn f16_bits(data: TensorData, d: usize) -> Vec<u16> {
    match data.dtype {
        DType::U16 => data.to_vec::<u16>().unwrap(),
        DType::U32 => data
            .to_vec::<u32>()
            .unwrap()
            .chunks_exact(d / 2)
            .flat_map(|w| {
                let low = w.iter().map(|&x| x as u16);
                low.chain(w.iter().map(|&x| (x >> 16) as u16))
                    .collect::<Vec<_>>()
            })
            .collect(),
        other => panic!("an f16 cache read back as {other:?}"),
    }
}

/// The f16 cache of every backend: from empty caches, the step stores the nearest-even f16 of what the f32
/// step stores, bit for bit (values planted at rounding ties and at subnormal halves check the rounding), and
/// its output stays within [`f16_bound`] of the f32 step's.
fn f16_cache<B: TernaryBackend>(device: &B::Device, what: &str) {
    assert!(
        B::CACHE_TYPES.contains(&CacheType::F16),
        "{what}: no f16 KV cache"
    );
    // Exact ties (1 + 2⁻¹¹ lies halfway between two halves and rounds down to even, 1 + 3 · 2⁻¹¹ rounds up),
    // and values that are subnormal halves or round to zero.
    let planted = [
        1.0 + 2f32.powi(-11),
        1.0 + 3.0 * 2f32.powi(-11),
        3.0e-5,
        -7.0e-6,
        1.0e-8,
    ];
    let mut rng = Lcg(37);
    for (batch, heads, kv, d, half, max_len, seqs) in STEPS {
        let what =
            format!("{what}: f16 cache, b{batch} {heads}/{kv} heads d{d} half{half}, {seqs:?}");
        let (rows, mut x) = projections(&mut rng, batch, (heads, kv, d), seqs);
        // Values are stored unrotated: plant the special values there.
        for (i, value) in x[2].iter_mut().enumerate() {
            if i % 7 == 3 {
                *value = planted[(i / 7) % planted.len()] * if i % 2 == 0 { 1.0 } else { -1.0 };
            }
        }
        let step = (batch, heads, kv, d, half, max_len, seqs);
        let (want, want_caches) = from_empty::<B>(device, step, (rows, &x), CacheType::F32);
        let (got, got_caches) = from_empty::<B>(device, step, (rows, &x), CacheType::F16);
        for (i, ([gk, gv], [wk, wv])) in got_caches.into_iter().zip(want_caches).enumerate() {
            for (name, g, w) in [("keys", gk, wk), ("values", gv, wv)] {
                let g = f16_bits(
                    Tensor::<B, 4>::from_primitive(TensorPrimitive::Float(g)).into_data(),
                    d,
                );
                let w: Vec<u16> = Tensor::<B, 4>::from_primitive(TensorPrimitive::Float(w))
                    .into_data()
                    .to_vec::<f32>()
                    .unwrap()
                    .iter()
                    .map(|&x| half::f16::from_f32(x).to_bits())
                    .collect();
                if let Some(j) = (0..w.len()).find(|&j| g[j] != w[j]) {
                    panic!("{what}: sequence {i} {name}: element {j} stored {:#06x}, nearest f16 {:#06x}", g[j], w[j]);
                }
            }
        }
        // The ties are 0.15% above the bound's |v| ≤ 1: within its slack (its e is a whole f16 step).
        let bound = f16_bound(d);
        for (j, (g, w)) in got.iter().zip(&want).enumerate() {
            assert!(
                (g - w).abs() <= bound,
                "{what}: output {j}: {g} vs f32 cache's {w} (bound {bound})"
            );
        }
    }
}

fn check_all<B: TernaryBackend>(device: &B::Device, what: &str) {
    check::<B>(device, what);
    f16_cache::<B>(device, what);
    q8_0_cache::<B>(device, what);
}

backend_tests!(check_all);

/// Steps whose head widths are whole q8_0 blocks (32 values), decode and prompt rows mixed.
const BLOCK_STEPS: [Step; 3] = [
    (1, 4, 2, 32, 16, 40, &[(5, 1), (0, 3), (17, 1), (30, 2)]),
    (2, 6, 3, 64, 16, 48, &[(0, 9), (47, 1), (20, 1)]),
    // A plane of 64 values spans two scale blocks (the GPU kernel reads scales per vector then).
    (1, 2, 1, 256, 64, 40, &[(5, 1), (0, 3)]),
];

/// A 2B-4T-sized head (128 values: keys rotated in chunks of 128, four scale blocks a row), and a prompt long
/// enough that the GPU kernel splits a read-back row's keys (outputs merged, then turned back).
const WIDE_STEP: Step = (1, 8, 2, 128, 64, 224, &[(3, 2), (0, 1), (20, 1), (0, 200)]);

/// The Q8_0 blocks (GGUF bytes) a backend's q8_0 cache holds, row-major `[.., d]`: burn-ndarray stores the
/// blocks as `U8` bytes; the CubeCL backends `I32` words, a row's `d/4` words of values (byte `p` of word `j`
/// is element `j + p · d/4`) and then its `d/32` f16 scales, one in the low half of each word.
fn q8_0_blocks(data: TensorData, d: usize) -> Vec<u8> {
    match data.dtype {
        DType::U8 => data.to_vec::<u8>().unwrap(),
        DType::I32 => {
            let quarter = d / 4;
            data.to_vec::<i32>()
                .unwrap()
                .chunks_exact(quarter + d / 32)
                .flat_map(|row| {
                    (0..d / 32).flat_map(move |b| {
                        let scale = (row[quarter + b] as u32 as u16).to_le_bytes();
                        let values = (b * 32..(b + 1) * 32)
                            .map(move |e| (row[e % quarter] as u32 >> (8 * (e / quarter))) as u8);
                        scale.into_iter().chain(values)
                    })
                })
                .collect()
        }
        other => panic!("a q8_0 cache read back as {other:?}"),
    }
}

/// `x`'s rows of `d` values turned in chunks of `n`, in f32 as llama.cpp's rotation runs.
fn turned(x: &[f32], n: usize) -> Vec<f32> {
    let mut x = x.to_vec();
    bitnet_kernels_cubecl::cpu::hadamard::rotate(&mut x, n);
    x
}

/// The q8_0 cache of every backend: from empty caches, the step stores byte for byte what ggml's reference
/// quantizer makes of the rows the backend's f32 step stores (values planted at rounding ties included), turned
/// first as llama.cpp turns them where the head width is a multiple of 64 (keys in chunks of the largest power
/// of two dividing it, values in chunks of 64); attention reads the stored caches as the values they stand for;
/// and the step's output stays near the f32 step's.
fn q8_0_cache<B: TernaryBackend>(device: &B::Device, what: &str) {
    assert!(
        B::CACHE_TYPES.contains(&CacheType::Q8_0),
        "{what}: no q8_0 KV cache"
    );
    let mut rng = Lcg(41);
    for (batch, heads, kv, d, half, max_len, seqs) in BLOCK_STEPS.into_iter().chain([WIDE_STEP]) {
        let what =
            format!("{what}: q8_0 cache, b{batch} {heads}/{kv} heads d{d} half{half}, {seqs:?}");
        let (rows, mut x) = projections(&mut rng, batch, (heads, kv, d), seqs);
        if rotation(CacheType::Q8_0, d).is_none() {
            // Values are stored as they come here: make each row's first block's scale 2⁻⁷ (absmax 127 · 2⁻⁷),
            // so values (k + ½) · 2⁻⁷ quantize at exact ties, which round away from zero.
            for row in x[2].chunks_exact_mut(d) {
                for (j, value) in row[..32].iter_mut().enumerate() {
                    *value = match j % 3 {
                        _ if j == 0 => 127.0 / 128.0,
                        1 => ((j % 9) as f32 - 4.5) / 128.0,
                        _ => *value * 0.9,
                    };
                }
            }
        }
        let step = (batch, heads, kv, d, half, max_len, seqs);
        let (want, want_caches) = from_empty::<B>(device, step, (rows, &x), CacheType::F32);
        let (got, got_caches) = from_empty::<B>(device, step, (rows, &x), CacheType::Q8_0);
        let dims = [batch, kv, max_len, d];
        for (i, ((got, want), &(start, seq))) in got_caches
            .into_iter()
            .zip(want_caches)
            .zip(seqs)
            .enumerate()
        {
            let mut stands_for = Vec::new();
            for (c, (g, w)) in got.iter().zip(want).enumerate() {
                let name = ["keys", "values"][c];
                let g = q8_0_blocks(
                    Tensor::<B, 4>::from_primitive(TensorPrimitive::Float(g.clone())).into_data(),
                    d,
                );
                let w = Tensor::<B, 4>::from_primitive(TensorPrimitive::Float(w))
                    .into_data()
                    .to_vec::<f32>()
                    .unwrap();
                let turn = |x: &[f32]| match rotation(CacheType::Q8_0, d) {
                    Some(n) => turned(x, [n.0, n.1][c]),
                    None => x.to_vec(),
                };
                let w = encoded(CacheType::Q8_0, &turn(&w));
                assert_eq!(g.len(), w.len(), "{what}: sequence {i} {name}: size");
                if let Some(j) = (0..w.len()).find(|&j| g[j] != w[j]) {
                    let block = j / 34;
                    panic!(
                        "{what}: sequence {i} {name}: block {block} stored {:?}, ggml's {:?}",
                        &g[block * 34..][..34],
                        &w[block * 34..][..34]
                    );
                }
                stands_for.push(turn(&decoded(CacheType::Q8_0, &g)));
            }
            // Read back: attention over the q8_0 cache equals attention over the values it stands for held
            // as f32, to f32 rounding of the outputs' scale (the same numbers; the rotations and sums in
            // another order).
            let len = start + seq;
            for rows in [1, len.min(3)] {
                let q: Vec<f32> = (0..batch * heads * rows * d)
                    .map(|_| rng.uniform())
                    .collect();
                let attend = |k, v| {
                    let q = Tensor::<B, 4>::from_data(
                        TensorData::new(q.clone(), [batch, heads, rows, d]),
                        device,
                    );
                    let y = B::cached_attention(q.into_primitive().tensor(), k, v, len);
                    Tensor::<B, 4>::from_primitive(TensorPrimitive::Float(y))
                        .into_data()
                        .to_vec::<f32>()
                        .unwrap()
                };
                let [k, v] = got.clone();
                let from_q8 = attend(k, v);
                let [k, v] = [0, 1].map(|c| {
                    Tensor::<B, 4>::from_data(TensorData::new(stands_for[c].clone(), dims), device)
                        .into_primitive()
                        .tensor()
                });
                let from_f32 = attend(k, v);
                let scale = from_f32.iter().fold(0f32, |m, w| m.max(w.abs()));
                for (j, (g, w)) in from_q8.iter().zip(&from_f32).enumerate() {
                    assert!(
                        (g - w).abs() <= 1e-5 * scale,
                        "{what}: sequence {i}, {rows} rows at {len}: output {j}: {g} from q8_0 vs {w}"
                    );
                }
            }
        }
        // Measured at most 0.021 (d = 64 prompt rows attending to a few keys); a wrong block, scale or
        // rotation fails the exact checks above.
        for (j, (g, w)) in got.iter().zip(&want).enumerate() {
            assert!(
                (g - w).abs() <= 0.05,
                "{what}: output {j}: {g} vs f32 cache's {w}"
            );
        }
    }
}

/// `x` times the orthonormal Walsh–Hadamard matrix of size `n` in Sylvester's order, chunk by chunk, built as
/// llama.cpp's `ggml_gen_hadamard` builds it and applied as a plain matrix product (f64).
fn hadamard(x: &[f32], n: usize) -> Vec<f32> {
    let mut h = vec![1.0 / (n as f64).sqrt()];
    let mut s = 1;
    while s < n {
        let mut g = vec![0f64; 4 * s * s];
        for i in 0..s {
            for j in 0..s {
                let v = h[i * s + j];
                (g[i * 2 * s + j], g[i * 2 * s + j + s]) = (v, v);
                (g[(i + s) * 2 * s + j], g[(i + s) * 2 * s + j + s]) = (v, -v);
            }
        }
        (h, s) = (g, 2 * s);
    }
    x.chunks_exact(n)
        .flat_map(|c| {
            (0..n)
                .map(|i| (0..n).map(|j| h[i * n + j] * c[j] as f64).sum::<f64>() as f32)
                .collect::<Vec<f32>>()
        })
        .collect()
}

/// The rotation llama.cpp gives a quantized cache's rows of `d` values (a multiple of 64): chunks of the largest
/// power of two dividing `d` for keys, of 64 for values.
fn rotation(cache: CacheType, d: usize) -> Option<(usize, usize)> {
    (cache == CacheType::Q8_0 && d.is_multiple_of(64)).then(|| (1 << d.trailing_zeros(), 64))
}

/// `values` as a cache of type `cache` stores them: f16 bits, or GGUF Q8_0 blocks along each row (ggml's
/// reference quantizer, as `bitnet-gguf` writes Q8_0 tensors), as little-endian bytes.
fn encoded(cache: CacheType, values: &[f32]) -> Vec<u8> {
    match cache {
        CacheType::F16 => values
            .iter()
            .flat_map(|&x| half::f16::from_f32(x).to_le_bytes())
            .collect(),
        CacheType::Q8_0 => bitnet_gguf::quant::quantize("kv", GgmlType::Q8_0, values, 32).unwrap(),
        CacheType::F32 => unreachable!("f32 is the reference"),
    }
}

/// The values `bytes` ([`encoded`]) stand for.
fn decoded(cache: CacheType, bytes: &[u8]) -> Vec<f32> {
    let ty = match cache {
        CacheType::F16 => GgmlType::F16,
        CacheType::Q8_0 => GgmlType::Q8_0,
        CacheType::F32 => unreachable!("f32 is the reference"),
    };
    let mut out = vec![0f32; bytes.len() * ty.block_size() as usize / ty.type_size() as usize];
    bitnet_gguf::quant::dequantize("kv", ty, bytes, &mut out).unwrap();
    out
}

/// How far an f16 cache moves the step's outputs of values of order one (see
/// [`stored_caches_hold_the_rounded_rows`]).
fn f16_bound(d: usize) -> f32 {
    let e = 1.5 * 2f32.powi(-11);
    let delta = 2f32.sqrt() * (d as f32).sqrt() * e;
    2f32.sqrt() * ((2.0 * delta).exp() - 1.0) + e
}

/// With f16 or q8_0 caches ([`TernaryBackend::kv_cache_zeros`] on burn-ndarray) the step stores exactly the
/// rounding of what the f32 step stores (old positions kept; new rotated keys and values rounded to the nearest
/// f16, or, for q8_0, turned by llama.cpp's Walsh–Hadamard rotation where the head width is a multiple of 64 and
/// quantized by ggml's reference Q8_0 quantizer, byte for byte), and its output stays near the f32 step's.
/// f16 bound: inputs are uniform in [-1, 1], so rotated keys and queries are within √2; an element moves by at
/// most `e = 1.5 · 2⁻¹¹` relative, a score by `δ = √2 · √d · e`, the softmax weights by at most `e^{2δ} − 1` in
/// total, and an output by that times `√2` plus `e`. q8_0: each stored value moves by at most half a step of its
/// block's largest / 127; measured at most 0.004 on these outputs, checked against 0.02 (a wrong block, scale or
/// rotation moves them by 0.1 or more); `q8_0_caches_read_as_the_values_they_stand_for` checks the reads exactly.
#[test]
fn stored_caches_hold_the_rounded_rows() {
    stored_cache_holds_the_rounded_rows(CacheType::F16, &STEPS, f16_bound);
    stored_cache_holds_the_rounded_rows(CacheType::Q8_0, &BLOCK_STEPS, |_| 0.02);
}

fn stored_cache_holds_the_rounded_rows(cache: CacheType, steps: &[Step], bound: fn(usize) -> f32) {
    use burn::backend::NdArray;
    let device = Default::default();
    let mut rng = Lcg(31);
    for &(batch, heads, kv, d, half, max_len, seqs) in steps {
        let what = format!("{cache:?}: b{batch} {heads}/{kv} heads d{d} half{half}, {seqs:?}");
        let (rows, [q, k, v]) = projections(&mut rng, batch, (heads, kv, d), seqs);
        let mut values = |n: usize| (0..n).map(|_| rng.uniform()).collect::<Vec<f32>>();
        let kv_dims = [batch, kv, max_len, d];
        let cache_len = kv_dims.iter().product();
        // Rows as the cache stores them: rotated (keys, values) or not, then encoded; and the f32 values
        // stored bytes stand for.
        let rotation = rotation(cache, d);
        let rotate = |x: &[f32], i: usize| match rotation {
            Some(n) => hadamard(x, [n.0, n.1][i % 2]),
            None => x.to_vec(),
        };
        let stored = |x: &[f32], i: usize| encoded(cache, &rotate(x, i));
        // Old contents (keys and values of each sequence, alternating) already representable, so both runs
        // start from the same cache.
        let old: Vec<Vec<f32>> = (0..2 * seqs.len())
            .map(|i| rotate(&decoded(cache, &stored(&values(cache_len), i)), i))
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
            // The old contents as burn-ndarray holds the cache type: f16 as `U16` bits, q8_0 as `U8` bytes.
            let filled = |x: &[f32], i: usize| -> burn_ndarray::NdArrayTensor {
                let shape = ndarray::IxDyn(&kv_dims);
                match cache {
                    CacheType::F32 => ndarray::ArrayD::from_shape_vec(shape, x.to_vec())
                        .unwrap()
                        .into_shared()
                        .into(),
                    CacheType::F16 => {
                        let bits = bytemuck::pod_collect_to_vec::<u8, u16>(&stored(x, i));
                        ndarray::ArrayD::from_shape_vec(shape, bits)
                            .unwrap()
                            .into_shared()
                            .into()
                    }
                    CacheType::Q8_0 => {
                        let row = d / 32 * 34;
                        let shape = ndarray::IxDyn(&[batch, kv, max_len, row]);
                        ndarray::ArrayD::from_shape_vec(shape, stored(x, i))
                            .unwrap()
                            .into_shared()
                            .into()
                    }
                }
            };
            let caches = seqs
                .iter()
                .zip(old.chunks_exact(2))
                .map(|(&(start, seq), kv)| StepKv {
                    k: filled(&kv[0], 0),
                    v: filled(&kv[1], 1),
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
        let (got, kept_stored) = run(cache);
        let tol = bound(d);
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            assert!(
                (g - w).abs() <= tol,
                "{what}: output {i}: {g} vs {w} (bound {tol})"
            );
        }
        for (c, (kept, full)) in kept_stored
            .into_iter()
            .flatten()
            .zip(kept32.into_iter().flatten())
            .enumerate()
        {
            let bytes: Vec<u8> = match kept {
                burn_ndarray::NdArrayTensor::U16(bits) => {
                    bits.view().iter().flat_map(|b| b.to_le_bytes()).collect()
                }
                burn_ndarray::NdArrayTensor::U8(bytes) => bytes.view().iter().copied().collect(),
                other => panic!("{what}: cache {c} is stored as {:?}", other.dtype()),
            };
            let full = Tensor::<NdArray, 4>::from_primitive(TensorPrimitive::Float(full))
                .into_data()
                .to_vec::<f32>()
                .unwrap();
            assert!(bytes == stored(&full, c), "{what}: cache {c}");
        }
    }
}

/// Attention read from q8_0 caches equals attention over the values they stand for held as f32 (rows stored
/// rotated stand for their rotation back; within f32 rounding of the outputs' scale: the same numbers, summed in
/// the same order, the rotations in f32 against the f64 matrix product), for decode queries (the AVX2 kernel widens the blocks
/// in registers) and prompt tiles (blocks decoded into a buffer), at lengths that end inside a block of keys.
#[test]
fn q8_0_caches_read_as_the_values_they_stand_for() {
    use bitnet_kernels_cubecl::cpu::{cached_attention, Q8Block};
    let mut rng = Lcg(37);
    for (batch, heads, kv_heads, d) in [(1, 4, 2, 32), (2, 6, 3, 64), (1, 20, 5, 128)] {
        for (seq, len, max_len) in [(1, 1, 8), (1, 45, 48), (1, 130, 131), (5, 37, 40)] {
            let shape = AttentionShape {
                batch,
                heads,
                kv_heads,
                seq,
                head_dim: d,
                max_len,
                len,
            };
            let what = format!("{shape:?}");
            let n = batch * kv_heads * max_len * d;
            let q: Vec<f32> = (0..batch * seq * heads * d)
                .map(|_| rng.uniform())
                .collect();
            let [k, v] = [(); 2].map(|_| {
                let x: Vec<f32> = (0..n).map(|_| 3.0 * rng.heavy()).collect();
                encoded(CacheType::Q8_0, &x)
            });
            let blocks = |b: &[u8]| bytemuck::cast_slice::<u8, Q8Block>(b).to_vec();
            let got = cached_attention(&q, &blocks(&k), &blocks(&v), shape);
            // Rows stored rotated stand for their rotation back (the rotation is its own inverse).
            let stands_for = |b: &[u8], i: usize| {
                let x = decoded(CacheType::Q8_0, b);
                match rotation(CacheType::Q8_0, d) {
                    Some(n) => hadamard(&x, [n.0, n.1][i]),
                    None => x,
                }
            };
            let want = cached_attention(&q, &stands_for(&k, 0), &stands_for(&v, 1), shape);
            // f32 rounding relative to the outputs' scale: a rotated output sums up to 128 terms of it.
            let scale = want.iter().fold(0f32, |m, w| m.max(w.abs()));
            for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                assert!(
                    (g - w).abs() <= 1e-5 * scale,
                    "{what}: output {i}: {g} vs {w}"
                );
            }
        }
    }
}
