//! MLflow's scoring protocol: `/invocations`, `/ping`, `/health`, `/version`.
//!
//! Every served model answers at `/invocations` when the server serves exactly one, and
//! at `/models/<name>/invocations` always. Inputs (`dataframe_split`,
//! `dataframe_records`, `instances`, `inputs`, CSV) are converted to the model's tensors
//! the way MLflow's ONNX flavor feeds them: a dataframe becomes one `[rows, columns]`
//! matrix for a single-input model, or one column per input name.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use cairn_infer::{DataType, Tensor, TensorData, TensorSpec};
use serde::ser::{SerializeMap, SerializeSeq, Serializer};
use serde::Serialize;
use serde_json::{json, Value};

use crate::metrics::Protocol;
use crate::models::Loaded;
use crate::serving::{ServeError, ServeState};
use crate::tensor_json::Nested;

const FORMATS: [&str; 4] = [
    "dataframe_split",
    "dataframe_records",
    "instances",
    "inputs",
];
const REQUIRED_INPUT_FORMAT: &str = "The input must be a JSON dictionary with exactly one of \
    the input fields {'dataframe_split', 'dataframe_records', 'inputs', 'instances'}";

/// The scoring routes.
pub fn routes() -> Router<ServeState> {
    Router::new()
        .route("/ping", get(ping))
        .route("/health", get(ping))
        .route("/version", get(version))
        .route("/invocations", post(invocations))
        .route("/models/{name}/invocations", post(invocations_named))
}

/// An error in MLflow's format: `{"error_code": ..., "message": ...}`.
struct MlflowError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl MlflowError {
    fn bad(message: impl Into<String>) -> MlflowError {
        MlflowError {
            status: StatusCode::BAD_REQUEST,
            code: "BAD_REQUEST",
            message: message.into(),
        }
    }
}

impl From<ServeError> for MlflowError {
    fn from(e: ServeError) -> Self {
        let code = match &e {
            ServeError::UnknownModel(_) | ServeError::UnknownVersion { .. } => {
                "RESOURCE_DOES_NOT_EXIST"
            }
            ServeError::BadInput(_) => "INVALID_PARAMETER_VALUE",
            ServeError::TooLarge(_) => "BAD_REQUEST",
            ServeError::Engine(_) => "BAD_REQUEST",
            ServeError::Timeout(_) => "DEADLINE_EXCEEDED",
            ServeError::NotReady(..) | ServeError::Overloaded(_) | ServeError::Unavailable(_) => {
                "TEMPORARILY_UNAVAILABLE"
            }
        };
        MlflowError {
            status: StatusCode::from_u16(e.status()).unwrap_or(StatusCode::BAD_REQUEST),
            code,
            message: e.to_string(),
        }
    }
}

impl IntoResponse for MlflowError {
    fn into_response(self) -> Response {
        let mut resp = (
            self.status,
            Json(json!({ "error_code": self.code, "message": self.message })),
        )
            .into_response();
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
        }
        resp
    }
}

async fn ping(State(s): State<ServeState>) -> Response {
    let status = if s.models.all_ready() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, [(header::CONTENT_TYPE, "application/json")], "\n").into_response()
}

async fn version() -> &'static str {
    env!("CARGO_PKG_VERSION")
}

async fn invocations(
    State(s): State<ServeState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let mut names = s.models.all().map(|slot| slot.name.clone());
    let name = match (names.next(), names.next()) {
        (Some(only), None) => only,
        _ => {
            return MlflowError::bad(
                "this server serves several models: POST to /models/<name>/invocations",
            )
            .into_response()
        }
    };
    score(&s, &name, &headers, body)
        .await
        .unwrap_or_else(IntoResponse::into_response)
}

async fn invocations_named(
    State(s): State<ServeState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    score(&s, &name, &headers, body)
        .await
        .unwrap_or_else(IntoResponse::into_response)
}

