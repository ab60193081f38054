//! The CPU kernels: every SIMD path this machine runs gives exactly the scalar path's integers, and both
//! equal an independent oracle computed on unpermuted trits and activations; shapes include ragged widths
//! (not multiples of the 128-column chunk), per-tensor, 128- and 256-column blocks, and blocks the SIMD
//! paths hand to the scalar one.

use bitnet_kernels_cubecl::cpu::acts::{QuantizedActs, LANES};
use bitnet_kernels_cubecl::cpu::{self, ActTile, Isa};
use bitnet_kernels_cubecl::packing::{i8_at, i8_words_per_row, pack_row, words_per_row};
use bitnet_kernels_cubecl::reference::{self, TernaryShape};
use bitnet_kernels_cubecl::{burn_ops, TernaryBackend};
use burn::backend::NdArray;
use burn::tensor::{DType, Int, Tensor, TensorData, TensorPrimitive};

use crate::common::Lcg;

/// (n, k, block): ragged widths, 1 and many blocks; blocks of 16 and 48 are not whole chunks; 150 rows span
/// several of the kernels' 64-row blocks with a ragged last tile, on one thread and on two.
const SHAPES: [(usize, usize, usize); 14] = [
    (3, 16, 16),
    (5, 48, 48),
    (2, 112, 112),
    (7, 128, 128),
    (4, 144, 144),
    (3, 400, 400),
    (6, 512, 256),
    (5, 384, 128),
    (3, 96, 16),
    (4, 240, 48),
    (9, 2560, 2560),
    (2, 6912, 6912),
    (150, 384, 384),
    (7, 1280, 256),
];

struct Case {
    shape: TernaryShape,
    trits: Vec<i8>,
    words: Vec<u32>,
    scales: Vec<f32>,
    x: Vec<f32>,
    m: usize,
}

fn case(rng: &mut Lcg, m: usize, (n, k, block): (usize, usize, usize)) -> Case {
    let shape = TernaryShape { n, k, block };
    let trits: Vec<i8> = (0..n * k).map(|_| rng.trit()).collect();
    let kw = words_per_row(k);
    let mut words = vec![0u32; n * kw];
    for (row, t) in words.chunks_exact_mut(kw).zip(trits.chunks_exact(k)) {
        pack_row(t, row);
    }
    let scales = (0..n * shape.blocks())
        .map(|_| 0.25 + rng.heavy().abs())
        .collect();
    let x = (0..m * k).map(|_| rng.heavy()).collect();
    Case {
        shape,
        trits,
        words,
        scales,
        x,
        m,
    }
}

/// Σ (trit + 1) · q per block for each row of `c` and its first `tokens` tokens, `[row][token · blocks + b]`,
/// from the unpermuted trits and the reference quantization.
fn oracle(c: &Case, tokens: usize) -> Vec<Vec<i32>> {
    let TernaryShape { n, k, block } = c.shape;
    let nb = c.shape.blocks();
    (0..n)
        .map(|r| {
            let mut o = vec![0i32; tokens * nb];
            for t in 0..tokens {
                let mut q = vec![0i8; k];
                reference::quantize_row_i8(&c.x[t * k..(t + 1) * k], &mut q);
                for (col, (&w, &a)) in c.trits[r * k..(r + 1) * k].iter().zip(&q).enumerate() {
                    o[t * nb + col / block] += (w as i32 + 1) * a as i32;
                }
            }
            o
        })
        .collect()
}

/// The oracle's dots of `rows` token-major, as the kernels write them: every row's blocks for token 0, then
/// for token 1, ...
fn expected(
    oracle: &[Vec<i32>],
    rows: std::ops::Range<usize>,
    tokens: usize,
    nb: usize,
) -> Vec<i32> {
    (0..tokens)
        .flat_map(|t| {
            oracle[rows.clone()]
                .iter()
                .flat_map(move |o| &o[t * nb..(t + 1) * nb])
        })
        .copied()
        .collect()
}

/// The most tokens any path on this CPU takes in one prefill tile (each path is tested up to its own).
fn largest_token_tile() -> usize {
    Isa::available()
        .iter()
        .map(|isa| isa.token_tile())
        .max()
        .expect("the portable path is always available")
}

