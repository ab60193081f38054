//! Streamed text (what `on_text` receives, a piece per step, decoded incrementally) concatenates to the text of
//! the whole generation, on byte-level BPE (the shipped model, the synthetic byte vocabulary, where random bytes
//! make incomplete UTF-8 sequences) and SentencePiece (whose decode drops the leading space of a window), with
//! and without stop strings, which never appear in either.

use bitnet_burn::io::synth::write_synthetic;
use bitnet_burn::text::generate::{generate, GenerateOptions, StopReason};
use bitnet_burn::text::sampling::SamplerConfig;
use bitnet_burn::text::tokenizer::Tokenizer;
use bitnet_burn::{load, ModelConfig};
use bitnet_gguf::{GgmlType, GgufFile};
use burn::backend::NdArray;

use crate::common::repo_dir;

fn check(path: &std::path::Path, prompt: &str) {
    let model = load::<NdArray>(path, &Default::default()).unwrap();
    let tok = Tokenizer::from_gguf(&GgufFile::open(path).unwrap()).unwrap();
    for (seed, stops) in [
        (1, vec![]),
        (2, vec![]),
        (3, vec!["e".to_string()]),
        (4, vec!["th".into(), "e".into()]),
    ] {
        let opts = GenerateOptions {
            max_new_tokens: 120,
            sampler: SamplerConfig {
                temperature: 3.0,
                seed,
                ..Default::default()
            },
            stop_strings: stops.clone(),
            ..Default::default()
        };
        let mut cache = model.new_cache(1, 256);
        let mut pieces = String::new();
        let g = generate(&model, &tok, &mut cache, prompt, &opts, |p| {
            pieces.push_str(p)
        })
        .unwrap();
        let what = format!(
            "{} seed {seed}: {:?} (stop {:?})",
            path.display(),
            g.text,
            g.stop
        );
        assert_eq!(pieces, g.text, "{what}");
        for s in &stops {
            assert!(!g.text.contains(s.as_str()), "{what}");
        }
        if !stops.is_empty() {
            assert!(matches!(g.stop, StopReason::StopString(_)), "{what}");
        } else {
            assert!(g.ids.len() > 20, "{what}");
        }
    }
}

#[test]
fn streamed_pieces_concatenate_to_the_text() {
    check(
        &repo_dir().join("models/shakespeare-bitnet-i2_s.gguf"),
        "ROMEO:",
    );
    let dir = tempfile::tempdir().unwrap();
    for preset in ["tiny", "tiny-1bitllm"] {
        let path = dir.path().join(format!("{preset}.gguf"));
        write_synthetic(
            &path,
            &ModelConfig::preset(preset).unwrap(),
            GgmlType::TQ2_0,
            5,
        )
        .unwrap();
        check(&path, "Once upon a time");
    }
}
