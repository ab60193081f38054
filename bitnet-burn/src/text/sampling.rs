//! Choosing the next token from logits: greedy, or temperature with top-k, top-p and min-p filters, with a
//! repetition penalty; seeded, so the same seed gives the same text on the same backend.

use crate::rng::Rng;

/// Sampling settings (the defaults are greedy).
#[derive(Clone, Debug, PartialEq)]
pub struct SamplerConfig {
    /// 0 picks the most likely token; higher flattens the distribution.
    pub temperature: f32,
    /// Keep only the `top_k` most likely tokens (0: all).
    pub top_k: usize,
    /// Keep the smallest set of tokens whose probability reaches `top_p` (1: all).
    pub top_p: f32,
    /// Drop tokens less likely than `min_p` times the most likely one (0: none).
    pub min_p: f32,
    /// Divide positive (multiply negative) logits of recently generated tokens by this (1: off).
    pub repeat_penalty: f32,
    /// How many recent tokens the penalties look at.
    pub repeat_last_n: usize,
    /// Subtracted from the logit of each recent token once (OpenAI's `presence_penalty`; 0: off).
    pub presence_penalty: f32,
    /// Subtracted from the logit of each recent token once per occurrence (`frequency_penalty`; 0: off).
    pub frequency_penalty: f32,
    /// Random seed.
    pub seed: u64,
}

impl Default for SamplerConfig {
    fn default() -> Self {
        Self {
            temperature: 0.0,
            top_k: 0,
            top_p: 1.0,
            min_p: 0.0,
            repeat_penalty: 1.0,
            repeat_last_n: 64,
            presence_penalty: 0.0,
            frequency_penalty: 0.0,
            seed: 0,
        }
    }
}

/// A sampler with its random state.
#[derive(Clone, Debug)]
pub struct Sampler {
    config: SamplerConfig,
    rng: Rng,
}

impl Sampler {
    /// A sampler seeded from its config.
    pub fn new(config: SamplerConfig) -> Self {
        let rng = Rng::new(config.seed);
        Self { config, rng }
    }

    /// Picks a token from `logits` (modified in place) given the tokens so far.
    pub fn sample(&mut self, logits: &mut [f32], history: &[u32]) -> u32 {
        let c = &self.config;
        if c.repeat_penalty != 1.0 || c.presence_penalty != 0.0 || c.frequency_penalty != 0.0 {
            let start = history.len().saturating_sub(c.repeat_last_n);
            let mut seen: Vec<u32> = history[start..].to_vec();
            seen.sort_unstable();
            for run in seen.chunk_by(|a, b| a == b) {
                if let Some(l) = logits.get_mut(run[0] as usize) {
                    *l = if *l > 0.0 {
                        *l / c.repeat_penalty
                    } else {
                        *l * c.repeat_penalty
                    };
                    *l -= c.presence_penalty + c.frequency_penalty * run.len() as f32;
                }
            }
        }
        if c.temperature <= 0.0 {
            return argmax(logits);
        }
        let mut order: Vec<u32> = (0..logits.len() as u32).collect();
        order.sort_unstable_by(|&a, &b| logits[b as usize].total_cmp(&logits[a as usize]));
        if c.top_k > 0 {
            order.truncate(c.top_k);
        }
        let max = logits[order[0] as usize];
        let mut probs: Vec<f32> = order
            .iter()
            .map(|&t| ((logits[t as usize] - max) / c.temperature).exp())
            .collect();
        if c.min_p > 0.0 {
            let keep = probs.iter().take_while(|&&p| p >= c.min_p).count().max(1);
            probs.truncate(keep);
        }
        let total: f32 = probs.iter().sum();
        if c.top_p < 1.0 {
            let mut acc = 0.0;
            let keep = probs.iter().take_while(|&&p| {
                let before = acc;
                acc += p / total;
                before < c.top_p
            });
            let keep = keep.count().max(1);
            probs.truncate(keep);
        }
        let total: f32 = probs.iter().sum();
        let mut r = self.rng.uniform() * total;
        for (i, p) in probs.iter().enumerate() {
            if r < *p {
                return order[i];
            }
            r -= p;
        }
        order[probs.len() - 1]
    }
}

/// Index of the largest logit (the first one on ties).
pub fn argmax(logits: &[f32]) -> u32 {
    (0..logits.len()).fold(0, |best, i| if logits[i] > logits[best] { i } else { best }) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    fn logits() -> Vec<f32> {
        vec![1.0, 3.0, 2.0, -1.0, 2.9]
    }

    #[test]
    fn greedy_takes_the_argmax() {
        assert_eq!(
            Sampler::new(SamplerConfig::default()).sample(&mut logits(), &[]),
            1
        );
    }

    #[test]
    fn same_seed_same_choices_different_seed_differs() {
        let run = |seed| {
            let mut s = Sampler::new(SamplerConfig {
                temperature: 5.0,
                seed,
                ..Default::default()
            });
            (0..64)
                .map(|_| s.sample(&mut logits(), &[]))
                .collect::<Vec<_>>()
        };
        assert_eq!(run(1), run(1));
        assert_ne!(run(1), run(2));
    }

    #[test]
    fn filters_limit_the_candidates() {
        let draw = |cfg: SamplerConfig| {
            let mut s = Sampler::new(cfg);
            let mut seen: Vec<u32> = (0..500).map(|_| s.sample(&mut logits(), &[])).collect();
            seen.sort_unstable();
            seen.dedup();
            seen
        };
        let hot = SamplerConfig {
            temperature: 100.0,
            ..Default::default()
        };
        assert_eq!(draw(hot.clone()), [0, 1, 2, 3, 4]);
        assert_eq!(
            draw(SamplerConfig {
                top_k: 2,
                ..hot.clone()
            }),
            [1, 4]
        );
        // At temperature 1: p ∝ e^(l - 3) = 1, 0.905, 0.368, 0.135, 0.018 → top-p 0.7 keeps tokens 1 and 4.
        assert_eq!(
            draw(SamplerConfig {
                temperature: 1.0,
                top_p: 0.7,
                ..Default::default()
            }),
            [1, 4]
        );
        // min-p 0.3 (relative to the best) keeps 1, 4 and 2.
        assert_eq!(
            draw(SamplerConfig {
                temperature: 1.0,
                min_p: 0.3,
                ..Default::default()
            }),
            [1, 2, 4]
        );
    }

    #[test]
    fn repetition_penalty_demotes_recent_tokens() {
        let mut s = Sampler::new(SamplerConfig {
            repeat_penalty: 2.0,
            ..Default::default()
        });
        assert_eq!(s.sample(&mut logits(), &[1]), 4, "3.0 / 2 = 1.5 < 2.9");
    }

    #[test]
    fn presence_and_frequency_penalties_subtract_per_token_and_per_occurrence() {
        let pick = |presence, frequency, history: &[u32]| {
            let mut s = Sampler::new(SamplerConfig {
                presence_penalty: presence,
                frequency_penalty: frequency,
                ..Default::default()
            });
            s.sample(&mut logits(), history)
        };
        assert_eq!(pick(0.2, 0.0, &[1]), 4, "3.0 - 0.2 < 2.9");
        assert_eq!(
            pick(0.05, 0.0, &[1, 1, 1]),
            1,
            "presence counts once: 2.95 > 2.9"
        );
        assert_eq!(
            pick(0.0, 0.05, &[1, 1, 1]),
            4,
            "frequency counts each: 2.85 < 2.9"
        );
    }
}
