//! Causal grouped-query attention read straight from the KV cache's buffer, split over KV heads, query positions
//! and, for decode, chunks of the keys.

use std::cell::RefCell;

#[cfg(target_arch = "x86_64")]
use super::decode_x86;
use super::f32::dot;
#[cfg(target_arch = "x86_64")]
use super::flash::Fused;
#[cfg(target_arch = "x86_64")]
use super::flash::BLOCKING_512;
use super::flash::{self, MulAdd, Portable, Tile, TileScratch, BLOCKING_256};
use super::hadamard;
use super::kv::KvElem;
use super::par::{par_claimed, SharedOut};
use super::rope_row;
use crate::reference::round_ties_even;
use crate::StepKv;

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

/// Keys per chunk of a decode query's split (flash-decoding), at fixed positions `c·CHUNK..(c + 1)·CHUNK`: the
/// split depends on the query's position alone, so its result does not depend on what else shares the step or
/// on the number of threads. One decode step at depth 2048, 2 threads, in cache (`cargo bench --bench kernels --
/// cached_attention_decode`, f16, medians of 6 alternating runs): 256 keys 400 µs, 512 350 µs, 1024 377 µs, and
/// the split it replaces (two chunks at 2 threads) 387 µs.
const CHUNK: usize = 512;

/// Keys per block a decode unit reads back from the cache as f32 (16 KiB of f32 at a head width of 128: it
/// stays in the L1 cache beside its f16 source).
const BLOCK: usize = 32;

/// A thread's reusable buffers (no allocation per step once grown).
#[derive(Default)]
struct Scratch {
    /// One decode unit's scores.
    scores: Vec<f32>,
    /// A block of keys or values read back from the cache as f32.
    kv: Vec<f32>,
    /// A prefill tile's.
    tile: TileScratch,
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::default());
}

/// One sequence of a step: its cache `k`, `v` `[batch, kv_heads, max_len, head_dim]` (f32, f16 or q8_0,
/// [`KvElem`]: a row of `head_dim` values is `T::row(head_dim)` elements) and its queries, rows
/// `first..first + shape.seq` of the step's `[batch, rows, heads, head_dim]`.
#[derive(Clone, Copy, Debug)]
pub struct SeqAttention<'a, T> {
    /// Keys.
    pub k: &'a [T],
    /// Values.
    pub v: &'a [T],
    /// The sequence's first row in the step.
    pub first: usize,
    /// Its shape (every sequence of a step has the same batch, heads, KV heads and head width).
    pub shape: AttentionShape,
}

/// `q [batch, seq, heads, head_dim]` (token-major) against the cache `k`, `v` `[batch, kv_heads, max_len,
/// head_dim]`: `softmax(q·kᵀ/√d)·v` over keys `0..=position` for the query at `position = len - seq + i`, as
/// `[batch, seq, heads, head_dim]` (the contract of [`crate::TernaryBackend::cached_attention`], whose query
/// heads view is this layout with two axes swapped). A cache of rotated rows ([`KvElem::rotation`]) is met by
/// the queries rotated alike, and the output is rotated back.
pub fn cached_attention<T: KvElem>(q: &[f32], k: &[T], v: &[T], s: AttentionShape) -> Vec<f32> {
    let seq = SeqAttention {
        k,
        v,
        first: 0,
        shape: s,
    };
    let Some((kn, vn)) = T::rotation(s.head_dim) else {
        return attend_sequences(q, s.seq, &[seq]);
    };
    // The cache holds rotated rows: the queries meet them rotated, and the output is rotated back.
    let mut rotated = q.to_vec();
    hadamard::rotate(&mut rotated, kn);
    let mut out = attend_sequences(&rotated, s.seq, &[seq]);
    hadamard::rotate(&mut out, vn);
    out
}

