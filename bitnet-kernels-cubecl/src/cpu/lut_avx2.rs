//! x86-64 AVX2 prefill by table lookup (bitnet.cpp's TL2 idea, on the packed codes every other path reads):
//! the columns of a row are taken 3 at a time, and for each such group a table holds the 27 sums
//! `c0·a0 + c1·a1 + c2·a2` (codes 0..=2) of its 3 activations for 16 tokens side by side in i16 lanes. A
//! (row, group) then costs one table load and add per 16 tokens where the multiply-add tiles spend 3 lanes of
//! `vpmaddubsw` per token: on CPUs without VNNI, 1.4× the AVX2 tiles' rate in cache (`Isa::lookup_tokens`).
//!
//! A group is lane `j` of three 32-column segments (the code vectors one 32-byte load of packed words yields
//! when shifted and masked, [`super::acts::permuted`]), so each row's 3-trit indices come from its codes with
//! a few vector instructions per 96 columns into a scratch buffer, and the weights keep their one layout: no
//! second copy in memory, and cut once per call for all its groups of 32 tokens. Tables for 32 lanes × 16 tokens,
//! or 16 lanes × 32 tokens, fill 27 KiB and stay in L1 while every row of the call passes over them.

use std::arch::x86_64::*;
use std::cell::RefCell;

use super::acts::LANES;
use super::scalar;
use super::ternary::ActTile;
use crate::reference::TernaryShape;

/// Sums per group: one per combination of 3 codes.
const ENTRIES: usize = 27;
/// Columns per segment, and groups per 3 segments.
const SEG: usize = 32;
/// Rows whose table lookups are interleaved, so two chains of adds are in flight.
const ROWS: usize = 2;

/// Per-thread buffers, reused across calls.
#[derive(Default)]
struct Scratch {
    /// `[group][entry][V]` sums for the groups of one table.
    table: Vec<__m256i>,
    /// Each row's 32 group indices for the current 3 segments, as byte offsets into a group's table entries
    /// (u16: 2 vectors per row).
    idx: Vec<__m256i>,
    /// i32 sums per `[token group][row][V][2]` (tokens 0..8 and 8..16 of each vector) for the current scale
    /// block.
    acc: Vec<__m256i>,
    /// i16 sums per `[row][V]` of the lanes of 3 segments looked up so far, when their tables take more than
    /// one pass: widened into `acc` once per 32 groups, not once per table.
    part: Vec<__m256i>,
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = RefCell::default();
}

/// See [`super::ternary::ternary_lut_dots`]: `out[(t · rows + r) · blocks + b]` for 1..=16 tokens, or groups of
/// up to 32 ([`LANES`]) in turn, at most [`super::isa::LOOKUP_TOKENS`]: a row's indices are cut once for all the
/// groups (cutting them again for each 32-token call took about a fifth of the kernel's instructions).
///
/// # Safety
/// The CPU supports AVX2; blocks are one per row or a multiple of 128 columns; `acts` holds its tokens'
/// permuted rows (128-column chunks) spanning every chunk of a row and `lanes` the same tokens side by side
/// ([`super::acts::QuantizedActs::lanes`], groups of [`LANES`] `acts.stride · LANES` values apart) for every
/// column of those chunks; `out` holds every row's dots, zeroed.
#[target_feature(enable = "avx2")]
pub(crate) unsafe fn ternary_lut_dots(
    rows: &[u8],
    row_bytes: usize,
    acts: ActTile,
    lanes: &[i16],
    shape: TernaryShape,
    out: &mut [i32],
) {
    SCRATCH.with_borrow_mut(|s| {
        let lanes = (lanes, acts.stride * LANES);
        if acts.tokens <= 16 {
            Lut::<1>::new(rows, row_bytes, acts.tokens, lanes, shape, s).run::<32>(out)
        } else {
            Lut::<2>::new(rows, row_bytes, acts.tokens, lanes, shape, s).run::<16>(out)
        }
    });
    let (whole, out_stride) = (row_bytes / 32 * 32, rows.len() / row_bytes * shape.blocks());
    scalar::ternary_rows_dots(rows, row_bytes, whole, acts, shape, out, out_stride);
}

/// One call's operands, for groups of `V` vectors of 16 tokens.
struct Lut<'a, const V: usize> {
    rows: &'a [u8],
    row_bytes: usize,
    n_rows: usize,
    tokens: usize,
    /// Groups of `16 · V` tokens.
    groups: usize,
    lanes: &'a [i16],
    /// Values from one group's lanes to the next's.
    group_lanes: usize,
    shape: TernaryShape,
    s: &'a mut Scratch,
}

