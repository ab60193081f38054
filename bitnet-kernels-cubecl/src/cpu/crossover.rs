//! Where the table-lookup prefill pays over the multiply-add tiles ([`LookupFrom`]), measured end to end: a
//! prompt's matmuls stream the weights from memory, and with few tokens the tiles overlap that stream better than
//! the lookups, whose in-cache lead (1.4× at 32 tokens) put the crossover much lower than prefill finds it.

use super::acts::LANES;
use super::isa::LOOKUP_TOKENS;

/// Token counts from which one table-lookup call is faster than the multiply-add tiles on the same tokens.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LookupFrom {
    /// Fewest tokens (1..=16) worth a call on tables of 16 lanes; `None`: the tiles win up to 16.
    pub half: Option<usize>,
    /// Fewest tokens (17..=[`LANES`]) worth a call on tables of [`LANES`] lanes, so also the fewest a call's last
    /// group may hold; `None`: the tiles win up to [`LANES`].
    pub group: Option<usize>,
}

impl LookupFrom {
    /// The native paths (AVX2; plain NEON by its instruction count, unmeasured). Prefill of the synthetic 2B-4T
    /// on an Emerald Rapids core with `BITNET_ISA=avx2` (`bitnet bench -p N -n 0`, tiles against lookups, 2
    /// threads): the tiles ran 19% faster at 14 tokens, 12% at 16 and 20, 5% at 24, even at 28, 16% slower at 32
    /// and 39% at 64; on one thread even at 26, 10% slower at 28, 21% at 32. In cache the lookups had led from
    /// 14 and 23 tokens, and on a Zen 4 core the tiles won there at 16.
    pub const NATIVE: LookupFrom = LookupFrom {
        half: None,
        group: Some(28),
    };

    /// The browser builds: under V8 on an Emerald Rapids core the lookups ran 1.5-3× relaxed SIMD's dot-product
    /// tiles (three x86 instructions each there) and 2.5-5× SIMD128's from 16 tokens.
    pub const WASM: LookupFrom = LookupFrom {
        half: Some(14),
        group: Some(23),
    };

    /// How many of `left` prompt tokens the next call takes by table lookup: whole groups of [`LANES`] (and a last
    /// one of [`LookupFrom::group`] tokens or more), up to [`LOOKUP_TOKENS`], or up to 16 from
    /// [`LookupFrom::half`]; 0: the tiles take them.
    pub fn tokens(self, left: usize) -> usize {
        match (self.half, self.group) {
            (_, Some(from)) if left >= from => {
                let groups = left / LANES + usize::from(left % LANES >= from);
                left.min(groups.min(LOOKUP_TOKENS / LANES) * LANES)
            }
            (Some(from), _) if left >= from => left.min(16),
            _ => 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_call_takes_whole_groups_and_a_last_one_that_pays() {
        // the lookup calls a prompt of `left` tokens makes, and the tokens left to the tiles (4 at a time)
        let calls = |from: LookupFrom, mut left: usize| {
            let (mut lookups, mut tiles) = (Vec::new(), 0);
            while left > 0 {
                let t = match from.tokens(left) {
                    0 => {
                        tiles += left.min(4);
                        left.min(4)
                    }
                    t => {
                        lookups.push(t);
                        t
                    }
                };
                left -= t;
            }
            (lookups, tiles)
        };
        let wasm = LookupFrom::WASM;
        assert_eq!(calls(wasm, 13), (vec![], 13));
        assert_eq!(calls(wasm, 14), (vec![14], 0));
        assert_eq!(calls(wasm, 20), (vec![16], 4));
        assert_eq!(calls(wasm, 23), (vec![23], 0));
        assert_eq!(calls(wasm, 54), (vec![32, 16], 6));
        assert_eq!(calls(wasm, 55), (vec![55], 0));
        assert_eq!(calls(wasm, 300), (vec![128, 128, 32], 12));
        let native = LookupFrom::NATIVE;
        assert_eq!(calls(native, 20), (vec![], 20));
        assert_eq!(calls(native, 27), (vec![], 27));
        assert_eq!(calls(native, 28), (vec![28], 0));
        assert_eq!(calls(native, 28 + 64), (vec![92], 0));
        assert_eq!(calls(native, 27 + 128), (vec![128], 27));
        let never = LookupFrom {
            half: None,
            group: None,
        };
        assert_eq!(calls(never, 200), (vec![], 200));
        let halves = LookupFrom {
            half: Some(10),
            group: None,
        };
        assert_eq!(calls(halves, 40), (vec![16, 16], 8));
    }
}
