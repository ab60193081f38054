//! Writing GGUF v3 (or v2) files: metadata in insertion order, tensors aligned and zero-padded like ggml writes
//! them, so reading a file and writing it back is byte-identical.

use std::borrow::Cow;
use std::io::Write;
use std::path::Path;

use crate::error::{ErrorKind, GgufError, Result};
use crate::file::{GgufFile, DEFAULT_ALIGNMENT, MAGIC};
use crate::ggml_type::GgmlType;
use crate::metadata::{Array, Value};

struct PendingTensor<'a> {
    name: String,
    dims: Vec<u64>,
    ty: GgmlType,
    size: u64,
    /// `None`: produced when the file is written (see [`GgufWriter::declare_tensor`]).
    data: Option<Cow<'a, [u8]>>,
}

/// Collects metadata and tensors, then writes a complete GGUF file.
pub struct GgufWriter<'a> {
    version: u32,
    alignment: u64,
    metadata: Vec<(String, Value)>,
    tensors: Vec<PendingTensor<'a>>,
}

impl Default for GgufWriter<'_> {
    fn default() -> Self {
        Self::new()
    }
}

impl<'a> GgufWriter<'a> {
    /// An empty GGUF v3 file with the default alignment.
    pub fn new() -> Self {
        Self {
            version: 3,
            alignment: DEFAULT_ALIGNMENT,
            metadata: Vec::new(),
            tensors: Vec::new(),
        }
    }

    /// A writer holding everything `file` holds, tensor data borrowed: writing it reproduces the file.
    pub fn from_file(file: &'a GgufFile) -> Result<Self> {
        let mut w = Self::new();
        w.version = file.version();
        for (k, v) in file.metadata() {
            w.set(k, v.clone())?;
        }
        for t in file.tensors() {
            w.add_tensor(&t.name, &t.dims, t.ty, file.tensor_data(t))?;
        }
        Ok(w)
    }

    /// Sets the GGUF version (2 or 3; both have the same layout).
    pub fn version(mut self, version: u32) -> Self {
        self.version = version;
        self
    }

    /// Adds or replaces a metadata entry (`general.alignment` also sets the alignment).
    pub fn set(&mut self, key: &str, value: Value) -> Result<()> {
        if key == "general.alignment" {
            match value.as_u64() {
                Some(a) if a.is_power_of_two() => self.alignment = a,
                other => {
                    return Err(mem(ErrorKind::BadAlignment {
                        found: other.unwrap_or(0),
                    }))
                }
            }
        }
        match self.metadata.iter_mut().find(|(k, _)| k == key) {
            Some(slot) => slot.1 = value,
            None => self.metadata.push((key.to_string(), value)),
        }
        Ok(())
    }

    /// A metadata value set earlier.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.metadata.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    /// Adds a tensor; `data` must be exactly `ty`'s size for `dims` (ggml order, ne0 first).
    pub fn add_tensor(
        &mut self,
        name: &str,
        dims: &[u64],
        ty: GgmlType,
        data: impl Into<Cow<'a, [u8]>>,
    ) -> Result<()> {
        let data = data.into();
        let size = self.check_tensor(name, dims, ty)?;
        if size != data.len() as u64 {
            return Err(mem(ErrorKind::WrongDataSize {
                tensor: name.into(),
                ty: ty.name().into(),
                dims: dims.to_vec(),
                expected: size,
                found: data.len() as u64,
            }));
        }
        self.push(name, dims, ty, size, Some(data));
        Ok(())
    }

    /// Declares a tensor whose bytes [`Self::write_file_with`] asks for when it reaches it, so a converter holds
    /// one tensor in memory at a time.
    pub fn declare_tensor(&mut self, name: &str, dims: &[u64], ty: GgmlType) -> Result<()> {
        let size = self.check_tensor(name, dims, ty)?;
        self.push(name, dims, ty, size, None);
        Ok(())
    }

    /// The byte size of a valid new tensor.
    fn check_tensor(&self, name: &str, dims: &[u64], ty: GgmlType) -> Result<u64> {
        let n = dims.iter().try_fold(1u64, |a, &d| a.checked_mul(d));
        let blocked = if ty == GgmlType::I2S {
            n
        } else {
            dims.first().copied()
        };
        let size = n.and_then(|n| ty.data_size(n));
        if dims.is_empty()
            || dims.len() > 4
            || blocked.is_none_or(|b| b == 0 || b % ty.block_size() != 0)
            || size.is_none()
        {
            return Err(mem(ErrorKind::BadShape {
                tensor: name.into(),
                dims: dims.to_vec(),
                why: "not a whole number of blocks",
            }));
        }
        if self.tensors.iter().any(|t| t.name == name) {
            return Err(mem(ErrorKind::DuplicateTensor {
                name: name.into(),
                offset: 0,
            }));
        }
        Ok(size.unwrap_or_default())
    }

    fn push(
        &mut self,
        name: &str,
        dims: &[u64],
        ty: GgmlType,
        size: u64,
        data: Option<Cow<'a, [u8]>>,
    ) {
        self.tensors.push(PendingTensor {
            name: name.into(),
            dims: dims.to_vec(),
            ty,
            size,
            data,
        });
    }

