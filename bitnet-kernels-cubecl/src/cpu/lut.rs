//! Prefill by table lookup (bitnet.cpp's TL1/TL2 idea, on the packed codes every other path reads), one source
//! ([`lut_kernels!`]) for x86-64 AVX2 ([`avx2`]), AArch64 NEON ([`neon`]) and WebAssembly SIMD128
//! ([`simd128`]): the columns of a row are taken 3 at a time, and for each such group a table holds the 27 sums
//! `c0·a0 + c1·a1 + c2·a2` (codes 0..=2) of its 3 activations for 16 tokens side by side in i16 lanes (one
//! 256-bit vector, or two 128-bit ones). A (row, group) then costs one table load and add per 16 tokens where
//! the multiply-add tiles spend 3 lanes of `vpmaddubsw` (or `smlal`, `i16x8.extmul`) per token: on CPUs without
//! VNNI, 1.4× the AVX2 tiles' rate in cache ([`super::Isa::lookup_tokens`]).
//!
//! A group is lane `j` of three 32-column segments (the code vectors one 32-byte load of packed words yields
//! when shifted and masked, [`super::acts::permuted`]), so each row's 3-trit indices come from its codes with
//! a few vector instructions per 96 columns into a scratch buffer, and the weights keep their one layout: no
//! second copy in memory, and cut once per call for all its groups of 32 tokens. Tables for 32 lanes × 16 tokens,
//! or 16 lanes × 32 tokens, fill 27 KiB and stay in L1 while every row of the call passes over them.

/// Sums per group: one per combination of 3 codes.
const ENTRIES: usize = 27;
/// Columns per segment, and groups per 3 segments.
const SEG: usize = 32;
/// Rows whose table lookups are interleaved, so two chains of adds are in flight.
const ROWS: usize = 2;

