//! BitLinear: a linear layer with packed ternary weights and per-block scales, int8 or float activations; while
//! training, latent float weights ternarized on the fly (BitNet b1.58 quantization-aware training).

use std::ops::Add;

use bitnet_kernels_cubecl::packing::{pack_row, words_per_row};
use bitnet_kernels_cubecl::{ops, TernaryBackend};
use burn::config::Config;
use burn::module::{Module, Param};
use burn::tensor::{DType, Distribution, Int, Tensor, TensorData};

use super::norm::Normed;

/// How BitLinear treats its input.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ActQuant {
    /// BitNet b1.58 semantics: per-token absmax int8 (`s = 127 / max(|x|, 1e-5)`, round half to even, clamp
    /// to [-128, 127]), integer accumulation, then rescale.
    #[default]
    Int8,
    /// Float activations (what llama.cpp computes on F32/F16 files; used for comparisons and training).
    Float,
    /// llama.cpp's numerics on TQ1_0/TQ2_0 weights: int8 activations with one absmax scale per 256-column block
    /// (its Q8_K) instead of per token, so our output can be compared with llama.cpp's token for token. Widths
    /// that are not a multiple of 256 use one block per token, as [`ActQuant::Int8`].
    Q8K,
}

/// Columns per activation block of [`ActQuant::Q8K`] (llama.cpp's `QK_K`).
const Q8K_BLOCK: usize = 256;

/// Shape of a [`BitLinear`].
#[derive(Config, Debug)]
pub struct BitLinearConfig {
    /// Input features (a multiple of 16).
    pub in_features: usize,
    /// Output features.
    pub out_features: usize,
    /// Columns sharing one scale (`in_features` for a per-tensor scale, 256 for TQ1_0/TQ2_0).
    pub block: usize,
    /// Latent float weights for training (uniform ±1/√in, as `nn::Linear` starts), instead of zero trits.
    #[config(default = false)]
    pub trainable: bool,
}

/// A ternary linear layer: `y = x · (trits ⊙ scales)ᵀ`, trits packed 16 per `u32` (see `bitnet_kernels_cubecl::packing`).
#[derive(Module, Debug)]
pub struct BitLinear<B: TernaryBackend> {
    /// Packed trits `[out, in/16]`, dtype U32.
    pub weight: Param<Tensor<B, 2, Int>>,
    /// Scales `[out, in/block]`.
    pub scales: Param<Tensor<B, 2>>,
    /// Latent float weights `[out, in]` while training: each forward ternarizes them with absmean and the
    /// gradient passes straight through. `None` for loaded or [frozen](BitLinear::freeze) layers.
    pub latent: Option<Param<Tensor<B, 2>>>,
}

impl BitLinearConfig {
    /// A layer with every trit 0 and every scale 1 (weights come from an importer), or with random latent weights
    /// when `trainable`.
    pub fn init<B: TernaryBackend>(&self, device: &B::Device) -> BitLinear<B> {
        let mut layer = self.zeros(device);
        if self.trainable {
            let bound = 1.0 / (self.in_features as f64).sqrt();
            layer.latent = Some(Param::from_tensor(Tensor::random(
                [self.out_features, self.in_features],
                Distribution::Uniform(-bound, bound),
                device,
            )));
        }
        layer
    }

    fn zeros<B: TernaryBackend>(&self, device: &B::Device) -> BitLinear<B> {
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
        let (weight, scales) = ops::dense_weights((
            Tensor::from_data(TensorData::new(words, [out, kw]), (device, DType::U32)),
            Tensor::from_data(TensorData::new(scales, [out, nb]), device),
        ));
        Self {
            weight: Param::initialized(Default::default(), weight),
            scales: Param::from_tensor(scales).set_require_grad(false),
            latent: None,
        }
    }

