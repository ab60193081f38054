//! Text ↔ token ids, built on Hugging Face `tokenizers` from a GGUF file's tokenizer metadata (or from a
//! `tokenizer.json`), so ids match transformers exactly.
//!
//! The official 2B-4T GGUF has no `tokenizer.ggml.pre`; bitnet.cpp then falls back to llama.cpp's `default`
//! pre-tokenizer, which is not how the model was trained. We use the Llama 3 regex whenever the vocabulary is
//! Llama 3's, and report that choice in [`Tokenizer::pre_tokenizer`].

use std::path::Path;

use bitnet_gguf::{Array, GgufFile, Value};
use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::models::bpe::{Vocab, BPE};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::pre_tokenizers::PreTokenizerWrapper;
use tokenizers::{AddedToken, SplitDelimiterBehavior};

/// The Llama 3 pre-tokenizer regex (llama.cpp's `llama-bpe`).
pub const LLAMA3_REGEX: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// Token types in `tokenizer.ggml.token_type` that are special (control and user-defined tokens).
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
}

/// A tokenizer plus the ids generation needs.
pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
    bos: Option<u32>,
    eos: Option<u32>,
    eot: Option<u32>,
    add_bos: bool,
    pre_tokenizer: String,
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
    /// Builds the tokenizer a GGUF file describes (`tokenizer.ggml.model = gpt2`: byte-level BPE).
    pub fn from_gguf(file: &GgufFile) -> Result<Self, TokenizerError> {
        let bad = |message: String| TokenizerError::Metadata {
            file: file.name().into(),
            message,
        };
        let model = file
            .opt_str("tokenizer.ggml.model")
            .map_err(|e| bad(e.kind.to_string()))?
            .ok_or_else(|| bad("no tokenizer.ggml.model".into()))?;
        if model != "gpt2" {
            return Err(bad(format!(
                "tokenizer model {model:?} is not supported yet (byte-level BPE \"gpt2\" is)"
            )));
        }
        let Some(Value::Array(Array::String(tokens))) = file.get("tokenizer.ggml.tokens") else {
            return Err(bad(
                "tokenizer.ggml.tokens is missing or not a string array".into(),
            ));
        };
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
        let types: Vec<i32> = match file.get("tokenizer.ggml.token_type") {
            Some(Value::Array(Array::I32(t))) if t.len() == tokens.len() => t.clone(),
            None => vec![1; tokens.len()],
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
        let pre = file
            .opt_str("tokenizer.ggml.pre")
            .map_err(|e| bad(e.kind.to_string()))?;
        let llama3 = tokens.iter().any(|t| t == "<|begin_of_text|>")
            && tokens.iter().any(|t| t == "<|eot_id|>");
        let (pre_name, reason) = match pre {
            Some(p) => (p.to_string(), format!("{p} (tokenizer.ggml.pre)")),
            None if llama3 => ("llama-bpe".into(), "llama-bpe (no tokenizer.ggml.pre; the vocabulary is Llama 3's, so the Llama 3 regex, as transformers tokenizes)".into()),
            None => ("default".into(), "default (no tokenizer.ggml.pre; GPT-2 regex)".into()),
        };
        let pre_tokenizer = pre_tokenizer(&pre_name).ok_or_else(|| bad(format!("pre-tokenizer {pre_name:?} is not supported (llama-bpe, llama3, default, gpt2, smollm are)")))?;
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
                    .ok_or_else(|| bad(format!("merge {m:?} has no space")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let bpe = BPE::builder()
            .vocab_and_merges(vocab, merges)
            .ignore_merges(pre_name != "default" && pre_name != "gpt2")
            .build()
            .map_err(lib)?;
        let mut inner = tokenizers::Tokenizer::new(bpe);
        inner.with_pre_tokenizer(Some(pre_tokenizer));
        inner.with_decoder(Some(ByteLevelDecoder::default()));
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
            add_bos: matches!(
                file.get("tokenizer.ggml.add_bos_token"),
                Some(Value::Bool(true)) | None
            ) && bos.is_some(),
            pre_tokenizer: reason,
        })
    }

    /// Loads a `tokenizer.json` (which then overrides a model file's own tokenizer); special ids come from its
    /// added tokens (`<|begin_of_text|>`, `<|end_of_text|>`, `<|eot_id|>` or `<s>`, `</s>`).
    pub fn from_file(path: &Path) -> Result<Self, TokenizerError> {
        let inner = tokenizers::Tokenizer::from_file(path)
            .map_err(|e| TokenizerError::Library(format!("{}: {e}", path.display())))?;
        let find = |names: &[&str]| names.iter().find_map(|n| inner.token_to_id(n));
        let bos = find(&["<|begin_of_text|>", "<s>"]);
        Ok(Self {
            bos,
            eos: find(&["<|end_of_text|>", "</s>"]),
            eot: find(&["<|eot_id|>", "<|im_end|>"]),
            add_bos: bos.is_some(),
            pre_tokenizer: format!("from {}", path.display()),
            inner,
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

    /// Number of ids.
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// Beginning-of-text id.
    pub fn bos_id(&self) -> Option<u32> {
        self.bos
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

/// The pre-tokenizer llama.cpp names `name`, as a `tokenizers` pipeline.
fn pre_tokenizer(name: &str) -> Option<PreTokenizerWrapper> {
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
        "default" | "gpt2" => byte_level(true),
        "smollm" => Sequence::new(vec![Digits::new(true).into(), byte_level(true)]).into(),
        _ => return None,
    })
}

/// GGUF tokenizer metadata (`tokenizer.ggml.*`) for a byte-level BPE `tokenizer.json`, as llama.cpp's converter
/// writes it: tokens by id (gaps filled with unused `[PAD<id>]` tokens), token types (3 = control for special added
/// tokens, 4 = user-defined for other added tokens), merges, and BOS/EOS from the usual special names.
pub fn gguf_tokenizer_metadata(
    tokenizer_json: &Path,
) -> Result<Vec<(String, Value)>, TokenizerError> {
    let bad = |message: String| TokenizerError::Metadata {
        file: tokenizer_json.display().to_string(),
        message,
    };
    let text = std::fs::read(tokenizer_json).map_err(|e| bad(e.to_string()))?;
    let j: serde_json::Value = serde_json::from_slice(&text).map_err(|e| bad(e.to_string()))?;
    if j["model"]["type"] != "BPE" {
        return Err(bad(format!("model type {} is not BPE", j["model"]["type"])));
    }
    let vocab = j["model"]["vocab"]
        .as_object()
        .ok_or_else(|| bad("model.vocab is not an object".into()))?;
    let mut entries: Vec<(u32, String, i32)> = Vec::with_capacity(vocab.len() + 256);
    for (token, id) in vocab {
        entries.push((
            id.as_u64().ok_or_else(|| bad(format!("id of {token:?}")))? as u32,
            token.clone(),
            1,
        ));
    }
    for added in j["added_tokens"].as_array().into_iter().flatten() {
        let id = added["id"]
            .as_u64()
            .ok_or_else(|| bad("added token without id".into()))? as u32;
        let kind = if added["special"].as_bool() == Some(true) {
            CONTROL
        } else {
            USER_DEFINED
        };
        entries.retain(|e| e.0 != id);
        entries.push((
            id,
            added["content"].as_str().unwrap_or_default().to_string(),
            kind,
        ));
    }
    let n = entries.iter().map(|e| e.0 as usize + 1).max().unwrap_or(0);
    if n > 4 * entries.len() + 1024 {
        return Err(bad(format!("ids run to {n} for {} tokens", entries.len())));
    }
    let (mut tokens, mut types): (Vec<String>, Vec<i32>) =
        ((0..n).map(|i| format!("[PAD{i}]")).collect(), vec![5; n]);
    for (id, token, kind) in entries {
        tokens[id as usize] = token;
        types[id as usize] = kind;
    }
    let merges = j["model"]["merges"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|m| match m {
            serde_json::Value::String(s) => Ok(s.clone()),
            serde_json::Value::Array(p) if p.len() == 2 => Ok(format!(
                "{} {}",
                p[0].as_str().unwrap_or_default(),
                p[1].as_str().unwrap_or_default()
            )),
            other => Err(bad(format!("merge {other}"))),
        })
        .collect::<Result<Vec<_>, _>>()?;
    let find = |names: &[&str]| {
        names
            .iter()
            .find_map(|name| tokens.iter().position(|t| t == name))
            .map(|i| Value::U32(i as u32))
    };
    let mut meta = vec![
        (
            "tokenizer.ggml.model".to_string(),
            Value::String("gpt2".into()),
        ),
        (
            "tokenizer.ggml.tokens".to_string(),
            Value::Array(Array::String(tokens.clone())),
        ),
        (
            "tokenizer.ggml.token_type".to_string(),
            Value::Array(Array::I32(types)),
        ),
        (
            "tokenizer.ggml.merges".to_string(),
            Value::Array(Array::String(merges)),
        ),
    ];
    meta.extend(
        find(&["<|begin_of_text|>", "<s>"]).map(|v| ("tokenizer.ggml.bos_token_id".to_string(), v)),
    );
    meta.extend(
        find(&["<|end_of_text|>", "</s>"]).map(|v| ("tokenizer.ggml.eos_token_id".to_string(), v)),
    );
    Ok(meta)
}
