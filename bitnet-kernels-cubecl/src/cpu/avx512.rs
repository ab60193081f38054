//! x86-64 AVX-512 VNNI path: one 64-byte load of packed words holds 256 trits, shifted by `2s` and masked into
//! the unsigned codes (trit + 1) of 64 columns, and `vpdpbusd` multiplies them by 64 signed int8 activations
//! and adds each group of four products into an i32 lane in one instruction (no i16 stage to widen, so no
//! overflow bound). Tiles of 4 rows × 1..=4 tokens share both the activation loads (across rows) and the
//! unpacking (across tokens), and give 4-16 independent accumulator chains.

use std::arch::x86_64::*;

use super::scalar;
use super::ternary::ActTile;
use crate::reference::TernaryShape;

/// Columns per 64-byte load of packed words (see [`super::Isa::chunk`]).
const CHUNK: usize = 256;
/// Rows of a tile.
const ROWS: usize = 4;

/// See [`super::ternary::ternary_tile_dots`]: `rows` packed rows (`row_bytes` apart) × `tokens` activations
/// permuted in [`CHUNK`]-column chunks, cut into tiles of 4 rows (and a ragged last tile) × all the tokens.
///
/// # Safety
/// The CPU supports AVX-512 F, BW and VNNI; `tokens` is 1..=4; blocks are one per row or a multiple of
/// [`CHUNK`] columns; `q` holds `tokens` rows of `stride` bytes permuted in [`CHUNK`]-column chunks, spanning
/// every chunk of a row; `out` holds every row's dots.
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
pub(crate) unsafe fn ternary_tile_dots(
    rows: &[u8],
    row_bytes: usize,
    q: &[i8],
    stride: usize,
    tokens: usize,
    shape: TernaryShape,
    out: &mut [i32],
) {
    let tiles = Tiles {
        rows,
        row_bytes,
        q,
        stride,
        shape,
    };
    match tokens {
        1 => tiles.all::<1>(out),
        2 => tiles.all::<2>(out),
        3 => tiles.all::<3>(out),
        4 => tiles.all::<4>(out),
        other => unreachable!("{other} tokens"),
    }
}

/// The operands of a block of rows.
struct Tiles<'a> {
    rows: &'a [u8],
    row_bytes: usize,
    q: &'a [i8],
    stride: usize,
    shape: TernaryShape,
}

impl Tiles<'_> {
    /// Every row, `T` tokens: whole tiles of [`ROWS`] rows, then the ragged rest.
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    #[inline]
    unsafe fn all<const T: usize>(&self, out: &mut [i32]) {
        let n_rows = self.rows.len() / self.row_bytes;
        let whole = n_rows - n_rows % ROWS;
        for r0 in (0..whole).step_by(ROWS) {
            self.dots::<ROWS, T>(r0, out);
        }
        match n_rows - whole {
            0 => {}
            1 => self.dots::<1, T>(whole, out),
            2 => self.dots::<2, T>(whole, out),
            _ => self.dots::<3, T>(whole, out),
        }
    }

    /// Rows `r0..r0 + R` × `T` tokens into `out[t · rows · blocks + r · blocks + b]`, the whole chunks here
    /// and the ragged tail of each row on the portable path.
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    #[inline]
    unsafe fn dots<const R: usize, const T: usize>(&self, r0: usize, out: &mut [i32]) {
        let Self {
            rows,
            row_bytes,
            q,
            stride,
            shape,
        } = *self;
        let (nb, n_rows) = (shape.blocks(), rows.len() / row_bytes);
        let out_stride = n_rows * nb;
        let chunks = row_bytes / 64;
        let block_chunks = if nb == 1 { chunks } else { shape.block / CHUNK };
        let mask = _mm512_set1_epi8(3);
        let (wp, qp) = (rows.as_ptr().add(r0 * row_bytes), q.as_ptr());
        let mut c = 0;
        for b in 0..nb {
            let block_end = (c + block_chunks).min(chunks);
            let mut acc = [[_mm512_setzero_si512(); T]; R];
            for c in c..block_end {
                // The next tile's bytes, at the rate this tile is read (a hint: past the end is harmless).
                for r in 0..R {
                    let next = wp.wrapping_add(R * row_bytes + (c * R + r) * 64);
                    _mm_prefetch::<_MM_HINT_T0>(next as *const i8);
                }
                let mut w = [_mm512_setzero_si512(); R];
                for (r, w) in w.iter_mut().enumerate() {
                    *w = _mm512_loadu_si512(wp.add(r * row_bytes + c * 64).cast());
                }
                for s in 0..4 {
                    let mut a = [_mm512_setzero_si512(); T];
                    for (t, a) in a.iter_mut().enumerate() {
                        *a = _mm512_loadu_si512(qp.add(t * stride + c * CHUNK + s * 64).cast());
                    }
                    for (r, acc) in acc.iter_mut().enumerate() {
                        let shifted = match s {
                            0 => w[r],
                            1 => _mm512_srli_epi16::<2>(w[r]),
                            2 => _mm512_srli_epi16::<4>(w[r]),
                            _ => _mm512_srli_epi16::<6>(w[r]),
                        };
                        let codes = _mm512_and_si512(shifted, mask);
                        for (acc, &a) in acc.iter_mut().zip(&a) {
                            *acc = _mm512_dpbusd_epi32(*acc, codes, a);
                        }
                    }
                }
            }
            for (r, acc) in acc.iter().enumerate() {
                for (t, &acc) in acc.iter().enumerate() {
                    out[t * out_stride + (r0 + r) * nb + b] += _mm512_reduce_add_epi32(acc);
                }
            }
            c = block_end;
        }
        let tail = ActTile {
            q,
            stride,
            tokens: T,
            chunk: CHUNK,
        };
        scalar::ternary_rows_dots(
            &rows[r0 * row_bytes..(r0 + R) * row_bytes],
            row_bytes,
            chunks * 64,
            tail,
            shape,
            &mut out[r0 * nb..],
            out_stride,
        );
    }
}
