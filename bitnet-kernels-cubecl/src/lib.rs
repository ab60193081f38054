//! The ternary (BitNet b1.58) matmul as a Burn backend extension.
//!
//! Weights are stored once, packed 2 bits per trit in `u32` words ([`packing`]), with one float scale per row
//! block; each backend implements [`TernaryBackend::ternary_matmul`] on that layout: burn-ndarray on the CPU
//! with the hand-written SIMD kernels of [`cpu`], CubeCL backends (wgpu, CUDA) and Autodiff through the portable Burn-ops
//! composition in [`burn_ops`].
#![warn(missing_docs)]

mod autodiff;
pub mod burn_ops;
pub mod cpu;
#[cfg(feature = "cube")]
mod cube;
pub mod device;
mod ndarray;
pub mod ops;
pub mod packing;
pub mod reference;

use burn::tensor::backend::Backend;
use burn::tensor::ops::{FloatTensor, IntTensor};
use burn::tensor::{Shape, TensorMetadata};

/// The gated FFN's activation (`act(gate) · up`): the model files' own enum, so one type names it everywhere.
pub use bitnet_gguf::Activation;

/// One sequence's part of an [`TernaryBackend::attention_step`]: its layer caches `k`, `v`
/// `[b, kv_heads, max_len, d]` and the `seq` positions from `start` that the step appends.
#[derive(Clone, Debug)]
pub struct StepKv<T> {
    /// Key cache.
    pub k: T,
    /// Value cache.
    pub v: T,
    /// Position of the step's first token of this sequence.
    pub start: usize,
    /// Tokens the step appends.
    pub seq: usize,
}

/// What a KV cache stores per element.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum CacheType {
    /// Half precision (llama.cpp's default): half the memory, and half the bytes attention reads per key.
    #[default]
    F16,
    /// Single precision: the reference numerics.
    F32,
    /// llama.cpp's `q8_0`: blocks of 32 values as int8 with an f16 scale (8.5 bits a value), about half of f16's
    /// memory; rows turned by llama.cpp's Walsh–Hadamard rotation first where the head width is a multiple of 64.
    /// For head widths that are a multiple of 32.
    Q8_0,
}

impl CacheType {
    /// What a row's width must be a multiple of: q8_0's block, f16's pair (the CubeCL backends pack two halves
    /// per 32-bit word).
    pub fn block(self) -> usize {
        match self {
            Self::F32 => 1,
            Self::F16 => 2,
            Self::Q8_0 => bitnet_gguf::quant::Q8_0_VALUES,
        }
    }

    /// Bytes a row of `d` values takes (`d` a multiple of [`CacheType::block`]).
    pub fn row_bytes(self, d: usize) -> usize {
        match self {
            Self::F32 => 4 * d,
            Self::F16 => 2 * d,
            Self::Q8_0 => d / self.block() * bitnet_gguf::quant::Q8_0_BYTES,
        }
    }
}

/// A backend that can multiply activations by packed ternary weights.
pub trait TernaryBackend: Backend {
    /// What [`TernaryBackend::kv_cache_zeros`] can store (its attention ops then read such caches); f32 always.
    const CACHE_TYPES: &'static [CacheType] = &[CacheType::F32];

    /// A zeroed KV cache of `[b, kv_heads, max_len, d]` values stored as `cache`, for
    /// [`TernaryBackend::attention_step`] and [`TernaryBackend::cached_attention`]. Called only with one of
    /// [`TernaryBackend::CACHE_TYPES`] and a `d` that is a multiple of its [`CacheType::block`]; the default
    /// allocates f32.
    fn kv_cache_zeros(
        shape: [usize; 4],
        cache: CacheType,
        device: &Self::Device,
    ) -> FloatTensor<Self> {
        debug_assert!(Self::CACHE_TYPES.contains(&cache));
        Self::float_zeros(shape.into(), device, burn::tensor::FloatDType::F32)
    }

    /// `dst` with its positions `0..len` replaced by those of `src`: two caches made by
    /// [`TernaryBackend::kv_cache_zeros`] with one cache type, `b`, `kv_heads` and `d` (their positions may differ;
    /// `len` fits both). Moves a prompt's keys and values between caches instead of running it again. The default
    /// slices and assigns, which CubeCL does whatever the element type.
    fn kv_cache_copy(
        src: FloatTensor<Self>,
        dst: FloatTensor<Self>,
        len: usize,
    ) -> FloatTensor<Self> {
        let first = |t: &FloatTensor<Self>| {
            let s = t.shape();
            [0..s[0], 0..s[1], 0..len, 0..s[3]].map(burn::tensor::Slice::from)
        };
        let (from, to) = (first(&src), first(&dst));
        Self::float_slice_assign(dst, &to, Self::float_slice(src, &from))
    }

    /// Packed weights `w [n, words]` (dtype `U32`) and their `scales [n, blocks]`, just uploaded, laid out as
    /// this backend's kernels read them, once at load. CUDA uploads rows padded to an aligned pitch, which the
    /// kernels would otherwise copy out at every call; the default returns them as they are.
    fn dense_weights(
        w: IntTensor<Self>,
        scales: FloatTensor<Self>,
    ) -> (IntTensor<Self>, FloatTensor<Self>) {
        (w, scales)
    }

