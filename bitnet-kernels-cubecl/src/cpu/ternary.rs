//! BitLinear's int8-activation ternary matmul on the CPU: quantize, integer block dots, rescale.

use std::cell::RefCell;
use std::mem::MaybeUninit;
use std::ops::Range;

use super::acts::QuantizedActs;
use super::isa::{Isa, LOOKUP_TOKENS};
use super::par::{blocks, par_bands, par_bands_coarse, SharedOut};
use super::rescale::rescale;
use super::scalar;
use crate::packing::words_per_row;
use crate::reference::TernaryShape;

/// Rows per kernel call: every token tile passes over them before the next rows (prefill), so they stay in
/// L2 (64 packed rows of 6912 columns: 108 KiB), and the call's dispatch is amortized over many tiles.
const BLOCK_ROWS: usize = 64;
/// Rows of a decode tile on the SIMD paths: bands start on multiples of it, so only a matrix's last tile is
/// ragged.
const ROW_TILE: usize = 4;
/// Most rows per table-lookup call ([`ternary_lut_dots`]): a band is cut into near-equal blocks of at most this.
const LUT_BLOCK_ROWS: usize = 1024;

/// How far past the rows a tile reads its SIMD path prefetches, in bytes of the matrix after them.
#[cfg(target_arch = "x86_64")]
const PREFETCH_AHEAD: usize = 8 << 10;

/// Bytes from a tile's first row to the line a SIMD path prefetches while it reads the tile, one line per line
/// read and in address order. The hardware prefetcher alone left decode GEMVs at half the read bandwidth on a
/// Zen 5 VM. The rows of a tile are read side by side, so the last row's next bytes are needed soonest: the
/// distance counts from there. 8 KiB past it was the best of 6-16 KiB on both 2B-4T shapes
/// (`cargo bench --bench gemv_bandwidth`). The x86-64 paths only: the NEON paths have not been measured on
/// AArch64 hardware.
#[cfg(target_arch = "x86_64")]
pub(crate) fn prefetch_distance(tile_rows: usize, row_bytes: usize) -> usize {
    (tile_rows - 1) * row_bytes + PREFETCH_AHEAD
}

thread_local! {
    static ACTS: RefCell<QuantizedActs> = RefCell::default();
    static DOTS: RefCell<Vec<i32>> = RefCell::default();
}

/// The activations of a tile: `tokens` tokens of permuted int8 values, `stride` bytes apart.
#[derive(Clone, Copy, Debug)]
pub struct ActTile<'a> {
    /// Quantized values from the tile's first token on.
    pub q: &'a [i8],
    /// Bytes per token.
    pub stride: usize,
    /// Tokens in the tile.
    pub tokens: usize,
    /// Columns per permutation chunk ([`super::acts::permuted`]); a SIMD path runs only on its own
    /// ([`Isa::chunk`]), the portable path on any.
    pub chunk: usize,
    /// The same tokens laid out for the AMX path's B tiles ([`QuantizedActs::fill_tiles`]), or empty: then
    /// that path takes its AVX-512 tiles.
    pub tiles: &'a [i8],
}

/// Packed rows of one call of the 32-byte-word SIMD paths (AVX2, NEON, SIMD128) and their tokens'
/// activations: each path cuts it into its tiles ([`Self::rows`]) and implements their dots on it; a row's
/// dots go to `out[t · out_stride + r · blocks + b]`.
#[cfg(any(
    target_arch = "x86_64",
    target_arch = "aarch64",
    all(target_arch = "wasm32", target_feature = "simd128")
))]
#[derive(Clone, Copy)]
pub(crate) struct RowTile<'a> {
    pub(crate) rows: &'a [u8],
    pub(crate) row_bytes: usize,
    /// The tokens' permuted activations, [`super::acts::CHUNK`]-column chunks.
    pub(crate) q: &'a [i8],
    /// Bytes per token in `q`.
    pub(crate) stride: usize,
    pub(crate) shape: TernaryShape,
    /// Distance between tokens in `out`: the call's rows times their blocks.
    pub(crate) out_stride: usize,
}

