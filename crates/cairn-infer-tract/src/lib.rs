//! tract, Sonos' pure-Rust ONNX runtime, behind `cairn_infer::Backend`.
//!
//! Needs no shared library, so it serves ONNX models on machines without onnxruntime, for
//! the graphs whose operators it implements. The graph is loaded and optimised once; the
//! runnable plan is immutable (`run` takes `&self`), so every engine instance of a model
//! shares one plan through an `Arc` and keeps only its own thread.
//!
//! Input dimensions the file leaves unnamed or unknown become symbols (the first one `N`,
//! the batch), so one plan serves any batch size.

use std::path::Path;
use std::sync::Arc;

use cairn_infer::{
    Backend, BackendError, DataType, ModelSignature, Tensor, TensorData, TensorSpec,
};
use tract_onnx::prelude::{
    DatumType, Framework, InferenceFact, InferenceModelExt, IntoRunnable, IntoTensor, TDim, TValue,
    Tensor as TractTensor, ToDim, TypedRunnableModel,
};
use tract_onnx::tract_hir::infer::Factoid;

type Plan = Arc<TypedRunnableModel>;

/// Operators tract has but that cairn does not run on it, and why; such models need
/// onnxruntime. Its TreeEnsembleClassifier is about 1000× slower than onnxruntime's on a
/// 100-tree forest, and labels binary forests differently from onnxruntime (and so from
/// scikit-learn) for rows whose class-0 score is slightly negative.
const REFUSED_OPS: &[(&str, &str)] = &[(
    "TreeEnsembleClassifier",
    "tract runs far slower than onnxruntime and labels binary forests differently; \
     serve this model with --engine onnxruntime",
)];

/// One tract engine instance. Cloning shares the optimised plan.
#[derive(Clone)]
pub struct TractBackend {
    plan: Plan,
    signature: ModelSignature,
}

fn load_err(model: &Path, e: impl std::fmt::Display) -> BackendError {
    BackendError::Load(format!("tract cannot load {}: {e}", model.display()))
}

impl TractBackend {
    /// Loads, types and optimises `model` (an `.onnx` file).
    pub fn load(model: &Path) -> Result<TractBackend, BackendError> {
        let onnx = tract_onnx::onnx();
        let proto = onnx
            .proto_model_for_path(model)
            .map_err(|e| load_err(model, format!("{e:#}")))?;
        if let Some(graph) = &proto.graph {
            for node in &graph.node {
                if let Some((_, why)) = REFUSED_OPS.iter().find(|(op, _)| *op == node.op_type) {
                    return Err(load_err(
                        model,
                        format!("the graph uses {}, which {why}", node.op_type),
                    ));
                }
            }
        }
        let dir = model.parent().and_then(Path::to_str);
        let parsed = onnx
            .parse(&proto, dir)
            .map_err(|e| load_err(model, format!("{e:#}")))?;
        if !parsed.unresolved_inputs.is_empty() {
            return Err(load_err(
                model,
                format!("unresolved graph inputs {:?}", parsed.unresolved_inputs),
            ));
        }
        let mut graph = parsed.model;
        for ix in 0..graph.inputs.len() {
            let mut fact: InferenceFact = graph
                .input_fact(ix)
                .map_err(|e| load_err(model, e))?
                .clone();
            let unknown: Vec<usize> = fact
                .shape
                .dims()
                .enumerate()
                .filter(|(_, d)| d.concretize().is_none())
                .map(|(j, _)| j)
                .collect();
            if unknown.is_empty() {
                continue;
            }
            for j in unknown {
                let name = if j == 0 {
                    "N".to_string()
                } else {
                    format!("d{ix}_{j}")
                };
                let symbol = graph.symbols.sym(&name);
                fact.shape.set_dim(j, symbol.to_dim());
            }
            graph
                .set_input_fact(ix, fact)
                .map_err(|e| load_err(model, e))?;
        }
        let typed = graph
            .into_optimized()
            .map_err(|e| load_err(model, format!("{e:#}")))?;
        let spec = |outlet, name: String| -> Result<TensorSpec, BackendError> {
            let fact = typed.outlet_fact(outlet).map_err(|e| load_err(model, e))?;
            Ok(TensorSpec {
                name,
                datatype: datatype(fact.datum_type).ok_or_else(|| {
                    load_err(
                        model,
                        format!("tensor type {:?} cannot be served", fact.datum_type),
                    )
                })?,
                shape: fact
                    .shape
                    .iter()
                    .map(|d| d.to_i64().unwrap_or(-1))
                    .collect(),
            })
        };
        let label = |outlet: tract_onnx::prelude::OutletId| {
            typed
                .outlet_label(outlet)
                .map(str::to_string)
                .unwrap_or_else(|| typed.node(outlet.node).name.clone())
        };
        let inputs = typed
            .input_outlets()
            .map_err(|e| load_err(model, e))?
            .iter()
            .map(|o| spec(*o, typed.node(o.node).name.clone()))
            .collect::<Result<Vec<_>, _>>()?;
        let outputs = typed
            .output_outlets()
            .map_err(|e| load_err(model, e))?
            .iter()
            .map(|o| spec(*o, label(*o)))
            .collect::<Result<Vec<_>, _>>()?;
        let plan = typed
            .into_runnable()
            .map_err(|e| load_err(model, format!("{e:#}")))?;
        Ok(TractBackend {
            plan,
            signature: ModelSignature { inputs, outputs },
        })
    }
}

