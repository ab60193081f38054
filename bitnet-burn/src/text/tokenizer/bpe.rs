//! Byte-level BPE vocabularies (`tokenizer.ggml.model = gpt2`): Llama 3, GPT-2, SmolLM, Falcon 3.

use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::models::bpe::{Vocab, BPE};

use super::pre::{ignores_merges, pre_tokenizer, SUPPORTED};
use super::{lib, TokenizerError};

/// Builds the `tokenizers` pipeline for byte-level BPE with llama.cpp's pre-tokenizer `pre`.
pub fn build(
    tokens: &[String],
    merges: &[String],
    pre: &str,
) -> Result<tokenizers::Tokenizer, TokenizerError> {
    let pre_tokenizer = pre_tokenizer(pre).ok_or_else(|| {
        TokenizerError::Unsupported(format!(
            "pre-tokenizer {pre:?} is not supported ({SUPPORTED} are)"
        ))
    })?;
    let vocab: Vocab = tokens
        .iter()
        .enumerate()
        .rev()
        .map(|(i, t)| (t.clone(), i as u32))
        .collect();
    let merges = merges
        .iter()
        .map(|m| {
            m.split_once(' ')
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .ok_or_else(|| TokenizerError::Unsupported(format!("merge {m:?} has no space")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let bpe = BPE::builder()
        .vocab_and_merges(vocab, merges)
        .ignore_merges(ignores_merges(pre))
        .build()
        .map_err(lib)?;
    let mut inner = tokenizers::Tokenizer::new(bpe);
    inner.with_pre_tokenizer(Some(pre_tokenizer));
    inner.with_decoder(Some(ByteLevelDecoder::default()));
    Ok(inner)
}
