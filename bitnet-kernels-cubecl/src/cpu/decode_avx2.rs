//! Decode attention of one KV head's group of query heads ([`super::attention`]'s unit when each sequence of a
//! step has one query) in AVX2, FMA and F16C intrinsics. f16 and q8_0 keys and values are widened in registers
//! as they are read (no copy through a buffer); each pass scores two keys against up to four query heads, so a
//! key is read once for the group and its loads are shared; the exponentials run in eight lanes; the values are
//! summed for up to four heads × sixteen outputs at a time in registers over a block of keys. The portable loops
//! it replaces ran at 15% of the FMA rate (decode at depth 4063 kept 40% of the speed at depth 0).

use std::arch::x86_64::*;

use super::attention::exp_nonpositive;
use super::flash::Tile;
use super::kv::{q8_lanes, KvElem, KvKind, Q8Block};

/// Query heads per pass: with two keys their accumulators take 8 of the 16 vector registers.
const HEADS: usize = 4;
/// Keys per block of the values loop: a block's values (8 KiB of f16 at a head width of 128) stay in L1 while
/// each run of outputs passes over them.
const BLOCK: usize = 32;
/// Floats per vector.
const LANES: usize = 8;
/// Keys ahead of the scores loop whose rows it prefetches (4 KiB of f16 at a head width of 128). The cache is
/// read from memory, and without the hint half of the kernel's time was spent waiting for its loads.
const KEYS_AHEAD: usize = 16;

/// Whether the CPU has what [`attend_group`] runs on: AVX2, FMA and F16C.
pub(super) fn supported() -> bool {
    std::arch::is_x86_feature_detected!("avx2")
        && std::arch::is_x86_feature_detected!("fma")
        && std::arch::is_x86_feature_detected!("f16c")
}

/// Whether [`attend_group`] takes heads of width `d`: whole vectors.
pub(super) fn whole_vectors(d: usize) -> bool {
    d.is_multiple_of(LANES)
}

/// The group's queries (`query(g)`, head `g`) against the unit's keys and values, into `acc`: per head its
/// normalized output (`[group][d]`) or, for one chunk of the keys, its max score, sum of exponentials and
/// unnormalized output (`[group][d + 2]`). `scores` is scratch.
///
/// # Safety
/// [`supported`], and [`whole_vectors`] for `u.d`.
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn attend_group<'q, T: KvElem>(
    u: &Tile<'_, T>,
    query: &impl Fn(usize) -> &'q [f32],
    scores: &mut Vec<f32>,
    acc: &mut [f32],
) {
    let (d, group) = (u.d, u.group);
    let n = u.keys.len() / T::row(d);
    let width = if u.partial { d + 2 } else { d };
    assert!(acc.len() >= group * width && u.values.len() == u.keys.len());
    scores.clear();
    scores.resize(group * n, 0.0);
    let scale = 1.0 / (d as f32).sqrt();
    for g0 in (0..group).step_by(HEADS) {
        let s = &mut scores[g0 * n..];
        match HEADS.min(group - g0) {
            4 => score_heads::<T, 4>(u.keys, d, &query_heads(query, g0), scale, s),
            3 => score_heads::<T, 3>(u.keys, d, &query_heads(query, g0), scale, s),
            2 => score_heads::<T, 2>(u.keys, d, &query_heads(query, g0), scale, s),
            _ => score_heads::<T, 1>(u.keys, d, &query_heads(query, g0), scale, s),
        }
    }
    acc[..group * width].fill(0.0);
    for (g, p) in scores.chunks_exact_mut(n.max(1)).take(group).enumerate() {
        let max = max(p);
        let sum = exponentials(p, max);
        if u.partial {
            (acc[g * width], acc[g * width + 1]) = (max, sum);
        } else {
            let inv = 1.0 / sum;
            p.iter_mut().for_each(|p| *p *= inv);
        }
    }
    for g0 in (0..group).step_by(HEADS) {
        let (w, o) = (&scores[g0 * n..], &mut acc[g0 * width..]);
        match HEADS.min(group - g0) {
            4 => sum_values::<T, 4>(u.values, d, w, n, o, width),
            3 => sum_values::<T, 3>(u.values, d, w, n, o, width),
            2 => sum_values::<T, 2>(u.values, d, w, n, o, width),
            _ => sum_values::<T, 1>(u.values, d, w, n, o, width),
        }
    }
}