/// The protocol datatype of a tract element type. Symbolic dimensions (`TDim`, which
/// shape-computing graphs can output) are reported and returned as INT64.
fn datatype(dt: DatumType) -> Option<DataType> {
    Some(match dt {
        DatumType::Bool => DataType::Bool,
        DatumType::U8 => DataType::Uint8,
        DatumType::U16 => DataType::Uint16,
        DatumType::U32 => DataType::Uint32,
        DatumType::U64 => DataType::Uint64,
        DatumType::I8 => DataType::Int8,
        DatumType::I16 => DataType::Int16,
        DatumType::I32 => DataType::Int32,
        DatumType::I64 | DatumType::TDim => DataType::Int64,
        DatumType::F16 => DataType::Fp16,
        DatumType::F32 => DataType::Fp32,
        DatumType::F64 => DataType::Fp64,
        DatumType::String => DataType::Bytes,
        _ => return None,
    })
}

fn engine_err(e: impl std::fmt::Display) -> BackendError {
    BackendError::Inference(format!("tract: {e:#}"))
}

/// Copies one input into a tract tensor.
fn to_tract(t: &Tensor) -> Result<TractTensor, BackendError> {
    let shape = t.shape.as_slice();
    macro_rules! copy {
        ($v:expr) => {
            TractTensor::from_shape(shape, $v.as_slice()).map_err(engine_err)?
        };
    }
    Ok(match &t.data {
        TensorData::Bool(v) => copy!(v),
        TensorData::Uint8(v) => copy!(v),
        TensorData::Uint16(v) => copy!(v),
        TensorData::Uint32(v) => copy!(v),
        TensorData::Uint64(v) => copy!(v),
        TensorData::Int8(v) => copy!(v),
        TensorData::Int16(v) => copy!(v),
        TensorData::Int32(v) => copy!(v),
        TensorData::Int64(v) => copy!(v),
        TensorData::Fp32(v) => copy!(v),
        TensorData::Fp64(v) => copy!(v),
        TensorData::Fp16(v) => {
            let halves: Vec<tract_onnx::prelude::f16> = v
                .iter()
                .map(|b| tract_onnx::prelude::f16::from_bits(*b))
                .collect();
            copy!(halves)
        }
        TensorData::Bytes(v) => {
            let strings = v
                .iter()
                .map(|b| String::from_utf8(b.clone()))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|_| {
                    BackendError::Inference(format!(
                        "input '{}': ONNX string tensors must be UTF-8",
                        t.name
                    ))
                })?;
            tract_onnx::prelude::tract_ndarray::ArrayD::from_shape_vec(shape, strings)
                .map_err(engine_err)?
                .into_tensor()
        }
    })
}