    /// The inference layer of a trained one: latent weights ternarized once (absmean, one scale per tensor, as
    /// the training forward does) and packed. Layers without latent weights are returned as they are.
    pub fn freeze(self) -> Self {
        let Some(latent) = self.latent else {
            return self;
        };
        let w = latent.val();
        let device = w.device();
        let [out, inp] = w.dims();
        let values = w
            .into_data()
            .convert::<f32>()
            .to_vec::<f32>()
            .expect("float weights");
        let kw = words_per_row(inp);
        let mut words = vec![0u32; out * kw];
        let scale = absmean_ternarize(&values, inp, |row, trits| {
            pack_row(trits, &mut words[row * kw..(row + 1) * kw])
        });
        Self::from_packed(words, vec![scale; out], out, 1, &device)
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
        let x = ops::rows(x);
        if let Some(latent) = &self.latent {
            let y = qat_forward(x, latent.val(), act);
            dims[D - 1] = y.dims()[1];
            return y.reshape(dims);
        }
        let y = match act {
            ActQuant::Float => ops::ternary_matmul(x, self.op()),
            ActQuant::Int8 => ops::ternary_matmul_i8(x, self.op()),
            ActQuant::Q8K => ops::ternary_matmul(absmax_int8(x, q8k_block(k)), self.op()),
        };
        dims[D - 1] = self.out_features();
        ops::reshape(y, dims)
    }

    /// This layer applied to `input`, evaluated when added to the residual stream (`residual + projection`), so
    /// packed layers in [`ActQuant::Int8`] add inside the matmul's op
    /// ([`TernaryBackend::bit_linear_i8_residual`]); [`Projection::eval`] without a residual.
    pub fn project<'a, const D: usize>(
        &'a self,
        input: impl Into<Normed<'a, B, D>>,
        act: ActQuant,
    ) -> Projection<'a, B, D> {
        Projection {
            layer: self,
            input: input.into(),
            act,
        }
    }

    /// The packed words and scales as the ops take them.
    pub(super) fn op(&self) -> ops::Ternary<B> {
        (self.weight.val(), self.scales.val())
    }

    /// Whether [`ActQuant::Int8`] runs through the fused int8 ops (packed weights, not training).
    pub(super) fn fused(&self, act: ActQuant) -> bool {
        act == ActQuant::Int8 && self.latent.is_none()
    }
}

/// Layers of the same input width applied to one input `[..., in]` (q/k/v, gate/up), normalized first when the
/// input carries a norm. Packed layers in [`ActQuant::Int8`] take one backend op that normalizes and quantizes
/// the input once ([`TernaryBackend::bit_linears_i8`]); any other case runs the norm and then each layer's
/// [`BitLinear::forward`].
pub fn forward_shared<'a, B: TernaryBackend, const D: usize>(
    layers: &[&BitLinear<B>],
    input: impl Into<Normed<'a, B, D>>,
    act: ActQuant,
) -> Vec<Tensor<B, D>> {
    let input = input.into();
    if !layers.iter().all(|l| l.fused(act)) {
        let x = input.apply();
        return layers.iter().map(|l| l.forward(x.clone(), act)).collect();
    }
    let mut dims = input.x.dims();
    let weights = layers.iter().map(|l| l.op()).collect();
    ops::bit_linears_i8(ops::rows(input.x), input.norm.map(|n| n.op()), weights)
        .into_iter()
        .zip(layers)
        .map(|(y, l)| {
            dims[D - 1] = l.out_features();
            ops::reshape(y, dims)
        })
        .collect()
}

/// A [`BitLinear`] and its input, not yet multiplied ([`BitLinear::project`]).
#[derive(Debug)]
pub struct Projection<'a, B: TernaryBackend, const D: usize> {
    layer: &'a BitLinear<B>,
    input: Normed<'a, B, D>,
    act: ActQuant,
}

impl<B: TernaryBackend, const D: usize> Projection<'_, B, D> {
    /// The layer's output.
    pub fn eval(self) -> Tensor<B, D> {
        forward_shared(&[self.layer], self.input, self.act).remove(0)
    }
}

