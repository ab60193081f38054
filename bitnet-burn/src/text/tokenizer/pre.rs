//! Byte-level BPE pre-tokenizers by llama.cpp's `tokenizer.ggml.pre` names.

use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::pre_tokenizers::PreTokenizerWrapper;
use tokenizers::SplitDelimiterBehavior;

/// The Llama 3 pre-tokenizer regex (llama.cpp's `llama-bpe`).
pub const LLAMA3_REGEX: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// Names accepted for `tokenizer.ggml.pre`.
pub const SUPPORTED: &str = "llama-bpe, llama3, llama-v3, falcon3, default, gpt2, gpt-2, smollm";

/// The pre-tokenizer llama.cpp names `name`, as a `tokenizers` pipeline.
pub fn pre_tokenizer(name: &str) -> Option<PreTokenizerWrapper> {
    let byte_level = |use_regex| PreTokenizerWrapper::from(ByteLevel::new(false, true, use_regex));
    Some(match name {
        "llama-bpe" | "llama3" | "llama-v3" | "falcon3" => {
            let split = Split::new(
                SplitPattern::Regex(LLAMA3_REGEX.into()),
                SplitDelimiterBehavior::Isolated,
                false,
            )
            .ok()?;
            Sequence::new(vec![split.into(), byte_level(false)]).into()
        }
        "default" | "gpt2" | "gpt-2" => byte_level(true),
        "smollm" => Sequence::new(vec![Digits::new(true).into(), byte_level(true)]).into(),
        _ => return None,
    })
}

/// Whether a pre-tokenizer splits so that BPE may look a whole pre-token up before merging (`ignore_merges`), as
/// transformers' Llama 3 style tokenizers do.
pub fn ignores_merges(name: &str) -> bool {
    !matches!(name, "default" | "gpt2" | "gpt-2")
}