#[test]
fn every_isa_gives_the_oracle_integers() {
    let mut rng = Lcg(99);
    let available = Isa::available();
    eprintln!("paths on this CPU: {available:?}");
    for &dims in &SHAPES {
        for tokens in 1..=largest_token_tile() {
            // each path up to its own prefill tile
            let isas: Vec<Isa> = available
                .iter()
                .copied()
                .filter(|isa| isa.token_tile() >= tokens)
                .collect();
            let c = case(&mut rng, tokens, dims);
            let TernaryShape { n, k, block } = c.shape;
            let nb = c.shape.blocks();
            // each path reads the activations permuted in its own chunks
            let acts: Vec<QuantizedActs> = isas
                .iter()
                .map(|isa| {
                    let mut acts = QuantizedActs::default();
                    acts.quantize_permuted(&c.x, tokens, k, block, isa.chunk());
                    if isa.tile_multiplies(tokens) {
                        acts.fill_tiles();
                    }
                    acts
                })
                .collect();
            let kw = words_per_row(k);
            let oracle = oracle(&c, tokens);
            // blocks of 1..=4 rows (each of the SIMD paths' tiles) and of all rows (tiles and a ragged tail)
            for rows in [1, 2, 3, 4, n] {
                for r0 in (0..n).step_by(rows) {
                    let r1 = (r0 + rows).min(n);
                    let tile: &[u8] = bytemuck::cast_slice(&c.words[r0 * kw..r1 * kw]);
                    let expected = expected(&oracle, r0..r1, tokens, nb);
                    for (&isa, acts) in isas.iter().zip(&acts) {
                        let mut out = vec![-7i32; expected.len()];
                        let a = acts.tile(0, tokens);
                        cpu::ternary_tile_dots(isa, tile, kw * 4, a, c.shape, &mut out);
                        assert_eq!(
                            out, expected,
                            "{isa:?} n{n} k{k} block{block} tokens{tokens} rows{r0}..{r1}"
                        );
                    }
                }
            }
        }
    }
}

/// The table-lookup prefill (where a path has one, the portable loop elsewhere) gives the oracle's integers for
/// 1, 2 and ragged 1..=16 and 17..=32 tokens, and several groups of 32 in one call (the last one ragged or
/// whole), on every shape, for one row, an odd number of rows and all rows.
#[test]
fn table_lookup_gives_the_oracle_integers() {
    let mut rng = Lcg(7);
    let available = Isa::available();
    let kernels: Vec<_> = available.iter().map(|i| (i, i.prefill_kernel())).collect();
    eprintln!("prefill kernels: {kernels:?}");
    // One buffer per path for every case, as the model reuses them: lanes an earlier case wrote must not leak.
    let mut buffers: Vec<QuantizedActs> = available.iter().map(|_| Default::default()).collect();
    for &dims in &SHAPES {
        for tokens in [1, 2, 9, 16, 17, 30, LANES, 57, cpu::LOOKUP_TOKENS] {
            let c = case(&mut rng, tokens, dims);
            let TernaryShape { n, k, block } = c.shape;
            let (nb, kw) = (c.shape.blocks(), words_per_row(k));
            let oracle = oracle(&c, tokens);
            for (&isa, acts) in available.iter().zip(&mut buffers) {
                acts.quantize_permuted(&c.x, tokens, k, block, isa.chunk());
                acts.fill_lanes();
                assert_eq!(acts.lanes.as_ptr() as usize % 64, 0, "lanes' alignment");
                let last = acts.lanes_from(tokens.div_ceil(LANES) * LANES - LANES);
                assert!(
                    last.chunks_exact(LANES)
                        .all(|col| col[(tokens - 1) % LANES + 1..].iter().all(|&x| x == 0)),
                    "{isa:?} tokens{tokens}: lanes past the last token are zero"
                );
                for rows in [1, 3, n] {
                    for r0 in (0..n).step_by(rows) {
                        let r1 = (r0 + rows).min(n);
                        let tile: &[u8] = bytemuck::cast_slice(&c.words[r0 * kw..r1 * kw]);
                        let mut out = vec![-7i32; (r1 - r0) * tokens * nb];
                        let (a, lanes) = (acts.tile(0, tokens), acts.lanes_from(0));
                        cpu::ternary_lut_dots(isa, tile, kw * 4, a, lanes, c.shape, &mut out);
                        assert_eq!(
                            out,
                            expected(&oracle, r0..r1, tokens, nb),
                            "{isa:?} n{n} k{k} block{block} tokens{tokens} rows{r0}..{r1}"
                        );
                    }
                }
            }
        }
    }
}