#[cfg(any(
    target_arch = "x86_64",
    target_arch = "aarch64",
    all(target_arch = "wasm32", target_feature = "simd128")
))]
impl<'a> RowTile<'a> {
    /// All of a call's `rows` (`row_bytes` apart), with activations `q` of `stride` bytes a token.
    pub(crate) fn new(
        rows: &'a [u8],
        row_bytes: usize,
        q: &'a [i8],
        stride: usize,
        shape: TernaryShape,
    ) -> Self {
        let out_stride = rows.len() / row_bytes * shape.blocks();
        Self {
            rows,
            row_bytes,
            q,
            stride,
            shape,
            out_stride,
        }
    }

    /// Rows `r0..r1` of the call (their dots keep the call's `out_stride`).
    pub(crate) fn rows(self, r0: usize, r1: usize) -> Self {
        Self {
            rows: &self.rows[r0 * self.row_bytes..r1 * self.row_bytes],
            ..self
        }
    }

    /// The ragged tail of each row (past its whole 32-byte words) × `tokens`, on the portable path.
    pub(crate) fn tail(&self, tokens: usize, out: &mut [i32]) {
        let acts = ActTile {
            q: self.q,
            stride: self.stride,
            tokens,
            chunk: super::acts::CHUNK,
            tiles: &[],
        };
        let whole = self.row_bytes / 32 * 32;
        let (rows, row_bytes, shape) = (self.rows, self.row_bytes, self.shape);
        scalar::ternary_rows_dots(rows, row_bytes, whole, acts, shape, out, self.out_stride);
    }
}

/// Σ (trit + 1) · q per scale block for a block of packed rows (`rows`: whole rows of `row_bytes` bytes, the
/// `u32` words as little-endian bytes) and 1..=[`Isa::token_tile`] tokens of permuted activations `stride`
/// bytes apart, zero beyond column `k`, on the `isa` path: `out[(t · rows + r) · blocks + b]` is overwritten
/// (token-major, so the rescale into each token's output row runs over contiguous rows). The SIMD paths cut
/// the block into tiles of rows × tokens. Every path returns the same integers.
pub fn ternary_tile_dots(
    isa: Isa,
    rows: &[u8],
    row_bytes: usize,
    acts: ActTile,
    shape: TernaryShape,
    out: &mut [i32],
) {
    let simd = prepare(isa, rows, row_bytes, acts, shape, isa.token_tile(), out);
    #[cfg(target_arch = "x86_64")]
    if simd && isa == Isa::Amx && !acts.tiles.is_empty() && isa.supported() {
        // SAFETY: AVX-512 F/BW, GFNI and AMX-INT8 are present; tokens, blocks, chunk, the span of `q` and the
        // size of `out` (zeroed) are asserted above, the span of the tiles by the kernel.
        return unsafe { super::amx::ternary_tile_dots(rows, row_bytes, acts, shape, out) };
    }
    // the x86-64 kernels take the activations' parts
    #[cfg(target_arch = "x86_64")]
    let ActTile {
        q, stride, tokens, ..
    } = acts;
    #[cfg(target_arch = "x86_64")]
    if simd && matches!(isa, Isa::Avx512Gfni | Isa::Amx) && isa.supported() {
        // SAFETY: AVX-512 F/BW/VNNI and GFNI are present; tokens, blocks, chunk, the span of `q` and the size of
        // `out` are asserted above.
        return unsafe {
            super::avx512::gfni::ternary_tile_dots(rows, row_bytes, q, stride, tokens, shape, out)
        };
    }
    #[cfg(target_arch = "x86_64")]
    if simd && isa == Isa::Avx512Vnni && isa.supported() {
        // SAFETY: AVX-512 F/BW/VNNI are present; tokens, blocks, chunk, the span of `q` and the size of `out`
        // are asserted above.
        return unsafe {
            super::avx512::ternary_tile_dots(rows, row_bytes, q, stride, tokens, shape, out)
        };
    }
    #[cfg(target_arch = "x86_64")]
    if simd && isa == Isa::AvxVnni && Isa::AvxVnni.supported() {
        // SAFETY: AVX2 and AVX-VNNI are present; tokens, blocks, chunk, the span of `q` and the size of `out`
        // are asserted above.
        return unsafe {
            super::avxvnni::ternary_tile_dots(rows, row_bytes, q, stride, tokens, shape, out)
        };
    }
    #[cfg(target_arch = "x86_64")]
    if simd && isa == Isa::Avx2 && Isa::Avx2.supported() {
        // SAFETY: AVX2 is present; tokens, blocks, the span of `q` and the size of `out` are asserted above.
        return unsafe {
            super::avx2::ternary_tile_dots(rows, row_bytes, q, stride, tokens, shape, out)
        };
    }
    #[cfg(target_arch = "aarch64")]
    if simd && matches!(isa, Isa::Neon | Isa::NeonDot) && isa.supported() {
        let dot = isa == Isa::NeonDot;
        // SAFETY: NEON is baseline on AArch64 and `sdot` is used only where detected; tokens, blocks, the
        // span of `q` and the size of `out` are asserted above.
        return unsafe { super::neon::ternary_tile_dots(rows, row_bytes, acts, shape, out, dot) };
    }
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    if simd && matches!(isa, Isa::Simd128 | Isa::RelaxedSimd) && isa.supported() {
        let relaxed = isa == Isa::RelaxedSimd;
        // SAFETY: SIMD128 is compiled in, relaxed SIMD too where it is taken; tokens, blocks, the span of `q`
        // and the size of `out` are asserted above.
        return unsafe {
            super::simd128::ternary_tile_dots(rows, row_bytes, acts, shape, out, relaxed)
        };
    }
    let _ = (simd, isa);
    let out_stride = rows.len() / row_bytes * shape.blocks();
    scalar::ternary_rows_dots(rows, row_bytes, 0, acts, shape, out, out_stride);
}

