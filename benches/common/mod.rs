//! Inputs shared by the CPU benchmarks.

/// A deterministic stream of pseudo-random words (a 64-bit LCG), so every run reads the same data.
pub fn lcg(seed: &mut u64) -> u32 {
    *seed = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (*seed >> 33) as u32
}

/// `n` activations in [-0.5, 0.5).
pub fn activations(seed: &mut u64, n: usize) -> Vec<f32> {
    (0..n)
        .map(|_| lcg(seed) as f32 / u32::MAX as f32 - 0.5)
        .collect()
}

/// A rayon pool of `threads` threads (the kernels split their rows over the installed pool, as `-t` does).
pub fn pool(threads: usize) -> rayon::ThreadPool {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .expect("thread pool")
}