    /// Writes the file to `out` (every tensor must have its data: see [`Self::write_file_with`]).
    pub fn write_to(&self, out: &mut impl Write) -> std::io::Result<()> {
        self.write_with(out, &mut |name| {
            Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("tensor {name:?} was declared without data"),
            ))
        })
    }

    fn write_with(
        &self,
        out: &mut impl Write,
        fill: &mut dyn FnMut(&str) -> std::io::Result<Vec<u8>>,
    ) -> std::io::Result<()> {
        let mut head = Vec::new();
        head.extend_from_slice(&MAGIC);
        head.extend_from_slice(&self.version.to_le_bytes());
        head.extend_from_slice(&(self.tensors.len() as u64).to_le_bytes());
        head.extend_from_slice(&(self.metadata.len() as u64).to_le_bytes());
        for (k, v) in &self.metadata {
            put_str(&mut head, k);
            head.extend_from_slice(&v.type_id().to_le_bytes());
            put_value(&mut head, v);
        }
        let mut offset = 0u64;
        for t in &self.tensors {
            put_str(&mut head, &t.name);
            head.extend_from_slice(&(t.dims.len() as u32).to_le_bytes());
            for d in &t.dims {
                head.extend_from_slice(&d.to_le_bytes());
            }
            head.extend_from_slice(&t.ty.id().to_le_bytes());
            head.extend_from_slice(&offset.to_le_bytes());
            offset = (offset + t.size).next_multiple_of(self.alignment);
        }
        head.resize(
            (head.len() as u64).next_multiple_of(self.alignment) as usize,
            0,
        );
        out.write_all(&head)?;
        let zeros = vec![0u8; self.alignment as usize];
        for t in &self.tensors {
            let produced;
            let data = match &t.data {
                Some(d) => d.as_ref(),
                None => {
                    produced = fill(&t.name)?;
                    if produced.len() as u64 != t.size {
                        return Err(std::io::Error::new(
                            std::io::ErrorKind::InvalidData,
                            format!(
                                "tensor {:?}: {} bytes produced, {} declared",
                                t.name,
                                produced.len(),
                                t.size
                            ),
                        ));
                    }
                    &produced
                }
            };
            out.write_all(data)?;
            let pad = t.size.next_multiple_of(self.alignment) - t.size;
            out.write_all(&zeros[..pad as usize])?;
        }
        out.flush()
    }

    /// Writes to `path` through a temporary file in the same directory, renamed into place when complete.
    pub fn write_file(&self, path: impl AsRef<Path>) -> Result<()> {
        self.write_file_with(path, |name| {
            Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("tensor {name:?} was declared without data"),
            ))
        })
    }

    /// [`Self::write_file`], asking `fill` for the bytes of each declared tensor in file order; an error from
    /// `fill` stops the write and leaves no file at `path`.
    pub fn write_file_with(
        &self,
        path: impl AsRef<Path>,
        mut fill: impl FnMut(&str) -> std::io::Result<Vec<u8>>,
    ) -> Result<()> {
        let path = path.as_ref();
        let io = |e| GgufError::new(path.display(), ErrorKind::Io(e));
        let tmp = path.with_extension("gguf.partial");
        let file = std::fs::File::create(&tmp).map_err(io)?;
        let mut out = std::io::BufWriter::new(file);
        let written = self
            .write_with(&mut out, &mut fill)
            .and_then(|_| out.into_inner().map_err(|e| e.into_error())?.sync_all());
        if let Err(e) = written {
            let _ = std::fs::remove_file(&tmp);
            return Err(io(e));
        }
        std::fs::rename(&tmp, path).map_err(io)
    }
}

fn mem(kind: ErrorKind) -> GgufError {
    GgufError::new("<writer>", kind)
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u64).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

fn put_value(out: &mut Vec<u8>, v: &Value) {
    match v {
        Value::U8(x) => out.push(*x),
        Value::I8(x) => out.push(*x as u8),
        Value::U16(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::I16(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::U32(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::I32(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::F32(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::Bool(x) => out.push(*x as u8),
        Value::String(s) => put_str(out, s),
        Value::Array(a) => put_array(out, a),
        Value::U64(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::I64(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::F64(x) => out.extend_from_slice(&x.to_le_bytes()),
    }
}

fn put_array(out: &mut Vec<u8>, a: &Array) {
    out.extend_from_slice(&a.elem_type_id().to_le_bytes());
    out.extend_from_slice(&(a.len() as u64).to_le_bytes());
    macro_rules! le {
        ($v:expr) => {
            $v.iter()
                .for_each(|x| out.extend_from_slice(&x.to_le_bytes()))
        };
    }
    match a {
        Array::U8(v) => out.extend_from_slice(v),
        Array::I8(v) => le!(v),
        Array::U16(v) => le!(v),
        Array::I16(v) => le!(v),
        Array::U32(v) => le!(v),
        Array::I32(v) => le!(v),
        Array::F32(v) => le!(v),
        Array::Bool(v) => out.extend(v.iter().map(|&b| b as u8)),
        Array::String(v) => v.iter().for_each(|s| put_str(out, s)),
        Array::Array(v) => v.iter().for_each(|a| put_array(out, a)),
        Array::U64(v) => le!(v),
        Array::I64(v) => le!(v),
        Array::F64(v) => le!(v),
    }
}
