//! Run-time choice of the SIMD path.

use std::sync::OnceLock;

use super::acts::LANES;
use super::crossover::LookupFrom;

/// Bytes of int8 activations a pass over rows may read and keep in L1 (48 KiB per core on Intel since Sunny Cove,
/// 32 KiB on Zen 4): 8 tokens × 3072 columns.
const L1_ACTS: usize = 24 << 10;

/// Most tokens of one table-lookup call ([`Isa::lookup_tokens`]): 4 groups of [`LANES`], whose i32 sums for a
/// block of 1024 rows (512 KiB) stay in L2.
pub const LOOKUP_TOKENS: usize = 4 * LANES;

/// The instruction sets the CPU kernels have a path for; every path computes the same integers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Isa {
    /// Portable Rust, any CPU.
    Scalar,
    /// x86-64 AVX2: `vpmaddubsw` (codes × int8) then `vpmaddwd` into i32.
    Avx2,
    /// x86-64 AVX-512 with VNNI: `vpdpbusd` (codes × int8, summed into i32 in one instruction) on 512-bit
    /// vectors, for the ternary matmul and the int8 head; attention takes the AVX2 path on such CPUs.
    Avx512Vnni,
    /// x86-64 AVX-512 VNNI with GFNI (Intel Ice Lake and later, AMD Zen 4 on): the AVX-512 VNNI kernels, but
    /// the multi-token tiles cut each slice of codes out of the packed words with one `vgf2p8affineqb` where
    /// the others shift and mask, two instructions on the ports `vpdpbusd` needs.
    Avx512Gfni,
    /// x86-64 AMX-INT8 (Intel Xeon since Sapphire Rapids): the multi-token ternary tiles (prefill, batched
    /// decode) as tile multiplies, 16 weight rows × up to 16 tokens × 64 columns per `tdpbusd`; one token and
    /// the rest as on [`Isa::Avx512Gfni`].
    Amx,
    /// x86-64 AVX-VNNI: the VEX-encoded 256-bit `vpdpbusd` (Intel Alder Lake and later, AMD Zen 5) on the
    /// AVX2 path's 32-byte chunks, for the ternary matmul and the int8 head; attention takes the AVX2 path.
    AvxVnni,
    /// AArch64 NEON: widening `smlal`/`sadalp` multiply-accumulate.
    Neon,
    /// AArch64 NEON with the dot-product extension (Armv8.2+: Apple M1 on, Graviton 2 on): `sdot` multiplies
    /// 16 int8 pairs and adds each group of four into an i32 lane in one instruction.
    NeonDot,
    /// WebAssembly SIMD128 (the browser build): widening `i16x8.extmul` multiplies, pairwise-added into i32.
    Simd128,
    /// WebAssembly relaxed SIMD (Chromium 114+): `i32x4.relaxed_dot_i8x16_i7x16_add` for the ternary tiles, the
    /// SIMD128 int8 head. Compiled into the browser build's second module, which the page loads where the
    /// browser validates relaxed SIMD.
    RelaxedSimd,
}

