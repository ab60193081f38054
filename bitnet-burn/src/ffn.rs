//! The gated feed-forward network: `down(sub_norm(act(gate(x)) · up(x)))` with ReLU² or SiLU.

use bitnet_gguf::Activation;
use bitnet_kernels_cubecl::TernaryBackend;
use burn::module::Module;
use burn::tensor::activation::{relu, silu};
use burn::tensor::Tensor;

use crate::bit_linear::{ActQuant, BitLinear};
use crate::norm::RmsNorm;

/// The FFN of one block.
#[derive(Module, Debug)]
pub struct FeedForward<B: TernaryBackend> {
    /// Gate projection.
    pub gate: BitLinear<B>,
    /// Up projection.
    pub up: BitLinear<B>,
    /// Down projection.
    pub down: BitLinear<B>,
    /// `ffn_sub_norm` (BitNet b1.58); absent in plain llama-architecture files.
    pub sub_norm: Option<RmsNorm<B>>,
    /// ReLU² (2B-4T family) or SiLU.
    #[module(skip)]
    pub activation: Activation,
}

impl<B: TernaryBackend> FeedForward<B> {
    /// `[batch, seq, hidden]` → `[batch, seq, hidden]`. The activation stays in f32 (ReLU² overflows f16).
    pub fn forward(&self, x: Tensor<B, 3>, act: ActQuant) -> Tensor<B, 3> {
        let g = self.gate.forward(x.clone(), act);
        let g = match self.activation {
            Activation::Relu2 => relu(g).powi_scalar(2),
            Activation::Silu => silu(g),
        };
        let h = g * self.up.forward(x, act);
        let h = match &self.sub_norm {
            Some(norm) => norm.forward(h),
            None => h,
        };
        self.down.forward(h, act)
    }
}
