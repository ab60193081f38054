//! Perplexity over a token stream, computed the way llama.cpp's `llama-perplexity` does so the numbers compare:
//! independent windows of `ctx` tokens (the first replaced by BOS when the model adds one), each scoring the
//! predictions of its second half.

use super::logprobs::log_sum_exp;
use crate::error::ForwardError;
use crate::{ActQuant, BitNet, TernaryBackend};

/// The result of [`perplexity`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Perplexity {
    /// `exp(mean negative log-likelihood)`.
    pub ppl: f64,
    /// Mean negative log-likelihood (nats per token).
    pub nll: f64,
    /// Tokens scored.
    pub scored: usize,
    /// Windows evaluated.
    pub windows: usize,
}

/// Perplexity of `model` on `tokens` in windows of `ctx` tokens (at least 4; trailing tokens that do not fill a
/// window are ignored, as in llama.cpp).
pub fn perplexity<B: TernaryBackend>(
    model: &BitNet<B>,
    tokens: &[u32],
    ctx: usize,
    bos: Option<u32>,
    act: ActQuant,
) -> Result<Perplexity, ForwardError> {
    if ctx < 4 || tokens.len() < ctx {
        return Err(ForwardError::Empty);
    }
    let vocab = model.config.vocab_size;
    let first = ctx / 2;
    let (mut nll, mut scored, mut windows) = (0f64, 0usize, 0usize);
    for window in tokens.chunks_exact(ctx) {
        let mut input = window.to_vec();
        if let Some(bos) = bos {
            input[0] = bos;
        }
        let mut cache = model.new_cache(1, ctx);
        let logits = model.forward(&[input], &mut cache, act)?.into_data();
        let logits = logits
            .as_slice::<f32>()
            .expect("the model's logits are f32");
        for j in first..ctx - 1 {
            let row = &logits[j * vocab..(j + 1) * vocab];
            nll += log_sum_exp(row) - row[window[j + 1] as usize] as f64;
            scored += 1;
        }
        windows += 1;
    }
    let nll = nll / scored as f64;
    Ok(Perplexity {
        ppl: nll.exp(),
        nll,
        scored,
        windows,
    })
}
