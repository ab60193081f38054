//! Choosing the next token from logits: greedy, or temperature with top-k, top-p and min-p filters, with a
//! repetition penalty; seeded, so the same seed gives the same text on the same backend.

use crate::rng::Rng;
use crate::text::format::OutputFormat;

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
    /// Added to the logits of these tokens before anything else (OpenAI's `logit_bias`: -100 bans a token).
    pub logit_bias: Vec<(u32, f32)>,
    /// What the text must be (JSON mode allows only tokens that keep it the start of a JSON object).
    pub format: OutputFormat,
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
            logit_bias: Vec::new(),
            format: OutputFormat::Text,
        }
    }
}

/// A `logit_bias` entry that cannot apply.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LogitBiasError {
    /// A key is not a token id.
    #[error("key {0:?} is not a token id")]
    NotAnId(String),
    /// A token id past the vocabulary.
    #[error("token id {id} is outside the vocabulary ({vocab} tokens)")]
    OutsideVocabulary {
        /// The id.
        id: u32,
        /// Tokens in the vocabulary.
        vocab: usize,
    },
    /// A bias outside OpenAI's range.
    #[error("{bias} for token {id} is outside [-100, 100]")]
    OutOfRange {
        /// The id.
        id: u32,
        /// The bias.
        bias: f32,
    },
}

/// OpenAI's `logit_bias` (token ids written as JSON object keys, each with a bias in [-100, 100]) as
/// [`SamplerConfig::logit_bias`] pairs for a vocabulary of `vocab` tokens, in id order; the first bad entry is
/// the error.
pub fn logit_bias_pairs<'a>(
    entries: impl IntoIterator<Item = (&'a str, f32)>,
    vocab: usize,
) -> Result<Vec<(u32, f32)>, LogitBiasError> {
    let mut pairs = entries
        .into_iter()
        .map(|(key, bias)| {
            let id: u32 = key
                .parse()
                .map_err(|_| LogitBiasError::NotAnId(key.to_string()))?;
            if id as usize >= vocab {
                return Err(LogitBiasError::OutsideVocabulary { id, vocab });
            }
            if !(-100.0..=100.0).contains(&bias) {
                return Err(LogitBiasError::OutOfRange { id, bias });
            }
            Ok((id, bias))
        })
        .collect::<Result<Vec<_>, _>>()?;
    pairs.sort_by_key(|&(id, _)| id);
    Ok(pairs)
}

/// A sampler with its random state.
#[derive(Clone, Debug)]
pub struct Sampler {
    config: SamplerConfig,
    rng: Rng,
    /// Kept between calls: no allocation per token.
    candidates: Vec<Candidate>,
}

/// A token the filters may keep, its logit beside its id so that comparing two reads nothing else.
#[derive(Clone, Copy, Debug)]
struct Candidate {
    logit: f32,
    /// exp((logit - max) / temperature), once the cheap filters have run.
    weight: f32,
    id: u32,
}

impl Sampler {
    /// A sampler seeded from its config.
    pub fn new(config: SamplerConfig) -> Self {
        let rng = Rng::new(config.seed);
        Self {
            config,
            rng,
            candidates: Vec::new(),
        }
    }

    /// Picks a token from `logits` (modified in place) given the tokens so far.
    pub fn sample(&mut self, logits: &mut [f32], history: &[u32]) -> u32 {
        self.adjust(logits, history);
        self.choose(logits)
    }

    /// The first half of [`Sampler::sample`]: adds the logit biases and applies the penalties for `history`.
    pub fn adjust(&self, logits: &mut [f32], history: &[u32]) {
        let c = &self.config;
        for &(id, bias) in &c.logit_bias {
            if let Some(l) = logits.get_mut(id as usize) {
                *l += bias;
            }
        }
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
    }

    /// The second half of [`Sampler::sample`]: the most likely token, or one drawn after temperature and the
    /// filters.
    pub fn choose(&mut self, logits: &[f32]) -> u32 {
        let c = &self.config;
        let best = argmax(logits);
        if c.temperature <= 0.0 {
            return best;
        }
        let kept = &mut self.candidates;
        candidates(logits, logits[best as usize], c, kept);
        let total: f32 = kept.iter().map(|t| t.weight).sum();
        let mut r = self.rng.uniform() * total;
        for t in kept.iter() {
            if r < t.weight {
                return t.id;
            }
            r -= t.weight;
        }
        kept.last().map_or(best, |t| t.id)
    }
}

