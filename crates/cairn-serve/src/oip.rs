//! Open Inference Protocol v2 over REST, with the binary tensor data extension.
//!
//! A binary request starts with `Inference-Header-Content-Length` bytes of JSON; inputs
//! whose `parameters.binary_data_size` is set take their bytes, in order, from the rest of
//! the body. Outputs are returned as binary when the request asks (`binary_data_output`,
//! or `binary_data` on a requested output).

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use cairn_infer::{Tensor, TensorData, TensorSpec};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{json, Map, Value};

use crate::metrics::Protocol;
use crate::models::Loaded;
use crate::serving::{ServeError, ServeState};
use crate::tensor_json::{self, JsonData};

/// The header that splits a binary body into JSON and tensor bytes.
pub const HEADER_LENGTH: &str = "inference-header-content-length";

/// The `/v2` routes.
pub fn routes() -> Router<ServeState> {
    Router::new()
        .route("/v2", get(server_metadata))
        .route("/v2/health/live", get(live))
        .route("/v2/health/ready", get(ready))
        .route("/v2/models/{name}", get(model_metadata))
        .route(
            "/v2/models/{name}/versions/{version}",
            get(model_version_metadata),
        )
        .route("/v2/models/{name}/ready", get(model_ready))
        .route(
            "/v2/models/{name}/versions/{version}/ready",
            get(model_version_ready),
        )
        .route("/v2/models/{name}/infer", post(infer))
        .route(
            "/v2/models/{name}/versions/{version}/infer",
            post(infer_version),
        )
}

/// An OIP error: `{"error": "..."}` with the status.
#[derive(Debug)]
pub struct OipError(pub ServeError);

impl From<ServeError> for OipError {
    fn from(e: ServeError) -> Self {
        OipError(e)
    }
}

impl IntoResponse for OipError {
    fn into_response(self) -> Response {
        error_response(&self.0)
    }
}

/// The OIP rendering of a serving error.
pub fn error_response(e: &ServeError) -> Response {
    let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::BAD_REQUEST);
    let mut resp = (status, Json(json!({ "error": e.to_string() }))).into_response();
    if status == StatusCode::SERVICE_UNAVAILABLE {
        resp.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    resp
}

fn bad(msg: impl Into<String>) -> OipError {
    OipError(ServeError::BadInput(msg.into()))
}

async fn server_metadata() -> Json<Value> {
    Json(json!({
        "name": "cairn",
        "version": env!("CARGO_PKG_VERSION"),
        "extensions": ["binary_tensor_data"],
    }))
}

async fn live() -> Json<Value> {
    Json(json!({ "live": true }))
}

async fn ready(State(s): State<ServeState>) -> Response {
    let ready = s.models.all_ready();
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(json!({ "ready": ready }))).into_response()
}

fn specs(specs: &[TensorSpec]) -> Vec<Value> {
    specs
        .iter()
        .map(|s| json!({ "name": s.name, "datatype": s.datatype.name(), "shape": s.shape }))
        .collect()
}

fn metadata(loaded: &Loaded) -> Json<Value> {
    Json(json!({
        "name": loaded.name,
        "versions": [loaded.version],
        "platform": loaded.platform(),
        "inputs": specs(&loaded.signature.inputs),
        "outputs": specs(&loaded.signature.outputs),
    }))
}

async fn model_metadata(
    State(s): State<ServeState>,
    Path(name): Path<String>,
) -> Result<Json<Value>, OipError> {
    Ok(metadata(&*s.loaded(&name, None)?))
}

async fn model_version_metadata(
    State(s): State<ServeState>,
    Path((name, version)): Path<(String, String)>,
) -> Result<Json<Value>, OipError> {
    Ok(metadata(&*s.loaded(&name, Some(&version))?))
}

fn readiness(s: &ServeState, name: &str, version: Option<&str>) -> Response {
    match s.loaded(name, version) {
        Ok(_) => Json(json!({ "name": name, "ready": true })).into_response(),
        Err(e @ ServeError::NotReady(..)) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "name": name, "ready": false, "error": e.to_string() })),
        )
            .into_response(),
        Err(e) => error_response(&e),
    }
}

async fn model_ready(State(s): State<ServeState>, Path(name): Path<String>) -> Response {
    readiness(&s, &name, None)
}

async fn model_version_ready(
    State(s): State<ServeState>,
    Path((name, version)): Path<(String, String)>,
) -> Response {
    readiness(&s, &name, Some(&version))
}

#[derive(Deserialize)]
struct InferRequest<'a> {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    parameters: Option<Map<String, Value>>,
    #[serde(borrow)]
    inputs: Vec<RequestInput<'a>>,
    #[serde(default)]
    outputs: Option<Vec<RequestOutput>>,
}

#[derive(Deserialize)]
struct RequestInput<'a> {
    name: String,
    shape: Vec<i64>,
    datatype: String,
    #[serde(default)]
    parameters: Option<Map<String, Value>>,
    #[serde(borrow, default)]
    data: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct RequestOutput {
    name: String,
    #[serde(default)]
    parameters: Option<Map<String, Value>>,
}

