//! Training and evaluation data: random windows of a token stream, and the unigram baseline.

use crate::rng::Rng;

/// Random `seq_len + 1` windows of a token stream (inputs and next-token targets), deterministic from a seed.
pub struct Windows<'a> {
    tokens: &'a [u32],
    seq_len: usize,
    rng: Rng,
}

impl<'a> Windows<'a> {
    /// Windows over `tokens` (which must hold more than `seq_len` tokens).
    pub fn new(tokens: &'a [u32], seq_len: usize, seed: u64) -> Self {
        assert!(
            tokens.len() > seq_len,
            "{} tokens for windows of {seq_len}",
            tokens.len()
        );
        Self {
            tokens,
            seq_len,
            rng: Rng::new(seed),
        }
    }

    /// `batch` random windows: (inputs, targets), each `[batch][seq_len]`.
    pub fn sample(&mut self, batch: usize) -> (Vec<Vec<u32>>, Vec<Vec<u32>>) {
        let starts = self.tokens.len() - self.seq_len;
        (0..batch)
            .map(|_| {
                let s = (self.rng.next_u64() % starts as u64) as usize;
                let w = &self.tokens[s..s + self.seq_len + 1];
                (w[..self.seq_len].to_vec(), w[1..].to_vec())
            })
            .unzip()
    }

    /// Skips the windows of `batches` calls of [`sample`](Self::sample) with `batch`: where a resumed run
    /// picks up.
    pub fn skip(&mut self, batches: usize, batch: usize) {
        for _ in 0..batches * batch {
            self.rng.next_u64();
        }
    }
}

/// Cross-entropy (nats per token) of `val` under `train`'s add-one-smoothed token frequencies: the baseline a
/// language model has to beat.
pub fn unigram_loss(train: &[u32], val: &[u32], vocab: usize) -> f64 {
    let mut counts = vec![1.0f64; vocab];
    for &t in train {
        counts[t as usize] += 1.0;
    }
    let total: f64 = counts.iter().sum();
    -val.iter()
        .map(|&t| (counts[t as usize] / total).ln())
        .sum::<f64>()
        / val.len().max(1) as f64
}
