//! `ReplyReader`: a reply written under tools, read as it is written, so a stream sends its answer and its calls
//! piece by piece ([`tools::ReplyReader`]).

use bitnet_burn::text::tools::{self, ReplyPart, ToolReply};
use pyo3::prelude::*;

/// What a reply read so far says: `(content, [])`, or `(None, [(name, arguments)])` when it calls.
type ReadReply = (Option<String>, Vec<(String, String)>);

/// A reply under tools, read piece by piece.
#[pyclass(module = "bitnet_burn._native")]
#[derive(Default)]
pub struct ReplyReader {
    inner: tools::ReplyReader,
}

#[pymethods]
impl ReplyReader {
    #[new]
    fn new() -> Self {
        Self::default()
    }

    /// Reads the next piece of the reply; returns what it adds, in order: `("answer", 0, text)`, `("call", index,
    /// name)` (a call begins) and `("arguments", index, text)`.
    fn push(&mut self, text: &str) -> Vec<(&'static str, usize, String)> {
        let parts = self.inner.push(text).into_iter();
        parts
            .map(|part| match part {
                ReplyPart::Answer(text) => ("answer", 0, text),
                ReplyPart::Call { index, name } => ("call", index, name),
                ReplyPart::Arguments { index, text } => ("arguments", index, text),
            })
            .collect()
    }

    /// The reply so far: its calls once a name is whole, else its answer, else the text as it is.
    fn reply(&self) -> ReadReply {
        match self.inner.reply() {
            ToolReply::Content(content) => (Some(content), Vec::new()),
            ToolReply::Calls(calls) => (
                None,
                calls.into_iter().map(|c| (c.name, c.arguments)).collect(),
            ),
        }
    }

    /// Whether the reply is an answer, all of whose text `push` has returned.
    fn answering(&self) -> bool {
        self.inner.answer().is_some()
    }
}
