//! The CubeCL backends (wgpu/Vulkan/Metal, CUDA) get the op from one generic impl.

use burn_cubecl::{BoolElement, CubeBackend, CubeRuntime, FloatElement, IntElement};

use crate::TernaryBackend;

impl<R: CubeRuntime, F: FloatElement, I: IntElement, BT: BoolElement> TernaryBackend
    for CubeBackend<R, F, I, BT>
{
}
