//! The one inference path every protocol goes through: find the model, check the inputs
//! against its signature, queue, record metrics.

use std::sync::Arc;
use std::time::Instant;

use cairn_infer::{InferError, ModelSignature, Tensor};

use crate::metrics::{Metrics, Protocol};
use crate::models::{Loaded, Models};

/// Why a request was not served. Each protocol renders these in its own error format.
#[derive(Debug, thiserror::Error, Clone, PartialEq)]
pub enum ServeError {
    #[error("model '{0}' is not served here")]
    UnknownModel(String),
    #[error("model '{model}' version '{version}' is not loaded (serving: {serving})")]
    UnknownVersion {
        model: String,
        version: String,
        serving: String,
    },
    #[error("model '{0}' is not ready{1}")]
    NotReady(String, String),
    #[error("{0}")]
    BadInput(String),
    #[error("{0}")]
    Overloaded(String),
    #[error("the request body is larger than the limit of {0} bytes (--max-request-bytes)")]
    TooLarge(usize),
    #[error("{0}")]
    Unavailable(String),
    #[error("inference failed: {0}")]
    Engine(String),
    #[error("inference timed out: {0}")]
    Timeout(String),
}

impl ServeError {
    /// The HTTP status the OIP and MLflow protocols use for this error.
    pub fn status(&self) -> u16 {
        match self {
            ServeError::UnknownModel(_) | ServeError::UnknownVersion { .. } => 404,
            ServeError::BadInput(_) | ServeError::Engine(_) => 400,
            ServeError::TooLarge(_) => 413,
            ServeError::Timeout(_) => 504,
            ServeError::NotReady(..) | ServeError::Overloaded(_) | ServeError::Unavailable(_) => {
                503
            }
        }
    }
}

/// What every handler shares.
#[derive(Clone)]
pub struct ServeState {
    pub models: Arc<Models>,
    pub metrics: Metrics,
    /// Largest request body accepted.
    pub max_request_bytes: usize,
    /// Who may call (`--auth tracking`); `None` lets everyone in.
    pub gate: Option<Arc<crate::gate::Gate>>,
    /// `Host` header patterns answered (`--allowed-hosts`), against DNS rebinding.
    pub allowed_hosts: Arc<[String]>,
}

impl ServeState {
    /// The request body, or the error for one that could not be read (over the limit).
    pub fn body(
        &self,
        body: Result<axum::body::Bytes, axum::extract::rejection::BytesRejection>,
    ) -> Result<axum::body::Bytes, ServeError> {
        body.map_err(|e| match e.status().as_u16() {
            413 => ServeError::TooLarge(self.max_request_bytes),
            _ => ServeError::BadInput(format!("cannot read the request body: {}", e.body_text())),
        })
    }

    /// The version serving `name` (and `version`, when the request names one).
    pub fn loaded(&self, name: &str, version: Option<&str>) -> Result<Arc<Loaded>, ServeError> {
        let slot = self
            .models
            .get(name)
            .ok_or_else(|| ServeError::UnknownModel(name.to_string()))?;
        let loaded = slot.current().ok_or_else(|| {
            let why = slot
                .last_error()
                .map(|e| format!(": {e}"))
                .unwrap_or_else(|| ": still loading".into());
            ServeError::NotReady(name.to_string(), why)
        })?;
        match version {
            Some(v) if !v.is_empty() && v != loaded.version => Err(ServeError::UnknownVersion {
                model: name.to_string(),
                version: v.to_string(),
                serving: loaded.version.clone(),
            }),
            _ => Ok(loaded),
        }
    }

    /// Runs inputs (already decoded, not yet checked) through a loaded model.
    pub async fn infer(
        &self,
        loaded: &Loaded,
        inputs: Vec<Tensor>,
        protocol: Protocol,
    ) -> Result<Vec<Tensor>, ServeError> {
        self.infer_with_params(loaded, inputs, None, protocol).await
    }

