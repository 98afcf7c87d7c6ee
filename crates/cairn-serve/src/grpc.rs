//! Open Inference Protocol v2 over gRPC (`inference.GRPCInferenceService`).
//!
//! The same models, checks, queue and metrics as the REST protocols: every rpc goes
//! through [`ServeState`]. Input elements come either typed (`contents`) or in the binary
//! layout (`raw_input_contents`, what tritonclient sends); outputs always go back in
//! `raw_output_contents`. Rpcs of Triton's wider service that are not declared in
//! `proto/inference.proto` are answered with UNIMPLEMENTED.

use std::future::Future;

use bytes::Bytes;
use cairn_infer::{DataType, Tensor, TensorData, TensorSpec};
use tokio::net::TcpListener;
use tonic::transport::server::TcpIncoming;
use tonic::{Code, Request, Response, Status};

use crate::gate::{Need, Refusal};
use crate::metrics::Protocol;
use crate::models::Loaded;
use crate::serving::{ServeError, ServeState};

/// The messages and service generated from `proto/inference.proto`.
#[allow(clippy::all, clippy::pedantic, missing_docs)]
pub mod proto {
    tonic::include_proto!("inference");
}

use proto::grpc_inference_service_server::{GrpcInferenceService, GrpcInferenceServiceServer};
use proto::model_infer_request::{InferInputTensor, InferRequestedOutputTensor};
use proto::model_infer_response::InferOutputTensor;
use proto::model_metadata_response::TensorMetadata;
use proto::InferTensorContents;

/// The gRPC service over the shared serving state.
#[derive(Clone)]
pub struct Grpc {
    state: ServeState,
}

/// The service, with message size limits set to the state's request limit.
pub fn service(state: ServeState) -> GrpcInferenceServiceServer<Grpc> {
    let limit = state.max_request_bytes;
    GrpcInferenceServiceServer::new(Grpc { state })
        .max_decoding_message_size(limit)
        .max_encoding_message_size(limit)
}

/// Serves the gRPC protocol on `listener` until `shutdown` resolves, then lets open
/// calls finish.
pub async fn serve(
    listener: TcpListener,
    state: ServeState,
    shutdown: impl Future<Output = ()>,
) -> Result<(), tonic::transport::Error> {
    let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
    tonic::transport::Server::builder()
        .serve_with_incoming_shutdown(service(state), incoming, shutdown)
        .await
}

/// The gRPC rendering of a serving error: the HTTP status mapped to its gRPC code, the
/// message unchanged.
pub fn status(e: &ServeError) -> Status {
    let code = match e {
        ServeError::Overloaded(_) => Code::ResourceExhausted,
        ServeError::Timeout(_) => Code::DeadlineExceeded,
        _ => match e.status() {
            404 => Code::NotFound,
            503 => Code::Unavailable,
            _ => Code::InvalidArgument,
        },
    };
    Status::new(code, e.to_string())
}

/// The gRPC rendering of an authentication refusal.
fn refused(r: &Refusal) -> Status {
    let code = match r {
        Refusal::Unauthenticated(_) => Code::Unauthenticated,
        Refusal::Denied(_) => Code::PermissionDenied,
        Refusal::Unavailable(_) => Code::Unavailable,
    };
    Status::new(code, r.to_string())
}

impl Grpc {
    /// Checks the call's `authorization` metadata when `--auth` is on.
    async fn admit<T>(&self, request: &Request<T>, need: Need<'_>) -> Result<(), Status> {
        let Some(gate) = &self.state.gate else {
            return Ok(());
        };
        let authorization = request
            .metadata()
            .get("authorization")
            .map(|v| v.as_bytes());
        gate.check(authorization, need)
            .await
            .map_err(|r| refused(&r))
    }
}

fn bad(msg: impl Into<String>) -> ServeError {
    ServeError::BadInput(msg.into())
}

fn version(v: &str) -> Option<&str> {
    (!v.is_empty()).then_some(v)
}

