//! Checking that a GPU backend's driver is present before using it (Burn panics at the first operation
//! otherwise), so callers can fall back or fail with a clear message.

use std::panic::{catch_unwind, AssertUnwindSafe};

use burn::tensor::backend::Backend;
use burn::tensor::Tensor;

use crate::TernaryBackend;

/// Runs one tiny computation on `device`; `Err` carries the backend's complaint when it cannot run.
pub fn probe<B: Backend>(device: &B::Device) -> Result<(), String> {
    let run = AssertUnwindSafe(|| {
        let t = Tensor::<B, 1>::from_floats([1.0, 2.0], device) * 2.0;
        t.into_data()
            .convert::<f32>()
            .to_vec::<f32>()
            .map_err(|e| format!("{e:?}"))
    });
    match catch_unwind(run) {
        Ok(Ok(v)) if v == [2.0, 4.0] => Ok(()),
        Ok(Ok(v)) => Err(format!("the device computed {v:?} for [1, 2] · 2")),
        Ok(Err(e)) => Err(e),
        Err(panic) => Err(panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "the backend panicked".into())),
    }
}

/// The default wgpu device, if a Vulkan, Metal or DX12 adapter (lavapipe included) works.
#[cfg(feature = "wgpu")]
pub fn wgpu_available() -> Result<burn::backend::wgpu::WgpuDevice, String> {
    let device = burn::backend::wgpu::WgpuDevice::default();
    probe::<burn::backend::Wgpu>(&device)
        .map(|_| device)
        .map_err(|e| format!("no usable wgpu adapter ({e})"))
}

/// The first CUDA device, if the CUDA driver and a GPU are present.
#[cfg(feature = "cuda")]
pub fn cuda_available() -> Result<burn::backend::cuda::CudaDevice, String> {
    let device = burn::backend::cuda::CudaDevice::default();
    probe::<burn::backend::Cuda>(&device)
        .map(|_| device)
        .map_err(|e| format!("no usable CUDA device ({e})"))
}

/// For test suites: `device`, or `None` after saying `test` is skipped and why. Under `CI=true` a missing device
/// fails `test` instead: CI installs lavapipe, so no adapter there means a broken install, and a skip would turn
/// every GPU test green without running it.
pub fn or_skip<D>(test: &str, device: Result<D, String>) -> Option<D> {
    match device {
        Ok(d) => Some(d),
        Err(why) if std::env::var("CI").is_ok_and(|v| v == "true") => {
            panic!("{test}: {why} (CI=true: the GPU tests must run; install mesa-vulkan-drivers for lavapipe)")
        }
        Err(why) => {
            eprintln!("SKIPPED {test}: {why}");
            None
        }
    }
}

/// The Burn backends a caller can pick at run time; each is a monomorphised instance of the same generic code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BackendKind {
    /// burn-ndarray on the CPU with this crate's SIMD kernels (always built).
    Cpu,
    /// burn-wgpu: Vulkan, Metal, DX12 or WebGPU (the `wgpu` feature).
    Wgpu,
    /// burn-cuda: NVIDIA GPUs (the `cuda` feature).
    Cuda,
}

impl BackendKind {
    /// The names users type, in the order they are offered.
    const NAMES: [&'static str; 3] = ["cpu", "wgpu", "cuda"];

    /// The name users type: `cpu`, `wgpu` or `cuda`.
    pub fn name(self) -> &'static str {
        Self::NAMES[self as usize]
    }

    /// The name for reports (says which library runs the CPU backend).
    fn label(self) -> &'static str {
        match self {
            Self::Cpu => "cpu (burn-ndarray)",
            Self::Wgpu => "wgpu",
            Self::Cuda => "cuda",
        }
    }
}

impl std::str::FromStr for BackendKind {
    type Err = BackendError;

    fn from_str(s: &str) -> Result<Self, BackendError> {
        match s {
            "cpu" => Ok(Self::Cpu),
            "wgpu" => Ok(Self::Wgpu),
            "cuda" => Ok(Self::Cuda),
            _ => Err(BackendError::Unknown(s.to_string())),
        }
    }
}

/// Why a backend cannot run.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// Compiled out: the caller knows how its users rebuild (a cargo feature, a pip build argument).
    #[error("this build has no {} backend", .0.name())]
    NotBuilt(BackendKind),
    /// Compiled in, but its driver or device is missing.
    #[error("{0}")]
    Unavailable(String),
    /// Not a backend name.
    #[error("{0:?} is not a backend (one of {names})", names = BackendKind::NAMES.join(", "))]
    Unknown(String),
}

/// Work generic over the backend, run by [`dispatch`] on the one picked at run time.
pub trait BackendTask {
    /// What the work returns (its own errors included).
    type Output;
    /// Runs on backend `B`; `backend` names it for reports.
    fn run<B: TernaryBackend>(self, device: B::Device, backend: &'static str) -> Self::Output;
}

/// Runs `task` on the backend `kind`, after checking that its driver works.
pub fn dispatch<T: BackendTask>(kind: BackendKind, task: T) -> Result<T::Output, BackendError> {
    match kind {
        BackendKind::Cpu => {
            Ok(task.run::<burn::backend::NdArray>(Default::default(), kind.label()))
        }
        #[cfg(feature = "wgpu")]
        BackendKind::Wgpu => {
            let device = wgpu_available().map_err(BackendError::Unavailable)?;
            Ok(task.run::<burn::backend::Wgpu>(device, kind.label()))
        }
        #[cfg(feature = "cuda")]
        BackendKind::Cuda => {
            let device = cuda_available().map_err(BackendError::Unavailable)?;
            Ok(task.run::<burn::backend::Cuda>(device, kind.label()))
        }
        #[cfg(not(feature = "wgpu"))]
        BackendKind::Wgpu => Err(BackendError::NotBuilt(kind)),
        #[cfg(not(feature = "cuda"))]
        BackendKind::Cuda => Err(BackendError::NotBuilt(kind)),
    }
}
