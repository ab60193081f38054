//! The KV cache layouts of the CubeCL backends, told apart by the cache tensor's dtype: f32 values; f16 as
//! `U32` words of two halves ([`super::half`]); q8_0 as `I32` words ([`super::q8`]). A word of a packed layout
//! holds one element of each of its `planes` equal parts of the row, so one vector of words unpacks into
//! `planes` vectors of the row, at the places the query's vectors have.

use burn::tensor::{DType, Shape, TensorMetadata};
use burn_cubecl::tensor::CubeTensor;
use burn_cubecl::CubeRuntime;

use super::q8;
use crate::CacheType;

/// How a cache tensor holds its rows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Layout {
    /// `d` f32 values a row.
    F32,
    /// `d/2` words of two f16 halves.
    F16,
    /// `9d/32` words: q8_0 values and scales.
    Q8_0,
}

impl Layout {
    /// The layout of `cache`.
    pub fn of<R: CubeRuntime>(cache: &CubeTensor<R>) -> Self {
        match cache.dtype() {
            DType::U32 => Self::F16,
            DType::I32 => Self::Q8_0,
            _ => Self::F32,
        }
    }

    /// Parts of a row a word holds one element of each of.
    pub fn planes(self) -> usize {
        match self {
            Self::F32 => 1,
            Self::F16 => 2,
            Self::Q8_0 => q8::PLANES,
        }
    }

    /// Elements of the cache tensor per row of `d` values.
    pub fn row(self, d: usize) -> usize {
        match self {
            Self::Q8_0 => q8::row_words(d),
            _ => d / self.planes(),
        }
    }
}

/// A zeroed `[b, kv_heads, max_len, d]` cache of `cache` values (`d` a multiple of its block).
pub(super) fn zeros<R: CubeRuntime>(
    shape: [usize; 4],
    cache: CacheType,
    device: &R::Device,
) -> CubeTensor<R> {
    let [b, kv_heads, max_len, d] = shape;
    let (layout, dtype) = match cache {
        CacheType::F32 => (Layout::F32, DType::F32),
        CacheType::F16 => (Layout::F16, DType::U32),
        CacheType::Q8_0 => (Layout::Q8_0, DType::I32),
    };
    let shape = Shape::new([b, kv_heads, max_len, layout.row(d)]);
    super::dense_zeros::<R>(device, shape, dtype)
}
