//! Lenient decoders for protobuf-JSON: int64 may arrive as a number or a string, doubles
//! as numbers or "NaN"/"Infinity" strings, and query-string lists as one value or many.

use std::fmt;

use serde::de::{self, Deserializer, SeqAccess, Visitor};

/// The methods every lenient visitor shares: JSON null (or an absent optional) decodes to
/// `$empty`, and a present value is handed back to the same visitor.
macro_rules! null_means {
    ($de:lifetime, $empty:expr) => {
        fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok($empty)
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok($empty)
        }
        fn visit_some<D: Deserializer<$de>>(self, d: D) -> Result<Self::Value, D::Error> {
            d.deserialize_any(self)
        }
    };
}

/// Accepts null/absent, integers, integral floats and numeric strings.
struct I64Visitor;

impl<'de> Visitor<'de> for I64Visitor {
    type Value = Option<i64>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an integer (or a string holding one)")
    }
    null_means!('de, None);
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        Ok(Some(v))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        i64::try_from(v)
            .map(Some)
            .map_err(|_| E::custom(format!("{v} does not fit in a 64-bit integer")))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
        if v.fract() == 0.0 && v.abs() < 9.2e18 {
            Ok(Some(v as i64))
        } else {
            Err(E::custom(format!("expected an integer, got {v}")))
        }
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        if v.is_empty() {
            return Ok(None);
        }
        v.trim()
            .parse::<i64>()
            .map(Some)
            .map_err(|_| E::custom(format!("expected an integer, got \"{v}\"")))
    }
}

/// An optional int64 given as a number or a numeric string.
pub fn opt_i64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    d.deserialize_option(I64Visitor)
}

/// Accepts null/absent, numbers, numeric strings and NaN/Infinity spelled out.
struct F64Visitor;

impl<'de> Visitor<'de> for F64Visitor {
    type Value = Option<f64>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a number (or \"NaN\", \"Infinity\", \"-Infinity\")")
    }
    null_means!('de, None);
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        Ok(Some(v as f64))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        Ok(Some(v as f64))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
        Ok(Some(v))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        match v.trim() {
            "NaN" | "nan" => Ok(Some(f64::NAN)),
            "Infinity" | "inf" | "+Infinity" => Ok(Some(f64::INFINITY)),
            "-Infinity" | "-inf" => Ok(Some(f64::NEG_INFINITY)),
            other => other
                .parse::<f64>()
                .map(Some)
                .map_err(|_| E::custom(format!("expected a number, got \"{v}\""))),
        }
    }
}

/// An optional double given as a number, a numeric string, or NaN/Infinity spelled out.
pub fn opt_f64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
    d.deserialize_option(F64Visitor)
}

/// Accepts null/absent, booleans and "true"/"false" in any case.
struct BoolVisitor;

impl<'de> Visitor<'de> for BoolVisitor {
    type Value = Option<bool>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a boolean")
    }
    null_means!('de, None);
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
        Ok(Some(v))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        match v.to_ascii_lowercase().as_str() {
            "true" => Ok(Some(true)),
            "false" => Ok(Some(false)),
            _ => Err(E::invalid_value(de::Unexpected::Str(v), &self)),
        }
    }
}

/// An optional boolean given as `true`/`false` or their string forms.
pub fn opt_bool<'de, D: Deserializer<'de>>(d: D) -> Result<Option<bool>, D::Error> {
    d.deserialize_option(BoolVisitor)
}

/// Accepts a string or an integer as text: MLflow stringifies numeric experiment ids.
struct IdVisitor;

impl<'de> Visitor<'de> for IdVisitor {
    type Value = Option<String>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a string or an integer")
    }
    null_means!('de, None);
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        Ok(Some(v.to_string()))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        Ok(Some(v.to_string()))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Some(v.to_string()))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
        Ok(Some(v))
    }
}

/// An optional id given as a string or an integer.
pub fn opt_id<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    d.deserialize_option(IdVisitor)
}

/// A list of strings (or integers, kept as text); a lone value is a one-item list, which
/// is what a query string with one occurrence of the key yields.
struct ListVisitor;

impl<'de> Visitor<'de> for ListVisitor {
    type Value = Vec<String>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a list of strings")
    }
    null_means!('de, Vec::new());
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(vec![v.to_string()])
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        Ok(vec![v.to_string()])
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        Ok(vec![v.to_string()])
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut out = Vec::new();
        while let Some(item) = seq.next_element_seed(ItemSeed)? {
            out.push(item);
        }
        Ok(out)
    }
}

/// One list item: a string or an integer.
struct ItemSeed;

impl<'de> de::DeserializeSeed<'de> for ItemSeed {
    type Value = String;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<String, D::Error> {
        d.deserialize_any(IdVisitor)?
            .ok_or_else(|| de::Error::custom("expected a string, got null"))
    }
}

/// A list of strings; a query string with one occurrence yields a single string.
pub fn string_list<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    d.deserialize_option(ListVisitor)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Deserialize)]
    struct T {
        #[serde(default, deserialize_with = "opt_i64")]
        i: Option<i64>,
        #[serde(default, deserialize_with = "opt_f64")]
        f: Option<f64>,
        #[serde(default, deserialize_with = "string_list")]
        l: Vec<String>,
        #[serde(default, deserialize_with = "opt_bool")]
        b: Option<bool>,
    }

    fn parse(s: &str) -> Result<T, serde_json::Error> {
        serde_json::from_str(s)
    }

    #[test]
    fn lenient_numbers() {
        let t = parse(r#"{"i": "42", "f": "NaN", "l": "a", "b": "true"}"#).ok();
        let t = t.as_ref();
        assert_eq!(t.and_then(|t| t.i), Some(42));
        assert!(t.and_then(|t| t.f).is_some_and(f64::is_nan));
        assert_eq!(t.map(|t| t.l.clone()), Some(vec!["a".to_string()]));
        assert_eq!(t.and_then(|t| t.b), Some(true));
        let t = parse(r#"{"i": 7, "f": "-Infinity", "l": ["a", "b"]}"#).ok();
        assert_eq!(t.as_ref().and_then(|t| t.f), Some(f64::NEG_INFINITY));
        assert!(parse(r#"{"i": "x"}"#).is_err());
        assert!(parse(r#"{"i": 1.5}"#).is_err());
        assert!(parse(r#"{"f": "abc"}"#).is_err());
        let err = parse(r#"{"i": true}"#)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("expected an integer"), "{err}");
        assert!(parse(r#"{"l": 5}"#).is_ok());
        assert!(parse(r#"{"l": [1, "a"]}"#).is_ok());
        assert!(parse(r#"{"l": {"a": 1}}"#).is_err());
    }
}
