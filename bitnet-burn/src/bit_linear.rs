//! BitLinear: a linear layer with packed ternary weights and per-block scales, int8 or float activations.

use bitnet_kernels_cubecl::packing::{pack_row, words_per_row};
use bitnet_kernels_cubecl::TernaryBackend;
use burn::config::Config;
use burn::module::{Module, Param};
use burn::tensor::{DType, Int, Tensor, TensorData, TensorPrimitive};

/// How BitLinear treats its input.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ActQuant {
    /// BitNet b1.58 semantics: per-token absmax int8 (`s = 127 / max(|x|, 1e-5)`, round half to even, clamp
    /// to [-128, 127]), integer accumulation, then rescale.
    #[default]
    Int8,
    /// Float activations (what llama.cpp computes on F32/F16 files; used for comparisons and training).
    Float,
}

/// Shape of a [`BitLinear`].
#[derive(Config, Debug)]
pub struct BitLinearConfig {
    /// Input features (a multiple of 16).
    pub in_features: usize,
    /// Output features.
    pub out_features: usize,
    /// Columns sharing one scale (`in_features` for a per-tensor scale, 256 for TQ1_0/TQ2_0).
    pub block: usize,
}

/// A ternary linear layer: `y = x · (trits ⊙ scales)ᵀ`, trits packed 16 per `u32` (see `bitnet_kernels_cubecl::packing`).
#[derive(Module, Debug)]
pub struct BitLinear<B: TernaryBackend> {
    /// Packed trits `[out, in/16]`, dtype U32.
    pub weight: Param<Tensor<B, 2, Int>>,
    /// Scales `[out, in/block]`.
    pub scales: Param<Tensor<B, 2>>,
}

impl BitLinearConfig {
    /// A layer with every trit 0 and every scale 1 (weights come from an importer or training).
    pub fn init<B: TernaryBackend>(&self, device: &B::Device) -> BitLinear<B> {
        let mut zero_row = vec![0u32; words_per_row(self.in_features)];
        pack_row(&vec![0i8; self.in_features], &mut zero_row);
        let nb = self.in_features.div_ceil(self.block);
        let words = zero_row.repeat(self.out_features);
        BitLinear::from_packed(
            words,
            vec![1.0; self.out_features * nb],
            self.out_features,
            nb,
            device,
        )
    }
}

impl<B: TernaryBackend> BitLinear<B> {
    /// Builds the layer from packed words `[out · in/16]` and scales `[out · nb]`.
    pub fn from_packed(
        words: Vec<u32>,
        scales: Vec<f32>,
        out: usize,
        nb: usize,
        device: &B::Device,
    ) -> Self {
        let kw = words.len() / out;
        let weight = Tensor::from_data(TensorData::new(words, [out, kw]), (device, DType::U32));
        let scales = Tensor::from_data(TensorData::new(scales, [out, nb]), device);
        Self {
            weight: Param::initialized(Default::default(), weight),
            scales: Param::from_tensor(scales).set_require_grad(false),
        }
    }

    /// Input features.
    pub fn in_features(&self) -> usize {
        self.weight.dims()[1] * 16
    }

    /// Output features.
    pub fn out_features(&self) -> usize {
        self.weight.dims()[0]
    }

    /// Applies the layer to `[..., in]`, giving `[..., out]`.
    pub fn forward<const D: usize>(&self, x: Tensor<B, D>, act: ActQuant) -> Tensor<B, D> {
        let mut dims = x.dims();
        let k = dims[D - 1];
        let x: Tensor<B, 2> = x.reshape([-1, k as i32]);
        let (w, scales) = (
            self.weight.val().into_primitive(),
            self.scales.val().into_primitive().tensor(),
        );
        let x = x.into_primitive().tensor();
        let y = match act {
            ActQuant::Float => B::ternary_matmul(x, w, scales),
            ActQuant::Int8 => B::ternary_matmul_i8(x, w, scales),
        };
        let y: Tensor<B, 2> = Tensor::from_primitive(TensorPrimitive::Float(y));
        dims[D - 1] = self.out_features();
        y.reshape(dims)
    }
}
