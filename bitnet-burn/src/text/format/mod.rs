//! Holding generated text to a format (OpenAI's `response_format`): in JSON mode only tokens that keep the text
//! the start of a JSON object may be sampled, with a JSON schema only those that keep it the start of an object
//! the schema allows ([`Schema`]); generation ends when the object closes.
//!
//! The check is lazy, as llama.cpp's grammar sampler: the sampler's choice is tried first, and only when it
//! does not fit are all tokens checked and the misfits' logits set to -inf before choosing again. That picks
//! each fitting token with its probability among the fitting ones, and mostly costs one token's bytes.

mod formats;
mod gbnf;
mod json;
mod schema;
mod shaped;

use std::fmt::Debug;
use std::sync::Arc;

use serde_json::Value;

pub use gbnf::{Grammar, GrammarError};
pub use json::{Free, Json, JsonObject, Readings, Shape, MOST_READINGS};
pub use schema::{Schema, SchemaError, MOST_ALTERNATIVES, MOST_CHOICES};
pub use shaped::Shaped;

use crate::text::tokenizer::{SortedVocab, Tokenizer};

/// What the generated text must be.
#[derive(Clone, Debug, Default, PartialEq)]
pub enum OutputFormat {
    /// Any text.
    #[default]
    Text,
    /// One JSON object (OpenAI's JSON mode, `{"type": "json_object"}`); nothing after it.
    JsonObject,
    /// One JSON object that a schema allows (`{"type": "json_schema", ...}`); nothing after it.
    JsonSchema(Arc<Schema>),
    /// Text in a GBNF grammar's language (llama.cpp's `grammar`); it may end (an end-of-text token) wherever
    /// the grammar is complete, and ends where nothing can follow.
    Grammar(Arc<Grammar>),
}

impl OutputFormat {
    /// JSON mode when `json_object` (a command-line flag, a Python keyword), else free text.
    pub fn json_object_if(json_object: bool) -> Self {
        match json_object {
            true => Self::JsonObject,
            false => Self::Text,
        }
    }

    /// An OpenAI `response_format`: `{"type": "text"}`, `{"type": "json_object"}` (with llama-server's
    /// `"schema": {...}` held to that schema) or `{"type": "json_schema", "json_schema": {"name": ...,
    /// "schema": {...}}}`.
    pub fn from_response_format(format: &Value) -> Result<Self, ResponseFormatError> {
        let kind = format.get("type").and_then(Value::as_str);
        let schema = match kind {
            Some("text") => return Ok(Self::Text),
            Some("json_object") => match format.get("schema") {
                None => return Ok(Self::JsonObject),
                Some(schema) => schema,
            },
            Some("json_schema") => format
                .get("json_schema")
                .and_then(|s| s.get("schema"))
                .ok_or(ResponseFormatError::NoSchema)?,
            Some(other) => return Err(ResponseFormatError::Unsupported(other.into())),
            None => return Err(ResponseFormatError::NoType),
        };
        Ok(Self::json_schema(schema)?)
    }

    /// Objects that the JSON Schema `schema` allows.
    pub fn json_schema(schema: &Value) -> Result<Self, SchemaError> {
        Ok(Self::JsonSchema(Arc::new(Schema::compile(schema)?)))
    }

    /// Text in the language of the GBNF grammar `text`.
    pub fn grammar(text: &str) -> Result<Self, GrammarError> {
        Ok(Self::Grammar(Arc::new(Grammar::parse(text)?)))
    }
}

/// A `response_format` this engine cannot write to.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ResponseFormatError {
    /// Not an object with a string `type`.
    #[error("must be an object with a \"type\" (\"text\", \"json_object\" or \"json_schema\")")]
    NoType,
    /// A type other than these.
    #[error("{0:?} is not supported (\"text\", \"json_object\" and \"json_schema\" are)")]
    Unsupported(String),
    /// `json_schema` without its schema.
    #[error("json_schema needs {{\"json_schema\": {{\"name\": ..., \"schema\": {{...}}}}}}")]
    NoSchema,
    /// A schema outside the subset held to.
    #[error(transparent)]
    Schema(#[from] SchemaError),
}

/// Which tokens may come next under an [`OutputFormat`] other than text.
#[derive(Debug)]
pub struct FormatConstraint {
    vocab: Arc<SortedVocab>,
    machine: Box<dyn Machine>,
    /// The end-of-text tokens: they fit where the text is complete.
    stop_ids: Vec<u32>,
    /// The tokens that fit, kept between calls.
    fitting: Vec<(u32, f32)>,
}

impl FormatConstraint {
    /// A constraint for `format` over `tokenizer`'s vocabulary, or `None` for free text.
    pub fn new(format: &OutputFormat, tokenizer: &Tokenizer) -> Option<Self> {
        let machine: Box<dyn Machine> = match format {
            OutputFormat::Text => return None,
            OutputFormat::JsonObject => Box::new(Walker::<json::Free>::new(Arc::new(()))),
            OutputFormat::JsonSchema(schema) => Box::new(Walker::<Shaped>::new(schema.clone())),
            OutputFormat::Grammar(grammar) => Box::new(gbnf::GrammarWalker::new(grammar.clone())),
        };
        Some(Self {
            vocab: tokenizer.sorted_vocab(),
            machine,
            stop_ids: tokenizer.stop_ids(),
            fitting: Vec::new(),
        })
    }

    /// Whether token `id` may come next: its bytes fit, or it ends the text where the text is complete (other
    /// special tokens never fit).
    pub fn allows(&self, id: u32) -> bool {
        match self.stop_ids.contains(&id) {
            true => self.machine.is_complete(),
            false => self.vocab.bytes(id).is_some_and(|b| self.machine.fits(b)),
        }
    }

