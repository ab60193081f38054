//! Causal grouped-query attention read straight from the KV cache's buffer, split over query heads.

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

thread_local! {
    /// One query's attention weights, reused across calls (no allocation per decode step).
    static WEIGHTS: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// `q [batch, heads, seq, head_dim]` against the cache `k`, `v` `[batch, kv_heads, max_len, head_dim]`:
/// `softmax(q·kᵀ/√d)·v` over keys `0..=position` for the query at `position = len - seq + i`, as
/// `[batch, seq, heads, head_dim]` (the contract of [`crate::TernaryBackend::cached_attention`]).
pub fn cached_attention(q: &[f32], k: &[f32], v: &[f32], s: AttentionShape) -> Vec<f32> {
    let d = s.head_dim;
    assert!(s.heads.is_multiple_of(s.kv_heads) && s.seq <= s.len && s.len <= s.max_len);
    assert_eq!(q.len(), s.batch * s.heads * s.seq * d, "q");
    assert_eq!(k.len(), s.batch * s.kv_heads * s.max_len * d, "k");
    assert_eq!(v.len(), k.len(), "v");
    let mut out = vec![0.0f32; q.len()];
    let shared = SharedOut::new(&mut out);
    let (group, scale) = (s.heads / s.kv_heads, (d as f32).sqrt());
    let avx2 = Isa::detect().has_avx2();
    par_bands(s.batch * s.heads, 1, |units| {
        WEIGHTS.with_borrow_mut(|p| {
            for unit in units {
                let (b, h) = (unit / s.heads, unit % s.heads);
                let cache = (b * s.kv_heads + h / group) * s.max_len * d;
                let (keys, values) = (&k[cache..cache + s.len * d], &v[cache..cache + s.len * d]);
                for i in 0..s.seq {
                    let at = (unit * s.seq + i) * d;
                    let visible = s.len - s.seq + i + 1;
                    // SAFETY: each (unit, i) owns its `d` outputs; units are split into disjoint bands.
                    let o = unsafe { shared.slice(((b * s.seq + i) * s.heads + h) * d, d) };
                    let keys = &keys[..visible * d];
                    if avx2 {
                        // SAFETY: the CPU has AVX2 (checked once above).
                        #[cfg(target_arch = "x86_64")]
                        unsafe {
                            attend_avx2(&q[at..at + d], keys, values, scale, p, o)
                        }
                    } else {
                        attend(&q[at..at + d], keys, values, scale, p, o);
                    }
                }
            }
        })
    });
    out
}

/// One query: `o += softmax(q·kᵀ/scale)·v` over the rows of `keys` (the visible positions), `p` as scratch.
#[inline(always)]
fn attend(q: &[f32], keys: &[f32], values: &[f32], scale: f32, p: &mut Vec<f32>, o: &mut [f32]) {
    let d = q.len();
    p.clear();
    p.extend(keys.chunks_exact(d).map(|key| dot(q, key) / scale));
    softmax(p);
    for (w, value) in p.iter().zip(values.chunks_exact(d)) {
        o.iter_mut().zip(value).for_each(|(o, v)| *o += w * v);
    }
}

/// [`attend`] compiled for AVX2: the 16-lane dot products and the weighted sum of values become 256-bit
/// vector operations (the baseline x86-64 target has 128-bit SSE only). Attention over the cache grows with
/// the context: at 250 positions it was 5% of the decode samples.
///
/// # Safety
/// The CPU supports AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn attend_avx2(
    q: &[f32],
    keys: &[f32],
    values: &[f32],
    scale: f32,
    p: &mut Vec<f32>,
    o: &mut [f32],
) {
    attend(q, keys, values, scale, p, o)
}

/// In-place softmax: `exp(x - max) / Σ`.
#[inline(always)]
fn softmax(x: &mut [f32]) {
    let max = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0.0;
    for v in x.iter_mut() {
        *v = (*v - max).exp();
        sum += *v;
    }
    x.iter_mut().for_each(|v| *v /= sum);
}