/// The tokens the filters keep, into `out`: min-p as a floor on the logits, top-k by a floor that rises as the
/// pass over the vocabulary finds better tokens, top-p by halving around middle ranks; so a step costs passes
/// over the vocabulary rather than sorting it. The same set as sorting every logit and cutting at each filter in
/// turn (top-p's in descending order, the others in any).
fn candidates(logits: &[f32], max: f32, c: &SamplerConfig, out: &mut Vec<Candidate>) {
    // p / p_max = exp((l - max) / T) >= min_p  <=>  l >= max + T ln(min_p)
    let mut floor = match c.min_p {
        p if p > 0.0 => max + c.temperature * p.ln(),
        _ => f32::NEG_INFINITY,
    };
    let by_logit = |a: &Candidate, b: &Candidate| b.logit.total_cmp(&a.logit);
    let top_k = |out: &mut Vec<Candidate>| {
        if c.top_k > 0 && c.top_k < out.len() {
            out.select_nth_unstable_by(c.top_k - 1, by_logit);
            out.truncate(c.top_k);
        }
    };
    // once this many are held, the best top_k are kept and the floor rises to the worst of them
    let full = match c.top_k {
        0 => usize::MAX,
        k => 4 * k.max(64),
    };
    out.clear();
    for (id, &logit) in logits.iter().enumerate() {
        if logit >= floor {
            let weight = 0.0;
            let id = id as u32;
            out.push(Candidate { logit, weight, id });
            if out.len() == full {
                top_k(out);
                floor = floor.max(out[c.top_k - 1].logit);
            }
        }
    }
    top_k(out);
    for t in out.iter_mut() {
        t.weight = ((t.logit - max) / c.temperature).exp();
    }
    if c.top_p >= 1.0 {
        return;
    }
    // in f64: thousands of small masses add up to top_p in a flat distribution
    let total: f64 = out.iter().map(|t| f64::from(t.weight)).sum();
    let limit = f64::from(c.top_p) * total;
    // Halving: out[..lo] are better than the rest and all kept (their mass, `above`, is under the limit), out[hi..]
    // worse and all dropped; a selection at the middle rank of the rest and its upper half's mass narrow it.
    let (mut lo, mut hi, mut above) = (0, out.len(), 0.0);
    while hi - lo > 64 {
        let mid = (hi - lo) / 2;
        out[lo..hi].select_nth_unstable_by(mid, by_logit);
        let upper: f64 = out[lo..lo + mid].iter().map(|t| f64::from(t.weight)).sum();
        if above + upper < limit {
            above += upper;
            lo += mid;
        } else {
            hi = lo + mid;
        }
    }
    out[lo..hi].sort_unstable_by(by_logit);
    let mut before = above;
    let kept = out[lo..hi]
        .iter()
        .take_while(|t| {
            let under = before < limit;
            before += f64::from(t.weight);
            under
        })
        .count();
    out.truncate((lo + kept).max(1));
}

