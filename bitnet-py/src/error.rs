//! The engine's errors as Python exceptions: a missing file is `FileNotFoundError`, anything wrong with the input
//! (a bad file, argument or prompt) `ValueError`, a busy or stopped engine `RuntimeError`.

use bitnet_burn::engine::SubmitError;
use pyo3::exceptions::{PyFileNotFoundError, PyRuntimeError, PyValueError};
use pyo3::PyErr;

/// `ValueError` with the error's message (its causes included).
pub fn value_error(e: impl std::error::Error) -> PyErr {
    PyValueError::new_err(chain(&e))
}

/// `FileNotFoundError` naming the path.
pub fn not_found(path: &std::path::Path) -> PyErr {
    PyFileNotFoundError::new_err(format!(
        "no such model file or directory: {}",
        path.display()
    ))
}

/// A refused request: the prompt's fault is a `ValueError`, the engine's state a `RuntimeError`.
pub fn submit_error(e: SubmitError) -> PyErr {
    match e {
        SubmitError::QueueFull(_) | SubmitError::Stopped => PyRuntimeError::new_err(e.to_string()),
        _ => PyValueError::new_err(e.to_string()),
    }
}

/// The message of `e` followed by each source it does not already quote.
fn chain(e: &dyn std::error::Error) -> String {
    let mut message = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !message.contains(&text) {
            message = format!("{message}: {text}");
        }
        source = s.source();
    }
    message
}
