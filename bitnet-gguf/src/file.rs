//! Opening and validating a GGUF file: header, metadata, tensor infos and the data layout, zero-copy over mmap.

use std::collections::HashMap;
use std::path::Path;

use crate::cursor::Cursor;
use crate::error::{ErrorKind, GgufError, Result};
use crate::ggml_type::{GgmlType, I2S_TRAILER};
use crate::metadata::Value;

/// `GGUF` as the first four bytes.
pub const MAGIC: [u8; 4] = *b"GGUF";
/// Alignment of the data section and of every tensor when `general.alignment` is absent.
pub const DEFAULT_ALIGNMENT: u64 = 32;
/// The most dimensions a ggml tensor has.
pub const MAX_DIMS: u32 = 4;

/// One tensor's description from the header, already checked against the file.
#[derive(Clone, Debug, PartialEq)]
pub struct TensorInfo {
    /// Tensor name, e.g. `blk.0.attn_q.weight`.
    pub name: String,
    /// Dimensions in ggml order: `dims[0]` (ne0) is the contiguous one (in_features for a weight).
    pub dims: Vec<u64>,
    /// Element type.
    pub ty: GgmlType,
    /// Offset of the data, relative to the start of the data section.
    pub offset: u64,
    /// Bytes of data (for I2_S, including the 32-byte trailer).
    pub size: u64,
}

impl TensorInfo {
    /// Number of elements.
    pub fn n_elements(&self) -> u64 {
        self.dims.iter().product()
    }

    /// Rows (product of every dimension but the first) and columns (the first dimension).
    pub fn rows_cols(&self) -> (usize, usize) {
        let cols = self.dims[0] as usize;
        (self.n_elements() as usize / cols, cols)
    }
}

enum Storage {
    /// The mapping, and the file for reads that should not map pages into this process.
    Mmap(
        memmap2::Mmap,
        #[cfg_attr(not(unix), allow(dead_code))] std::fs::File,
    ),
    Owned(Vec<u8>),
}

/// A validated GGUF file: metadata in memory, tensor data borrowed from the mapping.
pub struct GgufFile {
    name: String,
    storage: Storage,
    version: u32,
    metadata: Vec<(String, Value)>,
    key_index: HashMap<String, usize>,
    tensors: Vec<TensorInfo>,
    tensor_index: HashMap<String, usize>,
    alignment: u64,
    data_offset: u64,
}

impl std::fmt::Debug for GgufFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GgufFile")
            .field("name", &self.name)
            .field("version", &self.version)
            .field("n_kv", &self.metadata.len())
            .field("n_tensors", &self.tensors.len())
            .finish()
    }
}

