//! Tokenization of llama.cpp's vocabulary test files (`models/ggml-vocab-*.gguf` with `.inp` texts and `.out` ids,
//! the ids written by transformers' `encode(text, add_special_tokens=False)`): SentencePiece (Llama 2, Phi-3) and
//! byte-level BPE (Llama 3, GPT-2) vocabularies, each from a GGUF that holds only tokenizer metadata.

use crate::common::llamacpp_models_or_skip;
use bitnet_burn::text::tokenizer::Tokenizer;
use bitnet_gguf::GgufFile;

/// The (text, ids) cases of `ggml-vocab-NAME.gguf.inp/.out`, split as llama.cpp's test-tokenizer-0 does.
fn cases(dir: &std::path::Path, name: &str) -> Vec<(String, Vec<u32>)> {
    let inp = std::fs::read_to_string(dir.join(format!("ggml-vocab-{name}.gguf.inp"))).unwrap();
    let out = std::fs::read_to_string(dir.join(format!("ggml-vocab-{name}.gguf.out"))).unwrap();
    let texts: Vec<&str> = inp
        .strip_suffix("\n__ggml_vocab_test__\n")
        .unwrap_or(&inp)
        .split("\n__ggml_vocab_test__\n")
        .collect();
    let ids: Vec<Vec<u32>> = out
        .lines()
        .map(|l| l.split_whitespace().map(|t| t.parse().unwrap()).collect())
        .collect();
    assert_eq!(texts.len(), ids.len(), "{name}: .inp and .out disagree");
    assert!(texts.len() > 30, "{name}: {} cases", texts.len());
    texts.into_iter().map(String::from).zip(ids).collect()
}

fn check_vocab(name: &str, expect_pre: &str) {
    let Some(dir) = llamacpp_models_or_skip(&format!("llamacpp_vocab_{name}")) else {
        return;
    };
    let file = GgufFile::open(dir.join(format!("ggml-vocab-{name}.gguf"))).unwrap();
    assert_eq!(file.tensors().len(), 0, "a tokenizer-only file");
    let tok = Tokenizer::from_gguf(&file).unwrap();
    assert!(
        tok.pre_tokenizer().contains(expect_pre),
        "{name}: {}",
        tok.pre_tokenizer()
    );
    let mut wrong = Vec::new();
    for (text, ids) in cases(&dir, name) {
        let got = tok.encode(&text, false).unwrap();
        if got != ids {
            wrong.push(format!("{text:?}: expected {ids:?}, got {got:?}"));
        } else if tok.decode(&ids).unwrap() != text {
            wrong.push(format!(
                "{text:?}: decodes to {:?}",
                tok.decode(&ids).unwrap()
            ));
        } else if !pieces_spell(&tok, &ids, &text, expect_pre == "SentencePiece") {
            wrong.push(format!("{text:?}: the pieces' bytes do not spell it"));
        }
    }
    assert!(wrong.is_empty(), "{name}:\n{}", wrong.join("\n"));
}

/// Whether the ids' [`Tokenizer::token_bytes`] laid end to end are the text's bytes (what a client joining
/// OpenAI `logprobs` bytes gets); a SentencePiece vocabulary's first piece carries the space it prefixes, as
/// llama.cpp's pieces do.
fn pieces_spell(tok: &Tokenizer, ids: &[u32], text: &str, space_prefix: bool) -> bool {
    let bytes: Vec<u8> = ids
        .iter()
        .flat_map(|&id| tok.token_bytes(id).unwrap())
        .collect();
    bytes == text.as_bytes() || (space_prefix && bytes.strip_prefix(b" ") == Some(text.as_bytes()))
}

#[test]
fn llama2_sentencepiece_vocabulary() {
    check_vocab("llama-spm", "SentencePiece");
}

#[test]
fn phi3_sentencepiece_vocabulary() {
    check_vocab("phi-3", "SentencePiece");
}

#[test]
fn llama3_bpe_vocabulary() {
    check_vocab("llama-bpe", "llama-bpe");
}

#[test]
fn gpt2_bpe_vocabulary() {
    check_vocab("gpt-2", "gpt-2");
}