impl<'a, const V: usize> Lut<'a, V> {
    /// Sizes the scratch.
    fn new(
        rows: &'a [u8],
        row_bytes: usize,
        tokens: usize,
        (lanes, group_lanes): (&'a [i16], usize),
        shape: TernaryShape,
        s: &'a mut Scratch,
    ) -> Self {
        let n_rows = rows.len() / row_bytes;
        let groups = tokens.div_ceil(16 * V);
        // SAFETY: all-zero bytes are a valid vector.
        let zero = unsafe { std::mem::zeroed::<__m256i>() };
        assert!(V == 2 || groups == 1);
        assert!(lanes.len() >= (groups - 1) * group_lanes + row_bytes / 32 * 128 * LANES);
        s.table.resize(SEG * ENTRIES * V, zero);
        s.idx.resize(n_rows * 2, zero);
        s.acc.resize(groups * n_rows * V * 2, zero);
        s.part.resize(n_rows * V, zero);
        Self {
            rows,
            row_bytes,
            n_rows,
            tokens,
            groups,
            lanes,
            group_lanes,
            shape,
            s,
        }
    }

    /// Every whole chunk's dots added to `out`, scale block by scale block; `G` groups per table.
    #[target_feature(enable = "avx2")]
    unsafe fn run<const G: usize>(&mut self, out: &mut [i32]) {
        let segs = self.row_bytes / 32 * 4;
        let nb = self.shape.blocks();
        let block_segs = if nb == 1 {
            segs
        } else {
            self.shape.block / SEG
        };
        for b in 0..nb {
            let (first, end) = (b * block_segs, ((b + 1) * block_segs).min(segs));
            if first >= end {
                break;
            }
            self.s.acc.fill(_mm256_setzero_si256());
            for s0 in (first..end).step_by(3) {
                let trio = [s0, s0 + 1, s0 + 2].map(|s| (s < end).then_some(s));
                self.indices(trio);
                let group_acc = self.n_rows * V * 2;
                for group in 0..self.groups {
                    for lane0 in (0..SEG).step_by(G) {
                        self.build::<G>(trio, group, lane0);
                        let s = &mut *self.s;
                        let sums = Sums {
                            acc: &mut s.acc[group * group_acc..(group + 1) * group_acc],
                            part: &mut s.part,
                            first: lane0 == 0,
                            last: lane0 + G == SEG,
                        };
                        lookups::<G, V>(&s.idx, lane0, &s.table, sums);
                    }
                }
            }
            self.write_block(b, out);
        }
    }

    /// Each row's index `c0 + 3·c1 + 9·c2` per lane for the segments `trio` (a missing one counts as code 0;
    /// its activations are zero in the table). Codes are 0..=2; the clamp to 26 only keeps a malformed 3 from
    /// reading past the table.
    #[target_feature(enable = "avx2")]
    unsafe fn indices(&mut self, trio: [Option<usize>; 3]) {
        let (mask, top) = (_mm256_set1_epi8(3), _mm256_set1_epi8(26));
        let zero = _mm256_setzero_si256();
        let shift = trio.map(|s| _mm_cvtsi32_si128(2 * (s.unwrap_or(0) % 4) as i32));
        let offset = trio.map(|s| s.map(|s| s / 4 * 32));
        let idx = self.s.idx[..self.n_rows * 2].as_mut_ptr();
        for r in 0..self.n_rows {
            let row = self.rows.as_ptr().add(r * self.row_bytes);
            let code = |i: usize| match offset[i] {
                Some(o) => {
                    let w = _mm256_loadu_si256(row.add(o) as *const __m256i);
                    _mm256_and_si256(_mm256_srl_epi16(w, shift[i]), mask)
                }
                None => zero,
            };
            let (c0, c1, c2) = (code(0), code(1), code(2));
            let c1x3 = _mm256_add_epi8(_mm256_add_epi8(c1, c1), c1);
            let c2x9 = _mm256_add_epi8(_mm256_slli_epi16::<3>(c2), c2);
            let e = _mm256_min_epu8(_mm256_add_epi8(_mm256_add_epi8(c0, c1x3), c2x9), top);
            // entries are V vectors of 32 bytes
            let halves = [_mm256_castsi256_si128(e), _mm256_extracti128_si256::<1>(e)];
            for (h, half) in halves.into_iter().enumerate() {
                let offsets = _mm256_slli_epi16::<5>(_mm256_cvtepu8_epi16(half));
                let offsets = if V == 2 {
                    _mm256_add_epi16(offsets, offsets)
                } else {
                    offsets
                };
                idx.add(r * 2 + h).write(offsets);
            }
        }
    }

    /// The table of lanes `lane0..lane0 + G` of the segments `trio` for the tokens of `group`.
    #[target_feature(enable = "avx2")]
    unsafe fn build<const G: usize>(
        &mut self,
        trio: [Option<usize>; 3],
        group: usize,
        lane0: usize,
    ) {
        let zero = _mm256_setzero_si256();
        let lanes = self.lanes[group * self.group_lanes..].as_ptr();
        let table = &mut self.s.table;
        for g in 0..G {
            for v in 0..V {
                let a = trio.map(|s| {
                    s.map_or(zero, |s| {
                        _mm256_loadu_si256(lanes.add((s * SEG + lane0 + g) * LANES + 16 * v).cast())
                    })
                });
                let by = a.map(|a| [zero, a, _mm256_add_epi16(a, a)]);
                let mut low = [zero; 9];
                for c1 in 0..3 {
                    for c0 in 0..3 {
                        low[c0 + 3 * c1] = _mm256_add_epi16(by[0][c0], by[1][c1]);
                    }
                }
                for c2 in 0..3 {
                    for (j, &l) in low.iter().enumerate() {
                        table[(g * ENTRIES + 9 * c2 + j) * V + v] = _mm256_add_epi16(l, by[2][c2]);
                    }
                }
            }
        }
    }

    /// The block's sums into `out`, token-major: token by token, so the stores run along `out`.
    fn write_block(&self, b: usize, out: &mut [i32]) {
        let (n_rows, nb) = (self.n_rows, self.shape.blocks());
        let sums: &[i32] = bytemuck::cast_slice(&self.s.acc);
        for t in 0..self.tokens {
            let (group, lane) = (t / (16 * V), t % (16 * V));
            let sums = &sums[group * n_rows * 16 * V..];
            let out = &mut out[t * n_rows * nb..(t + 1) * n_rows * nb];
            for (r, out) in out.iter_mut().skip(b).step_by(nb).enumerate() {
                *out += sums[r * 16 * V + lane];
            }
        }
    }
}

/// Where [`lookups`] adds its sums: the i32 sums `acc`, and the i16 sums `part` carried between the passes
/// over one trio of segments (`first` starts from zero, `last` widens into `acc`).
struct Sums<'a> {
    acc: &'a mut [__m256i],
    part: &'a mut [__m256i],
    first: bool,
    last: bool,
}