#[derive(Serialize)]
struct InferResponse<'a> {
    model_name: &'a str,
    model_version: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'a str>,
    outputs: Vec<ResponseOutput<'a>>,
}

#[derive(Serialize)]
struct ResponseOutput<'a> {
    name: &'a str,
    datatype: &'static str,
    shape: &'a [usize],
    #[serde(skip_serializing_if = "Option::is_none")]
    parameters: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<JsonData<'a>>,
}

fn param_bool(params: &Option<Map<String, Value>>, key: &str) -> bool {
    params
        .as_ref()
        .and_then(|p| p.get(key))
        .and_then(Value::as_bool)
        .unwrap_or(false)
}

/// Splits a body into its JSON part and its binary tail.
fn split_body<'b>(headers: &HeaderMap, body: &'b [u8]) -> Result<(&'b [u8], &'b [u8]), OipError> {
    let Some(value) = headers.get(HEADER_LENGTH) else {
        return Ok((body, &[]));
    };
    let len: usize = value
        .to_str()
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| bad("Inference-Header-Content-Length must be a non-negative integer"))?;
    if len > body.len() {
        return Err(bad(format!(
            "Inference-Header-Content-Length is {len} but the body has only {} bytes",
            body.len()
        )));
    }
    Ok(body.split_at(len))
}

