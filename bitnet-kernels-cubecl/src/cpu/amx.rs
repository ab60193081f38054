//! x86-64 AMX path (Intel Xeon since Sapphire Rapids): the multi-token ternary tiles as AMX-INT8 tile
//! multiplies. One `tdpbusd` multiplies a 16 × 64 tile of unsigned bytes by a 64 × 16 tile of signed bytes
//! into 16 × 16 i32 (16,384 multiply-adds) in about 16 cycles; `vpdpbusd` does 64 per instruction, two per cycle.
//!
//! An A tile is 16 weight rows × one slice of 64 codes (the AVX-512 tiles' slices: the packed words stay in
//! the crate's one layout), cut out of the packed words with GFNI and stored to a buffer in L1, since tiles
//! load only from memory; a B tile is the slice's 64 activations of up to 16 tokens, interleaved by groups of
//! four bytes once per matmul ([`super::acts::QuantizedActs::fill_tiles`]). A pass covers a pair of 16-row
//! groups × two groups of up to 16 tokens in four C tiles, so each A tile serves both token groups and each B
//! tile both row groups. The stores of one chunk's codes overlap the multiplies of the one before; they bound
//! a pass with few tokens, so the path starts at 6 ([`super::Isa::tile_multiplies`]).
//!
//! Rust has no stable AMX intrinsics: the tile instructions are inline assembly on the registers named in it
//! (`tmm0`-`tmm3` accumulate, `tmm4`/`tmm5` hold codes, `tmm6`/`tmm7` activations); the compiler never
//! allocates tile registers. The tile configuration is per thread: each call loads it and releases the tiles.

use std::arch::asm;
use std::arch::x86_64::*;
use std::cell::RefCell;
use std::sync::OnceLock;

use super::acts::{TILE_COLS, TILE_TOKENS};
use super::avx512::gfni::gfni_codes;
use super::ternary::ActTile;
use crate::reference::TernaryShape;

/// Weight rows of a tile (the A and C tiles' rows).
const TILE_ROWS: usize = 16;
/// Columns per vector load of packed words (the AVX-512 chunk).
const CHUNK: usize = 4 * TILE_COLS;
/// Bytes of one A tile: 16 rows × 64 codes.
const A_BYTES: usize = TILE_ROWS * TILE_COLS;

/// Whether this CPU and OS run AMX-INT8: CPUID says so, the OS saves the tile state (XCR0 bits 17-18), and
/// (Linux) the process was granted the tile data, requested once here: without it the first tile
/// instruction faults.
pub(crate) fn usable() -> bool {
    static USABLE: OnceLock<bool> = OnceLock::new();
    *USABLE.get_or_init(|| {
        // CPUID.(7, 0):EDX bits 24 (AMX-TILE) and 25 (AMX-INT8); CPUID.1:ECX bit 27 (OSXSAVE) guards XGETBV
        let cpu = __cpuid_count(7, 0).edx >> 24 & 3 == 3;
        let osxsave = __cpuid(1).ecx >> 27 & 1 == 1;
        // SAFETY: OSXSAVE says XGETBV runs and XCR0 is readable.
        cpu && osxsave && unsafe { xcr0() } >> 17 & 3 == 3 && request_tile_data()
    })
}

/// The OS's enabled state components (XCR0).
#[target_feature(enable = "xsave")]
unsafe fn xcr0() -> u64 {
    _xgetbv(0)
}

/// Asks Linux for the tile data state (`ARCH_REQ_XCOMP_PERM`, `XFEATURE_XTILEDATA`), for the whole process.
#[cfg(target_os = "linux")]
fn request_tile_data() -> bool {
    const ARCH_REQ_XCOMP_PERM: libc::c_long = 0x1023;
    const XFEATURE_XTILEDATA: libc::c_long = 18;
    // SAFETY: arch_prctl with these arguments changes only the process's permissions.
    unsafe {
        libc::syscall(
            libc::SYS_arch_prctl,
            ARCH_REQ_XCOMP_PERM,
            XFEATURE_XTILEDATA,
        ) == 0
    }
}

/// Elsewhere the permission is not known to be granted: no AMX.
#[cfg(not(target_os = "linux"))]
fn request_tile_data() -> bool {
    false
}

