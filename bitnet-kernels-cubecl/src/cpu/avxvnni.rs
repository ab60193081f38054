//! x86-64 AVX-VNNI path (the VEX-encoded 256-bit `vpdpbusd` of Intel Alder Lake and later, AMD Zen 5): the
//! [`vnni_kernels!`] on 256-bit vectors, for the CPUs most laptops and desktops have, with no AVX-512. One
//! 32-byte load of packed words holds 128 trits (the AVX2 path's chunk); with 16 registers, decode tiles are 2
//! rows (8 accumulators, one per row and slice) and prefill tiles 2 rows × 6 tokens (12 accumulators: with 8, the
//! tile waited on `vpdpbusd`'s latency, and 10 left it at that bound: 2 × 5 ran 4% slower end to end on one
//! thread); 3 tokens take 3 rows (9 accumulators: 2 × 3 waited on it too, 15-30% slower in cache).

use std::arch::x86_64::*;

use super::avx2::hsum;

/// The first `n` (< 32) bytes from `p`, zero above (AVX2 has no masked byte load; this runs once per row).
#[target_feature(enable = "avx2")]
#[inline]
unsafe fn load_partial(p: *const i8, n: usize) -> __m256i {
    let mut bytes = [0i8; 32];
    std::ptr::copy_nonoverlapping(p, bytes.as_mut_ptr(), n);
    _mm256_loadu_si256(bytes.as_ptr().cast())
}

/// The activations a prefill tile's rows share: their address, read by each row's `vpdpbusd` as its memory
/// operand ([`dpbusd_at`]). Loaded once into a register for both rows instead, at 5 tokens they were spilled to
/// the stack (16 registers).
#[inline]
fn act(a: *const i8) -> *const i8 {
    a
}

/// `acc + codes · [a]`, the activations at `a` as the instruction's memory operand (inline assembly: the
/// intrinsic's load is shared between rows and kept in a register).
#[target_feature(enable = "avx2,avxvnni")]
#[inline]
unsafe fn dpbusd_at(acc: __m256i, codes: __m256i, a: *const i8) -> __m256i {
    let mut acc = acc;
    std::arch::asm!(
        "{{vex}} vpdpbusd {acc}, {codes}, ymmword ptr [{a}]",
        acc = inout(ymm_reg) acc,
        codes = in(ymm_reg) codes,
        a = in(reg) a,
        options(pure, readonly, nostack, preserves_flags),
    );
    acc
}

/// The sums of each vector's i32 lanes: halves folded pairwise, then two horizontal adds (about 13
/// instructions where four [`hsum`] take 28).
#[target_feature(enable = "avx2")]
#[inline]
fn hsum4([a, b, c, d]: [__m256i; 4]) -> [i32; 4] {
    // 128-bit lanes: [a.lo + a.hi, b.lo + b.hi]
    let fold = |x, y| {
        _mm256_add_epi32(
            _mm256_permute2x128_si256::<0x20>(x, y),
            _mm256_permute2x128_si256::<0x31>(x, y),
        )
    };
    let x = _mm256_hadd_epi32(fold(a, b), fold(c, d));
    // [a, c, a, c | b, d, b, d]
    let x = _mm256_hadd_epi32(x, x);
    let mut lanes = [0i32; 8];
    // SAFETY: `lanes` holds 8 i32.
    unsafe { _mm256_storeu_si256(lanes.as_mut_ptr().cast(), x) };
    [lanes[0], lanes[4], lanes[1], lanes[5]]
}

vnni_kernels! {
    features: "avx2,avxvnni",
    vector: __m256i,
    bytes: 32,
    decode_rows: 2,
    prefill_tiles: [2 => 2, 3 => 3, 4 => 2, 5 => 2, 6 => 2],
    head: {
        tiles: [1 => 2, 2 => 2, 3 => 2, 4 => 2, 5 => 2, 6 => 2, 7 => 1, 8 => 1],
        load_partial: load_partial,
        xor: _mm256_xor_si256,
    },
    zero: _mm256_setzero_si256,
    splat: _mm256_set1_epi8,
    load: _mm256_loadu_si256,
    and: _mm256_and_si256,
    srli16: _mm256_srli_epi16,
    srai32: _mm256_srai_epi32,
    add32: _mm256_add_epi32,
    dpbusd: _mm256_dpbusd_avx_epi32,
    act: act,
    dpbusd_act: dpbusd_at,
    hsum: hsum,
    hsum4: hsum4,
}
