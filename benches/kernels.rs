//! CPU kernel throughput on the 2B-4T projection shapes, against the memory bandwidth measured by the same
//! harness: `cargo bench --bench kernels`. Each iteration uses the next of enough distinct matrices to
//! overflow the last-level cache, so the numbers are DRAM-bound as in a real decode step.

use std::hint::black_box;

use bitnet_kernels_cubecl::cpu::acts::QuantizedActs;
use bitnet_kernels_cubecl::cpu::{self, Isa};
use bitnet_kernels_cubecl::packing::words_per_row;
use bitnet_kernels_cubecl::reference::TernaryShape;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use rayon::prelude::*;

/// Bytes of weights cycled through per benchmark (well above a 32 MiB L3).
const WORKING_SET: usize = 256 << 20;

fn pool(threads: usize) -> rayon::ThreadPool {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .expect("thread pool")
}

fn lcg(seed: &mut u64) -> u32 {
    *seed = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (*seed >> 33) as u32
}

fn bandwidth(c: &mut Criterion) {
    let words = vec![0x5555_5555u32 ^ 1; WORKING_SET / 4];
    let mut g = c.benchmark_group("read_bandwidth");
    g.throughput(Throughput::Bytes(WORKING_SET as u64));
    for threads in [1, 2] {
        let pool = pool(threads);
        g.bench_function(format!("sum_u32/t{threads}"), |b| {
            b.iter(|| {
                pool.install(|| {
                    words
                        .par_chunks(1 << 16)
                        .map(|c| c.iter().fold(0u32, |a, &w| a.wrapping_add(w)))
                        .reduce(|| 0, u32::wrapping_add)
                })
            })
        });
    }
}

fn ternary_gemv(c: &mut Criterion) {
    let isa = Isa::detect();
    for (n, k) in [(6912, 2560), (2560, 6912)] {
        let shape = TernaryShape { n, k, block: k };
        let words_per_matrix = n * words_per_row(k);
        let copies = WORKING_SET / (4 * words_per_matrix) + 1;
        let mut seed = 7;
        let matrices: Vec<Vec<u32>> = (0..copies)
            .map(|_| (0..words_per_matrix).map(|_| lcg(&mut seed)).collect())
            .collect();
        let scales = vec![1.0f32; n];
        let x: Vec<f32> = (0..k)
            .map(|_| lcg(&mut seed) as f32 / u32::MAX as f32 - 0.5)
            .collect();
        let mut g = c.benchmark_group(format!("ternary_gemv_{n}x{k}"));
        g.throughput(Throughput::Bytes(4 * words_per_matrix as u64));
        for threads in [1, 2] {
            let pool = pool(threads);
            let mut i = 0;
            g.bench_function(format!("{}/t{threads}", isa.name()), |b| {
                b.iter(|| {
                    i = (i + 1) % copies;
                    pool.install(|| {
                        black_box(cpu::ternary_matmul_i8(
                            &x,
                            1,
                            &matrices[i],
                            &scales,
                            shape,
                            isa,
                        ))
                    })
                })
            });
        }
    }
}

/// The decode kernel's compute rate: 256 rows × 2560 columns (160 KiB, in L2) through the SIMD tile function
/// itself (no quantization, threads or rescaling), again and again on one thread. Memory-bound GEMVs can only
/// reach the bandwidth if this is well above it.
fn ternary_tiles_in_cache(c: &mut Criterion) {
    let isa = Isa::detect();
    let (n, k) = (256, 2560);
    let shape = TernaryShape { n, k, block: k };
    let mut seed = 5;
    let w: Vec<u32> = (0..n * words_per_row(k)).map(|_| lcg(&mut seed)).collect();
    let x: Vec<f32> = (0..4 * k)
        .map(|_| lcg(&mut seed) as f32 / u32::MAX as f32 - 0.5)
        .collect();
    let rows: Vec<u8> = w.iter().flat_map(|w| w.to_le_bytes()).collect();
    let mut g = c.benchmark_group(format!("ternary_tiles_in_cache_{n}x{k}"));
    g.throughput(Throughput::Bytes(rows.len() as u64));
    for tokens in [1, 4] {
        let mut acts = QuantizedActs::default();
        acts.quantize_permuted(&x, tokens, k, k, isa.chunk());
        let mut out = vec![0i32; n * tokens];
        g.bench_function(format!("{}/tokens{tokens}", isa.name()), |b| {
            b.iter(|| {
                let a = acts.tile(0, tokens);
                cpu::ternary_tile_dots(isa, &rows, k / 4, a, shape, &mut out);
                black_box(&out);
            })
        });
    }
}

/// The int8 output head of 2B-4T (vocabulary × hidden, one token): 0.33 GB, so one matrix already spills the
/// last-level cache.
fn int8_head_gemv(c: &mut Criterion) {
    let isa = Isa::detect();
    let (n, k) = (128_256, 2560);
    let mut seed = 11;
    let w: Vec<u32> = (0..n * k / 4).map(|_| lcg(&mut seed)).collect();
    let scales = vec![1.0f32; n];
    let x: Vec<f32> = (0..k)
        .map(|_| lcg(&mut seed) as f32 / u32::MAX as f32 - 0.5)
        .collect();
    let mut g = c.benchmark_group(format!("int8_head_gemv_{n}x{k}"));
    g.throughput(Throughput::Bytes((n * k) as u64));
    for threads in [1, 2] {
        let pool = pool(threads);
        g.bench_function(format!("{}/t{threads}", isa.name()), |b| {
            b.iter(|| pool.install(|| black_box(cpu::int8_matmul(&x, 1, &w, &scales, k, isa))))
        });
    }
}

/// One decode step's attention for one layer of 2B-4T (20 query heads over 5 KV heads of 128) over 2048 cached
/// positions: 2.6 MB of f32 keys and values, which stays in cache across iterations, so this is the compute
/// rate (`BITNET_ISA=scalar` gives the portable path for comparison).
fn cached_attention_decode(c: &mut Criterion) {
    let shape = cpu::AttentionShape {
        batch: 1,
        heads: 20,
        kv_heads: 5,
        seq: 1,
        head_dim: 128,
        max_len: 2048,
        len: 2048,
    };
    let mut seed = 13;
    let mut values = |n: usize| -> Vec<f32> {
        (0..n)
            .map(|_| lcg(&mut seed) as f32 / u32::MAX as f32 - 0.5)
            .collect()
    };
    let q = values(shape.heads * shape.head_dim);
    let cache = shape.kv_heads * shape.max_len * shape.head_dim;
    let (k, v) = (values(cache), values(cache));
    let mut g = c.benchmark_group("cached_attention_decode_20x5x128_len2048");
    g.throughput(Throughput::Elements(
        (2 * shape.heads * shape.len * shape.head_dim) as u64,
    ));
    for threads in [1, 2] {
        let pool = pool(threads);
        g.bench_function(format!("{}/t{threads}", Isa::detect().name()), |b| {
            b.iter(|| pool.install(|| black_box(cpu::cached_attention(&q, &k, &v, shape))))
        });
    }
}

criterion_group! {
    name = kernels;
    config = Criterion::default().sample_size(20).measurement_time(std::time::Duration::from_secs(4));
    targets = bandwidth, ternary_gemv, ternary_tiles_in_cache, int8_head_gemv, cached_attention_decode
}
criterion_main!(kernels);