/// Checks a tile call's operands (1..=`most` tokens, activations spanning every chunk of a row, whole rows),
/// zeroes its outputs (the kernels add into them) and says whether the path's SIMD kernels read this layout: the
/// path's own chunk, and blocks of one per row or of whole chunks.
fn prepare(
    isa: Isa,
    rows: &[u8],
    row_bytes: usize,
    acts: ActTile,
    shape: TernaryShape,
    most: usize,
    out: &mut [i32],
) -> bool {
    let ActTile {
        q,
        stride,
        tokens,
        chunk,
        ..
    } = acts;
    let span = (row_bytes * 4).div_ceil(chunk) * chunk;
    let n_rows = rows.len() / row_bytes;
    assert!(rows.len().is_multiple_of(row_bytes) && row_bytes * 4 >= shape.k);
    assert!((1..=most).contains(&tokens), "{tokens} tokens");
    assert!(stride >= span && q.len() >= (tokens - 1) * stride + span);
    out[..n_rows * tokens * shape.blocks()].fill(0);
    chunk == isa.chunk() && (shape.blocks() == 1 || shape.block.is_multiple_of(chunk))
}

/// [`ternary_tile_dots`] for 1..=[`LOOKUP_TOKENS`] tokens by table lookup where the path has such a kernel
/// ([`Isa::has_lookup`]), the portable loop elsewhere: the same integers. `lanes` holds the same tokens side by
/// side ([`QuantizedActs::lanes_from`]).
pub fn ternary_lut_dots(
    isa: Isa,
    rows: &[u8],
    row_bytes: usize,
    acts: ActTile,
    lanes: &[i16],
    shape: TernaryShape,
    out: &mut [i32],
) {
    let simd = prepare(isa, rows, row_bytes, acts, shape, LOOKUP_TOKENS, out)
        && isa.has_lookup()
        && isa.supported();
    #[cfg(any(
        target_arch = "x86_64",
        target_arch = "aarch64",
        all(target_arch = "wasm32", target_feature = "simd128")
    ))]
    if simd {
        // SAFETY: the path's features are present (the lookup paths are this target's AVX2, NEON or SIMD128
        // ones); tokens, blocks, chunk, the span of the activations and the size of `out` (zeroed) are checked
        // above, the span of the lanes by the kernel.
        return unsafe { super::lut::ternary_lut_dots(rows, row_bytes, acts, lanes, shape, out) };
    }
    let _ = (simd, lanes);
    let out_stride = rows.len() / row_bytes * shape.blocks();
    scalar::ternary_rows_dots(rows, row_bytes, 0, acts, shape, out, out_stride);
}