    /// `infer` with inference parameters (MLflow's `params`, a JSON object).
    pub async fn infer_with_params(
        &self,
        loaded: &Loaded,
        inputs: Vec<Tensor>,
        params: Option<Arc<str>>,
        protocol: Protocol,
    ) -> Result<Vec<Tensor>, ServeError> {
        let started = Instant::now();
        let result = match order_inputs(&loaded.signature, inputs) {
            Ok(inputs) => loaded
                .batcher
                .infer_with_params(inputs, params)
                .await
                .map_err(|e| match e {
                    InferError::QueueFull(_) => ServeError::Overloaded(e.to_string()),
                    InferError::Stopped => ServeError::Unavailable(e.to_string()),
                    InferError::Engine(msg) => ServeError::Engine(msg),
                    InferError::Timeout(msg) => ServeError::Timeout(msg),
                }),
            Err(e) => Err(e),
        };
        loaded
            .metrics
            .request(protocol, result.is_ok(), started.elapsed());
        let reply = result?;
        loaded.metrics.queued(reply.queue_time);
        Ok(reply.outputs)
    }
}

/// The output a request asked for by name, or the error naming the ones there are.
pub fn find_output<'t>(outputs: &'t [Tensor], name: &str) -> Result<&'t Tensor, ServeError> {
    outputs.iter().find(|o| o.name == name).ok_or_else(|| {
        let names: Vec<&str> = outputs.iter().map(|o| o.name.as_str()).collect();
        ServeError::BadInput(format!(
            "unknown output '{name}'; the model's outputs are: {}",
            names.join(", ")
        ))
    })
}

/// Request-level parameters the inference protocols define for themselves (Triton's and
/// KServe's); everything else in a request's `parameters` is for the model.
const PROTOCOL_PARAMETERS: &[&str] = &[
    "binary_data_output",
    "sequence_id",
    "sequence_start",
    "sequence_end",
    "priority",
    "timeout",
    "headers",
    "content_type",
];

/// The model's inference parameters in an OIP request's `parameters` (the protocol's own
/// keys removed), as the JSON object text that MLflow's `params` would be; `None` when
/// nothing is left.
pub fn model_params<'a, I>(parameters: I) -> Option<std::sync::Arc<str>>
where
    I: IntoIterator<Item = (&'a String, serde_json::Value)>,
{
    let params: serde_json::Map<String, serde_json::Value> = parameters
        .into_iter()
        .filter(|(k, _)| !PROTOCOL_PARAMETERS.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v))
        .collect();
    if params.is_empty() {
        return None;
    }
    serde_json::to_string(&params)
        .ok()
        .map(std::sync::Arc::from)
}

/// Parses the header of one protocol input tensor: its datatype name and shape, giving the
/// datatype, the shape as sizes and the element count.
pub fn input_header(
    name: &str,
    datatype: &str,
    shape: &[i64],
) -> Result<(cairn_infer::DataType, Vec<usize>, usize), ServeError> {
    let bad = |msg: String| ServeError::BadInput(msg);
    let datatype = cairn_infer::DataType::from_name(datatype)
        .ok_or_else(|| bad(format!("input '{name}' has unknown datatype '{datatype}'")))?;
    let dims = shape
        .iter()
        .map(|d| usize::try_from(*d))
        .collect::<Result<Vec<usize>, _>>()
        .map_err(|_| {
            bad(format!(
                "input '{name}' has a negative dimension in its shape {shape:?}"
            ))
        })?;
    let count = cairn_infer::tensor::element_count(&dims)
        .ok_or_else(|| bad(format!("input '{name}' has an impossibly large shape")))?;
    Ok((datatype, dims, count))
}

