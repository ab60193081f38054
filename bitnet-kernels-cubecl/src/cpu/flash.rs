//! Prefill attention in tiles: a block of consecutive query positions × the query heads of one KV head, against
//! the keys in blocks, with a running (online) softmax, so each key and value read from the cache serves up to
//! `ROWS` queries instead of one group's (flash attention's loop order, on the CPU). Written as plain loops
//! over fixed-size arrays that the compiler turns into vector code for the instruction set of its caller.

use super::attention::exp_nonpositive;
use super::kv::KvElem;

/// Keys per block: the scores of a block are `KEYS × ROWS` floats, the values it reads `KEYS · head_dim`.
const KEYS: usize = 32;
/// A tile's blocking for 256-bit vectors (and the portable path): `ROWS` query vectors per tile (positions × the
/// group's heads, padded with zero queries), `KEY_STEP` keys scored per pass over the head width (`KEY_STEP ×
/// ROWS` accumulators) and `RUN` outputs per pass of the values loop (two rows × `RUN` accumulators), 8 vectors
/// either way: two FMA pipes of 4-cycle latency need 8 independent chains.
pub(super) const BLOCKING_256: (usize, usize, usize) = (16, 4, 32);
/// The same 8 chains of 512-bit vectors, with 32 query rows (two vectors per key) so that each key read from the
/// cache, widened and broadcast serves twice the queries: with 16 rows and 8 keys per pass the scores loop issued
/// a broadcast per FMA, and a 512-token prompt's attention ran 13-16% slower in cache (`cargo bench --bench
/// kernels -- cached_attention_prefill`, f16, 2 threads, 2 alternating runs: 10.1, 10.1 against 8.8, 8.5 ms). The
/// 256-bit tile gained nothing from 32 rows (AVX2 forced: 11.7 against 12.0 ms), whose buffers would also pass an
/// AVX2 CPU's 32 KiB L1.
#[cfg(target_arch = "x86_64")]
pub(super) const BLOCKING_512: (usize, usize, usize) = (32, 4, 64);

/// How a tile computes `a · b + c`: [`Fused`] in code compiled for FMA (one instruction and one rounding),
/// [`Separate`] elsewhere (a fused multiply-add without the instruction is a libm call per element).
pub(super) trait MulAdd {
    fn mul_add(a: f32, b: f32, c: f32) -> f32;
}

/// `f32::mul_add`: for callers compiled with FMA only.
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
pub(super) struct Fused;

/// A multiply, then an add.
#[cfg(not(target_arch = "aarch64"))]
pub(super) struct Separate;

/// The multiply-add of the portable path: fused on AArch64, where FMA is baseline.
#[cfg(target_arch = "aarch64")]
pub(super) type Portable = Fused;
#[cfg(not(target_arch = "aarch64"))]
pub(super) type Portable = Separate;

#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
impl MulAdd for Fused {
    #[inline(always)]
    fn mul_add(a: f32, b: f32, c: f32) -> f32 {
        a.mul_add(b, c)
    }
}

#[cfg(not(target_arch = "aarch64"))]
impl MulAdd for Separate {
    #[inline(always)]
    fn mul_add(a: f32, b: f32, c: f32) -> f32 {
        a * b + c
    }
}

/// Query positions per tile of `rows` query vectors for `group` query heads per KV head (`group ≤ rows`).
pub(super) fn positions_per_tile(group: usize, rows: usize) -> usize {
    (rows / group).max(1)
}

/// A tile's reusable buffers (one per thread: no allocation per call once grown).
#[derive(Default)]
pub(super) struct TileScratch {
    /// The queries, scaled by `1/√d`, transposed: `[d][ROWS]`.
    qt: Vec<f32>,
    /// A block's scores, then its softmax weights: `[KEYS][ROWS]`.
    st: Vec<f32>,
    /// Unnormalized outputs `[ROWS][d]`.
    o: Vec<f32>,
}

