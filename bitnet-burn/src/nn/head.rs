//! The output head quantized to int8 at load: a quarter of the F32 bytes (half of F16) read per token, where
//! the tied head of the 2B-4T shape is 56% of a decode step's reads even in F16.

use bitnet_kernels_cubecl::{ops, TernaryBackend};
use burn::module::{Module, Param};
use burn::tensor::{Int, Tensor};

/// How the output head is stored and computed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum HeadMode {
    /// Float weights as loaded (F16/F32 values held in f32), float activations: the reference numerics.
    #[default]
    Float,
    /// Int8 weights with one scale per row, activations quantized per token to int8, integer dot products.
    Int8,
}

/// An output head `[vocab, hidden]` quantized to int8 per row.
#[derive(Module, Debug)]
pub struct Int8Head<B: TernaryBackend> {
    /// Int8 weights `[vocab, hidden]`, values in [-127, 127], packed 4 per `u32` word (`[vocab, hidden / 4]`, see
    /// [`bitnet_kernels_cubecl::packing`]).
    pub weight: Param<Tensor<B, 2, Int>>,
    /// One scale per row `[vocab, 1]` (`max|row| / 127`).
    pub scales: Param<Tensor<B, 2>>,
}

impl<B: TernaryBackend> Int8Head<B> {
    /// Quantizes float head weights `[vocab, hidden]`.
    pub fn quantize(weight: Tensor<B, 2>) -> Self {
        let (q, scales) = ops::quantize_rows_i8(weight);
        Self {
            weight: Param::initialized(Default::default(), q),
            scales: Param::from_tensor(scales).set_require_grad(false),
        }
    }

    /// Logits `[tokens, vocab]` of hidden states `[tokens, hidden]`.
    pub fn forward(&self, x: Tensor<B, 2>) -> Tensor<B, 2> {
        ops::int8_matmul(x, self.weight.val(), self.scales.val())
    }
}
