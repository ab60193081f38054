//! x86-64 AVX-512 VNNI path: the [`vnni_kernels!`] on 512-bit vectors. One 64-byte load of packed words holds
//! 256 trits; decode tiles of 4 rows keep 16 accumulators, tiles of 4 rows × 6 tokens 24 (of 32 registers) and
//! of 3 rows × 8 tokens 24 (a batched decode step's 8 streams in one pass; 4 × 8 would not fit); 5 tokens take 3
//! rows (4 × 5 ran 30% slower in cache); the int8 head shares each row's read among up to 8 tokens.

use std::arch::x86_64::*;

/// The first `n` (< 64) bytes from `p`, zero above.
#[target_feature(enable = "avx512f,avx512bw")]
#[inline]
unsafe fn load_partial(p: *const i8, n: usize) -> __m512i {
    _mm512_maskz_loadu_epi8((1u64 << n) - 1, p)
}

/// The activations a prefill tile's rows share: loaded once into one of the 32 registers.
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn act(a: *const i8) -> __m512i {
    _mm512_loadu_si512(a.cast())
}

/// The sums of each vector's i32 lanes: the four folded together in 9 shuffles and adds, then each 128-bit
/// lane summed (15 instructions where four `_mm512_reduce_add_epi32` take about 36; a tile of 4 rows × 4
/// tokens over 2560 columns spent 15% of its instructions on them).
#[target_feature(enable = "avx512f")]
#[inline]
fn hsum4([a, b, c, d]: [__m512i; 4]) -> [i32; 4] {
    // 128-bit lanes: [a0 + a2, a1 + a3, b0 + b2, b1 + b3]
    let fold = |x, y| {
        _mm512_add_epi32(
            _mm512_shuffle_i64x2::<0b01_00_01_00>(x, y),
            _mm512_shuffle_i64x2::<0b11_10_11_10>(x, y),
        )
    };
    let (ab, cd) = (fold(a, b), fold(c, d));
    // 128-bit lanes: a, b, c, d
    let x = _mm512_add_epi32(
        _mm512_shuffle_i64x2::<0b10_00_10_00>(ab, cd),
        _mm512_shuffle_i64x2::<0b11_01_11_01>(ab, cd),
    );
    let x = _mm512_add_epi32(x, _mm512_shuffle_epi32::<0b01_00_11_10>(x));
    let x = _mm512_add_epi32(x, _mm512_shuffle_epi32::<0b10_11_00_01>(x));
    let mut lanes = [0i32; 16];
    // SAFETY: `lanes` holds 16 i32.
    unsafe { _mm512_storeu_si512(lanes.as_mut_ptr().cast(), x) };
    [lanes[0], lanes[4], lanes[8], lanes[12]]
}

/// [`vnni_kernels!`] on 512-bit vectors with the `features` and optional parts given.
macro_rules! avx512_kernels {
    ($features:literal, $($parts:tt)*) => {
        vnni_kernels! {
            features: $features,
            vector: __m512i,
            bytes: 64,
            decode_rows: 4,
            prefill_tiles: [2 => 4, 3 => 4, 4 => 4, 5 => 3, 6 => 4, 7 => 3, 8 => 3],
            $($parts)*
            zero: _mm512_setzero_si512,
            splat: _mm512_set1_epi8,
            load: _mm512_loadu_si512,
            and: _mm512_and_si512,
            srli16: _mm512_srli_epi16,
            srai32: _mm512_srai_epi32,
            add32: _mm512_add_epi32,
            dpbusd: _mm512_dpbusd_epi32,
            act: act,
            dpbusd_act: _mm512_dpbusd_epi32,
            hsum: _mm512_reduce_add_epi32,
            hsum4: hsum4,
        }
    };
}

avx512_kernels! {
    "avx512f,avx512bw,avx512vnni",
    head: {
        tiles: [1 => 2, 2 => 2, 3 => 2, 4 => 2, 5 => 2, 6 => 2, 7 => 2, 8 => 2],
        load_partial: load_partial,
        xor: _mm512_xor_si512,
    },
}

/// The same ternary tiles for CPUs with GFNI ([`super::Isa::Avx512Gfni`]), compiled apart so the compiler may
/// use GFNI only here: the multi-token tiles cut slices 1-3 of the codes out of the packed words with one
/// `vgf2p8affineqb` each instead of a shift and a mask, both of which take a port `vpdpbusd` needs on 512-bit
/// vectors. In cache and end to end see BENCHMARKS.md (session 38).
pub(crate) mod gfni {
    use std::arch::x86_64::*;

    use super::{act, hsum4};

    /// Slice `s` of the codes in packed words `w` (bits `2s..2s + 2` of each byte, moved to the bottom): output
    /// bit `i` of a byte is the parity of the input bits that byte `7 - i` of the matrix selects.
    #[target_feature(enable = "avx512f,gfni")]
    #[inline]
    pub(crate) fn gfni_codes(w: __m512i, s: usize) -> __m512i {
        let matrix = _mm512_set1_epi64((1i64 << (2 * s)) << 56 | (1i64 << (2 * s + 1)) << 48);
        _mm512_gf2p8affine_epi64_epi8::<0>(w, matrix)
    }

    avx512_kernels! {
        "avx512f,avx512bw,avx512vnni,gfni",
        gfni_codes: gfni_codes,
    }
}
