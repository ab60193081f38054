//! The one packed ternary layout every backend uses: 16 trits per `u32`, element `16·j + t` of a row in bits
//! `2t..2t+2` of word `j`, code = trit + 1 (0 → -1, 1 → 0, 2 → +1); rows padded with zero trits to a whole word.

/// Trits per packed word.
pub const TRITS_PER_WORD: usize = 16;

/// Words per row of `cols` trits.
pub fn words_per_row(cols: usize) -> usize {
    cols.div_ceil(TRITS_PER_WORD)
}

/// Packs one row of trits (each -1, 0 or 1) into `out` (`words_per_row(trits.len())` words).
pub fn pack_row(trits: &[i8], out: &mut [u32]) {
    out.fill(0x5555_5555); // every code 1 = trit 0, so padding reads as zero
    for (w, chunk) in out.iter_mut().zip(trits.chunks(TRITS_PER_WORD)) {
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