#[tonic::async_trait]
impl GrpcInferenceService for Grpc {
    async fn server_live(
        &self,
        _: Request<proto::ServerLiveRequest>,
    ) -> Result<Response<proto::ServerLiveResponse>, Status> {
        Ok(Response::new(proto::ServerLiveResponse { live: true }))
    }

    async fn server_ready(
        &self,
        _: Request<proto::ServerReadyRequest>,
    ) -> Result<Response<proto::ServerReadyResponse>, Status> {
        Ok(Response::new(proto::ServerReadyResponse {
            ready: self.state.models.all_ready(),
        }))
    }

    async fn model_ready(
        &self,
        request: Request<proto::ModelReadyRequest>,
    ) -> Result<Response<proto::ModelReadyResponse>, Status> {
        self.admit(&request, Need::Model(&request.get_ref().name))
            .await?;
        let r = request.into_inner();
        let ready = match self.state.loaded(&r.name, version(&r.version)) {
            Ok(_) => true,
            Err(ServeError::NotReady(..)) => false,
            Err(e) => return Err(status(&e)),
        };
        Ok(Response::new(proto::ModelReadyResponse { ready }))
    }

    async fn server_metadata(
        &self,
        request: Request<proto::ServerMetadataRequest>,
    ) -> Result<Response<proto::ServerMetadataResponse>, Status> {
        self.admit(&request, Need::SignedIn).await?;
        Ok(Response::new(proto::ServerMetadataResponse {
            name: "cairn".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            // The same server as the REST endpoint, so the same list.
            extensions: vec!["binary_tensor_data".into()],
        }))
    }

    async fn model_metadata(
        &self,
        request: Request<proto::ModelMetadataRequest>,
    ) -> Result<Response<proto::ModelMetadataResponse>, Status> {
        self.admit(&request, Need::Model(&request.get_ref().name))
            .await?;
        let r = request.into_inner();
        let loaded = self
            .state
            .loaded(&r.name, version(&r.version))
            .map_err(|e| status(&e))?;
        Ok(Response::new(metadata(&loaded)))
    }

    async fn model_infer(
        &self,
        request: Request<proto::ModelInferRequest>,
    ) -> Result<Response<proto::ModelInferResponse>, Status> {
        self.admit(&request, Need::Model(&request.get_ref().model_name))
            .await?;
        let r = request.into_inner();
        let loaded = self
            .state
            .loaded(&r.model_name, version(&r.model_version))
            .map_err(|e| status(&e))?;
        infer(&self.state, &loaded, r)
            .await
            .map(Response::new)
            .map_err(|e| status(&e))
    }
}

fn tensor_metadata(specs: &[TensorSpec]) -> Vec<TensorMetadata> {
    specs
        .iter()
        .map(|s| TensorMetadata {
            name: s.name.clone(),
            datatype: s.datatype.name().into(),
            shape: s.shape.clone(),
        })
        .collect()
}

/// Model metadata, as the REST endpoint reports it.
fn metadata(loaded: &Loaded) -> proto::ModelMetadataResponse {
    proto::ModelMetadataResponse {
        name: loaded.name.clone(),
        versions: vec![loaded.version.clone()],
        platform: loaded.platform().to_string(),
        inputs: tensor_metadata(&loaded.signature.inputs),
        outputs: tensor_metadata(&loaded.signature.outputs),
    }
}

/// Decodes, runs and encodes one inference on an already chosen model version.
async fn infer(
    state: &ServeState,
    loaded: &Loaded,
    request: proto::ModelInferRequest,
) -> Result<proto::ModelInferResponse, ServeError> {
    let inputs = decode_inputs(&request.inputs, &request.raw_input_contents)?;
    let params = crate::serving::model_params(
        request
            .parameters
            .iter()
            .filter_map(|(k, p)| Some((k, parameter_json(p)?))),
    );
    let outputs = state
        .infer_with_params(loaded, inputs, params, Protocol::Grpc)
        .await?;
    encode_outputs(loaded, request.id, &request.outputs, &outputs)
}

