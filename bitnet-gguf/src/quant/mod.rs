//! Per-type codecs: dequantize any supported type to f32, quantize the types our tools write, and stream
//! ternary weights row by row as trits plus block scales.

mod float;
mod i2_s;
mod q4;
mod q6_k;
mod q8_0;
mod ternary;
mod tq1_0;
mod tq2_0;

pub use float::{bf16_to_f32, f16_to_f32, f32_to_bf16, f32_to_f16};
pub use q8_0::{dequantize_q8_0_block, quantize_q8_0_block, Q8_0_BYTES, Q8_0_VALUES};
pub use ternary::{for_each_ternary_row, TernaryRow};

use crate::error::ErrorKind;
use crate::ggml_type::GgmlType;

/// Decodes `data` (exactly one tensor's bytes, I2_S trailer included) into `out` (its element count).
///
/// Values are bit-identical to ggml's reference dequantizers (and gguf-py's).
pub fn dequantize(
    tensor: &str,
    ty: GgmlType,
    data: &[u8],
    out: &mut [f32],
) -> Result<(), ErrorKind> {
    let expected = ty.data_size(out.len() as u64);
    if expected != Some(data.len() as u64) || !(out.len() as u64).is_multiple_of(ty.block_size()) {
        return Err(ErrorKind::WrongDataSize {
            tensor: tensor.into(),
            ty: ty.name().into(),
            dims: vec![out.len() as u64],
            expected: expected.unwrap_or(u64::MAX),
            found: data.len() as u64,
        });
    }
    match ty {
        GgmlType::F32 => float::dequantize_f32(data, out),
        GgmlType::F16 => float::dequantize_f16(data, out),
        GgmlType::BF16 => float::dequantize_bf16(data, out),
        GgmlType::Q8_0 => q8_0::dequantize(data, out),
        GgmlType::Q4_0 => q4::dequantize_q4_0(data, out),
        GgmlType::Q4_1 => q4::dequantize_q4_1(data, out),
        GgmlType::Q6K => q6_k::dequantize(data, out),
        GgmlType::TQ1_0 => tq1_0::dequantize(data, out),
        GgmlType::TQ2_0 => tq2_0::dequantize(data, out),
        GgmlType::I2S => i2_s::dequantize(data, out),
        _ => {
            return Err(ErrorKind::UnsupportedType {
                tensor: tensor.into(),
                ty: ty.name().into(),
                action: "decoded",
            })
        }
    }
    Ok(())
}

/// Encodes `values` (rows of `row_len`) as `ty`, with ggml's reference quantizers.
///
/// Ternary types round `value / scale` to {-1, 0, 1}: TQ* take the block's absmax as scale (as llama-quantize
/// does), I2_S the tensor's absmax (as bitnet.cpp does), so already-ternary weights are stored exactly.
pub fn quantize(
    tensor: &str,
    ty: GgmlType,
    values: &[f32],
    row_len: usize,
) -> Result<Vec<u8>, ErrorKind> {
    let block = ty.block_size() as usize;
    let blocked = if ty == GgmlType::I2S {
        values.len()
    } else {
        row_len
    };
    if row_len == 0 || !values.len().is_multiple_of(row_len) || blocked % block != 0 {
        return Err(ErrorKind::NotBlockMultiple {
            tensor: tensor.into(),
            ty: ty.name().into(),
            block: block as u64,
            ne0: blocked as u64,
        });
    }
    Ok(match ty {
        GgmlType::F32 => values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        GgmlType::F16 => values
            .iter()
            .flat_map(|&v| f32_to_f16(v).to_le_bytes())
            .collect(),
        GgmlType::BF16 => values
            .iter()
            .flat_map(|&v| f32_to_bf16(v).to_le_bytes())
            .collect(),
        GgmlType::Q8_0 => q8_0::quantize(values),
        GgmlType::TQ1_0 => tq1_0::quantize(values),
        GgmlType::TQ2_0 => tq2_0::quantize(values),
        GgmlType::I2S => i2_s::quantize(values),
        _ => {
            return Err(ErrorKind::UnsupportedType {
                tensor: tensor.into(),
                ty: ty.name().into(),
                action: "encoded",
            })
        }
    })
}

/// ggml's `lroundf(x * id)` clamped to a trit, as the TQ quantizers compute it.
fn trit(x: f32, inv_scale: f32) -> i8 {
    (x * inv_scale).round().clamp(-1.0, 1.0) as i8
}

/// Largest absolute value (0 for empty input).
fn absmax(values: &[f32]) -> f32 {
    values.iter().fold(0.0f32, |m, v| m.max(v.abs()))
}
