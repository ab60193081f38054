//! The ggml tensor types: ids, block sizes, byte sizes, and the ids that mean different things in forks.

use std::fmt;

/// A ggml tensor element type that this crate can lay out (and, for most, decode).
#[allow(missing_docs)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum GgmlType {
    F32,
    F16,
    Q4_0,
    Q4_1,
    Q5_0,
    Q5_1,
    Q8_0,
    Q8_1,
    Q2K,
    Q3K,
    Q4K,
    Q5K,
    Q6K,
    Q8K,
    I8,
    I16,
    I32,
    I64,
    F64,
    BF16,
    TQ1_0,
    TQ2_0,
    /// bitnet.cpp's 2-bit ternary type (id 36 in its ggml fork): n/4 bytes of codes, then a 32-byte trailer
    /// whose first f32 is the per-tensor scale.
    I2S,
}

/// Bytes after an I2_S tensor's codes: one f32 scale, then padding.
pub const I2S_TRAILER: u64 = 32;
/// Elements per I2_S block (the x86 `ACT_PARALLEL` layout of the official files).
pub const I2S_BLOCK: u64 = 128;

impl GgmlType {
    /// Every type, for iteration in tests and tools.
    pub const ALL: [GgmlType; 23] = [
        Self::F32,
        Self::F16,
        Self::Q4_0,
        Self::Q4_1,
        Self::Q5_0,
        Self::Q5_1,
        Self::Q8_0,
        Self::Q8_1,
        Self::Q2K,
        Self::Q3K,
        Self::Q4K,
        Self::Q5K,
        Self::Q6K,
        Self::Q8K,
        Self::I8,
        Self::I16,
        Self::I32,
        Self::I64,
        Self::F64,
        Self::BF16,
        Self::TQ1_0,
        Self::TQ2_0,
        Self::I2S,
    ];

    /// The numeric id stored in GGUF files.
    pub fn id(self) -> u32 {
        match self {
            Self::F32 => 0,
            Self::F16 => 1,
            Self::Q4_0 => 2,
            Self::Q4_1 => 3,
            Self::Q5_0 => 6,
            Self::Q5_1 => 7,
            Self::Q8_0 => 8,
            Self::Q8_1 => 9,
            Self::Q2K => 10,
            Self::Q3K => 11,
            Self::Q4K => 12,
            Self::Q5K => 13,
            Self::Q6K => 14,
            Self::Q8K => 15,
            Self::I8 => 24,
            Self::I16 => 25,
            Self::I32 => 26,
            Self::I64 => 27,
            Self::F64 => 28,
            Self::BF16 => 30,
            Self::TQ1_0 => 34,
            Self::TQ2_0 => 35,
            Self::I2S => 36,
        }
    }

    /// The type for a file id, or a hint saying what the id means in upstream ggml or bitnet.cpp's fork.
    ///
    /// Id 36 is I2_S in bitnet.cpp's fork and a removed type (IQ4_NL_4_4) upstream, so it is read as I2_S; the
    /// reader then checks the size arithmetic (n/4 + 32 bytes) and says so when it fails.
    pub fn from_id(id: u32) -> Result<Self, String> {
        Self::ALL.iter().copied().find(|t| t.id() == id).ok_or_else(|| {
            match id {
                16..=23 | 29 => " (an IQ* type of upstream ggml, not supported)",
                31..=33 => " (a removed upstream Q4_0_N_M repacked type)",
                37 => " (I8_S in bitnet.cpp's fork, IQ4_NL_4_8 (removed) upstream; neither is a storage type)",
                38 => " (TL1 in bitnet.cpp's fork, IQ4_NL_8_8 (removed) upstream; TL1 is not supported, use I2_S)",
                39 => " (TL2 in bitnet.cpp's fork, MXFP4 upstream; neither is supported)",
                40..=42 => " (NVFP4/Q1_0/Q2_0 in upstream ggml, not supported)",
                _ => "",
            }
            .to_string()
        })
    }

    /// Elements per block.
    pub fn block_size(self) -> u64 {
        match self {
            Self::F32
            | Self::F16
            | Self::BF16
            | Self::I8
            | Self::I16
            | Self::I32
            | Self::I64
            | Self::F64 => 1,
            Self::Q4_0 | Self::Q4_1 | Self::Q5_0 | Self::Q5_1 | Self::Q8_0 | Self::Q8_1 => 32,
            Self::Q2K | Self::Q3K | Self::Q4K | Self::Q5K | Self::Q6K | Self::Q8K => 256,
            Self::TQ1_0 | Self::TQ2_0 => 256,
            Self::I2S => I2S_BLOCK,
        }
    }

    /// Bytes per block (for I2_S: the 32 bytes of one 128-element block, the trailer excluded).
    pub fn type_size(self) -> u64 {
        match self {
            Self::F32 | Self::I32 => 4,
            Self::F16 | Self::BF16 | Self::I16 => 2,
            Self::I8 => 1,
            Self::I64 | Self::F64 => 8,
            Self::Q4_0 => 18,
            Self::Q4_1 => 20,
            Self::Q5_0 => 22,
            Self::Q5_1 => 24,
            Self::Q8_0 => 34,
            Self::Q8_1 => 36,
            Self::Q2K => 84,
            Self::Q3K => 110,
            Self::Q4K => 144,
            Self::Q5K => 176,
            Self::Q6K => 210,
            Self::Q8K => 292,
            Self::TQ1_0 => 54,
            Self::TQ2_0 => 66,
            Self::I2S => 32,
        }
    }

    /// Bytes a tensor of `n_elements` occupies (`None` on overflow). I2_S adds its 32-byte trailer.
    pub fn data_size(self, n_elements: u64) -> Option<u64> {
        let blocks = n_elements / self.block_size();
        let body = blocks.checked_mul(self.type_size())?;
        match self {
            Self::I2S => body.checked_add(I2S_TRAILER),
            _ => Some(body),
        }
    }

    /// Whether this type stores ternary weights.
    pub fn is_ternary(self) -> bool {
        matches!(self, Self::TQ1_0 | Self::TQ2_0 | Self::I2S)
    }

    /// The name llama.cpp prints for this type.
    pub fn name(self) -> &'static str {
        match self {
            Self::F32 => "F32",
            Self::F16 => "F16",
            Self::Q4_0 => "Q4_0",
            Self::Q4_1 => "Q4_1",
            Self::Q5_0 => "Q5_0",
            Self::Q5_1 => "Q5_1",
            Self::Q8_0 => "Q8_0",
            Self::Q8_1 => "Q8_1",
            Self::Q2K => "Q2_K",
            Self::Q3K => "Q3_K",
            Self::Q4K => "Q4_K",
            Self::Q5K => "Q5_K",
            Self::Q6K => "Q6_K",
            Self::Q8K => "Q8_K",
            Self::I8 => "I8",
            Self::I16 => "I16",
            Self::I32 => "I32",
            Self::I64 => "I64",
            Self::F64 => "F64",
            Self::BF16 => "BF16",
            Self::TQ1_0 => "TQ1_0",
            Self::TQ2_0 => "TQ2_0",
            Self::I2S => "I2_S",
        }
    }

    /// Parses a type name as llama.cpp prints it (case-insensitive).
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL
            .iter()
            .copied()
            .find(|t| t.name().eq_ignore_ascii_case(name))
    }
}

impl fmt::Display for GgmlType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}
