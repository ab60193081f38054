//! A bounds-checked little-endian reader over a byte slice; every read names what it reads.

use crate::error::ErrorKind;
use crate::metadata::{type_id, Array, Value};

/// Deepest array nesting accepted (real files use none).
pub const MAX_NESTING: usize = 8;

pub(crate) struct Cursor<'a> {
    buf: &'a [u8],
    pub pos: usize,
}

type R<T> = std::result::Result<T, ErrorKind>;

impl<'a> Cursor<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    pub fn remaining(&self) -> u64 {
        (self.buf.len() - self.pos) as u64
    }

    pub fn bytes(&mut self, n: u64, what: impl FnOnce() -> String) -> R<&'a [u8]> {
        if n > self.remaining() {
            return Err(ErrorKind::Truncated {
                what: what(),
                offset: self.pos as u64,
                needed: n,
                available: self.remaining(),
            });
        }
        let s = &self.buf[self.pos..self.pos + n as usize];
        self.pos += n as usize;
        Ok(s)
    }

    fn array<const N: usize>(&mut self, what: impl FnOnce() -> String) -> R<[u8; N]> {
        Ok(self
            .bytes(N as u64, what)?
            .try_into()
            .expect("length checked"))
    }

    pub fn u32(&mut self, what: impl FnOnce() -> String) -> R<u32> {
        self.array(what).map(u32::from_le_bytes)
    }

    pub fn u64(&mut self, what: impl FnOnce() -> String) -> R<u64> {
        self.array(what).map(u64::from_le_bytes)
    }

    /// Reads a count and refuses it unless `count * min_item_size` bytes remain.
    pub fn count(&mut self, min_item_size: u64, what: impl Fn() -> String) -> R<u64> {
        let offset = self.pos as u64;
        let count = self.u64(&what)?;
        let max = self.remaining() / min_item_size.max(1);
        if count > max {
            return Err(ErrorKind::CountTooLarge {
                what: what(),
                offset,
                count,
                max,
            });
        }
        Ok(count)
    }

    pub fn string(&mut self, what: impl Fn() -> String) -> R<String> {
        let len = self.count(1, || format!("length of {}", what()))?;
        let offset = self.pos as u64;
        let raw = self.bytes(len, &what)?;
        String::from_utf8(raw.to_vec()).map_err(|_| ErrorKind::InvalidUtf8 {
            what: what(),
            offset,
        })
    }

    pub fn value(&mut self, key: &str, type_id_: u32, type_offset: u64, depth: usize) -> R<Value> {
        let what = || format!("value of {key:?}");
        Ok(match type_id_ {
            type_id::U8 => Value::U8(self.array::<1>(what)?[0]),
            type_id::I8 => Value::I8(self.array::<1>(what)?[0] as i8),
            type_id::U16 => Value::U16(u16::from_le_bytes(self.array(what)?)),
            type_id::I16 => Value::I16(i16::from_le_bytes(self.array(what)?)),
            type_id::U32 => Value::U32(self.u32(what)?),
            type_id::I32 => Value::I32(i32::from_le_bytes(self.array(what)?)),
            type_id::F32 => Value::F32(f32::from_le_bytes(self.array(what)?)),
            type_id::BOOL => Value::Bool(self.bool(key)?),
            type_id::STRING => Value::String(self.string(what)?),
            type_id::ARRAY => Value::Array(self.array_value(key, depth + 1)?),
            type_id::U64 => Value::U64(self.u64(what)?),
            type_id::I64 => Value::I64(i64::from_le_bytes(self.array(what)?)),
            type_id::F64 => Value::F64(f64::from_le_bytes(self.array(what)?)),
            found => {
                return Err(ErrorKind::UnknownValueType {
                    key: key.into(),
                    found,
                    offset: type_offset,
                })
            }
        })
    }

    fn bool(&mut self, key: &str) -> R<bool> {
        let offset = self.pos as u64;
        match self.array::<1>(|| format!("value of {key:?}"))?[0] {
            0 => Ok(false),
            1 => Ok(true),
            found => Err(ErrorKind::InvalidBool {
                key: key.into(),
                found,
                offset,
            }),
        }
    }

    fn array_value(&mut self, key: &str, depth: usize) -> R<Array> {
        let start = self.pos as u64;
        if depth > MAX_NESTING {
            return Err(ErrorKind::NestingTooDeep {
                key: key.into(),
                max: MAX_NESTING,
                offset: start,
            });
        }
        let elem = self.u32(|| format!("array element type of {key:?}"))?;
        let min_size = match elem {
            type_id::U8 | type_id::I8 | type_id::BOOL => 1,
            type_id::U16 | type_id::I16 => 2,
            type_id::U32 | type_id::I32 | type_id::F32 => 4,
            type_id::U64 | type_id::I64 | type_id::F64 | type_id::STRING => 8,
            type_id::ARRAY => 12,
            found => {
                return Err(ErrorKind::UnknownValueType {
                    key: key.into(),
                    found,
                    offset: start,
                })
            }
        };
        let n = self.count(min_size, || format!("array length of {key:?}"))? as usize;
        macro_rules! fixed {
            ($variant:ident, $t:ty) => {{
                let raw = self.bytes(n as u64 * min_size, || format!("array of {key:?}"))?;
                Array::$variant(
                    raw.chunks_exact(min_size as usize)
                        .map(|c| <$t>::from_le_bytes(c.try_into().unwrap()))
                        .collect(),
                )
            }};
        }
        Ok(match elem {
            type_id::U8 => Array::U8(
                self.bytes(n as u64, || format!("array of {key:?}"))?
                    .to_vec(),
            ),
            type_id::I8 => fixed!(I8, i8),
            type_id::U16 => fixed!(U16, u16),
            type_id::I16 => fixed!(I16, i16),
            type_id::U32 => fixed!(U32, u32),
            type_id::I32 => fixed!(I32, i32),
            type_id::F32 => fixed!(F32, f32),
            type_id::U64 => fixed!(U64, u64),
            type_id::I64 => fixed!(I64, i64),
            type_id::F64 => fixed!(F64, f64),
            type_id::BOOL => Array::Bool((0..n).map(|_| self.bool(key)).collect::<R<_>>()?),
            type_id::STRING => Array::String(
                (0..n)
                    .map(|i| self.string(|| format!("element {i} of {key:?}")))
                    .collect::<R<_>>()?,
            ),
            _ => Array::Array(
                (0..n)
                    .map(|_| self.array_value(key, depth + 1))
                    .collect::<R<_>>()?,
            ),
        })
    }
}
