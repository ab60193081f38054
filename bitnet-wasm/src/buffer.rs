//! A model file received in pieces, straight into WebAssembly memory.

use wasm_bindgen::prelude::*;

/// The bytes of a GGUF file as they arrive: one copy in the module's memory, never a second one in JavaScript.
#[wasm_bindgen]
pub struct GgufBuffer {
    pub(crate) bytes: Vec<u8>,
    /// What errors call the file.
    pub(crate) name: String,
}

#[wasm_bindgen]
impl GgufBuffer {
    /// An empty buffer for the file `name` with room for `size` bytes (its size when known, else 0); fails
    /// with a readable message when the browser cannot give WebAssembly that much memory.
    #[wasm_bindgen(constructor)]
    pub fn new(name: String, size: f64) -> Result<GgufBuffer, JsError> {
        let mut bytes = Vec::new();
        reserve(&mut bytes, size, Vec::try_reserve_exact)?;
        Ok(Self { bytes, name })
    }

    /// Appends the next piece of the file.
    pub fn push(&mut self, chunk: &[u8]) -> Result<(), JsError> {
        // amortized growth when the size was not known up front
        reserve(&mut self.bytes, chunk.len() as f64, Vec::try_reserve)?;
        self.bytes.extend_from_slice(chunk);
        Ok(())
    }

    /// Bytes received so far.
    #[wasm_bindgen(getter)]
    pub fn length(&self) -> f64 {
        self.bytes.len() as f64
    }
}

/// Makes room for `more` bytes with `grow`, or says why not.
fn reserve(
    bytes: &mut Vec<u8>,
    more: f64,
    grow: fn(&mut Vec<u8>, usize) -> Result<(), std::collections::TryReserveError>,
) -> Result<(), JsError> {
    let total = bytes.len() as f64 + more;
    let refused = || {
        JsError::new(&format!(
            "cannot hold a {:.2} GB model file in WebAssembly memory (one 32-bit memory of at most 4 GiB, shared \
             with the unpacked weights): use a smaller file or the native engine",
            total / 1e9
        ))
    };
    if !(0.0..=usize::MAX as f64).contains(&more) {
        return Err(refused());
    }
    grow(bytes, more as usize).map_err(|_| refused())
}