async fn score(
    s: &ServeState,
    name: &str,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, MlflowError> {
    let loaded = s.loaded(name, None)?;
    let body = s.body(body)?;
    let (input, params) = parse_body(headers, &body)?;
    let (tensors, frame) = to_tensors(input, &loaded.signature.inputs)?;
    let outputs = s
        .infer_with_params(&loaded, tensors, params, Protocol::Invocations)
        .await?;
    render(&loaded, &outputs, frame)
}

/// A request body after parsing, before it meets the signature.
#[derive(Debug, PartialEq)]
enum Input {
    /// A dataframe: column names and rows of cells.
    Frame {
        columns: Vec<String>,
        rows: Vec<Vec<Value>>,
    },
    /// One (nested) array for a single-input model.
    Array(Value),
    /// Named (nested) arrays.
    Named(Vec<(String, Value)>),
}

fn unsupported(message: String) -> MlflowError {
    MlflowError {
        status: StatusCode::UNSUPPORTED_MEDIA_TYPE,
        code: "BAD_REQUEST",
        message,
    }
}

/// The parsed input and MLflow `params` (a JSON object's text; CSV has none).
type Parsed = (Input, Option<std::sync::Arc<str>>);

fn parse_body(headers: &HeaderMap, body: &[u8]) -> Result<Parsed, MlflowError> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let mut parts = content_type.split(';').map(str::trim);
    let mime = parts.next().unwrap_or("");
    for param in parts.filter(|p| !p.is_empty()) {
        let (key, value) = param.split_once('=').unwrap_or((param, ""));
        if key.trim() != "charset" {
            return Err(unsupported(format!(
                "Unrecognized content type parameters: {}.",
                key.trim()
            )));
        }
        if !value.trim().trim_matches('"').eq_ignore_ascii_case("utf-8") {
            return Err(unsupported("The scoring server only supports UTF-8".into()));
        }
    }
    match mime {
        "application/json" => parse_json(body),
        "text/csv" => parse_csv(body).map(|input| (input, None)),
        _ => Err(unsupported(format!(
            "This predictor only supports the following content types: Types: \
             ['text/csv', 'application/json']. Got '{content_type}'."
        ))),
    }
}

fn parse_json(body: &[u8]) -> Result<Parsed, MlflowError> {
    let value: Value = serde_json::from_slice(body).map_err(|e| {
        MlflowError::bad(format!(
            "Invalid input. Ensure that input is a valid JSON formatted string. Error: '{e}'"
        ))
    })?;
    let Value::Object(mut map) = value else {
        return Err(MlflowError::bad(format!(
            "Invalid input. {REQUIRED_INPUT_FORMAT}. Received a {}.",
            kind(&value)
        )));
    };
    // Like MLflow: keys other than the formats and `params` are ignored; the error lists
    // only the format keys that were present.
    let present: Vec<&str> = FORMATS
        .into_iter()
        .filter(|k| map.contains_key(*k))
        .collect();
    if present.len() != 1 {
        return Err(MlflowError::bad(format!(
            "{REQUIRED_INPUT_FORMAT}. Received dictionary with input fields: {present:?}."
        )));
    }
    let params = match map.get("params") {
        None | Some(Value::Null) => None,
        Some(p @ Value::Object(_)) => Some(std::sync::Arc::from(p.to_string())),
        Some(_) => return Err(MlflowError::bad("'params' must be a JSON object")),
    };
    let format = present[0];
    let payload = map.remove(format).unwrap_or(Value::Null);
    let input = match format {
        "dataframe_split" => frame_split(payload),
        // Parsed again with key order kept (a `Value` map sorts keys), since the order of
        // a record's keys is the column order a single-input model is fed in.
        "dataframe_records" => match serde_json::from_slice::<RecordsBody>(body) {
            Ok(records) => Ok(frame_records(records.dataframe_records)),
            Err(_) => Err(records_error(&payload)),
        },
        "instances" => Ok(instances(payload)),
        _ => match payload {
            Value::Object(named) => Ok(Input::Named(named.into_iter().collect())),
            other => Ok(Input::Array(other)),
        },
    }?;
    Ok((input, params))
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "list",
        Value::Object(_) => "dictionary",
    }
}

