//! Training a byte-level BPE vocabulary on a corpus, shaped like Llama 3's (its pre-tokenizer split, whole-word
//! lookup before merges, `<|begin_of_text|>` / `<|end_of_text|>`), so GGUF export names it `llama-bpe` and
//! llama.cpp tokenizes it the same way.

use std::path::Path;

use tokenizers::models::bpe::{BpeTrainerBuilder, BPE};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::{AddedToken, DecoderWrapper, TokenizerBuilder};

use super::{pre, Tokenizer, TokenizerError};

/// The special tokens a trained vocabulary starts with (BOS, EOS).
pub const TRAINED_SPECIALS: [&str; 2] = ["<|begin_of_text|>", "<|end_of_text|>"];

/// Trains a `vocab_size` byte-level BPE on `texts`, writes it to `json` (a transformers `tokenizer.json`) and
/// returns it loaded.
pub fn train_byte_level_bpe(
    texts: &[&str],
    vocab_size: usize,
    json: &Path,
) -> Result<Tokenizer, TokenizerError> {
    let lib = |e: tokenizers::Error| TokenizerError::Library(e.to_string());
    let model = BPE::builder().ignore_merges(true).build().map_err(lib)?;
    let mut trainer = BpeTrainerBuilder::new()
        .vocab_size(vocab_size)
        .min_frequency(2)
        .show_progress(false)
        .initial_alphabet(ByteLevel::alphabet().into_iter().collect())
        .special_tokens(
            TRAINED_SPECIALS
                .iter()
                .map(|s| AddedToken::from(*s, true))
                .collect(),
        )
        .build();
    let mut tok = TokenizerBuilder::new()
        .with_model(model)
        .with_normalizer(None::<tokenizers::NormalizerWrapper>)
        .with_pre_tokenizer(pre::pre_tokenizer("llama-bpe"))
        .with_post_processor(None::<tokenizers::PostProcessorWrapper>)
        .with_decoder(Some(DecoderWrapper::from(ByteLevel::default())))
        .build()
        .map_err(lib)?;
    tok.train(&mut trainer, texts.iter()).map_err(lib)?;
    tok.save(json, false).map_err(lib)?;
    Tokenizer::from_file(json)
}