/// Index of the largest logit (the first one on ties; NaNs are passed over).
pub fn argmax(logits: &[f32]) -> u32 {
    // the largest value over 16 lanes (which vectorizes), then where it first occurs
    let mut lanes = [f32::NEG_INFINITY; 16];
    let chunks = logits.chunks_exact(16);
    let tail = chunks.remainder();
    for chunk in chunks {
        for (m, &x) in lanes.iter_mut().zip(chunk) {
            *m = if x > *m { x } else { *m };
        }
    }
    let max = lanes
        .iter()
        .chain(tail)
        .fold(f32::NEG_INFINITY, |m, &x| if x > m { x } else { m });
    logits.iter().position(|&x| x == max).unwrap_or(0) as u32
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
    fn argmax_is_the_first_largest_and_passes_over_nans() {
        let mut rng = Rng::new(3);
        for len in [1, 15, 16, 17, 100, 1000] {
            // few distinct values, so the largest repeats
            let mut logits: Vec<f32> = (0..len).map(|_| (rng.uniform() * 6.0).floor()).collect();
            logits[len / 2] = f32::NAN;
            let first =
                (0..len)
                    .filter(|&i| !logits[i].is_nan())
                    .fold(None, |best: Option<usize>, i| match best {
                        Some(b) if logits[b] >= logits[i] => Some(b),
                        _ => Some(i),
                    });
            assert_eq!(argmax(&logits) as usize, first.unwrap_or(0), "{len}");
        }
    }

    #[test]
    fn logit_bias_is_added_before_choosing() {
        let pick = |logit_bias: Vec<(u32, f32)>| {
            Sampler::new(SamplerConfig {
                logit_bias,
                ..Default::default()
            })
            .sample(&mut logits(), &[])
        };
        assert_eq!(pick(vec![(1, -0.2)]), 4, "2.8 < 2.9");
        assert_eq!(pick(vec![(3, 5.0)]), 3, "-1 + 5 = 4 > 3");
        assert_eq!(pick(vec![(1, -100.0), (4, -100.0)]), 2);
    }

    #[test]
    fn logit_bias_keys_are_ids_in_the_vocabulary_with_biases_in_range() {
        let pairs = |entries: &[(&str, f32)]| logit_bias_pairs(entries.iter().copied(), 10);
        assert_eq!(
            pairs(&[("9", -100.0), ("0", 100.0)]),
            Ok(vec![(0, 100.0), (9, -100.0)])
        );
        assert_eq!(
            pairs(&[("x", 1.0)]),
            Err(LogitBiasError::NotAnId("x".into()))
        );
        assert_eq!(
            pairs(&[("-1", 1.0)]),
            Err(LogitBiasError::NotAnId("-1".into()))
        );
        let outside = pairs(&[("3", 1.0), ("10", 1.0)]).unwrap_err();
        assert_eq!(
            outside.to_string(),
            "token id 10 is outside the vocabulary (10 tokens)"
        );
        let range = pairs(&[("3", 100.5)]).unwrap_err();
        assert_eq!(
            range.to_string(),
            "100.5 for token 3 is outside [-100, 100]"
        );
        assert!(pairs(&[("3", f32::NAN)]).is_err());
    }

    /// The filters as written down: sort every token, then cut at top-k, min-p and top-p in turn.
    fn candidates_by_sorting(logits: &[f32], c: &SamplerConfig) -> Vec<u32> {
        let mut order: Vec<u32> = (0..logits.len() as u32).collect();
        order.sort_by(|&a, &b| logits[b as usize].total_cmp(&logits[a as usize]));
        if c.top_k > 0 {
            order.truncate(c.top_k);
        }
        let max = logits[order[0] as usize];
        let p = |t: &u32| ((logits[*t as usize] - max) / c.temperature).exp();
        if c.min_p > 0.0 {
            order.retain(|t| p(t) >= c.min_p);
        }
        if c.top_p < 1.0 {
            let total: f64 = order.iter().map(|t| f64::from(p(t))).sum();
            let mut before = 0.0;
            let keep = order
                .iter()
                .take_while(|t| {
                    let under = before < f64::from(c.top_p);
                    before += f64::from(p(t)) / total;
                    under
                })
                .count();
            order.truncate(keep.max(1));
        }
        order.sort_unstable();
        order
    }

    #[test]
    fn the_filters_keep_what_sorting_the_vocabulary_keeps() {
        let mut rng = Rng::new(5);
        // a peaked and a flat distribution (top-p keeps thousands there, growing the sorted head twice)
        for scale in [4.0, 0.3] {
            let logits: Vec<f32> = (0..6000).map(|_| rng.normal() * scale).collect();
            let max = logits[argmax(&logits) as usize];
            for temperature in [0.4, 1.0, 1.7] {
                for top_k in [0, 1, 40, 5999, 7000] {
                    for top_p in [1.0, 0.999, 0.95, 0.5, 0.0] {
                        for min_p in [0.0, 0.05, 0.4] {
                            let c = SamplerConfig {
                                temperature,
                                top_k,
                                top_p,
                                min_p,
                                ..Default::default()
                            };
                            let mut kept = Vec::new();
                            candidates(&logits, max, &c, &mut kept);
                            let mut got: Vec<u32> = kept.iter().map(|t| t.id).collect();
                            got.sort_unstable();
                            assert_eq!(got, candidates_by_sorting(&logits, &c), "{scale} {c:?}");
                        }
                    }
                }
            }
        }
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
