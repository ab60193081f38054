//! The `vpdpbusd` kernels, one source for both x86 widths: AVX-512 VNNI (512-bit, 32 registers) and AVX-VNNI
//! (the VEX-encoded 256-bit form of Alder Lake and later, Zen 5; 16 registers). A module names its vector type,
//! intrinsics and tile sizes and invokes [`vnni_kernels!`]; the macro writes the module's `ternary_tile_dots`
//! and `int8_row_dots` (a trait generic over the width made LLVM spill in an earlier try).
//!
//! Ternary: one vector load of packed words holds the trits of `4 · BYTES` columns; shifted by `2s` and masked
//! they are the unsigned codes (trit + 1) of `BYTES` columns, and `vpdpbusd` multiplies them by `BYTES` signed
//! int8 activations and adds each group of four products into an i32 lane in one instruction (no i16 stage to
//! widen, so no overflow bound). Tiles of rows × 1..=8 tokens share both the activation loads (across rows)
//! and the unpacking (across tokens).

/// Defines `ternary_tile_dots`, and with `head` `int8_row_dots`, in the invoking module for one width of
/// `vpdpbusd`: `features` the `target_feature` list; `vector` its integer vector type and `bytes` its size;
/// `decode_rows` the rows of a tile for one token; `prefill_tiles` each token count of a multi-token tile (2 up
/// to [`crate::cpu::Isa::token_tile`]) with its rows, sized to the register file (rows × tokens accumulators, a
/// register per row's packed words, the mask, the shared activations); `gfni_codes(w, s)`, if given, cuts
/// slice `s` (1-3) of the codes out of packed words `w` in the multi-token tiles instead of a shift and a
/// mask; `head.tiles` each token count of the int8 head's tiles with its rows (rows × tokens accumulators, a
/// register per row's weights, the offset, the shared activations), `head.load_partial(p, n)` loads `n <
/// bytes` bytes, zero above; then the intrinsics (`hsum` sums the i32 lanes, `hsum4` those of each of four
/// vectors; `act(p)` is what a prefill tile's rows share of the activations at `p`, and
/// `dpbusd_act(acc, codes, act)` is `vpdpbusd` on it).
macro_rules! vnni_kernels {
    (
        features: $features:literal,
        vector: $V:ty,
        bytes: $bytes:expr,
        decode_rows: $decode_rows:expr,
        prefill_tiles: [$($prefill_tokens:literal => $prefill_rows:literal),+],
        $(gfni_codes: $gfni_codes:ident,)?
        $(head: {
            tiles: [$($head_tokens:literal => $head_rows:literal),+],
            load_partial: $load_partial:ident,
            xor: $xor:ident $(,)?
        },)?
        zero: $zero:ident,
        splat: $splat:ident,
        load: $load:ident,
        and: $and:ident,
        srli16: $srli:ident,
        srai32: $srai:ident,
        add32: $add:ident,
        dpbusd: $dpbusd:ident,
        act: $act:ident,
        dpbusd_act: $dpbusd_act:ident,
        hsum: $hsum:ident,
        hsum4: $hsum4:ident $(,)?
    ) => {
        /// The sums of each vector's i32 lanes, four vectors at a time where they come in fours.
        ///
        /// # Safety
        /// The CPU has the module's features.
        #[target_feature(enable = $features)]
        #[inline]
        unsafe fn hsums<const T: usize>(acc: &[$V; T]) -> [i32; T] {
            let mut sums = [0; T];
            let whole = T - T % 4;
            for t0 in (0..whole).step_by(4) {
                sums[t0..t0 + 4].copy_from_slice(&$hsum4([acc[t0], acc[t0 + 1], acc[t0 + 2], acc[t0 + 3]]));
            }
            for t in whole..T {
                sums[t] = $hsum(acc[t]);
            }
            sums
        }

        /// Bytes of one vector.
        const BYTES: usize = $bytes;
        /// Columns per vector load of packed words (see [`crate::cpu::Isa::chunk`]).
        const CHUNK: usize = 4 * BYTES;

        /// See [`crate::cpu::ternary::ternary_tile_dots`]: `rows` packed rows (`row_bytes` apart) × `tokens`
        /// activations permuted in [`CHUNK`]-column chunks, cut into tiles of rows × all the tokens.
        ///
        /// # Safety
        /// The CPU has the module's features; `tokens` is 1 or one of the module's prefill tiles; blocks are
        /// one per row or a multiple of [`CHUNK`] columns; `q` holds `tokens` rows of `stride` bytes permuted
        /// in [`CHUNK`]-column chunks, spanning every chunk of a row; `out` holds every row's dots.
        #[target_feature(enable = $features)]
        pub(crate) unsafe fn ternary_tile_dots(
            rows: &[u8],
            row_bytes: usize,
            q: &[i8],
            stride: usize,
            tokens: usize,
            shape: $crate::reference::TernaryShape,
            out: &mut [i32],
        ) {
            let tiles = Tiles {
                rows,
                row_bytes,
                q,
                stride,
                shape,
            };
            match tokens {
                1 => tiles.all::<{ $decode_rows }, 1>(out),
                $($prefill_tokens => tiles.all::<$prefill_rows, $prefill_tokens>(out),)+
                other => unreachable!("{other} tokens"),
            }
        }

        /// The operands of a block of rows.
        struct Tiles<'a> {
            rows: &'a [u8],
            row_bytes: usize,
            q: &'a [i8],
            stride: usize,
            shape: $crate::reference::TernaryShape,
        }

        impl Tiles<'_> {
            /// Every row, `T` tokens: whole tiles of `R` rows, then the ragged rest a row at a time (bands
            /// and blocks start on multiples of 4 rows, so with 2 or 4 rows only a matrix's last rows are
            /// ragged; 3-row tiles leave one row of each 64-row block).
            #[target_feature(enable = $features)]
            #[inline]
            unsafe fn all<const R: usize, const T: usize>(&self, out: &mut [i32]) {
                let n_rows = self.rows.len() / self.row_bytes;
                let whole = n_rows - n_rows % R;
                for r0 in (0..whole).step_by(R) {
                    self.tile::<R, T>(r0, out);
                }
                for r in whole..n_rows {
                    self.tile::<1, T>(r, out);
                }
            }

            /// Rows `r0..r0 + R` × `T` tokens: the shift-free decode tile for one token, the
            /// shared-unpacking tile for more.
            #[target_feature(enable = $features)]
            #[inline]
            unsafe fn tile<const R: usize, const T: usize>(&self, r0: usize, out: &mut [i32]) {
                if T == 1 {
                    self.gemv_dots::<R>(r0, out)
                } else {
                    self.dots::<R, T>(r0, out)
                }
            }

            /// Rows `r0..r0 + R` × one token. Decode is bound by `vpdpbusd` once the weights are in cache,
            /// so the unpacking here is one AND per slice instead of a shift and an AND: slice `s` is masked
            /// in place (`w & 3 << 2s`, the codes times `4^s`) into its own accumulator, which is a multiple
            /// of `4^s` and is shifted back exactly at the end. Codes are at most 2, so `2 · 64` still fits
            /// the unsigned byte.
            #[target_feature(enable = $features)]
            #[inline]
            unsafe fn gemv_dots<const R: usize>(&self, r0: usize, out: &mut [i32]) {
                let Self {
                    rows,
                    row_bytes,
                    q,
                    shape,
                    ..
                } = *self;
                let nb = shape.blocks();
                let chunks = row_bytes / BYTES;
                let block_chunks = if nb == 1 { chunks } else { shape.block / CHUNK };
                let masks = [3u8, 3 << 2, 3 << 4, 3 << 6].map(|m| $splat(m as i8));
                let (wp, qp) = (rows.as_ptr().add(r0 * row_bytes), q.as_ptr());
                let ahead = $crate::cpu::ternary::prefetch_distance(R, row_bytes);
                let mut c = 0;
                for b in 0..nb {
                    let block_end = (c + block_chunks).min(chunks);
                    let mut acc = [[$zero(); 4]; R];
                    for c in c..block_end {
                        let w = self.load_prefetching::<R>(wp, c, ahead);
                        for (s, &mask) in masks.iter().enumerate() {
                            let a = $load(qp.add(c * CHUNK + s * BYTES).cast());
                            for (acc, &w) in acc.iter_mut().zip(&w) {
                                acc[s] = $dpbusd(acc[s], $and(w, mask), a);
                            }
                        }
                    }
                    for (r, [a0, a1, a2, a3]) in acc.into_iter().enumerate() {
                        let sum = $add(
                            $add(a0, $srai::<2>(a1)),
                            $add($srai::<4>(a2), $srai::<6>(a3)),
                        );
                        out[(r0 + r) * nb + b] += $hsum(sum);
                    }
                    c = block_end;
                }
                self.tail::<R, 1>(r0, out);
            }

            /// Chunk `c` of each of the `R` rows from `wp`, prefetching the bytes `ahead` past each in
            /// address order ([`crate::cpu::ternary::prefetch_distance`]; a hint, so running past the matrix is
            /// harmless). Into L2 (`T1`), not L1: on a Zen 4 guest `T0` held decode at 29.5 tok/s and `T1` took
            /// it to 32.4 (four alternating pairs, `bitnet bench -p 1 -n 64`, 2 threads), 8 streams 80 -> 95;
            /// likely because L1 prefetches hold the miss buffers the demand loads need.
            #[target_feature(enable = $features)]
            #[inline]
            unsafe fn load_prefetching<const R: usize>(
                &self,
                wp: *const u8,
                c: usize,
                ahead: usize,
            ) -> [$V; R] {
                let mut w = [$zero(); R];
                for (r, w) in w.iter_mut().enumerate() {
                    let next = wp.wrapping_add(ahead + (c * R + r) * BYTES);
                    _mm_prefetch::<_MM_HINT_T1>(next.cast());
                    *w = $load(wp.add(r * self.row_bytes + c * BYTES).cast());
                }
                w
            }

            /// The ragged tail of rows `r0..r0 + R` (past their whole chunks) × `T` tokens, on the
            /// portable path.
            fn tail<const R: usize, const T: usize>(&self, r0: usize, out: &mut [i32]) {
                let (rows, row_bytes, shape) = (self.rows, self.row_bytes, self.shape);
                let nb = shape.blocks();
                let acts = $crate::cpu::ternary::ActTile {
                    q: self.q,
                    stride: self.stride,
                    tokens: T,
                    chunk: CHUNK,
                    tiles: &[],
                };
                $crate::cpu::scalar::ternary_rows_dots(
                    &rows[r0 * row_bytes..(r0 + R) * row_bytes],
                    row_bytes,
                    row_bytes / BYTES * BYTES,
                    acts,
                    shape,
                    &mut out[r0 * nb..],
                    rows.len() / row_bytes * nb,
                );
            }

            /// Rows `r0..r0 + R` × `T` tokens into `out[t · rows · blocks + r · blocks + b]`, the whole
            /// chunks here and the ragged tail of each row on the portable path.
            #[target_feature(enable = $features)]
            #[inline]
            unsafe fn dots<const R: usize, const T: usize>(&self, r0: usize, out: &mut [i32]) {
                let Self {
                    rows,
                    row_bytes,
                    q,
                    stride,
                    shape,
                } = *self;
                let (nb, n_rows) = (shape.blocks(), rows.len() / row_bytes);
                let out_stride = n_rows * nb;
                let chunks = row_bytes / BYTES;
                let block_chunks = if nb == 1 { chunks } else { shape.block / CHUNK };
                let mask = $splat(3);
                let (wp, qp) = (rows.as_ptr().add(r0 * row_bytes), q.as_ptr());
                let ahead = $crate::cpu::ternary::prefetch_distance(R, row_bytes);
                let mut c = 0;
                for b in 0..nb {
                    let block_end = (c + block_chunks).min(chunks);
                    let mut acc = [[$zero(); T]; R];
                    for c in c..block_end {
                        let w = self.load_prefetching::<R>(wp, c, ahead);
                        for s in 0..4 {
                            let a: [_; T] = std::array::from_fn(|t| {
                                $act(qp.add(t * stride + c * CHUNK + s * BYTES))
                            });
                            for (r, acc) in acc.iter_mut().enumerate() {
                                let shifted = match s {
                                    0 => w[r],
                                    1 => $srli::<2>(w[r]),
                                    2 => $srli::<4>(w[r]),
                                    _ => $srli::<6>(w[r]),
                                };
                                let codes = $and(shifted, mask);
                                // (the shift and mask left unused are dropped by the compiler)
                                $(let codes = if s > 0 { $gfni_codes(w[r], s) } else { codes };)?
                                for (acc, &a) in acc.iter_mut().zip(&a) {
                                    *acc = $dpbusd_act(*acc, codes, a);
                                }
                            }
                        }
                    }
                    for (r, acc) in acc.iter().enumerate() {
                        for (t, sum) in hsums(acc).into_iter().enumerate() {
                            out[t * out_stride + (r0 + r) * nb + b] += sum;
                        }
                    }
                    c = block_end;
                }
                self.tail::<R, T>(r0, out);
            }
        }

        $(
        /// Rows of the int8 head's tile for `tokens` tokens (the rows' dot products share each activation load,
        /// and their weight streams run side by side).
        pub(crate) fn head_rows(tokens: usize) -> usize {
            match tokens {
                $($head_tokens => $head_rows,)+
                _ => 1,
            }
        }

        /// See [`crate::cpu::scalar::int8_row_dots`]; `rows` (1 or [`head_rows`]) whole rows `row_bytes` apart from
        /// `w` on, `tokens` one of the module's head tiles, with `sums[t]` = Σ of token `t`'s values; row `r`'s
        /// dots go to `out[r · tokens..]`. `vpdpbusd` multiplies unsigned by signed bytes, so each weight
        /// vector is offset once to `w + 128` (a flip of its sign bit, exact for every int8) and shared by the
        /// tokens, whose dot products are then one instruction per vector (the sign-moving form took five);
        /// `128 · Σ q` comes off at the end. The ragged end of a row is a partial load of both operands (zeros
        /// contribute nothing). The rows' lines are prefetched [`crate::cpu::ternary::prefetch_distance`] ahead, as
        /// in the ternary kernels: 1.8× on 8 tokens with it.
        ///
        /// # Safety
        /// The CPU has the module's features; `w` holds `rows` rows of `k` bytes `row_bytes` apart; `q` holds
        /// `tokens` rows of `stride ≥ k` bytes; `sums` holds `tokens` values and `out` `rows · tokens`.
        #[target_feature(enable = $features)]
        pub(crate) unsafe fn int8_row_dots(
            (w, row_bytes, rows, k): (&[i8], usize, usize, usize),
            q: &[i8],
            stride: usize,
            sums: &[i32],
            tokens: usize,
            out: &mut [i32],
        ) {
            let at = (w, row_bytes, k, q, stride, sums, out);
            match tokens {
                $($head_tokens if rows == $head_rows => int8_dots::<$head_rows, $head_tokens>(at),
                $head_tokens => int8_dots::<1, $head_tokens>(at),)+
                other => unreachable!("{other} tokens: the head's passes take {:?}", [$($head_tokens),+]),
            }
        }

        #[target_feature(enable = $features)]
        #[inline]
        unsafe fn int8_dots<const R: usize, const T: usize>(
            (w, row_bytes, k, q, stride, sums, out): (&[i8], usize, usize, &[i8], usize, &[i32], &mut [i32]),
        ) {
            let offset = $splat(i8::MIN);
            let mut acc = [[$zero(); T]; R];
            let (whole, rest) = (k / BYTES, k % BYTES);
            let (wp, qp) = (w.as_ptr(), q.as_ptr());
            let ahead = $crate::cpu::ternary::prefetch_distance(R, row_bytes);
            for v in 0..whole {
                let mut wu = [$zero(); R];
                for (r, wu) in wu.iter_mut().enumerate() {
                    let at = r * row_bytes + v * BYTES;
                    _mm_prefetch::<_MM_HINT_T0>(wp.wrapping_add(ahead + at).cast());
                    *wu = $xor($load(wp.add(at).cast()), offset);
                }
                for t in 0..T {
                    let a = $load(qp.add(t * stride + v * BYTES).cast());
                    for r in 0..R {
                        acc[r][t] = $dpbusd(acc[r][t], wu[r], a);
                    }
                }
            }
            if rest > 0 {
                let at = whole * BYTES;
                for (r, acc) in acc.iter_mut().enumerate() {
                    let wu = $xor($load_partial(wp.add(r * row_bytes + at), rest), offset);
                    for (t, acc) in acc.iter_mut().enumerate() {
                        let a = $load_partial(qp.add(t * stride + at), rest);
                        *acc = $dpbusd(*acc, wu, a);
                    }
                }
            }
            for (r, acc) in acc.iter().enumerate() {
                for (t, dot) in hsums(acc).into_iter().enumerate() {
                    out[r * T + t] = dot - 128 * sums[t];
                }
            }
        }
        )?
    };
}
