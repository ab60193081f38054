//! Typed errors: every error names the file, the key or tensor, the offset and expected vs found.

use std::fmt;

use crate::ggml_type::GgmlType;

/// An error while reading, validating, decoding or writing a GGUF file, with the file it happened in.
#[derive(Debug, thiserror::Error)]
#[error("{file}: {kind}")]
pub struct GgufError {
    /// The file path, or `<memory>` for in-memory buffers.
    pub file: String,
    /// What went wrong.
    pub kind: ErrorKind,
}

impl GgufError {
    /// Attaches a file name to an error kind.
    pub fn new(file: impl fmt::Display, kind: ErrorKind) -> Self {
        Self {
            file: file.to_string(),
            kind,
        }
    }
}

/// The kinds of GGUF errors.
#[derive(Debug, thiserror::Error)]
pub enum ErrorKind {
    /// The operating system refused to open, map or write the file.
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// The first four bytes are not `GGUF`.
    #[error("bad magic at offset 0: expected \"GGUF\", found {found:?}")]
    BadMagic {
        /// The bytes found.
        found: [u8; 4],
    },
    /// A version other than 2 or 3 (version 1 used 32-bit counts; big-endian files read as huge versions).
    #[error("unsupported GGUF version {found} at offset 4: expected 2 or 3{hint}")]
    UnsupportedVersion {
        /// The version found.
        found: u32,
        /// Extra explanation (big-endian files).
        hint: &'static str,
    },
    /// The file ends before a structure it declares.
    #[error("truncated while reading {what} at offset {offset}: need {needed} bytes, file has {available} left")]
    Truncated {
        /// What was being read.
        what: String,
        /// Where it starts.
        offset: u64,
        /// Bytes needed.
        needed: u64,
        /// Bytes left in the file.
        available: u64,
    },
    /// A count that cannot fit in the rest of the file (refused before allocating).
    #[error(
        "{what} at offset {offset} is {count}, but the rest of the file can hold at most {max}"
    )]
    CountTooLarge {
        /// What is being counted.
        what: String,
        /// Where the count is stored.
        offset: u64,
        /// The count found.
        count: u64,
        /// The largest count the remaining bytes allow.
        max: u64,
    },
    /// A string that is not UTF-8.
    #[error("{what} at offset {offset} is not valid UTF-8")]
    InvalidUtf8 {
        /// Which string.
        what: String,
        /// Where it starts.
        offset: u64,
    },
    /// A metadata value type id outside 0..=12.
    #[error(
        "metadata key {key:?}: unknown value type {found} at offset {offset} (expected 0..=12)"
    )]
    UnknownValueType {
        /// The key.
        key: String,
        /// The type id found.
        found: u32,
        /// Where the type id is stored.
        offset: u64,
    },
    /// A boolean stored as something other than 0 or 1.
    #[error("metadata key {key:?}: boolean at offset {offset} is {found}, expected 0 or 1")]
    InvalidBool {
        /// The key.
        key: String,
        /// The byte found.
        found: u8,
        /// Where it is stored.
        offset: u64,
    },
    /// Arrays nested deeper than the reader allows.
    #[error("metadata key {key:?}: arrays nested deeper than {max} at offset {offset}")]
    NestingTooDeep {
        /// The key.
        key: String,
        /// The nesting limit.
        max: usize,
        /// Where the too-deep array starts.
        offset: u64,
    },
    /// The same metadata key twice.
    #[error("duplicate metadata key {key:?} at offset {offset}")]
    DuplicateKey {
        /// The key.
        key: String,
        /// Where the second copy starts.
        offset: u64,
    },
    /// The same tensor name twice.
    #[error("duplicate tensor name {name:?} at offset {offset}")]
    DuplicateTensor {
        /// The tensor name.
        name: String,
        /// Where the second copy's info starts.
        offset: u64,
    },
    /// `general.alignment` that is zero or not a power of two.
    #[error("general.alignment is {found}: expected a non-zero power of two")]
    BadAlignment {
        /// The alignment found.
        found: u64,
    },
    /// More dimensions than ggml supports.
    #[error("tensor {tensor:?}: {found} dimensions at offset {offset}, expected 1..=4")]
    BadDimCount {
        /// The tensor.
        tensor: String,
        /// Dimensions found.
        found: u32,
        /// Where the count is stored.
        offset: u64,
    },
    /// A zero dimension or a shape whose element count overflows.
    #[error("tensor {tensor:?}: invalid shape {dims:?} ({why})")]
    BadShape {
        /// The tensor.
        tensor: String,
        /// The dimensions, ggml order (ne0 first).
        dims: Vec<u64>,
        /// Why it is invalid.
        why: &'static str,
    },
    /// A tensor type id this reader does not know.
    #[error("tensor {tensor:?}: unknown ggml type id {found} at offset {offset}{hint}")]
    UnknownType {
        /// The tensor.
        tensor: String,
        /// The type id.
        found: u32,
        /// Where it is stored.
        offset: u64,
        /// What the id means elsewhere, when known.
        hint: String,
    },
    /// The tensor's row length is not a multiple of the type's block size.
    #[error("tensor {tensor:?}: {ty} needs the first dimension to be a multiple of {block}, found {ne0}")]
    NotBlockMultiple {
        /// The tensor.
        tensor: String,
        /// The ggml type.
        ty: String,
        /// The block size.
        block: u64,
        /// The first dimension.
        ne0: u64,
    },
    /// A tensor offset that is not a multiple of the file's alignment.
    #[error(
        "tensor {tensor:?}: data offset {offset} is not a multiple of the alignment {alignment}"
    )]
    Misaligned {
        /// The tensor.
        tensor: String,
        /// Its offset, relative to the data section.
        offset: u64,
        /// The file's alignment.
        alignment: u64,
    },
    /// Tensor data that runs past the end of the file.
    #[error(
        "tensor {tensor:?}: data [{start}, {end}) runs past the end of the file ({file_len} bytes)"
    )]
    DataOutOfRange {
        /// The tensor.
        tensor: String,
        /// Absolute start offset.
        start: u64,
        /// Absolute end offset.
        end: u64,
        /// File length.
        file_len: u64,
    },
    /// Two tensors whose data overlap.
    #[error("tensor {tensor:?} data [{start}, {end}) overlaps tensor {other:?} which starts at {other_start}")]
    Overlap {
        /// The earlier tensor.
        tensor: String,
        /// Its absolute start.
        start: u64,
        /// Its absolute end.
        end: u64,
        /// The later tensor.
        other: String,
        /// Its absolute start.
        other_start: u64,
    },
    /// A ternary tensor's scale that cannot be: an I2_S per-tensor scale that is zero, NaN or infinite (such
    /// files give NaN logits in bitnet.cpp), or a TQ1_0/TQ2_0 block scale that is NaN or infinite.
    #[error("tensor {tensor:?}: {ty} scale at offset {offset} is {scale}, expected {}", scale_rule(*.ty))]
    BadScale {
        /// The tensor.
        tensor: String,
        /// Its type.
        ty: GgmlType,
        /// The scale found.
        scale: f32,
        /// Absolute offset of the scale.
        offset: u64,
    },
    /// A ternary weight holds a value that is none of its three levels: a 2-bit code 3 in I2_S or TQ2_0 (which
    /// llama.cpp's TQ2_0 kernels would read as +2, the other paths here otherwise differently), or a float that is
    /// not 0 or ±scale.
    #[error("tensor {tensor:?}: {found}; {expected}")]
    NotTernary {
        /// The tensor.
        tensor: String,
        /// The first bad value and its place (row and column).
        found: String,
        /// What the tensor's type allows.
        expected: String,
    },
    /// A metadata key is required but absent.
    #[error("missing metadata key {key:?}")]
    MissingKey {
        /// The key.
        key: String,
    },
    /// A metadata key holds the wrong type or an out-of-range value.
    #[error("metadata key {key:?}: expected {expected}, found {found}")]
    WrongValue {
        /// The key.
        key: String,
        /// What was expected.
        expected: String,
        /// What was found.
        found: String,
    },
    /// A tensor is required but absent.
    #[error("missing tensor {name:?}")]
    MissingTensor {
        /// The tensor name.
        name: String,
    },
    /// A tensor has the wrong shape for the model.
    #[error("tensor {tensor:?}: expected shape {expected:?}, found {found:?}")]
    ShapeMismatch {
        /// The tensor.
        tensor: String,
        /// Expected dims (ggml order).
        expected: Vec<u64>,
        /// Found dims.
        found: Vec<u64>,
    },
    /// A tensor type that can be laid out but not decoded (or encoded) by this crate.
    #[error("tensor {tensor:?}: type {ty} cannot be {action} by this build (supported: F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q6_K, TQ1_0, TQ2_0, I2_S)")]
    UnsupportedType {
        /// The tensor.
        tensor: String,
        /// The type.
        ty: String,
        /// "decoded" or "encoded".
        action: &'static str,
    },
    /// The model described by the file is not one this crate understands.
    #[error("unsupported model: {0}")]
    UnsupportedModel(String),
    /// Data handed to the writer does not match the declared type and shape.
    #[error(
        "tensor {tensor:?}: {ty} data for shape {dims:?} must be {expected} bytes, got {found}"
    )]
    WrongDataSize {
        /// The tensor.
        tensor: String,
        /// The type.
        ty: String,
        /// The dims.
        dims: Vec<u64>,
        /// Bytes expected.
        expected: u64,
        /// Bytes given.
        found: u64,
    },
}

/// Result alias for this crate.
pub type Result<T> = std::result::Result<T, GgufError>;

/// What a [`ErrorKind::BadScale`] of type `ty` should have been.
fn scale_rule(ty: GgmlType) -> &'static str {
    match ty {
        GgmlType::I2S => "a finite non-zero value (the file was probably quantized with more than one thread by bitnet.cpp's llama-quantize)",
        _ => "a finite value",
    }
}
