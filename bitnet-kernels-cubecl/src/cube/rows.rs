//! The launch the row kernels share, and their lane reduction: one cube computes [`ROWS`] output rows for one
//! token (decode) or [`PREFILL_TOKENS`] tokens (prefill), [`LANES`] units per row striding over the row's
//! packed words, so consecutive words are read by consecutive units (coalesced).

use cubecl::features::Plane;
use cubecl::prelude::*;

/// Units per output row.
pub(super) const LANES: usize = 32;
/// Output rows per cube.
pub(super) const ROWS: usize = 8;
/// Activations per vector load.
pub(super) const VECTOR: usize = 4;
/// Tokens a cube computes in prefill: each packed word is loaded and decoded once for all of them.
pub(super) const PREFILL_TOKENS: usize = 8;
/// Packed `u32` words a unit loads at once where the rows allow it: one 128-bit load.
const WORDS: usize = 4;

/// How a row kernel is launched: the cube grid and shape, the tokens each cube computes, the packed words each
/// unit loads at once, and whether a row's lanes are one plane (warp) that [`row_totals`] sums with
/// `plane_sum` instead of a shared-memory tree.
pub(super) struct Launch {
    pub count: CubeCount,
    pub dim: CubeDim,
    pub tokens: usize,
    pub words: usize,
    pub plane: bool,
}

/// The launch for layers of `rows` rows each, of `kw` packed words, and `m` tokens (1 token per cube in
/// decode): four words per load (128 bits) when every row starts on a 16-byte boundary, and plane sums when
/// the device has plane operations and its planes are exactly [`LANES`] wide (CUDA; wgpu turns them off on
/// CPU drivers such as lavapipe, which therefore checks the shared-memory path).
pub(super) fn launch<R: Runtime>(
    client: &ComputeClient<R>,
    rows: &[usize],
    m: usize,
    kw: usize,
) -> Launch {
    let tokens = if m == 1 { 1 } else { PREFILL_TOKENS };
    let props = client.properties();
    let lanes = LANES as u32;
    Launch {
        count: CubeCount::Static(
            rows.iter().map(|n| n.div_ceil(ROWS)).sum::<usize>() as u32,
            m.div_ceil(tokens) as u32,
            1,
        ),
        dim: CubeDim::new_2d(lanes, ROWS as u32),
        tokens,
        words: if kw.is_multiple_of(WORDS) { WORDS } else { 1 },
        plane: props.features.plane.contains(Plane::Ops)
            && props.hardware.plane_size_min == lanes
            && props.hardware.plane_size_max == lanes,
    }
}

/// Sums each token's partial sums `acc` over the [`LANES`] units of a row, in place: afterwards the row's totals
/// are in `acc` of its lane-0 unit. Every unit of the cube must call it.
#[cube]
pub(super) fn row_totals<E: Numeric>(
    acc: &mut Array<E>,
    #[comptime] tokens: usize,
    #[comptime] plane: bool,
) {
    if comptime!(plane) {
        #[unroll]
        for t in 0..tokens {
            acc[t] = plane_sum(acc[t]);
        }
    } else {
        let lane = UNIT_POS_X as usize;
        let unit = UNIT_POS_Y as usize * LANES + lane;
        let mut partial = SharedMemory::<E>::new(comptime!(LANES * ROWS * tokens));
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
        #[unroll]
        for t in 0..tokens {
            acc[t] = partial[t * ROWS * LANES + unit];
        }
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
