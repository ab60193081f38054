//! RMSNorm as a module over the backend's fused op ([`TernaryBackend::rms_norm`], which fixes the reference
//! order of operations).

use bitnet_kernels_cubecl::{ops, TernaryBackend};
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
        ops::rms_norm(x, self.weight.val(), self.eps)
    }

    /// `x` to be normalized by this norm by the layers that read it, which fuse the norm into their input
    /// quantization where the backend can ([`crate::nn::forward_shared`]).
    pub fn lazy<const D: usize>(&self, x: Tensor<B, D>) -> Normed<'_, B, D> {
        Normed {
            x,
            norm: Some(self),
        }
    }

    /// The weight and epsilon as the fused ops take them.
    pub(crate) fn op(&self) -> ops::Norm<B> {
        (self.weight.val(), self.eps)
    }
}

/// A layer input with the RMSNorm still to apply ([`RmsNorm::lazy`]), or none.
#[derive(Debug, Clone)]
pub struct Normed<'a, B: TernaryBackend, const D: usize> {
    /// The input before the norm.
    pub x: Tensor<B, D>,
    /// The norm to apply first.
    pub norm: Option<&'a RmsNorm<B>>,
}

impl<B: TernaryBackend, const D: usize> Normed<'_, B, D> {
    /// The normalized tensor, computed now.
    pub fn apply(self) -> Tensor<B, D> {
        match self.norm {
            Some(n) => n.forward(self.x),
            None => self.x,
        }
    }
}

impl<B: TernaryBackend, const D: usize> From<Tensor<B, D>> for Normed<'_, B, D> {
    fn from(x: Tensor<B, D>) -> Self {
        Self { x, norm: None }
    }
}
