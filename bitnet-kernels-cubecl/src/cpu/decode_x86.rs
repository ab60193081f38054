//! Decode attention of one KV head's group of query heads ([`super::attention`]'s unit when each sequence of a
//! step has one query) in x86 intrinsics, one source for both widths ([`decode_kernels!`]): 256-bit AVX2 with
//! FMA and F16C ([`avx2`], 16 registers), and 512-bit AVX-512 ([`avx512`], 32 registers, twice the lanes per
//! instruction). f16 and q8_0 keys and values are widened in registers as they are read (no copy through a
//! buffer); each pass scores several keys against up to four query heads, so a key is read once for the group
//! and its loads are shared; the exponentials run in vector lanes; the values are summed for up to four heads ×
//! a run of outputs at a time in registers over a block of keys. The portable loops it replaces ran at 15% of
//! the FMA rate (decode at depth 4063 kept 40% of the speed at depth 0).

/// Query heads per pass: their accumulators for the pass's keys take 8 of the 16 vector registers on 256 bits
/// (2 keys), 16 of the 32 on 512 bits (4 keys).
const HEADS: usize = 4;
/// Keys per block of the values loop: a block's values (8 KiB of f16 at a head width of 128) stay in L1 while
/// each run of outputs passes over them.
const BLOCK: usize = 32;
/// Keys ahead of the scores loop whose rows it prefetches (4 KiB of f16 at a head width of 128). The cache is
/// read from memory, and without the hint half of the kernel's time was spent waiting for its loads.
const KEYS_AHEAD: usize = 16;

