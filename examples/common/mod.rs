//! What the examples share: the backend chosen by cargo feature, and the default model.

/// `--features cuda` → burn-cuda, `--features wgpu` → burn-wgpu, otherwise burn-ndarray on the CPU.
#[cfg(feature = "cuda")]
pub type Backend = burn::backend::Cuda;
/// `--features cuda` → burn-cuda, `--features wgpu` → burn-wgpu, otherwise burn-ndarray on the CPU.
#[cfg(all(feature = "wgpu", not(feature = "cuda")))]
pub type Backend = burn::backend::Wgpu;
/// `--features cuda` → burn-cuda, `--features wgpu` → burn-wgpu, otherwise burn-ndarray on the CPU.
#[cfg(not(any(feature = "wgpu", feature = "cuda")))]
pub type Backend = burn::backend::NdArray;

/// The small Shakespeare model shipped in `models/` (see models/README.md).
#[allow(dead_code)] // not every example loads a model
pub const DEFAULT_MODEL: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/models/shakespeare-bitnet-i2_s.gguf"
);
