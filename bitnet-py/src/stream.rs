//! `Stream`: the text of one queued generation, as a Python iterator. Waiting releases the GIL and wakes every
//! [`POLL`] to let Python handle signals (Ctrl-C); dropping or cancelling the stream frees the engine's sequence.

use std::sync::Arc;
use std::time::Duration;

use bitnet_burn::engine::{Event, Finished};
use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use pyo3::types::PyDict;
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
}

impl Stream {
    /// A stream of the events `events` (the runtime runs the waits' timers).
    pub fn new(events: UnboundedReceiver<Event>, runtime: Arc<Runtime>) -> Self {
        Self {
            events: Some(events),
            runtime,
            finished: None,
        }
    }
}

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
                Ok(Some(Event::Logprob(_) | Event::PromptLogprob(_))) => continue,
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
