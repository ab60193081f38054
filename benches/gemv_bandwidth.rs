//! The decode GEMVs' share of the machine's memory bandwidth, on the 2B-4T ternary projection shapes and its
//! int8 output head, at 1 and 2 threads: `cargo bench --bench gemv_bandwidth`. Each round reads 256 MiB once with a plain sum (the
//! bandwidth) and then runs the GEMV over 256 MiB of distinct matrices (so it is DRAM-bound, as in a real
//! decode step), back to back; the ratio is taken per round. On a shared host the bandwidth left by the
//! neighbours drifts by ±20% over seconds, so measuring the two minutes apart (as separate criterion
//! benchmarks would) compares different machines. Prints the median and quartiles over the rounds.

mod common;

use std::hint::black_box;
use std::time::Instant;

use bitnet_kernels_cubecl::cpu::{self, Isa};
use bitnet_kernels_cubecl::packing::words_per_row;
use bitnet_kernels_cubecl::reference::TernaryShape;
use common::{activations, lcg, pool};
use rayon::prelude::*;

/// Bytes read per measurement (well above a 32 MiB L3).
const WORKING_SET: usize = 256 << 20;
/// Rounds per shape and thread count; the first warms up and is dropped.
const ROUNDS: usize = 21;

const GIB: f64 = (1u64 << 30) as f64;

/// GiB/s of `bytes` read by `f`.
fn rate(bytes: usize, f: impl FnOnce()) -> f64 {
    let start = Instant::now();
    f();
    bytes as f64 / start.elapsed().as_secs_f64() / GIB
}

/// Median, first and third quartile.
fn quartiles(mut v: Vec<f64>) -> [f64; 3] {
    v.sort_by(f64::total_cmp);
    [v[v.len() / 2], v[v.len() / 4], v[3 * v.len() / 4]]
}

/// Prints one row: `gemv` (reading `bytes`) against the plain read of `words`, alternating per round.
fn compare(label: &str, words: &[u32], bytes: usize, gemv: impl Fn()) {
    let (mut read, mut rates, mut ratio) = (vec![], vec![], vec![]);
    for round in 0..ROUNDS {
        let r = rate(words.len() * 4, || {
            let sum = words
                .par_chunks(1 << 16)
                .map(|c| c.iter().fold(0u32, |a, &w| a.wrapping_add(w)))
                .reduce(|| 0, u32::wrapping_add);
            black_box(sum);
        });
        let g = rate(bytes, &gemv);
        if round > 0 {
            read.push(r);
            rates.push(g);
            ratio.push(g / r);
        }
    }
    let ([r, ..], [g, ..], [m, q1, q3]) = (quartiles(read), quartiles(rates), quartiles(ratio));
    println!(
        "| {label} | {} | {} | {r:.1} | {g:.1} | {:.0}% ({:.0}-{:.0}%) |",
        Isa::detect().name(),
        rayon::current_num_threads(),
        100.0 * m,
        100.0 * q1,
        100.0 * q3
    );
}

fn main() {
    let isa = Isa::detect();
    let words = vec![0x5555_5555u32 ^ 1; WORKING_SET / 4];
    println!("| GEMV n×k | path | threads | read GiB/s | GEMV GiB/s | GEMV / read (q1-q3) |");
    println!("|---|---|---|---|---|---|");
    let mut seed = 7;
    for (n, k) in [(6912, 2560), (2560, 6912)] {
        let shape = TernaryShape { n, k, block: k };
        let words_per_matrix = n * words_per_row(k);
        let copies = WORKING_SET / (4 * words_per_matrix) + 1;
        let matrices: Vec<Vec<u32>> = (0..copies)
            .map(|_| (0..words_per_matrix).map(|_| lcg(&mut seed)).collect())
            .collect();
        let scales = vec![1.0f32; n];
        let x = activations(&mut seed, k);
        for threads in [1, 2] {
            pool(threads).install(|| {
                compare(
                    &format!("ternary {n}×{k}"),
                    &words,
                    copies * words_per_matrix * 4,
                    || {
                        for w in &matrices {
                            black_box(cpu::ternary_matmul_i8(&x, 1, w, &scales, shape, isa));
                        }
                    },
                )
            });
        }
    }
    let (n, k) = (128_256, 2560);
    let head: Vec<u32> = (0..n * k / 4).map(|_| lcg(&mut seed)).collect();
    let scales = vec![1.0f32; n];
    let x = activations(&mut seed, k);
    for threads in [1, 2] {
        pool(threads).install(|| {
            compare(&format!("int8 head {n}×{k}"), &words, n * k, || {
                black_box(cpu::int8_matmul(&x, 1, &head, &scales, k, isa));
            })
        });
    }
}
