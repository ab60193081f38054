//! JSON mode (OpenAI's `response_format: {"type": "json_object"}`) and JSON schemas: the vocabulary-wide check on
//! real vocabularies (llama.cpp's Llama 3 byte-level BPE and Llama 2 SentencePiece files, and the shipped model's)
//! agrees with checking each token alone, and the shipped model, which writes play-shaped text, writes objects
//! that serde_json reads, greedy and sampled. The server's path is tested through the `openai` client (serve.rs).

use bitnet_burn::text::format::{
    FormatConstraint, Free, JsonObject, OutputFormat, Readings, Schema, Shape, Shaped,
};
use bitnet_burn::text::generate::{generate_ids, GenerateOptions, StopReason};
use bitnet_burn::text::sampling::SamplerConfig;
use bitnet_burn::text::tokenizer::Tokenizer;
use bitnet_gguf::GgufFile;

use crate::common::{llamacpp_models_or_skip, repo_dir};

/// An object with every kind of value, escapes and multi-byte characters, cut at many places below.
const OBJECT: &str = r#"{"name": "Zoë \"Z\" 中文 😀\n", "n": [1, -2.5e+3, 0.25, true, false, null, {}], "o": {"k": [[]], "u": "\u00e9\ud83d\ude00"}}"#;

fn shipped() -> std::path::PathBuf {
    repo_dir().join("models/shakespeare-bitnet-tq2_0.gguf")
}

/// A schema [`OBJECT`] follows: the mask under it keeps fewer tokens than JSON mode's (only its keys, in order);
/// `o` is read two ways (a union of objects) until its second key.
fn object_schema() -> Schema {
    Schema::compile(&serde_json::json!({"type": "object", "properties": {
        "name": {"type": "string", "maxLength": 20},
        "n": {"type": "array", "items": {"anyOf": [{"type": "number"}, {"enum": [true, false]}, {}]}, "maxItems": 7},
        "o": {"anyOf": [
            {"type": "object", "properties": {"k": {"type": "array"}, "x": {"type": "integer"}}, "required": ["k", "x"]},
            {"type": "object", "properties": {"k": {"type": "array"}, "u": {"type": "string"}}, "required": ["k", "u"]}]}},
        "required": ["name", "n", "o"]}))
    .unwrap()
}

/// For prefixes of [`OBJECT`], fed token by token: the mask keeps exactly the tokens whose bytes continue it, in
/// JSON mode and under [`object_schema`].
fn mask_matches_each_token_alone(name: &str, tok: &Tokenizer) {
    let schema = std::sync::Arc::new(object_schema());
    check_mask::<Free>(name, tok, &OutputFormat::JsonObject, &());
    check_mask::<Shaped>(
        name,
        tok,
        &OutputFormat::JsonSchema(schema.clone()),
        &schema,
    );
}

