//! `Stream`: the text of one queued generation, as a Python iterator. Waiting releases the GIL and wakes every
//! [`POLL`] to let Python handle signals (Ctrl-C); dropping or cancelling the stream frees the engine's sequence.

use std::sync::Arc;
use std::time::Duration;

use bitnet_burn::engine::{Event, Finished};
use bitnet_burn::text::logprobs::TokenLogprob;
use bitnet_burn::text::tokenizer::Tokenizer;
use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict};
use tokio::runtime::Runtime;
use tokio::sync::mpsc::UnboundedReceiver;

/// How long a wait for the next piece of text runs before Python gets to handle signals.
const POLL: Duration = Duration::from_millis(50);

/// The pieces of text of one generation; [`Stream::result`] once it ends.
#[pyclass(module = "bitnet_burn._native")]
pub struct Stream {
    events: Option<UnboundedReceiver<Event>>,
    runtime: Arc<Runtime>,
    finished: Option<Finished>,
    /// Spells the tokens of `logprobs`.
    tokenizer: Arc<Tokenizer>,
    /// Generated tokens' log-probabilities not yet taken.
    logprobs: Vec<TokenLogprob>,
}

impl Stream {
    /// A stream of the events `events` (the runtime runs the waits' timers).
    pub fn new(
        events: UnboundedReceiver<Event>,
        runtime: Arc<Runtime>,
        tokenizer: Arc<Tokenizer>,
    ) -> Self {
        Self {
            events: Some(events),
            runtime,
            finished: None,
            tokenizer,
            logprobs: Vec::new(),
        }
    }
}

/// A token as `take_logprobs` gives it: its bytes and log-probability.
type Scored<'py> = (Bound<'py, PyBytes>, f32);
/// A generated token as `take_logprobs` gives it: scored, with its alternatives.
type Generated<'py> = (Bound<'py, PyBytes>, f32, Vec<Scored<'py>>);

#[pymethods]
impl Stream {
    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    /// The next piece of text, or the end (`StopIteration`); a `RuntimeError` if the generation failed, and
    /// whatever a signal handler raises (`KeyboardInterrupt`), which cancels the generation.
    fn __next__(&mut self, py: Python<'_>) -> PyResult<Option<String>> {
        let runtime = self.runtime.clone();
        loop {
            let Some(events) = self.events.as_mut() else {
                return Ok(None);
            };
            let event = py.detach(|| {
                runtime.block_on(async { tokio::time::timeout(POLL, events.recv()).await })
            });
            let end = match event {
                Err(_) => match py.check_signals() {
                    Ok(()) => continue,
                    Err(e) => Err(e),
                },
                Ok(Some(Event::Text(text))) => return Ok(Some(text)),
                Ok(Some(Event::Logprob(token))) => {
                    self.logprobs.push(token);
                    continue;
                }
                Ok(Some(Event::PromptLogprob(_))) => continue,
                Ok(Some(Event::Done(f))) => {
                    self.finished = Some(f);
                    Ok(None)
                }
                Ok(Some(Event::Failed(e))) => Err(PyRuntimeError::new_err(e)),
                Ok(None) => Err(PyRuntimeError::new_err("the engine stopped")),
            };
            self.events = None;
            return end;
        }
    }

    /// The log-probabilities of the tokens generated since the last call, when the request asked for them:
    /// `(token, logprob, [(token, logprob), ...])` per token, tokens as their bytes, the alternatives most
    /// likely first. A token's text may come in a later piece (text is released whole characters at a time).
    fn take_logprobs<'py>(&mut self, py: Python<'py>) -> Vec<Generated<'py>> {
        let tokenizer = &self.tokenizer;
        let spell = |id: u32| PyBytes::new(py, &tokenizer.token_bytes(id).unwrap_or_default());
        self.logprobs
            .drain(..)
            .map(|t| {
                let top = t.top.iter().map(|&(id, lp)| (spell(id), lp)).collect();
                (spell(t.id), t.logprob, top)
            })
            .collect()
    }

    /// Stops the generation now (its sequence is freed for the next request).
    fn cancel(&mut self) {
        self.events = None;
    }

    /// How the generation ended (`None` until the stream is exhausted): the generated `ids` (a stop token
    /// included), `text`, `finish_reason` (`stop` or `length`), `prompt_tokens`, `cached_tokens` (found in the
    /// sequence's cache from an earlier call), `completion_tokens`, `first_token_s` and `elapsed_s` (from
    /// submission).
    fn result<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyDict>>> {
        let Some(f) = &self.finished else {
            return Ok(None);
        };
        let d = PyDict::new(py);
        d.set_item("ids", &f.ids)?;
        d.set_item("text", &f.text)?;
        d.set_item("finish_reason", f.stop.finish_reason())?;
        d.set_item("prompt_tokens", f.prompt_tokens)?;
        d.set_item("cached_tokens", f.cached_tokens)?;
        d.set_item("completion_tokens", f.ids.len())?;
        d.set_item("first_token_s", f.first_token.as_secs_f64())?;
        d.set_item("elapsed_s", f.elapsed.as_secs_f64())?;
        Ok(Some(d))
    }
}