/// One packed ternary matrix: `w` `[n, ceil(k/16)]` words and `scales` `[n, blocks]`.
#[derive(Clone, Copy, Debug)]
pub struct TernaryMatrix<'a> {
    /// Packed words.
    pub w: &'a [u32],
    /// Scales per row block.
    pub scales: &'a [f32],
    /// Its shape.
    pub shape: TernaryShape,
}

/// BitLinear in int8 mode on the CPU, `x [m, k]` → `y [m, n]`: each token quantized with
/// [`crate::reference::quantize_row_i8`] (scale `s`), then
/// `y = Σ_b (Σ_{k∈b} (trit+1)·q − Σ_{k∈b} q) · scales[n, b] / s`, rows split across the current rayon pool.
pub fn ternary_matmul_i8(
    x: &[f32],
    m: usize,
    w: &[u32],
    scales: &[f32],
    shape: TernaryShape,
    isa: Isa,
) -> Vec<f32> {
    let matrix = TernaryMatrix { w, scales, shape };
    ternary_matmuls_i8(x, m, &[matrix], isa).remove(0)
}

/// [`ternary_matmul_i8`] of one input by several matrices of the same `k` and block (q/k/v, gate/up): the
/// input is quantized once, and one parallel call covers every matrix's rows, their bands laid end to end.
pub fn ternary_matmuls_i8(
    x: &[f32],
    m: usize,
    matrices: &[TernaryMatrix],
    isa: Isa,
) -> Vec<Vec<f32>> {
    let first = matrices.first().expect("at least one matrix").shape;
    let (k, block) = (first.k, first.block);
    for &TernaryMatrix { w, scales, shape } in matrices {
        assert!(
            shape.k == k && shape.block == block,
            "{shape:?} after {first:?}"
        );
        assert!(w.len() == shape.n * words_per_row(k) && scales.len() == shape.n * shape.blocks());
    }
    assert_eq!(x.len(), m * k);
    let mut ys: Vec<Vec<f32>> = matrices.iter().map(|_| Vec::new()).collect();
    let outs: Vec<SharedOut> = ys
        .iter_mut()
        .zip(matrices)
        .map(|(y, a)| SharedOut::output(y, m * a.shape.n))
        .collect();
    let starts: Vec<usize> = matrices
        .iter()
        .scan(0, |row, a| {
            *row += a.shape.n;
            Some(*row - a.shape.n)
        })
        .collect();
    let total = matrices.iter().map(|a| a.shape.n).sum();
    with_acts(|acts| {
        acts.quantize_permuted(x, m, k, block, isa.chunk());
        if isa.lookup_tokens(m) > 0 {
            acts.fill_lanes();
        }
        if isa.tile_multiplies(m) {
            acts.fill_tiles();
        }
        let acts = &*acts;
        let band = |band: Range<usize>| {
            for ((a, &start), &out) in matrices.iter().zip(&starts).zip(&outs) {
                let rows = band.start.max(start)..band.end.min(start + a.shape.n);
                if !rows.is_empty() {
                    matrix_rows(a, rows.start - start..rows.end - start, m, acts, isa, out);
                }
            }
        };
        // One band per thread keeps each thread's weight reads one sequential stream, for prefill too: with
        // 64-row blocks claimed in turn instead, each thread's reads jumped every 40-110 KiB and what its tiles
        // prefetched past a block was the other thread's, so a 4-token matmul streamed from memory took 1.45x
        // as long (`cargo bench --bench kernels -- ternary_matmul_tokens4`, 2 threads) and 4-stream decode
        // ran 13% slower (pp128 unchanged).
        if isa.lookup_tokens(m) > 0 {
            par_bands_coarse(total, ROW_TILE, band);
        } else {
            par_bands(total, ROW_TILE, band);
        }
    });
    for (y, a) in ys.iter_mut().zip(matrices) {
        // SAFETY: the bands cover every row of every matrix, and `matrix_rows` writes each token's output for
        // each of its rows.
        unsafe { y.set_len(m * a.shape.n) };
    }
    ys
}

