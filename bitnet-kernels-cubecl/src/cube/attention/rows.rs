//! One query row's attention over its visible keys, or over a split of them: each unit scores one key of a
//! chunk of [`UNITS`], the cube takes the chunk's maximum and sum with shared-memory trees, and the units add
//! the chunk's weighted values into the output row, each unit one vector of the row for every `groups`-th key
//! (consecutive units read consecutive words of a cached row: coalesced), the groups' sums added at the end.
//! Caches of packed halves ([`super::super::half`]) and q8_0 words ([`super::super::q8`]) are unpacked in
//! registers: a vector of words is two or four vectors of the row; with a q8_0 cache the query is turned by the
//! keys' rotation first and the output turned back by the values'.

use cubecl::prelude::*;

use super::super::half::to_float;
use super::super::q8;
use super::super::rows::tree;
use super::{gather, spill, unturned, LOWEST, UNITS};

/// Plane `p` of a vector of cache words in a layout of `planes` ([`super::super::kv::Layout::planes`]),
/// unscaled for q8_0.
#[cube]
fn plane<F: Float, K: Numeric, N: Size>(
    w: Vector<K, N>,
    #[comptime] p: usize,
    #[comptime] planes: usize,
) -> Vector<F, N> {
    if comptime!(planes == q8::PLANES) {
        q8::plane::<F, K, N>(w, p)
    } else if comptime!(planes == 2) {
        to_float::<F, K, N>(w, comptime!(p == 1))
    } else {
        Vector::<F, N>::cast_from(w)
    }
}

/// Plane `p` of word vector `c` of the cached row at `row` ([`plane`]), scaled for q8_0 (the scale of the
/// block its first element is in: a vector's elements share a block, see [`super::cached_attention`]).
#[cube]
#[allow(clippy::too_many_arguments)]
fn cached<F: Float, K: Numeric, N: Size>(
    cache: &Tensor<Vector<K, N>>,
    row: usize,
    c: usize,
    w: Vector<K, N>,
    #[comptime] p: usize,
    #[comptime] planes: usize,
    #[comptime] words: usize,
    #[comptime] width: usize,
) -> Vector<F, N> {
    let mut x = plane::<F, K, N>(w, p, planes);
    if comptime!(planes == q8::PLANES) {
        let first = comptime!(p * width / q8::PLANES) + c * cache.vector_size();
        let s = q8::scale::<F, K, N>(cache, row, words, first / q8::BLOCK);
        x *= Vector::<F, N>::new(s);
    }
    x
}

/// The lanes of `q · k` for the cached key row at `row`. A q8_0 row's products are summed per block (a word
/// vector's lanes lie in one block of each plane) and each block's sum scaled once: its scales are read once
/// per key, not once per plane and word.
#[cube]
fn key_dot<F: Float, K: Numeric, N: Size>(
    qs: &SharedMemory<Vector<F, N>>,
    k: &Tensor<Vector<K, N>>,
    row: usize,
    #[comptime] planes: usize,
    #[comptime] words: usize,
    #[comptime] width: usize,
) -> Vector<F, N> {
    let mut dot = Vector::<F, N>::new(F::new(0.0));
    if comptime!(planes == q8::PLANES) {
        let blocks = comptime!(width / q8::BLOCK);
        let lanes = N::value();
        let mut sums = Array::<Vector<F, N>>::new(blocks);
        #[unroll]
        for b in 0..blocks {
            sums[b] = Vector::<F, N>::new(F::new(0.0));
        }
        #[unroll]
        for c in 0..words {
            let w = k[row + c];
            #[unroll]
            for p in 0..planes {
                let b = comptime!((p * width / q8::PLANES + c * lanes) / q8::BLOCK);
                sums[b] += qs[c + p * words] * q8::plane::<F, K, N>(w, p);
            }
        }
        let mut scales = Array::<F>::new(blocks);
        q8::scales::<F, K, N>(k, row, &mut scales, words, blocks);
        #[unroll]
        for b in 0..blocks {
            dot += sums[b] * Vector::<F, N>::new(scales[b]);
        }
    } else {
        for c in 0..words {
            let w = k[row + c];
            #[unroll]
            for p in 0..planes {
                dot += qs[c + p * words] * plane::<F, K, N>(w, p, planes);
            }
        }
    }
    dot
}

