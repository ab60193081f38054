//! RMSNorm computed in the reference order (transformers and llama.cpp multiply by `1/sqrt(mean(x²) + eps)`;
//! dividing instead moves results by an ulp, enough to flip int8 activation roundings downstream).

use bitnet_kernels_cubecl::TernaryBackend;
use burn::config::Config;
use burn::module::{Module, Param};
use burn::tensor::{Tensor, TensorData};

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
        let inv = (x.clone().square().mean_dim(D - 1) + self.eps)
            .sqrt()
            .recip();
        x * inv * self.weight.val().unsqueeze()
    }
}