    /// `y[m, n] = Σ_b scales[n, b] · Σ_{k ∈ block b} x[m, k] · trit[n, k]`.
    ///
    /// `x` is `[m, k]` float, `w` the `[n, ceil(k/16)]` packed words (dtype `U32`), `scales` `[n, k/block]`
    /// where `k` is a whole number of blocks (every format has whole blocks: TQ* 256, per-tensor scales `k`).
    fn ternary_matmul(
        x: FloatTensor<Self>,
        w: IntTensor<Self>,
        scales: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        burn_ops::ternary_matmul::<Self>(x, w, scales)
    }

    /// BitLinear in int8 mode: each row of `x` quantized per token to int8 (absmax, scale `s`, see
    /// [`reference::quantize_row_i8`]), multiplied by the trits with integer accumulation, then
    /// `y = ternary_matmul(q, w, scales) / s`.
    fn ternary_matmul_i8(
        x: FloatTensor<Self>,
        w: IntTensor<Self>,
        scales: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        burn_ops::ternary_matmul_i8::<Self>(x, w, scales)
    }

    /// BitLinears in int8 mode on one input (q/k/v, gate/up), after an optional RMSNorm: `x` normalized by
    /// [`TernaryBackend::rms_norm`] with `norm = (weight, eps)` when given, then
    /// [`TernaryBackend::ternary_matmul_i8`] by each `(w, scales)` of `layers`. An op so backends quantize a
    /// shared input once, and GPU backends fuse the norm into that quantization.
    fn bit_linears_i8(
        x: FloatTensor<Self>,
        norm: Option<(FloatTensor<Self>, f64)>,
        layers: Vec<(IntTensor<Self>, FloatTensor<Self>)>,
    ) -> Vec<FloatTensor<Self>> {
        burn_ops::bit_linears_i8::<Self>(x, norm, layers)
    }

    /// `residual [m, n] +` the layer of [`TernaryBackend::bit_linear_i8_residual`] on the FFN's gated activation
    /// `act(gate) · up` (`gate`, `up` `[m, k]`) after its norm: the FFN's down projection. An op so GPU backends
    /// compute the gate inside the activation quantization instead of one more launch.
    fn gated_bit_linear_i8_residual(
        gate: FloatTensor<Self>,
        up: FloatTensor<Self>,
        act: Activation,
        norm: Option<(FloatTensor<Self>, f64)>,
        layer: (IntTensor<Self>, FloatTensor<Self>),
        residual: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        Self::bit_linear_i8_residual(Self::gated(gate, up, act), norm, layer, residual)
    }

    /// `residual [m, n] +` the one layer of [`TernaryBackend::bit_linears_i8`]: a block's output projection
    /// added to the residual stream. An op so GPU backends add in the matmul's kernel instead of one more launch.
    fn bit_linear_i8_residual(
        x: FloatTensor<Self>,
        norm: Option<(FloatTensor<Self>, f64)>,
        layer: (IntTensor<Self>, FloatTensor<Self>),
        residual: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        burn_ops::bit_linear_i8_residual::<Self>(x, norm, layer, residual)
    }

    /// `x` with the dimensions `shape` (same element count). An op because burn-ndarray's reshape copies every
    /// tensor (its view of the new shape is copied into a new array), ~15 copies per block and token.
    fn reshape(x: FloatTensor<Self>, shape: Shape) -> FloatTensor<Self> {
        Self::float_reshape(x, shape)
    }

    /// The float output head: `y[m, n] = x[m, k] · w[n, k]ᵀ` without materializing `wᵀ` (`w` is the
    /// `[vocab, hidden]` embedding when tied).
    fn float_matmul_nt(x: FloatTensor<Self>, w: FloatTensor<Self>) -> FloatTensor<Self> {
        burn_ops::float_matmul_nt::<Self>(x, w)
    }

    /// The int8 output head: `y[m, n] = Σ_k q[m, k] · w[n, k] · scales[n] / s_m` for int8 weights `w [n, k]`
    /// (values in [-127, 127], packed 4 per word as [`packing`] defines: `[n, ceil(k/4)]`, dtype `U32`), one
    /// scale per row `scales [n, 1]`, and `x` quantized per token as in [`TernaryBackend::ternary_matmul_i8`].
    fn int8_matmul(
        x: FloatTensor<Self>,
        w: IntTensor<Self>,
        scales: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        burn_ops::int8_matmul::<Self>(x, w, scales)
    }