/// The attention of a step's `rows` queries `q [batch, rows, heads, head_dim]`, each sequence's rows over its
/// own cache, as one parallel job; returns `[batch, rows, heads, head_dim]`.
///
/// The query heads that share a KV head are one unit of work, so each key and value is read once per step, not
/// once per query head (a quarter of the bytes on 2B-4T's 20/5 heads: at depth 1024 the cache reads of a decode
/// step went from 629 MB to 157 MB). In prefill a unit is a tile of consecutive query positions
/// ([`flash`]), so each key serves up to 16 queries (32 on AVX-512). A decode unit's keys are split into chunks
/// of `CHUNK` keys whose partial softmaxes are merged (flash-decoding), so the threads share one sequence's long
/// cache. Threads claim units as they come free, so units of unequal cost (sequences of different depths, a
/// prompt's later tiles) spread evenly. A query's result is a function of its position and its cache alone: the
/// same bits whatever else shares the step and on any number of threads, and a prompt's rows the same in one
/// pass or in several (of more than one row: a single row takes the decode kernel, whose sums run in another
/// order).
pub fn attend_sequences<T: KvElem>(q: &[f32], rows: usize, seqs: &[SeqAttention<T>]) -> Vec<f32> {
    let s0 = seqs.first().expect("at least one sequence").shape;
    let (d, heads, kv_heads) = (s0.head_dim, s0.heads, s0.kv_heads);
    let du = T::row(d);
    assert!(heads.is_multiple_of(kv_heads) && d.is_multiple_of(T::VALUES));
    assert_eq!(q.len(), s0.batch * rows * heads * d, "q");
    let mut covered = 0;
    for s in seqs {
        let t = s.shape;
        assert!((t.batch, t.heads, t.kv_heads, t.head_dim) == (s0.batch, heads, kv_heads, d));
        assert!(t.seq <= t.len && t.len <= t.max_len);
        assert_eq!(s.first, covered, "the sequences' rows follow each other");
        assert_eq!(s.k.len(), t.batch * kv_heads * t.max_len * du, "k");
        assert_eq!(s.v.len(), s.k.len(), "v");
        covered += t.seq;
    }
    assert_eq!(covered, rows, "the sequences cover the step's rows");
    let group = heads / kv_heads;
    #[cfg(target_arch = "x86_64")]
    let avx2 = super::Isa::detect().has_avx2() && decode_x86::avx2::supported();
    #[cfg(target_arch = "x86_64")]
    let avx512 = avx2 && super::Isa::detect().avx512() && is_x86_feature_detected!("avx512vl");
    #[cfg(target_arch = "x86_64")]
    let tile_rows = if avx512 {
        BLOCKING_512.0
    } else {
        BLOCKING_256.0
    };
    #[cfg(not(target_arch = "x86_64"))]
    let tile_rows = BLOCKING_256.0;
    // Query positions per unit: one when decoding, a tile in prefill (groups wider than a tile go one by one).
    let tile = |s: &AttentionShape| {
        if s.seq > 1 && group <= tile_rows {
            flash::positions_per_tile(group, tile_rows)
        } else {
            1
        }
    };
    // Key chunks per unit: one query's units split its cache, tiles keep theirs whole.
    let chunks = |s: &AttentionShape| {
        if tile(s) == 1 {
            s.len.div_ceil(CHUNK).max(1)
        } else {
            1
        }
    };
    // Per query, chunk and query head of the group: the running max, the sum of exponentials and the weighted
    // values.
    let part = d + 2;
    // The first job (unit, chunk) and the first partial of each sequence, then the totals.
    let (mut jobs, mut partials) = (vec![0], vec![0]);
    for s in seqs.iter().map(|s| &s.shape) {
        let (heads_of, chunks) = (s.batch * kv_heads, chunks(s));
        jobs.push(jobs.last().unwrap() + heads_of * s.seq.div_ceil(tile(s)) * chunks);
        let split = if chunks > 1 { chunks * group * part } else { 0 };
        partials.push(partials.last().unwrap() + heads_of * s.seq * split);
    }
    // Every query's output is written by its unit or its merge, each slice zeroed there (see `SharedOut::zeroed`).
    let mut out = Vec::new();
    let out_w = SharedOut::output(&mut out, q.len());
    let mut partial = vec![0.0f32; partials[seqs.len()]];
    // Where sequence `i`'s query (batch `b`, KV head `kvh`, position `t`) lives: its partials and the offset of
    // its group's heads in `q` and in the output (same layout).
    let place = |i: usize, b: usize, kvh: usize, t: usize| {
        let (seq, chunks) = (&seqs[i], chunks(&seqs[i].shape));
        let q_row = b * rows + seq.first + t;
        let query = (b * kv_heads + kvh) * seq.shape.seq + t;
        (
            partials[i] + query * chunks * group * part,
            (q_row * heads + kvh * group) * d,
        )
    };
    let partial_w = SharedOut::new(&mut partial);
    par_claimed(jobs[seqs.len()], 1, |claimed| {
        let job = claimed.start;
        let i = jobs.partition_point(|&st| st <= job) - 1;
        let (seq, tile, chunks) = (&seqs[i], tile(&seqs[i].shape), chunks(&seqs[i].shape));
        let (unit, c) = ((job - jobs[i]) / chunks, (job - jobs[i]) % chunks);
        let s = seq.shape;
        let blocks = s.seq.div_ceil(tile);
        let (b, kvh, i0) = (
            unit / (kv_heads * blocks),
            unit / blocks % kv_heads,
            unit % blocks * tile,
        );
        let positions = tile.min(s.seq - i0);
        // Keys the unit's last query sees, and this chunk's share of them.
        let visible = s.len - s.seq + i0 + positions;
        let (lo, hi) = if chunks > 1 {
            ((c * CHUNK).min(visible), ((c + 1) * CHUNK).min(visible))
        } else {
            (0, visible)
        };
        if lo == hi {
            // An early prompt position of a wide group sees none of this chunk: its partial stays (0, 0, 0...),
            // which the merge skips.
            return;
        }
        let cache = (b * kv_heads + kvh) * s.max_len * du;
        let query = |p: usize, g: usize| &q[place(i, b, kvh, i0 + p).1 + g * d..][..d];
        // SAFETY: each (query, chunk) has its own partials and, with one chunk, each query its outputs for the
        // heads of its group, which are contiguous in the token-major output; every job runs once and hands
        // out each query's slice once.
        let out = |p: usize| unsafe {
            let (partials, offset) = place(i, b, kvh, i0 + p);
            if chunks > 1 {
                partial_w.slice(partials + c * group * part, group * part)
            } else {
                out_w.zeroed(offset, group * d)
            }
        };
        let unit = Tile {
            keys: &seq.k[cache + lo * du..cache + hi * du],
            values: &seq.v[cache + lo * du..cache + hi * du],
            lo,
            first: s.len - s.seq + i0,
            positions,
            group,
            d,
            partial: chunks > 1,
            tiled: tile > 1,
        };
        SCRATCH.with_borrow_mut(|scratch| {
            #[cfg(target_arch = "x86_64")]
            if avx512 {
                // SAFETY: the CPU has AVX-512 F and VL, FMA and F16C (checked once above).
                return unsafe { attend_unit_avx512(&unit, &query, &out, scratch) };
            }
            #[cfg(target_arch = "x86_64")]
            if avx2 {
                // SAFETY: the CPU has AVX2, FMA and F16C (checked once above).
                return unsafe { attend_unit_avx2(&unit, &query, &out, scratch) };
            }
            attend_unit::<T, Portable, { BLOCKING_256.0 }, { BLOCKING_256.1 }, { BLOCKING_256.2 }>(
                &unit, &query, &out, scratch,
            );
        })
    });
    for (i, seq) in seqs.iter().enumerate() {
        let (s, chunks) = (seq.shape, chunks(&seq.shape));
        if chunks == 1 {
            continue;
        }
        for (b, kvh, t) in (0..s.batch)
            .flat_map(|b| (0..kv_heads).flat_map(move |h| (0..s.seq).map(move |t| (b, h, t))))
        {
            let (partials, offset) = place(i, b, kvh, t);
            // SAFETY: the query's output slice, which no unit wrote (its units wrote partials).
            let o = unsafe { out_w.zeroed(offset, group * d) };
            merge(&partial[partials..][..chunks * group * part], o, d, group);
        }
    }
    // SAFETY: the sequences cover the rows (asserted above), and each of their queries' group slices was written
    // by its unit or its merge.
    unsafe { out.set_len(q.len()) };
    out
}