impl Isa {
    /// The best path this CPU runs, detected once;
    /// `BITNET_ISA=scalar|avx2|avxvnni|avx512vnni|avx512gfni|amx|neon|neondot|simd128|relaxedsimd`
    /// forces one it supports.
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
        [
            Isa::Amx,
            Isa::Avx512Gfni,
            Isa::Avx512Vnni,
            Isa::AvxVnni,
            Isa::Avx2,
            Isa::NeonDot,
            Isa::Neon,
            Isa::RelaxedSimd,
            Isa::Simd128,
            Isa::Scalar,
        ]
        .into_iter()
        .filter(|isa| isa.supported())
        .collect()
    }

    /// Lower-case name, as `BITNET_ISA` takes it.
    pub fn name(self) -> &'static str {
        match self {
            Isa::Scalar => "scalar",
            Isa::Avx2 => "avx2",
            Isa::Avx512Vnni => "avx512vnni",
            Isa::Avx512Gfni => "avx512gfni",
            Isa::Amx => "amx",
            Isa::AvxVnni => "avxvnni",
            Isa::Neon => "neon",
            Isa::NeonDot => "neondot",
            Isa::Simd128 => "simd128",
            Isa::RelaxedSimd => "relaxedsimd",
        }
    }

    /// Whether this CPU runs the path.
    pub fn supported(self) -> bool {
        match self {
            Isa::Scalar => true,
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => std::arch::is_x86_feature_detected!("avx2"),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512Vnni => {
                std::arch::is_x86_feature_detected!("avx512f")
                    && std::arch::is_x86_feature_detected!("avx512bw")
                    && std::arch::is_x86_feature_detected!("avx512vnni")
            }
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512Gfni => {
                Isa::Avx512Vnni.supported() && std::arch::is_x86_feature_detected!("gfni")
            }
            #[cfg(target_arch = "x86_64")]
            Isa::Amx => Isa::Avx512Gfni.supported() && super::amx::usable(),
            #[cfg(target_arch = "x86_64")]
            Isa::AvxVnni => {
                std::arch::is_x86_feature_detected!("avx2")
                    && std::arch::is_x86_feature_detected!("avxvnni")
            }
            #[cfg(target_arch = "aarch64")]
            Isa::Neon => std::arch::is_aarch64_feature_detected!("neon"),
            #[cfg(target_arch = "aarch64")]
            Isa::NeonDot => std::arch::is_aarch64_feature_detected!("dotprod"),
            // compiled in or not: WebAssembly has no run-time detection
            Isa::Simd128 => cfg!(all(target_arch = "wasm32", target_feature = "simd128")),
            Isa::RelaxedSimd => cfg!(all(
                target_arch = "wasm32",
                target_feature = "simd128",
                target_feature = "relaxed-simd"
            )),
            _ => false,
        }
    }

    /// Whether the AVX2 kernels run (AVX2 itself, and attention on the VNNI paths).
    pub fn has_avx2(self) -> bool {
        (self == Isa::Avx2 || self == Isa::AvxVnni || self.avx512()) && Isa::Avx2.supported()
    }

    /// Whether this is one of the AVX-512 VNNI paths (their kernels, tiles and chunks are the same; AMX's
    /// beside its tile multiplies).
    pub fn avx512(self) -> bool {
        matches!(self, Isa::Avx512Vnni | Isa::Avx512Gfni | Isa::Amx)
    }

    /// Whether a ternary matmul of `m` tokens runs on tile multiplies, which read the activations' copy
    /// [`super::acts::QuantizedActs::fill_tiles`] makes: on the AMX path from 6 tokens on. A tile multiply
    /// costs the same for 1 to 8 tokens (the codes' stores to L1 and the 16-row `tdpbusd` bound it), the
    /// AVX-512 tiles' time grows with the tokens: streamed from memory on 2 threads (`cargo bench --bench
    /// kernels -- ternary_matmul_tokens4`, 16 matrices of 6912 × 2560), 4 tokens ran 380-400 G multiply-adds/s
    /// on tiles against 540, 5 tokens 505 against 519, 6 tokens 454 against 464 (and +14% on 1 thread), 8
    /// tokens 632-757 against 505-519.
    pub fn tile_multiplies(self, m: usize) -> bool {
        self == Isa::Amx && m >= 6
    }

    /// Most tokens sharing one pass over a weight row (prefill, batched decode): on the VNNI paths as many as
    /// keep their `vpdpbusd` chains in flight without spilling (2 rows × 6 on AVX-VNNI, 3 rows × 8 on AVX-512;
    /// with 4 tokens the 256-bit tile waited on the instruction's latency), 4 elsewhere.
    pub fn token_tile(self) -> usize {
        match self {
            Isa::Amx => 2 * super::acts::TILE_TOKENS,
            Isa::AvxVnni => 6,
            isa if isa.avx512() => 8,
            _ => 4,
        }
    }

    /// Tokens of the next pass over rows of `k` columns with `left` tokens to go. AVX-512 takes 6 at a time
    /// (4 rows × 6: per token faster than 3 × 8 when passes repeat) and the last 7 or 8 in one pass of 3 rows × 8
    /// where their activations stay in L1 while the rows stream past: a batched decode step's 8 tokens of 2560
    /// columns ran 16% faster than as 6 + 2, of 6912 columns (55 KiB) 25% slower. Elsewhere up to
    /// [`Isa::token_tile`], except that AVX-VNNI cuts 7 or 8 tokens as 4 + 3 or 5 + 3: a last pass of 1 or 2
    /// tokens (4 chains of `vpdpbusd` at 2) left a batched decode step of 8 streams 10% slower than 5 + 3.
    pub fn pass_tokens(self, left: usize, k: usize) -> usize {
        match self {
            Isa::Amx => left.min(self.token_tile()),
            Isa::AvxVnni if (7..=8).contains(&left) => left - 3,
            isa if isa.avx512() && (left > 8 || k * left > L1_ACTS) => left.min(6),
            isa => left.min(isa.token_tile()),
        }
    }

    /// Whether the path has a table-lookup prefill kernel ([`super::ternary::ternary_lut_dots`]): the paths
    /// without an 8-bit dot product into i32, where a multiply-add takes 3 vector lanes (`vpmaddubsw`, `smlal`)
    /// and a lookup adds 3 columns: AVX2, plain NEON (Cortex-A72 and older; with `sdot` the tiles are kept), and
    /// both WebAssembly paths.
    pub fn has_lookup(self) -> bool {
        matches!(
            self,
            Isa::Avx2 | Isa::Neon | Isa::Simd128 | Isa::RelaxedSimd
        )
    }

    /// Where this path's lookups pay over its tiles ([`LookupFrom::NATIVE`], [`LookupFrom::WASM`]); `None` for a
    /// path without lookups.
    pub fn lookup_from(self) -> Option<LookupFrom> {
        let from = if cfg!(target_family = "wasm") {
            LookupFrom::WASM
        } else {
            LookupFrom::NATIVE
        };
        self.has_lookup().then_some(from)
    }

    /// How many of `left` prompt tokens the next prefill call takes by table lookup
    /// ([`super::ternary::ternary_lut_dots`]) rather than by this path's multiply-add tiles, where
    /// [`Isa::lookup_from`] says it pays ([`LookupFrom::tokens`]): 0 for none.
    pub fn lookup_tokens(self, left: usize) -> usize {
        self.lookup_from().map_or(0, |from| from.tokens(left))
    }

    /// The prefill kernel of this path, as `bitnet bench` and `bitnet info` report it.
    pub fn prefill_kernel(self) -> &'static str {
        match self {
            Isa::Amx => "AMX tile multiplies",
            isa if isa.lookup_tokens(usize::MAX) > 0 => "table lookup",
            _ => "multiply-add tiles",
        }
    }

    /// Columns per chunk of the activations' permutation that the ternary kernel of this path reads: the trits
    /// of one vector load of packed words (64 bytes on AVX-512, 32 elsewhere).
    pub fn chunk(self) -> usize {
        match self {
            isa if isa.avx512() => 2 * super::acts::CHUNK,
            _ => super::acts::CHUNK,
        }
    }
}
