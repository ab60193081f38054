//! Token embeddings (and untied output heads): a float matrix on the device while training, or the rows as the
//! file encodes them (F16, BF16, Q8_0, Q6_K, ...) decoded per looked-up token at inference. The 2B-4T embedding
//! is 0.66 GB in F16; as a resident f32 matrix it was 1.3 GB, more than every other weight together.

use std::marker::PhantomData;
use std::sync::Arc;

use bitnet_gguf::{GgmlType, GgufFile, TensorInfo};
use bitnet_kernels_cubecl::TernaryBackend;
use burn::module::{Module, Param};
use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor, TensorData};

use crate::error::{ForwardError, LoadError};

/// A `[rows, cols]` matrix kept as its file encodes it, decoded a row at a time (cheap to clone: shared).
#[derive(Clone)]
pub struct RowTable {
    bytes: Arc<Bytes>,
    name: String,
    ty: GgmlType,
    rows: usize,
    cols: usize,
    row_bytes: usize,
}

enum Bytes {
    /// A tensor of a mapped file: the file stays mapped while the table lives; its pages come and go.
    Mapped(Arc<GgufFile>, TensorInfo),
    /// Bytes copied out of another container (a safetensors checkpoint's F32/F16/BF16 data).
    Owned(Vec<u8>),
}

impl std::fmt::Debug for RowTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RowTable")
            .field("name", &self.name)
            .field("ty", &self.ty)
            .field("rows", &self.rows)
            .field("cols", &self.cols)
            .finish()
    }
}

impl RowTable {
    /// Tensor `info` of `file`, `[rows, cols]` with `cols = dims[0]`; refused when its type cannot be decoded
    /// by rows (I2_S, whose blocks span rows, or a type this crate does not decode).
    pub fn mapped(file: Arc<GgufFile>, info: TensorInfo) -> Result<Self, LoadError> {
        let (rows, cols) = info.rows_cols();
        let row_bytes = file.row_bytes(&info)?;
        let file_name = file.name().to_string();
        Self {
            name: info.name.clone(),
            ty: info.ty,
            bytes: Arc::new(Bytes::Mapped(file, info)),
            rows,
            cols,
            row_bytes,
        }
        .checked(&file_name)
    }

    /// `rows × cols` values of `ty` (F32, F16 or BF16) stored little-endian in `bytes`, tensor `name` of `file`.
    pub(crate) fn owned(
        file: &str,
        name: &str,
        ty: GgmlType,
        bytes: Vec<u8>,
        rows: usize,
        cols: usize,
    ) -> Result<Self, LoadError> {
        let row_bytes = cols * ty.type_size() as usize;
        if bytes.len() != rows * row_bytes {
            return Err(LoadError::Tensor {
                file: file.into(),
                tensor: name.into(),
                message: format!("{} bytes, expected {rows} rows of {row_bytes}", bytes.len()),
            });
        }
        Self {
            name: name.into(),
            ty,
            bytes: Arc::new(Bytes::Owned(bytes)),
            rows,
            cols,
            row_bytes,
        }
        .checked(file)
    }

    /// Decodes the first row once, so that no later decode can fail (the type is one the codecs know).
    fn checked(self, file: &str) -> Result<Self, LoadError> {
        let mut row = vec![0f32; self.cols];
        bitnet_gguf::quant::dequantize(&self.name, self.ty, self.row_data(0, 1), &mut row)
            .map_err(|k| LoadError::Tensor {
                file: file.into(),
                tensor: self.name.clone(),
                message: k.to_string(),
            })?;
        Ok(self)
    }

    /// Decodes whole rows' bytes into `out`.
    fn decode(&self, data: &[u8], out: &mut [f32]) {
        bitnet_gguf::quant::dequantize(&self.name, self.ty, data, out)
            .expect("the type and row size were checked when the table was made");
    }

    fn row_data(&self, first: usize, n: usize) -> &[u8] {
        let all = match &*self.bytes {
            Bytes::Mapped(file, info) => file.tensor_data(info),
            Bytes::Owned(v) => v,
        };
        &all[first * self.row_bytes..(first + n) * self.row_bytes]
    }

