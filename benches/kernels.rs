//! CPU kernel throughput on the 2B-4T projection shapes, against the memory bandwidth measured by the same
//! harness: `cargo bench --bench kernels`. Each iteration uses the next of enough distinct matrices to
//! overflow the last-level cache, so the numbers are DRAM-bound as in a real decode step.

use std::hint::black_box;

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

criterion_group! {
    name = kernels;
    config = Criterion::default().sample_size(20).measurement_time(std::time::Duration::from_secs(4));
    targets = bandwidth, ternary_gemv
}
criterion_main!(kernels);