/// The 64-byte tile configuration (palette 1): each tile's rows and bytes per row.
#[repr(C, align(64))]
struct TileConfig([u8; 64]);

impl TileConfig {
    /// Accumulators `tmm0`/`tmm1` of 16 rows × `first` i32 and `tmm2`/`tmm3` of 16 × `second`, codes
    /// `tmm4`/`tmm5` of 16 × 64 bytes, activations `tmm6` of 16 rows (64 columns by fours) × `first` groups of
    /// four bytes and `tmm7` × `second` (tiles of 0 tokens are left unconfigured).
    fn new(first: usize, second: usize) -> Self {
        let mut c = [0u8; 64];
        c[0] = 1;
        let [first, second] = [first, second].map(|tokens| (4 * tokens) as u16);
        let widths = [
            first,
            first,
            second,
            second,
            TILE_COLS as u16,
            TILE_COLS as u16,
            first,
            second,
        ];
        for (tile, bytes) in widths.into_iter().enumerate().filter(|&(_, b)| b > 0) {
            c[16 + 2 * tile..18 + 2 * tile].copy_from_slice(&bytes.to_le_bytes());
            c[48 + tile] = TILE_ROWS as u8;
        }
        Self(c)
    }
}

/// Loads `tmm$t` from `$p`, rows `$stride` bytes apart.
macro_rules! tileloadd {
    ($t:literal, $p:expr, $stride:expr) => {
        asm!(concat!("tileloadd tmm", $t, ", [{p} + {s}]"), p = in(reg) $p, s = in(reg) $stride,
             options(nostack, readonly, preserves_flags))
    };
}

/// `tmm$c += tmm$a (unsigned bytes) · tmm$b (signed bytes)`, groups of four bytes summed into i32.
macro_rules! tdpbusd {
    ($c:literal, $a:literal, $b:literal) => {
        asm!(
            concat!("tdpbusd tmm", $c, ", tmm", $a, ", tmm", $b),
            options(nomem, nostack, preserves_flags)
        )
    };
}

/// `tmm$c += tmm$a (signed bytes) · tmm$b (signed bytes)`, groups of four bytes summed into i32.
macro_rules! tdpbssd {
    ($c:literal, $a:literal, $b:literal) => {
        asm!(
            concat!("tdpbssd tmm", $c, ", tmm", $a, ", tmm", $b),
            options(nomem, nostack, preserves_flags)
        )
    };
}

/// Stores `tmm$t` to `$p`, rows `$stride` bytes apart.
macro_rules! tilestored {
    ($t:literal, $p:expr, $stride:expr) => {
        asm!(concat!("tilestored [{p} + {s}], tmm", $t), p = in(reg) $p, s = in(reg) $stride,
             options(nostack, preserves_flags))
    };
}

/// A chunk's codes for a pair of row groups (four A tiles each, `[group][slice][row][64]`), twice: one
/// filled while the other is multiplied.
#[repr(C, align(64))]
struct Codes([[u8; PAIR_BYTES]; 2]);

/// Bytes of a chunk's codes for a pair of row groups.
const PAIR_BYTES: usize = 2 * 4 * A_BYTES;

/// A thread's buffers for [`ternary_tile_dots`], kept between calls: the chunks' [`Codes`] and the C tiles
/// stored back. Zeroed on the stack at every call (20 KiB per 64 rows), they took 0.8% of a pp512 profile.
struct Scratch {
    codes: Codes,
    dots: [[i32; TILE_ROWS * TILE_TOKENS]; 4],
}

thread_local! {
    static SCRATCH: RefCell<Box<Scratch>> = RefCell::new(Box::new(Scratch {
        codes: Codes([[0; PAIR_BYTES]; 2]),
        dots: [[0; TILE_ROWS * TILE_TOKENS]; 4],
    }));
}

