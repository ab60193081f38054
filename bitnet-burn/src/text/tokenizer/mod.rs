//! Text ↔ token ids, built on Hugging Face `tokenizers` from a GGUF file's tokenizer metadata (or from a
//! `tokenizer.json`), so ids match transformers exactly.
//!
//! The official 2B-4T GGUF has no `tokenizer.ggml.pre`; bitnet.cpp then falls back to llama.cpp's `default`
//! pre-tokenizer, which is not how the model was trained. We use the Llama 3 regex whenever the vocabulary is
//! Llama 3's, and report that choice in [`Tokenizer::pre_tokenizer`].

mod bpe;
mod pre;
mod sorted;
mod spm;
mod to_gguf;
mod train;

use std::path::Path;
use std::sync::{Arc, OnceLock};

use bitnet_gguf::{Array, GgufFile, Value};
use tokenizers::{AddedToken, DecoderWrapper};

pub use pre::LLAMA3_REGEX;
pub use sorted::SortedVocab;
pub use to_gguf::gguf_tokenizer_metadata;
pub use train::{train_byte_level_bpe, TRAINED_SPECIALS};

/// Token types in `tokenizer.ggml.token_type`: normal pieces, and the special ones (control and user-defined).
const NORMAL: i32 = 1;
const CONTROL: i32 = 3;
const USER_DEFINED: i32 = 4;

/// Why a tokenizer could not be built or used.
#[derive(Debug, thiserror::Error)]
pub enum TokenizerError {
    /// The file's tokenizer metadata is missing or inconsistent.
    #[error("{file}: tokenizer: {message}")]
    Metadata {
        /// The file.
        file: String,
        /// What is wrong.
        message: String,
    },
    /// The `tokenizers` library refused the vocabulary or the text.
    #[error("tokenizer: {0}")]
    Library(String),
    /// The vocabulary asks for something this build does not implement.
    #[error("tokenizer: {0}")]
    Unsupported(String),
    /// The model file could not be read.
    #[error(transparent)]
    File(#[from] bitnet_gguf::GgufError),
}

/// A tokenizer plus the ids generation needs.
pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
    bos: Option<u32>,
    eos: Option<u32>,
    eot: Option<u32>,
    add_bos: bool,
    pre_tokenizer: String,
    /// Built the first time a format constraint asks.
    sorted: OnceLock<Arc<SortedVocab>>,
}

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokenizer")
            .field("vocab", &self.vocab_size())
            .field("bos", &self.bos)
            .field("pre", &self.pre_tokenizer)
            .finish()
    }
}

fn lib(e: impl std::fmt::Display) -> TokenizerError {
    TokenizerError::Library(e.to_string())
}

