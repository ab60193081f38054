//! Perplexity against transformers: the NLL of the fixture's 16-token sequence computed from transformers'
//! logits (held in the fixtures) equals `bitnet_burn::text::perplexity` on our engine, and the int8 head costs
//! little (under 0.05 nats per token).

use crate::common::model::*;
use crate::common::*;
use bitnet_burn::text::perplexity::perplexity;
use bitnet_burn::{ActQuant, HeadMode};

/// llama-perplexity's rule on one window: positions ctx/2 .. ctx-2 predict the next token.
fn reference_nll(logits: &[Vec<f32>], tokens: &[u32]) -> f64 {
    let ctx = tokens.len();
    let terms: Vec<f64> = (ctx / 2..ctx - 1)
        .map(|j| {
            let row = &logits[j];
            let max = row.iter().fold(f32::NEG_INFINITY, |a, &v| a.max(v)) as f64;
            let lse = row
                .iter()
                .map(|&v| (v as f64 - max).exp())
                .sum::<f64>()
                .ln()
                + max;
            lse - row[tokens[j + 1] as usize] as f64
        })
        .collect();
    terms.iter().sum::<f64>() / terms.len() as f64
}

#[test]
fn perplexity_matches_transformers_and_the_int8_head_costs_little() {
    let Some(dir) = fixtures_or_skip("perplexity_matches_transformers") else {
        return;
    };
    let tokens = sequence(&dir, "seq16");
    let expected = reference_nll(&reference(&dir, "hf", "logits_seq16_all"), &tokens);
    let mut model = crate::common::load_float::<burn::backend::NdArray>(
        &fixture_gguf(&dir, "i2_s"),
        &Default::default(),
    );
    let float = perplexity(&model, &tokens, tokens.len(), None, ActQuant::Int8).unwrap();
    assert_eq!((float.windows, float.scored), (1, 7));
    // Our int8 logits equal transformers' to float rounding (model_fixtures.rs); the NLL sums in f64.
    assert!(
        (float.nll - expected).abs() <= 1e-5 * expected.abs(),
        "nll {} vs transformers {expected}",
        float.nll
    );
    model.set_head(HeadMode::Int8);
    let int8 = perplexity(&model, &tokens, tokens.len(), None, ActQuant::Int8).unwrap();
    assert_ne!(int8.nll, float.nll, "the int8 head must actually run");
    // Measured: +0.0106 nats/token (+1.07% perplexity) on this random model, whose logits are unusually large
    // (perplexity ~1.4e8); the bound is 0.05 nats (5% perplexity).
    assert!(
        (int8.nll - float.nll).abs() < 0.05,
        "int8 head nll {} vs float {}",
        int8.nll,
        float.nll
    );
}