/// The quantized, permuted activations (the SIMD quantizers on x86, the portable loop elsewhere and for partial
/// chunks) equal the reference per-token quantization at the permuted places, zero padded, with each block's sum:
/// both chunk widths, ragged widths, blocks smaller and larger than a chunk, and values that round half to even,
/// saturate, or are not numbers (quantized to 0 by the reference). Every token starts on a cache line (a
/// vector load straddling two lines halves the kernels' load rate).
#[test]
fn quantized_activations_equal_the_reference_at_their_permuted_places() {
    let mut rng = Lcg(7);
    let specials = [
        0.5,
        -0.5,
        1.5,
        -2.5,
        f32::NAN,
        f32::INFINITY,
        -f32::INFINITY,
        1e30,
        -0.0,
    ];
    // One buffer for every shape, as the model reuses it: the padding of a token must be zero whatever an
    // earlier call left there (1000 columns after 768 pad over bytes the 768 wrote).
    let mut acts = QuantizedActs::default();
    for chunk in [128, 256] {
        for (k, block) in [
            (256, 256),
            (512, 512),
            (2560, 2560),
            (6912, 6912),
            (768, 256),
            (1000, 1000),
            (384, 128),
            (96, 16),
        ] {
            let m = 4;
            let mut x: Vec<f32> = (0..m * k).map(|_| rng.heavy()).collect();
            // token 1: values that land on halves after scaling by 127 / 127 (max |x| is 127)
            for (i, v) in x[k..2 * k].iter_mut().enumerate() {
                *v = (i % 255) as f32 - 127.0 + if i % 2 == 0 { 0.5 } else { 0.0 };
            }
            x[k] = 127.0;
            // token 2: special values among ordinary ones (infinity makes the scale 0, so keep them in one token)
            for (i, &v) in specials.iter().enumerate() {
                x[2 * k + i * 7 % k] = v;
            }
            // token 3: NaNs (ignored by the maximum) and no infinity; the largest magnitude, negative, comes
            // before NaNs in its vector lane (a maximum that took a NaN would lose it), the next near the end
            for i in [0, 1, 13, 31, 32, 34, 66, 40, k / 2, k - 1] {
                x[3 * k + i] = f32::NAN;
            }
            x[3 * k + 2] = -1000.0;
            x[3 * k + k - 2] = -999.0;
            acts.quantize_permuted(&x, m, k, block, chunk);
            let stride = k.div_ceil(chunk) * chunk;
            assert_eq!(acts.stride, stride);
            assert_eq!(acts.q.as_ptr() as usize % 64, 0, "tokens' alignment");
            assert_eq!(stride % 64, 0, "tokens' alignment");
            for t in 0..m {
                let row = &x[t * k..(t + 1) * k];
                let mut want = vec![0i8; k];
                let scale = reference::quantize_row_i8(row, &mut want);
                assert_eq!(
                    acts.scale[t].to_bits(),
                    scale.to_bits(),
                    "chunk {chunk} k {k} token {t}"
                );
                let got = &acts.q[t * stride..(t + 1) * stride];
                for (i, &w) in want.iter().enumerate() {
                    let at = cpu::acts::permuted(i, chunk);
                    assert_eq!(
                        got[at], w,
                        "chunk {chunk} k {k} block {block} token {t} column {i}"
                    );
                }
                let placed: std::collections::HashSet<usize> =
                    (0..k).map(|i| cpu::acts::permuted(i, chunk)).collect();
                assert!(
                    (0..stride)
                        .filter(|p| !placed.contains(p))
                        .all(|p| got[p] == 0),
                    "padding"
                );
                for (b, &sum) in acts.block_sums[t * acts.blocks..(t + 1) * acts.blocks]
                    .iter()
                    .enumerate()
                {
                    let end = ((b + 1) * block).min(k);
                    let want: i32 = want[b * block..end].iter().map(|&v| v as i32).sum();
                    assert_eq!(
                        sum, want,
                        "chunk {chunk} k {k} block {block} token {t} block {b}"
                    );
                }
            }
        }
    }
}