/// Every row (`idx`: 2 vectors of u16 offsets per row) through the table of lanes `lane0..lane0 + G`, added
/// into the rows' sums. At most 32 groups of sums of 3 · 2 · 128 fit an i16 lane: one trio's lanes.
#[target_feature(enable = "avx2")]
unsafe fn lookups<const G: usize, const V: usize>(
    idx: &[__m256i],
    lane0: usize,
    table: &[__m256i],
    mut sums: Sums,
) {
    let n_rows = idx.len() / 2;
    assert!(
        sums.acc.len() >= n_rows * V * 2
            && sums.part.len() >= n_rows * V
            && table.len() >= G * ENTRIES * V
            && lane0 + G <= SEG
    );
    let whole = n_rows - n_rows % ROWS;
    for r0 in (0..whole).step_by(ROWS) {
        rows_lookup::<G, V, ROWS>(idx, r0, lane0, table, &mut sums);
    }
    for r0 in whole..n_rows {
        rows_lookup::<G, V, 1>(idx, r0, lane0, table, &mut sums);
    }
}

/// Rows `r0..r0 + R` of [`lookups`], the caller having checked the sizes.
#[target_feature(enable = "avx2")]
#[inline]
unsafe fn rows_lookup<const G: usize, const V: usize, const R: usize>(
    idx: &[__m256i],
    r0: usize,
    lane0: usize,
    table: &[__m256i],
    s: &mut Sums,
) {
    let offsets = idx.as_ptr().add(r0 * 2) as *const u16;
    let table = table.as_ptr() as *const u8;
    let part = s.part.as_mut_ptr().add(r0 * V);
    let mut sums: [[__m256i; V]; R] = if s.first {
        [[_mm256_setzero_si256(); V]; R]
    } else {
        std::array::from_fn(|r| std::array::from_fn(|v| *part.add(r * V + v)))
    };
    for g in 0..G {
        let group = table.add(g * ENTRIES * V * 32);
        for (r, sums) in sums.iter_mut().enumerate() {
            let entry = group.add(*offsets.add(r * SEG + lane0 + g) as usize) as *const __m256i;
            for (v, sum) in sums.iter_mut().enumerate() {
                *sum = _mm256_add_epi16(*sum, _mm256_load_si256(entry.add(v)));
            }
        }
    }
    if !s.last {
        for (r, sums) in sums.iter().enumerate() {
            for (v, &sum) in sums.iter().enumerate() {
                *part.add(r * V + v) = sum;
            }
        }
        return;
    }
    let acc = s.acc.as_mut_ptr().add(r0 * V * 2);
    for (r, sums) in sums.iter().enumerate() {
        for (v, &sum) in sums.iter().enumerate() {
            let halves = [
                _mm256_cvtepi16_epi32(_mm256_castsi256_si128(sum)),
                _mm256_cvtepi16_epi32(_mm256_extracti128_si256::<1>(sum)),
            ];
            for (h, half) in halves.into_iter().enumerate() {
                let a = acc.add((r * V + v) * 2 + h);
                *a = _mm256_add_epi32(*a, half);
            }
        }
    }
}