    /// Rows.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Columns (values per row).
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// The stored type.
    pub fn ty(&self) -> GgmlType {
        self.ty
    }

    /// Decodes rows `first..first + out.len() / cols` into `out`.
    ///
    /// # Panics
    /// If the rows are out of range.
    pub fn decode_rows(&self, first: usize, out: &mut [f32]) {
        self.decode(self.row_data(first, out.len() / self.cols), out);
    }

    /// The rows `ids` one after another (`[ids.len(), cols]`); ids must be below [`RowTable::rows`]. A mapped
    /// table's rows are read from the file ([`GgufFile::read_tensor_bytes`]), not through the mapping.
    pub fn gather(&self, ids: &[u32]) -> Result<Vec<f32>, bitnet_gguf::GgufError> {
        let mut out = vec![0f32; ids.len() * self.cols];
        let mut bytes = vec![0u8; self.row_bytes];
        for (&id, row) in ids.iter().zip(out.chunks_exact_mut(self.cols)) {
            let id = id as usize;
            match &*self.bytes {
                Bytes::Mapped(file, info) => {
                    file.read_tensor_bytes(info, id * self.row_bytes, &mut bytes)?;
                    self.decode(&bytes, row);
                }
                Bytes::Owned(_) => self.decode_rows(id, row),
            }
        }
        Ok(out)
    }

    /// Every row: the whole matrix in f32 (what the float head's reference numerics multiply by).
    pub fn dense(&self) -> Vec<f32> {
        let mut out = vec![0f32; self.rows * self.cols];
        self.decode_rows(0, &mut out);
        out
    }

    /// Drops rows `first..first + n` from this process's resident memory (see [`GgufFile::release`]): the int8
    /// head is quantized from the whole table a slice at a time, and afterwards only looked-up rows come back.
    pub fn release_rows(&self, first: usize, n: usize) {
        if let Bytes::Mapped(file, info) = &*self.bytes {
            file.release(info, first * self.row_bytes..(first + n) * self.row_bytes);
        }
    }
}

/// A token matrix `[vocab, hidden]`: the embedding, which is also the head's weights when tied, or an untied
/// output head.
#[derive(Module, Debug)]
pub enum Embedding<B: Backend> {
    /// Float weights on the device: trainable (quantization-aware training), exportable.
    Float(Param<Tensor<B, 2>>),
    /// The rows as the file encodes them, on the host.
    Encoded(EncodedRows<B>),
}

/// [`Embedding::Encoded`]'s table (not a parameter: nothing to train or save).
#[derive(Module, Debug)]
pub struct EncodedRows<B: Backend> {
    /// The rows.
    #[module(skip)]
    pub table: RowTable,
    backend: PhantomData<B>,
}

impl<B: TernaryBackend> Embedding<B> {
    /// Rows kept encoded.
    pub fn encoded(table: RowTable) -> Self {
        Self::Encoded(EncodedRows {
            table,
            backend: PhantomData,
        })
    }

    /// The rows of `ids` (each below the vocabulary size) `[ids.len(), hidden]`.
    pub fn lookup(&self, ids: &[u32], device: &B::Device) -> Result<Tensor<B, 2>, ForwardError> {
        Ok(match self {
            Self::Float(w) => {
                let ids: Vec<i32> = ids.iter().map(|&t| t as i32).collect();
                let n = ids.len();
                w.val().select(
                    0,
                    Tensor::<B, 1, Int>::from_data(TensorData::new(ids, [n]), device),
                )
            }
            Self::Encoded(e) => {
                let rows = e
                    .table
                    .gather(ids)
                    .map_err(|e| ForwardError::Read(e.to_string()))?;
                Tensor::from_data(TensorData::new(rows, [ids.len(), e.table.cols()]), device)
            }
        })
    }

    /// The whole matrix in f32 on the device: the parameter itself, or the table decoded (1.3 GB for the 2B-4T
    /// embedding: only for the float head's reference numerics and exporting).
    pub fn float(&self, device: &B::Device) -> Tensor<B, 2> {
        match self {
            Self::Float(w) => w.val(),
            Self::Encoded(e) => Tensor::from_data(
                TensorData::new(e.table.dense(), [e.table.rows(), e.table.cols()]),
                device,
            ),
        }
    }
}