/// One unit of work: a decode query's group ([`attend_group`]) or a prefill tile ([`flash::attend_tile`]).
#[inline(always)]
fn attend_unit<
    'q,
    'o,
    T: KvElem,
    M: MulAdd,
    const ROWS: usize,
    const KEY_STEP: usize,
    const RUN: usize,
>(
    u: &Tile<'_, T>,
    query: &impl Fn(usize, usize) -> &'q [f32],
    out: &impl Fn(usize) -> &'o mut [f32],
    scratch: &mut Scratch,
) {
    let Scratch { scores, kv, tile } = scratch;
    if !u.tiled {
        attend_group(u, &|g| query(0, g), scores, kv, out(0));
    } else {
        flash::attend_tile::<T, M, ROWS, KEY_STEP, RUN>(u, query, tile, kv, out);
    }
}

/// [`attend_unit`] for AVX2 with FMA: decode groups in intrinsics ([`super::decode_x86::avx2`]) when the head width
/// is whole vectors, prefill tiles compiled for 256-bit vectors with fused multiply-adds (the baseline x86-64
/// target has 128-bit SSE only; separate multiplies and adds took 2× the instructions of the tile's loops).
///
/// # Safety
/// The CPU supports AVX2, FMA and F16C.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn attend_unit_avx2<'q, 'o, T: KvElem>(
    u: &Tile<'_, T>,
    query: &impl Fn(usize, usize) -> &'q [f32],
    out: &impl Fn(usize) -> &'o mut [f32],
    scratch: &mut Scratch,
) {
    if !u.tiled && decode_x86::avx2::whole_vectors(u.d) {
        decode_x86::avx2::attend_group(u, &|g| query(0, g), &mut scratch.scores, out(0))
    } else {
        attend_unit::<T, Fused, { BLOCKING_256.0 }, { BLOCKING_256.1 }, { BLOCKING_256.2 }>(
            u, query, out, scratch,
        )
    }
}

