//! Choosing and starting the engine for a model directory.
//!
//! Automatic choice: a model with an `onnx` flavor runs on onnxruntime in-process, or on
//! tract (pure Rust) when no onnxruntime library can be loaded on this machine; anything
//! else with a `python_function` flavor (scikit-learn, skops, custom pyfunc) runs in Python
//! worker processes, which are the only place such formats are deserialised.

use std::path::{Path, PathBuf};

use cairn_infer::{Backend, DataType, ModelSignature, TensorSpec};
use cairn_infer_python::{InputKind, PythonBackend, PythonConfig};

use crate::mlmodel::{ColumnOrTensor, MlModel};

/// Which engine runs a model.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EngineChoice {
    /// Pick from the model's flavors.
    Auto,
    Onnxruntime,
    Tract,
    Python,
}

impl EngineChoice {
    /// Parses a flag value.
    pub fn parse(s: &str) -> Result<EngineChoice, String> {
        match s {
            "auto" => Ok(EngineChoice::Auto),
            "onnxruntime" | "ort" => Ok(EngineChoice::Onnxruntime),
            "tract" => Ok(EngineChoice::Tract),
            "python" => Ok(EngineChoice::Python),
            other => Err(format!(
                "unknown engine '{other}'; expected auto, onnxruntime, tract or python"
            )),
        }
    }
}

/// Engine settings shared by every model of a server.
#[derive(Clone, Debug)]
pub struct EngineConfig {
    pub choice: EngineChoice,
    /// Engine instances per model, each on its own thread (Python: its own process).
    pub instances: usize,
    /// Threads each instance may use inside one call.
    pub threads_per_instance: usize,
    /// Explicit ONNX Runtime library (else `ORT_DYLIB_PATH` or the Python environment).
    pub ort_library: Option<PathBuf>,
    /// Interpreter for the Python engine (else `$VIRTUAL_ENV/bin/python` or `python3`).
    pub python: Option<PathBuf>,
    /// Longest one Python `predict` call may take (`None`: no limit).
    pub predict_timeout: Option<std::time::Duration>,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            choice: EngineChoice::Auto,
            instances: 1,
            threads_per_instance: 1,
            ort_library: None,
            python: None,
            predict_timeout: None,
        }
    }
}

/// Starts `instances` engines for the model in `dir`; blocking (call off the runtime).
pub fn start(
    dir: &Path,
    mlmodel: &MlModel,
    config: &EngineConfig,
) -> Result<Vec<Box<dyn Backend>>, String> {
    let onnx = mlmodel.onnx_file(dir);
    let pyfunc = mlmodel.flavors.contains_key("python_function");
    let flavors = || mlmodel.flavor_names().join(", ");
    // Why onnxruntime was passed over, when tract runs an ONNX model instead.
    let mut ort_missing = None;
    let choice = match config.choice {
        EngineChoice::Auto if onnx.is_some() => match ort_available(config) {
            Ok(()) => EngineChoice::Onnxruntime,
            Err(why) if cfg!(feature = "tract") => {
                tracing::info!(reason = %why, "onnxruntime is not available; serving ONNX with tract");
                ort_missing = Some(why);
                EngineChoice::Tract
            }
            Err(_) => EngineChoice::Onnxruntime,
        },
        EngineChoice::Auto if pyfunc => EngineChoice::Python,
        EngineChoice::Auto => {
            return Err(format!(
                "no engine for this model: it has the flavors [{}]; cairn serves the onnx \
                 flavor and anything with a python_function flavor",
                flavors()
            ))
        }
        explicit => explicit,
    };
    match choice {
        EngineChoice::Onnxruntime | EngineChoice::Auto => {
            let file = onnx.ok_or_else(|| {
                format!(
                    "--engine onnxruntime needs an onnx flavor; this model has [{}]",
                    flavors()
                )
            })?;
            start_ort(&file, config)
        }
        EngineChoice::Tract => {
            let file = onnx.ok_or_else(|| {
                format!(
                    "--engine tract needs an onnx flavor; this model has [{}]",
                    flavors()
                )
            })?;
            start_tract(&file, config).map_err(|e| match ort_missing {
                Some(why) => format!("onnxruntime is not available ({why}), and {e}"),
                None => e,
            })
        }
        EngineChoice::Python => {
            if !pyfunc {
                return Err(format!(
                    "--engine python needs a python_function flavor; this model has [{}]",
                    flavors()
                ));
            }
            let (signature, kind) = pyfunc_signature(mlmodel)?;
            let python = PythonConfig {
                python: config.python.clone(),
                predict_timeout: config.predict_timeout,
            };
            // Workers start in parallel: each pays for importing mlflow and the model.
            std::thread::scope(|scope| {
                let handles: Vec<_> = (0..config.instances.max(1))
                    .map(|_| {
                        let (python, signature) = (&python, signature.clone());
                        scope.spawn(move || PythonBackend::start(dir, python, signature, kind))
                    })
                    .collect();
                handles
                    .into_iter()
                    .map(|h| match h.join() {
                        Ok(Ok(b)) => Ok(Box::new(b) as Box<dyn Backend>),
                        Ok(Err(e)) => Err(e.to_string()),
                        Err(_) => Err("a Python worker start-up thread panicked".to_string()),
                    })
                    .collect()
            })
        }
    }
}

