//! Causal grouped-query attention read straight from the KV cache's buffer, split over KV heads, query positions
//! and, for decode, chunks of the keys.

use std::cell::RefCell;

use super::f32::dot;
use super::par::{par_bands, SharedOut};
use super::Isa;

/// Shape of a [`cached_attention`] call.
#[derive(Clone, Copy, Debug)]
pub struct AttentionShape {
    /// Sequences.
    pub batch: usize,
    /// Query heads.
    pub heads: usize,
    /// Key/value heads (divides `heads`).
    pub kv_heads: usize,
    /// Query positions, the last `seq` of `0..len`.
    pub seq: usize,
    /// Head width.
    pub head_dim: usize,
    /// Positions the cache holds room for.
    pub max_len: usize,
    /// Valid cache positions.
    pub len: usize,
}

impl AttentionShape {
    /// The (sequence, KV head, query position) of row `row` of the `batch · kv_heads · seq` units of work.
    fn row(&self, row: usize) -> (usize, usize, usize) {
        (
            row / (self.kv_heads * self.seq),
            row / self.seq % self.kv_heads,
            row % self.seq,
        )
    }
}

/// Fewest keys per chunk when a step's keys are split across threads: below it merging costs more than the split
/// gains.
const MIN_CHUNK: usize = 64;

/// Units of work per thread below which the keys are split into chunks: with fewer, contiguous bands leave threads
/// idle (5 KV heads on 2 threads: 3 against 2).
const UNITS_PER_THREAD: usize = 4;

thread_local! {
    /// One unit's scores, reused across calls (no allocation per decode step).
    static SCORES: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// `q [batch, heads, seq, head_dim]` against the cache `k`, `v` `[batch, kv_heads, max_len, head_dim]`:
/// `softmax(q·kᵀ/√d)·v` over keys `0..=position` for the query at `position = len - seq + i`, as
/// `[batch, seq, heads, head_dim]` (the contract of [`crate::TernaryBackend::cached_attention`]).
///
/// The query heads that share a KV head are one unit of work, so each key and value is read once per step, not
/// once per query head (a quarter of the bytes on 2B-4T's 20/5 heads: at depth 1024 the cache reads of a decode
/// step went from 629 MB to 157 MB). When a step has few units per thread (decode: one per KV head), each unit's keys are split into chunks whose partial softmaxes are merged (flash-decoding), so every
/// thread reads a share of the cache.
pub fn cached_attention(q: &[f32], k: &[f32], v: &[f32], s: AttentionShape) -> Vec<f32> {
    let d = s.head_dim;
    assert!(s.heads.is_multiple_of(s.kv_heads) && s.seq <= s.len && s.len <= s.max_len);
    assert_eq!(q.len(), s.batch * s.heads * s.seq * d, "q");
    assert_eq!(k.len(), s.batch * s.kv_heads * s.max_len * d, "k");
    assert_eq!(v.len(), k.len(), "v");
    let group = s.heads / s.kv_heads;
    let rows = s.batch * s.kv_heads * s.seq;
    let threads = rayon::current_num_threads();
    let chunks = if rows >= UNITS_PER_THREAD * threads {
        1
    } else {
        (UNITS_PER_THREAD * threads)
            .div_ceil(rows)
            .min(s.len.div_ceil(MIN_CHUNK))
            .max(1)
    };
    let mut out = vec![0.0f32; q.len()];
    // Per unit and query head of the group: the running max, the sum of exponentials and the weighted values.
    let part = d + 2;
    let mut partial = vec![
        0.0f32;
        if chunks > 1 {
            rows * chunks * group * part
        } else {
            0
        }
    ];
    let (out_w, partial_w) = (SharedOut::new(&mut out), SharedOut::new(&mut partial));
    let avx2 = Isa::detect().has_avx2();
    par_bands(rows * chunks, 1, |units| {
        SCORES.with_borrow_mut(|scratch| {
            for unit in units {
                let (row, c) = (unit / chunks, unit % chunks);
                let (b, kvh, i) = s.row(row);
                let visible = s.len - s.seq + i + 1;
                let per = visible.div_ceil(chunks);
                let (lo, hi) = ((c * per).min(visible), ((c + 1) * per).min(visible));
                let cache = (b * s.kv_heads + kvh) * s.max_len * d;
                let (keys, values) = (
                    &k[cache + lo * d..cache + hi * d],
                    &v[cache + lo * d..cache + hi * d],
                );
                let query = |g: usize| {
                    let h = kvh * group + g;
                    &q[((b * s.heads + h) * s.seq + i) * d..][..d]
                };
                // SAFETY: each unit owns its partials, and with one chunk its (b, i, heads of the group) outputs,
                // which are contiguous in the token-major output; units are split into disjoint bands.
                let acc = unsafe {
                    if chunks > 1 {
                        partial_w.slice(unit * group * part, group * part)
                    } else {
                        out_w.slice(((b * s.seq + i) * s.heads + kvh * group) * d, group * d)
                    }
                };
                let unit = GroupUnit {
                    keys,
                    values,
                    d,
                    group,
                    chunked: chunks > 1,
                };
                if avx2 {
                    // SAFETY: the CPU has AVX2 (checked once above).
                    #[cfg(target_arch = "x86_64")]
                    unsafe {
                        attend_group_avx2(&unit, &query, scratch, acc)
                    }
                } else {
                    attend_group(&unit, &query, scratch, acc);
                }
            }
        })
    });
    if chunks > 1 {
        merge(&partial, &mut out, s, chunks);
    }
    out
}

/// One unit: the keys and values it sees, for `group` query heads.
struct GroupUnit<'a> {
    keys: &'a [f32],
    values: &'a [f32],
    d: usize,
    group: usize,
    /// Whether `acc` takes partials (max, sum, unnormalized values per head) or the normalized outputs.
    chunked: bool,
}

