//! A validated GGUF v2/v3 reader and writer for BitNet b1.58 models, with no Burn dependency.
//!
//! Reads every file a BitNet user meets (microsoft's official I2_S file, bitnet.cpp's and llama.cpp's converters,
//! `llama-quantize` output, our own exporter) zero-copy over `memmap2`, and refuses broken or hostile files with an
//! error naming the file, the key or tensor, the offset and expected vs found.
#![warn(missing_docs)]

mod config;
mod cursor;
mod error;
mod file;
mod ggml_type;
mod metadata;
pub mod quant;
mod writer;

pub use config::{Activation, ModelConfig, Overrides, RopeType, ARCHITECTURES, PRESETS};
pub use cursor::MAX_NESTING;
pub use error::{ErrorKind, GgufError, Result};
pub use file::{GgufFile, TensorInfo, DEFAULT_ALIGNMENT, MAGIC, MAX_DIMS};
pub use ggml_type::{GgmlType, I2S_BLOCK, I2S_TRAILER};
pub use metadata::{type_id, type_name, Array, Value};
pub use writer::GgufWriter;

impl GgufFile {
    /// Decodes a whole tensor to f32 (bit-identical to ggml's dequantizers).
    pub fn dequantize(&self, info: &TensorInfo) -> Result<Vec<f32>> {
        let mut out = vec![0f32; info.n_elements() as usize];
        quant::dequantize(&info.name, info.ty, self.tensor_data(info), &mut out)
            .map_err(|k| self.error(k))?;
        Ok(out)
    }

    /// Bytes of one row of `info` (a matrix of `dims[0]`-value rows stored in whole blocks, so that rows decode one at a time), or an error for a type whose blocks are
    /// not whole rows.
    pub fn row_bytes(&self, info: &TensorInfo) -> Result<usize> {
        let cols = info.dims[0];
        match info.ty.data_size(cols) {
            Some(b) if info.ty != GgmlType::I2S && cols.is_multiple_of(info.ty.block_size()) => {
                Ok(b as usize)
            }
            _ => Err(self.error(ErrorKind::NotBlockMultiple {
                tensor: info.name.clone(),
                ty: info.ty.name().into(),
                block: info.ty.block_size(),
                ne0: cols,
            })),
        }
    }
}