/// Heads `g0..g0 + H` of the group's queries.
#[inline(always)]
fn query_heads<'q, const H: usize>(
    query: &impl Fn(usize) -> &'q [f32],
    g0: usize,
) -> [&'q [f32]; H] {
    std::array::from_fn(|i| query(g0 + i))
}

/// Values `x..x + 8` (`x` a multiple of 8) of the cache row at `row`: loaded, widened from f16, or a q8_0
/// block's int8 values widened and scaled.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
unsafe fn load<T: KvElem>(row: *const T, x: usize) -> __m256 {
    match T::KIND {
        KvKind::F32 => _mm256_loadu_ps(row.cast::<f32>().add(x)),
        KvKind::F16 => _mm256_cvtph_ps(_mm_loadu_si128(row.cast::<u16>().add(x).cast())),
        KvKind::Q8_0 => q8_lanes(
            &*row.cast::<Q8Block>().add(x / T::VALUES),
            x % T::VALUES / LANES,
        ),
    }
}

/// Prefetches `units` elements from `p` (a hint: an address past the cache is harmless).
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
unsafe fn prefetch_row<T>(p: *const T, units: usize) {
    let p = p.cast::<u8>();
    for line in (0..units * size_of::<T>()).step_by(64) {
        _mm_prefetch::<_MM_HINT_T0>(p.wrapping_add(line).cast());
    }
}

/// The sum of the eight lanes of `v`.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
unsafe fn hsum(v: __m256) -> f32 {
    let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    _mm_cvtss_f32(_mm_add_ss(s, _mm_movehdup_ps(s)))
}

/// `s[h · n + j] = q[h] · key j · scale` for the `n` keys of `keys` (rows of `d` values), two keys per pass.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
unsafe fn score_heads<T: KvElem, const H: usize>(
    keys: &[T],
    d: usize,
    q: &[&[f32]; H],
    scale: f32,
    s: &mut [f32],
) {
    let du = T::row(d);
    let n = keys.len() / du;
    assert!(s.len() >= H * n && q.iter().all(|q| q.len() >= d));
    let kp = keys.as_ptr();
    let whole = n - n % 2;
    for j in (0..whole).step_by(2) {
        prefetch_row(kp.wrapping_add((j + KEYS_AHEAD) * du), 2 * du);
        let dots = dots::<T, H, 2>(kp.add(j * du), d, q);
        for (h, dots) in dots.iter().enumerate() {
            s[h * n + j] = dots[0] * scale;
            s[h * n + j + 1] = dots[1] * scale;
        }
    }
    if whole < n {
        let dots = dots::<T, H, 1>(kp.add(whole * du), d, q);
        for (h, dots) in dots.iter().enumerate() {
            s[h * n + whole] = dots[0] * scale;
        }
    }
}

/// The dot products of `K` consecutive keys from `k` (rows of `d` values) with `H` queries.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
unsafe fn dots<T: KvElem, const H: usize, const K: usize>(
    k: *const T,
    d: usize,
    q: &[&[f32]; H],
) -> [[f32; K]; H] {
    let mut acc = [[_mm256_setzero_ps(); K]; H];
    for x in (0..d).step_by(LANES) {
        let mut keys = [_mm256_setzero_ps(); K];
        for (i, key) in keys.iter_mut().enumerate() {
            *key = load(k.add(i * T::row(d)), x);
        }
        for (acc, q) in acc.iter_mut().zip(q) {
            let q = _mm256_loadu_ps(q.as_ptr().add(x));
            for (acc, &key) in acc.iter_mut().zip(&keys) {
                *acc = _mm256_fmadd_ps(q, key, *acc);
            }
        }
    }
    let mut out = [[0f32; K]; H];
    for (out, acc) in out.iter_mut().zip(&acc) {
        for (o, &a) in out.iter_mut().zip(acc) {
            *o = hsum(a);
        }
    }
    out
}