/// See [`crate::cpu::ternary::ternary_tile_dots`]: `rows` packed rows (`row_bytes` apart) × `acts.tokens`
/// (1..=2 · [`TILE_TOKENS`]) tokens, whose `acts.tiles` hold their activations interleaved for the B tiles.
/// Pairs of 16-row groups × the first 16 tokens and the rest: each A tile (a group's slice of codes) serves
/// both token groups and each B tile both row groups, four `tdpbusd` per four tile loads. Ragged groups
/// multiply zeros past the matrix and keep their own rows; the ragged tail of each row runs on the portable
/// path.
///
/// # Safety
/// The CPU has AVX-512 F/BW and GFNI, and AMX-INT8 is [`usable`]; blocks are one per row or a multiple of
/// [`CHUNK`] columns; `acts.q` holds the tokens permuted in [`CHUNK`]-column chunks and `acts.tiles` the same
/// values interleaved, spanning every chunk of a row; `out` holds every row's dots, zeroed.
#[target_feature(enable = "avx512f,avx512bw,gfni")]
pub(crate) unsafe fn ternary_tile_dots(
    rows: &[u8],
    row_bytes: usize,
    acts: ActTile,
    shape: TernaryShape,
    out: &mut [i32],
) {
    // SAFETY: the caller's guarantees.
    SCRATCH.with_borrow_mut(|s| unsafe { tile_dots(s, rows, row_bytes, acts, shape, out) })
}

/// [`ternary_tile_dots`] with the thread's buffers.
#[target_feature(enable = "avx512f,avx512bw,gfni")]
unsafe fn tile_dots(
    Scratch { codes, dots }: &mut Scratch,
    rows: &[u8],
    row_bytes: usize,
    acts: ActTile,
    shape: TernaryShape,
    out: &mut [i32],
) {
    let ActTile {
        tokens,
        tiles,
        stride,
        ..
    } = acts;
    let (nb, n_rows, chunks) = (
        shape.blocks(),
        rows.len() / row_bytes,
        row_bytes / TILE_COLS,
    );
    let block_chunks = if nb == 1 { chunks } else { shape.block / CHUNK };
    let (first, second) = (tokens.min(TILE_TOKENS), tokens.saturating_sub(TILE_TOKENS));
    assert!(second <= TILE_TOKENS, "{tokens} tokens");
    // one slice of each token group's B: 16 rows of four bytes per token
    let b = Operand::new(tiles.as_ptr(), stride, first, second);
    assert!(
        tiles.len() >= tokens * stride && stride >= chunks * CHUNK,
        "activation tiles"
    );
    let config = TileConfig::new(first, second);
    asm!("ldtilecfg [{}]", in(reg) config.0.as_ptr(), options(nostack, readonly, preserves_flags));
    let ahead = super::ternary::prefetch_distance(2 * TILE_ROWS, row_bytes);
    for g0 in (0..n_rows).step_by(2 * TILE_ROWS) {
        let group_rows = (n_rows - g0).min(2 * TILE_ROWS);
        if group_rows < 2 * TILE_ROWS {
            // rows past the matrix multiply zeros, not the last pair's codes
            for buffer in &mut codes.0 {
                buffer.fill(0);
            }
        }
        let pair = group_rows > TILE_ROWS;
        let wp = rows.as_ptr().add(g0 * row_bytes);
        let mut c = 0;
        for block in 0..nb {
            let block_end = (c + block_chunks).min(chunks);
            zero_accumulators(second > 0);
            let unpack = |codes: &mut Codes, c: usize| {
                unpack(&mut codes.0[c % 2], (wp, row_bytes, group_rows), c, ahead)
            };
            if c < block_end {
                unpack(codes, c);
            }
            for c in c..block_end {
                if c + 1 < block_end {
                    unpack(codes, c + 1);
                }
                let a = codes.0[c % 2].as_ptr();
                match (pair, second > 0) {
                    (true, true) => multiply::<true, true>(a, &b, c),
                    (true, false) => multiply::<true, false>(a, &b, c),
                    (false, true) => multiply::<false, true>(a, &b, c),
                    (false, false) => multiply::<false, false>(a, &b, c),
                }
            }
            store_accumulators(dots, &b, second > 0);
            for r in 0..group_rows {
                let (i, row) = (r / TILE_ROWS, r % TILE_ROWS);
                for (j, (t0, n)) in [(0, first), (TILE_TOKENS, second)].into_iter().enumerate() {
                    let dots = &dots[2 * j + i][row * n..(row + 1) * n];
                    for (t, &d) in (t0..).zip(dots) {
                        out[(t * n_rows + g0 + r) * nb + block] += d;
                    }
                }
            }
            c = block_end;
        }
    }
    asm!("tilerelease", options(nomem, nostack, preserves_flags));
    let tail = ActTile {
        chunk: CHUNK,
        ..acts
    };
    super::scalar::ternary_rows_dots(
        rows,
        row_bytes,
        chunks * TILE_COLS,
        tail,
        shape,
        out,
        n_rows * nb,
    );
}

