//! Log-probabilities of generated tokens, as OpenAI's `logprobs` report them: the log-softmax of the model's
//! own logits, before temperature, penalties or truncation change what is sampled (llama-server's default too).

/// A generated token's log-probability and the most likely tokens at its position.
#[derive(Clone, Debug, PartialEq)]
pub struct TokenLogprob {
    /// The generated token.
    pub id: u32,
    /// Its log-probability.
    pub logprob: f32,
    /// The most likely tokens with their log-probabilities, most likely first (ties by id).
    pub top: Vec<(u32, f32)>,
}

/// `ln Σ exp(x)` over a logits row, in f64 (shifted by its maximum): a token's log-probability is its logit
/// less this.
pub fn log_sum_exp(logits: &[f32]) -> f64 {
    let max = f64::from(logits.iter().copied().fold(f32::NEG_INFINITY, f32::max));
    let sum: f64 = logits.iter().map(|&x| (f64::from(x) - max).exp()).sum();
    max + sum.ln()
}

impl TokenLogprob {
    /// `id`'s log-probability under `logits` (one position's row) and the `n` most likely tokens.
    pub fn new(logits: &[f32], id: u32, n: usize) -> Self {
        let lse = log_sum_exp(logits);
        let logprob = |i: usize| (f64::from(logits[i]) - lse) as f32;
        // a partial insertion sort: n is at most a few dozen, the vocabulary ~10^5
        let mut top: Vec<usize> = Vec::with_capacity(n + 1);
        for (i, &x) in logits.iter().enumerate() {
            if top.len() == n && top.last().is_none_or(|&j| x <= logits[j]) {
                continue;
            }
            let at = top.partition_point(|&j| logits[j] >= x);
            top.insert(at, i);
            top.truncate(n);
        }
        Self {
            id,
            logprob: logprob(id as usize),
            top: top.into_iter().map(|i| (i as u32, logprob(i))).collect(),
        }
    }
}
