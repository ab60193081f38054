//! A `tokenizer.json` as GGUF tokenizer metadata, for writing models whose tokenizer came from transformers.

use std::path::Path;

use bitnet_gguf::{Array, Value};

use super::{TokenizerError, CONTROL, USER_DEFINED};

/// GGUF tokenizer metadata (`tokenizer.ggml.*`) for a byte-level BPE `tokenizer.json`, as llama.cpp's converter
/// writes it: tokens by id (gaps filled with unused `[PAD<id>]` tokens), token types (3 = control for special added
/// tokens, 4 = user-defined for other added tokens), merges, BOS/EOS from the usual special names, the
/// pre-tokenizer's llama.cpp name when it is one we recognise, and whether the post-processor prepends BOS.
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
    if j["model"]["byte_fallback"] == true {
        return Err(TokenizerError::Unsupported(format!(
            "{}: a SentencePiece-style BPE (byte_fallback) cannot be written as GGUF metadata yet",
            tokenizer_json.display()
        )));
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
        pre_name(&j["pre_tokenizer"])
            .map(|name| ("tokenizer.ggml.pre".to_string(), Value::String(name.into()))),
    );
    meta.push((
        "tokenizer.ggml.add_bos_token".to_string(),
        Value::Bool(prepends_special(&j["post_processor"])),
    ));
    meta.extend(
        find(&["<|begin_of_text|>", "<s>"]).map(|v| ("tokenizer.ggml.bos_token_id".to_string(), v)),
    );
    meta.extend(
        find(&["<|end_of_text|>", "</s>"]).map(|v| ("tokenizer.ggml.eos_token_id".to_string(), v)),
    );
    Ok(meta)
}

/// llama.cpp's name for a `tokenizer.json` pre-tokenizer: the Llama 3 split then byte-level (`llama-bpe`), or GPT-2's
/// byte-level regex alone (`gpt-2`); `None` for anything else (llama.cpp then falls back to its default).
fn pre_name(pre: &serde_json::Value) -> Option<&'static str> {
    let byte_level = |p: &serde_json::Value, regex: bool| {
        p["type"] == "ByteLevel" && p["use_regex"].as_bool().unwrap_or(true) == regex
    };
    if byte_level(pre, true) {
        return Some("gpt-2");
    }
    match pre["pretokenizers"].as_array()?.as_slice() {
        [split, bl]
            if split["type"] == "Split"
                && split["pattern"]["Regex"] == super::LLAMA3_REGEX
                && byte_level(bl, false) =>
        {
            Some("llama-bpe")
        }
        _ => None,
    }
}

/// Whether a post-processor puts a special token before the text (a `TemplateProcessing` whose single-sequence
/// template starts with one, possibly inside a `Sequence`), as Llama 3's prepends `<|begin_of_text|>`.
pub(super) fn prepends_special(post: &serde_json::Value) -> bool {
    match post["type"].as_str() {
        Some("TemplateProcessing") => post["single"]
            .as_array()
            .and_then(|t| t.first())
            .is_some_and(|first| first.get("SpecialToken").is_some()),
        Some("Sequence") => post["processors"]
            .as_array()
            .is_some_and(|ps| ps.iter().any(prepends_special)),
        _ => false,
    }
}