fn frame_split(payload: Value) -> Result<Input, MlflowError> {
    let Value::Object(mut obj) = payload else {
        return Err(MlflowError::bad(
            "dataframe_split must be a dictionary with 'columns' and 'data'",
        ));
    };
    let rows = match obj.remove("data") {
        Some(Value::Array(rows)) => rows,
        _ => {
            return Err(MlflowError::bad(
                "dataframe_split needs 'data': a list of rows",
            ))
        }
    };
    let rows: Vec<Vec<Value>> = rows
        .into_iter()
        .map(|r| match r {
            Value::Array(cells) => cells,
            scalar => vec![scalar],
        })
        .collect();
    let width = rows.first().map_or(0, Vec::len);
    let columns: Vec<String> = match obj.remove("columns") {
        Some(Value::Array(cols)) => cols
            .into_iter()
            .map(|c| match c {
                Value::String(s) => s,
                other => other.to_string(),
            })
            .collect(),
        None => (0..width).map(|i| i.to_string()).collect(),
        Some(_) => return Err(MlflowError::bad("dataframe_split 'columns' must be a list")),
    };
    check_rows(&columns, &rows)?;
    Ok(Input::Frame { columns, rows })
}

#[derive(serde::Deserialize)]
struct RecordsBody {
    dataframe_records: Vec<Ordered>,
}

/// A JSON object with its keys in the order they were sent.
struct Ordered(Vec<(String, Value)>);

impl<'de> serde::Deserialize<'de> for Ordered {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit;
        impl<'de> serde::de::Visitor<'de> for Visit {
            type Value = Ordered;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a record (a JSON object)")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Ordered, A::Error> {
                let mut entries = Vec::new();
                while let Some(entry) = map.next_entry::<String, Value>()? {
                    entries.push(entry);
                }
                Ok(Ordered(entries))
            }
        }
        d.deserialize_map(Visit)
    }
}

fn records_error(payload: &Value) -> MlflowError {
    match payload {
        Value::Array(_) => MlflowError::bad(
            "Invalid input. Provided dataframe_records field is not a valid dataframe \
             representation in 'records' format: each record must be a dictionary",
        ),
        other => MlflowError::bad(format!(
            "Invalid input. Dataframe records format must be a list of records. Got {}.",
            kind(other)
        )),
    }
}

/// Columns in order of first appearance; a record without a column has null there.
fn frame_records(records: Vec<Ordered>) -> Input {
    let mut columns: Vec<String> = Vec::new();
    for r in &records {
        for (k, _) in &r.0 {
            if !columns.contains(k) {
                columns.push(k.clone());
            }
        }
    }
    let rows = records
        .into_iter()
        .map(|r| {
            let mut row = vec![Value::Null; columns.len()];
            for (k, v) in r.0 {
                if let Some(i) = columns.iter().position(|c| *c == k) {
                    row[i] = v;
                }
            }
            row
        })
        .collect();
    Input::Frame { columns, rows }
}

/// `instances`: a list of rows; rows that are dictionaries give one array per key.
fn instances(payload: Value) -> Input {
    match payload {
        Value::Array(items) if !items.is_empty() && items.iter().all(Value::is_object) => {
            let mut named: Vec<(String, Vec<Value>)> = Vec::new();
            for item in items {
                if let Value::Object(m) = item {
                    for (k, v) in m {
                        match named.iter_mut().find(|(n, _)| *n == k) {
                            Some((_, vs)) => vs.push(v),
                            None => named.push((k, vec![v])),
                        }
                    }
                }
            }
            Input::Named(
                named
                    .into_iter()
                    .map(|(k, v)| (k, Value::Array(v)))
                    .collect(),
            )
        }
        other => Input::Array(other),
    }
}

fn parse_csv(body: &[u8]) -> Result<Input, MlflowError> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .from_reader(body);
    let columns: Vec<String> = reader
        .headers()
        .map_err(|e| MlflowError::bad(format!("Failed to parse input as a CSV: {e}")))?
        .iter()
        .map(str::to_string)
        .collect();
    let mut rows = Vec::new();
    for record in reader.records() {
        let record =
            record.map_err(|e| MlflowError::bad(format!("Failed to parse input as a CSV: {e}")))?;
        rows.push(record.iter().map(csv_cell).collect());
    }
    check_rows(&columns, &rows)?;
    Ok(Input::Frame { columns, rows })
}

