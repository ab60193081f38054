//! The gated feed-forward network: `down(sub_norm(act(gate(x)) · up(x)))` with ReLU² or SiLU.

use bitnet_kernels_cubecl::{ops, Activation, TernaryBackend};
use burn::config::Config;
use burn::module::Module;
use burn::tensor::Tensor;

use std::ops::Add;

use super::bit_linear::{forward_shared, ActQuant, BitLinear, BitLinearConfig};
use super::norm::{Normed, RmsNorm, RmsNormConfig};

/// Shape of a [`FeedForward`].
#[derive(Config, Debug)]
pub struct FeedForwardConfig {
    /// Model width.
    pub hidden: usize,
    /// Inner width.
    pub ffn: usize,
    /// ReLU² (the 2B-4T family) or SiLU.
    #[config(default = "Activation::Relu2")]
    pub activation: Activation,
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
            activation: self.activation,
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
    /// The FFN of `x [batch, seq, hidden]` (the block's normalized input), returning the down projection
    /// unapplied so the block adds it to the residual stream in one op. The activation stays in f32 (ReLU²
    /// overflows f16).
    pub fn forward<'a>(&'a self, x: Normed<'a, B, 3>, act: ActQuant) -> FfnOutput<'a, B> {
        let [gate, up]: [Tensor<B, 3>; 2] = forward_shared(&[&self.gate, &self.up], x, act)
            .try_into()
            .expect("two projections");
        FfnOutput {
            ffn: self,
            gate,
            up,
            act,
        }
    }
}

/// An FFN's gate and up projections, the down projection of `act(gate) · up` not yet applied
/// ([`FeedForward::forward`]): added to the residual stream it is one op with the packed int8 path
/// ([`TernaryBackend::gated_bit_linear_i8_residual`], whose GPU kernels compute the gate inside the activation
/// quantization), else the gate, then the down projection.
#[derive(Debug)]
pub struct FfnOutput<'a, B: TernaryBackend> {
    ffn: &'a FeedForward<B>,
    gate: Tensor<B, 3>,
    up: Tensor<B, 3>,
    act: ActQuant,
}

/// `residual + ffn(x)`: the FFN's down projection added to the residual stream.
impl<'a, B: TernaryBackend> Add<FfnOutput<'a, B>> for Tensor<B, 3> {
    type Output = Tensor<B, 3>;

    fn add(self, f: FfnOutput<'a, B>) -> Tensor<B, 3> {
        let FfnOutput { ffn, gate, up, act } = f;
        if !ffn.down.fused(act) {
            let h = Normed {
                x: ops::gated(gate, up, ffn.activation),
                norm: ffn.sub_norm.as_ref(),
            };
            return self + ffn.down.project(h, act);
        }
        let dims = self.dims();
        let norm = ffn.sub_norm.as_ref().map(|n| n.op());
        let y = ops::gated_bit_linear_i8_residual(
            [ops::rows(gate), ops::rows(up)],
            ffn.activation,
            norm,
            ffn.down.op(),
            ops::rows(self),
        );
        ops::reshape(y, dims)
    }
}