/// Defines `whole_vectors` and `attend_group` in the invoking module for one vector width: `features` the
/// `target_feature` list; `vector` the f32 vector type and `lanes` its floats; `keys` the keys scored per pass
/// (`HEADS × keys` accumulators); `run` the vectors of outputs per run of the values loop (`HEADS × run`
/// accumulators); then the intrinsics (`f16(p)` and `q8(block, i)` widen `lanes` values: f16 from `p`, or
/// values `lanes · i..` of a q8_0 block; `scores(dots, scale, s, n)` sets `s[h · n + k]` to `scale` times the
/// sum of the lanes of `dots[h][k]`, and may call the macro's `lane_sums`, which does it by `hsum`, a vector's
/// lane sum, or its `heads_keys`, which writes the sums of a transposing reduction).
macro_rules! decode_kernels {
    (
        features: $features:literal,
        vector: $V:ty,
        lanes: $lanes:expr,
        keys: $keys:expr,
        run: $run:expr,
        zero: $zero:ident,
        load: $load:ident,
        store: $store:ident,
        fmadd: $fmadd:ident,
        mul: $mul:ident,
        splat: $splat:ident,
        f16: $f16:ident,
        q8: $q8:ident,
        scores: $scores:ident,
        hsum: $hsum:ident $(,)?
    ) => {
        /// Whether [`attend_group`] takes heads of width `d`: whole vectors.
        pub(in crate::cpu) fn whole_vectors(d: usize) -> bool {
            d.is_multiple_of(LANES)
        }

        /// The group's queries (`query(g)`, head `g`) against the unit's keys and values, into `acc`: per head its
        /// normalized output (`[group][d]`) or, for one chunk of the keys, its max score, sum of exponentials and
        /// unnormalized output (`[group][d + 2]`). `scores` is scratch.
        ///
        /// # Safety
        /// The CPU has the module's features, and [`whole_vectors`] for `u.d`.
        #[target_feature(enable = $features)]
        pub(in crate::cpu) unsafe fn attend_group<'q, T: KvElem>(
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

        /// Floats per vector.
        const LANES: usize = $lanes;

        /// Values `x..x + LANES` (`x` a multiple of `LANES`) of the cache row at `row`: loaded, widened from f16,
        /// or a q8_0 block's int8 values widened and scaled.
        #[target_feature(enable = $features)]
        #[inline]
        unsafe fn load<T: KvElem>(row: *const T, x: usize) -> $V {
            match T::KIND {
                KvKind::F32 => $load(row.cast::<f32>().add(x)),
                KvKind::F16 => $f16(row.cast::<u16>().add(x)),
                KvKind::Q8_0 => $q8(
                    &*row.cast::<Q8Block>().add(x / T::VALUES),
                    x % T::VALUES / LANES,
                ),
            }
        }

        /// Prefetches `units` elements from `p` (a hint: an address past the cache is harmless).
        #[target_feature(enable = $features)]
        #[inline]
        unsafe fn prefetch_row<T>(p: *const T, units: usize) {
            let p = p.cast::<u8>();
            for line in (0..units * size_of::<T>()).step_by(64) {
                _mm_prefetch::<_MM_HINT_T0>(p.wrapping_add(line).cast());
            }
        }

        /// `s[h · n + j] = q[h] · key j · scale` for the `n` keys of `keys` (rows of `d` values), `$keys` keys per
        /// pass.
        #[target_feature(enable = $features)]
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
            const K: usize = $keys;
            let whole = n - n % K;
            for j in (0..whole).step_by(K) {
                prefetch_row(kp.wrapping_add((j + KEYS_AHEAD) * du), K * du);
                $scores(
                    &dots::<T, H, K>(kp.add(j * du), d, q),
                    scale,
                    &mut s[j..],
                    n,
                );
            }
            for j in whole..n {
                $scores(
                    &dots::<T, H, 1>(kp.add(j * du), d, q),
                    scale,
                    &mut s[j..],
                    n,
                );
            }
        }

        /// The dot products of `K` consecutive keys from `k` (rows of `d` values) with `H` queries, each in
        /// the lanes of a vector.
        #[target_feature(enable = $features)]
        #[inline]
        unsafe fn dots<T: KvElem, const H: usize, const K: usize>(
            k: *const T,
            d: usize,
            q: &[&[f32]; H],
        ) -> [[$V; K]; H] {
            let mut acc = [[$zero(); K]; H];
            for x in (0..d).step_by(LANES) {
                let mut keys = [$zero(); K];
                for (i, key) in keys.iter_mut().enumerate() {
                    *key = load(k.add(i * T::row(d)), x);
                }
                for (acc, q) in acc.iter_mut().zip(q) {
                    let q = $load(q.as_ptr().add(x));
                    for (acc, &key) in acc.iter_mut().zip(&keys) {
                        *acc = $fmadd(q, key, *acc);
                    }
                }
            }
            acc
        }

        /// `s[h · n + k] = scale · Σ lanes of dots[h][k]`, one vector at a time.
        #[target_feature(enable = $features)]
        #[inline]
        fn lane_sums<const H: usize, const K: usize>(
            dots: &[[$V; K]; H],
            scale: f32,
            s: &mut [f32],
            n: usize,
        ) {
            for (h, dots) in dots.iter().enumerate() {
                for (k, &dot) in dots.iter().enumerate() {
                    s[h * n + k] = $hsum(dot) * scale;
                }
            }
        }

        /// `s[h · n + k] = scale · sums[K · h + k]`: a transposing reduction's sums, `K` keys for each head.
        #[target_feature(enable = $features)]
        #[inline]
        fn heads_keys<const H: usize, const K: usize>(
            sums: $V,
            scale: f32,
            s: &mut [f32],
            n: usize,
        ) {
            let mut out = [0f32; LANES];
            // SAFETY: `out` holds a vector's floats.
            unsafe { $store(out.as_mut_ptr(), $mul(sums, $splat(scale))) };
            for h in 0..H {
                s[h * n..h * n + K].copy_from_slice(&out[K * h..K * h + K]);
            }
        }

        /// The largest of `p` (−∞ when empty), in vector lanes.
        #[target_feature(enable = $features)]
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

        /// `p[j] = e^(p[j] − max)`, returning their sum, in vector lanes.
        #[target_feature(enable = $features)]
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
        /// `d`), in blocks of [`BLOCK`] keys, `$run` vectors of outputs of every head at a time.
        #[target_feature(enable = $features)]
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
                const RUN: usize = $run;
                let whole = d - d % (RUN * LANES);
                for x in (0..whole).step_by(RUN * LANES) {
                    if x == 0 {
                        value_run::<T, H, RUN, true>(v, (d, 0), w, n, keys, o, width);
                    } else {
                        value_run::<T, H, RUN, false>(v, (d, x), w, n, keys, o.add(x), width);
                    }
                }
                for x in (whole..d).step_by(LANES) {
                    if x == 0 {
                        value_run::<T, H, 1, true>(v, (d, 0), w, n, keys, o, width);
                    } else {
                        value_run::<T, H, 1, false>(v, (d, x), w, n, keys, o.add(x), width);
                    }
                }
            }
        }

        /// [`sum_values`] for `R` vectors of outputs at `o` and values `x..` of the `keys` rows (`d` values each) from
        /// `v`; with `PREFETCH` (the block's first run) each value's row in the next block is prefetched.
        #[target_feature(enable = $features)]
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
            let mut acc = [[$zero(); R]; H];
            for (h, acc) in acc.iter_mut().enumerate() {
                for (r, acc) in acc.iter_mut().enumerate() {
                    *acc = $load(o.add(h * width + r * LANES));
                }
            }
            let du = T::row(d);
            for j in 0..keys {
                if PREFETCH {
                    prefetch_row(v.wrapping_add((j + BLOCK) * du), du);
                }
                let mut values = [$zero(); R];
                for (r, value) in values.iter_mut().enumerate() {
                    *value = load(v.add(j * du), x + r * LANES);
                }
                for (h, acc) in acc.iter_mut().enumerate() {
                    let wj = $splat(*w.add(h * n + j));
                    for (acc, &value) in acc.iter_mut().zip(&values) {
                        *acc = $fmadd(wj, value, *acc);
                    }
                }
            }
            for (h, acc) in acc.iter().enumerate() {
                for (r, &acc) in acc.iter().enumerate() {
                    $store(o.add(h * width + r * LANES), acc);
                }
            }
        }
    };
}