/// The group's queries against the unit's keys: scores key-major (each key is read once for every query head),
/// softmax per head, then the values, again each read once.
#[inline(always)]
fn attend_group<'q>(
    u: &GroupUnit<'_>,
    query: &impl Fn(usize) -> &'q [f32],
    scores: &mut Vec<f32>,
    acc: &mut [f32],
) {
    let (d, group) = (u.d, u.group);
    let n = u.keys.len() / d;
    let scale = (d as f32).sqrt();
    scores.clear();
    scores.resize(group * n, 0.0);
    for (j, key) in u.keys.chunks_exact(d).enumerate() {
        for g in 0..group {
            scores[g * n + j] = dot(query(g), key) / scale;
        }
    }
    let width = if u.chunked { d + 2 } else { d };
    acc.fill(0.0);
    for (g, p) in scores.chunks_exact_mut(n.max(1)).enumerate() {
        let max = p.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let mut sum = 0.0;
        for x in p.iter_mut() {
            *x = exp_nonpositive(*x - max);
            sum += *x;
        }
        if u.chunked {
            (acc[g * width], acc[g * width + 1]) = (max, sum);
        } else {
            p.iter_mut().for_each(|x| *x /= sum);
        }
    }
    for (j, value) in u.values.chunks_exact(d).enumerate() {
        for g in 0..group {
            let w = scores[g * n + j];
            let o = &mut acc[g * width + width - d..(g + 1) * width];
            o.iter_mut().zip(value).for_each(|(o, v)| *o += w * v);
        }
    }
}

/// [`attend_group`] compiled for AVX2: the dot products, exponentials and weighted sums of values become 256-bit
/// vector operations (the baseline x86-64 target has 128-bit SSE only).
///
/// # Safety
/// The CPU supports AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn attend_group_avx2<'q>(
    u: &GroupUnit<'_>,
    query: &impl Fn(usize) -> &'q [f32],
    scores: &mut Vec<f32>,
    acc: &mut [f32],
) {
    attend_group(u, query, scores, acc)
}

/// Joins the chunks' partial softmaxes of every (sequence, position, head): rescaled to the largest max, summed,
/// normalized.
fn merge(partial: &[f32], out: &mut [f32], s: AttentionShape, chunks: usize) {
    let (d, group) = (s.head_dim, s.heads / s.kv_heads);
    let part = d + 2;
    for row in 0..s.batch * s.kv_heads * s.seq {
        let (b, kvh, i) = s.row(row);
        for g in 0..group {
            let parts =
                (0..chunks).map(|c| &partial[((row * chunks + c) * group + g) * part..][..part]);
            let max = parts
                .clone()
                .filter(|p| p[1] > 0.0)
                .fold(f32::NEG_INFINITY, |m, p| m.max(p[0]));
            let o = &mut out[((b * s.seq + i) * s.heads + kvh * group + g) * d..][..d];
            let mut sum = 0.0;
            for p in parts.filter(|p| p[1] > 0.0) {
                let w = (p[0] - max).exp();
                sum += p[1] * w;
                o.iter_mut().zip(&p[2..]).for_each(|(o, v)| *o += w * v);
            }
            o.iter_mut().for_each(|o| *o /= sum);
        }
    }
}

/// `e^x` for `x ≤ 0` in arithmetic the compiler vectorizes (std's `exp` is a libm call per element, and a decode
/// step at depth 4096 takes 2.5 M of them): `x = n·ln 2 + r` with `|r| ≤ ln 2 / 2`, `e^r` by its Taylor
/// polynomial to `r⁶` (relative error below 2e-7), `2^n` built in the exponent bits. Below −40 the result is 0:
/// `e^−40` (4e-18) is below the resolution of a softmax sum that holds the max's 1, and tinier weights made the
/// weighted sums of values subnormal (decode at depth 1024 ran 2× slower with them).
#[inline(always)]
fn exp_nonpositive(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    // ln 2 in two parts, so that `n · LN2_HI` is exact for the n that occur.
    const LN2_HI: f32 = 0.693_145_75;
    const LN2_LO: f32 = 1.428_606_8e-6;
    // Adding and removing 1.5·2^23 rounds to the nearest integer (no SSE4.1 `roundps` in the baseline).
    const ROUND: f32 = 12_582_912.0;
    const CUTOFF: f32 = -40.0;
    let c = x.max(CUTOFF);
    let n = (c * LOG2E + ROUND) - ROUND;
    let r = c - n * LN2_HI - n * LN2_LO;
    let p = 1.0
        + r * (1.0
            + r * (0.5
                + r * (1.0 / 6.0 + r * (1.0 / 24.0 + r * (1.0 / 120.0 + r * (1.0 / 720.0))))));
    let e = p * f32::from_bits(((n as i32 + 127) << 23) as u32);
    if x > CUTOFF {
        e
    } else {
        0.0
    }
}