/// `residual + layer(norm(x))`: a block's output projection added to the residual stream.
impl<'a, B: TernaryBackend, const D: usize> Add<Projection<'a, B, D>> for Tensor<B, D> {
    type Output = Tensor<B, D>;

    fn add(self, p: Projection<'a, B, D>) -> Tensor<B, D> {
        if !p.layer.fused(p.act) {
            return self + p.eval();
        }
        let dims = self.dims();
        let norm = p.input.norm.map(|n| n.op());
        let (x, residual) = (ops::rows(p.input.x), ops::rows(self));
        ops::reshape(
            ops::bit_linear_i8_residual(x, norm, p.layer.op(), residual),
            dims,
        )
    }
}

/// BitNet b1.58's absmean ternarization of a `[rows, row_len]` matrix: `scale = max(mean|W|, 1e-5)` (accumulated in
/// f64), trits `clamp(round(W / scale), -1, 1)` handed to `row_out` row by row; returns the scale. Training
/// ([`BitLinear::freeze`]) and float-master import share it, so both round the same trits.
pub(crate) fn absmean_ternarize(
    values: &[f32],
    row_len: usize,
    mut row_out: impl FnMut(usize, &[i8]),
) -> f32 {
    let sum: f64 = values.iter().map(|v| v.abs() as f64).sum();
    let scale = ((sum / values.len().max(1) as f64) as f32).max(1e-5);
    let mut trits = vec![0i8; row_len];
    for (row, wr) in values.chunks_exact(row_len).enumerate() {
        for (t, &v) in trits.iter_mut().zip(wr) {
            *t = (v / scale).round_ties_even().clamp(-1.0, 1.0) as i8;
        }
        row_out(row, &trits);
    }
    scale
}

/// The training forward of BitNet b1.58 on `x [n, in]`: weights `clamp(round(W / mean|W|), -1, 1) · mean|W|`,
/// activations per-token absmax int8 (for [`ActQuant::Int8`]; per 256-column block for [`ActQuant::Q8K`]), each through a straight-through estimator
/// (`v + (q(v) − v).detach()`), so the forward sees the quantized values and the gradient reaches `W` and `x`
/// unchanged.
pub fn qat_forward<B: TernaryBackend>(
    x: Tensor<B, 2>,
    w: Tensor<B, 2>,
    act: ActQuant,
) -> Tensor<B, 2> {
    let scale = w.clone().abs().mean().clamp_min(1e-5).unsqueeze::<2>();
    let wq = (w.clone() / scale.clone()).round().clamp(-1.0, 1.0) * scale;
    let w = w.clone() + (wq - w).detach();
    let k = x.dims()[1];
    let x = match act {
        ActQuant::Float => x,
        ActQuant::Int8 => x.clone() + (absmax_int8(x.clone(), k) - x).detach(),
        ActQuant::Q8K => x.clone() + (absmax_int8(x.clone(), q8k_block(k)) - x).detach(),
    };
    x.matmul(w.transpose())
}

fn q8k_block(k: usize) -> usize {
    if k.is_multiple_of(Q8K_BLOCK) {
        Q8K_BLOCK
    } else {
        k
    }
}

/// `x [n, k]` rounded to int8 levels with one absmax scale per `block` columns (`s = 127 / max(|x|, 1e-5)`,
/// round half to even, clamp to [-128, 127]) and scaled back.
fn absmax_int8<B: TernaryBackend>(x: Tensor<B, 2>, block: usize) -> Tensor<B, 2> {
    let [n, k] = x.dims();
    let x: Tensor<B, 3> = x.reshape([n, k / block, block]);
    let s = x.clone().abs().max_dim(2).clamp_min(1e-5).recip() * 127.0;
    let q = (x * s.clone()).round().clamp(-128.0, 127.0) / s;
    q.reshape([n, k])
}