/// The kernels on 256-bit vectors: AVX2, FMA and F16C.
pub(super) mod avx2 {
    use std::arch::x86_64::*;

    use super::super::attention::exp_nonpositive;
    use super::super::flash::Tile;
    use super::super::kv::{q8_lanes, KvElem, KvKind, Q8Block};
    use super::{BLOCK, HEADS, KEYS_AHEAD};

    /// Whether the CPU has what [`attend_group`] runs on: AVX2, FMA and F16C.
    pub(in crate::cpu) fn supported() -> bool {
        std::arch::is_x86_feature_detected!("avx2")
            && std::arch::is_x86_feature_detected!("fma")
            && std::arch::is_x86_feature_detected!("f16c")
    }

    /// Eight f16 values from `p`, widened.
    #[target_feature(enable = "avx2,fma,f16c")]
    #[inline]
    unsafe fn f16(p: *const u16) -> __m256 {
        _mm256_cvtph_ps(_mm_loadu_si128(p.cast()))
    }

    /// The sum of the eight lanes of `v`.
    #[target_feature(enable = "avx2,fma,f16c")]
    #[inline]
    fn hsum(v: __m256) -> f32 {
        let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        _mm_cvtss_f32(_mm_add_ss(s, _mm_movehdup_ps(s)))
    }

    /// `s[h · n + k] = scale · Σ lanes of dots[h][k]`: for two keys, the eight sums by one transposing
    /// reduction (21 instructions where eight [`hsum`] take 48).
    #[target_feature(enable = "avx2,fma,f16c")]
    #[inline]
    fn scores<const H: usize, const K: usize>(
        dots: &[[__m256; K]; H],
        scale: f32,
        s: &mut [f32],
        n: usize,
    ) {
        if K != 2 {
            return lane_sums(dots, scale, s, n);
        }
        // Vector 2h + k is key k's dots with head h (zero for heads past H).
        let v: [__m256; 8] = std::array::from_fn(|i| {
            if i / 2 < H {
                dots[i / 2][i % 2]
            } else {
                _mm256_setzero_ps()
            }
        });
        // Within each 128-bit half, element i of quad j holds partial sums of v[4j + i].
        let quad = |j: usize| {
            _mm256_hadd_ps(
                _mm256_hadd_ps(v[4 * j], v[4 * j + 1]),
                _mm256_hadd_ps(v[4 * j + 2], v[4 * j + 3]),
            )
        };
        let (lo, hi) = (quad(0), quad(1));
        let sums = _mm256_add_ps(
            _mm256_permute2f128_ps::<0x20>(lo, hi),
            _mm256_permute2f128_ps::<0x31>(lo, hi),
        );
        heads_keys::<H, K>(sums, scale, s, n);
    }

    decode_kernels! {
        features: "avx2,fma,f16c",
        vector: __m256,
        lanes: 8,
        keys: 2,
        run: 2,
        zero: _mm256_setzero_ps,
        load: _mm256_loadu_ps,
        store: _mm256_storeu_ps,
        fmadd: _mm256_fmadd_ps,
        mul: _mm256_mul_ps,
        splat: _mm256_set1_ps,
        f16: f16,
        q8: q8_lanes,
        scores: scores,
        hsum: hsum,
    }
}

