//! RMSNorm as a module over the backend's fused op ([`TernaryBackend::rms_norm`], which fixes the reference
//! order of operations).

use bitnet_kernels_cubecl::TernaryBackend;
use burn::config::Config;
use burn::module::{Module, Param};
use burn::tensor::{Tensor, TensorData, TensorPrimitive};

/// Shape of an [`RmsNorm`].
#[derive(Config, Debug)]
pub struct RmsNormConfig {
    /// Normalized width.
    pub size: usize,
    /// Added to the mean square.
    #[config(default = 1e-5)]
    pub eps: f64,
}

/// `x · rsqrt(mean(x²) + eps) · weight` over the last dimension.
#[derive(Module, Debug)]
pub struct RmsNorm<B: TernaryBackend> {
    /// Per-channel scale.
    pub weight: Param<Tensor<B, 1>>,
    /// Added to the mean square.
    pub eps: f64,
}

impl RmsNormConfig {
    /// A norm with unit weights.
    pub fn init<B: TernaryBackend>(&self, device: &B::Device) -> RmsNorm<B> {
        RmsNorm {
            weight: Param::from_tensor(Tensor::ones([self.size], device)),
            eps: self.eps,
        }
    }
}

impl<B: TernaryBackend> RmsNorm<B> {
    /// A norm with loaded weights.
    pub fn from_weights(weight: Vec<f32>, eps: f32, device: &B::Device) -> Self {
        let n = weight.len();
        Self {
            weight: Param::from_tensor(Tensor::from_data(TensorData::new(weight, [n]), device)),
            eps: eps as f64,
        }
    }

    /// Normalizes `[..., size]`.
    pub fn forward<const D: usize>(&self, x: Tensor<B, D>) -> Tensor<B, D> {
        let dims = x.dims();
        let rows: Tensor<B, 2> = x.reshape([-1, dims[D - 1] as i32]);
        let y = B::rms_norm(
            rows.into_primitive().tensor(),
            self.weight.val().into_primitive().tensor(),
            self.eps,
        );
        Tensor::<B, 2>::from_primitive(TensorPrimitive::Float(y)).reshape(dims)
    }
}
