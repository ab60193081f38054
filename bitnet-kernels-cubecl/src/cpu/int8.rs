//! The int8 output head: weights quantized per row at load, activations per token, integer dot products.

use std::borrow::Cow;
use std::cell::RefCell;

use rayon::prelude::*;

use super::acts::row_absmax;
use super::isa::Isa;
use super::par::{blocks, par_bands, SharedOut};
use super::rescale::rescale;
use super::scalar;
use super::ternary::with_acts;
use crate::packing::{i8_words_per_row, pack_i8_row, I8_PER_WORD};
use crate::reference::quantize_i8;

/// Most tokens sharing one pass over a weight row ([`tokens_per_pass`]).
const MAX_TOKEN_TILE: usize = 8;
/// Rows every token tile passes over before the next rows (2560-column rows: 20 KiB, in L1).
const CACHED_ROWS: usize = 8;

/// Rows of one pass of the AMX head ([`super::amx::int8_head_dots`]): two A tiles.
const AMX_ROWS: usize = 32;
/// Tokens from which the head runs on AMX tile multiplies ([`tile_multiplies`]).
#[cfg(target_arch = "x86_64")]
const AMX_FROM: usize = 16;

/// Most rows of one head tile ([`head_rows`]).
const MAX_TILE_ROWS: usize = 2;

thread_local! {
    /// A tile's dots (`[row][token]`), and a block's (`[token][row]`) for their rescaling.
    static DOTS: RefCell<([i32; MAX_TILE_ROWS * MAX_TOKEN_TILE], [i32; MAX_TOKEN_TILE * CACHED_ROWS])> =
        const { RefCell::new(([0; MAX_TILE_ROWS * MAX_TOKEN_TILE], [0; MAX_TOKEN_TILE * CACHED_ROWS])) };
}

/// Tokens sharing one pass over a weight row on `isa`: 8 on the VNNI paths (8 accumulators, the offset row and
/// the activations fit 16 registers too; an 8-stream decode step reads each head row once: on AVX-512 2.5× faster
/// than two passes of 4, `cargo bench --bench kernels -- int8_head`; on AVX-VNNI 8-stream decode 78-84 → 88-89
/// tok/s), 4 elsewhere (AVX2's sign-moving form spends five instructions a vector and token: 8 ran no faster).
fn tokens_per_pass(isa: Isa) -> usize {
    if (isa.avx512() || isa == Isa::AvxVnni) && isa.supported() {
        MAX_TOKEN_TILE
    } else {
        4
    }
}

/// Whether the head of `m` tokens and `k` columns runs on AMX tile multiplies: on the AMX path, for whole
/// 64-column tiles, from [`AMX_FROM`] tokens (scoring a prompt's every position, many streams).
fn tile_multiplies(isa: Isa, m: usize, k: usize) -> bool {
    #[cfg(target_arch = "x86_64")]
    if isa == Isa::Amx && isa.supported() {
        return m >= AMX_FROM && k.is_multiple_of(super::acts::TILE_COLS);
    }
    let _ = (isa, m, k);
    false
}

/// Quantizes each row of `w` (`k` columns) to int8 with its own scale `max|row| / 127`, round half to even;
/// returns the values (in [-127, 127]) packed per row as [`crate::packing`] defines, and the scales.
pub fn quantize_rows_i8(w: &[f32], k: usize) -> (Vec<u32>, Vec<f32>) {
    let rows = w.len() / k;
    let mut packed = vec![0u32; rows * i8_words_per_row(k)];
    let mut scales = vec![0f32; rows];
    quantize_rows_i8_into(
        k,
        |r, row| row.copy_from_slice(&w[r * k..(r + 1) * k]),
        &mut packed,
        &mut scales,
    );
    (packed, scales)
}

/// [`quantize_rows_i8`] of the `scales.len()` rows that `read_row(r, row)` writes one at a time (from a file's
/// F16 or quantized rows: the float matrix is never whole in memory), into `packed` and `scales`. Rows are split
/// across the current rayon pool (the 2B-4T head has 128,256 of them).
pub fn quantize_rows_i8_into(
    k: usize,
    read_row: impl Fn(usize, &mut [f32]) + Sync,
    packed: &mut [u32],
    scales: &mut [f32],
) {
    packed
        .par_chunks_exact_mut(i8_words_per_row(k))
        .zip(scales.par_iter_mut())
        .enumerate()
        .for_each_init(
            || (vec![0f32; k], vec![0i8; k]),
            |(row, q), (r, (out, scale))| {
                read_row(r, row);
                let amax = row_absmax(row);
                let inv = if amax > 0.0 { 127.0 / amax } else { 0.0 };
                for (q, &v) in q.iter_mut().zip(row.iter()) {
                    *q = quantize_i8(v, inv);
                }
                pack_i8_row(q, out);
                *scale = amax / 127.0;
            },
        );
}

