//! Shared helpers for the integration tests: where the fixtures are, reading .npy references, running the
//! Python reference scripts.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// `../shared/fixtures` beside the repository (or `$BITNET_FIXTURES`).
pub fn fixtures_dir() -> Option<PathBuf> {
    let dir = std::env::var_os("BITNET_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_dir().join("../shared/fixtures"));
    dir.join("bitnet-tiny-h256").is_dir().then_some(dir)
}

/// The fixture directory, or `None` after printing which test is skipped and why. In CI the fixtures must exist.
pub fn fixtures_or_skip(test: &str) -> Option<PathBuf> {
    let dir = fixtures_dir();
    if dir.is_none() {
        assert!(
            std::env::var_os("CI").is_none(),
            "{test}: ../shared/fixtures is missing in CI"
        );
        eprintln!("SKIPPED {test}: ../shared/fixtures not found (set BITNET_FIXTURES)");
    }
    dir
}

/// A fixture GGUF by variant (`f32`, `tq2_0`, `tq1_0`, `tq2_0-f16emb`, `tq1_0-f16emb`, `i2_s`).
pub fn fixture_gguf(dir: &Path, variant: &str) -> PathBuf {
    dir.join(format!(
        "bitnet-tiny-h256/gguf/bitnet-tiny-h256-{variant}.gguf"
    ))
}

/// Every fixture GGUF variant.
pub const VARIANTS: [&str; 6] = [
    "f32",
    "tq2_0",
    "tq1_0",
    "tq2_0-f16emb",
    "tq1_0-f16emb",
    "i2_s",
];

/// A model with the float head and an f32 KV cache: the reference numerics every comparison with llama.cpp's
/// f32-KV and transformers' logits is bounded for (the library's defaults are the int8 head and an f16 cache).
pub fn load_float<B: bitnet_burn::TernaryBackend>(
    path: &Path,
    device: &B::Device,
) -> bitnet_burn::BitNet<B> {
    let options = bitnet_burn::LoadOptions {
        cache: bitnet_burn::CacheType::F32,
        ..bitnet_burn::LoadOptions::head(bitnet_burn::HeadMode::Float)
    };
    bitnet_burn::load_with_progress(path, device, &options, |_| {})
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Reads a float32 .npy file as (shape, values).
pub fn read_npy(path: &Path) -> (Vec<u64>, Vec<f32>) {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let npy = npyz::NpyFile::new(&bytes[..]).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let shape = npy.shape().to_vec();
    (shape, npy.into_vec::<f32>().unwrap())
}

/// Whether python3 with gguf-py and numpy is present; in CI it must be (`.ci/run` installs it).
pub fn python_references_or_skip(test: &str) -> bool {
    let ok = Command::new("python3")
        .args(["-c", "import gguf, numpy"])
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        assert!(
            std::env::var_os("CI").is_none(),
            "{test}: python3 with gguf and numpy is required in CI"
        );
        eprintln!("SKIPPED {test}: python3 with gguf-py is missing (pip install gguf numpy)");
    }
    ok
}

/// Runs `tests/ref/reference_weights.py MODE SRC` into a fresh temp dir and returns it.
pub fn python_reference(mode: &str, src: &Path) -> tempfile::TempDir {
    let out = tempfile::tempdir().unwrap();
    let script = repo_dir().join("tests/ref/reference_weights.py");
    let status = Command::new("python3")
        .arg(&script)
        .arg(mode)
        .arg(src)
        .arg(out.path())
        .status()
        .expect("python3 is needed for reference values (pip install gguf numpy)");
    assert!(
        status.success(),
        "{} {mode} {} failed: install the references with `pip install gguf numpy`",
        script.display(),
        src.display()
    );
    out
}

pub mod hub_server;
pub mod model;

/// The default wgpu device if a Vulkan/Metal/DX12 adapter exists (lavapipe included); see
/// [`bitnet_kernels_cubecl::device::or_skip`].
#[cfg(feature = "wgpu")]
pub fn wgpu_device_or_skip(test: &str) -> Option<burn::backend::wgpu::WgpuDevice> {
    use bitnet_kernels_cubecl::device;
    device::or_skip(test, device::wgpu_available())
}

/// The first CUDA device if an NVIDIA GPU and driver are present.
#[cfg(feature = "cuda")]
pub fn cuda_device_or_skip(test: &str) -> Option<burn::backend::cuda::CudaDevice> {
    use bitnet_kernels_cubecl::device;
    device::or_skip(test, device::cuda_available())
}

/// The `bitnet` binary run with `args`, its output captured.
pub fn bitnet(args: &[&str]) -> Output {
    bitnet_env(args, &[])
}

/// [`bitnet`] with extra environment variables.
pub fn bitnet_env(args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_bitnet"))
        .args(args)
        .envs(env.iter().copied())
        .output()
        .expect("run bitnet")
}

/// [`bitnet`] that must succeed (its stderr is the failure message); its stdout parsed as JSON, for `--json`
/// commands, or `Null` when it prints none.
pub fn bitnet_json(args: &[&str]) -> serde_json::Value {
    bitnet_json_env(args, &[])
}

/// [`bitnet_json`] with extra environment variables.
pub fn bitnet_json_env(args: &[&str], env: &[(&str, &str)]) -> serde_json::Value {
    let out = bitnet_env(args, env);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    if out.stdout.is_empty() {
        return serde_json::Value::Null;
    }
    serde_json::from_slice(&out.stdout).expect("bitnet printed JSON")
}

/// The repository root, read at run time (a test binary reused from a shared target directory may have been
/// built from another checkout).
pub fn repo_dir() -> std::path::PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .expect("cargo test sets CARGO_MANIFEST_DIR")
        .into()
}

/// llama.cpp's `models/` directory from the PyPI sdist (`$BITNET_LLAMACPP_MODELS`, which
/// `scripts/fetch-llamacpp.sh` prints the parent of), or `None` after saying the test is skipped. In CI it must exist.
pub fn llamacpp_models_or_skip(test: &str) -> Option<PathBuf> {
    let dir = std::env::var_os("BITNET_LLAMACPP_MODELS")
        .map(PathBuf::from)
        .filter(|d| d.join("ggml-vocab-llama-spm.gguf").exists());
    if dir.is_none() {
        assert!(
            std::env::var_os("CI").is_none(),
            "{test}: BITNET_LLAMACPP_MODELS must point at llama.cpp's models/ in CI"
        );
        eprintln!("SKIPPED {test}: set BITNET_LLAMACPP_MODELS to the models/ of scripts/fetch-llamacpp.sh's output");
    }
    dir
}

/// The bin directory of llama.cpp's tools built by `scripts/build-llamacpp.sh` (`$BITNET_LLAMACPP_BIN`), or `None`
/// after saying the test is skipped. Optional even in CI: building llama.cpp takes ~10 minutes on 2 cores.
pub fn llamacpp_bin_or_skip(test: &str) -> Option<PathBuf> {
    let dir = std::env::var_os("BITNET_LLAMACPP_BIN")
        .map(PathBuf::from)
        .filter(|d| d.join("llama-completion").exists());
    if dir.is_none() {
        eprintln!(
            "SKIPPED {test}: set BITNET_LLAMACPP_BIN to the output of scripts/build-llamacpp.sh"
        );
    }
    dir
}