/// A request parameter as the JSON value MLflow's `params` would carry.
fn parameter_json(p: &proto::InferParameter) -> Option<serde_json::Value> {
    use proto::infer_parameter::ParameterChoice;
    Some(match p.parameter_choice.as_ref()? {
        ParameterChoice::BoolParam(b) => serde_json::Value::from(*b),
        ParameterChoice::Int64Param(i) => serde_json::Value::from(*i),
        ParameterChoice::StringParam(s) => serde_json::Value::from(s.as_str()),
        ParameterChoice::DoubleParam(d) => serde_json::Value::from(*d),
        ParameterChoice::Uint64Param(u) => serde_json::Value::from(*u),
    })
}

/// The inputs of a request, from typed contents or from the raw byte entries.
fn decode_inputs(inputs: &[InferInputTensor], raw: &[Bytes]) -> Result<Vec<Tensor>, ServeError> {
    if !raw.is_empty() && raw.len() != inputs.len() {
        return Err(bad(format!(
            "raw_input_contents has {} entries but the request has {} inputs; \
             when raw_input_contents is used every input takes one entry, in order",
            raw.len(),
            inputs.len()
        )));
    }
    inputs
        .iter()
        .enumerate()
        .map(|(i, input)| {
            let (datatype, shape, count) =
                crate::serving::input_header(&input.name, &input.datatype, &input.shape)?;
            let contents = input.contents.as_ref().filter(|c| !is_empty(c));
            let data = match (raw.get(i), contents) {
                (Some(_), Some(_)) => {
                    return Err(bad(format!(
                        "input '{}' has contents but the request also carries \
                         raw_input_contents; use one or the other for all inputs",
                        input.name
                    )))
                }
                (Some(bytes), None) => {
                    TensorData::from_le_bytes(&input.name, datatype, count, bytes)
                        .map_err(|e| bad(e.to_string()))?
                }
                (None, contents) => typed(&input.name, datatype, contents)?,
            };
            Tensor::new(&input.name, shape, data).map_err(|e| bad(e.to_string()))
        })
        .collect()
}

fn is_empty(c: &InferTensorContents) -> bool {
    filled(c).is_empty()
}

/// The names of the typed fields that hold values.
fn filled(c: &InferTensorContents) -> Vec<&'static str> {
    [
        ("bool_contents", c.bool_contents.is_empty()),
        ("int_contents", c.int_contents.is_empty()),
        ("int64_contents", c.int64_contents.is_empty()),
        ("uint_contents", c.uint_contents.is_empty()),
        ("uint64_contents", c.uint64_contents.is_empty()),
        ("fp32_contents", c.fp32_contents.is_empty()),
        ("fp64_contents", c.fp64_contents.is_empty()),
        ("bytes_contents", c.bytes_contents.is_empty()),
    ]
    .into_iter()
    .filter(|(_, empty)| !empty)
    .map(|(name, _)| name)
    .collect()
}

/// The typed field a datatype's values travel in.
fn field_for(datatype: DataType) -> Option<&'static str> {
    Some(match datatype {
        DataType::Bool => "bool_contents",
        DataType::Int8 | DataType::Int16 | DataType::Int32 => "int_contents",
        DataType::Int64 => "int64_contents",
        DataType::Uint8 | DataType::Uint16 | DataType::Uint32 => "uint_contents",
        DataType::Uint64 => "uint64_contents",
        DataType::Fp32 => "fp32_contents",
        DataType::Fp64 => "fp64_contents",
        DataType::Bytes => "bytes_contents",
        DataType::Fp16 => return None,
    })
}

/// Values of a narrow integer type carried widened, checked to fit.
fn narrow<W, N>(name: &str, datatype: DataType, values: &[W]) -> Result<Vec<N>, ServeError>
where
    W: Copy + std::fmt::Display,
    N: TryFrom<W>,
{
    values
        .iter()
        .map(|v| {
            N::try_from(*v).map_err(|_| {
                bad(format!(
                    "input '{name}': value {v} does not fit datatype {datatype}"
                ))
            })
        })
        .collect()
}

