//! Hand-written CPU kernels (the burn-ndarray side of the ops): activations quantized to int8 per token,
//! integer dot products against the packed weights, one SIMD path per instruction set chosen once at run
//! time ([`Isa`]), rows split into one band per thread of the rayon pool the caller installs (`-t N`), run on
//! a pool of spinning workers ([`pool`]).
//!
//! Weights are read in the crate's one packed layout ([`crate::packing`]), copied once at load into the
//! backend's tensor and never repacked: instead the activations are permuted while they are quantized
//! ([`acts`]) so that one 32-byte load of packed words, shifted by `2s` and masked, lines up with 32
//! contiguous activation bytes.

/// `$kernel::<T>(args)` for the token tile `T = $tokens` (1..=4): the int8 head kernels unroll over a constant
/// number of tokens.
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

pub mod acts;
mod attention;
mod f32;
mod gated;
mod int8;
mod isa;
mod par;
mod pool;
mod rope;
mod scalar;
mod ternary;

#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(target_arch = "x86_64")]
mod avx512;
#[cfg(target_arch = "aarch64")]
mod neon;

pub use attention::{
    attend_sequences, attention_step, cached_attention, AttentionShape, SeqAttention,
};
pub use f32::{f32_matmul_nt, ternary_matmul_f32};
pub use gated::gated;
pub use int8::{int8_matmul, quantize_rows_i8, quantize_rows_i8_into};
pub use isa::Isa;
pub use rope::rope_row;
pub use ternary::{
    ternary_matmul_i8, ternary_matmuls_i8, ternary_tile_dots, ActTile, TernaryMatrix,
};