impl Tokenizer {
    /// Builds the tokenizer a GGUF file describes: byte-level BPE (`tokenizer.ggml.model = gpt2`) or a
    /// SentencePiece vocabulary (`llama`).
    pub fn from_gguf(file: &GgufFile) -> Result<Self, TokenizerError> {
        let bad = |message: String| TokenizerError::Metadata {
            file: file.name().into(),
            message,
        };
        let model = file
            .opt_str("tokenizer.ggml.model")
            .map_err(|e| bad(e.kind.to_string()))?
            .ok_or_else(|| bad("no tokenizer.ggml.model".into()))?;
        let spm = match model {
            "gpt2" => false,
            "llama" => true,
            other => {
                return Err(bad(format!(
                    "tokenizer model {other:?} is not supported (byte-level BPE \"gpt2\" and SentencePiece \"llama\" are)"
                )))
            }
        };
        let Some(Value::Array(Array::String(tokens))) = file.get("tokenizer.ggml.tokens") else {
            return Err(bad(
                "tokenizer.ggml.tokens is missing or not a string array".into(),
            ));
        };
        let types: Vec<i32> = match file.get("tokenizer.ggml.token_type") {
            Some(Value::Array(Array::I32(t))) if t.len() == tokens.len() => t.clone(),
            None => vec![NORMAL; tokens.len()],
            Some(other) => {
                return Err(bad(format!(
                    "tokenizer.ggml.token_type is {} for {} tokens",
                    other.describe(),
                    tokens.len()
                )))
            }
        };
        let id = |k: &str| {
            file.get(k)
                .and_then(Value::as_u64)
                .map(|v| v as u32)
                .filter(|&v| (v as usize) < tokens.len())
        };
        let flag = |k: &str| match file.get(k) {
            Some(Value::Bool(b)) => Some(*b),
            _ => None,
        };
        let in_file = |e: TokenizerError| match e {
            TokenizerError::Unsupported(message) => bad(message),
            other => other,
        };
        let (mut inner, pre_tokenizer) = if !spm {
            let merges = match file.get("tokenizer.ggml.merges") {
                Some(Value::Array(Array::String(m))) => m.as_slice(),
                None => &[],
                Some(other) => {
                    return Err(bad(format!(
                        "tokenizer.ggml.merges is {}",
                        other.describe()
                    )))
                }
            };
            let pre = file
                .opt_str("tokenizer.ggml.pre")
                .map_err(|e| bad(e.kind.to_string()))?;
            let llama3 = tokens.iter().any(|t| t == "<|begin_of_text|>")
                && tokens.iter().any(|t| t == "<|eot_id|>");
            let (name, reason) = match pre {
                    Some(p) => (p.to_string(), format!("{p} (tokenizer.ggml.pre)")),
                    None if llama3 => ("llama-bpe".into(), "llama-bpe (no tokenizer.ggml.pre; the vocabulary is Llama 3's, so the Llama 3 regex, as transformers tokenizes)".into()),
                    None => ("default".into(), "default (no tokenizer.ggml.pre; GPT-2 regex)".into()),
                };
            (bpe::build(tokens, merges, &name).map_err(in_file)?, reason)
        } else {
            let scores = match file.get("tokenizer.ggml.scores") {
                    Some(Value::Array(Array::F32(s))) if s.len() == tokens.len() => s.as_slice(),
                    other => {
                        return Err(bad(format!(
                            "tokenizer.ggml.scores is {} for {} tokens (a SentencePiece vocabulary needs one score per token)",
                            other.map_or("missing".into(), Value::describe),
                            tokens.len()
                        )))
                    }
                };
            let add_space_prefix = flag("tokenizer.ggml.add_space_prefix").unwrap_or(true);
            let vocab = spm::SpmVocab {
                tokens,
                scores,
                types: &types,
                unk: id("tokenizer.ggml.unknown_token_id"),
                add_space_prefix,
            };
            let reason = format!(
                "SentencePiece (scores, byte fallback{})",
                if add_space_prefix {
                    ", space prefix"
                } else {
                    ""
                }
            );
            (spm::build(&vocab).map_err(in_file)?, reason)
        };
        let specials: Vec<AddedToken> = tokens
            .iter()
            .zip(&types)
            .filter(|(_, &t)| t == CONTROL || t == USER_DEFINED)
            .map(|(s, _)| AddedToken::from(s.clone(), true))
            .collect();
        inner.add_special_tokens(&specials);
        let bos = id("tokenizer.ggml.bos_token_id");
        let eot = tokens
            .iter()
            .position(|t| t == "<|eot_id|>" || t == "<|im_end|>")
            .map(|p| p as u32)
            .or_else(|| id("tokenizer.ggml.eot_token_id"));
        Ok(Self {
            inner,
            bos,
            eos: id("tokenizer.ggml.eos_token_id"),
            eot,
            add_bos: flag("tokenizer.ggml.add_bos_token").unwrap_or(true) && bos.is_some(),
            pre_tokenizer,
            sorted: OnceLock::new(),
        })
    }

    /// The tokenizer a model describes: a GGUF file's metadata, or a transformers checkpoint directory's
    /// `tokenizer.json`.
    pub fn for_model(path: &Path) -> Result<Self, TokenizerError> {
        match path.is_dir() {
            true => Self::from_file(&path.join("tokenizer.json")),
            false => Self::from_gguf(&GgufFile::open(path)?),
        }
    }

    /// Loads a `tokenizer.json` (which then overrides a model file's own tokenizer); special ids come from its
    /// added tokens (`<|begin_of_text|>`, `<|end_of_text|>`, `<|eot_id|>` or `<s>`, `</s>`), and BOS is added
    /// where its post-processor puts it before the text, as transformers does.
    pub fn from_file(path: &Path) -> Result<Self, TokenizerError> {
        let inner = tokenizers::Tokenizer::from_file(path)
            .map_err(|e| TokenizerError::Library(format!("{}: {e}", path.display())))?;
        let find = |names: &[&str]| names.iter().find_map(|n| inner.token_to_id(n));
        let bos = find(&["<|begin_of_text|>", "<s>"]);
        Ok(Self {
            bos,
            eos: find(&["<|end_of_text|>", "</s>"]),
            eot: find(&["<|eot_id|>", "<|im_end|>"]),
            add_bos: bos.is_some()
                && serde_json::to_value(inner.get_post_processor())
                    .is_ok_and(|post| to_gguf::prepends_special(&post)),
            pre_tokenizer: format!("from {}", path.display()),
            inner,
            sorted: OnceLock::new(),
        })
    }

