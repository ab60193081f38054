//! The Walsh–Hadamard rotation of quantized KV caches, as llama.cpp applies it (its PR 21038): keys, and the
//! queries with them, in chunks of the largest power of two dividing the head width; values in chunks of 64, and
//! the attention output rotated back. An orthonormal rotation keeps every `q · k` and `Σ w · v`, and spreads a
//! row's outliers over its quantization blocks, so each block's scale is finer.

/// Widths of the chunks (keys and queries, values) a cache rotates its rows of `d` values in, if it does:
/// where `d` is a multiple of 64 (llama.cpp's condition).
pub fn chunks(d: usize) -> Option<(usize, usize)> {
    d.is_multiple_of(64).then(|| (1 << d.trailing_zeros(), 64))
}

/// `x` rotated in place, each chunk of `n` values (a power of two) by the orthonormal Walsh–Hadamard matrix of
/// size `n` in Sylvester's order (llama.cpp's `ggml_gen_hadamard`; symmetric, so its own inverse): the fast
/// transform's butterflies, then the scale `1/√n`.
pub fn rotate(x: &mut [f32], n: usize) {
    debug_assert!(n.is_power_of_two() && x.len().is_multiple_of(n));
    let scale = 1.0 / (n as f32).sqrt();
    for c in x.chunks_exact_mut(n) {
        let mut h = 1;
        while h < n {
            for pair in c.chunks_exact_mut(2 * h) {
                let (lo, hi) = pair.split_at_mut(h);
                for (a, b) in lo.iter_mut().zip(hi) {
                    (*a, *b) = (*a + *b, *a - *b);
                }
            }
            h *= 2;
        }
        c.iter_mut().for_each(|v| *v *= scale);
    }
}
