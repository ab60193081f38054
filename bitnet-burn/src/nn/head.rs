//! The output head quantized to int8 at load: a quarter of the F32 bytes (half of F16) read per token, where
//! the tied head of the 2B-4T shape is 56% of a decode step's reads even in F16.

use bitnet_kernels_cubecl::packing::i8_words_per_row;
use bitnet_kernels_cubecl::{cpu, ops, TernaryBackend};
use burn::module::{Module, Param};
use burn::tensor::{DType, Int, Tensor, TensorData};

use super::embedding::Embedding;

/// How the output head is stored and computed.
///
/// Int8 is the default: it halves a 2B-4T decode step (the tied head is most of the bytes read per token) and
/// moved the shipped model's held-out perplexity by 0.005%.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum HeadMode {
    /// Float weights (F16/F32 values held in f32), float activations: the reference numerics, at the cost of a
    /// resident f32 copy of the head (1.3 GB for the 2B-4T shape).
    Float,
    /// Int8 weights with one scale per row, activations quantized per token to int8, integer dot products.
    #[default]
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

    /// Quantizes a token matrix: a float parameter on the device, or an encoded table row by row on the host
    /// across the rayon pool (never a whole f32 matrix).
    pub fn from_embedding(emb: &Embedding<B>, device: &B::Device) -> Self {
        let table = match emb {
            Embedding::Float(w) => return Self::quantize(w.val()),
            Embedding::Encoded(e) => &e.table,
        };
        let (n, k) = (table.rows(), table.cols());
        let words = i8_words_per_row(k);
        let (mut q, mut scales) = (vec![0u32; n * words], vec![0f32; n]);
        // A slice of rows at a time, released once quantized: the table's pages never all stay resident.
        const ROWS: usize = 4096;
        for (i, (q, s)) in q
            .chunks_mut(ROWS * words)
            .zip(scales.chunks_mut(ROWS))
            .enumerate()
        {
            let first = i * ROWS;
            cpu::quantize_rows_i8_into(k, |r, row| table.decode_rows(first + r, row), q, s);
            table.release_rows(first, s.len());
        }
        let (q, scales) = ops::dense_weights((
            Tensor::from_data(TensorData::new(q, [n, words]), (device, DType::U32)),
            Tensor::from_data(TensorData::new(scales, [n, 1]), device),
        ));
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
