//! Run-time choice of the SIMD path.

use std::sync::OnceLock;

/// The instruction sets the CPU kernels have a path for; every path computes the same integers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Isa {
    /// Portable Rust, any CPU.
    Scalar,
    /// x86-64 AVX2: `vpmaddubsw` (codes × int8) then `vpmaddwd` into i32.
    Avx2,
    /// AArch64 NEON: widening `smull`/`sadalp` multiply-accumulate.
    Neon,
}

impl Isa {
    /// The best path this CPU runs, detected once; `BITNET_ISA=scalar|avx2|neon` forces one it supports.
    pub fn detect() -> Isa {
        static CHOSEN: OnceLock<Isa> = OnceLock::new();
        *CHOSEN.get_or_init(|| {
            let available = Isa::available();
            std::env::var("BITNET_ISA")
                .ok()
                .and_then(|want| available.iter().copied().find(|i| i.name() == want))
                .unwrap_or(available[0])
        })
    }

    /// Every path this CPU can run, best first (the tests compare them all with [`Isa::Scalar`]).
    pub fn available() -> Vec<Isa> {
        let mut isas = Vec::new();
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") {
            isas.push(Isa::Avx2);
        }
        #[cfg(target_arch = "aarch64")]
        if std::arch::is_aarch64_feature_detected!("neon") {
            isas.push(Isa::Neon);
        }
        isas.push(Isa::Scalar);
        isas
    }

    /// Lower-case name, as `BITNET_ISA` takes it.
    pub fn name(self) -> &'static str {
        match self {
            Isa::Scalar => "scalar",
            Isa::Avx2 => "avx2",
            Isa::Neon => "neon",
        }
    }
}