/// A CSV cell as pandas would read it: integer, float, boolean or string.
fn csv_cell(cell: &str) -> Value {
    let t = cell.trim();
    if let Ok(i) = t.parse::<i64>() {
        return json!(i);
    }
    if let Ok(f) = t.parse::<f64>() {
        if f.is_finite() {
            return json!(f);
        }
    }
    match t {
        "True" | "true" => Value::Bool(true),
        "False" | "false" => Value::Bool(false),
        "" => Value::Null,
        _ => Value::String(cell.to_string()),
    }
}

fn check_rows(columns: &[String], rows: &[Vec<Value>]) -> Result<(), MlflowError> {
    match rows.iter().position(|r| r.len() != columns.len()) {
        Some(i) => Err(MlflowError::bad(format!(
            "row {i} has {} values but there are {} columns",
            rows[i].len(),
            columns.len()
        ))),
        None => Ok(()),
    }
}

/// Builds the model's input tensors. The flag says whether the input was a dataframe.
fn to_tensors(input: Input, specs: &[TensorSpec]) -> Result<(Vec<Tensor>, bool), MlflowError> {
    if specs.is_empty() {
        return open_tensors(input);
    }
    match input {
        Input::Frame { columns, rows } => {
            if rows.is_empty() {
                return Err(MlflowError::bad("the input dataframe is empty"));
            }
            if let [spec] = specs {
                let cells: Vec<&Value> = rows.iter().flatten().collect();
                let shape = match spec.shape.len() {
                    1 if columns.len() == 1 => vec![rows.len()],
                    _ => vec![rows.len(), columns.len()],
                };
                return Ok((vec![tensor(spec, shape, &cells)?], true));
            }
            let tensors = specs
                .iter()
                .map(|spec| {
                    let i = columns
                        .iter()
                        .position(|c| *c == spec.name)
                        .ok_or_else(|| {
                            MlflowError::bad(format!(
                                "the model needs a column named '{}'; got columns {columns:?}",
                                spec.name
                            ))
                        })?;
                    let cells: Vec<&Value> = rows.iter().map(|r| &r[i]).collect();
                    let shape = match spec.shape.len() {
                        2 => vec![rows.len(), 1],
                        _ => vec![rows.len()],
                    };
                    tensor(spec, shape, &cells)
                })
                .collect::<Result<_, _>>()?;
            Ok((tensors, true))
        }
        Input::Array(value) => {
            let [spec] = specs else {
                return Err(MlflowError::bad(format!(
                    "the model has {} inputs; send them by name, e.g. {{\"inputs\": {{\"{}\": [...]}}}}",
                    specs.len(),
                    specs.first().map_or("name", |s| s.name.as_str())
                )));
            };
            Ok((vec![nested_tensor(spec, &value)?], false))
        }
        Input::Named(named) => {
            let tensors = named
                .iter()
                .map(|(name, value)| {
                    let spec = specs.iter().find(|s| s.name == *name).ok_or_else(|| {
                        MlflowError::bad(format!(
                            "unexpected input '{name}'; the model's inputs are: {}",
                            specs
                                .iter()
                                .map(|s| s.name.as_str())
                                .collect::<Vec<_>>()
                                .join(", ")
                        ))
                    })?;
                    nested_tensor(spec, value)
                })
                .collect::<Result<_, _>>()?;
            Ok((tensors, false))
        }
    }
}