/// A unit of attention work: `positions` consecutive queries from absolute position `first`, each with `group`
/// heads, against the cache rows `keys`, `values` (`d` values each, `T::row(d)` elements) that start at absolute
/// position `lo`.
pub(super) struct Tile<'a, T> {
    pub keys: &'a [T],
    pub values: &'a [T],
    pub lo: usize,
    pub first: usize,
    pub positions: usize,
    pub group: usize,
    pub d: usize,
    /// Whether the outputs are partials (max, sum of exponentials, unnormalized values per head) of one chunk
    /// of the keys, for [`super::attention`]'s merge, or the normalized outputs.
    pub partial: bool,
    /// Whether the unit is a prompt's tile, run by [`attend_tile`] even when it holds one position (so that a
    /// prompt's last row does not depend on how the prompt was cut into passes), or one query's group (decode).
    pub tiled: bool,
}

/// Runs `t` with the blocking `ROWS`, `KEY_STEP`, `RUN` ([`BLOCKING_256`]): `query(p, g)` is head `g` of query
/// position `p`; `out(p)` receives position `p`'s `group`
/// outputs, `[group][d]`, or `[group][d + 2]` partials. `kv` holds a block of keys or values read back as f32.
#[inline(always)]
pub(super) fn attend_tile<
    'q,
    'o,
    T: KvElem,
    M: MulAdd,
    const ROWS: usize,
    const KEY_STEP: usize,
    const RUN: usize,
>(
    t: &Tile<'_, T>,
    query: &impl Fn(usize, usize) -> &'q [f32],
    scratch: &mut TileScratch,
    kv: &mut Vec<f32>,
    out: &impl Fn(usize) -> &'o mut [f32],
) {
    let (d, group) = (t.d, t.group);
    let rows = t.positions * group;
    let du = T::row(d);
    assert!(rows <= ROWS && t.keys.len() == t.values.len() && t.keys.len().is_multiple_of(du));
    let TileScratch { qt, st, o } = scratch;
    // A multiply per element: a division here (one per query element per tile) took 6% of the tile's time.
    let scale = 1.0 / (d as f32).sqrt();
    qt.clear();
    qt.resize(d * ROWS, 0.0);
    for r in 0..rows {
        // Through an iterator: indexing the Vec reloaded its pointer and length per element (7% of the tile).
        for (qt, q) in qt.chunks_exact_mut(ROWS).zip(query(r / group, r % group)) {
            qt[r] = q * scale;
        }
    }
    st.resize(KEYS * ROWS, 0.0);
    o.clear();
    o.resize(ROWS * d, 0.0);
    let (mut max, mut sum) = ([f32::NEG_INFINITY; ROWS], [0f32; ROWS]);
    let n = t.keys.len() / du;
    for kb in (0..n).step_by(KEYS) {
        let nk = KEYS.min(n - kb);
        let keys = T::load(&t.keys[kb * du..(kb + nk) * du], kv);
        let whole = nk - nk % KEY_STEP;
        for j in (0..whole).step_by(KEY_STEP) {
            scores::<M, ROWS, KEY_STEP>(&keys[j * d..], qt, d, &mut st[j * ROWS..]);
        }
        for j in whole..nk {
            scores::<M, ROWS, 1>(&keys[j * d..], qt, d, &mut st[j * ROWS..]);
        }
        // Keys past a row's own position are masked (causal).
        let last_key = t.lo + kb + nk - 1;
        if last_key > t.first {
            for (j, s) in st[..nk * ROWS].chunks_exact_mut(ROWS).enumerate() {
                for (r, s) in s.iter_mut().enumerate() {
                    if t.lo + kb + j > t.first + r / group {
                        *s = f32::NEG_INFINITY;
                    }
                }
            }
        }
        let weights = &mut st[..nk * ROWS];
        let mut block_max = [f32::NEG_INFINITY; ROWS];
        for s in weights.chunks_exact(ROWS) {
            for r in 0..ROWS {
                block_max[r] = block_max[r].max(s[r]);
            }
        }
        let mut rescale = [1f32; ROWS];
        for r in 0..ROWS {
            let m = max[r].max(block_max[r]);
            // A row that has seen no key yet keeps max −∞; shifting by 0 then gives it weights and sums of 0.
            let shift = if m == f32::NEG_INFINITY { 0.0 } else { m };
            rescale[r] = exp_nonpositive(max[r] - shift);
            (max[r], block_max[r]) = (m, shift);
        }
        let mut block_sum = [0f32; ROWS];
        for s in weights.chunks_exact_mut(ROWS) {
            for r in 0..ROWS {
                s[r] = exp_nonpositive(s[r] - block_max[r]);
                block_sum[r] += s[r];
            }
        }
        for r in 0..ROWS {
            sum[r] = sum[r] * rescale[r] + block_sum[r];
        }
        if rescale.iter().any(|&a| a != 1.0) {
            for (o, a) in o.chunks_exact_mut(d).zip(rescale) {
                o.iter_mut().for_each(|o| *o *= a);
            }
        }
        let values = T::load(&t.values[kb * du..(kb + nk) * du], kv);
        accumulate_values::<M, ROWS, RUN>(weights, values, o, d, rows);
    }
    for p in 0..t.positions {
        let out = out(p);
        for g in 0..group {
            let r = p * group + g;
            let o = &o[r * d..(r + 1) * d];
            if t.partial {
                let dst = &mut out[g * (d + 2)..(g + 1) * (d + 2)];
                (dst[0], dst[1]) = (max[r], sum[r]);
                dst[2..].copy_from_slice(o);
            } else {
                let dst = &mut out[g * d..(g + 1) * d];
                dst.iter_mut().zip(o).for_each(|(y, o)| *y = o / sum[r]);
            }
        }
    }
}