/// Rows `band` of `x · a` for the `m` quantized tokens `acts`, written into `out` (`[m, n]`).
fn matrix_rows(
    a: &TernaryMatrix,
    band: Range<usize>,
    m: usize,
    acts: &QuantizedActs,
    isa: Isa,
    out: SharedOut,
) {
    let TernaryMatrix { w, scales, shape } = *a;
    let (n, nb, kw) = (shape.n, shape.blocks(), words_per_row(shape.k));
    let bytes: &[u8] = bytemuck::cast_slice(w);
    let lookup = isa.lookup_tokens(m) > 0;
    let (block_rows, most) = match (lookup, m) {
        // Each table is built once per block and read by all its rows: more rows amortize it, 1024 keep the
        // block's i32 sums (512 KiB at [`LOOKUP_TOKENS`]) in L2.
        (true, _) => {
            let pieces = band.len().div_ceil(LUT_BLOCK_ROWS).max(1);
            (band.len().div_ceil(pieces), LOOKUP_TOKENS)
        }
        (false, 1) => (BLOCK_ROWS, 1),
        (false, _) => (BLOCK_ROWS, isa.token_tile()),
    };
    DOTS.with_borrow_mut(|dots| {
        dots.resize(block_rows * most * nb, 0);
        for rows in blocks(band, block_rows.max(1)) {
            let tile = &bytes[rows.start * kw * 4..rows.end * kw * 4];
            let mut t0 = 0;
            while t0 < m {
                let left = m - t0;
                let tokens = match isa.lookup_tokens(left) {
                    0 => {
                        let tokens = isa.pass_tokens(left, shape.k);
                        ternary_tile_dots(isa, tile, kw * 4, acts.tile(t0, tokens), shape, dots);
                        tokens
                    }
                    tokens => {
                        let (a, lanes) = (acts.tile(t0, tokens), acts.lanes_from(t0));
                        ternary_lut_dots(isa, tile, kw * 4, a, lanes, shape, dots);
                        tokens
                    }
                };
                for t in 0..tokens {
                    let tok = t0 + t;
                    // SAFETY: token `tok`'s outputs for this band's rows, which no other band writes.
                    let y = unsafe { out.uninit(tok * n + rows.start, rows.len()) };
                    let dots = &dots[t * rows.len() * nb..(t + 1) * rows.len() * nb];
                    let (s, sums) = (acts.scale[tok], &acts.block_sums[tok * nb..(tok + 1) * nb]);
                    let scales = &scales[rows.start * nb..rows.end * nb];
                    if nb == 1 {
                        rescale(y, dots, sums[0], scales, s);
                        continue;
                    }
                    let rows = dots.chunks_exact(nb).zip(scales.chunks_exact(nb));
                    for (y, (d, w)) in y.iter_mut().zip(rows) {
                        let acc: f32 = (0..nb).map(|b| (d[b] - sums[b]) as f32 * w[b]).sum();
                        *y = MaybeUninit::new(acc / s);
                    }
                }
                t0 += tokens;
            }
        }
    })
}

/// Runs `f` on this thread's activation buffer (a fresh one if a caller up the stack holds it).
pub(crate) fn with_acts<R>(f: impl FnOnce(&mut QuantizedActs) -> R) -> R {
    ACTS.with(|cell| match cell.try_borrow_mut() {
        Ok(mut acts) => f(&mut acts),
        Err(_) => f(&mut QuantizedActs::default()),
    })
}
