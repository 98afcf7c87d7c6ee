//! The tensor type shared by the protocols and the engines.
//!
//! Data is kept as one typed `Vec` per datatype (row-major), so JSON decoding, the binary
//! extension and engines all work on contiguous memory without per-element boxing.
//! FP16 is carried as raw IEEE-754 half bits; BYTES as one `Vec<u8>` per element.

use std::fmt;

/// An Open Inference Protocol datatype.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DataType {
    Bool,
    Uint8,
    Uint16,
    Uint32,
    Uint64,
    Int8,
    Int16,
    Int32,
    Int64,
    Fp16,
    Fp32,
    Fp64,
    Bytes,
}

impl DataType {
    /// Every datatype, in the OIP specification's order.
    pub const ALL: [DataType; 13] = [
        DataType::Bool,
        DataType::Uint8,
        DataType::Uint16,
        DataType::Uint32,
        DataType::Uint64,
        DataType::Int8,
        DataType::Int16,
        DataType::Int32,
        DataType::Int64,
        DataType::Fp16,
        DataType::Fp32,
        DataType::Fp64,
        DataType::Bytes,
    ];

    /// The name on the wire (`"FP32"`, `"BYTES"`, ...).
    pub fn name(self) -> &'static str {
        match self {
            DataType::Bool => "BOOL",
            DataType::Uint8 => "UINT8",
            DataType::Uint16 => "UINT16",
            DataType::Uint32 => "UINT32",
            DataType::Uint64 => "UINT64",
            DataType::Int8 => "INT8",
            DataType::Int16 => "INT16",
            DataType::Int32 => "INT32",
            DataType::Int64 => "INT64",
            DataType::Fp16 => "FP16",
            DataType::Fp32 => "FP32",
            DataType::Fp64 => "FP64",
            DataType::Bytes => "BYTES",
        }
    }

    /// Parses a wire name; `None` for anything the protocol does not define.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|d| d.name() == name)
    }

    /// Bytes per element in the binary extension; `None` for BYTES (length-prefixed).
    pub fn element_size(self) -> Option<usize> {
        match self {
            DataType::Bool | DataType::Uint8 | DataType::Int8 => Some(1),
            DataType::Uint16 | DataType::Int16 | DataType::Fp16 => Some(2),
            DataType::Uint32 | DataType::Int32 | DataType::Fp32 => Some(4),
            DataType::Uint64 | DataType::Int64 | DataType::Fp64 => Some(8),
            DataType::Bytes => None,
        }
    }
}

impl fmt::Display for DataType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A tensor's elements, row-major.
#[derive(Clone, Debug, PartialEq)]
pub enum TensorData {
    Bool(Vec<bool>),
    Uint8(Vec<u8>),
    Uint16(Vec<u16>),
    Uint32(Vec<u32>),
    Uint64(Vec<u64>),
    Int8(Vec<i8>),
    Int16(Vec<i16>),
    Int32(Vec<i32>),
    Int64(Vec<i64>),
    /// IEEE-754 half precision, as raw bits.
    Fp16(Vec<u16>),
    Fp32(Vec<f32>),
    Fp64(Vec<f64>),
    Bytes(Vec<Vec<u8>>),
}

/// Applies one expression to whichever typed vector a `TensorData` holds.
macro_rules! each {
    ($data:expr, $v:ident => $body:expr) => {
        match $data {
            TensorData::Bool($v) => $body,
            TensorData::Uint8($v) => $body,
            TensorData::Uint16($v) => $body,
            TensorData::Uint32($v) => $body,
            TensorData::Uint64($v) => $body,
            TensorData::Int8($v) => $body,
            TensorData::Int16($v) => $body,
            TensorData::Int32($v) => $body,
            TensorData::Int64($v) => $body,
            TensorData::Fp16($v) => $body,
            TensorData::Fp32($v) => $body,
            TensorData::Fp64($v) => $body,
            TensorData::Bytes($v) => $body,
        }
    };
}

/// Builds a `TensorData` of the same variant from a closure over the typed vector.
macro_rules! map_same {
    ($data:expr, $v:ident => $body:expr) => {
        match $data {
            TensorData::Bool($v) => TensorData::Bool($body),
            TensorData::Uint8($v) => TensorData::Uint8($body),
            TensorData::Uint16($v) => TensorData::Uint16($body),
            TensorData::Uint32($v) => TensorData::Uint32($body),
            TensorData::Uint64($v) => TensorData::Uint64($body),
            TensorData::Int8($v) => TensorData::Int8($body),
            TensorData::Int16($v) => TensorData::Int16($body),
            TensorData::Int32($v) => TensorData::Int32($body),
            TensorData::Int64($v) => TensorData::Int64($body),
            TensorData::Fp16($v) => TensorData::Fp16($body),
            TensorData::Fp32($v) => TensorData::Fp32($body),
            TensorData::Fp64($v) => TensorData::Fp64($body),
            TensorData::Bytes($v) => TensorData::Bytes($body),
        }
    };
}

