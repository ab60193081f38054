//! The launch geometry the row kernels share, and their lane reduction: one cube computes [`ROWS`] output rows
//! for one token (decode) or [`PREFILL_TOKENS`] tokens (prefill), [`LANES`] units per row striding over the
//! row's packed words, so consecutive words are read by consecutive units (coalesced).

use cubecl::prelude::*;

/// Units per output row.
pub(super) const LANES: usize = 32;
/// Output rows per cube.
pub(super) const ROWS: usize = 8;
/// Activations per vector load.
pub(super) const VECTOR: usize = 4;
/// Tokens a cube computes in prefill: each packed word is loaded and decoded once for all of them.
pub(super) const PREFILL_TOKENS: usize = 8;

/// The cube grid and shape for `n` rows of `m` tokens, and the tokens each cube computes (1 in decode).
pub(super) fn geometry(n: usize, m: usize) -> (CubeCount, CubeDim, usize) {
    let tokens = if m == 1 { 1 } else { PREFILL_TOKENS };
    (
        CubeCount::Static(n.div_ceil(ROWS) as u32, m.div_ceil(tokens) as u32, 1),
        CubeDim::new_2d(LANES as u32, ROWS as u32),
        tokens,
    )
}

/// Adds each token's partial sums `acc` over the [`LANES`] units of a row (a shared-memory tree); the row's
/// totals end in `partial[t · ROWS · LANES + unit]` of its lane-0 unit.
#[cube]
pub(super) fn lane_sums<E: Numeric>(
    acc: &Array<E>,
    partial: &mut SharedMemory<E>,
    #[comptime] tokens: usize,
) {
    let lane = UNIT_POS_X as usize;
    let unit = UNIT_POS_Y as usize * LANES + lane;
    #[unroll]
    for t in 0..tokens {
        partial[t * ROWS * LANES + unit] = acc[t];
    }
    sync_cube();
    #[unroll]
    for level in 0..LANES.trailing_zeros() {
        let stride = comptime!(LANES >> (level + 1));
        if lane < stride {
            #[unroll]
            for t in 0..tokens {
                let slot = t * ROWS * LANES + unit;
                let other = partial[slot + stride];
                partial[slot] += other;
            }
        }
        sync_cube();
    }
}

/// Reduces `shared[0..len]` (one value per unit, `len` a power of two) into `shared[0]`: the maximum when `max`,
/// else the sum. Every unit of the cube must call it; it synchronizes before reading and after each level.
#[cube]
pub(super) fn tree<F: Float>(
    shared: &mut SharedMemory<F>,
    unit: usize,
    #[comptime] len: usize,
    #[comptime] max: bool,
) {
    sync_cube();
    #[unroll]
    for level in 0..len.trailing_zeros() {
        let stride = comptime!(len >> (level + 1));
        if unit < stride {
            let (a, b) = (shared[unit], shared[unit + stride]);
            shared[unit] = if max { F::max(a, b) } else { a + b };
        }
        sync_cube();
    }
}