    /// Token ids of `text`; special tokens written in the text (`<|eot_id|>`) become their ids. With `bos`,
    /// the BOS id is prepended when the model wants one.
    pub fn encode(&self, text: &str, bos: bool) -> Result<Vec<u32>, TokenizerError> {
        let enc = self.inner.encode(text, false).map_err(lib)?;
        let mut ids = Vec::with_capacity(enc.len() + 1);
        if bos && self.add_bos {
            ids.extend(self.bos);
        }
        ids.extend_from_slice(enc.get_ids());
        Ok(ids)
    }

    /// Text of `ids`, special tokens included (invalid UTF-8 sequences become U+FFFD).
    pub fn decode(&self, ids: &[u32]) -> Result<String, TokenizerError> {
        self.inner.decode(ids, false).map_err(lib)
    }

    /// The bytes token `id` stands for, as OpenAI's `logprobs` report them (`bytes`): a byte-level BPE piece's
    /// bytes, a SentencePiece piece with `▁` as a space (or a byte-fallback piece's one byte), an added token's
    /// text. A piece can hold part of a UTF-8 character, which its decoded text cannot show.
    pub fn token_bytes(&self, id: u32) -> Option<Vec<u8>> {
        let piece = self.token(id)?;
        if self
            .inner
            .get_added_vocabulary()
            .get_added_tokens_decoder()
            .contains_key(&id)
        {
            return Some(piece.into_bytes());
        }
        if matches!(self.inner.get_decoder(), Some(DecoderWrapper::ByteLevel(_))) {
            return piece.chars().map(byte_level_byte).collect();
        }
        match self.byte_piece(id) {
            Some(b) => Some(vec![b]),
            None => Some(piece.replace(spm::SPACE, " ").into_bytes()),
        }
    }

    /// Whether `id` is a special token (control tokens such as `<|eot_id|>`, and the file's user-defined ones),
    /// which text never spells.
    pub fn is_special(&self, id: u32) -> bool {
        (self.inner.get_added_vocabulary().get_added_tokens_decoder())
            .get(&id)
            .is_some_and(|t| t.special)
    }

    /// Every ordinary token's bytes in byte order (sorted once, on first use), for constrained decoding.
    pub fn sorted_vocab(&self) -> Arc<SortedVocab> {
        self.sorted
            .get_or_init(|| Arc::new(SortedVocab::new(self)))
            .clone()
    }

    /// Whether `id` is a SentencePiece byte-fallback piece (`<0xXX>`): a run of them decodes as one UTF-8 sequence
    /// (all U+FFFD when invalid), so its text is known only when the run ends.
    pub fn is_byte_piece(&self, id: u32) -> bool {
        self.byte_piece(id).is_some()
    }

    /// The byte of a SentencePiece byte-fallback piece (`<0xXX>`).
    fn byte_piece(&self, id: u32) -> Option<u8> {
        let t = self.token(id)?;
        let hex = t.strip_prefix("<0x")?.strip_suffix('>')?;
        (hex.len() == 2).then(|| u8::from_str_radix(hex, 16).ok())?
    }

    /// Number of ids.
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// The vocabulary entry of `id` (special tokens by their text, e.g. `<|eot_id|>`).
    pub fn token(&self, id: u32) -> Option<String> {
        self.inner.id_to_token(id)
    }

    /// Beginning-of-text id.
    pub fn bos_id(&self) -> Option<u32> {
        self.bos
    }

    /// Whether encoding with `bos` prepends BOS (the file's `tokenizer.ggml.add_bos_token`, or a tokenizer.json
    /// that has a BOS token).
    pub fn adds_bos(&self) -> bool {
        self.add_bos && self.bos.is_some()
    }

    /// Ids that end generation (end of text, end of turn).
    pub fn stop_ids(&self) -> Vec<u32> {
        self.eos.into_iter().chain(self.eot).collect()
    }

    /// Which pre-tokenizer is used, and why.
    pub fn pre_tokenizer(&self) -> &str {
        &self.pre_tokenizer
    }
}

/// The byte a byte-level BPE vocabulary writes as `c` (GPT-2's table: printable Latin-1 bytes as themselves,
/// the other 68 as U+0100 onwards in byte order).
fn byte_level_byte(c: char) -> Option<u8> {
    let printable = |b: &u32| matches!(b, 33..=126 | 161..=172 | 174..=255);
    match c as u32 {
        c if c < 256 => printable(&c).then_some(c as u8),
        c => (0..256u32)
            .filter(|b| !printable(b))
            .nth(c as usize - 256)
            .map(|b| b as u8),
    }
}
