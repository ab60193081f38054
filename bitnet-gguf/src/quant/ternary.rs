//! Streaming a ternary weight matrix row by row as trits plus block scales, whatever its storage type, so an
//! importer can repack it without materialising the float matrix.

use crate::error::ErrorKind;
use crate::file::{GgufFile, TensorInfo};
use crate::ggml_type::GgmlType;

/// Decodes one block's trits.
type TritFn = fn(&[u8], &mut [i8]);
/// Reads one block's scale.
type ScaleFn = fn(&[u8]) -> f32;

/// One row of a ternary matrix: `value[k] = trits[k] · scales[k / block]`.
pub struct TernaryRow<'a> {
    /// Row index.
    pub row: usize,
    /// One of -1, 0, 1 per column.
    pub trits: &'a [i8],
    /// One scale per `block` columns.
    pub scales: &'a [f32],
    /// Columns per scale.
    pub block: usize,
}

/// Largest relative distance from a multiple of the tensor scale that a float weight may have and still count
/// as ternary (f16 storage of `±scale` is exact; anything beyond rounding noise means the weights are not ternary).
const TERNARY_TOLERANCE: f32 = 1e-3;

/// Calls `f` for every row of a 2-D ternary-valued tensor stored as I2_S, TQ1_0, TQ2_0 or as floats whose values
/// are all in {-s, 0, s} for one per-tensor `s` (what llama.cpp's converter writes for F32/F16 BitNet files).
/// A value outside the three levels (a 2-bit code 3, a float off them) is an [`ErrorKind::NotTernary`] naming its
/// row and column, after `f` has seen the rows before it.
pub fn for_each_ternary_row(
    file: &GgufFile,
    info: &TensorInfo,
    mut f: impl FnMut(TernaryRow<'_>),
) -> Result<(), crate::GgufError> {
    let data = file.tensor_data(info);
    let (rows, cols) = info.rows_cols();
    let mut trits = vec![0i8; cols];
    match info.ty {
        GgmlType::I2S => {
            let s = [super::i2_s::scale(data)];
            if cols % 128 != 0 {
                return Err(not_blocked(file, info, 128));
            }
            for row in 0..rows {
                super::i2_s::trits(data, row * cols, &mut trits);
                no_code_3(file, info, row, &trits)?;
                f(TernaryRow {
                    row,
                    trits: &trits,
                    scales: &s,
                    block: cols,
                });
            }
        }
        GgmlType::TQ1_0 | GgmlType::TQ2_0 => {
            let (bytes, trit_fn, scale_fn): (usize, TritFn, ScaleFn) = match info.ty {
                GgmlType::TQ1_0 => (54, super::tq1_0::trits, super::tq1_0::scale),
                _ => (66, super::tq2_0::trits, super::tq2_0::scale),
            };
            let mut scales = vec![0f32; cols / 256];
            for (row, rb) in data.chunks_exact(cols / 256 * bytes).enumerate() {
                for ((b, t), s) in rb
                    .chunks_exact(bytes)
                    .zip(trits.chunks_exact_mut(256))
                    .zip(&mut scales)
                {
                    trit_fn(b, t);
                    *s = scale_fn(b);
                    if !s.is_finite() {
                        // the f16 scale ends the block
                        let at = b.as_ptr() as usize - data.as_ptr() as usize + bytes - 2;
                        return Err(file.error(ErrorKind::BadScale {
                            tensor: info.name.clone(),
                            ty: info.ty,
                            scale: *s,
                            offset: file.data_offset() + info.offset + at as u64,
                        }));
                    }
                }
                no_code_3(file, info, row, &trits)?;
                f(TernaryRow {
                    row,
                    trits: &trits,
                    scales: &scales,
                    block: 256,
                });
            }
        }
        GgmlType::F32 | GgmlType::F16 | GgmlType::BF16 => {
            let mut values = vec![0f32; rows * cols];
            super::dequantize(&info.name, info.ty, data, &mut values).map_err(|k| file.error(k))?;
            let s = super::absmax(&values);
            let id = if s != 0.0 { 1.0 / s } else { 0.0 };
            for (row, v) in values.chunks_exact(cols).enumerate() {
                for (column, (t, &x)) in trits.iter_mut().zip(v).enumerate() {
                    *t = super::trit(x, id);
                    if (x - *t as f32 * s).abs() > TERNARY_TOLERANCE * s || !x.is_finite() {
                        return Err(not_ternary(
                            file,
                            info,
                            (row, column),
                            x.to_string(),
                            format!(
                                "a {} ternary weight holds 0 or ±{s} (its largest magnitude)",
                                info.ty
                            ),
                        ));
                    }
                }
                f(TernaryRow {
                    row,
                    trits: &trits,
                    scales: &[s],
                    block: cols,
                });
            }
        }
        other => {
            return Err(file.error(ErrorKind::UnsupportedType {
                tensor: info.name.clone(),
                ty: format!("{other} (not a ternary or float type)"),
                action: "decoded",
            }))
        }
    }
    Ok(())
}

/// Refuses a row of I2_S or TQ2_0 trits decoded from a code 3 (trit 2): no quantizer writes one, and the
/// packed kernels would not agree on its value.
fn no_code_3(
    file: &GgufFile,
    info: &TensorInfo,
    row: usize,
    trits: &[i8],
) -> Result<(), crate::GgufError> {
    // A fold over the whole row vectorizes; the position is looked for only once one is known to be there.
    if trits.iter().fold(0, |m, &t| m.max(t)) <= 1 {
        return Ok(());
    }
    let column = trits.iter().position(|&t| t > 1).unwrap_or_default();
    Err(not_ternary(
        file,
        info,
        (row, column),
        "code 3".into(),
        format!(
            "a {} weight holds 2-bit codes 0, 1, 2 (trits -1, 0, +1)",
            info.ty
        ),
    ))
}

fn not_ternary(
    file: &GgufFile,
    info: &TensorInfo,
    (row, column): (usize, usize),
    found: String,
    expected: String,
) -> crate::GgufError {
    file.error(ErrorKind::NotTernary {
        tensor: info.name.clone(),
        found: format!("{found} at row {row}, column {column}"),
        expected,
    })
}

fn not_blocked(file: &GgufFile, info: &TensorInfo, block: u64) -> crate::GgufError {
    file.error(ErrorKind::NotBlockMultiple {
        tensor: info.name.clone(),
        ty: info.ty.name().into(),
        block,
        ne0: info.dims[0],
    })
}