/// Defines `ternary_lut_dots` in the invoking module for one instruction set: `features` the `target_feature`
/// list, `vector` a type of 16 i16 lanes in 32 bytes, whose operations the module defines: `zero()`, `load(p)`
/// (16 i16 from `p`, unaligned), `add(a, b)` (lane-wise, wrapping), `widen_add(acc, v)` (the lanes of `v`
/// sign-extended and added to the 16 i32 at `acc`, two vectors' worth), and `offsets((rows, row_bytes, n_rows),
/// at, shift, v2, out)`, which writes each row's 32 table offsets for a trio of segments into `out[2 · r..]` (see
/// `Lut::indices`).
macro_rules! lut_kernels {
    (features: $features:literal, vector: $V:ty $(,)?) => {
        use std::cell::RefCell;

        use crate::cpu::acts::LANES;
        use crate::cpu::lut::{ENTRIES, ROWS, SEG};
        use crate::cpu::scalar;
        use crate::cpu::ternary::ActTile;
        use crate::reference::TernaryShape;

        // Table offsets count 32 bytes a vector.
        const _: () = assert!(std::mem::size_of::<$V>() == 32);

        /// Per-thread buffers, reused across calls.
        #[derive(Default)]
        struct Scratch {
            /// `[group][entry][V]` sums for the groups of one table.
            table: Vec<$V>,
            /// Each row's 32 group indices for the current 3 segments, as byte offsets into a group's table
            /// entries (u16: 2 vectors per row).
            idx: Vec<$V>,
            /// i32 sums per `[token group][row][V][2]` (tokens 0..8 and 8..16 of each vector) for the current
            /// scale block.
            acc: Vec<$V>,
            /// i16 sums per `[row][V]` of the lanes of 3 segments looked up so far, when their tables take more
            /// than one pass: widened into `acc` once per 32 groups, not once per table.
            part: Vec<$V>,
        }

        thread_local! {
            static SCRATCH: RefCell<Scratch> = RefCell::default();
        }

        /// See [`crate::cpu::ternary::ternary_lut_dots`]: `out[(t · rows + r) · blocks + b]` for 1..=16 tokens,
        /// or groups of up to 32 ([`LANES`]) in turn, at most [`crate::cpu::LOOKUP_TOKENS`]: a row's indices are
        /// cut once for all the groups (cutting them again for each 32-token call took about a fifth of the
        /// kernel's instructions).
        ///
        /// # Safety
        /// The CPU has the module's features; blocks are one per row or a multiple of 128 columns; `acts` holds
        /// its tokens' permuted rows (128-column chunks) spanning every chunk of a row and `lanes` the same tokens
        /// side by side ([`crate::cpu::acts::QuantizedActs::lanes`], groups of [`LANES`] `acts.stride · LANES`
        /// values apart) for every column of those chunks; `out` holds every row's dots, zeroed.
        #[target_feature(enable = $features)]
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
            let (whole, out_stride) =
                (row_bytes / 32 * 32, rows.len() / row_bytes * shape.blocks());
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
                let zero = unsafe { std::mem::zeroed::<$V>() };
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
            #[target_feature(enable = $features)]
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
                    self.s.acc.fill(zero());
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

            /// Each row's index `c0 + 3·c1 + 9·c2` per lane for the segments `trio` (a missing one counts as
            /// code 0; its activations are zero in the table), times the bytes of a table entry: segment `s`'s
            /// codes are bits `2 · (s % 4)` of the 32 bytes at byte `s / 4 · 32` of the row. Codes are 0..=2;
            /// the clamp to 26 only keeps a malformed 3 from reading past the table.
            #[target_feature(enable = $features)]
            unsafe fn indices(&mut self, trio: [Option<usize>; 3]) {
                let at = trio.map(|s| s.map(|s| s / 4 * 32));
                let shift = trio.map(|s| 2 * (s.unwrap_or(0) % 4) as u32);
                let rows = (self.rows, self.row_bytes, self.n_rows);
                offsets(
                    rows,
                    at,
                    shift,
                    V == 2,
                    self.s.idx[..self.n_rows * 2].as_mut_ptr(),
                );
            }

            /// The table of lanes `lane0..lane0 + G` of the segments `trio` for the tokens of `group`.
            #[target_feature(enable = $features)]
            unsafe fn build<const G: usize>(
                &mut self,
                trio: [Option<usize>; 3],
                group: usize,
                lane0: usize,
            ) {
                let zero = zero();
                let lanes = self.lanes[group * self.group_lanes..].as_ptr();
                let table = &mut self.s.table;
                for g in 0..G {
                    for v in 0..V {
                        let a = trio.map(|s| {
                            s.map_or(zero, |s| {
                                load(lanes.add((s * SEG + lane0 + g) * LANES + 16 * v))
                            })
                        });
                        let by = a.map(|a| [zero, a, add(a, a)]);
                        let mut low = [zero; 9];
                        for c1 in 0..3 {
                            for c0 in 0..3 {
                                low[c0 + 3 * c1] = add(by[0][c0], by[1][c1]);
                            }
                        }
                        for c2 in 0..3 {
                            for (j, &l) in low.iter().enumerate() {
                                table[(g * ENTRIES + 9 * c2 + j) * V + v] = add(l, by[2][c2]);
                            }
                        }
                    }
                }
            }

            /// The block's sums into `out`, token-major: token by token, so the stores run along `out`.
            fn write_block(&self, b: usize, out: &mut [i32]) {
                let (n_rows, nb) = (self.n_rows, self.shape.blocks());
                let acc = &self.s.acc;
                // SAFETY: the vectors are plain bytes, 8 i32 each where `widen_add` wrote them.
                let sums: &[i32] = unsafe {
                    std::slice::from_raw_parts(
                        acc.as_ptr().cast(),
                        std::mem::size_of_val(&acc[..]) / 4,
                    )
                };
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

        /// Where [`lookups`] adds its sums: the i32 sums `acc`, and the i16 sums `part` carried between the
        /// passes over one trio of segments (`first` starts from zero, `last` widens into `acc`).
        struct Sums<'a> {
            acc: &'a mut [$V],
            part: &'a mut [$V],
            first: bool,
            last: bool,
        }

        /// Every row (`idx`: 2 vectors of u16 offsets per row) through the table of lanes `lane0..lane0 + G`,
        /// added into the rows' sums. At most 32 groups of sums of 3 · 2 · 128 fit an i16 lane: one trio's lanes.
        #[target_feature(enable = $features)]
        unsafe fn lookups<const G: usize, const V: usize>(
            idx: &[$V],
            lane0: usize,
            table: &[$V],
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
        #[target_feature(enable = $features)]
        #[inline]
        unsafe fn rows_lookup<const G: usize, const V: usize, const R: usize>(
            idx: &[$V],
            r0: usize,
            lane0: usize,
            table: &[$V],
            s: &mut Sums,
        ) {
            let offsets = idx.as_ptr().add(r0 * 2) as *const u16;
            let table = table.as_ptr() as *const u8;
            let part = s.part.as_mut_ptr().add(r0 * V);
            let mut sums: [[$V; V]; R] = if s.first {
                [[zero(); V]; R]
            } else {
                std::array::from_fn(|r| std::array::from_fn(|v| *part.add(r * V + v)))
            };
            for g in 0..G {
                let group = table.add(g * ENTRIES * V * 32);
                for (r, sums) in sums.iter_mut().enumerate() {
                    let entry = group.add(*offsets.add(r * SEG + lane0 + g) as usize) as *const $V;
                    for (v, sum) in sums.iter_mut().enumerate() {
                        *sum = add(*sum, *entry.add(v));
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
                    widen_add(acc.add((r * V + v) * 2).cast(), sum);
                }
            }
        }
    };
}

#[cfg(target_arch = "x86_64")]
pub(crate) use avx2::ternary_lut_dots;
#[cfg(target_arch = "aarch64")]
pub(crate) use neon::ternary_lut_dots;
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
pub(crate) use simd128::ternary_lut_dots;

/// The kernel on 256-bit AVX2 vectors.
#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    lut_kernels!(features: "avx2", vector: __m256i);

    #[target_feature(enable = "avx2")]
    #[inline]
    fn zero() -> __m256i {
        _mm256_setzero_si256()
    }

    #[target_feature(enable = "avx2")]
    #[inline]
    unsafe fn load(p: *const i16) -> __m256i {
        _mm256_loadu_si256(p.cast())
    }

    #[target_feature(enable = "avx2")]
    #[inline]
    fn add(a: __m256i, b: __m256i) -> __m256i {
        _mm256_add_epi16(a, b)
    }

    #[target_feature(enable = "avx2")]
    #[inline]
    unsafe fn widen_add(acc: *mut i32, v: __m256i) {
        let acc = acc.cast::<__m256i>();
        let halves = [
            _mm256_cvtepi16_epi32(_mm256_castsi256_si128(v)),
            _mm256_cvtepi16_epi32(_mm256_extracti128_si256::<1>(v)),
        ];
        for (h, half) in halves.into_iter().enumerate() {
            *acc.add(h) = _mm256_add_epi32(*acc.add(h), half);
        }
    }

    /// Each row's 32 offsets (see `Lut::indices`) into `out[2 · r..]`: `at` the byte of each segment's codes in a
    /// row, `shift` their bit, entries of 32 bytes (64 if `v2`).
    #[target_feature(enable = "avx2")]
    #[inline]
    unsafe fn offsets(
        (rows, row_bytes, n_rows): (&[u8], usize, usize),
        at: [Option<usize>; 3],
        shift: [u32; 3],
        v2: bool,
        out: *mut __m256i,
    ) {
        let (mask, top) = (_mm256_set1_epi8(3), _mm256_set1_epi8(26));
        let count = shift.map(|s| _mm_cvtsi32_si128(s as i32));
        for r in 0..n_rows {
            let row = rows.as_ptr().add(r * row_bytes);
            let code = |i: usize| match at[i] {
                Some(o) => {
                    let w = _mm256_loadu_si256(row.add(o) as *const __m256i);
                    _mm256_and_si256(_mm256_srl_epi16(w, count[i]), mask)
                }
                None => _mm256_setzero_si256(),
            };
            let (c0, c1, c2) = (code(0), code(1), code(2));
            let c1x3 = _mm256_add_epi8(_mm256_add_epi8(c1, c1), c1);
            let c2x9 = _mm256_add_epi8(_mm256_slli_epi16::<3>(c2), c2);
            let e = _mm256_min_epu8(_mm256_add_epi8(_mm256_add_epi8(c0, c1x3), c2x9), top);
            let halves = [_mm256_castsi256_si128(e), _mm256_extracti128_si256::<1>(e)];
            for (h, half) in halves.into_iter().enumerate() {
                let offsets = _mm256_slli_epi16::<5>(_mm256_cvtepu8_epi16(half));
                let offsets = if v2 {
                    _mm256_add_epi16(offsets, offsets)
                } else {
                    offsets
                };
                out.add(r * 2 + h).write(offsets);
            }
        }
    }
}

/// The kernel on pairs of 128-bit NEON vectors.
#[cfg(target_arch = "aarch64")]
mod neon {
    use std::arch::aarch64::*;

    lut_kernels!(features: "neon", vector: int16x8x2_t);

    #[target_feature(enable = "neon")]
    #[inline]
    fn zero() -> int16x8x2_t {
        int16x8x2_t(vdupq_n_s16(0), vdupq_n_s16(0))
    }

    #[target_feature(enable = "neon")]
    #[inline]
    unsafe fn load(p: *const i16) -> int16x8x2_t {
        vld1q_s16_x2(p)
    }

    #[target_feature(enable = "neon")]
    #[inline]
    fn add(a: int16x8x2_t, b: int16x8x2_t) -> int16x8x2_t {
        int16x8x2_t(vaddq_s16(a.0, b.0), vaddq_s16(a.1, b.1))
    }

    #[target_feature(enable = "neon")]
    #[inline]
    unsafe fn widen_add(acc: *mut i32, v: int16x8x2_t) {
        for (h, half) in [v.0, v.1].into_iter().enumerate() {
            let p = acc.add(8 * h);
            vst1q_s32(p, vaddw_s16(vld1q_s32(p), vget_low_s16(half)));
            vst1q_s32(p.add(4), vaddw_high_s16(vld1q_s32(p.add(4)), half));
        }
    }

    /// Each row's 32 offsets (see `Lut::indices`) into `out[2 · r..]`, 16 bytes of codes at a time.
    #[target_feature(enable = "neon")]
    #[inline]
    unsafe fn offsets(
        (rows, row_bytes, n_rows): (&[u8], usize, usize),
        at: [Option<usize>; 3],
        shift: [u32; 3],
        v2: bool,
        out: *mut int16x8x2_t,
    ) {
        let (mask, top) = (vdupq_n_u8(3), vdupq_n_u8(26));
        let right = shift.map(|s| vdupq_n_s8(-(s as i8)));
        let entry_bits = vdupq_n_s16(if v2 { 6 } else { 5 });
        for r in 0..n_rows {
            let row = rows.as_ptr().add(r * row_bytes);
            for h in 0..2 {
                let code = |i: usize| match at[i] {
                    Some(o) => vandq_u8(vshlq_u8(vld1q_u8(row.add(o + 16 * h)), right[i]), mask),
                    None => vdupq_n_u8(0),
                };
                let (c0, c1, c2) = (code(0), code(1), code(2));
                let e = vminq_u8(
                    vmlaq_u8(vmlaq_u8(c0, c1, vdupq_n_u8(3)), c2, vdupq_n_u8(9)),
                    top,
                );
                let lo = vshlq_u16(vmovl_u8(vget_low_u8(e)), entry_bits);
                let hi = vshlq_u16(vmovl_high_u8(e), entry_bits);
                out.add(r * 2 + h).write(int16x8x2_t(
                    vreinterpretq_s16_u16(lo),
                    vreinterpretq_s16_u16(hi),
                ));
            }
        }
    }
}

/// The kernel on pairs of 128-bit WebAssembly SIMD vectors.
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
mod simd128 {
    use std::arch::wasm32::*;

    /// 16 i16 lanes: two vectors of 8.
    #[derive(Clone, Copy)]
    pub(crate) struct Pair(v128, v128);

    lut_kernels!(features: "simd128", vector: Pair);

    #[target_feature(enable = "simd128")]
    #[inline]
    fn zero() -> Pair {
        Pair(i16x8_splat(0), i16x8_splat(0))
    }

    #[target_feature(enable = "simd128")]
    #[inline]
    unsafe fn load(p: *const i16) -> Pair {
        Pair(v128_load(p.cast()), v128_load(p.add(8).cast()))
    }

    #[target_feature(enable = "simd128")]
    #[inline]
    fn add(a: Pair, b: Pair) -> Pair {
        Pair(i16x8_add(a.0, b.0), i16x8_add(a.1, b.1))
    }

    #[target_feature(enable = "simd128")]
    #[inline]
    unsafe fn widen_add(acc: *mut i32, v: Pair) {
        for (h, half) in [v.0, v.1].into_iter().enumerate() {
            let p = acc.add(8 * h).cast::<v128>();
            p.write(i32x4_add(p.read(), i32x4_extend_low_i16x8(half)));
            p.add(1)
                .write(i32x4_add(p.add(1).read(), i32x4_extend_high_i16x8(half)));
        }
    }

    /// Each row's 32 offsets (see `Lut::indices`) into `out[2 · r..]`, 16 bytes of codes at a time; shifts in
    /// 16-bit lanes (see [`crate::cpu::simd128::codes`]), the masks and the codes' range keep them in their bytes.
    #[target_feature(enable = "simd128")]
    #[inline]
    unsafe fn offsets(
        (rows, row_bytes, n_rows): (&[u8], usize, usize),
        at: [Option<usize>; 3],
        shift: [u32; 3],
        v2: bool,
        out: *mut Pair,
    ) {
        let (mask, top) = (u8x16_splat(3), u8x16_splat(26));
        let entry_bits = if v2 { 6 } else { 5 };
        for r in 0..n_rows {
            let row = rows.as_ptr().add(r * row_bytes);
            for h in 0..2 {
                let code = |i: usize| match at[i] {
                    Some(o) => {
                        let w = v128_load(row.add(o + 16 * h).cast());
                        v128_and(u16x8_shr(w, shift[i]), mask)
                    }
                    None => u8x16_splat(0),
                };
                let (c0, c1, c2) = (code(0), code(1), code(2));
                let c1x3 = i8x16_add(i8x16_add(c1, c1), c1);
                let c2x9 = i8x16_add(i16x8_shl(c2, 3), c2);
                let e = u8x16_min(i8x16_add(i8x16_add(c0, c1x3), c2x9), top);
                let lo = i16x8_shl(u16x8_extend_low_u8x16(e), entry_bits);
                let hi = i16x8_shl(u16x8_extend_high_u8x16(e), entry_bits);
                out.add(r * 2 + h).write(Pair(lo, hi));
            }
        }
    }
}