/// [`attend_unit`] for AVX-512: decode groups in 512-bit intrinsics ([`super::decode_x86::avx512`]) when the
/// head width is whole vectors (else [`attend_unit_avx2`]'s), prefill tiles compiled for 512-bit vectors (a
/// tile's 32 query rows are two vectors).
///
/// # Safety
/// The CPU supports AVX-512 F and VL, AVX2, FMA and F16C.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512vl,avx2,fma,f16c")]
unsafe fn attend_unit_avx512<'q, 'o, T: KvElem>(
    u: &Tile<'_, T>,
    query: &impl Fn(usize, usize) -> &'q [f32],
    out: &impl Fn(usize) -> &'o mut [f32],
    scratch: &mut Scratch,
) {
    if u.tiled {
        attend_unit::<T, Fused, { BLOCKING_512.0 }, { BLOCKING_512.1 }, { BLOCKING_512.2 }>(
            u, query, out, scratch,
        )
    } else if decode_x86::avx512::whole_vectors(u.d) {
        decode_x86::avx512::attend_group(u, &|g| query(0, g), &mut scratch.scores, out(0))
    } else {
        attend_unit_avx2(u, query, out, scratch)
    }
}

/// [`crate::TernaryBackend::attention_step`] on the CPU. `q [batch, rows, heads, head_dim]` and `k`, `v`
/// `[batch, rows, kv_heads, head_dim]` are the step's projections, whose rows are runs of `caches[i].seq` tokens
/// at positions `caches[i].start..`; `q` is rotated in place, each run's rotated keys and its values written
/// into its caches (`[batch, kv_heads, max_len, head_dim]`, in place, rounded to the cache's element type),
/// then [`attend_sequences`]. A cache of rotated rows ([`KvElem::rotation`]) gets its keys and values rotated
/// before they are rounded, the queries rotated as its keys, and the output rotated back. `shape` holds what the
/// sequences share (its `seq` and `len` are ignored); `cos`, `sin` are the RoPE tables `[positions, half]`.
pub fn attention_step<T: KvElem>(
    q: &mut [f32],
    [k, v]: [&[f32]; 2],
    (cos, sin, half): (&[f32], &[f32], usize),
    shape: AttentionShape,
    caches: &mut [StepKv<&mut [T]>],
) -> Vec<f32> {
    let AttentionShape {
        batch,
        heads,
        kv_heads,
        head_dim: d,
        max_len,
        ..
    } = shape;
    let rows: usize = caches.iter().map(|c| c.seq).sum();
    let du = T::row(d);
    assert!(d.is_multiple_of(T::VALUES), "rows of whole cache elements");
    assert!(q.len() == batch * rows * heads * d && k.len() == batch * rows * kv_heads * d);
    assert_eq!(v.len(), k.len(), "v");
    let rotation = T::rotation(d);
    let (mut head, mut rotated, mut turned) = (vec![0f32; d], vec![0f32; d], vec![0f32; d]);
    let mut first = 0;
    for c in caches.iter_mut() {
        assert!(c.start + c.seq <= max_len, "positions past the cache");
        assert_eq!(c.k.len(), batch * kv_heads * max_len * du, "k cache");
        assert_eq!(c.v.len(), c.k.len(), "v cache");
        for b in 0..batch {
            for i in 0..c.seq {
                let (row, pos) = (b * rows + first + i, c.start + i);
                let (cos, sin) = (&cos[pos * half..][..half], &sin[pos * half..][..half]);
                for x in q[row * heads * d..(row + 1) * heads * d].chunks_exact_mut(d) {
                    head.copy_from_slice(x);
                    rope_row(&head, cos, sin, x);
                    if let Some((kn, _)) = rotation {
                        hadamard::rotate(x, kn);
                    }
                }
                for h in 0..kv_heads {
                    let src = (row * kv_heads + h) * d;
                    let dst = ((b * kv_heads + h) * max_len + pos) * du;
                    rope_row(&k[src..src + d], cos, sin, &mut rotated);
                    let mut value = &v[src..src + d];
                    if let Some((kn, vn)) = rotation {
                        hadamard::rotate(&mut rotated, kn);
                        turned.copy_from_slice(value);
                        hadamard::rotate(&mut turned, vn);
                        value = &turned;
                    }
                    T::store(&rotated, &mut c.k[dst..dst + du]);
                    T::store(value, &mut c.v[dst..dst + du]);
                }
            }
        }
        first += c.seq;
    }
    let mut first = 0;
    let seqs: Vec<SeqAttention<T>> = caches
        .iter()
        .map(|c| {
            let seq = SeqAttention {
                k: c.k,
                v: c.v,
                first,
                shape: AttentionShape {
                    seq: c.seq,
                    len: c.start + c.seq,
                    ..shape
                },
            };
            first += c.seq;
            seq
        })
        .collect();
    let mut out = attend_sequences(q, rows, &seqs);
    if let Some((_, vn)) = rotation {
        hadamard::rotate(&mut out, vn);
    }
    out
}

