//! Holding generated text to a format (OpenAI's `response_format`): in JSON mode only tokens that keep the text
//! the start of a JSON object may be sampled, and generation ends when the object closes.
//!
//! The check is lazy, as llama.cpp's grammar sampler: the sampler's choice is tried first, and only when it
//! does not fit are all tokens checked and the misfits' logits set to -inf before choosing again. That picks
//! each fitting token with its probability among the fitting ones, and mostly costs one token's bytes.

mod json;

use std::sync::Arc;

pub use json::JsonObject;

use crate::text::tokenizer::{SortedVocab, Tokenizer};

/// What the generated text must be.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum OutputFormat {
    /// Any text.
    #[default]
    Text,
    /// One JSON object (OpenAI's JSON mode, `{"type": "json_object"}`); nothing after it.
    JsonObject,
}

impl OutputFormat {
    /// JSON mode when `json_object` (a command-line flag, a Python keyword), else free text.
    pub fn json_object_if(json_object: bool) -> Self {
        match json_object {
            true => Self::JsonObject,
            false => Self::Text,
        }
    }
}

/// Which tokens may come next under an [`OutputFormat`] other than text.
#[derive(Debug)]
pub struct FormatConstraint {
    vocab: Arc<SortedVocab>,
    state: JsonObject,
    /// The state after each byte of the token being checked, kept between calls.
    states: Vec<JsonObject>,
    /// The tokens that fit, kept between calls.
    fitting: Vec<(u32, f32)>,
}

impl FormatConstraint {
    /// A constraint for `format` over `tokenizer`'s vocabulary, or `None` for free text.
    pub fn new(format: OutputFormat, tokenizer: &Tokenizer) -> Option<Self> {
        match format {
            OutputFormat::Text => None,
            OutputFormat::JsonObject => Some(Self {
                vocab: tokenizer.sorted_vocab(),
                state: JsonObject::default(),
                states: Vec::new(),
                fitting: Vec::new(),
            }),
        }
    }

    /// Whether token `id` may come next (never a special token, so never an end-of-text one).
    pub fn allows(&self, id: u32) -> bool {
        self.after(id).is_some()
    }

    /// Moves past token `id` if it may come next; whether it may (if not, nothing moves).
    pub fn accept(&mut self, id: u32) -> bool {
        self.after(id).map(|state| self.state = state).is_some()
    }

    /// The state after token `id`, if it may come next.
    fn after(&self, id: u32) -> Option<JsonObject> {
        let mut state = self.state;
        let bytes = self.vocab.bytes(id)?;
        bytes.iter().all(|&b| state.push(b)).then_some(state)
    }

    /// Sets the logit of every token that may not come next to -inf; false when none may.
    pub fn mask(&mut self, logits: &mut [f32]) -> bool {
        self.fitting.clear();
        // states[d]: after the first d bytes of the token before, which all fitted
        self.states.clear();
        self.states.push(self.state);
        for i in 0..self.vocab.len() {
            let (id, bytes, shared) = self.vocab.entry(i);
            if shared >= self.states.len() {
                continue; // it starts with the bytes that did not fit in the token before
            }
            self.states.truncate(shared + 1);
            let mut state = self.states[shared];
            let fits = bytes[shared..].iter().all(|&b| {
                let ok = state.push(b);
                if ok {
                    self.states.push(state);
                }
                ok
            });
            if let Some(&logit) = logits.get(id as usize).filter(|_| fits) {
                self.fitting.push((id, logit));
            }
        }
        logits.fill(f32::NEG_INFINITY);
        for &(id, logit) in &self.fitting {
            logits[id as usize] = logit;
        }
        !self.fitting.is_empty()
    }

    /// Whether the text is whole (the JSON object closed): generation ends here.
    pub fn is_complete(&self) -> bool {
        self.state.is_complete()
    }
}
