//! The gated feed-forward network: `down(sub_norm(act(gate(x)) · up(x)))` with ReLU² or SiLU.

use bitnet_gguf::Activation;
use bitnet_kernels_cubecl::{Gate, TernaryBackend};
use burn::module::Module;
use burn::tensor::{Tensor, TensorPrimitive};

use crate::bit_linear::{forward_residual, forward_shared, ActQuant, BitLinear, BitLinearConfig};
use crate::norm::RmsNorm;
use crate::norm::RmsNormConfig;
use burn::config::Config;

/// Shape of a [`FeedForward`].
#[derive(Config, Debug)]
pub struct FeedForwardConfig {
    /// Model width.
    pub hidden: usize,
    /// Inner width.
    pub ffn: usize,
    /// ReLU² (true, the 2B-4T family) or SiLU.
    #[config(default = true)]
    pub relu2: bool,
    /// Epsilon of the sub-norm.
    #[config(default = 1e-5)]
    pub rms_eps: f64,
    /// Whether the BitNet `ffn_sub_norm` is present.
    #[config(default = true)]
    pub sub_norm: bool,
    /// Projections with latent float weights for training (see [`BitLinearConfig::trainable`]).
    #[config(default = false)]
    pub trainable: bool,
}

impl FeedForwardConfig {
    /// Zero weights, unit norms.
    pub fn init<B: TernaryBackend>(&self, device: &B::Device) -> FeedForward<B> {
        let lin = |i: usize, o: usize| {
            BitLinearConfig::new(i, o, i)
                .with_trainable(self.trainable)
                .init(device)
        };
        FeedForward {
            gate: lin(self.hidden, self.ffn),
            up: lin(self.hidden, self.ffn),
            down: lin(self.ffn, self.hidden),
            sub_norm: self.sub_norm.then(|| {
                RmsNormConfig::new(self.ffn)
                    .with_eps(self.rms_eps)
                    .init(device)
            }),
            activation: if self.relu2 {
                Activation::Relu2
            } else {
                Activation::Silu
            },
        }
    }
}

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
    /// `x + ffn(x)` for `x [batch, seq, hidden]`, normalized first by `norm` (the block's `ffn_norm`, fused with
    /// the gate and up projections' input quantization where the backend can), the residual added by the down
    /// projection's op. The activation stays in f32 (ReLU² overflows f16).
    pub fn forward(&self, x: Tensor<B, 3>, norm: &RmsNorm<B>, act: ActQuant) -> Tensor<B, 3> {
        let [g, up]: [Tensor<B, 3>; 2] =
            forward_shared(&[&self.gate, &self.up], Some(norm), x.clone(), act)
                .try_into()
                .expect("two projections");
        let dims = g.dims();
        let rows = |t: Tensor<B, 3>| t.reshape([-1, dims[2] as i32]).into_primitive().tensor();
        let gate = match self.activation {
            Activation::Relu2 => Gate::Relu2,
            Activation::Silu => Gate::Silu,
        };
        let h = B::gated(rows(g), rows(up), gate);
        let h = Tensor::<B, 2>::from_primitive(TensorPrimitive::Float(h)).reshape(dims);
        forward_residual(&self.down, self.sub_norm.as_ref(), h, x, act)
    }
}
