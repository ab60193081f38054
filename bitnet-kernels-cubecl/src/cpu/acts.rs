//! Activations quantized to int8 per token, laid out the way the kernels read them.

use aligned_vec::{AVec, ConstAlign};

use super::par::{par_bands, SharedOut};
use super::ternary::ActTile;
use crate::reference::{absmax, quantize_i8, scale_of_absmax};

/// Columns per chunk of the 256-bit kernels (AVX2, NEON): one 32-byte load of packed words holds 128 trits.
pub const CHUNK: usize = 128;
/// The widest chunk a path reads (AVX-512: 256 columns).
const MAX_CHUNK: usize = 2 * CHUNK;

/// Where column `i` of a token lives in the permuted buffer of `chunk`-column chunks (the trits of one vector
/// load of packed words, see [`super::Isa::chunk`]): in each chunk, column `4b + s` (held by byte `b`, bits
/// `2s..2s+2` of the packed row) goes to `s · chunk/4 + b`.
#[inline]
pub fn permuted(i: usize, chunk: usize) -> usize {
    debug_assert!(chunk.is_power_of_two());
    let r = i & (chunk - 1);
    (i - r) + (r & 3) * (chunk / 4) + (r >> 2)
}

/// Alignment of the activation buffers: a cache line, so no vector load of a token's values (strides are
/// whole chunks) straddles two lines. Split loads halve `vpdpbusd`'s rate with a 64-byte memory operand.
const LINE: usize = 64;

/// A buffer starting on a cache line.
pub type Aligned<T> = AVec<T, ConstAlign<LINE>>;

/// `m` tokens quantized to int8 with BitNet's per-token absmax, `stride` bytes per token (zero padded).
#[derive(Debug)]
pub struct QuantizedActs {
    /// Quantized values, `m · stride`.
    pub q: Aligned<i8>,
    /// Per-token scale `127 / max|x|` (divide the integer result by it).
    pub scale: Vec<f32>,
    /// Σ q over each scale block of each token, `m · blocks` (the ternary kernels multiply by `trit + 1`).
    pub block_sums: Vec<i32>,
    /// Bytes per token.
    pub stride: usize,
    /// Scale blocks per token.
    pub blocks: usize,
    /// Columns per permutation chunk ([`permuted`]).
    pub chunk: usize,
    /// The table-lookup kernels' copy ([`Self::fill_lanes`]): per group of [`LANES`] tokens, `[column][LANES]`
    /// i16, zero past the last token.
    pub lanes: Aligned<i16>,
    /// The AMX kernels' copy ([`Self::fill_tiles`]): per group of [`TILE_TOKENS`] tokens (`n` in the last),
    /// per 64 columns, 16 rows of each token's 4 bytes in turn (`[16][n][4]`, the B tiles).
    pub tiles: Aligned<i8>,
    /// Whether [`Self::tiles`] holds these tokens (the buffer keeps its bytes between calls).
    tiles_filled: bool,
}

impl Default for QuantizedActs {
    fn default() -> Self {
        Self {
            q: Aligned::new(LINE),
            scale: Vec::new(),
            block_sums: Vec::new(),
            stride: 0,
            blocks: 0,
            chunk: 0,
            lanes: Aligned::new(LINE),
            tiles: Aligned::new(LINE),
            tiles_filled: false,
        }
    }
}

/// Most tokens of one group in [`QuantizedActs::tiles`]: the most one AMX tile call takes.
pub const TILE_TOKENS: usize = 16;
/// Columns of one group's B tile in [`QuantizedActs::tiles`] (16 rows of four bytes per token).
pub const TILE_COLS: usize = 64;

/// Tokens side by side in [`QuantizedActs::lanes`]: the most one table-lookup call takes.
pub const LANES: usize = 32;

impl QuantizedActs {
    /// Quantizes `x [m, k]` for the ternary kernels: permuted in `chunk`-column chunks ([`permuted`]), padded
    /// to whole chunks, with the sum of each `block`-column block. Reuses the buffers; tokens are split across
    /// the kernel pool (prefill: on one thread this was 5% of the step while the other waited).
    pub fn quantize_permuted(&mut self, x: &[f32], m: usize, k: usize, block: usize, chunk: usize) {
        assert!(
            chunk.is_power_of_two() && (4..=MAX_CHUNK).contains(&chunk),
            "chunk {chunk}"
        );
        self.reset(m, k.div_ceil(chunk) * chunk, k.div_ceil(block));
        self.chunk = chunk;
        let (x, stride, blocks) = (&x[..m * k], self.stride, self.blocks);
        let q = SharedOut::new(&mut self.q);
        let scale = SharedOut::new(&mut self.scale);
        let sums = SharedOut::new(&mut self.block_sums);
        par_bands(m, 1, |tokens| {
            for t in tokens {
                // SAFETY: token `t`'s slots, which only this band writes; the buffers were sized by `reset`.
                unsafe {
                    let (q, sums) = (q.slice(t * stride, stride), sums.slice(t * blocks, blocks));
                    scale.write(
                        t,
                        quantize_token(&x[t * k..(t + 1) * k], block, chunk, q, sums),
                    );
                }
            }
        });
    }

