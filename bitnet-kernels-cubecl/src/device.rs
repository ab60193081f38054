//! Checking that a GPU backend's driver is present before using it (Burn panics at the first operation
//! otherwise), so callers can fall back or fail with a clear message.

use std::panic::{catch_unwind, AssertUnwindSafe};

use burn::tensor::backend::Backend;
use burn::tensor::Tensor;

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