/// Why tensor data could not be built or combined.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum TensorError {
    #[error("tensor '{name}' has shape {shape:?} ({expected} elements) but {actual} values")]
    ShapeMismatch {
        name: String,
        shape: Vec<usize>,
        expected: usize,
        actual: usize,
    },
    #[error("binary data of tensor '{name}' is {actual} bytes, expected {expected} for its shape and datatype")]
    BinarySize {
        name: String,
        expected: usize,
        actual: usize,
    },
    #[error("binary BYTES data of tensor '{name}' is malformed: {reason}")]
    BinaryBytes { name: String, reason: &'static str },
    #[error("cannot combine tensors of different datatypes")]
    MixedTypes,
}

impl TensorData {
    /// The datatype of the elements.
    pub fn datatype(&self) -> DataType {
        match self {
            TensorData::Bool(_) => DataType::Bool,
            TensorData::Uint8(_) => DataType::Uint8,
            TensorData::Uint16(_) => DataType::Uint16,
            TensorData::Uint32(_) => DataType::Uint32,
            TensorData::Uint64(_) => DataType::Uint64,
            TensorData::Int8(_) => DataType::Int8,
            TensorData::Int16(_) => DataType::Int16,
            TensorData::Int32(_) => DataType::Int32,
            TensorData::Int64(_) => DataType::Int64,
            TensorData::Fp16(_) => DataType::Fp16,
            TensorData::Fp32(_) => DataType::Fp32,
            TensorData::Fp64(_) => DataType::Fp64,
            TensorData::Bytes(_) => DataType::Bytes,
        }
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        each!(self, v => v.len())
    }

    /// Whether there are no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// An empty vector of the given datatype with room for `capacity` elements.
    pub fn with_capacity(datatype: DataType, capacity: usize) -> TensorData {
        match datatype {
            DataType::Bool => TensorData::Bool(Vec::with_capacity(capacity)),
            DataType::Uint8 => TensorData::Uint8(Vec::with_capacity(capacity)),
            DataType::Uint16 => TensorData::Uint16(Vec::with_capacity(capacity)),
            DataType::Uint32 => TensorData::Uint32(Vec::with_capacity(capacity)),
            DataType::Uint64 => TensorData::Uint64(Vec::with_capacity(capacity)),
            DataType::Int8 => TensorData::Int8(Vec::with_capacity(capacity)),
            DataType::Int16 => TensorData::Int16(Vec::with_capacity(capacity)),
            DataType::Int32 => TensorData::Int32(Vec::with_capacity(capacity)),
            DataType::Int64 => TensorData::Int64(Vec::with_capacity(capacity)),
            DataType::Fp16 => TensorData::Fp16(Vec::with_capacity(capacity)),
            DataType::Fp32 => TensorData::Fp32(Vec::with_capacity(capacity)),
            DataType::Fp64 => TensorData::Fp64(Vec::with_capacity(capacity)),
            DataType::Bytes => TensorData::Bytes(Vec::with_capacity(capacity)),
        }
    }

    /// Appends all of `other`'s elements; both must have the same datatype.
    pub fn extend_from(&mut self, other: &TensorData) -> Result<(), TensorError> {
        macro_rules! ext {
            ($($var:ident),*) => {
                match (self, other) {
                    $((TensorData::$var(a), TensorData::$var(b)) => a.extend_from_slice(b),)*
                    _ => return Err(TensorError::MixedTypes),
                }
            };
        }
        ext!(
            Bool, Uint8, Uint16, Uint32, Uint64, Int8, Int16, Int32, Int64, Fp16, Fp32, Fp64, Bytes
        );
        Ok(())
    }

    /// Elements `start..end` as a new vector.
    pub fn slice(&self, start: usize, end: usize) -> TensorData {
        map_same!(self, v => v[start.min(v.len())..end.min(v.len())].to_vec())
    }