/// `st[k][r] = keys[k] · qt[·][r]` for `K` keys: each key element is broadcast against a row of the transposed
/// queries, `K × ROWS` sums kept in registers over the head width.
#[inline(always)]
fn scores<M: MulAdd, const ROWS: usize, const K: usize>(
    keys: &[f32],
    qt: &[f32],
    d: usize,
    st: &mut [f32],
) {
    let keys: [&[f32]; K] = std::array::from_fn(|k| &keys[k * d..(k + 1) * d]);
    let mut acc = [[0f32; ROWS]; K];
    for (x, q) in qt[..d * ROWS].chunks_exact(ROWS).enumerate() {
        // In registers once for the K keys (indexing the slice per key had the compiler reload it per multiply).
        let q: [f32; ROWS] = q.try_into().expect("ROWS queries");
        for (acc, key) in acc.iter_mut().zip(keys) {
            let key = key[x];
            for r in 0..ROWS {
                acc[r] = M::mul_add(key, q[r], acc[r]);
            }
        }
    }
    for (k, acc) in acc.iter().enumerate() {
        st[k * ROWS..(k + 1) * ROWS].copy_from_slice(acc);
    }
}

/// `o[r] += Σ_k weights[k][r] · values[k]` for the tile's `rows`, two rows × `RUN` outputs at a time held in
/// registers across the block's keys.
#[inline(always)]
fn accumulate_values<M: MulAdd, const ROWS: usize, const RUN: usize>(
    weights: &[f32],
    values: &[f32],
    o: &mut [f32],
    d: usize,
    rows: usize,
) {
    let whole = d - d % RUN;
    for r in (0..rows).step_by(2) {
        let (o0, o1) = o[r * d..(r + 2) * d].split_at_mut(d);
        for x in (0..whole).step_by(RUN) {
            pass::<M, ROWS, RUN>(weights, values, [o0, o1], r, x, d);
        }
        for x in whole..d {
            pass::<M, ROWS, 1>(weights, values, [o0, o1], r, x, d);
        }
    }
}

/// One [`accumulate_values`] pass: rows `r`, `r + 1`, outputs `x..x + W`.
#[inline(always)]
fn pass<M: MulAdd, const ROWS: usize, const W: usize>(
    weights: &[f32],
    values: &[f32],
    [o0, o1]: [&mut [f32]; 2],
    r: usize,
    x: usize,
    d: usize,
) {
    let mut a0: [f32; W] = o0[x..x + W].try_into().expect("W outputs");
    let mut a1: [f32; W] = o1[x..x + W].try_into().expect("W outputs");
    for (w, v) in weights.chunks_exact(ROWS).zip(values.chunks_exact(d)) {
        let (w0, w1) = (w[r], w[r + 1]);
        let v = &v[x..x + W];
        for i in 0..W {
            a0[i] = M::mul_add(w0, v[i], a0[i]);
            a1[i] = M::mul_add(w1, v[i], a1[i]);
        }
    }
    o0[x..x + W].copy_from_slice(&a0);
    o1[x..x + W].copy_from_slice(&a1);
}