impl GgufFile {
    /// Maps and validates a file. Nothing of the tensor data is read except the I2_S scales.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let name = path.display().to_string();
        let err = |e: std::io::Error| GgufError::new(&name, ErrorKind::Io(e));
        let file = std::fs::File::open(path).map_err(err)?;
        // SAFETY: the mapping is read-only; like every mmap reader we assume the file is not truncated while open.
        let map = unsafe { memmap2::Mmap::map(&file) }.map_err(err)?;
        Self::parse(name, Storage::Mmap(map, file))
    }

    /// Validates a file held in memory (tests, fuzzing, network buffers).
    pub fn from_bytes(bytes: Vec<u8>) -> Result<Self> {
        Self::from_bytes_named(bytes, "<memory>")
    }

    /// [`GgufFile::from_bytes`] with the name errors give it (a URL, a file the user picked).
    pub fn from_bytes_named(bytes: Vec<u8>, name: &str) -> Result<Self> {
        Self::parse(name.into(), Storage::Owned(bytes))
    }

    fn parse(name: String, storage: Storage) -> Result<Self> {
        let buf: &[u8] = match &storage {
            Storage::Mmap(m, _) => m,
            Storage::Owned(v) => v,
        };
        let header = parse_header(buf).map_err(|k| GgufError::new(&name, k))?;
        let Header {
            version,
            metadata,
            tensors,
            alignment,
            data_offset,
        } = header;
        let key_index = metadata
            .iter()
            .enumerate()
            .map(|(i, (k, _))| (k.clone(), i))
            .collect();
        let tensor_index = tensors
            .iter()
            .enumerate()
            .map(|(i, t)| (t.name.clone(), i))
            .collect();
        Ok(Self {
            name,
            storage,
            version,
            metadata,
            key_index,
            tensors,
            tensor_index,
            alignment,
            data_offset,
        })
    }

    /// The path (or `<memory>`), used in error messages.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Wraps an error kind with this file's name.
    pub fn error(&self, kind: ErrorKind) -> GgufError {
        GgufError::new(&self.name, kind)
    }

    /// GGUF version (2 or 3).
    pub fn version(&self) -> u32 {
        self.version
    }

    /// Alignment of tensor data.
    pub fn alignment(&self) -> u64 {
        self.alignment
    }

    /// Absolute offset of the data section.
    pub fn data_offset(&self) -> u64 {
        self.data_offset
    }

    /// The whole file.
    pub fn bytes(&self) -> &[u8] {
        match &self.storage {
            Storage::Mmap(m, _) => m,
            Storage::Owned(v) => v,
        }
    }

    /// Metadata in file order.
    pub fn metadata(&self) -> &[(String, Value)] {
        &self.metadata
    }

    /// A metadata value by key.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.key_index.get(key).map(|&i| &self.metadata[i].1)
    }

    /// Tensor infos in file order.
    pub fn tensors(&self) -> &[TensorInfo] {
        &self.tensors
    }

    /// A tensor info by name.
    pub fn tensor(&self, name: &str) -> Option<&TensorInfo> {
        self.tensor_index.get(name).map(|&i| &self.tensors[i])
    }

    /// A tensor info by name, or an error naming it.
    pub fn require_tensor(&self, name: &str) -> Result<&TensorInfo> {
        self.tensor(name)
            .ok_or_else(|| self.error(ErrorKind::MissingTensor { name: name.into() }))
    }

    /// The raw bytes of a tensor (validated at open to lie inside the file).
    pub fn tensor_data(&self, info: &TensorInfo) -> &[u8] {
        let start = (self.data_offset + info.offset) as usize;
        &self.bytes()[start..start + info.size as usize]
    }

    /// Drops bytes `range` of a tensor's data from this process's resident memory once they have been read
    /// (the pages stay in the page cache, and reading them again faults them back in): a loader that repacks
    /// the weights would otherwise hold both the file's pages and its own copy. Files held in memory are left
    /// as they are.
    pub fn release(&self, info: &TensorInfo, range: std::ops::Range<usize>) {
        #[cfg(unix)]
        if let Storage::Mmap(m, _) = &self.storage {
            let start = (self.data_offset + info.offset) as usize + range.start;
            let len = range
                .end
                .min(info.size as usize)
                .saturating_sub(range.start);
            // SAFETY: the mapping is read-only and backed by the file, so MADV_DONTNEED cannot lose data: a later
            // read of these pages faults the file's contents back in.
            let advised =
                unsafe { m.unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, start, len) };
            // Releasing only saves memory; a kernel that refuses the advice leaves the pages mapped.
            drop(advised);
        }
        #[cfg(not(unix))]
        let _ = (info, range);
    }

    /// Copies `out.len()` bytes of a tensor's data from byte `start` on, reading the file rather than the mapping
    /// where there is one: a few looked-up embedding rows then add nothing to this process's resident memory,
    /// where touching the mapping maps the page cache's whole folio (measured: 1.6 MB per looked-up row on
    /// Linux 6.18).
    pub fn read_tensor_bytes(&self, info: &TensorInfo, start: usize, out: &mut [u8]) -> Result<()> {
        let end = start
            .checked_add(out.len())
            .filter(|&e| e as u64 <= info.size);
        let Some(end) = end else {
            let message = format!(
                "bytes {start}..{} of tensor {:?} ({} bytes)",
                start.saturating_add(out.len()),
                info.name,
                info.size
            );
            let e = std::io::Error::new(std::io::ErrorKind::InvalidInput, message);
            return Err(self.error(ErrorKind::Io(e)));
        };
        match &self.storage {
            #[cfg(unix)]
            Storage::Mmap(_, file) => {
                use std::os::unix::fs::FileExt;
                let at = self.data_offset + info.offset + start as u64;
                file.read_exact_at(out, at)
                    .map_err(|e| self.error(ErrorKind::Io(e)))
            }
            _ => {
                out.copy_from_slice(&self.tensor_data(info)[start..end]);
                Ok(())
            }
        }
    }

    /// An unsigned integer value (any integer width), or an error naming the key.
    pub fn get_u64(&self, key: &str) -> Result<u64> {
        let v = self
            .get(key)
            .ok_or_else(|| self.error(ErrorKind::MissingKey { key: key.into() }))?;
        v.as_u64()
            .ok_or_else(|| self.wrong(key, "a non-negative integer", v))
    }

    /// A float value (float or integer), or an error naming the key.
    pub fn get_f64(&self, key: &str) -> Result<f64> {
        let v = self
            .get(key)
            .ok_or_else(|| self.error(ErrorKind::MissingKey { key: key.into() }))?;
        v.as_f64().ok_or_else(|| self.wrong(key, "a number", v))
    }

    /// A string value, or an error naming the key.
    pub fn get_str(&self, key: &str) -> Result<&str> {
        let v = self
            .get(key)
            .ok_or_else(|| self.error(ErrorKind::MissingKey { key: key.into() }))?;
        v.as_str().ok_or_else(|| self.wrong(key, "a string", v))
    }

    /// An optional value that, when present, must have the right type.
    pub fn opt<T>(&self, key: &str, get: impl Fn(&Self, &str) -> Result<T>) -> Result<Option<T>> {
        self.get(key).map(|_| get(self, key)).transpose()
    }

    /// An optional string value that, when present, must be a string.
    pub fn opt_str(&self, key: &str) -> Result<Option<&str>> {
        self.get(key).map(|_| self.get_str(key)).transpose()
    }

    fn wrong(&self, key: &str, expected: &str, found: &Value) -> GgufError {
        self.error(ErrorKind::WrongValue {
            key: key.into(),
            expected: expected.into(),
            found: found.describe(),
        })
    }
}