/// The B tiles of a call: each token group's start, bytes per tile row and per slice.
struct Operand {
    first: *const i8,
    second: *const i8,
    row: [usize; 2],
    slice: [usize; 2],
}

impl Operand {
    /// The B tiles of `first` tokens from `tiles` and, `stride` bytes a token later, of `second` more.
    fn new(tiles: *const i8, stride: usize, first: usize, second: usize) -> Self {
        Self {
            first: tiles,
            second: tiles.wrapping_add(TILE_TOKENS * stride),
            row: [4 * first, 4 * second],
            slice: [TILE_COLS * first, TILE_COLS * second],
        }
    }
}

/// Zeroes the C tiles `tmm0`/`tmm1` and, with `second`, `tmm2`/`tmm3` (an unconfigured tile faults).
#[inline(always)]
unsafe fn zero_accumulators(second: bool) {
    asm!(
        "tilezero tmm0",
        "tilezero tmm1",
        options(nomem, nostack, preserves_flags)
    );
    if second {
        asm!(
            "tilezero tmm2",
            "tilezero tmm3",
            options(nomem, nostack, preserves_flags)
        );
    }
}

/// Stores C tile `2j + i` (row group `i` × token group `j`, `[row][token]`) to `dots[2j + i]`, the second
/// token group's with `second`.
#[inline(always)]
unsafe fn store_accumulators(
    dots: &mut [[i32; TILE_ROWS * TILE_TOKENS]; 4],
    b: &Operand,
    second: bool,
) {
    tilestored!(0, dots[0].as_mut_ptr(), b.row[0]);
    tilestored!(1, dots[1].as_mut_ptr(), b.row[0]);
    if second {
        tilestored!(2, dots[2].as_mut_ptr(), b.row[1]);
        tilestored!(3, dots[3].as_mut_ptr(), b.row[1]);
    }
}

/// The four slices of chunk `c`: A tiles `tmm4` (row group 0) and, with `PAIR`, `tmm5` (group 1) from `a`
/// ([`Codes`]); B tiles `tmm6` (token group 0) and, with `SECOND`, `tmm7` (group 1); C tile `2j + i` gets row
/// group `i` × token group `j`.
#[inline(always)]
unsafe fn multiply<const PAIR: bool, const SECOND: bool>(a: *const u8, b: &Operand, c: usize) {
    for s in 0..4 {
        let a = a.add(s * A_BYTES);
        tileloadd!(4, a, TILE_COLS);
        tileloadd!(6, b.first.add((4 * c + s) * b.slice[0]), b.row[0]);
        tdpbusd!(0, 4, 6);
        if PAIR {
            tileloadd!(5, a.add(4 * A_BYTES), TILE_COLS);
            tdpbusd!(1, 5, 6);
        }
        if SECOND {
            tileloadd!(7, b.second.add((4 * c + s) * b.slice[1]), b.row[1]);
            tdpbusd!(2, 4, 7);
            if PAIR {
                tdpbusd!(3, 5, 7);
            }
        }
    }
}

/// Stores the four slices of chunk `c` of `rows` (up to 32) rows `row_bytes` apart from `wp` into `codes`
/// ([`Codes`]' layout), prefetching `ahead` ([`super::ternary::prefetch_distance`]).
#[target_feature(enable = "avx512f,avx512bw,gfni")]
#[inline]
unsafe fn unpack(
    codes: &mut [u8; PAIR_BYTES],
    (wp, row_bytes, rows): (*const u8, usize, usize),
    c: usize,
    ahead: usize,
) {
    let buffer = codes.as_mut_ptr();
    for r in 0..rows {
        _mm_prefetch::<_MM_HINT_T1>(wp.wrapping_add(ahead + (c * 2 * TILE_ROWS + r) * 64).cast());
        let w = _mm512_loadu_si512(wp.add(r * row_bytes + c * TILE_COLS).cast());
        let group = buffer.add(r / TILE_ROWS * 4 * A_BYTES + r % TILE_ROWS * TILE_COLS);
        for s in 0..4 {
            _mm512_store_si512(group.add(s * A_BYTES).cast(), gfni_codes(w, s));
        }
    }
}