fn check_mask<S: Shape>(name: &str, tok: &Tokenizer, format: &OutputFormat, rules: &S::Rules) {
    let vocab = tok.vocab_size();
    // every 7th byte, and each byte where `o` is read two ways (through its second key)
    let union = OBJECT.find(r#""o": "#).unwrap()..OBJECT.find(r#""u""#).unwrap() + 3;
    let cuts = (0..=OBJECT.len())
        .filter(|&i| OBJECT.is_char_boundary(i))
        .filter(|i| i % 7 == 0 || union.contains(i));
    for cut in cuts {
        let ids = tok.encode(&OBJECT[..cut], false).unwrap();
        let mut constraint = FormatConstraint::new(format, tok).unwrap();
        let mut state = Readings::<S>::default();
        for &id in &ids {
            assert!(constraint.allows(id), "{name}: {:?} refused", tok.token(id));
            constraint.accept(id);
            for b in tok.token_bytes(id).unwrap() {
                assert!(state.push_with(rules, b));
            }
        }
        let mut logits = vec![0.0f32; vocab];
        let any = constraint.mask(&mut logits);
        let mut kept = 0;
        for id in 0..vocab as u32 {
            let mut s = state.clone();
            let fits = !tok.is_special(id)
                && tok
                    .token_bytes(id)
                    .is_some_and(|b| !b.is_empty() && b.iter().all(|&b| s.push_with(rules, b)));
            assert_eq!(
                logits[id as usize] == 0.0,
                fits,
                "{name}: after {:?}, token {id} {:?}",
                &OBJECT[..cut],
                tok.token(id)
            );
            assert_eq!(constraint.allows(id), fits, "{name}: allows({id})");
            kept += usize::from(fits);
        }
        assert!(
            any && kept > 0 && kept < vocab,
            "{name}: {kept} of {vocab} kept"
        );
    }
}

#[test]
fn the_vocabulary_mask_keeps_exactly_the_tokens_that_continue_the_object() {
    let tok = Tokenizer::from_gguf(&GgufFile::open(shipped()).unwrap()).unwrap();
    mask_matches_each_token_alone("shipped", &tok);
    let Some(dir) = llamacpp_models_or_skip("json_mode_vocabularies") else {
        return;
    };
    for name in ["llama-bpe", "llama-spm"] {
        let file = GgufFile::open(dir.join(format!("ggml-vocab-{name}.gguf"))).unwrap();
        mask_matches_each_token_alone(name, &Tokenizer::from_gguf(&file).unwrap());
    }
}

#[test]
fn the_shipped_model_writes_json_objects_in_json_mode() {
    let tok = Tokenizer::from_gguf(&GgufFile::open(shipped()).unwrap()).unwrap();
    let model =
        bitnet_burn::load::<burn::backend::NdArray>(&shipped(), &Default::default()).unwrap();
    // Trained on plays, the model never ends a string on its own: the quote and the brace are lifted.
    let lift: Vec<(u32, f32)> = ["\"", "}"]
        .iter()
        .map(|s| (tok.encode(s, false).unwrap()[0], 4.0))
        .collect();
    let run = |format, temperature, seed| {
        let opts = GenerateOptions {
            max_new_tokens: 200,
            sampler: SamplerConfig {
                temperature,
                top_k: 40,
                seed,
                format,
                logit_bias: lift.clone(),
                ..Default::default()
            },
            ..Default::default()
        };
        let prompt = tok.encode("ROMEO:", true).unwrap();
        let mut cache = model.new_cache(1, 512);
        generate_ids(&model, &tok, &mut cache, prompt, &opts, |_| {}).unwrap()
    };
    // what makes the test mean something: left free, this model writes verse, not JSON
    let free = run(OutputFormat::Text, 0.0, 0);
    assert!(serde_json::from_str::<serde_json::Value>(&free.text).is_err());
    let mut closed = 0;
    let runs = [
        (0.0, 0),
        (0.8, 1),
        (0.8, 2),
        (0.8, 3),
        (1.2, 4),
        (1.2, 5),
        (1.2, 6),
        (1.2, 7),
    ];
    for (temperature, seed) in runs {
        let g = run(OutputFormat::JsonObject, temperature, seed);
        match g.stop {
            StopReason::FormatComplete => {
                let value: serde_json::Value =
                    serde_json::from_str(&g.text).unwrap_or_else(|e| panic!("{e}: {:?}", g.text));
                assert!(value.is_object(), "{:?}", g.text);
                closed += 1;
            }
            // cut at the length limit: still the start of an object
            StopReason::MaxTokens => {
                let mut state = JsonObject::default();
                assert!(g.text.bytes().all(|b| state.push(b)), "{:?}", g.text);
            }
            other => panic!("{other:?}: {:?}", g.text),
        }
    }
    assert!(
        closed >= 2,
        "{closed} of 8 objects closed within 200 tokens"
    );
}

/// Random walks through the shipped vocabulary under string `format`s and `pattern`s: at every step some token
/// continues the text (a pattern string never reaches a state no token can leave, e.g. an escape's `\` where no
/// escaped character fits), and every walk that ends is an object the schema's own check accepts.
#[test]
fn patterns_and_formats_never_leave_the_vocabulary_without_a_token() {
    let tok = Tokenizer::from_gguf(&GgufFile::open(shipped()).unwrap()).unwrap();
    let vocab = tok.vocab_size();
    let strings = [
        serde_json::json!({"format": "date-time"}),
        serde_json::json!({"format": "time"}),
        serde_json::json!({"format": "duration"}),
        serde_json::json!({"format": "uuid"}),
        serde_json::json!({"format": "ipv4"}),
        serde_json::json!({"format": "ipv6"}),
        serde_json::json!({"format": "hostname"}),
        serde_json::json!({"format": "email"}),
        serde_json::json!({"format": "uri"}),
        serde_json::json!({"pattern": "^[0-9]{3}-[a-z]+$"}),
    ];
    for string in strings {
        let mut string = string;
        string["type"] = "string".into();
        let schema =
            serde_json::json!({"type": "object", "properties": {"v": string}, "required": ["v"]});
        let rules = Schema::compile(&schema).unwrap();
        let format = OutputFormat::json_schema(&schema).unwrap();
        let mut rng = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            (rng >> 40) as f32
        };
        for walk in 0..40 {
            let mut constraint = FormatConstraint::new(&format, &tok).unwrap();
            let mut ids = Vec::new();
            while ids.len() < 300 && !constraint.is_complete() {
                let mut logits: Vec<f32> = (0..vocab).map(|_| next()).collect();
                let text = tok.decode(&ids).unwrap();
                assert!(
                    constraint.mask(&mut logits),
                    "{schema}, walk {walk}: no token continues {text:?}"
                );
                let best = (0..vocab)
                    .max_by(|&a, &b| logits[a].total_cmp(&logits[b]))
                    .unwrap();
                assert!(constraint.accept(best as u32));
                ids.push(best as u32);
            }
            if constraint.is_complete() {
                let text = tok.decode(&ids).unwrap();
                let mut state = Readings::<Shaped>::default();
                assert!(
                    text.bytes().all(|b| state.push_with(&rules, b)) && state.is_complete(),
                    "{text}"
                );
            }
        }
    }
}
