//! GGUF → model: ternary matrices (I2_S, TQ1_0, TQ2_0, ternary-valued F32/F16/BF16) streamed row by row into
//! the packed layout; embeddings and norms dequantized from any type bitnet-gguf decodes.

use std::sync::Arc;

use bitnet_gguf::quant::for_each_ternary_row;
use bitnet_gguf::{ErrorKind, GgufFile};
use bitnet_kernels_cubecl::packing::{pack_row, words_per_row};

use super::{PackedTernary, WeightSource};
use crate::error::LoadError;
use crate::nn::RowTable;

fn check_dims(file: &GgufFile, name: &str, expected: &[u64]) -> Result<(), LoadError> {
    let info = file.require_tensor(name)?;
    if info.dims != expected {
        return Err(file
            .error(ErrorKind::ShapeMismatch {
                tensor: name.into(),
                expected: expected.to_vec(),
                found: info.dims.clone(),
            })
            .into());
    }
    Ok(())
}

impl WeightSource for Arc<GgufFile> {
    fn float(&self, name: &str, len: usize) -> Result<Vec<f32>, LoadError> {
        let info = self.require_tensor(name)?;
        if info.n_elements() != len as u64 {
            let expected = if len == info.dims[0] as usize {
                vec![len as u64]
            } else {
                vec![info.dims[0], len as u64 / info.dims[0]]
            };
            return Err(self
                .error(ErrorKind::ShapeMismatch {
                    tensor: name.into(),
                    expected,
                    found: info.dims.clone(),
                })
                .into());
        }
        Ok(self.dequantize(info)?)
    }

    fn has(&self, name: &str) -> bool {
        self.tensor(name).is_some()
    }

    fn ternary(&self, name: &str, in_f: usize, out_f: usize) -> Result<PackedTernary, LoadError> {
        check_dims(self, name, &[in_f as u64, out_f as u64])?;
        if !in_f.is_multiple_of(16) {
            return Err(LoadError::Tensor {
                file: self.name().into(),
                tensor: name.into(),
                message: format!("input width {in_f} is not a multiple of 16"),
            });
        }
        let kw = words_per_row(in_f);
        let mut words = vec![0u32; out_f * kw];
        let (mut scales, mut nb) = (Vec::new(), 1);
        let info = self.require_tensor(name)?;
        for_each_ternary_row(self, info, |r| {
            pack_row(r.trits, &mut words[r.row * kw..(r.row + 1) * kw]);
            nb = r.scales.len();
            scales.extend_from_slice(r.scales);
        })?;
        // Packed: the file's pages need not stay resident next to the copy.
        self.release(info, 0..info.size as usize);
        // BitNet models have one scale per matrix; formats with per-block scales (TQ1_0/TQ2_0) repeat it. One
        // scale per row is the same function and lets the kernels sum whole rows in integers.
        if nb > 1
            && scales
                .chunks_exact(nb)
                .all(|row| row.iter().all(|&s| s == row[0]))
        {
            scales = scales.iter().step_by(nb).copied().collect();
            nb = 1;
        }
        Ok(PackedTernary {
            words,
            scales,
            out: out_f,
            blocks: nb,
        })
    }

    fn table(&self, name: &str, rows: usize, cols: usize) -> Result<RowTable, LoadError> {
        check_dims(self, name, &[cols as u64, rows as u64])?;
        RowTable::mapped(self.clone(), self.require_tensor(name)?.clone())
    }
}