/// Decodes an input's typed contents (absent contents are an empty tensor; the element
/// count is checked against the shape by the caller).
fn typed(
    name: &str,
    datatype: DataType,
    contents: Option<&InferTensorContents>,
) -> Result<TensorData, ServeError> {
    let Some(field) = field_for(datatype) else {
        return Err(bad(format!(
            "input '{name}' is FP16, which has no typed contents field; send it in raw_input_contents"
        )));
    };
    let Some(c) = contents else {
        return Ok(TensorData::with_capacity(datatype, 0));
    };
    let used = filled(c);
    if let Some(other) = used.iter().find(|f| **f != field) {
        return Err(bad(format!(
            "input '{name}' is {datatype}, whose values go in {field}, but {other} is set"
        )));
    }
    Ok(match datatype {
        DataType::Bool => TensorData::Bool(c.bool_contents.clone()),
        DataType::Int8 => TensorData::Int8(narrow(name, datatype, &c.int_contents)?),
        DataType::Int16 => TensorData::Int16(narrow(name, datatype, &c.int_contents)?),
        DataType::Int32 => TensorData::Int32(c.int_contents.clone()),
        DataType::Int64 => TensorData::Int64(c.int64_contents.clone()),
        DataType::Uint8 => TensorData::Uint8(narrow(name, datatype, &c.uint_contents)?),
        DataType::Uint16 => TensorData::Uint16(narrow(name, datatype, &c.uint_contents)?),
        DataType::Uint32 => TensorData::Uint32(c.uint_contents.clone()),
        DataType::Uint64 => TensorData::Uint64(c.uint64_contents.clone()),
        DataType::Fp32 => TensorData::Fp32(c.fp32_contents.clone()),
        DataType::Fp64 => TensorData::Fp64(c.fp64_contents.clone()),
        DataType::Bytes => TensorData::Bytes(c.bytes_contents.iter().map(|b| b.to_vec()).collect()),
        DataType::Fp16 => {
            return Err(bad(format!(
                "input '{name}': FP16 needs raw_input_contents"
            )))
        }
    })
}