    /// Quantizes `x [m, k]` in column order, padded to whole cache lines, with each token's sum as its one
    /// block (the int8 head).
    pub fn quantize_plain(&mut self, x: &[f32], m: usize, k: usize) {
        self.reset(m, k.div_ceil(LINE) * LINE, 1);
        for (t, row) in x.chunks_exact(k).take(m).enumerate() {
            let s = token_scale(row);
            self.scale[t] = s;
            let q = &mut self.q[t * self.stride..(t + 1) * self.stride];
            for (q, &v) in q.iter_mut().zip(row) {
                *q = quantize_i8(v, s);
                self.block_sums[t] += *q as i32;
            }
            q[k..].fill(0);
        }
    }

    /// Fills [`Self::lanes`] from the quantized tokens, in parallel over groups of tokens and column chunks.
    pub fn fill_lanes(&mut self) {
        let (stride, m) = (self.stride, self.scale.len());
        let groups = m.div_ceil(LANES);
        // Every lane is written below (zeros past the last token): only growth is zeroed here.
        self.lanes.resize(groups * stride * LANES, 0);
        let (q, chunks) = (&self.q, stride / CHUNK);
        let lanes = SharedOut::new(&mut self.lanes);
        par_bands(groups * chunks, 1, |pieces| {
            for piece in pieces {
                let (group, c) = (piece / chunks, piece % chunks);
                // SAFETY: this group's columns of chunk `c`, which only this piece writes.
                let out =
                    unsafe { lanes.slice((group * stride + c * CHUNK) * LANES, CHUNK * LANES) };
                let tokens = m.min((group + 1) * LANES) - group * LANES;
                for col in out.chunks_exact_mut(LANES) {
                    col[tokens..].fill(0);
                }
                for t in group * LANES..group * LANES + tokens {
                    let q = &q[t * stride + c * CHUNK..][..CHUNK];
                    for (col, &a) in q.iter().enumerate() {
                        out[col * LANES + t % LANES] = a as i16;
                    }
                }
            }
        });
    }

    /// Fills [`Self::tiles`] from the quantized tokens, in parallel over groups of tokens.
    pub fn fill_tiles(&mut self) {
        let (stride, m) = (self.stride, self.scale.len());
        // Every byte is written below: only growth is zeroed.
        self.tiles.resize(m * stride, 0);
        let q = &self.q;
        let tiles = SharedOut::new(&mut self.tiles);
        par_bands(m.div_ceil(TILE_TOKENS), 1, |groups| {
            for g in groups {
                let (t0, n) = (g * TILE_TOKENS, TILE_TOKENS.min(m - g * TILE_TOKENS));
                // SAFETY: this group's tokens' bytes, which only this group writes.
                let out = unsafe { tiles.slice(t0 * stride, n * stride) };
                for t in 0..n {
                    let q = &q[(t0 + t) * stride..][..stride];
                    for (i, four) in q.chunks_exact(4).enumerate() {
                        // 64 columns are 16 groups of four
                        let (slice, j) = (i / 16, i % 16);
                        let at = slice * TILE_COLS * n + (j * n + t) * 4;
                        out[at..at + 4].copy_from_slice(four);
                    }
                }
            }
        });
        self.tiles_filled = true;
    }

    /// [`Self::tiles`] of tokens `t..t + tokens` if they are whole groups (the last may end early), empty
    /// otherwise.
    pub fn tiles_of(&self, t: usize, tokens: usize) -> &[i8] {
        let m = self.scale.len();
        let whole = t.is_multiple_of(TILE_TOKENS)
            && t + tokens <= m
            && (tokens.is_multiple_of(TILE_TOKENS) || t + tokens == m);
        match whole && self.tiles_filled {
            true => &self.tiles[t * self.stride..(t + tokens) * self.stride],
            false => &[],
        }
    }