/// One- and two-thread rayon pools, with their sizes.
fn pools() -> Vec<(usize, rayon::ThreadPool)> {
    [1, 2]
        .map(|n| {
            (
                n,
                rayon::ThreadPoolBuilder::new()
                    .num_threads(n)
                    .build()
                    .unwrap(),
            )
        })
        .into()
}

/// The float-activation op equals the f64-summed reference within f32 summation error, on one and two threads.
#[test]
fn ternary_matmul_f32_equals_reference_on_every_thread_count() {
    let mut rng = Lcg(11);
    for (threads, pool) in pools() {
        for &dims in &SHAPES {
            for m in [1, 3, 6] {
                let c = case(&mut rng, m, dims);
                let expected = reference::ternary_matmul(&c.x, m, &c.words, &c.scales, c.shape);
                let got =
                    pool.install(|| cpu::ternary_matmul_f32(&c.x, m, &c.words, &c.scales, c.shape));
                // Relative to the row's magnitude: Σ|x|·scale bounds what f32 rounding can move.
                let k = c.shape.k;
                for (i, (g, e)) in got.iter().zip(&expected).enumerate() {
                    let (t, r) = (i / c.shape.n, i % c.shape.n);
                    let mag: f32 = c.x[t * k..(t + 1) * k].iter().map(|v| v.abs()).sum::<f32>()
                        * c.scales[r * c.shape.blocks()..(r + 1) * c.shape.blocks()]
                            .iter()
                            .fold(0f32, |a, &s| a.max(s));
                    assert!(
                        (g - e).abs() <= 1e-6 * mag,
                        "{dims:?} m{m} threads{threads} [{i}]: {g} vs {e}"
                    );
                }
            }
        }
    }
}

/// The fused op equals the reference applied to the quantized activations, bit for bit (integer sums are
/// exact, and the same f32 operations follow), on one and two threads.
#[test]
fn ternary_matmul_i8_equals_reference_on_every_isa_and_thread_count() {
    let mut rng = Lcg(5);
    for (threads, pool) in pools() {
        for &dims in &SHAPES {
            // on AVX2, 17: 16 tokens by table lookup, 1 by tiles; 50: 32 and 16 by lookup, 2 by tiles; 90: 3
            // groups by lookup in one call; on AVX-512, 13: 6 and a last pass of 7, 50: 6 × 7 and a last pass of 8
            for m in [1, 3, 6, 13, 17, 50, 90] {
                let c = case(&mut rng, m, dims);
                let k = c.shape.k;
                let mut q = vec![0i8; m * k];
                let s: Vec<f32> = (0..m)
                    .map(|t| {
                        reference::quantize_row_i8(
                            &c.x[t * k..(t + 1) * k],
                            &mut q[t * k..(t + 1) * k],
                        )
                    })
                    .collect();
                let qf: Vec<f32> = q.iter().map(|&v| v as f32).collect();
                let mut expected = reference::ternary_matmul(&qf, m, &c.words, &c.scales, c.shape);
                for (i, y) in expected.iter_mut().enumerate() {
                    *y /= s[i / c.shape.n];
                }
                for isa in Isa::available() {
                    let got = pool.install(|| {
                        cpu::ternary_matmul_i8(&c.x, c.m, &c.words, &c.scales, c.shape, isa)
                    });
                    assert_eq!(got, expected, "{isa:?} {dims:?} m{m} threads{threads}");
                }
            }
        }
    }
}

