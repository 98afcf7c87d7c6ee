//! The request extractor: GET fields come from the query string, everything else from a
//! JSON body (DELETE included). Malformed input becomes an MLflow JSON error naming the
//! offending field, never axum's plain-text rejection.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::Method;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use crate::error::ApiError;

/// A request message of type `T`.
#[derive(Debug)]
pub struct Mlflow<T>(pub T);

/// Like [`Mlflow`], refusing bodies over `MAX` bytes with MLflow's batch-size message.
#[derive(Debug)]
pub struct LimitedMlflow<T, const MAX: usize>(pub T);

/// Turns `a=1&b=2&b=3` into `{"a": "1", "b": ["2", "3"]}`.
fn query_to_json(query: &str) -> Value {
    let mut map: Map<String, Value> = Map::new();
    for (k, v) in form_urlencoded_pairs(query) {
        match map.get_mut(&k) {
            Some(Value::Array(items)) => items.push(Value::String(v)),
            Some(existing) => {
                let first = existing.take();
                *existing = Value::Array(vec![first, Value::String(v)]);
            }
            None => {
                map.insert(k, Value::String(v));
            }
        }
    }
    Value::Object(map)
}

fn form_urlencoded_pairs(query: &str) -> Vec<(String, String)> {
    serde_urlencoded::from_str::<Vec<(String, String)>>(query).unwrap_or_default()
}

/// The error for a field that does not decode, naming its path.
fn bad_field<E: std::fmt::Display>(e: &serde_path_to_error::Error<E>) -> ApiError {
    ApiError::invalid(format!(
        "Invalid value for parameter '{}' supplied: {}",
        e.path(),
        e.inner()
    ))
}

/// Decodes `T` from JSON, reporting the path of the first bad field.
pub fn decode<T: DeserializeOwned>(value: Value) -> Result<T, ApiError> {
    serde_path_to_error::deserialize(value).map_err(|e| bad_field(&e))
}

fn malformed(e: &serde_json::Error) -> ApiError {
    ApiError::invalid(format!("Malformed JSON in request body: {e}"))
}

/// Decodes `T` straight from a JSON object's bytes, without building a `Value` tree
/// first (a 1000-metric batch decodes in half the time). Anything that is not an
/// object goes through the `Value` path, which words those errors.
fn decode_body<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        let value: Value = serde_json::from_slice(bytes).map_err(|e| malformed(&e))?;
        if !value.is_object() {
            return Err(ApiError::invalid(
                "Malformed request body: expected a JSON object",
            ));
        }
        return decode(value);
    }
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let decoded = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        if e.inner().is_data() {
            // The field path already says where; drop serde_json's line/column suffix so
            // the message is the same as for query strings.
            let inner = e.inner();
            let text = inner.to_string();
            let suffix = format!(" at line {} column {}", inner.line(), inner.column());
            let text = text.strip_suffix(&suffix).unwrap_or(&text);
            ApiError::invalid(format!(
                "Invalid value for parameter '{}' supplied: {text}",
                e.path()
            ))
        } else {
            malformed(e.inner())
        }
    })?;
    de.end().map_err(|e| malformed(&e))?;
    Ok(decoded)
}

fn too_large(max: usize, size: &str) -> ApiError {
    ApiError::invalid(format!(
        "Batched logging API requests must be at most {max} bytes, got a request of size {size}."
    ))
}

/// Reads at most `max` bytes: a declared larger body is refused before reading, and a
/// chunked one as soon as it passes the limit, so oversized batches cost no memory.
async fn read_limited(req: Request, max: usize) -> Result<Bytes, ApiError> {
    let declared = req
        .headers()
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if let Some(len) = declared.filter(|len| *len > max as u64) {
        return Err(too_large(max, &len.to_string()));
    }
    axum::body::to_bytes(req.into_body(), max)
        .await
        .map_err(|_| too_large(max, &format!("over {max}")))
}

async fn extract<T: DeserializeOwned>(req: Request, max: Option<usize>) -> Result<T, ApiError> {
    if req.method() == Method::GET {
        let query = req.uri().query().unwrap_or("");
        return decode(query_to_json(query));
    }
    let bytes = match max {
        Some(max) => read_limited(req, max).await?,
        None => Bytes::from_request(req, &())
            .await
            .map_err(|e| ApiError::invalid(format!("Could not read request body: {e}")))?,
    };
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return decode(Value::Object(Map::new()));
    }
    decode_body(&bytes)
}

impl<S, T> FromRequest<S> for Mlflow<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, _state: &S) -> Result<Self, Self::Rejection> {
        extract(req, None).await.map(Mlflow)
    }
}

impl<S, T, const MAX: usize> FromRequest<S> for LimitedMlflow<T, MAX>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, _state: &S) -> Result<Self, Self::Rejection> {
        extract(req, Some(MAX)).await.map(LimitedMlflow)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn query_lists_and_scalars() {
        let v = query_to_json("run_id=a&run_id=b&metric_key=loss%20x&max_results=5");
        assert_eq!(v["run_id"], serde_json::json!(["a", "b"]));
        assert_eq!(v["metric_key"], "loss x");
        assert_eq!(v["max_results"], "5");
    }

    #[derive(Debug, serde::Deserialize)]
    struct Probe {
        #[serde(default)]
        items: Vec<Item>,
    }

    #[derive(Debug, serde::Deserialize)]
    struct Item {
        #[serde(deserialize_with = "cairn_api::de::opt_f64", default)]
        v: Option<f64>,
    }

    fn message(e: ApiError) -> String {
        format!("{e:?}")
    }

    #[test]
    fn body_decodes_without_value_tree() {
        let p: Probe = decode_body(br#" {"items": [{"v": 1.5}, {"v": "NaN"}, {}]} "#).unwrap();
        assert_eq!(p.items.len(), 3);
        assert_eq!(p.items[0].v, Some(1.5));
        assert!(p.items[1].v.is_some_and(f64::is_nan));
        assert_eq!(p.items[2].v, None);
    }

    #[test]
    fn body_errors_name_the_problem() {
        let bad_field = message(decode_body::<Probe>(br#"{"items": [{"v": true}]}"#).unwrap_err());
        assert!(bad_field.contains("items[0].v"), "{bad_field}");
        assert!(!bad_field.contains("column"), "{bad_field}");
        let truncated = message(decode_body::<Probe>(br#"{"items": [{"v": 1"#).unwrap_err());
        assert!(truncated.contains("Malformed JSON"), "{truncated}");
        let trailing = message(decode_body::<Probe>(br#"{"items": []} x"#).unwrap_err());
        assert!(trailing.contains("Malformed JSON"), "{trailing}");
        let array = message(decode_body::<Probe>(b"[1]").unwrap_err());
        assert!(array.contains("expected a JSON object"), "{array}");
        let garbage = message(decode_body::<Probe>(b"nope").unwrap_err());
        assert!(garbage.contains("Malformed JSON"), "{garbage}");
    }
}