    /// Moves past token `id` if it may come next; whether it may (if not, nothing moves).
    pub fn accept(&mut self, id: u32) -> bool {
        match self.stop_ids.contains(&id) {
            true => self.machine.is_complete(),
            false => self.vocab.bytes(id).is_some_and(|b| self.machine.accept(b)),
        }
    }

    /// Sets the logit of every token that may not come next to -inf; false when none may.
    pub fn mask(&mut self, logits: &mut [f32]) -> bool {
        self.fitting.clear();
        self.machine.fitting(&self.vocab, logits, &mut self.fitting);
        if self.machine.is_complete() {
            let ends = self
                .stop_ids
                .iter()
                .filter_map(|&id| Some((id, *logits.get(id as usize)?)));
            self.fitting.extend(ends);
        }
        logits.fill(f32::NEG_INFINITY);
        for &(id, logit) in &self.fitting {
            logits[id as usize] = logit;
        }
        !self.fitting.is_empty()
    }

    /// Whether the text is whole and nothing can follow (the JSON object closed): generation ends here.
    pub fn is_complete(&self) -> bool {
        self.machine.is_complete() && !self.machine.can_go_on()
    }
}

/// A [`Walker`] whatever its shape, or a grammar's.
trait Machine: Debug + Send + Sync {
    fn fits(&self, bytes: &[u8]) -> bool;
    fn accept(&mut self, bytes: &[u8]) -> bool;
    /// The tokens of `vocab` that fit, with their logits, into `out`.
    fn fitting(&mut self, vocab: &SortedVocab, logits: &[f32], out: &mut Vec<(u32, f32)>);
    /// The text may end here.
    fn is_complete(&self) -> bool;
    /// Some text may follow.
    fn can_go_on(&self) -> bool;
}

/// The JSON state of the text so far under the rules of shape `S`.
#[derive(Debug)]
struct Walker<S: Shape> {
    rules: Arc<S::Rules>,
    state: Readings<S>,
    /// The readings after each byte of the token being checked, kept between calls: those after its first `d`
    /// bytes are `states[ends[d - 1]..ends[d]]` (from 0 for `d` = 0), for the bytes a later token shares (see
    /// [`extend`]).
    states: Vec<Json<S>>,
    ends: Vec<usize>,
}

impl<S: Shape> Walker<S> {
    fn new(rules: Arc<S::Rules>) -> Self {
        Self {
            rules,
            state: Readings::default(),
            states: Vec::new(),
            ends: Vec::new(),
        }
    }

    fn after(&self, bytes: &[u8]) -> Option<Readings<S>> {
        let mut state = self.state.clone();
        bytes
            .iter()
            .all(|&b| state.push_with(&self.rules, b))
            .then_some(state)
    }
}

impl<S: Shape + Send + Sync> Machine for Walker<S> {
    fn fits(&self, bytes: &[u8]) -> bool {
        self.after(bytes).is_some()
    }

    fn accept(&mut self, bytes: &[u8]) -> bool {
        self.after(bytes).map(|state| self.state = state).is_some()
    }

    fn fitting(&mut self, vocab: &SortedVocab, logits: &[f32], out: &mut Vec<(u32, f32)>) {
        let (states, ends) = (&mut self.states, &mut self.ends);
        states.clear();
        states.extend_from_slice(self.state.ways());
        ends.clear();
        ends.push(states.len());
        for i in 0..vocab.len() {
            let (id, bytes, shared) = vocab.entry(i);
            if shared >= ends.len() {
                continue; // it starts with the bytes that did not fit in the token before
            }
            ends.truncate(shared + 1);
            states.truncate(ends[shared]);
            // the readings after bytes no later token shares are never started from
            let keep = vocab.shared(i + 1).saturating_sub(shared);
            let fits = extend(&*self.rules, &bytes[shared..], keep, states, ends);
            if let Some(&logit) = logits.get(id as usize).filter(|_| fits) {
                out.push((id, logit));
            }
        }
    }

    fn is_complete(&self) -> bool {
        self.state.is_complete()
    }

    fn can_go_on(&self) -> bool {
        !self.state.is_complete()
    }
}

/// Where the last level of [`Walker`]'s `states` lies.
fn last_level(ends: &[usize]) -> (usize, usize) {
    let d = ends.len();
    (if d > 1 { ends[d - 2] } else { 0 }, ends[d - 1])
}

/// Whether some reading from the last level's takes all of `bytes`, adding to `states` and `ends` the readings
/// after each of the first `keep` (those after the rest are not kept; a level where none is left ends it). A lone
/// reading is carried along in place while the bytes do not fork it: a copy of the state a byte kept, as when
/// the text is read one way.
fn extend<S: Shape>(
    rules: &S::Rules,
    bytes: &[u8],
    keep: usize,
    states: &mut Vec<Json<S>>,
    ends: &mut Vec<usize>,
) -> bool {
    let mut i = 0;
    while i < bytes.len() {
        let (from, to) = last_level(ends);
        if to - from == 1 && states[from].ways(rules, bytes[i]) == 1 {
            let mut way = states[from];
            loop {
                if !way.push_alt(rules, bytes[i], 0) {
                    return false;
                }
                i += 1;
                if i <= keep {
                    states.push(way);
                    ends.push(states.len());
                }
                if i == bytes.len() || way.ways(rules, bytes[i]) != 1 {
                    break;
                }
            }
            if i > keep && i < bytes.len() {
                // a fork past the kept levels: from here on the readings are kept only to be stepped from
                states.push(way);
                ends.push(states.len());
            }
        } else {
            for k in from..to {
                let way = states[k];
                way.step(rules, bytes[i], states, to);
            }
            if states.len() == to {
                return false;
            }
            ends.push(states.len());
            i += 1;
        }
    }
    true
}