/// Attention of query row `CUBE_POS_X` over split `CUBE_POS_Y` of its keys (positions `span` apart): with
/// `split`, the unnormalized output row into `out [rows · splits, d]` and its running maximum and sum into
/// `stats [rows · splits, 2]`, for [`super::merge`]; else the output row itself into `out [b, seq, heads, d]`.
#[cube(launch)]
#[allow(clippy::too_many_arguments)]
pub(super) fn attention_rows<F: Float, K: Numeric, N: Size>(
    q: &Tensor<Vector<F, N>>,
    k: &Tensor<Vector<K, N>>,
    v: &Tensor<Vector<K, N>>,
    out: &mut Tensor<Vector<F, N>>,
    stats: &mut Tensor<F>,
    len: usize,
    span: usize,
    sqrt_d: f32,
    k_chunk: usize,
    k_scale: f32,
    v_chunk: usize,
    v_scale: f32,
    #[comptime] width: usize,
    #[comptime] vectors: usize,
    #[comptime] planes: usize,
    #[comptime] row_vectors: usize,
    #[comptime] split: bool,
    #[define(F, K)] _dtypes: [StorageType; 2],
) {
    let (heads, seq, kv_heads, max_len) = (q.shape(1), q.shape(2), k.shape(1), k.shape(2));
    let (query, part) = (CUBE_POS_X as usize, CUBE_POS_Y as usize);
    let unit = UNIT_POS_X as usize;
    let (i, head, batch) = (query % seq, (query / seq) % heads, query / (seq * heads));
    let kv = head / (heads / kv_heads);
    // Vectors of a cache row's values: word vector `c` also holds the row's vectors `c + p · words`.
    let words = comptime!(vectors / planes);
    let quantized = comptime!(planes == q8::PLANES);
    let cache = (batch * kv_heads + kv) * max_len * row_vectors;
    let end = usize::min(len - seq + i + 1, (part + 1) * span);
    // Unit `unit` adds word vector `column` (and `column + e · UNITS`) of every `groups`-th key from `group` on.
    let columns = comptime!(usize::min(words, UNITS));
    let groups = comptime!(UNITS / columns);
    let per_unit = comptime!(words.div_ceil(UNITS));
    let (group, column) = (unit / columns, unit % columns);

    let mut qs = SharedMemory::<Vector<F, N>>::new(vectors);
    // A q8_0 cache's rows are rotated: the query and output rows pass through here to be turned likewise.
    let mut turned = SharedMemory::<f32>::new(comptime!(if quantized { width } else { 1 }));
    let mut j = unit;
    if comptime!(quantized) {
        while j < vectors {
            spill::<F, N>(&mut turned, j, q[query * vectors + j]);
            j += UNITS;
        }
        sync_cube();
        q8::rotate(&mut turned, width, k_chunk, k_scale, UNITS);
        j = unit;
        while j < vectors {
            qs[j] = gather::<F, N>(&turned, j);
            j += UNITS;
        }
    } else {
        while j < vectors {
            qs[j] = q[query * vectors + j];
            j += UNITS;
        }
    }
    let mut weights = SharedMemory::<F>::new(UNITS);
    let mut red = SharedMemory::<F>::new(UNITS);
    let mut acc = Array::<Vector<F, N>>::new(comptime!(per_unit * planes));
    #[unroll]
    for e in 0..comptime!(per_unit * planes) {
        acc[e] = Vector::<F, N>::new(F::new(0.0));
    }
    // A q8_0 plane that lies in one block (rows of up to 128 values): a value row's scales are read once a key.
    let plane_width = comptime!(width / q8::PLANES);
    let plane_blocks =
        comptime!(quantized && plane_width <= q8::BLOCK && q8::BLOCK.is_multiple_of(plane_width));
    let blocks = comptime!(if quantized { width / q8::BLOCK } else { 1 });
    let mut scales = Array::<F>::new(blocks);
    let (mut run_max, mut run_sum) = (F::new(LOWEST), F::new(0.0));
    sync_cube();
    let mut start = part * span;
    while start < end {
        let key = start + unit;
        let mut score = F::new(LOWEST);
        if key < end {
            let dot = key_dot::<F, K, N>(&qs, k, cache + key * row_vectors, planes, words, width);
            let mut sum = F::new(0.0);
            #[unroll]
            for l in 0..N::value() {
                sum += dot[l];
            }
            score = sum / F::cast_from(sqrt_d);
        }
        red[unit] = score;
        tree::<F>(&mut red, unit, UNITS, true);
        let new_max = F::max(run_max, red[0]);
        let mut p = F::new(0.0);
        if key < end {
            p = F::exp(score - new_max);
        }
        sync_cube();
        weights[unit] = p;
        red[unit] = p;
        tree::<F>(&mut red, unit, UNITS, false);
        let correction = F::exp(run_max - new_max);
        run_sum = run_sum * correction + red[0];
        run_max = new_max;
        let keys = usize::min(UNITS, end - start);
        #[unroll]
        for e in 0..per_unit {
            let c = column + e * UNITS;
            if group < groups && c < words {
                let scale = Vector::<F, N>::new(correction);
                #[unroll]
                for p in 0..planes {
                    acc[e * planes + p] = acc[e * planes + p] * scale;
                }
                let mut t = group;
                while t < keys {
                    let weight = Vector::<F, N>::new(weights[t]);
                    let row = cache + (start + t) * row_vectors;
                    let w = v[row + c];
                    if comptime!(plane_blocks) {
                        q8::scales::<F, K, N>(v, row, &mut scales, words, blocks);
                        #[unroll]
                        for p in 0..planes {
                            let s = scales[comptime!(p * plane_width / q8::BLOCK)];
                            let x = q8::plane::<F, K, N>(w, p) * Vector::<F, N>::new(s);
                            acc[e * planes + p] += weight * x;
                        }
                    } else {
                        #[unroll]
                        for p in 0..planes {
                            let x = cached::<F, K, N>(v, row, c, w, p, planes, words, width);
                            acc[e * planes + p] += weight * x;
                        }
                    }
                    t += groups;
                }
            }
        }
        sync_cube();
        start += UNITS;
    }
    if comptime!(groups > 1) {
        // Every unit here holds one column (`per_unit` is 1): group 0 adds the other groups' sums.
        let mut sums = SharedMemory::<Vector<F, N>>::new(comptime!(groups * words * planes));
        if group < groups {
            #[unroll]
            for p in 0..planes {
                sums[(group * words + column) * planes + p] = acc[p];
            }
        }
        sync_cube();
        if group == 0 {
            for g in 1..groups {
                #[unroll]
                for p in 0..planes {
                    acc[p] += sums[(g * words + column) * planes + p];
                }
            }
        }
    }
    // Split: the unnormalized row and its statistics, for the merge; else the output row itself.
    let slot = query * CUBE_COUNT_Y as usize + part;
    let mut row = slot * vectors;
    let mut total = Vector::<F, N>::new(F::new(1.0));
    if comptime!(!split) {
        row = ((batch * seq + i) * heads + head) * vectors;
        total = Vector::<F, N>::new(run_sum);
    }
    let turn = comptime!(quantized && !split);
    #[unroll]
    for e in 0..per_unit {
        let c = column + e * UNITS;
        if group == 0 && c < words {
            #[unroll]
            for p in 0..planes {
                let y = acc[e * planes + p] / total;
                if comptime!(turn) {
                    spill::<F, N>(&mut turned, c + p * words, y);
                } else {
                    out[row + c + p * words] = y;
                }
            }
        }
    }
    if comptime!(split) {
        if unit == 0 {
            stats[slot * 2] = run_max;
            stats[slot * 2 + 1] = run_sum;
        }
    } else if comptime!(turn) {
        unturned::<F, N>(&mut turned, out, row, v_chunk, v_scale, width, vectors);
    }
}
