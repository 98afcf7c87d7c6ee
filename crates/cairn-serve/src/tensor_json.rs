//! Tensor data in JSON: flattening (possibly nested) arrays straight into typed vectors,
//! and writing typed vectors back out, without building a `serde_json::Value` tree.

use std::fmt;

use cairn_infer::{DataType, TensorData};
use serde::de::{DeserializeSeed, SeqAccess, Visitor};
use serde::ser::{Serialize, SerializeSeq, Serializer};
use serde_json::value::RawValue;

/// A JSON scalar convertible to one element type; `None` when it does not fit.
trait Elem: Sized {
    const WHAT: &'static str;
    fn from_bool(_: bool) -> Option<Self> {
        None
    }
    fn from_i64(_: i64) -> Option<Self> {
        None
    }
    fn from_u64(_: u64) -> Option<Self> {
        None
    }
    fn from_f64(_: f64) -> Option<Self> {
        None
    }
    fn from_str(_: &str) -> Option<Self> {
        None
    }
}

impl Elem for bool {
    const WHAT: &'static str = "true or false";
    fn from_bool(b: bool) -> Option<Self> {
        Some(b)
    }
}

macro_rules! int_elem {
    ($($t:ty => $what:literal),*) => {$(
        impl Elem for $t {
            const WHAT: &'static str = $what;
            fn from_i64(v: i64) -> Option<Self> {
                <$t>::try_from(v).ok()
            }
            fn from_u64(v: u64) -> Option<Self> {
                <$t>::try_from(v).ok()
            }
        }
    )*};
}
int_elem!(
    u8 => "an integer in 0..=255",
    u16 => "an integer in 0..=65535",
    u32 => "an integer in 0..=4294967295",
    u64 => "a non-negative integer",
    i8 => "an integer in -128..=127",
    i16 => "an integer in -32768..=32767",
    i32 => "a 32-bit integer",
    i64 => "a 64-bit integer"
);

impl Elem for f32 {
    const WHAT: &'static str = "a number";
    fn from_i64(v: i64) -> Option<Self> {
        Some(v as f32)
    }
    fn from_u64(v: u64) -> Option<Self> {
        Some(v as f32)
    }
    fn from_f64(v: f64) -> Option<Self> {
        Some(v as f32)
    }
}

impl Elem for f64 {
    const WHAT: &'static str = "a number";
    fn from_i64(v: i64) -> Option<Self> {
        Some(v as f64)
    }
    fn from_u64(v: u64) -> Option<Self> {
        Some(v as f64)
    }
    fn from_f64(v: f64) -> Option<Self> {
        Some(v)
    }
}

/// FP16 elements, parsed as numbers and stored as half bits.
struct Half(u16);

impl Elem for Half {
    const WHAT: &'static str = "a number";
    fn from_i64(v: i64) -> Option<Self> {
        Some(Half(half::f16::from_f64(v as f64).to_bits()))
    }
    fn from_u64(v: u64) -> Option<Self> {
        Some(Half(half::f16::from_f64(v as f64).to_bits()))
    }
    fn from_f64(v: f64) -> Option<Self> {
        Some(Half(half::f16::from_f64(v).to_bits()))
    }
}

impl Elem for Vec<u8> {
    const WHAT: &'static str = "a string";
    fn from_str(s: &str) -> Option<Self> {
        Some(s.as_bytes().to_vec())
    }
}

/// Pushes every scalar of a (nested) array onto `out`.
struct Flat<'a, T>(&'a mut Vec<T>);

impl<'de, T: Elem> DeserializeSeed<'de> for Flat<'_, T> {
    type Value = ();
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de, T: Elem> Visitor<'de> for Flat<'_, T> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "an array of {}", T::WHAT)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let out = self.0;
        if let Some(n) = seq.size_hint() {
            out.reserve(n);
        }
        while seq.next_element_seed(Flat(&mut *out))?.is_some() {}
        Ok(())
    }

    fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<(), E> {
        push(self.0, T::from_bool(v), || v.to_string())
    }
    fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<(), E> {
        push(self.0, T::from_i64(v), || v.to_string())
    }
    fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<(), E> {
        push(self.0, T::from_u64(v), || v.to_string())
    }
    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<(), E> {
        push(self.0, T::from_f64(v), || v.to_string())
    }
    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<(), E> {
        push(self.0, T::from_str(v), || format!("{v:?}"))
    }
    fn visit_unit<E: serde::de::Error>(self) -> Result<(), E> {
        push(self.0, None, || "null".to_string())
    }
}

fn push<T: Elem, E: serde::de::Error>(
    out: &mut Vec<T>,
    v: Option<T>,
    shown: impl FnOnce() -> String,
) -> Result<(), E> {
    match v {
        Some(v) => {
            out.push(v);
            Ok(())
        }
        None => Err(E::custom(format!("expected {}, got {}", T::WHAT, shown()))),
    }
}

fn flatten<T: Elem>(raw: &RawValue) -> Result<Vec<T>, String> {
    let mut out = Vec::new();
    let mut de = serde_json::Deserializer::from_str(raw.get());
    Flat(&mut out)
        .deserialize(&mut de)
        .map_err(|e| strip_position(&e))?;
    Ok(out)
}

