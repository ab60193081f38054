//! The portable path, and the tails the SIMD paths leave.

use super::ternary::ActTile;
use crate::reference::TernaryShape;

/// Adds Σ code·q per block to `out[t · out_stride + r · blocks + b]` for bytes `from..` of each packed row `r`
/// of `rows` (`row_bytes` apart) and the tile's tokens of permuted activations: the whole computation on the
/// portable path, the ragged tail after the SIMD paths' whole chunks. Byte `i` holds columns `4i..4i+4`.
pub(crate) fn ternary_rows_dots(
    rows: &[u8],
    row_bytes: usize,
    from: usize,
    acts: ActTile,
    shape: TernaryShape,
    out: &mut [i32],
    out_stride: usize,
) {
    if from * 4 >= shape.k {
        return;
    }
    let ActTile {
        q,
        stride,
        tokens,
        chunk,
        ..
    } = acts;
    let (nb, chunk_bytes) = (shape.blocks(), chunk / 4);
    for (r, row) in rows.chunks_exact(row_bytes).enumerate() {
        for (i, &byte) in row.iter().enumerate().skip(from) {
            let (c, b) = (i / chunk_bytes, i % chunk_bytes);
            for s in 0..4 {
                let col = 4 * i + s;
                if col >= shape.k {
                    break;
                }
                let code = ((byte >> (2 * s)) & 3) as i32;
                let qi = c * chunk + s * chunk_bytes + b;
                let blk = col / shape.block;
                for t in 0..tokens {
                    out[t * out_stride + r * nb + blk] += code * q[t * stride + qi] as i32;
                }
            }
        }
    }
}

/// `out[t] = Σ_{i ≥ from} w[i] · q[t · stride + i]` added for `tokens` tokens.
pub(crate) fn int8_row_dots(
    w: &[i8],
    from: usize,
    q: &[i8],
    stride: usize,
    tokens: usize,
    out: &mut [i32],
) {
    for (t, o) in out.iter_mut().enumerate().take(tokens) {
        let qt = &q[t * stride..];
        *o += w[from..]
            .iter()
            .zip(&qt[from..])
            .map(|(&a, &b)| a as i32 * b as i32)
            .sum::<i32>();
    }
}
