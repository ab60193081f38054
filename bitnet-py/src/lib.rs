//! `bitnet_burn._native`: the engine behind the Python package `bitnet_burn` (python/bitnet_burn), which shapes its
//! results like llama-cpp-python's. Every call that runs the model releases the GIL; a generation runs on the
//! batched engine's thread, so Python threads sharing one model are decoded together.

mod error;
mod model;
mod reader;
mod stream;

use pyo3::prelude::*;

/// The extension module.
#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add_class::<model::NativeModel>()?;
    m.add_class::<stream::Stream>()?;
    m.add_class::<reader::ReplyReader>()?;
    m.add_function(wrap_pyfunction!(check_grammar, m)?)?;
    Ok(())
}

/// Raises `ValueError` naming what is wrong (and where) unless `text` is a GBNF grammar this engine follows.
#[pyfunction]
fn check_grammar(text: &str) -> PyResult<()> {
    bitnet_burn::text::format::Grammar::parse(text)
        .map(drop)
        .map_err(error::value_error)
}
