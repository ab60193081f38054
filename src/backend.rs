//! The CLI's side of choosing a Burn backend at run time: `--backend` parsed, and a compiled-out backend refused
//! with the rebuild command.

use anyhow::{anyhow, Result};
use bitnet_burn::device::{self, BackendError};
pub use bitnet_burn::device::{BackendKind, BackendTask};

/// Parses `--backend` (cpu, wgpu or cuda).
pub fn parse(name: &str) -> Result<BackendKind, BackendError> {
    name.parse()
}

/// Runs `task` on the backend `kind`.
pub fn dispatch<T, O>(kind: BackendKind, task: T) -> Result<O>
where
    T: BackendTask<Output = Result<O>>,
{
    match device::dispatch(kind, task) {
        Ok(out) => out,
        Err(e @ BackendError::NotBuilt(_)) => {
            Err(anyhow!("{e}: rebuild with `--features {}`", kind.name()))
        }
        Err(e) => Err(e.into()),
    }
}
