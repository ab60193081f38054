//! BitNet b1.58 in the browser: the workspace's Burn model compiled to WebAssembly, on burn-ndarray (the ternary
//! matmul on the `Isa::RelaxedSimd` kernel in the module built with relaxed SIMD, `Isa::Simd128` in the other) or on burn-wgpu over the browser's WebGPU (the CubeCL kernels as WGSL),
//! behind a small API that `wasm-bindgen` turns into JavaScript.
//!
//! [`GgufBuffer`] receives a model file in pieces (a `fetch` stream or a picked file) straight into the module's
//! memory, [`Model::load`] builds the model from it, and [`Model::generate`] (a prompt) or [`Model::chat`] (OpenAI
//! messages in the model's chat template, with tools) returns a [`Generation`] whose [`Generation::next`] runs the
//! model until new text is final and reads the logits back without blocking, so the page (`www/`, which runs the
//! module in a worker) stays responsive and streams the text. The cache a generation leaves is reused by the next
//! for the prompt start they share.
//!
//! Size limit: everything lives in one 32-bit WebAssembly memory (at most 4 GiB in Chromium and Firefox). A GGUF
//! file is held whole (the embedding's rows are read from it) beside the repacked ternary weights and the int8
//! head, so files up to about 1.5 GB load (microsoft/bitnet-b1.58-2B-4T's 1.2 GB I2_S file among them).

mod buffer;
mod generation;
mod model;
mod session;

pub use buffer::GgufBuffer;
pub use generation::Generation;
pub use model::Model;
#[cfg(all(feature = "threads", target_arch = "wasm32"))]
pub use wasm_bindgen_rayon::init_thread_pool;