/// The int8 head's dots on tile multiplies: `w [n, k]` int8 rows (`row_bytes` apart) against `m` tokens whose
/// activations `tiles` holds interleaved for the B tiles ([`super::acts::QuantizedActs::fill_tiles`] of plain
/// rows, `stride` bytes a token), for the whole 32-row groups of `rows`: each pair of 16-row A tiles, loaded
/// straight from the rows (no copy: the weights are signed bytes as `tdpbssd` takes them), meets each pair of
/// 16-token B tiles in four C tiles over all of `k`. `emit(t, r0, dots)` receives token `t`'s 32 dots of rows
/// `r0..r0 + 32`. A `vpdpbusd` head tile of 2 rows × 8 tokens re-reads the activations for every two rows and
/// does 64 multiply-adds an instruction; a `tdpbssd` does 16,384.
///
/// # Safety
/// AMX-INT8 is [`usable`]; `k` is a multiple of [`TILE_COLS`]; `w` holds the rows of `rows`, `k` bytes each,
/// and `tiles` `m` tokens of `stride ≥ k` bytes.
pub(crate) unsafe fn int8_head_dots(
    (w, row_bytes, k): (&[i8], usize, usize),
    rows: std::ops::Range<usize>,
    (tiles, stride, m): (&[i8], usize, usize),
    mut emit: impl FnMut(usize, usize, &[i32; 2 * TILE_ROWS]),
) {
    assert!(k.is_multiple_of(TILE_COLS) && stride >= k && tiles.len() >= m * stride);
    assert!(rows.is_empty() || w.len() >= (rows.end - 1) * row_bytes + k);
    let mut dots = [[0i32; TILE_ROWS * TILE_TOKENS]; 4];
    let mut token_dots = [0i32; 2 * TILE_ROWS];
    let mut config = None;
    for r0 in rows
        .clone()
        .step_by(2 * TILE_ROWS)
        .take(rows.len() / (2 * TILE_ROWS))
    {
        let a = w.as_ptr().add(r0 * row_bytes);
        for t0 in (0..m).step_by(2 * TILE_TOKENS) {
            let (first, second) = (
                (m - t0).min(TILE_TOKENS),
                (m - t0).saturating_sub(TILE_TOKENS).min(TILE_TOKENS),
            );
            if config != Some((first, second)) {
                let c = TileConfig::new(first, second);
                asm!("ldtilecfg [{}]", in(reg) c.0.as_ptr(), options(nostack, readonly, preserves_flags));
                config = Some((first, second));
            }
            let b = Operand::new(tiles.as_ptr().add(t0 * stride), stride, first, second);
            zero_accumulators(second > 0);
            for s in 0..k / TILE_COLS {
                tileloadd!(4, a.add(s * TILE_COLS), row_bytes);
                tileloadd!(5, a.add(TILE_ROWS * row_bytes + s * TILE_COLS), row_bytes);
                tileloadd!(6, b.first.add(s * b.slice[0]), b.row[0]);
                tdpbssd!(0, 4, 6);
                tdpbssd!(1, 5, 6);
                if second > 0 {
                    tileloadd!(7, b.second.add(s * b.slice[1]), b.row[1]);
                    tdpbssd!(2, 4, 7);
                    tdpbssd!(3, 5, 7);
                }
            }
            store_accumulators(&mut dots, &b, second > 0);
            for (j, n) in [first, second].into_iter().enumerate() {
                for t in 0..n {
                    for (r, d) in token_dots.iter_mut().enumerate() {
                        *d = dots[2 * j + r / TILE_ROWS][r % TILE_ROWS * n + t];
                    }
                    emit(t0 + j * TILE_TOKENS + t, r0, &token_dots);
                }
            }
        }
    }
    if config.is_some() {
        asm!("tilerelease", options(nomem, nostack, preserves_flags));
    }
}
