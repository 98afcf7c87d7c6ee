//! Lenient decoders for protobuf-JSON: int64 may arrive as a number or a string, doubles
//! as numbers or "NaN"/"Infinity" strings, and query-string lists as one value or many.

use serde::de::{self, Deserializer};
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(untagged)]
enum NumOrStr {
    I(i64),
    F(f64),
    S(String),
}

/// An optional int64 given as a number or a numeric string.
pub fn opt_i64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    match Option::<NumOrStr>::deserialize(d)? {
        None => Ok(None),
        Some(NumOrStr::I(i)) => Ok(Some(i)),
        Some(NumOrStr::F(f)) if f.fract() == 0.0 && f.abs() < 9.2e18 => Ok(Some(f as i64)),
        Some(NumOrStr::F(f)) => Err(de::Error::custom(format!("expected an integer, got {f}"))),
        Some(NumOrStr::S(s)) if s.is_empty() => Ok(None),
        Some(NumOrStr::S(s)) => s
            .trim()
            .parse::<i64>()
            .map(Some)
            .map_err(|_| de::Error::custom(format!("expected an integer, got \"{s}\""))),
    }
}

/// An optional double given as a number, a numeric string, or NaN/Infinity spelled out.
pub fn opt_f64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
    match Option::<NumOrStr>::deserialize(d)? {
        None => Ok(None),
        Some(NumOrStr::I(i)) => Ok(Some(i as f64)),
        Some(NumOrStr::F(f)) => Ok(Some(f)),
        Some(NumOrStr::S(s)) => match s.trim() {
            "NaN" | "nan" => Ok(Some(f64::NAN)),
            "Infinity" | "inf" | "+Infinity" => Ok(Some(f64::INFINITY)),
            "-Infinity" | "-inf" => Ok(Some(f64::NEG_INFINITY)),
            other => other
                .parse::<f64>()
                .map(Some)
                .map_err(|_| de::Error::custom(format!("expected a number, got \"{s}\""))),
        },
    }
}

#[derive(Deserialize)]
#[serde(untagged)]
enum BoolOrStr {
    B(bool),
    S(String),
}

/// An optional boolean given as `true`/`false` or their string forms.
pub fn opt_bool<'de, D: Deserializer<'de>>(d: D) -> Result<Option<bool>, D::Error> {
    match Option::<BoolOrStr>::deserialize(d)? {
        None => Ok(None),
        Some(BoolOrStr::B(b)) => Ok(Some(b)),
        Some(BoolOrStr::S(s)) => match s.to_ascii_lowercase().as_str() {
            "true" => Ok(Some(true)),
            "false" => Ok(Some(false)),
            _ => Err(de::Error::custom(format!(
                "expected a boolean, got \"{s}\""
            ))),
        },
    }
}

#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

/// A list of strings; a query string with one occurrence yields a single string.
pub fn string_list<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    Ok(match Option::<OneOrMany>::deserialize(d)? {
        None => Vec::new(),
        Some(OneOrMany::One(s)) => vec![s],
        Some(OneOrMany::Many(v)) => v,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert!(parse(r#"{"i": true}"#).is_err());
    }
}