/// The tensors a pyfunc model takes and returns, from its MLmodel signature, and how the
/// worker should hand them to `predict`.
pub fn pyfunc_signature(m: &MlModel) -> Result<(ModelSignature, InputKind), String> {
    if m.inputs.is_empty() {
        // No signature: inputs pass through as the request gives them (an open signature).
        return Ok((ModelSignature::default(), InputKind::Infer));
    }
    let columns = m
        .inputs
        .iter()
        .all(|i| matches!(i, ColumnOrTensor::Column { .. }));
    let kind = if columns {
        InputKind::DataFrame
    } else if m.inputs.len() == 1
        && matches!(&m.inputs[0], ColumnOrTensor::Tensor { name: None, .. })
    {
        InputKind::Array
    } else {
        InputKind::Dict
    };
    let inputs = m
        .inputs
        .iter()
        .enumerate()
        .map(|(i, spec)| tensor_spec(spec, &i.to_string()))
        .collect::<Result<Vec<_>, _>>()?;
    let outputs = m
        .outputs
        .iter()
        .map(|spec| tensor_spec(spec, "predictions"))
        .collect::<Result<Vec<_>, _>>()?;
    Ok((ModelSignature { inputs, outputs }, kind))
}

fn tensor_spec(spec: &ColumnOrTensor, default_name: &str) -> Result<TensorSpec, String> {
    match spec {
        ColumnOrTensor::Column { name, ty } => Ok(TensorSpec {
            name: name.clone().unwrap_or_else(|| default_name.to_string()),
            datatype: column_type(ty)?,
            shape: vec![-1],
        }),
        ColumnOrTensor::Tensor { name, dtype, shape } => Ok(TensorSpec {
            name: name.clone().unwrap_or_else(|| default_name.to_string()),
            datatype: numpy_type(dtype)?,
            shape: shape.clone(),
        }),
    }
}

fn column_type(ty: &str) -> Result<DataType, String> {
    Ok(match ty {
        "boolean" => DataType::Bool,
        "integer" => DataType::Int32,
        "long" => DataType::Int64,
        "float" => DataType::Fp32,
        "double" => DataType::Fp64,
        "string" | "binary" => DataType::Bytes,
        other => {
            return Err(format!(
                "column type '{other}' cannot be served as a tensor"
            ))
        }
    })
}

fn numpy_type(dtype: &str) -> Result<DataType, String> {
    Ok(match dtype {
        "bool" => DataType::Bool,
        "uint8" => DataType::Uint8,
        "uint16" => DataType::Uint16,
        "uint32" => DataType::Uint32,
        "uint64" => DataType::Uint64,
        "int8" => DataType::Int8,
        "int16" => DataType::Int16,
        "int32" => DataType::Int32,
        "int64" => DataType::Int64,
        "float16" => DataType::Fp16,
        "float32" => DataType::Fp32,
        "float64" => DataType::Fp64,
        "str" | "object" | "bytes" => DataType::Bytes,
        other => return Err(format!("tensor dtype '{other}' cannot be served")),
    })
}