/// Checks inputs against the signature and puts them in its order: every declared input
/// exactly once, with its datatype and a shape that fits.
pub fn order_inputs(sig: &ModelSignature, inputs: Vec<Tensor>) -> Result<Vec<Tensor>, ServeError> {
    if sig.is_open() {
        // Nothing declared: the inputs go as given, each name once.
        for (i, t) in inputs.iter().enumerate() {
            if inputs[..i].iter().any(|o| o.name == t.name) {
                return Err(ServeError::BadInput(format!(
                    "input '{}' is given twice",
                    t.name
                )));
            }
        }
        if inputs.is_empty() {
            return Err(ServeError::BadInput("the request has no inputs".into()));
        }
        return Ok(inputs);
    }
    let mut slots: Vec<Option<Tensor>> = vec![None; sig.inputs.len()];
    for t in inputs {
        let Some(i) = sig.inputs.iter().position(|s| s.name == t.name) else {
            return Err(ServeError::BadInput(format!(
                "unexpected input '{}'; the model's inputs are: {}",
                t.name,
                names(sig)
            )));
        };
        let spec = &sig.inputs[i];
        if t.datatype() != spec.datatype {
            return Err(ServeError::BadInput(format!(
                "input '{}' has datatype {}, the model expects {}",
                t.name,
                t.datatype(),
                spec.datatype
            )));
        }
        if !spec.accepts_shape(&t.shape) {
            return Err(ServeError::BadInput(format!(
                "input '{}' has shape {:?}, the model expects {:?} (-1 is any size)",
                t.name, t.shape, spec.shape
            )));
        }
        if slots[i].is_some() {
            return Err(ServeError::BadInput(format!(
                "input '{}' is given twice",
                t.name
            )));
        }
        slots[i] = Some(t);
    }
    slots
        .into_iter()
        .zip(&sig.inputs)
        .map(|(t, spec)| {
            t.ok_or_else(|| ServeError::BadInput(format!("missing input '{}'", spec.name)))
        })
        .collect()
}

fn names(sig: &ModelSignature) -> String {
    sig.inputs
        .iter()
        .map(|s| s.name.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use cairn_infer::{DataType, TensorData, TensorSpec};

    fn sig() -> ModelSignature {
        let spec = |n: &str, d| TensorSpec {
            name: n.into(),
            datatype: d,
            shape: vec![-1, 2],
        };
        ModelSignature {
            inputs: vec![spec("a", DataType::Fp32), spec("b", DataType::Int64)],
            outputs: vec![],
        }
    }

    fn t(name: &str, shape: Vec<usize>, data: TensorData) -> Tensor {
        Tensor::new(name, shape, data).unwrap()
    }

    #[test]
    fn model_params_drop_protocol_keys() {
        let map: serde_json::Map<String, serde_json::Value> = serde_json::from_str(
            r#"{"binary_data_output": true, "priority": 1, "temperature": 0.5, "mode": "x"}"#,
        )
        .unwrap();
        let params = model_params(map.iter().map(|(k, v)| (k, v.clone()))).unwrap();
        let back: serde_json::Value = serde_json::from_str(&params).unwrap();
        assert_eq!(back, serde_json::json!({"temperature": 0.5, "mode": "x"}));
        let only_protocol: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(r#"{"binary_data_output": false}"#).unwrap();
        assert!(model_params(only_protocol.iter().map(|(k, v)| (k, v.clone()))).is_none());
    }

    #[test]
    fn orders_and_checks_inputs() {
        let b = t("b", vec![1, 2], TensorData::Int64(vec![1, 2]));
        let a = t("a", vec![1, 2], TensorData::Fp32(vec![1.0, 2.0]));
        let ordered = order_inputs(&sig(), vec![b.clone(), a.clone()]).unwrap();
        assert_eq!(ordered, vec![a.clone(), b.clone()]);

        let err = |inputs| order_inputs(&sig(), inputs).unwrap_err().to_string();
        assert_eq!(err(vec![a.clone()]), "missing input 'b'");
        assert_eq!(
            err(vec![a.clone(), a.clone(), b.clone()]),
            "input 'a' is given twice"
        );
        assert!(err(vec![t("c", vec![1], TensorData::Fp32(vec![1.0]))])
            .contains("unexpected input 'c'"));
        assert_eq!(
            err(vec![
                t("a", vec![1, 2], TensorData::Fp64(vec![1.0, 2.0])),
                b.clone()
            ]),
            "input 'a' has datatype FP64, the model expects FP32"
        );
        assert!(
            err(vec![t("a", vec![2], TensorData::Fp32(vec![1.0, 2.0])), b])
                .contains("has shape [2]")
        );
    }
}