/// serde_json appends "at line 1 column N" of the *fragment*, which misleads; drop it.
fn strip_position(e: &serde_json::Error) -> String {
    let s = e.to_string();
    match s.find(" at line ") {
        Some(i) => s[..i].to_string(),
        None => s,
    }
}

/// Decodes a tensor's `data` (flat or nested, row-major) as `datatype`.
pub fn decode(datatype: DataType, raw: &RawValue) -> Result<TensorData, String> {
    Ok(match datatype {
        DataType::Bool => TensorData::Bool(flatten(raw)?),
        DataType::Uint8 => TensorData::Uint8(flatten(raw)?),
        DataType::Uint16 => TensorData::Uint16(flatten(raw)?),
        DataType::Uint32 => TensorData::Uint32(flatten(raw)?),
        DataType::Uint64 => TensorData::Uint64(flatten(raw)?),
        DataType::Int8 => TensorData::Int8(flatten(raw)?),
        DataType::Int16 => TensorData::Int16(flatten(raw)?),
        DataType::Int32 => TensorData::Int32(flatten(raw)?),
        DataType::Int64 => TensorData::Int64(flatten(raw)?),
        DataType::Fp16 => {
            TensorData::Fp16(flatten::<Half>(raw)?.into_iter().map(|h| h.0).collect())
        }
        DataType::Fp32 => TensorData::Fp32(flatten(raw)?),
        DataType::Fp64 => TensorData::Fp64(flatten(raw)?),
        DataType::Bytes => TensorData::Bytes(flatten(raw)?),
    })
}

/// Serializes tensor data as a flat JSON array (FP16 as numbers, BYTES as strings).
pub struct JsonData<'a>(pub &'a TensorData);

impl Serialize for JsonData<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            TensorData::Bool(v) => v.serialize(s),
            TensorData::Uint8(v) => v.serialize(s),
            TensorData::Uint16(v) => v.serialize(s),
            TensorData::Uint32(v) => v.serialize(s),
            TensorData::Uint64(v) => v.serialize(s),
            TensorData::Int8(v) => v.serialize(s),
            TensorData::Int16(v) => v.serialize(s),
            TensorData::Int32(v) => v.serialize(s),
            TensorData::Int64(v) => v.serialize(s),
            TensorData::Fp32(v) => v.serialize(s),
            TensorData::Fp64(v) => v.serialize(s),
            TensorData::Fp16(v) => {
                let mut seq = s.serialize_seq(Some(v.len()))?;
                for bits in v {
                    seq.serialize_element(&half::f16::from_bits(*bits).to_f32())?;
                }
                seq.end()
            }
            TensorData::Bytes(v) => {
                let mut seq = s.serialize_seq(Some(v.len()))?;
                for item in v {
                    seq.serialize_element(&String::from_utf8_lossy(item))?;
                }
                seq.end()
            }
        }
    }
}

/// Serializes tensor data as nested arrays following `shape` (a scalar for rank 0).
pub struct Nested<'a> {
    pub data: &'a TensorData,
    pub shape: &'a [usize],
    /// Write FP32 values as the f64 they widen to (`0.9815572500228882`), as MLflow's
    /// scoring server does, instead of their shortest f32 form (`0.98155725`).
    pub widen_f32: bool,
}

impl<'a> Nested<'a> {
    /// MLflow-style nesting with FP32 widened to f64.
    pub fn widened(data: &'a TensorData, shape: &'a [usize]) -> Nested<'a> {
        Nested {
            data,
            shape,
            widen_f32: true,
        }
    }
}

impl Serialize for Nested<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if self.shape.is_empty() {
            return Range(self.data, 0, 1, true, self.widen_f32).serialize(s);
        }
        NestedAt {
            data: self.data,
            shape: self.shape,
            offset: 0,
            widen: self.widen_f32,
        }
        .serialize(s)
    }
}

struct NestedAt<'a> {
    data: &'a TensorData,
    shape: &'a [usize],
    offset: usize,
    widen: bool,
}

impl Serialize for NestedAt<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let (first, rest) = match self.shape.split_first() {
            Some(split) => split,
            None => {
                return Range(self.data, self.offset, self.offset + 1, true, self.widen)
                    .serialize(s)
            }
        };
        if rest.is_empty() {
            return Range(
                self.data,
                self.offset,
                self.offset + first,
                false,
                self.widen,
            )
            .serialize(s);
        }
        let stride: usize = rest.iter().product();
        let mut seq = s.serialize_seq(Some(*first))?;
        for i in 0..*first {
            seq.serialize_element(&NestedAt {
                data: self.data,
                shape: rest,
                offset: self.offset + i * stride,
                widen: self.widen,
            })?;
        }
        seq.end()
    }
}

/// Elements `start..end` as an array, or the single element at `start` when `scalar`;
/// the last flag widens FP32 to f64.
struct Range<'a>(&'a TensorData, usize, usize, bool, bool);