/// Packed int8 rows as bytes: the words themselves on little-endian targets, unpacked elsewhere.
fn i8_bytes(w: &[u32]) -> Cow<'_, [i8]> {
    if cfg!(target_endian = "little") {
        Cow::Borrowed(bytemuck::cast_slice(w))
    } else {
        Cow::Owned(
            w.iter()
                .flat_map(|&word| (0..I8_PER_WORD).map(move |b| (word >> (8 * b)) as u8 as i8))
                .collect(),
        )
    }
}

/// Rows of the int8 head's tile for `tokens` tokens on `isa`. The VNNI paths take 2 rows side by side: each
/// activation load serves both, and two weight streams keep more lines in flight. One row at a time, 8 tokens
/// ran at half the memory bandwidth one token reached (the core waited on the row's next lines between its
/// 8 dot products); with 2, `cargo bench --bench kernels -- int8_head` on AVX-512, 2 threads: 8 tokens
/// 13.5-14.6 → 10.2 ms, 4 tokens 8.8-9.1 → 8.5, 1 token 7.3-8.0 → 6.7.
fn head_rows(isa: Isa, tokens: usize) -> usize {
    #[cfg(target_arch = "x86_64")]
    match isa {
        _ if !isa.supported() => {}
        isa if isa.avx512() => return super::avx512::head_rows(tokens),
        Isa::AvxVnni => return super::avxvnni::head_rows(tokens),
        Isa::Avx2 => return super::avx2::head_rows(tokens),
        _ => {}
    }
    let _ = (isa, tokens);
    1
}

/// `w · q` for `rows` (1 or [`head_rows`]) int8 rows of `k` columns, `row_bytes` apart from `w` on, and
/// `tokens` (1..=[`tokens_per_pass`]) tokens of activations `stride` bytes apart (`sums`: Σ of each token's
/// values), on `isa`; row `r`'s dots go to `out[r · tokens..]`.
fn int8_rows_dots(
    isa: Isa,
    (w, row_bytes, rows, k): (&[i8], usize, usize, usize),
    q: &[i8],
    stride: usize,
    sums: &[i32],
    tokens: usize,
    out: &mut [i32],
) {
    assert!(
        (1..=tokens_per_pass(isa)).contains(&tokens) && stride >= k && sums.len() >= tokens,
        "{tokens} tokens of {stride} bytes"
    );
    assert!((rows == 1 || rows == head_rows(isa, tokens)) && w.len() >= (rows - 1) * row_bytes + k);
    assert!(q.len() >= (tokens - 1) * stride + k && out.len() >= rows * tokens);
    #[cfg(target_arch = "x86_64")]
    if isa.avx512() && isa.supported() {
        // SAFETY: AVX-512 F/BW/VNNI are present; `w` spans the rows, `q` the row for every token, `sums`
        // and `out` their values (asserted).
        return unsafe {
            super::avx512::int8_row_dots((w, row_bytes, rows, k), q, stride, sums, tokens, out)
        };
    }
    #[cfg(target_arch = "x86_64")]
    if isa == Isa::AvxVnni && isa.supported() {
        // SAFETY: AVX2 and AVX-VNNI are present; `w` spans the rows, `q` the row for every token, `sums`
        // and `out` their values (asserted).
        return unsafe {
            super::avxvnni::int8_row_dots((w, row_bytes, rows, k), q, stride, sums, tokens, out)
        };
    }
    #[cfg(target_arch = "x86_64")]
    if isa.has_avx2() {
        // SAFETY: AVX2 is present; `w` spans the rows, `q` the row for every token, `out` their values
        // (asserted).
        return unsafe {
            super::avx2::int8_row_dots((w, row_bytes, rows, k), q, stride, tokens, out)
        };
    }
    // one row on the other paths (asserted)
    let (w, out) = (&w[..k], &mut out[..tokens]);
    out.fill(0);
    #[cfg(target_arch = "aarch64")]
    if matches!(isa, Isa::Neon | Isa::NeonDot) && isa.supported() {
        let dot = isa == Isa::NeonDot;
        // SAFETY: NEON is baseline on AArch64 and `sdot` is used only where detected; `q` spans the row for
        // every token (asserted).
        return unsafe { super::neon::int8_row_dots(w, q, stride, tokens, out, dot) };
    }
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    if matches!(isa, Isa::Simd128 | Isa::RelaxedSimd) {
        // SAFETY: SIMD128 is compiled in; `q` spans the row for every token (asserted).
        return unsafe { super::simd128::int8_row_dots(w, q, stride, tokens, out) };
    }
    let _ = sums;
    scalar::int8_row_dots(w, 0, q, stride, tokens, out);
}