/// The group's queries against the unit's keys: the scores of each query head, softmax per head,
/// then the weighted sums of the values ([`weighted_sum`]); keys and values read back in blocks into `kv`, each
/// block read from the cache once for all the group's heads.
#[inline(always)]
fn attend_group<'q, T: KvElem>(
    u: &Tile<'_, T>,
    query: &impl Fn(usize) -> &'q [f32],
    scores: &mut Vec<f32>,
    kv: &mut Vec<f32>,
    acc: &mut [f32],
) {
    let (d, group) = (u.d, u.group);
    let n = u.keys.len() / T::row(d);
    let scale = (d as f32).sqrt();
    scores.clear();
    scores.resize(group * n, 0.0);
    for (b, block) in u.keys.chunks(BLOCK * T::row(d)).enumerate() {
        let keys = T::load(block, kv);
        for g in 0..group {
            let (q, s) = (query(g), &mut scores[g * n + b * BLOCK..]);
            for (s, key) in s.iter_mut().zip(keys.chunks_exact(d)) {
                *s = dot(q, key) / scale;
            }
        }
    }
    let width = if u.partial { d + 2 } else { d };
    acc.fill(0.0);
    for (g, p) in scores.chunks_exact_mut(n.max(1)).enumerate() {
        let max = p.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let mut sum = 0.0;
        for x in p.iter_mut() {
            *x = exp_nonpositive(*x - max);
            sum += *x;
        }
        if u.partial {
            (acc[g * width], acc[g * width + 1]) = (max, sum);
        } else {
            p.iter_mut().for_each(|x| *x /= sum);
        }
    }
    for (b, block) in u.values.chunks(BLOCK * T::row(d)).enumerate() {
        let values = T::load(block, kv);
        for g in 0..group {
            let w = &scores[g * n + b * BLOCK..][..values.len() / d];
            weighted_sum(w, values, &mut acc[g * width + width - d..(g + 1) * width]);
        }
    }
}