#[test]
fn int8_head_equals_integer_reference_on_every_isa() {
    let mut rng = Lcg(11);
    // The last shape's outputs pass 1 MiB (written unzeroed) from 7 tokens on. On AMX, from 16 tokens whole
    // groups of 32 rows of whole 64-column tiles run on tile multiplies (one token group, two, and two and a
    // ragged one), the rest of the rows on the vector path.
    for (n, k) in [
        (5, 16),
        (7, 33),
        (3, 64),
        (9, 100),
        (33, 128),
        (17, 2560),
        (70, 192),
        (40_003, 8),
    ] {
        let w: Vec<f32> = (0..n * k).map(|_| rng.heavy()).collect();
        let (wq, ws) = cpu::quantize_rows_i8(&w, k);
        let words = i8_words_per_row(k);
        let value = |r: usize, i: usize| i8_at(&wq[r * words..(r + 1) * words], i);
        for (i, &v) in w.iter().enumerate() {
            let (q, scale) = (value(i / k, i % k), ws[i / k]);
            assert!(q != i8::MIN && (q as f32 * scale - v).abs() <= scale * 0.5 + 1e-6);
        }
        for m in [1, 2, 4, 5, 6, 7, 8, 11, 16, 19, 32, 45] {
            let x: Vec<f32> = (0..m * k).map(|_| rng.heavy()).collect();
            let mut expected = vec![0f32; m * n];
            for t in 0..m {
                let mut q = vec![0i8; k];
                let s = reference::quantize_row_i8(&x[t * k..(t + 1) * k], &mut q);
                for r in 0..n {
                    let d: i32 = (0..k).map(|i| q[i] as i32 * value(r, i) as i32).sum();
                    expected[t * n + r] = d as f32 * ws[r] / s;
                }
            }
            for isa in Isa::available() {
                assert_eq!(
                    cpu::int8_matmul(&x, m, &wq, &ws, k, isa),
                    expected,
                    "{isa:?} n{n} k{k} m{m}"
                );
            }
        }
    }
}

fn tensor_f32<const D: usize>(v: Vec<f32>, shape: [usize; D]) -> Tensor<NdArray, D> {
    Tensor::from_data(TensorData::new(v, shape), &Default::default())
}

fn to_vec(t: burn::tensor::ops::FloatTensor<NdArray>) -> Vec<f32> {
    Tensor::<NdArray, 2>::from_primitive(TensorPrimitive::Float(t))
        .into_data()
        .to_vec()
        .unwrap()
}

/// The backend ops on burn-ndarray (the kernels above) against their Burn-ops definitions.
#[test]
fn ndarray_ops_match_their_burn_ops_definitions() {
    let mut rng = Lcg(3);
    let dev = Default::default();
    for &dims in &SHAPES {
        let c = case(&mut rng, 3, dims);
        let TernaryShape { n, k, .. } = c.shape;
        let prims = || {
            (
                tensor_f32(c.x.clone(), [c.m, k]).into_primitive().tensor(),
                Tensor::<NdArray, 2, Int>::from_data(
                    TensorData::new(c.words.clone(), [n, words_per_row(k)]),
                    (&dev, DType::U32),
                )
                .into_primitive(),
                tensor_f32(c.scales.clone(), [n, c.shape.blocks()])
                    .into_primitive()
                    .tensor(),
            )
        };
        let (x, w, s) = prims();
        let fused = to_vec(NdArray::ternary_matmul_i8(x, w, s));
        let (x, w, s) = prims();
        let composed = to_vec(burn_ops::ternary_matmul_i8::<NdArray>(x, w, s));
        let scale = composed.iter().fold(1f32, |a, v| a.max(v.abs()));
        for (a, b) in fused.iter().zip(&composed) {
            assert!((a - b).abs() <= 1e-6 * scale, "{dims:?}: {a} vs {b}");
        }

        let w: Vec<f32> = (0..n * k).map(|_| rng.heavy()).collect();
        let (wq, ws) = cpu::quantize_rows_i8(&w, k);
        let wt = || {
            Tensor::<NdArray, 2, Int>::from_data(
                TensorData::new(wq.clone(), [n, i8_words_per_row(k)]),
                (&dev, DType::U32),
            )
            .into_primitive()
        };
        let st = || tensor_f32(ws.clone(), [n, 1]).into_primitive().tensor();
        let x = || tensor_f32(c.x.clone(), [c.m, k]).into_primitive().tensor();
        let fused = to_vec(NdArray::int8_matmul(x(), wt(), st()));
        let composed = to_vec(burn_ops::int8_matmul::<NdArray>(x(), wt(), st()));
        let scale = composed.iter().fold(1f32, |a, v| a.max(v.abs()));
        for (a, b) in fused.iter().zip(&composed) {
            assert!((a - b).abs() <= 1e-5 * scale, "int8 {dims:?}: {a} vs {b}");
        }
    }
}

