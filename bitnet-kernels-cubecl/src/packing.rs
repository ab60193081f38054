//! The packed weight layouts every backend uses, in `u32` words because WGSL and some GPU APIs have no 8-bit
//! storage.
//!
//! - Ternary: 16 trits per word, element `16·j + t` of a row in bits `2t..2t+2` of word `j`, code = trit + 1
//!   (0 → -1, 1 → 0, 2 → +1); rows padded with zero trits to a whole word.
//! - Int8 (the quantized output head): 4 values per word, element `4·j + b` of a row in bits `8b..8b+8` of word
//!   `j` (two's complement); rows padded with zeros to a whole word. On little-endian targets this is the
//!   rows' bytes in memory order, so the CPU kernels read the words as `i8` slices without a copy.

/// Trits per packed word.
pub const TRITS_PER_WORD: usize = 16;

/// Words per row of `cols` trits.
pub fn words_per_row(cols: usize) -> usize {
    cols.div_ceil(TRITS_PER_WORD)
}

/// Int8 values per packed word.
pub const I8_PER_WORD: usize = 4;

/// Words per int8 row of `cols` values.
pub fn i8_words_per_row(cols: usize) -> usize {
    cols.div_ceil(I8_PER_WORD)
}

/// The int8 value at column `k` of a packed row.
#[inline]
pub fn i8_at(row: &[u32], k: usize) -> i8 {
    (row[k / I8_PER_WORD] >> (8 * (k % I8_PER_WORD))) as u8 as i8
}

/// Packs one row of int8 values into `out` (`i8_words_per_row(values.len())` words).
pub fn pack_i8_row(values: &[i8], out: &mut [u32]) {
    out.fill(0);
    if cfg!(target_endian = "little") {
        bytemuck::cast_slice_mut::<u32, i8>(out)[..values.len()].copy_from_slice(values);
        return;
    }
    for (w, chunk) in out.iter_mut().zip(values.chunks(I8_PER_WORD)) {
        for (b, &v) in chunk.iter().enumerate() {
            *w |= (v as u8 as u32) << (8 * b);
        }
    }
}

/// Packs one row of trits (each -1, 0 or 1) into `out` (`words_per_row(trits.len())` words).
pub fn pack_row(trits: &[i8], out: &mut [u32]) {
    out.fill(0x5555_5555); // every code 1 = trit 0, so padding reads as zero
    let whole = trits.len() / TRITS_PER_WORD;
    for (w, chunk) in out.iter_mut().zip(trits.chunks_exact(TRITS_PER_WORD)) {
        let bytes: &[u8] = bytemuck::cast_slice(chunk);
        let half = |h: usize| u64::from_le_bytes(bytes[8 * h..8 * h + 8].try_into().unwrap());
        *w = pack8(half(0)) | pack8(half(1)) << 16;
    }
    for (w, chunk) in out[whole..]
        .iter_mut()
        .zip(trits[whole * TRITS_PER_WORD..].chunks(TRITS_PER_WORD))
    {
        let mut word = 0u32;
        for (j, &t) in chunk.iter().enumerate() {
            debug_assert!((-1..=1).contains(&t), "trit {t} out of range");
            word |= ((t + 1) as u32 & 3) << (2 * j);
        }
        let used = 2 * chunk.len();
        *w = if used == 32 {
            word
        } else {
            word | (0x5555_5555 >> used << used)
        };
    }
}

/// The codes of 8 trits (one per byte of `x`, as `i8`) in the low 16 bits, 2 bits each in byte order: with
/// byte bits `b0`, `b1`, the code `t + 1` of -1 (`0xFF`), 0, 1 is `!b0 | (b0 & !b1) << 1`, and three shift-or
/// steps close the gaps between the 2-bit fields. Packing is most of a load; this is ~10x the per-trit loop.
#[inline]
fn pack8(x: u64) -> u32 {
    const LOW: u64 = 0x0101_0101_0101_0101;
    let codes = (!x & LOW) | ((x & !(x >> 1) & LOW) << 1);
    let c = (codes | codes >> 6) & 0x000F_000F_000F_000F;
    let c = (c | c >> 12) & 0x0000_00FF_0000_00FF;
    ((c | c >> 24) & 0xFFFF) as u32
}

/// The trit at column `k` of a packed row.
#[inline]
pub fn trit_at(row: &[u32], k: usize) -> i8 {
    ((row[k / TRITS_PER_WORD] >> (2 * (k % TRITS_PER_WORD))) & 3) as i8 - 1
}

/// Unpacks a row of `cols` trits.
pub fn unpack_row(row: &[u32], out: &mut [i8]) {
    for (k, o) in out.iter_mut().enumerate() {
        *o = trit_at(row, k);
    }
}
