//! Choosing the Burn backend at run time among those compiled in; each is a monomorphised instance of the same
//! generic code, and a backend whose driver is absent is refused with a clear message instead of a panic.

use anyhow::{bail, Result};
use bitnet_burn::TernaryBackend;
use clap::ValueEnum;

/// Backends the CLI can run on.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum BackendKind {
    /// burn-ndarray on the CPU (always available).
    Cpu,
    /// burn-wgpu: Vulkan, Metal or DX12 (build with `--features wgpu`).
    Wgpu,
    /// burn-cuda: NVIDIA GPUs (build with `--features cuda`).
    Cuda,
}

/// Work generic over the backend.
pub trait BackendTask {
    /// What the work returns.
    type Output;
    /// Runs on backend `B`.
    fn run<B: TernaryBackend>(
        self,
        device: B::Device,
        backend: &'static str,
    ) -> Result<Self::Output>;
}

/// Runs `task` on the chosen backend.
pub fn dispatch<T: BackendTask>(kind: BackendKind, task: T) -> Result<T::Output> {
    match kind {
        BackendKind::Cpu => {
            task.run::<burn::backend::NdArray>(Default::default(), "cpu (burn-ndarray)")
        }
        BackendKind::Wgpu => {
            #[cfg(feature = "wgpu")]
            {
                let device = bitnet_burn::device::wgpu_available().map_err(anyhow::Error::msg)?;
                task.run::<burn::backend::Wgpu>(device, "wgpu")
            }
            #[cfg(not(feature = "wgpu"))]
            bail!("this build has no wgpu backend: rebuild with `--features wgpu`")
        }
        BackendKind::Cuda => {
            #[cfg(feature = "cuda")]
            {
                let device = bitnet_burn::device::cuda_available().map_err(anyhow::Error::msg)?;
                task.run::<burn::backend::Cuda>(device, "cuda")
            }
            #[cfg(not(feature = "cuda"))]
            bail!("this build has no CUDA backend: rebuild with `--features cuda`")
        }
    }
}