/// Extreme activations (-128 everywhere, which BitNet's quantizer never emits but the kernels accept) against
/// all-(+1) and all-(-1) rows on the widest shape: the i16 accumulators must widen before they overflow.
#[test]
fn extreme_values_do_not_overflow_the_i16_accumulators() {
    let (n, k) = (2, 6912);
    let shape = TernaryShape { n, k, block: k };
    let kw = words_per_row(k);
    let mut words = vec![0u32; n * kw];
    pack_row(&vec![1i8; k], &mut words[..kw]);
    pack_row(&vec![-1i8; k], &mut words[kw..]);
    for tokens in 1..=largest_token_tile() {
        let stride = k;
        let q = vec![-128i8; tokens * stride];
        for isa in Isa::available() {
            if isa.token_tile() < tokens {
                continue;
            }
            // every value the same: the tile layout's copy is the same bytes
            let tiles = if isa.tile_multiplies(tokens) {
                &q[..]
            } else {
                &[]
            };
            for (r, code) in [(0usize, 2i32), (1, 0)] {
                let row: &[u8] = bytemuck::cast_slice(&words[r * kw..(r + 1) * kw]);
                let mut out = vec![0i32; tokens];
                cpu::ternary_tile_dots(
                    isa,
                    row,
                    kw * 4,
                    ActTile {
                        q: &q,
                        stride,
                        tokens,
                        chunk: isa.chunk(),
                        tiles,
                    },
                    shape,
                    &mut out,
                );
                assert_eq!(
                    out,
                    vec![code * -128 * k as i32; tokens],
                    "{isa:?} row{r} tokens{tokens}"
                );
            }
            if tokens == 1 {
                let rows: &[u8] = bytemuck::cast_slice(&words);
                let mut out = vec![0i32; 2];
                cpu::ternary_tile_dots(
                    isa,
                    rows,
                    kw * 4,
                    ActTile {
                        q: &q,
                        stride,
                        tokens: 1,
                        chunk: isa.chunk(),
                        tiles: &[],
                    },
                    shape,
                    &mut out,
                );
                assert_eq!(out, vec![2 * -128 * k as i32, 0], "{isa:?} 2-row tile");
            }
        }
    }
}

/// The float head kernel against the Burn-ops definition (f32 sums in a different order: 1e-5 relative).
#[test]
fn float_head_matches_burn_ops() {
    let mut rng = Lcg(17);
    for (m, n, k) in [(1, 7, 33), (3, 40, 256), (2, 9, 2560)] {
        let x: Vec<f32> = (0..m * k).map(|_| rng.heavy()).collect();
        let w: Vec<f32> = (0..n * k).map(|_| rng.heavy()).collect();
        let prim = |v: &Vec<f32>, r: usize| tensor_f32(v.clone(), [r, k]).into_primitive().tensor();
        let fused = to_vec(NdArray::float_matmul_nt(prim(&x, m), prim(&w, n)));
        let composed = to_vec(burn_ops::float_matmul_nt::<NdArray>(
            prim(&x, m),
            prim(&w, n),
        ));
        let scale = composed.iter().fold(1f32, |a, v| a.max(v.abs()));
        assert_eq!(fused.len(), m * n);
        for (a, b) in fused.iter().zip(&composed) {
            assert!((a - b).abs() <= 1e-5 * scale, "m{m} n{n} k{k}: {a} vs {b}");
        }
    }
}
