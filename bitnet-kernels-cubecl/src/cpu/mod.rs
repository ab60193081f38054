//! Hand-written CPU kernels (the burn-ndarray side of the ops): activations quantized to int8 per token,
//! integer dot products against the packed weights, one SIMD path per instruction set chosen once at run
//! time ([`Isa`]), rows split into one band per thread of the rayon pool the caller installs (`-t N`), run on
//! a pool of spinning workers ([`pool`]).
//!
//! Weights are read in the crate's one packed layout ([`crate::packing`]), copied once at load into the
//! backend's tensor and never repacked: instead the activations are permuted while they are quantized
//! ([`acts`]) so that one 32-byte load of packed words, shifted by `2s` and masked, lines up with 32
//! contiguous activation bytes.

/// `$kernel::<T>(args)` for the token tile `T = $tokens` (1..=4): the 128-bit int8 head kernels unroll over a
/// constant number of tokens.
#[cfg(any(target_arch = "aarch64", target_arch = "wasm32"))]
macro_rules! token_tile {
    ($kernel:ident($tokens:expr; $($arg:expr),*)) => {
        match $tokens {
            1 => $kernel::<1>($($arg),*),
            2 => $kernel::<2>($($arg),*),
            3 => $kernel::<3>($($arg),*),
            4 => $kernel::<4>($($arg),*),
            _ => unreachable!("token tiles are 1..=4"),
        }
    };
}

/// Cuts the rows of `$all` (a [`ternary::RowTile`]) × `$tokens` tokens into the tiles of the 128-bit paths and
/// runs `.$dots::<R, T>(out)` on each: 4 rows × 1 token when decoding (a ragged last tile of 1..=3 rows), 1 row ×
/// 2..=4 tokens in prefill; `out` holds each row's dots from the first row on.
#[cfg(any(target_arch = "aarch64", target_arch = "wasm32"))]
macro_rules! row_tiles {
    ($all:expr, $tokens:expr, $out:expr, $dots:ident) => {{
        let (all, out) = ($all, $out);
        let (n_rows, nb) = (all.rows.len() / all.row_bytes, all.shape.blocks());
        if $tokens == 1 {
            let whole = n_rows - n_rows % 4;
            for r0 in (0..whole).step_by(4) {
                all.rows(r0, r0 + 4).$dots::<4, 1>(&mut out[r0 * nb..]);
            }
            let rest = &mut out[whole * nb..];
            match n_rows - whole {
                0 => {}
                1 => all.rows(whole, n_rows).$dots::<1, 1>(rest),
                2 => all.rows(whole, n_rows).$dots::<2, 1>(rest),
                _ => all.rows(whole, n_rows).$dots::<3, 1>(rest),
            }
        } else {
            for r in 0..n_rows {
                let out = &mut out[r * nb..];
                match $tokens {
                    2 => all.rows(r, r + 1).$dots::<1, 2>(out),
                    3 => all.rows(r, r + 1).$dots::<1, 3>(out),
                    4 => all.rows(r, r + 1).$dots::<1, 4>(out),
                    other => unreachable!("{other} tokens"),
                }
            }
        }
    }};
}

pub mod acts;
#[cfg(target_arch = "x86_64")]
mod acts_x86;
#[cfg(target_arch = "x86_64")]
mod amx;
mod attention;
mod crossover;
mod f32;
mod flash;
mod gated;
pub mod hadamard;
mod int8;
mod isa;
mod kv;
#[cfg(any(
    target_arch = "x86_64",
    target_arch = "aarch64",
    all(target_arch = "wasm32", target_feature = "simd128")
))]
mod lut;
mod norm;
mod par;
#[cfg(not(target_arch = "wasm32"))]
mod pool;
/// WebAssembly's threads are Web Workers that only rayon's pool can start (wasm-bindgen-rayon, in the browser
/// build with threads): bands run there. Without threads rayon has one thread, and callers never split.
#[cfg(target_arch = "wasm32")]
mod pool {
    use rayon::prelude::*;

    /// Runs `task(0..bands)` on the current rayon pool, returning when all are done.
    pub(crate) fn run(bands: usize, task: &(dyn Fn(usize) + Sync)) {
        (0..bands).into_par_iter().for_each(task);
    }
}
mod rescale;
mod rope;
mod scalar;
mod ternary;

#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(target_arch = "x86_64")]
#[macro_use]
mod vnni;
#[cfg(target_arch = "x86_64")]
mod avx512;
#[cfg(target_arch = "x86_64")]
mod avxvnni;
#[cfg(target_arch = "x86_64")]
mod decode_x86;
#[cfg(target_arch = "aarch64")]
mod neon;
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
mod simd128;

pub use attention::{
    attend_sequences, attention_step, cached_attention, AttentionShape, SeqAttention,
};
pub use crossover::LookupFrom;
pub use f32::{f32_matmul_nt, ternary_matmul_f32};
pub use gated::gated;
pub use int8::{int8_matmul, quantize_rows_i8, quantize_rows_i8_into};
pub use isa::{Isa, LOOKUP_TOKENS};
pub use kv::{KvElem, KvKind, Q8Block};
pub use norm::rms_norm;
pub use rope::rope_row;
pub use ternary::{
    ternary_lut_dots, ternary_matmul_i8, ternary_matmuls_i8, ternary_tile_dots, ActTile,
    TernaryMatrix,
};