    /// Decodes the binary tensor extension: little-endian elements, BOOL as one byte,
    /// BYTES as a 4-byte little-endian length before each element.
    pub fn from_le_bytes(
        name: &str,
        datatype: DataType,
        count: usize,
        raw: &[u8],
    ) -> Result<TensorData, TensorError> {
        let size_err = |expected: usize| TensorError::BinarySize {
            name: name.to_string(),
            expected,
            actual: raw.len(),
        };
        let Some(width) = datatype.element_size() else {
            return decode_bytes(name, count, raw);
        };
        let expected = count
            .checked_mul(width)
            .ok_or_else(|| size_err(usize::MAX))?;
        if raw.len() != expected {
            return Err(size_err(expected));
        }
        // The body gives no alignment guarantee, so elements are copied out (in one
        // memcpy on little-endian machines).
        #[cfg(target_endian = "little")]
        macro_rules! chunks {
            ($t:ty, $n:literal) => {
                bytemuck::pod_collect_to_vec::<u8, $t>(raw)
            };
        }
        #[cfg(not(target_endian = "little"))]
        macro_rules! chunks {
            ($t:ty, $n:literal) => {
                raw.chunks_exact($n)
                    .map(|c| {
                        let mut b = [0u8; $n];
                        b.copy_from_slice(c);
                        <$t>::from_le_bytes(b)
                    })
                    .collect()
            };
        }
        Ok(match datatype {
            DataType::Bool => TensorData::Bool(raw.iter().map(|b| *b != 0).collect()),
            DataType::Uint8 => TensorData::Uint8(raw.to_vec()),
            DataType::Int8 => TensorData::Int8(raw.iter().map(|b| *b as i8).collect()),
            DataType::Uint16 => TensorData::Uint16(chunks!(u16, 2)),
            DataType::Fp16 => TensorData::Fp16(chunks!(u16, 2)),
            DataType::Int16 => TensorData::Int16(chunks!(i16, 2)),
            DataType::Uint32 => TensorData::Uint32(chunks!(u32, 4)),
            DataType::Int32 => TensorData::Int32(chunks!(i32, 4)),
            DataType::Fp32 => TensorData::Fp32(chunks!(f32, 4)),
            DataType::Uint64 => TensorData::Uint64(chunks!(u64, 8)),
            DataType::Int64 => TensorData::Int64(chunks!(i64, 8)),
            DataType::Fp64 => TensorData::Fp64(chunks!(f64, 8)),
            DataType::Bytes => return decode_bytes(name, count, raw),
        })
    }

    /// Encodes in the binary tensor extension's layout (the inverse of `from_le_bytes`).
    pub fn write_le_bytes(&self, out: &mut Vec<u8>) {
        // On little-endian machines the wire layout is the memory layout: one copy.
        #[cfg(target_endian = "little")]
        macro_rules! put {
            ($v:expr) => {
                out.extend_from_slice(bytemuck::cast_slice($v.as_slice()))
            };
        }
        #[cfg(not(target_endian = "little"))]
        macro_rules! put {
            ($v:expr) => {{
                out.reserve(std::mem::size_of_val($v.as_slice()));
                for x in $v {
                    out.extend_from_slice(&x.to_le_bytes());
                }
            }};
        }
        match self {
            TensorData::Bool(v) => out.extend(v.iter().map(|b| u8::from(*b))),
            TensorData::Uint8(v) => out.extend_from_slice(v),
            TensorData::Int8(v) => out.extend(v.iter().map(|b| *b as u8)),
            TensorData::Uint16(v) | TensorData::Fp16(v) => put!(v),
            TensorData::Int16(v) => put!(v),
            TensorData::Uint32(v) => put!(v),
            TensorData::Int32(v) => put!(v),
            TensorData::Fp32(v) => put!(v),
            TensorData::Uint64(v) => put!(v),
            TensorData::Int64(v) => put!(v),
            TensorData::Fp64(v) => put!(v),
            TensorData::Bytes(v) => {
                for item in v {
                    // Elements over 4 GiB cannot be expressed in this layout; they are
                    // refused long before by the request size limit.
                    let len = u32::try_from(item.len()).unwrap_or(u32::MAX);
                    out.extend_from_slice(&len.to_le_bytes());
                    out.extend_from_slice(item);
                }
            }
        }
    }
}

fn decode_bytes(name: &str, count: usize, raw: &[u8]) -> Result<TensorData, TensorError> {
    let err = |reason| TensorError::BinaryBytes {
        name: name.to_string(),
        reason,
    };
    let mut items = Vec::with_capacity(count.min(raw.len() / 4 + 1));
    let mut rest = raw;
    while !rest.is_empty() {
        if rest.len() < 4 {
            return Err(err("truncated length prefix"));
        }
        let (len, tail) = rest.split_at(4);
        let len = u32::from_le_bytes([len[0], len[1], len[2], len[3]]) as usize;
        if tail.len() < len {
            return Err(err("element longer than the remaining data"));
        }
        let (item, tail) = tail.split_at(len);
        items.push(item.to_vec());
        rest = tail;
    }
    if items.len() != count {
        return Err(err("element count does not match the shape"));
    }
    Ok(TensorData::Bytes(items))
}