/// The largest of `p` (−∞ when empty), in eight lanes.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
unsafe fn max(p: &[f32]) -> f32 {
    let mut m = [f32::NEG_INFINITY; LANES];
    let chunks = p.chunks_exact(LANES);
    let rest = chunks
        .remainder()
        .iter()
        .copied()
        .fold(f32::NEG_INFINITY, f32::max);
    for c in chunks {
        for i in 0..LANES {
            m[i] = m[i].max(c[i]);
        }
    }
    m.into_iter().fold(rest, f32::max)
}

/// `p[j] = e^(p[j] − max)`, returning their sum, in eight lanes.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
unsafe fn exponentials(p: &mut [f32], max: f32) -> f32 {
    let mut sums = [0f32; LANES];
    let mut chunks = p.chunks_exact_mut(LANES);
    for c in &mut chunks {
        for i in 0..LANES {
            c[i] = exp_nonpositive(c[i] - max);
            sums[i] += c[i];
        }
    }
    let mut sum: f32 = sums.iter().sum();
    for x in chunks.into_remainder() {
        *x = exp_nonpositive(*x - max);
        sum += *x;
    }
    sum
}

/// `o[h][x] += Σ_j w[h · n + j] · value j [x]` for `H` heads (output rows `width` apart, values in their last
/// `d`), in blocks of [`BLOCK`] keys, sixteen outputs of every head at a time.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
unsafe fn sum_values<T: KvElem, const H: usize>(
    values: &[T],
    d: usize,
    w: &[f32],
    n: usize,
    o: &mut [f32],
    width: usize,
) {
    let du = T::row(d);
    assert!(values.len() >= n * du && w.len() >= H * n && o.len() >= H * width);
    let o = o.as_mut_ptr().add(width - d);
    for b in (0..n).step_by(BLOCK) {
        let (v, w, keys) = (
            values.as_ptr().add(b * du),
            w.as_ptr().add(b),
            BLOCK.min(n - b),
        );
        let whole = d - d % (2 * LANES);
        for x in (0..whole).step_by(2 * LANES) {
            if x == 0 {
                value_run::<T, H, 2, true>(v, (d, 0), w, n, keys, o, width);
            } else {
                value_run::<T, H, 2, false>(v, (d, x), w, n, keys, o.add(x), width);
            }
        }
        if whole < d {
            value_run::<T, H, 1, false>(v, (d, whole), w, n, keys, o.add(whole), width);
        }
    }
}

/// [`sum_values`] for `R` vectors of outputs at `o` and values `x..` of the `keys` rows (`d` values each) from
/// `v`; with `PREFETCH` (the block's first run) each value's row in the next block is prefetched.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
unsafe fn value_run<T: KvElem, const H: usize, const R: usize, const PREFETCH: bool>(
    v: *const T,
    (d, x): (usize, usize),
    w: *const f32,
    n: usize,
    keys: usize,
    o: *mut f32,
    width: usize,
) {
    let mut acc = [[_mm256_setzero_ps(); R]; H];
    for (h, acc) in acc.iter_mut().enumerate() {
        for (r, acc) in acc.iter_mut().enumerate() {
            *acc = _mm256_loadu_ps(o.add(h * width + r * LANES));
        }
    }
    let du = T::row(d);
    for j in 0..keys {
        if PREFETCH {
            prefetch_row(v.wrapping_add((j + BLOCK) * du), du);
        }
        let mut values = [_mm256_setzero_ps(); R];
        for (r, value) in values.iter_mut().enumerate() {
            *value = load(v.add(j * du), x + r * LANES);
        }
        for (h, acc) in acc.iter_mut().enumerate() {
            let wj = _mm256_broadcast_ss(&*w.add(h * n + j));
            for (acc, &value) in acc.iter_mut().zip(&values) {
                *acc = _mm256_fmadd_ps(wj, value, *acc);
            }
        }
    }
    for (h, acc) in acc.iter().enumerate() {
        for (r, &acc) in acc.iter().enumerate() {
            _mm256_storeu_ps(o.add(h * width + r * LANES), acc);
        }
    }
}