#[cfg(feature = "ort")]
fn start_ort(file: &Path, config: &EngineConfig) -> Result<Vec<Box<dyn Backend>>, String> {
    let ort_config = cairn_infer_ort::OrtConfig {
        intra_threads: config.threads_per_instance,
        library: config.ort_library.clone(),
    };
    (0..config.instances.max(1))
        .map(|_| {
            cairn_infer_ort::OrtBackend::load(file, &ort_config)
                .map(|b| Box::new(b) as Box<dyn Backend>)
                .map_err(|e| e.to_string())
        })
        .collect()
}

#[cfg(feature = "ort")]
fn ort_available(config: &EngineConfig) -> Result<(), String> {
    cairn_infer_ort::environment(config.ort_library.as_deref())
        .map(|_| ())
        .map_err(|e| e.to_string())
}

#[cfg(not(feature = "ort"))]
fn ort_available(_: &EngineConfig) -> Result<(), String> {
    Err("this build of cairn has no onnxruntime engine (cargo feature `ort`)".into())
}

/// tract instances share one optimised plan: it is loaded once, whatever `instances`.
#[cfg(feature = "tract")]
fn start_tract(file: &Path, config: &EngineConfig) -> Result<Vec<Box<dyn Backend>>, String> {
    let backend = cairn_infer_tract::TractBackend::load(file).map_err(|e| e.to_string())?;
    Ok((0..config.instances.max(1))
        .map(|_| Box::new(backend.clone()) as Box<dyn Backend>)
        .collect())
}

#[cfg(not(feature = "tract"))]
fn start_tract(_: &Path, _: &EngineConfig) -> Result<Vec<Box<dyn Backend>>, String> {
    Err("this build of cairn has no tract engine (cargo feature `tract`)".into())
}

#[cfg(not(feature = "ort"))]
fn start_ort(_: &Path, _: &EngineConfig) -> Result<Vec<Box<dyn Backend>>, String> {
    Err("this build of cairn has no onnxruntime engine (cargo feature `ort`)".into())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn column_signatures_become_dataframe_inputs() {
        let m = MlModel::parse(
            "flavors: {python_function: {}, sklearn: {}}\nsignature:\n  inputs: '[{\"type\": \"double\", \"name\": \"a\"}, {\"type\": \"long\", \"name\": \"b\"}]'\n  outputs: '[{\"type\": \"long\"}]'\n",
        )
        .unwrap();
        let (sig, kind) = pyfunc_signature(&m).unwrap();
        assert_eq!(kind, InputKind::DataFrame);
        assert_eq!(sig.inputs[0].datatype, DataType::Fp64);
        assert_eq!(sig.inputs[1].name, "b");
        assert_eq!(sig.outputs[0].name, "predictions");
        assert!(sig.batchable());
    }

    #[test]
    fn tensor_signatures_and_missing_ones() {
        let m = MlModel::parse(
            "flavors: {python_function: {}}\nsignature:\n  inputs: '[{\"type\": \"tensor\", \"tensor-spec\": {\"dtype\": \"float32\", \"shape\": [-1, 4]}}]'\n",
        )
        .unwrap();
        let (sig, kind) = pyfunc_signature(&m).unwrap();
        assert_eq!(kind, InputKind::Array);
        assert_eq!(sig.inputs[0].shape, vec![-1, 4]);
        let none = MlModel::parse("flavors: {python_function: {}}\n").unwrap();
        let (sig, kind) = pyfunc_signature(&none).unwrap();
        assert!(sig.is_open());
        assert_eq!(kind, InputKind::Infer);
        assert!(EngineChoice::parse("tensorflow").is_err());
        assert_eq!(EngineChoice::parse("tract"), Ok(EngineChoice::Tract));
    }
}