/// A named tensor.
#[derive(Clone, Debug, PartialEq)]
pub struct Tensor {
    pub name: String,
    pub shape: Vec<usize>,
    pub data: TensorData,
}

impl Tensor {
    /// Builds a tensor, checking that the shape holds exactly the given elements.
    pub fn new(
        name: impl Into<String>,
        shape: Vec<usize>,
        data: TensorData,
    ) -> Result<Tensor, TensorError> {
        let name = name.into();
        let expected = element_count(&shape);
        if expected != Some(data.len()) {
            return Err(TensorError::ShapeMismatch {
                name,
                expected: expected.unwrap_or(usize::MAX),
                actual: data.len(),
                shape,
            });
        }
        Ok(Tensor { name, shape, data })
    }

    /// The datatype of the elements.
    pub fn datatype(&self) -> DataType {
        self.data.datatype()
    }

    /// Size of the first dimension (the batch rows); 1 for a scalar.
    pub fn rows(&self) -> usize {
        self.shape.first().copied().unwrap_or(1)
    }
}

/// The number of elements a shape holds; `None` on overflow.
pub fn element_count(shape: &[usize]) -> Option<usize> {
    shape.iter().try_fold(1usize, |acc, d| acc.checked_mul(*d))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for d in DataType::ALL {
            assert_eq!(DataType::from_name(d.name()), Some(d));
        }
        assert_eq!(DataType::from_name("FLOAT"), None);
    }

    #[test]
    fn binary_round_trip_every_fixed_width_type() {
        let samples = [
            TensorData::Bool(vec![true, false, true]),
            TensorData::Uint8(vec![0, 7, 255]),
            TensorData::Uint16(vec![0, 7, u16::MAX]),
            TensorData::Uint32(vec![0, 7, u32::MAX]),
            TensorData::Uint64(vec![0, 7, u64::MAX]),
            TensorData::Int8(vec![i8::MIN, -1, i8::MAX]),
            TensorData::Int16(vec![i16::MIN, -1, i16::MAX]),
            TensorData::Int32(vec![i32::MIN, -1, i32::MAX]),
            TensorData::Int64(vec![i64::MIN, -1, i64::MAX]),
            TensorData::Fp16(vec![0x3c00, 0x0000, 0xc000]),
            TensorData::Fp32(vec![1.5, -0.0, f32::MAX]),
            TensorData::Fp64(vec![1.5, f64::MIN_POSITIVE, f64::MAX]),
            TensorData::Bytes(vec![b"a".to_vec(), vec![], b"\xff\x00".to_vec()]),
        ];
        for data in samples {
            let mut raw = Vec::new();
            data.write_le_bytes(&mut raw);
            let back = TensorData::from_le_bytes("x", data.datatype(), 3, &raw).unwrap();
            assert_eq!(back, data);
        }
    }

    #[test]
    fn binary_size_errors_are_reported() {
        let err = TensorData::from_le_bytes("x", DataType::Fp32, 3, &[0u8; 11]).unwrap_err();
        assert_eq!(
            err,
            TensorError::BinarySize {
                name: "x".into(),
                expected: 12,
                actual: 11
            }
        );
        for bad in [&[1u8, 0][..], &[5, 0, 0, 0, b'a'][..], &[0, 0, 0, 0][..]] {
            let err = TensorData::from_le_bytes("s", DataType::Bytes, 2, bad).unwrap_err();
            assert!(matches!(err, TensorError::BinaryBytes { .. }), "{bad:?}");
        }
    }

    #[test]
    fn shape_must_match_data() {
        assert!(Tensor::new("x", vec![2, 2], TensorData::Fp32(vec![1.0; 4])).is_ok());
        let err = Tensor::new("x", vec![2, 3], TensorData::Fp32(vec![1.0; 4])).unwrap_err();
        assert!(err.to_string().contains("6 elements"), "{err}");
        let huge = Tensor::new("x", vec![usize::MAX, 2], TensorData::Fp32(vec![]));
        assert!(huge.is_err());
    }

    #[test]
    fn extend_refuses_mixed_types() {
        let mut a = TensorData::Fp32(vec![1.0]);
        a.extend_from(&TensorData::Fp32(vec![2.0])).unwrap();
        assert_eq!(a, TensorData::Fp32(vec![1.0, 2.0]));
        assert_eq!(a.slice(1, 2), TensorData::Fp32(vec![2.0]));
        assert_eq!(
            a.extend_from(&TensorData::Int64(vec![1])),
            Err(TensorError::MixedTypes)
        );
    }
}