struct Header {
    version: u32,
    metadata: Vec<(String, Value)>,
    tensors: Vec<TensorInfo>,
    alignment: u64,
    data_offset: u64,
}

fn parse_header(buf: &[u8]) -> std::result::Result<Header, ErrorKind> {
    let mut c = Cursor::new(buf);
    let magic = c.bytes(4, || "magic".into());
    let magic: [u8; 4] = match magic {
        Ok(m) => m.try_into().expect("4 bytes"),
        Err(_) => {
            let mut found = [0u8; 4];
            found[..buf.len()].copy_from_slice(buf);
            return Err(ErrorKind::BadMagic { found });
        }
    };
    if magic != MAGIC {
        return Err(ErrorKind::BadMagic { found: magic });
    }
    let version = c.u32(|| "version".into())?;
    if version != 2 && version != 3 {
        let hint = if version.swap_bytes() == 2 || version.swap_bytes() == 3 {
            " (this looks like a big-endian GGUF, which is not supported)"
        } else if version == 1 {
            " (version 1 used 32-bit counts and is obsolete)"
        } else {
            ""
        };
        return Err(ErrorKind::UnsupportedVersion {
            found: version,
            hint,
        });
    }
    // A tensor info is at least 8 (name length) + 4 (n_dims) + 4 (type) + 8 (offset) bytes;
    // a metadata entry at least 8 (key length) + 4 (type) + 1 (value) bytes.
    let n_tensors = c.count(24, || "tensor count".into())?;
    let n_kv = c.count(13, || "metadata count".into())?;

    let mut metadata: Vec<(String, Value)> = Vec::with_capacity(n_kv as usize);
    let mut seen = HashMap::new();
    for i in 0..n_kv {
        let start = c.pos as u64;
        let key = c.string(|| format!("metadata key #{i}"))?;
        let type_offset = c.pos as u64;
        let ty = c.u32(|| format!("value type of {key:?}"))?;
        let value = c.value(&key, ty, type_offset, 0)?;
        if seen.insert(key.clone(), ()).is_some() {
            return Err(ErrorKind::DuplicateKey { key, offset: start });
        }
        metadata.push((key, value));
    }

    let alignment = match metadata.iter().find(|(k, _)| k == "general.alignment") {
        None => DEFAULT_ALIGNMENT,
        Some((_, v)) => match v.as_u64() {
            Some(a) if a.is_power_of_two() => a,
            Some(a) => return Err(ErrorKind::BadAlignment { found: a }),
            None => {
                return Err(ErrorKind::WrongValue {
                    key: "general.alignment".into(),
                    expected: "an unsigned integer".into(),
                    found: v.describe(),
                })
            }
        },
    };

    let mut tensors = Vec::with_capacity(n_tensors as usize);
    let mut names = HashMap::new();
    for i in 0..n_tensors {
        let start = c.pos as u64;
        let name = c.string(|| format!("name of tensor #{i}"))?;
        let dims_offset = c.pos as u64;
        let n_dims = c.u32(|| format!("dimension count of tensor {name:?}"))?;
        if n_dims == 0 || n_dims > MAX_DIMS {
            return Err(ErrorKind::BadDimCount {
                tensor: name,
                found: n_dims,
                offset: dims_offset,
            });
        }
        let dims = (0..n_dims)
            .map(|d| c.u64(|| format!("dimension {d} of tensor {name:?}")))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        let type_offset = c.pos as u64;
        let type_id = c.u32(|| format!("type of tensor {name:?}"))?;
        let offset = c.u64(|| format!("data offset of tensor {name:?}"))?;
        let ty = GgmlType::from_id(type_id).map_err(|hint| ErrorKind::UnknownType {
            tensor: name.clone(),
            found: type_id,
            offset: type_offset,
            hint,
        })?;
        let size = tensor_size(&name, &dims, ty)?;
        if names.insert(name.clone(), ()).is_some() {
            return Err(ErrorKind::DuplicateTensor {
                name,
                offset: start,
            });
        }
        if offset % alignment != 0 {
            return Err(ErrorKind::Misaligned {
                tensor: name,
                offset,
                alignment,
            });
        }
        tensors.push(TensorInfo {
            name,
            dims,
            ty,
            offset,
            size,
        });
    }

    let data_offset = (c.pos as u64).next_multiple_of(alignment);
    check_layout(buf, &tensors, data_offset)?;
    Ok(Header {
        version,
        metadata,
        tensors,
        alignment,
        data_offset,
    })
}