/// Tensors for a model without a signature: each column or array takes the type its JSON
/// values have (as pandas and numpy would give them): all booleans BOOL, all integers
/// INT64, numbers FP64, strings BYTES.
fn open_tensors(input: Input) -> Result<(Vec<Tensor>, bool), MlflowError> {
    let typed = |name: &str, shape: Vec<usize>, cells: &[&Value]| {
        let spec = TensorSpec {
            name: name.to_string(),
            datatype: infer_datatype(name, cells)?,
            shape: vec![],
        };
        tensor(&spec, shape, cells)
    };
    let nested = |name: &str, value: &Value| {
        let mut shape = Vec::new();
        let mut cells = Vec::new();
        shape_of(value, 0, &mut shape, &mut cells)
            .map_err(|e| MlflowError::bad(format!("input '{name}': {e}")))?;
        typed(name, shape, &cells)
    };
    match input {
        Input::Frame { columns, rows } => {
            if rows.is_empty() {
                return Err(MlflowError::bad("the input dataframe is empty"));
            }
            let tensors = columns
                .iter()
                .enumerate()
                .map(|(i, name)| {
                    let cells: Vec<&Value> = rows.iter().map(|r| &r[i]).collect();
                    typed(name, vec![rows.len()], &cells)
                })
                .collect::<Result<_, _>>()?;
            Ok((tensors, true))
        }
        Input::Array(value) => Ok((
            vec![nested(cairn_infer_python::UNNAMED_INPUT, &value)?],
            false,
        )),
        Input::Named(named) => Ok((
            named
                .iter()
                .map(|(name, value)| nested(name, value))
                .collect::<Result<_, _>>()?,
            false,
        )),
    }
}

fn infer_datatype(name: &str, cells: &[&Value]) -> Result<DataType, MlflowError> {
    if cells.iter().all(|v| v.is_boolean()) && !cells.is_empty() {
        Ok(DataType::Bool)
    } else if cells.iter().all(|v| v.is_i64()) {
        Ok(DataType::Int64)
    } else if cells.iter().all(|v| v.is_number()) {
        Ok(DataType::Fp64)
    } else if cells.iter().all(|v| v.is_string()) {
        Ok(DataType::Bytes)
    } else {
        Err(MlflowError::bad(format!(
            "input '{name}' mixes value types (or has nulls); this model has no signature, \
             so each column or array must hold one type: log the model with a signature to \
             have values converted"
        )))
    }
}

fn nested_tensor(spec: &TensorSpec, value: &Value) -> Result<Tensor, MlflowError> {
    let mut shape = Vec::new();
    let mut cells = Vec::new();
    shape_of(value, 0, &mut shape, &mut cells)
        .map_err(|e| MlflowError::bad(format!("input '{}': {e}", spec.name)))?;
    tensor(spec, shape, &cells)
}

/// Records the shape of a rectangular nested array and collects its leaves.
fn shape_of<'v>(
    v: &'v Value,
    depth: usize,
    shape: &mut Vec<usize>,
    cells: &mut Vec<&'v Value>,
) -> Result<(), String> {
    match v {
        Value::Array(items) => {
            match shape.get(depth) {
                None if cells.is_empty() && shape.len() == depth => shape.push(items.len()),
                Some(n) if *n == items.len() => {}
                _ => return Err("the nested lists are not rectangular".into()),
            }
            for item in items {
                shape_of(item, depth + 1, shape, cells)?;
            }
            Ok(())
        }
        scalar => {
            if shape.len() != depth {
                return Err("the nested lists are not rectangular".into());
            }
            cells.push(scalar);
            Ok(())
        }
    }
}