/// Copies one output out of tract.
fn from_tract(name: &str, value: &TractTensor) -> Result<Tensor, BackendError> {
    macro_rules! take {
        ($t:ty, $var:ident) => {
            TensorData::$var(
                value
                    .to_plain_array_view::<$t>()
                    .map_err(engine_err)?
                    .iter()
                    .cloned()
                    .collect(),
            )
        };
    }
    let data = match value.datum_type() {
        DatumType::Bool => take!(bool, Bool),
        DatumType::U8 => take!(u8, Uint8),
        DatumType::U16 => take!(u16, Uint16),
        DatumType::U32 => take!(u32, Uint32),
        DatumType::U64 => take!(u64, Uint64),
        DatumType::I8 => take!(i8, Int8),
        DatumType::I16 => take!(i16, Int16),
        DatumType::I32 => take!(i32, Int32),
        DatumType::I64 => take!(i64, Int64),
        DatumType::F32 => take!(f32, Fp32),
        DatumType::F64 => take!(f64, Fp64),
        DatumType::F16 => TensorData::Fp16(
            value
                .to_plain_array_view::<tract_onnx::prelude::f16>()
                .map_err(engine_err)?
                .iter()
                .map(|h| h.to_bits())
                .collect(),
        ),
        DatumType::TDim => TensorData::Int64(
            value
                .to_plain_array_view::<TDim>()
                .map_err(engine_err)?
                .iter()
                .map(|d| d.to_i64().map_err(engine_err))
                .collect::<Result<_, _>>()?,
        ),
        DatumType::String => TensorData::Bytes(
            value
                .to_plain_array_view::<String>()
                .map_err(engine_err)?
                .iter()
                .map(|s| s.as_bytes().to_vec())
                .collect(),
        ),
        other => {
            return Err(BackendError::Inference(format!(
                "output '{name}' has element type {other:?}, which the inference protocols cannot carry"
            )))
        }
    };
    Tensor::new(name, value.shape().to_vec(), data).map_err(engine_err)
}

impl Backend for TractBackend {
    fn engine(&self) -> &'static str {
        "tract"
    }

    fn signature(&self) -> &ModelSignature {
        &self.signature
    }

    fn infer(&mut self, inputs: &[Tensor]) -> Result<Vec<Tensor>, BackendError> {
        let values = inputs
            .iter()
            .map(|t| to_tract(t).map(TValue::from))
            .collect::<Result<tract_onnx::prelude::TVec<_>, _>>()?;
        let outputs = self.plan.run(values).map_err(engine_err)?;
        outputs
            .iter()
            .zip(&self.signature.outputs)
            .map(|(value, spec)| from_tract(&spec.name, value))
            .collect()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn datatypes_cover_the_protocol() {
        assert_eq!(datatype(DatumType::TDim), Some(DataType::Int64));
        assert_eq!(datatype(DatumType::String), Some(DataType::Bytes));
        assert_eq!(datatype(DatumType::Blob), None);
    }

    #[test]
    fn tensors_round_trip_through_tract() {
        let cases = vec![
            TensorData::Fp32(vec![1.0, 2.0, 3.0, 4.0]),
            TensorData::Int64(vec![1, -2, 3, 4]),
            TensorData::Bool(vec![true, false, true, true]),
            TensorData::Fp16(vec![0x3c00, 0x4000, 0, 0x3800]),
            TensorData::Bytes(vec![b"a".to_vec(), b"bc".to_vec(), vec![], b"d".to_vec()]),
        ];
        for data in cases {
            let t = Tensor::new("x", vec![2, 2], data).unwrap();
            let back = from_tract("x", &to_tract(&t).unwrap()).unwrap();
            assert_eq!(back, t);
        }
    }

    #[test]
    fn a_missing_file_is_a_load_error() {
        let err = match TractBackend::load(Path::new("/nonexistent/model.onnx")) {
            Err(e) => e,
            Ok(_) => panic!("loaded a missing file"),
        };
        assert!(matches!(err, BackendError::Load(_)), "{err:?}");
        assert!(err.to_string().contains("/nonexistent/model.onnx"), "{err}");
    }

    #[test]
    fn non_utf8_strings_are_refused() {
        let t = Tensor::new("s", vec![1], TensorData::Bytes(vec![vec![0xff, 0xfe]])).unwrap();
        let err = to_tract(&t).unwrap_err();
        assert!(err.to_string().contains("UTF-8"), "{err}");
    }
}