    /// The int8 head's weights from float `w [n, k]`: each row quantized to [-127, 127] with its own scale
    /// `max|row| / 127` ([`cpu::quantize_rows_i8`]), returned as the packed words `[n, ceil(k/4)]` (dtype `U32`)
    /// and the scales `[n, 1]` that [`TernaryBackend::int8_matmul`] takes. An op so the CPU backend reads the
    /// weights in place: turning the 1.3 GB tied embedding of the 2B-4T shape into `TensorData` copied it
    /// element by element, 17 of the 22 seconds of loading.
    fn quantize_rows_i8(w: FloatTensor<Self>) -> (IntTensor<Self>, FloatTensor<Self>) {
        burn_ops::quantize_rows_i8::<Self>(w)
    }

    /// RMSNorm of each row of `x [rows, size]`: `x · (1 / sqrt(mean(x²) + eps)) · weight[size]`, in that order
    /// (transformers' and llama.cpp's; dividing instead moves results by an ulp, enough to flip int8 activation
    /// roundings downstream). An op so GPU backends run it as one kernel instead of seven.
    fn rms_norm(x: FloatTensor<Self>, weight: FloatTensor<Self>, eps: f64) -> FloatTensor<Self> {
        burn_ops::rms_norm::<Self>(x, weight, eps)
    }

    /// NEOX (rotate-half) rotary embedding of `x [b, heads, seq, d]` whose tokens sit at positions
    /// `start..start + seq`: with `cos`, `sin` `[positions, half]` and `i < half`, dimension `i` becomes
    /// `x[i]·cos − x[i + half]·sin` and `i + half` becomes `x[i + half]·cos + x[i]·sin`; dimensions from `2·half`
    /// on pass through. Returns a contiguous tensor. An op so GPU backends run it as one kernel instead of ten.
    fn rope(
        x: FloatTensor<Self>,
        cos: FloatTensor<Self>,
        sin: FloatTensor<Self>,
        start: usize,
    ) -> FloatTensor<Self> {
        burn_ops::rope::<Self>(x, cos, sin, start)
    }

    /// One layer's step of the KV cache: [`TernaryBackend::rope`] on `q [b, heads, seq, d]` and
    /// `k [b, kv_heads, seq, d]` (tokens at positions `start..start + seq`), and the rotated `k` and `v` written
    /// into `k_cache`, `v_cache` `[b, kv_heads, max_len, d]` at those positions. Returns the rotated `q` and the
    /// two caches. An op so GPU backends run it as one kernel instead of four (two RoPEs, two writes).
    #[allow(clippy::too_many_arguments)]
    fn rope_append(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        cos: FloatTensor<Self>,
        sin: FloatTensor<Self>,
        start: usize,
        k_cache: FloatTensor<Self>,
        v_cache: FloatTensor<Self>,
    ) -> [FloatTensor<Self>; 3] {
        burn_ops::rope_append::<Self>(q, k, v, cos, sin, start, k_cache, v_cache)
    }

    /// The gated FFN activation `act(gate) · up` of two `[rows, n]` tensors, kept in f32 (ReLU² overflows f16).
    /// An op so GPU backends run it as one kernel instead of four.
    fn gated(gate: FloatTensor<Self>, up: FloatTensor<Self>, act: Activation) -> FloatTensor<Self> {
        burn_ops::gated::<Self>(gate, up, act)
    }

    /// Causal grouped-query attention over a KV cache: `q [b, heads, seq, d]` holds the queries of positions
    /// `len - seq..len`, `k` and `v` `[b, kv_heads, max_len, d]` the cache, of which the first `len` positions are
    /// valid; the `heads / kv_heads` consecutive query heads of a group share one KV head. Returns
    /// `softmax(q·kᵀ/√d + causal mask)·v` token-major, as `[b, seq, heads, d]`, so the output projection's input
    /// `[b, seq, heads·d]` is a free reshape (no copy, and on GPUs no extra launch). A separate op because, in Burn ops, narrowing
    /// the cache and regrouping the heads copy the whole cache on every step on some backends.
    fn cached_attention(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        len: usize,
    ) -> FloatTensor<Self> {
        burn_ops::cached_attention::<Self>(q, k, v, len)
    }

    /// One layer's attention for a step of several sequences, each with its own cache (continuous batching):
    /// `q [b, rows, heads·d]`, `k` and `v` `[b, rows, kv_heads·d]` are the projections of the step's rows,
    /// consecutive runs of `caches[i].seq` rows whose tokens sit at positions `caches[i].start..`. Each run's `q`
    /// and `k` are rotated ([`TernaryBackend::rope`] with `cos`, `sin`), its `k` and `v` written into its caches
    /// ([`TernaryBackend::rope_append`]), and its queries attend over them
    /// ([`TernaryBackend::cached_attention`]). Returns the output `[b, rows, heads·d]` and each sequence's
    /// caches. An op so the CPU runs all of a step's sequences as one parallel job, not a dozen small ops each.
    fn attention_step(
        qkv: [FloatTensor<Self>; 3],
        rope: (FloatTensor<Self>, FloatTensor<Self>),
        heads: usize,
        caches: Vec<StepKv<FloatTensor<Self>>>,
    ) -> (FloatTensor<Self>, Vec<[FloatTensor<Self>; 2]>) {
        burn_ops::attention_step::<Self>(qkv, rope, heads, caches)
    }
}