impl Serialize for Range<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let Range(data, start, end, scalar, widen) = *self;
        macro_rules! out {
            ($v:expr, $conv:expr) => {{
                let items = &$v[start.min($v.len())..end.min($v.len())];
                if scalar {
                    match items.first() {
                        Some(x) => $conv(x).serialize(s),
                        None => s.serialize_unit(),
                    }
                } else {
                    let mut seq = s.serialize_seq(Some(items.len()))?;
                    for x in items {
                        seq.serialize_element(&$conv(x))?;
                    }
                    seq.end()
                }
            }};
        }
        match data {
            TensorData::Bool(v) => out!(v, |x: &bool| *x),
            TensorData::Uint8(v) => out!(v, |x: &u8| *x),
            TensorData::Uint16(v) => out!(v, |x: &u16| *x),
            TensorData::Uint32(v) => out!(v, |x: &u32| *x),
            TensorData::Uint64(v) => out!(v, |x: &u64| *x),
            TensorData::Int8(v) => out!(v, |x: &i8| *x),
            TensorData::Int16(v) => out!(v, |x: &i16| *x),
            TensorData::Int32(v) => out!(v, |x: &i32| *x),
            TensorData::Int64(v) => out!(v, |x: &i64| *x),
            TensorData::Fp16(v) => out!(v, |x: &u16| half::f16::from_bits(*x).to_f32()),
            TensorData::Fp32(v) if widen => out!(v, |x: &f32| f64::from(*x)),
            TensorData::Fp32(v) => out!(v, |x: &f32| *x),
            TensorData::Fp64(v) => out!(v, |x: &f64| *x),
            TensorData::Bytes(v) => out!(v, |x: &Vec<u8>| String::from_utf8_lossy(x).into_owned()),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn raw(s: &str) -> Box<RawValue> {
        RawValue::from_string(s.to_string()).unwrap()
    }

    #[test]
    fn flattens_nested_arrays_by_type() {
        assert_eq!(
            decode(DataType::Fp32, &raw("[[1, 2.5], [3e0, -4]]")).unwrap(),
            TensorData::Fp32(vec![1.0, 2.5, 3.0, -4.0])
        );
        assert_eq!(
            decode(DataType::Int64, &raw("[1, -2, 9007199254740993]")).unwrap(),
            TensorData::Int64(vec![1, -2, 9_007_199_254_740_993])
        );
        assert_eq!(
            decode(DataType::Bool, &raw("[true, false]")).unwrap(),
            TensorData::Bool(vec![true, false])
        );
        assert_eq!(
            decode(DataType::Bytes, &raw(r#"["a", "é"]"#)).unwrap(),
            TensorData::Bytes(vec![b"a".to_vec(), "é".as_bytes().to_vec()])
        );
        assert_eq!(
            decode(DataType::Fp16, &raw("[1.0, -2]")).unwrap(),
            TensorData::Fp16(vec![0x3c00, 0xc000])
        );
    }

    #[test]
    fn wrong_element_types_are_named() {
        let e = decode(DataType::Uint8, &raw("[1, 256]")).unwrap_err();
        assert_eq!(e, "expected an integer in 0..=255, got 256");
        let e = decode(DataType::Int32, &raw("[1.5]")).unwrap_err();
        assert_eq!(e, "expected a 32-bit integer, got 1.5");
        let e = decode(DataType::Fp32, &raw(r#"["x"]"#)).unwrap_err();
        assert_eq!(e, r#"expected a number, got "x""#);
        let e = decode(DataType::Fp32, &raw("[null]")).unwrap_err();
        assert_eq!(e, "expected a number, got null");
        let e = decode(DataType::Bool, &raw("[1]")).unwrap_err();
        assert_eq!(e, "expected true or false, got 1");
    }

    #[test]
    fn serializes_back() {
        let j = |d: &TensorData| serde_json::to_string(&JsonData(d)).unwrap();
        assert_eq!(j(&TensorData::Fp32(vec![1.5, -2.0])), "[1.5,-2.0]");
        assert_eq!(j(&TensorData::Fp16(vec![0x3c00])), "[1.0]");
        assert_eq!(j(&TensorData::Bytes(vec![b"hi".to_vec()])), r#"["hi"]"#);
        assert_eq!(
            j(&TensorData::Int64(vec![i64::MAX])),
            "[9223372036854775807]"
        );
    }

    #[test]
    fn nests_by_shape() {
        let data = TensorData::Int64((0..6).collect());
        let n = |shape: &[usize]| {
            let nested = Nested {
                data: &data,
                shape,
                widen_f32: false,
            };
            serde_json::to_string(&nested).unwrap()
        };
        assert_eq!(n(&[2, 3]), "[[0,1,2],[3,4,5]]");
        assert_eq!(n(&[3, 2, 1]), "[[[0],[1]],[[2],[3]],[[4],[5]]]");
        assert_eq!(n(&[6]), "[0,1,2,3,4,5]");
        assert_eq!(n(&[]), "0");
        assert_eq!(n(&[0, 3]), "[]");
        let f = TensorData::Fp32(vec![0.1]);
        let w = serde_json::to_string(&Nested::widened(&f, &[1])).unwrap();
        assert_eq!(w, "[0.10000000149011612]");
    }
}