/// The response: the requested outputs (all, when none are named) in the requested
/// order, their elements in `raw_output_contents`.
fn encode_outputs(
    loaded: &Loaded,
    id: String,
    requested: &[InferRequestedOutputTensor],
    outputs: &[Tensor],
) -> Result<proto::ModelInferResponse, ServeError> {
    let wanted: Vec<&Tensor> = if requested.is_empty() {
        outputs.iter().collect()
    } else {
        requested
            .iter()
            .map(|r| crate::serving::find_output(outputs, &r.name))
            .collect::<Result<_, _>>()?
    };
    let mut tensors = Vec::with_capacity(wanted.len());
    let mut raw = Vec::with_capacity(wanted.len());
    for t in wanted {
        tensors.push(InferOutputTensor {
            name: t.name.clone(),
            datatype: t.datatype().name().into(),
            shape: t
                .shape
                .iter()
                .map(|d| i64::try_from(*d).unwrap_or(i64::MAX))
                .collect(),
            parameters: Default::default(),
            contents: None,
        });
        let mut bytes = Vec::new();
        t.data.write_le_bytes(&mut bytes);
        raw.push(Bytes::from(bytes));
    }
    Ok(proto::ModelInferResponse {
        model_name: loaded.name.clone(),
        model_version: loaded.version.clone(),
        id,
        parameters: Default::default(),
        outputs: tensors,
        raw_output_contents: raw,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use std::sync::Arc;

    use cairn_infer::{Backend, BackendError, BatchConfig, Batcher, ModelSignature};

    use crate::engines::EngineConfig;
    use crate::metrics::Metrics;
    use crate::models::{LoaderConfig, Models};
    use crate::resolve::{Location, ModelUri};

    fn input(
        name: &str,
        datatype: &str,
        shape: Vec<i64>,
        contents: Option<InferTensorContents>,
    ) -> InferInputTensor {
        InferInputTensor {
            name: name.into(),
            datatype: datatype.into(),
            shape,
            parameters: Default::default(),
            contents,
        }
    }

    fn one(
        datatype: &str,
        shape: Vec<i64>,
        c: InferTensorContents,
    ) -> Result<TensorData, ServeError> {
        decode_inputs(&[input("x", datatype, shape, Some(c))], &[]).map(|mut t| t.remove(0).data)
    }

    fn err(r: Result<impl std::fmt::Debug, ServeError>) -> String {
        match r {
            Ok(v) => panic!("expected an error, got {v:?}"),
            Err(e) => {
                assert!(matches!(e, ServeError::BadInput(_)), "{e:?}");
                e.to_string()
            }
        }
    }

    #[test]
    fn typed_contents_per_datatype() {
        let c = InferTensorContents::default;
        let cases: Vec<(&str, InferTensorContents, TensorData)> = vec![
            (
                "BOOL",
                InferTensorContents {
                    bool_contents: vec![true, false],
                    ..c()
                },
                TensorData::Bool(vec![true, false]),
            ),
            (
                "INT8",
                InferTensorContents {
                    int_contents: vec![-128, 127],
                    ..c()
                },
                TensorData::Int8(vec![-128, 127]),
            ),
            (
                "INT16",
                InferTensorContents {
                    int_contents: vec![-300, 300],
                    ..c()
                },
                TensorData::Int16(vec![-300, 300]),
            ),
            (
                "INT32",
                InferTensorContents {
                    int_contents: vec![i32::MIN, 1],
                    ..c()
                },
                TensorData::Int32(vec![i32::MIN, 1]),
            ),
            (
                "INT64",
                InferTensorContents {
                    int64_contents: vec![i64::MIN, 1],
                    ..c()
                },
                TensorData::Int64(vec![i64::MIN, 1]),
            ),
            (
                "UINT8",
                InferTensorContents {
                    uint_contents: vec![0, 255],
                    ..c()
                },
                TensorData::Uint8(vec![0, 255]),
            ),
            (
                "UINT16",
                InferTensorContents {
                    uint_contents: vec![0, 65535],
                    ..c()
                },
                TensorData::Uint16(vec![0, 65535]),
            ),
            (
                "UINT32",
                InferTensorContents {
                    uint_contents: vec![0, u32::MAX],
                    ..c()
                },
                TensorData::Uint32(vec![0, u32::MAX]),
            ),
            (
                "UINT64",
                InferTensorContents {
                    uint64_contents: vec![0, u64::MAX],
                    ..c()
                },
                TensorData::Uint64(vec![0, u64::MAX]),
            ),
            (
                "FP32",
                InferTensorContents {
                    fp32_contents: vec![1.5, -2.0],
                    ..c()
                },
                TensorData::Fp32(vec![1.5, -2.0]),
            ),
            (
                "FP64",
                InferTensorContents {
                    fp64_contents: vec![1.5, -2.0],
                    ..c()
                },
                TensorData::Fp64(vec![1.5, -2.0]),
            ),
            (
                "BYTES",
                InferTensorContents {
                    bytes_contents: vec![Bytes::from_static(b"ab"), Bytes::new()],
                    ..c()
                },
                TensorData::Bytes(vec![b"ab".to_vec(), vec![]]),
            ),
        ];
        for (datatype, contents, want) in cases {
            assert_eq!(
                one(datatype, vec![1, 2], contents).unwrap(),
                want,
                "{datatype}"
            );
        }
    }

    #[test]
    fn typed_contents_are_checked() {
        let c = InferTensorContents::default;
        let cases = [
            (
                "INT8",
                vec![2],
                InferTensorContents {
                    int_contents: vec![1, 300],
                    ..c()
                },
                "value 300 does not fit datatype INT8",
            ),
            (
                "UINT16",
                vec![1],
                InferTensorContents {
                    uint_contents: vec![70000],
                    ..c()
                },
                "value 70000 does not fit datatype UINT16",
            ),
            (
                "FP32",
                vec![2],
                InferTensorContents {
                    fp64_contents: vec![1.0, 2.0],
                    ..c()
                },
                "values go in fp32_contents, but fp64_contents is set",
            ),
            (
                "INT32",
                vec![1],
                InferTensorContents {
                    int_contents: vec![1],
                    int64_contents: vec![1],
                    ..c()
                },
                "but int64_contents is set",
            ),
            (
                "FP32",
                vec![3],
                InferTensorContents {
                    fp32_contents: vec![1.0, 2.0],
                    ..c()
                },
                "(3 elements) but 2 values",
            ),
            (
                "FP32",
                vec![2, 2],
                InferTensorContents {
                    fp32_contents: vec![1.0; 5],
                    ..c()
                },
                "(4 elements) but 5 values",
            ),
            (
                "FP16",
                vec![1],
                InferTensorContents {
                    uint_contents: vec![1],
                    ..c()
                },
                "FP16, which has no typed contents field",
            ),
            (
                "FLOAT",
                vec![1],
                InferTensorContents {
                    fp32_contents: vec![1.0],
                    ..c()
                },
                "unknown datatype 'FLOAT'",
            ),
            (
                "FP32",
                vec![-1],
                InferTensorContents {
                    fp32_contents: vec![1.0],
                    ..c()
                },
                "negative dimension",
            ),
            (
                "FP32",
                vec![i64::MAX, i64::MAX],
                InferTensorContents::default(),
                "impossibly large shape",
            ),
        ];
        for (datatype, shape, contents, needle) in cases {
            let e = err(one(datatype, shape, contents));
            assert!(e.contains(needle), "{e} does not contain {needle}");
        }
        // No contents at all: only a tensor without elements.
        let empty = decode_inputs(&[input("x", "FP32", vec![0, 4], None)], &[]).unwrap();
        assert_eq!(empty[0].data, TensorData::Fp32(vec![]));
        let e = err(decode_inputs(&[input("x", "FP32", vec![1, 4], None)], &[]));
        assert!(e.contains("(4 elements) but 0 values"), "{e}");
    }

    fn raw_of(data: &TensorData) -> Bytes {
        let mut out = Vec::new();
        data.write_le_bytes(&mut out);
        Bytes::from(out)
    }

    #[test]
    fn raw_contents() {
        let a = TensorData::Fp32(vec![1.0, 2.0, 3.0, 4.0]);
        let b = TensorData::Fp16(vec![0x3c00, 0xc000]);
        let s = TensorData::Bytes(vec![b"hi".to_vec(), vec![]]);
        let inputs = [
            input("a", "FP32", vec![2, 2], None),
            input("b", "FP16", vec![2], None),
            // An empty contents message is the same as none.
            input(
                "s",
                "BYTES",
                vec![2, 1],
                Some(InferTensorContents::default()),
            ),
        ];
        let t = decode_inputs(&inputs, &[raw_of(&a), raw_of(&b), raw_of(&s)]).unwrap();
        assert_eq!(t[0], Tensor::new("a", vec![2, 2], a.clone()).unwrap());
        assert_eq!(t[1].data, b);
        assert_eq!(t[2].shape, vec![2, 1]);
        assert_eq!(t[2].data, s);

        // One entry per input.
        let e = err(decode_inputs(&inputs[..2], &[raw_of(&a)]));
        assert!(
            e.contains("raw_input_contents has 1 entries but the request has 2 inputs"),
            "{e}"
        );
        // Byte counts must match shape and datatype.
        let e = err(decode_inputs(
            &[input("a", "FP32", vec![3], None)],
            &[raw_of(&a)],
        ));
        assert!(e.contains("is 16 bytes, expected 12"), "{e}");
        let e = err(decode_inputs(
            &[input("s", "BYTES", vec![3], None)],
            &[raw_of(&s)],
        ));
        assert!(e.contains("element count does not match the shape"), "{e}");
    }

    #[test]
    fn raw_and_typed_contents_do_not_mix() {
        let a = TensorData::Fp32(vec![1.0, 2.0]);
        let inputs = [
            input("a", "FP32", vec![2], None),
            input(
                "b",
                "FP32",
                vec![2],
                Some(InferTensorContents {
                    fp32_contents: vec![1.0, 2.0],
                    ..Default::default()
                }),
            ),
        ];
        let e = err(decode_inputs(&inputs, &[raw_of(&a), raw_of(&a)]));
        assert!(
            e.contains("input 'b' has contents but the request also carries raw_input_contents"),
            "{e}"
        );
        // Typed contents on one input and raw on none: the other input has no values.
        let e = err(decode_inputs(&inputs, &[]));
        assert!(
            e.contains("tensor 'a' has shape [2] (2 elements) but 0 values"),
            "{e}"
        );
    }

    #[test]
    fn errors_map_to_grpc_codes() {
        let cases = [
            (ServeError::UnknownModel("m".into()), Code::NotFound),
            (
                ServeError::UnknownVersion {
                    model: "m".into(),
                    version: "2".into(),
                    serving: "1".into(),
                },
                Code::NotFound,
            ),
            (
                ServeError::NotReady("m".into(), ": still loading".into()),
                Code::Unavailable,
            ),
            (ServeError::BadInput("no".into()), Code::InvalidArgument),
            (ServeError::Engine("boom".into()), Code::InvalidArgument),
            (
                ServeError::Overloaded("full".into()),
                Code::ResourceExhausted,
            ),
            (ServeError::Unavailable("stopped".into()), Code::Unavailable),
        ];
        for (e, code) in cases {
            let s = status(&e);
            assert_eq!(s.code(), code, "{e}");
            assert_eq!(s.message(), e.to_string());
        }
    }

    /// Doubles its FP32 input `x` into `y` and counts its elements into `n`.
    struct Doubler(ModelSignature);

    impl Backend for Doubler {
        fn engine(&self) -> &'static str {
            "test"
        }
        fn signature(&self) -> &ModelSignature {
            &self.0
        }
        fn infer(&mut self, inputs: &[Tensor]) -> Result<Vec<Tensor>, BackendError> {
            let x = &inputs[0];
            let TensorData::Fp32(v) = &x.data else {
                return Err(BackendError::Inference("not FP32".into()));
            };
            let y = Tensor::new(
                "y",
                x.shape.clone(),
                TensorData::Fp32(v.iter().map(|f| f * 2.0).collect()),
            );
            let n = Tensor::new("n", vec![1], TensorData::Int64(vec![v.len() as i64]));
            Ok(vec![
                y.map_err(|e| BackendError::Inference(e.to_string()))?,
                n.map_err(|e| BackendError::Inference(e.to_string()))?,
            ])
        }
    }

    fn state() -> ServeState {
        let metrics = Metrics::new();
        let loader = LoaderConfig {
            tracking: None,
            cache_dir: std::env::temp_dir(),
            engines: EngineConfig::default(),
            batching: BatchConfig::default(),
            poll_interval: std::time::Duration::from_secs(3600),
        };
        let specs = vec![(
            "m".to_string(),
            ModelUri::parse("/nonexistent/model").unwrap(),
        )];
        ServeState {
            models: Arc::new(Models::new(specs, loader, metrics.clone())),
            metrics,
            max_request_bytes: 1 << 20,
            gate: None,
            allowed_hosts: Arc::from(Vec::new()),
        }
    }

    fn loaded(state: &ServeState) -> Loaded {
        let spec = |name: &str, datatype, shape: Vec<i64>| TensorSpec {
            name: name.into(),
            datatype,
            shape,
        };
        let signature = ModelSignature {
            inputs: vec![spec("x", DataType::Fp32, vec![-1, 2])],
            outputs: vec![
                spec("y", DataType::Fp32, vec![-1, 2]),
                spec("n", DataType::Int64, vec![1]),
            ],
        };
        let engine: Box<dyn Backend> = Box::new(Doubler(signature.clone()));
        Loaded {
            name: "m".into(),
            version: "3".into(),
            engine: "test",
            signature,
            batcher: Batcher::start("grpc-test", vec![engine], BatchConfig::default(), None)
                .unwrap(),
            metrics: state.metrics.for_version("m", "3"),
            location: Location::Local(std::env::temp_dir()),
            tensor_signature: true,
            cache_lease: None,
        }
    }

    fn request(outputs: &[&str]) -> proto::ModelInferRequest {
        proto::ModelInferRequest {
            model_name: "m".into(),
            id: "req-1".into(),
            inputs: vec![input("x", "FP32", vec![2, 2], None)],
            outputs: outputs
                .iter()
                .map(|n| InferRequestedOutputTensor {
                    name: (*n).into(),
                    parameters: Default::default(),
                })
                .collect(),
            raw_input_contents: vec![raw_of(&TensorData::Fp32(vec![1.0, 2.0, 3.0, 4.0]))],
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn infers_and_encodes_requested_outputs() {
        let state = state();
        let loaded = loaded(&state);

        let all = infer(&state, &loaded, request(&[])).await.unwrap();
        assert_eq!(
            (
                all.model_name.as_str(),
                all.model_version.as_str(),
                all.id.as_str()
            ),
            ("m", "3", "req-1")
        );
        let names: Vec<_> = all.outputs.iter().map(|o| o.name.as_str()).collect();
        assert_eq!(names, ["y", "n"]);
        assert_eq!(all.outputs[0].datatype, "FP32");
        assert_eq!(all.outputs[0].shape, vec![2, 2]);
        assert_eq!(
            all.raw_output_contents[0],
            raw_of(&TensorData::Fp32(vec![2.0, 4.0, 6.0, 8.0]))
        );
        assert_eq!(
            all.raw_output_contents[1],
            raw_of(&TensorData::Int64(vec![4]))
        );

        let picked = infer(&state, &loaded, request(&["n", "y"])).await.unwrap();
        let names: Vec<_> = picked.outputs.iter().map(|o| o.name.as_str()).collect();
        assert_eq!(names, ["n", "y"]);
        assert_eq!(
            picked.raw_output_contents[0],
            raw_of(&TensorData::Int64(vec![4]))
        );

        let e = err(infer(&state, &loaded, request(&["z"])).await);
        assert_eq!(e, "unknown output 'z'; the model's outputs are: y, n");

        // The signature check of the shared path applies.
        let mut wrong = request(&[]);
        wrong.inputs[0].datatype = "FP64".into();
        wrong.raw_input_contents = vec![raw_of(&TensorData::Fp64(vec![1.0; 4]))];
        let e = err(infer(&state, &loaded, wrong).await);
        assert!(
            e.contains("has datatype FP64, the model expects FP32"),
            "{e}"
        );
    }

    #[tokio::test]
    async fn health_and_readiness_without_a_loaded_model() {
        let svc = Grpc { state: state() };
        let live = svc
            .server_live(Request::new(proto::ServerLiveRequest {}))
            .await
            .unwrap();
        assert!(live.into_inner().live);
        let ready = svc
            .server_ready(Request::new(proto::ServerReadyRequest {}))
            .await
            .unwrap();
        assert!(!ready.into_inner().ready);

        let ask = |name: &str| proto::ModelReadyRequest {
            name: name.into(),
            version: String::new(),
        };
        let not_yet = svc.model_ready(Request::new(ask("m"))).await.unwrap();
        assert!(!not_yet.into_inner().ready);
        let unknown = svc
            .model_ready(Request::new(ask("other")))
            .await
            .unwrap_err();
        assert_eq!(unknown.code(), Code::NotFound);
        assert_eq!(unknown.message(), "model 'other' is not served here");

        let meta = svc
            .model_metadata(Request::new(proto::ModelMetadataRequest {
                name: "m".into(),
                version: String::new(),
            }))
            .await
            .unwrap_err();
        assert_eq!(meta.code(), Code::Unavailable);
        let infer = svc
            .model_infer(Request::new(request(&[])))
            .await
            .unwrap_err();
        assert_eq!(infer.code(), Code::Unavailable);
        assert_eq!(infer.message(), "model 'm' is not ready: still loading");
    }
}