/// Decodes the inputs of an infer request (JSON data or binary tail).
fn decode_inputs(inputs: &[RequestInput<'_>], mut binary: &[u8]) -> Result<Vec<Tensor>, OipError> {
    let mut tensors = Vec::with_capacity(inputs.len());
    for input in inputs {
        let (datatype, shape, count) =
            crate::serving::input_header(&input.name, &input.datatype, &input.shape)?;
        let binary_size = input
            .parameters
            .as_ref()
            .and_then(|p| p.get("binary_data_size"));
        let data = match (binary_size, input.data) {
            (Some(size), data) => {
                if data.is_some() {
                    return Err(bad(format!(
                        "input '{}' has both binary_data_size and JSON data",
                        input.name
                    )));
                }
                let size = size
                    .as_u64()
                    .and_then(|s| usize::try_from(s).ok())
                    .ok_or_else(|| {
                        bad(format!(
                            "input '{}': binary_data_size must be a non-negative integer",
                            input.name
                        ))
                    })?;
                if size > binary.len() {
                    return Err(bad(format!(
                        "input '{}' declares {size} binary bytes but only {} remain in the body",
                        input.name,
                        binary.len()
                    )));
                }
                let (mine, rest) = binary.split_at(size);
                binary = rest;
                TensorData::from_le_bytes(&input.name, datatype, count, mine)
                    .map_err(|e| bad(e.to_string()))?
            }
            (None, Some(raw)) => tensor_json::decode(datatype, raw)
                .map_err(|e| bad(format!("input '{}' data: {e}", input.name)))?,
            (None, None) => {
                return Err(bad(format!(
                    "input '{}' has neither data nor binary_data_size",
                    input.name
                )))
            }
        };
        tensors.push(Tensor::new(&input.name, shape, data).map_err(|e| bad(e.to_string()))?);
    }
    if !binary.is_empty() {
        return Err(bad(format!(
            "{} bytes of binary data follow the inputs that declared binary_data_size",
            binary.len()
        )));
    }
    Ok(tensors)
}

async fn infer(
    State(s): State<ServeState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, OipError> {
    let body = s.body(body)?;
    run_infer(s, name, None, headers, body).await
}

async fn infer_version(
    State(s): State<ServeState>,
    Path((name, version)): Path<(String, String)>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, OipError> {
    let body = s.body(body)?;
    run_infer(s, name, Some(version), headers, body).await
}

async fn run_infer(
    s: ServeState,
    name: String,
    version: Option<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, OipError> {
    let loaded = s.loaded(&name, version.as_deref())?;
    let (json_part, binary) = split_body(&headers, &body)?;
    let request: InferRequest<'_> = serde_json::from_slice(json_part)
        .map_err(|e| bad(format!("malformed inference request: {e}")))?;
    let inputs = decode_inputs(&request.inputs, binary)?;
    let params = request
        .parameters
        .as_ref()
        .and_then(|p| crate::serving::model_params(p.iter().map(|(k, v)| (k, v.clone()))));
    let outputs = s
        .infer_with_params(&loaded, inputs, params, Protocol::V2)
        .await?;
    respond(&loaded, &request, &outputs)
}

/// Renders outputs, filtered and binary-encoded as the request asked.
fn respond(
    loaded: &Loaded,
    request: &InferRequest<'_>,
    outputs: &[Tensor],
) -> Result<Response, OipError> {
    let all_binary = param_bool(&request.parameters, "binary_data_output");
    // Which outputs, in which order, and which of them as binary.
    let wanted: Vec<(&Tensor, bool)> = match &request.outputs {
        Some(requested) if !requested.is_empty() => requested
            .iter()
            .map(|r| {
                let t = crate::serving::find_output(outputs, &r.name)?;
                Ok((t, all_binary || param_bool(&r.parameters, "binary_data")))
            })
            .collect::<Result<_, OipError>>()?,
        _ => outputs.iter().map(|t| (t, all_binary)).collect(),
    };
    let mut binary = Vec::new();
    let rendered = wanted
        .iter()
        .map(|(t, as_binary)| {
            if *as_binary {
                let before = binary.len();
                t.data.write_le_bytes(&mut binary);
                ResponseOutput {
                    name: &t.name,
                    datatype: t.datatype().name(),
                    shape: &t.shape,
                    parameters: Some(json!({ "binary_data_size": binary.len() - before })),
                    data: None,
                }
            } else {
                ResponseOutput {
                    name: &t.name,
                    datatype: t.datatype().name(),
                    shape: &t.shape,
                    parameters: None,
                    data: Some(JsonData(&t.data)),
                }
            }
        })
        .collect();
    let response = InferResponse {
        model_name: &loaded.name,
        model_version: &loaded.version,
        id: request.id.as_deref(),
        outputs: rendered,
    };
    let mut body = serde_json::to_vec(&response).map_err(|e| {
        OipError(ServeError::Engine(format!(
            "cannot encode the response: {e}"
        )))
    })?;
    if binary.is_empty() {
        return Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response());
    }
    let json_len = body.len();
    body.extend_from_slice(&binary);
    Ok((
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/octet-stream"),
            ),
            (
                header::HeaderName::from_static(HEADER_LENGTH),
                HeaderValue::from(json_len),
            ),
        ],
        body,
    )
        .into_response())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn parse(json: &str) -> InferRequest<'_> {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn decodes_json_and_binary_inputs() {
        let req = parse(
            r#"{"inputs":[{"name":"a","shape":[1,2],"datatype":"FP32","data":[[1,2]]},
                {"name":"b","shape":[2],"datatype":"INT64","parameters":{"binary_data_size":16}}]}"#,
        );
        let mut tail = Vec::new();
        TensorData::Int64(vec![7, -7]).write_le_bytes(&mut tail);
        let t = decode_inputs(&req.inputs, &tail).unwrap();
        assert_eq!(t[0].data, TensorData::Fp32(vec![1.0, 2.0]));
        assert_eq!(t[1].data, TensorData::Int64(vec![7, -7]));
    }

    #[test]
    fn refuses_each_malformed_input() {
        let cases = [
            (
                r#"{"inputs":[{"name":"a","shape":[2],"datatype":"FLOAT","data":[1,2]}]}"#,
                &[][..],
                "unknown datatype 'FLOAT'",
            ),
            (
                r#"{"inputs":[{"name":"a","shape":[-2],"datatype":"FP32","data":[1,2]}]}"#,
                &[][..],
                "negative dimension",
            ),
            (
                r#"{"inputs":[{"name":"a","shape":[3],"datatype":"FP32","data":[1,2]}]}"#,
                &[][..],
                "(3 elements) but 2 values",
            ),
            (
                r#"{"inputs":[{"name":"a","shape":[2],"datatype":"FP32"}]}"#,
                &[][..],
                "neither data nor binary_data_size",
            ),
            (
                r#"{"inputs":[{"name":"a","shape":[2],"datatype":"FP32","parameters":{"binary_data_size":8}}]}"#,
                &[0u8; 4][..],
                "only 4 remain",
            ),
            (
                r#"{"inputs":[{"name":"a","shape":[2],"datatype":"FP32","parameters":{"binary_data_size":4}}]}"#,
                &[0u8; 4][..],
                "expected 8",
            ),
            (
                r#"{"inputs":[{"name":"a","shape":[1],"datatype":"FP32","data":[1]}]}"#,
                &[0u8; 4][..],
                "4 bytes of binary data follow",
            ),
            (
                r#"{"inputs":[{"name":"a","shape":[1],"datatype":"INT8","data":[300]}]}"#,
                &[][..],
                "expected an integer in -128..=127, got 300",
            ),
        ];
        for (json, tail, needle) in cases {
            let req = parse(json);
            let err = match decode_inputs(&req.inputs, tail) {
                Ok(_) => panic!("accepted, expected: {needle}"),
                Err(e) => e.0.to_string(),
            };
            assert!(err.contains(needle), "{err} does not contain {needle}");
        }
    }

    #[test]
    fn header_length_is_checked() {
        let mut h = HeaderMap::new();
        h.insert(HEADER_LENGTH, HeaderValue::from_static("10"));
        assert!(split_body(&h, b"short").is_err());
        h.insert(HEADER_LENGTH, HeaderValue::from_static("x"));
        assert!(split_body(&h, b"short").is_err());
        h.insert(HEADER_LENGTH, HeaderValue::from_static("2"));
        assert_eq!(
            split_body(&h, b"{}ab").ok().unwrap(),
            (&b"{}"[..], &b"ab"[..])
        );
    }
}