/// Casts JSON cells to the spec's datatype, as MLflow's schema enforcement casts them.
fn tensor(spec: &TensorSpec, shape: Vec<usize>, cells: &[&Value]) -> Result<Tensor, MlflowError> {
    let wrong = |v: &Value| {
        MlflowError::bad(format!(
            "input '{}' expects {} values ({}), got {v}",
            spec.name,
            numpy_name(spec.datatype),
            spec.datatype
        ))
    };
    macro_rules! ints {
        ($t:ty, $var:ident) => {
            TensorData::$var(
                cells
                    .iter()
                    .map(|v| {
                        v.as_i64()
                            .and_then(|i| <$t>::try_from(i).ok())
                            .or_else(|| v.as_u64().and_then(|u| <$t>::try_from(u).ok()))
                            .or_else(|| v.as_bool().map(<$t>::from))
                            .ok_or_else(|| wrong(v))
                    })
                    .collect::<Result<_, _>>()?,
            )
        };
    }
    let float = |v: &Value| {
        v.as_f64()
            .or_else(|| v.as_bool().map(f64::from))
            .ok_or_else(|| wrong(v))
    };
    let data = match spec.datatype {
        DataType::Bool => TensorData::Bool(
            cells
                .iter()
                .map(|v| v.as_bool().ok_or_else(|| wrong(v)))
                .collect::<Result<_, _>>()?,
        ),
        DataType::Uint8 => ints!(u8, Uint8),
        DataType::Uint16 => ints!(u16, Uint16),
        DataType::Uint32 => ints!(u32, Uint32),
        DataType::Uint64 => ints!(u64, Uint64),
        DataType::Int8 => ints!(i8, Int8),
        DataType::Int16 => ints!(i16, Int16),
        DataType::Int32 => ints!(i32, Int32),
        DataType::Int64 => ints!(i64, Int64),
        DataType::Fp16 => TensorData::Fp16(
            cells
                .iter()
                .map(|v| float(v).map(|f| half::f16::from_f64(f).to_bits()))
                .collect::<Result<_, _>>()?,
        ),
        DataType::Fp32 => TensorData::Fp32(
            cells
                .iter()
                .map(|v| float(v).map(|f| f as f32))
                .collect::<Result<_, _>>()?,
        ),
        DataType::Fp64 => {
            TensorData::Fp64(cells.iter().map(|v| float(v)).collect::<Result<_, _>>()?)
        }
        DataType::Bytes => TensorData::Bytes(
            cells
                .iter()
                .map(|v| match v {
                    Value::String(s) => Ok(s.as_bytes().to_vec()),
                    other => Err(wrong(other)),
                })
                .collect::<Result<_, _>>()?,
        ),
    };
    Tensor::new(&spec.name, shape, data).map_err(|e| MlflowError::bad(e.to_string()))
}

fn numpy_name(d: DataType) -> &'static str {
    match d {
        DataType::Bool => "bool",
        DataType::Uint8 => "uint8",
        DataType::Uint16 => "uint16",
        DataType::Uint32 => "uint32",
        DataType::Uint64 => "uint64",
        DataType::Int8 => "int8",
        DataType::Int16 => "int16",
        DataType::Int32 => "int32",
        DataType::Int64 => "int64",
        DataType::Fp16 => "float16",
        DataType::Fp32 => "float32",
        DataType::Fp64 => "float64",
        DataType::Bytes => "str",
    }
}

/// `{"predictions": {output: nested list, ...}}`.
struct Predictions<'a>(&'a [Tensor]);

impl Serialize for Predictions<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut outer = s.serialize_map(Some(1))?;
        outer.serialize_entry("predictions", &ByName(self.0))?;
        outer.end()
    }
}

struct Bare<'a>(&'a Tensor);

impl Serialize for Bare<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut outer = s.serialize_map(Some(1))?;
        outer.serialize_entry("predictions", &Nested::widened(&self.0.data, &self.0.shape))?;
        outer.end()
    }
}

struct ByName<'a>(&'a [Tensor]);

impl Serialize for ByName<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.0.len()))?;
        for t in self.0 {
            map.serialize_entry(&t.name, &Nested::widened(&t.data, &t.shape))?;
        }
        map.end()
    }
}

/// `{"predictions": [{output: value, ...}, ...]}`: one record per row, as MLflow renders
/// the dataframe its ONNX flavor returns for dataframe input (each output flattened).
struct Records<'a>(&'a [Tensor], usize);

impl Serialize for Records<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut outer = s.serialize_map(Some(1))?;
        outer.serialize_entry("predictions", &RecordList(self.0, self.1))?;
        outer.end()
    }
}

struct RecordList<'a>(&'a [Tensor], usize);

impl Serialize for RecordList<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(self.1))?;
        for row in 0..self.1 {
            seq.serialize_element(&Record(self.0, row))?;
        }
        seq.end()
    }
}

struct Record<'a>(&'a [Tensor], usize);

impl Serialize for Record<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.0.len()))?;
        for t in self.0 {
            let cell = t.data.slice(self.1, self.1 + 1);
            map.serialize_entry(&t.name, &Nested::widened(&cell, &[]))?;
        }
        map.end()
    }
}