/// `y[m, n] = Σ_k q[m, k] · w[n, k] · scales[n] / s_m` with `x [m, k]` quantized per token like BitLinear's
/// activations and `w [n, k]` packed by [`quantize_rows_i8`] (a weight of -128 would read as +128 on the AVX2
/// path); rows split across the current rayon pool. Each block of [`CACHED_ROWS`] rows is rescaled per token in
/// one vectorized pass ([`rescale`]: the division's bits by a reciprocal) into an output that is not zeroed
/// first. A division and a scattered store per output, and each accumulator summed alone, had cost the 4-token
/// head ~15% (`cargo bench --bench kernels -- int8_head`, 2 threads, 3 alternating runs: 4 tokens 11.2-12.1 →
/// 9.5-11.0 ms, 8 tokens 13.0-14.0 → 12.0-13.3, 1 token 8.3-9.6 → 8.4-8.7).
pub fn int8_matmul(x: &[f32], m: usize, w: &[u32], scales: &[f32], k: usize, isa: Isa) -> Vec<f32> {
    let n = scales.len();
    let row = I8_PER_WORD * i8_words_per_row(k);
    assert!(x.len() == m * k && w.len() * I8_PER_WORD == n * row);
    let w = i8_bytes(w);
    let mut y = Vec::new();
    let out = SharedOut::output(&mut y, m * n);
    with_acts(|acts| {
        acts.quantize_plain(x, m, k);
        let amx = tile_multiplies(isa, m, k);
        if amx {
            acts.fill_tiles();
        }
        let acts = &*acts;
        let tile = tokens_per_pass(isa);
        par_bands(n, if amx { AMX_ROWS } else { 1 }, |band| {
            #[cfg(target_arch = "x86_64")]
            let band = if amx {
                let whole = band.start..band.start + band.len() / AMX_ROWS * AMX_ROWS;
                let rescaled = |t: usize, r0: usize, dots: &[i32; AMX_ROWS]| {
                    // SAFETY: token `t`'s outputs for rows of this band, which no other band writes.
                    let y = unsafe { out.uninit(t * n + r0, AMX_ROWS) };
                    rescale(y, dots, 0, &scales[r0..r0 + AMX_ROWS], acts.scale[t]);
                };
                // SAFETY: AMX-INT8 is usable and `k` whole tiles (`tile_multiplies`); `w` holds every row and
                // `acts.tiles` the `m` tokens, filled above.
                unsafe {
                    super::amx::int8_head_dots(
                        (&w, row, k),
                        whole.clone(),
                        (&acts.tiles, acts.stride, m),
                        rescaled,
                    )
                };
                whole.end..band.end
            } else {
                band
            };
            DOTS.with_borrow_mut(|(dots, block)| {
                for rows in blocks(band, CACHED_ROWS) {
                    for t0 in (0..m).step_by(tile) {
                        let tokens = tile.min(m - t0);
                        let tile_rows = head_rows(isa, tokens);
                        let mut r = rows.start;
                        while r < rows.end {
                            let take = if rows.end - r >= tile_rows {
                                tile_rows
                            } else {
                                1
                            };
                            int8_rows_dots(
                                isa,
                                (&w[r * row..], row, take, k),
                                acts.from_token(t0),
                                acts.stride,
                                &acts.block_sums[t0..],
                                tokens,
                                dots,
                            );
                            for (i, d) in dots.chunks_exact(tokens).take(take).enumerate() {
                                for (t, &d) in d.iter().enumerate() {
                                    block[t * CACHED_ROWS + r - rows.start + i] = d;
                                }
                            }
                            r += take;
                        }
                        for t in 0..tokens {
                            let tok = t0 + t;
                            // SAFETY: token `tok`'s outputs for this band's rows, which no other band writes.
                            let y = unsafe { out.uninit(tok * n + rows.start, rows.len()) };
                            let d = &block[t * CACHED_ROWS..][..rows.len()];
                            rescale(y, d, 0, &scales[rows.clone()], acts.scale[tok]);
                        }
                    }
                }
            })
        });
    });
    // SAFETY: the bands cover every row, and each wrote its rows' outputs for every token.
    unsafe { y.set_len(m * n) };
    y
}