fn tensor_size(name: &str, dims: &[u64], ty: GgmlType) -> std::result::Result<u64, ErrorKind> {
    let bad = |why| ErrorKind::BadShape {
        tensor: name.into(),
        dims: dims.to_vec(),
        why,
    };
    if dims.contains(&0) {
        return Err(bad("zero dimension"));
    }
    let n = dims
        .iter()
        .try_fold(1u64, |acc, &d| acc.checked_mul(d))
        .filter(|&n| n <= i64::MAX as u64);
    let n = n.ok_or_else(|| bad("element count overflows"))?;
    // I2_S blocks run over the flattened tensor; every other type blocks each row.
    let (checked, what) = if ty == GgmlType::I2S {
        (n, n)
    } else {
        (dims[0], dims[0])
    };
    if checked % ty.block_size() != 0 {
        return Err(ErrorKind::NotBlockMultiple {
            tensor: name.into(),
            ty: ty.name().into(),
            block: ty.block_size(),
            ne0: what,
        });
    }
    ty.data_size(n).ok_or_else(|| bad("byte size overflows"))
}

fn check_layout(
    buf: &[u8],
    tensors: &[TensorInfo],
    data_offset: u64,
) -> std::result::Result<(), ErrorKind> {
    let file_len = buf.len() as u64;
    let mut order: Vec<&TensorInfo> = tensors.iter().collect();
    order.sort_by_key(|t| t.offset);
    for (i, t) in order.iter().enumerate() {
        let start = data_offset.saturating_add(t.offset);
        let end = start.saturating_add(t.size);
        let next = order.get(i + 1);
        let limit = next.map_or(file_len, |n| {
            data_offset.saturating_add(n.offset).min(file_len)
        });
        if t.ty == GgmlType::I2S && end > limit {
            return Err(ErrorKind::WrongDataSize {
                tensor: t.name.clone(),
                ty: "type 36 read as bitnet.cpp's I2_S (n/4 + 32 bytes; in upstream ggml 36 is the removed IQ4_NL_4_4, which is not supported)".into(),
                dims: t.dims.clone(),
                expected: t.size,
                found: limit.saturating_sub(start),
            });
        }
        if end > file_len {
            return Err(ErrorKind::DataOutOfRange {
                tensor: t.name.clone(),
                start,
                end,
                file_len,
            });
        }
        if let Some(n) = next {
            let other_start = data_offset + n.offset;
            if end > other_start {
                return Err(ErrorKind::Overlap {
                    tensor: t.name.clone(),
                    start,
                    end,
                    other: n.name.clone(),
                    other_start,
                });
            }
        }
        if t.ty == GgmlType::I2S {
            let at = (end - I2S_TRAILER) as usize;
            let scale = f32::from_le_bytes(buf[at..at + 4].try_into().expect("4 bytes"));
            if !scale.is_finite() || scale == 0.0 {
                return Err(ErrorKind::BadScale {
                    tensor: t.name.clone(),
                    ty: t.ty,
                    scale,
                    offset: at as u64,
                });
            }
        }
    }
    Ok(())
}