    /// [`Self::lanes`] of the group of tokens `t..` (`t` a multiple of [`LANES`]).
    pub fn lanes_from(&self, t: usize) -> &[i16] {
        assert!(t.is_multiple_of(LANES), "lanes start at token {t}");
        &self.lanes[t / LANES * self.stride * LANES..]
    }

    /// The quantized values of tokens `t..`.
    pub fn from_token(&self, t: usize) -> &[i8] {
        &self.q[t * self.stride..]
    }

    /// Tokens `t..t + tokens` as the ternary kernels take them.
    pub fn tile(&self, t: usize, tokens: usize) -> ActTile<'_> {
        ActTile {
            q: self.from_token(t),
            stride: self.stride,
            tokens,
            chunk: self.chunk,
            tiles: self.tiles_of(t, tokens),
        }
    }

    fn reset(&mut self, m: usize, stride: usize, blocks: usize) {
        self.stride = stride;
        self.blocks = blocks;
        // Every byte is written by the quantizer: zeroing them all first was a serial pass over megabytes.
        self.q.resize(m * stride, 0);
        self.scale.clear();
        self.scale.resize(m, 0.0);
        self.block_sums.clear();
        self.block_sums.resize(m * blocks, 0);
        self.tiles_filled = false;
    }
}

/// A whole `chunk` of columns quantized with scale `s` into its permuted bytes, returning their sum.
type QuantizeChunk = fn(&[f32], f32, &mut [i8]) -> i32;

/// The SIMD quantizer of whole `chunk`-column chunks on this CPU, if it has one ([`super::acts_x86`]).
fn simd_chunk(chunk: usize) -> Option<QuantizeChunk> {
    #[cfg(target_arch = "x86_64")]
    {
        if chunk == 2 * CHUNK && is_x86_feature_detected!("avx512bw") {
            // SAFETY: AVX-512 F and BW are present; the caller passes whole chunks.
            return Some(|cols, s, out| unsafe {
                super::acts_x86::quantize_chunk_256(cols, s, out)
            });
        }
        if chunk == CHUNK && is_x86_feature_detected!("avx2") {
            // SAFETY: AVX2 is present; the caller passes whole chunks.
            return Some(|cols, s, out| unsafe {
                super::acts_x86::quantize_chunk_128(cols, s, out)
            });
        }
    }
    let _ = chunk;
    None
}

/// [`crate::reference::absmax_scale`], its maximum on AVX2 where the CPU has it.
fn token_scale(row: &[f32]) -> f32 {
    scale_of_absmax(row_absmax(row))
}

/// [`absmax`] on AVX2 where the CPU has it (the same float).
pub(super) fn row_absmax(row: &[f32]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if super::Isa::detect().has_avx2() {
        // SAFETY: AVX2 is present.
        return unsafe { super::acts_x86::absmax_avx2(row) };
    }
    absmax(row)
}

/// Quantizes one token into its permuted slot `q` and the sums of its `block`-column blocks; returns its scale.
/// Whole chunks inside one block go through the CPU's SIMD quantizer where it has one; the others are quantized
/// in column order first (a loop the compiler vectorizes), then their bytes are moved to their permuted places.
fn quantize_token(row: &[f32], block: usize, chunk: usize, q: &mut [i8], sums: &mut [i32]) -> f32 {
    let s = token_scale(row);
    let simd = simd_chunk(chunk);
    let mut plain = [0i8; MAX_CHUNK];
    for (c, cols) in row.chunks(chunk).enumerate() {
        let first = c * chunk;
        let out = &mut q[first..first + chunk];
        if let Some(quantize) =
            simd.filter(|_| cols.len() == chunk && first / block == (first + chunk - 1) / block)
        {
            sums[first / block] += quantize(cols, s, out);
            continue;
        }
        if cols.len() < chunk {
            // the padding past `k`, which the buffer may hold from an earlier call
            out.fill(0);
        }
        let plain = &mut plain[..cols.len()];
        for (p, &v) in plain.iter_mut().zip(cols) {
            *p = quantize_i8(v, s);
        }
        let mut j = 0;
        while j < plain.len() {
            let b = (first + j) / block;
            let end = ((b + 1) * block - first).min(plain.len());
            sums[b] += plain[j..end].iter().map(|&v| v as i32).sum::<i32>();
            j = end;
        }
        for (i, &v) in plain.iter().enumerate() {
            out[permuted(i, chunk)] = v;
        }
    }
    s
}