fn render(loaded: &Loaded, outputs: &[Tensor], frame: bool) -> Result<Response, MlflowError> {
    let bare = matches!(outputs, [single] if single.name == "predictions");
    let body = if bare {
        // A bare array from a pyfunc model: MLflow answers {"predictions": [...]}.
        serde_json::to_vec(&Bare(&outputs[0]))
    } else if frame && !loaded.tensor_signature {
        // MLflow flattens each output of a dataframe prediction into one column; columns
        // of different lengths cannot form a dataframe.
        let len = outputs.first().map_or(0, |t| t.data.len());
        if outputs.iter().any(|t| t.data.len() != len) {
            return Err(MlflowError::bad(
                "the model's outputs have different lengths and cannot form a dataframe; send \
                 the input with 'inputs' or 'instances' to get each output as an array",
            ));
        }
        serde_json::to_vec(&Records(outputs, len))
    } else {
        serde_json::to_vec(&Predictions(outputs))
    };
    let body = body.map_err(|e| MlflowError::bad(format!("cannot encode predictions: {e}")))?;
    Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn spec(name: &str, datatype: DataType, shape: Vec<i64>) -> TensorSpec {
        TensorSpec {
            name: name.into(),
            datatype,
            shape,
        }
    }

    fn json_input(body: &str) -> Result<Input, String> {
        parse_json(body.as_bytes())
            .map(|(input, _)| input)
            .map_err(|e| e.message)
    }

    #[test]
    fn every_json_format_becomes_the_same_tensor() {
        let specs = [spec("x", DataType::Fp32, vec![-1, 2])];
        let want =
            Tensor::new("x", vec![2, 2], TensorData::Fp32(vec![1.0, 2.0, 3.0, 4.0])).unwrap();
        for body in [
            r#"{"dataframe_split": {"columns": ["a", "b"], "data": [[1, 2], [3, 4]]}}"#,
            r#"{"dataframe_records": [{"a": 1, "b": 2}, {"a": 3, "b": 4}]}"#,
            r#"{"instances": [[1, 2], [3, 4]]}"#,
            r#"{"inputs": [[1, 2], [3, 4]], "params": {}}"#,
            r#"{"inputs": {"x": [[1, 2], [3, 4]]}}"#,
        ] {
            let (t, _) = to_tensors(json_input(body).unwrap(), &specs)
                .map_err(|e| e.message)
                .unwrap();
            assert_eq!(t, vec![want.clone()], "{body}");
        }
        let csv = parse_csv(b"a,b\n1,2\n3,4\n")
            .map_err(|e| e.message)
            .unwrap();
        assert_eq!(
            to_tensors(csv, &specs).map_err(|e| e.message).unwrap().0,
            vec![want]
        );
    }

    #[test]
    fn a_model_without_signature_gets_inferred_types() {
        let (t, frame) = to_tensors(
            json_input(
                r#"{"dataframe_split": {"columns": ["i", "f", "s", "b"], "data": [[1, 1.5, "a", true], [2, 2, "b", false]]}}"#,
            )
            .unwrap(),
            &[],
        )
        .map_err(|e| e.message)
        .unwrap();
        assert!(frame);
        let types: Vec<DataType> = t.iter().map(Tensor::datatype).collect();
        assert_eq!(
            types,
            vec![
                DataType::Int64,
                DataType::Fp64,
                DataType::Bytes,
                DataType::Bool
            ]
        );
        assert_eq!(t[1].data, TensorData::Fp64(vec![1.5, 2.0]));
        let (t, frame) = to_tensors(
            json_input(r#"{"instances": [[1, 2], [3, 4]]}"#).unwrap(),
            &[],
        )
        .map_err(|e| e.message)
        .unwrap();
        assert!(!frame);
        assert_eq!(
            t,
            vec![Tensor::new("input", vec![2, 2], TensorData::Int64(vec![1, 2, 3, 4])).unwrap()]
        );
        let mixed =
            to_tensors(json_input(r#"{"inputs": {"a": [1, "x"]}}"#).unwrap(), &[]).unwrap_err();
        assert_eq!(mixed.status, StatusCode::BAD_REQUEST);
        assert!(
            mixed.message.contains("mixes value types"),
            "{}",
            mixed.message
        );
    }

    #[test]
    fn record_keys_keep_their_order() {
        let input =
            json_input(r#"{"dataframe_records": [{"d": 4, "c": 3, "b": 2, "a": 1}, {"c": 7}]}"#)
                .unwrap();
        let Input::Frame { columns, rows } = input else {
            panic!("not a frame")
        };
        assert_eq!(columns, vec!["d", "c", "b", "a"]);
        assert_eq!(rows[0], vec![json!(4), json!(3), json!(2), json!(1)]);
        assert_eq!(
            rows[1],
            vec![Value::Null, json!(7), Value::Null, Value::Null]
        );
    }

    #[test]
    fn dataframes_feed_multi_input_models_by_column() {
        let specs = [
            spec("a", DataType::Int64, vec![-1]),
            spec("b", DataType::Fp64, vec![-1, 1]),
        ];
        let input = json_input(
            r#"{"dataframe_split": {"columns": ["b", "a"], "data": [[0.5, 1], [1.5, 2]]}}"#,
        )
        .unwrap();
        let (t, frame) = to_tensors(input, &specs).map_err(|e| e.message).unwrap();
        assert!(frame);
        assert_eq!(
            t[0],
            Tensor::new("a", vec![2], TensorData::Int64(vec![1, 2])).unwrap()
        );
        assert_eq!(
            t[1],
            Tensor::new("b", vec![2, 1], TensorData::Fp64(vec![0.5, 1.5])).unwrap()
        );
    }

    #[test]
    fn bad_bodies_are_refused_with_reasons() {
        for (body, needle) in [
            ("[1, 2]", "Received a list"),
            ("{", "valid JSON"),
            (r#"{"foo": 1}"#, "Received dictionary with input fields: []"),
            (
                r#"{"inputs": [1], "instances": [1]}"#,
                "input fields: [\"instances\", \"inputs\"]",
            ),
            (
                r#"{"inputs": [1], "params": 3}"#,
                "'params' must be a JSON object",
            ),
            (
                r#"{"dataframe_split": {"columns": ["a"], "data": [[1, 2]]}}"#,
                "row 0 has 2 values",
            ),
            (r#"{"dataframe_records": [1]}"#, "must be a dictionary"),
            (
                r#"{"dataframe_records": {"a": 1}}"#,
                "must be a list of records. Got dictionary",
            ),
        ] {
            let err = json_input(body).unwrap_err();
            assert!(err.contains(needle), "{body}: {err}");
        }
        let specs = [spec("x", DataType::Fp32, vec![-1, 2])];
        for (body, needle) in [
            (r#"{"inputs": [[1, 2], [3]]}"#, "not rectangular"),
            (
                r#"{"inputs": [["a", "b"]]}"#,
                "expects float32 values (FP32), got \"a\"",
            ),
            (r#"{"inputs": {"y": [[1, 2]]}}"#, "unexpected input 'y'"),
            (
                r#"{"dataframe_split": {"columns": [], "data": []}}"#,
                "empty",
            ),
        ] {
            let err = to_tensors(json_input(body).unwrap(), &specs)
                .unwrap_err()
                .message;
            assert!(err.contains(needle), "{body}: {err}");
        }
        let int_spec = [spec("x", DataType::Int64, vec![-1])];
        let err = to_tensors(json_input(r#"{"inputs": [1.5]}"#).unwrap(), &int_spec)
            .unwrap_err()
            .message;
        assert!(err.contains("expects int64 values"), "{err}");
    }

    #[test]
    fn csv_cells_are_typed() {
        assert_eq!(csv_cell("3"), json!(3));
        assert_eq!(csv_cell("2.5"), json!(2.5));
        assert_eq!(csv_cell("True"), json!(true));
        assert_eq!(csv_cell("x"), json!("x"));
        assert!(parse_csv(b"a,b\n1\n").is_err());
    }
}