/// Outputs of [`weighted_sum`] held in registers across a block's values.
const SUM_RUN: usize = 64;

/// `o += Σ_j w[j] · values[j]` (`o.len()` floats per value), [`SUM_RUN`] outputs at a time kept in registers
/// while the block's values stream past (a read-modify-write of `o` per value tied the loop to its loads and
/// stores).
#[inline(always)]
fn weighted_sum(w: &[f32], values: &[f32], o: &mut [f32]) {
    let d = o.len();
    let mut x = 0;
    while x + SUM_RUN <= d {
        sum_run::<SUM_RUN>(w, values, o, x);
        x += SUM_RUN;
    }
    while x + 8 <= d {
        sum_run::<8>(w, values, o, x);
        x += 8;
    }
    for x in x..d {
        sum_run::<1>(w, values, o, x);
    }
}

/// [`weighted_sum`] for outputs `x..x + W`.
#[inline(always)]
fn sum_run<const W: usize>(w: &[f32], values: &[f32], o: &mut [f32], x: usize) {
    let d = o.len();
    let mut a: [f32; W] = o[x..x + W].try_into().expect("W outputs");
    for (&w, v) in w.iter().zip(values.chunks_exact(d)) {
        let v = &v[x..x + W];
        for i in 0..W {
            a[i] += w * v[i];
        }
    }
    o[x..x + W].copy_from_slice(&a);
}

/// Joins one unit row's chunk partials (`[chunks, group, max + sum + d values]`) into the normalized outputs
/// `o [group, d]` of its query heads: rescaled to the largest max, summed, normalized.
fn merge(partial: &[f32], o: &mut [f32], d: usize, group: usize) {
    let part = d + 2;
    let chunks = partial.len() / (group * part);
    for (g, o) in o.chunks_exact_mut(d).enumerate() {
        let parts = (0..chunks).map(|c| &partial[(c * group + g) * part..][..part]);
        let max = parts
            .clone()
            .filter(|p| p[1] > 0.0)
            .fold(f32::NEG_INFINITY, |m, p| m.max(p[0]));
        let mut sum = 0.0;
        for p in parts.filter(|p| p[1] > 0.0) {
            let w = (p[0] - max).exp();
            sum += p[1] * w;
            o.iter_mut().zip(&p[2..]).for_each(|(o, v)| *o += w * v);
        }
        o.iter_mut().for_each(|o| *o /= sum);
    }
}

/// `e^x` for `x ≤ 0` in arithmetic the compiler vectorizes (std's `exp` is a libm call per element, and a decode
/// step at depth 4096 takes 2.5 M of them): `x = n·ln 2 + r` with `|r| ≤ ln 2 / 2`, `e^r` by its Taylor
/// polynomial to `r⁶` (relative error below 2e-7), `2^n` built in the exponent bits. Below −40 the result is 0:
/// `e^−40` (4e-18) is below the resolution of a softmax sum that holds the max's 1, and tinier weights made the
/// weighted sums of values subnormal (decode at depth 1024 ran 2× slower with them).
#[inline(always)]
pub(super) fn exp_nonpositive(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    // ln 2 in two parts, so that `n · LN2_HI` is exact for the n that occur.
    const LN2_HI: f32 = 0.693_145_75;
    const LN2_LO: f32 = 1.428_606_8e-6;
    const CUTOFF: f32 = -40.0;
    let c = x.max(CUTOFF);
    let (n, k) = round_ties_even(c * LOG2E);
    let r = c - n * LN2_HI - n * LN2_LO;
    let p = 1.0
        + r * (1.0
            + r * (0.5
                + r * (1.0 / 6.0 + r * (1.0 / 24.0 + r * (1.0 / 120.0 + r * (1.0 / 720.0))))));
    let e = p * f32::from_bits(((k + 127) << 23) as u32);
    if x > CUTOFF {
        e
    } else {
        0.0
    }
}
