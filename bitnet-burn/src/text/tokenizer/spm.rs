//! SentencePiece-style `llama` vocabularies (bitnet_b1_58-large, 3B, Llama 2): tokens with scores and byte
//! fallback, rebuilt as the BPE that transformers' `LlamaTokenizerFast` runs.
//!
//! A SentencePiece BPE model merges, at each step, the adjacent pair whose concatenation is the vocabulary piece
//! with the highest score. The equivalent merge list ranks every split `(a, b)` of each normal piece by that piece's
//! score, which is how transformers converts a `tokenizer.model` too.

use tokenizers::decoders::byte_fallback::ByteFallback;
use tokenizers::decoders::fuse::Fuse;
use tokenizers::decoders::sequence::Sequence as DecoderSequence;
use tokenizers::decoders::strip::Strip;
use tokenizers::decoders::DecoderWrapper;
use tokenizers::models::bpe::{Vocab, BPE};
use tokenizers::normalizers::{Prepend, Replace, Sequence as NormalizerSequence};

use super::{lib, TokenizerError, NORMAL};

/// SentencePiece's word-boundary mark, which stands for a space.
pub(super) const SPACE: &str = "\u{2581}";

/// The vocabulary of a `tokenizer.ggml.model = llama` file.
pub struct SpmVocab<'a> {
    /// Pieces by id.
    pub tokens: &'a [String],
    /// Piece scores (higher merges first).
    pub scores: &'a [f32],
    /// Piece types (`tokenizer.ggml.token_type`).
    pub types: &'a [i32],
    /// The unknown piece.
    pub unk: Option<u32>,
    /// Whether a space is put before the text (`tokenizer.ggml.add_space_prefix`, true unless stated).
    pub add_space_prefix: bool,
}

/// Builds the `tokenizers` pipeline for a SentencePiece vocabulary.
pub fn build(v: &SpmVocab) -> Result<tokenizers::Tokenizer, TokenizerError> {
    let vocab: Vocab = v
        .tokens
        .iter()
        .enumerate()
        .rev()
        .map(|(i, t)| (t.clone(), i as u32))
        .collect();
    let mut ranked: Vec<(f32, u32, String, String)> = Vec::new();
    for (id, piece) in v.tokens.iter().enumerate() {
        if v.types[id] != NORMAL {
            continue;
        }
        for (at, _) in piece.char_indices().skip(1) {
            let (a, b) = piece.split_at(at);
            if vocab.contains_key(a) && vocab.contains_key(b) {
                ranked.push((v.scores[id], id as u32, a.to_string(), b.to_string()));
            }
        }
    }
    ranked.sort_by(|x, y| y.0.total_cmp(&x.0).then(x.1.cmp(&y.1)));
    let merges = ranked.into_iter().map(|(_, _, a, b)| (a, b)).collect();
    let mut bpe = BPE::builder()
        .vocab_and_merges(vocab, merges)
        .byte_fallback(true)
        .fuse_unk(true);
    if let Some(unk) = v.unk {
        bpe = bpe.unk_token(v.tokens[unk as usize].clone());
    }
    let mut inner = tokenizers::Tokenizer::new(bpe.build().map_err(lib)?);
    let replace = Replace::new(" ", SPACE).map_err(lib)?;
    let unreplace = Replace::new(SPACE, " ").map_err(lib)?;
    let mut decoders = vec![
        DecoderWrapper::Replace(unreplace),
        ByteFallback::new().into(),
        Fuse::new().into(),
    ];
    if v.add_space_prefix {
        inner.with_normalizer(Some(NormalizerSequence::new(vec![
            Prepend::new(SPACE.into()).into(),
            replace.into(),
        ])));
        decoders.push(Strip::new(' ', 1, 0).into());
    } else {
        inner.with_normalizer(Some(replace));
    }
    inner.with_decoder(Some(DecoderSequence::new(decoders)));
    Ok(inner)
}