/// The kernels on 512-bit vectors: AVX-512 F (with AVX2, FMA and F16C).
pub(super) mod avx512 {
    use std::arch::x86_64::*;

    use super::super::attention::exp_nonpositive;
    use super::super::flash::Tile;
    use super::super::kv::{q8_scale, KvElem, KvKind, Q8Block};
    use super::{BLOCK, HEADS, KEYS_AHEAD};

    /// Sixteen f16 values from `p`, widened.
    #[target_feature(enable = "avx512f,avx2,fma,f16c")]
    #[inline]
    unsafe fn f16(p: *const u16) -> __m512 {
        _mm512_cvtph_ps(_mm256_loadu_si256(p.cast()))
    }

    /// Values `16i..16i + 16` of `b` as f32 lanes (the arithmetic of [`super::super::kv::q8_lanes`]).
    #[target_feature(enable = "avx512f,avx2,fma,f16c")]
    #[inline]
    unsafe fn q8(b: &Q8Block, i: usize) -> __m512 {
        let q = _mm_loadu_si128(b.0.as_ptr().add(2 + 16 * i).cast());
        _mm512_mul_ps(
            _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(q)),
            _mm512_broadcastss_ps(q8_scale(b)),
        )
    }

    /// `s[h · n + k] = scale · Σ lanes of dots[h][k]`: for four keys, the sixteen sums by one transposing
    /// reduction (~45 shuffles and adds, where sixteen `_mm512_reduce_add_ps` took ~130 instructions and a
    /// third of the scoring loop's time).
    #[target_feature(enable = "avx512f,avx2,fma,f16c")]
    #[inline]
    fn scores<const H: usize, const K: usize>(
        dots: &[[__m512; K]; H],
        scale: f32,
        s: &mut [f32],
        n: usize,
    ) {
        if K != 4 {
            return lane_sums(dots, scale, s, n);
        }
        // Vector 4k + h is key k's dots with head h (zero for heads past H).
        let v: [__m512; 16] = std::array::from_fn(|i| {
            if i % 4 < H {
                dots[i % 4][i / 4]
            } else {
                _mm512_setzero_ps()
            }
        });
        // 128-bit lanes of pair i: [a0 + a2, a1 + a3, b0 + b2, b1 + b3] of (a, b) = (v[2i], v[2i + 1]).
        let halves: [__m512; 8] = std::array::from_fn(|i| {
            let (a, b) = (v[2 * i], v[2 * i + 1]);
            _mm512_add_ps(
                _mm512_shuffle_f32x4::<0b01_00_01_00>(a, b),
                _mm512_shuffle_f32x4::<0b11_10_11_10>(a, b),
            )
        });
        // 128-bit lane l of quad i: four partial sums of v[4i + l].
        let quads: [__m512; 4] = std::array::from_fn(|i| {
            let (a, b) = (halves[2 * i], halves[2 * i + 1]);
            _mm512_add_ps(
                _mm512_shuffle_f32x4::<0b10_00_10_00>(a, b),
                _mm512_shuffle_f32x4::<0b11_01_11_01>(a, b),
            )
        });
        // Within each 128-bit lane l, the four quads' four partials summed: lane l, element k is v[4k + l]'s
        // sum, so 128-bit lane h holds head h's four keys.
        let pairs = |a, b| _mm512_add_ps(_mm512_unpacklo_ps(a, b), _mm512_unpackhi_ps(a, b));
        let (t0, t1) = (pairs(quads[0], quads[1]), pairs(quads[2], quads[3]));
        let sums = _mm512_add_ps(
            _mm512_shuffle_ps::<0b01_00_01_00>(t0, t1),
            _mm512_shuffle_ps::<0b11_10_11_10>(t0, t1),
        );
        heads_keys::<H, K>(sums, scale, s, n);
    }

    decode_kernels! {
        features: "avx512f,avx2,fma,f16c",
        vector: __m512,
        lanes: 16,
        keys: 4,
        run: 4,
        zero: _mm512_setzero_ps,
        load: _mm512_loadu_ps,
        store: _mm512_storeu_ps,
        fmadd: _mm512_fmadd_ps,
        mul: _mm512_mul_ps,
        splat: _mm512_set1_ps,
        f16: f16,
        q8: q8,
        scores: scores,
        hsum: _mm512_reduce_add_ps,
    }
}
