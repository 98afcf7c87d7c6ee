//! ONNX Runtime behind `cairn_infer::Backend`.
//!
//! The shared library is loaded at run time (ort's `load-dynamic`): from `ORT_DYLIB_PATH`,
//! else from the `onnxruntime` wheel of the active Python environment. One process-wide
//! ONNX Runtime environment is created on first use; each `OrtBackend` owns one session,
//! and the batcher gives each backend its own thread because `Session::run` takes
//! `&mut self`.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use cairn_infer::{
    Backend, BackendError, DataType, ModelSignature, Tensor, TensorData, TensorSpec,
};
use ort::environment::Environment;
use ort::session::builder::GraphOptimizationLevel;
use ort::session::{Session, SessionInputValue};
use ort::value::{DynValue, TensorElementType, TensorRef, ValueType};

const INSTALL_HINT: &str = "install it with `pip install onnxruntime` in the active Python \
     environment, or set ORT_DYLIB_PATH to the path of libonnxruntime";

/// Engine settings.
#[derive(Clone, Debug)]
pub struct OrtConfig {
    /// Threads one session uses inside an operator (ONNX Runtime's intra-op pool).
    pub intra_threads: usize,
    /// The library to load; found automatically when `None`.
    pub library: Option<PathBuf>,
}

impl Default for OrtConfig {
    fn default() -> Self {
        OrtConfig {
            intra_threads: 1,
            library: None,
        }
    }
}

static ENVIRONMENT: OnceLock<Result<(Environment, PathBuf), String>> = OnceLock::new();

/// Loads ONNX Runtime once per process and returns the library path it came from.
pub fn environment(
    library: Option<&Path>,
) -> Result<(&'static Environment, &'static Path), BackendError> {
    let loaded = ENVIRONMENT.get_or_init(|| {
        let path = match library {
            Some(p) => p.to_path_buf(),
            None => find_library()
                .ok_or_else(|| format!("ONNX Runtime library not found: {INSTALL_HINT}"))?,
        };
        let builder = ort::init_from(&path).map_err(|e| {
            format!(
                "cannot load ONNX Runtime from {}: {e}; {INSTALL_HINT}",
                path.display()
            )
        })?;
        let env = builder
            .with_name("cairn")
            .build()
            .map_err(|e| format!("cannot start ONNX Runtime from {}: {e}", path.display()))?;
        Ok((env, path))
    });
    match loaded {
        Ok((env, path)) => Ok((env, path.as_path())),
        Err(msg) => Err(BackendError::Load(msg.clone())),
    }
}

/// `ORT_DYLIB_PATH`, else `onnxruntime/capi/libonnxruntime*` in the active virtualenv's
/// site-packages, else wherever `python3 -c "import onnxruntime"` finds the package.
pub fn find_library() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("ORT_DYLIB_PATH") {
        return Some(PathBuf::from(p));
    }
    let mut package_dirs = Vec::new();
    if let Some(venv) = std::env::var_os("VIRTUAL_ENV") {
        let lib = Path::new(&venv).join("lib");
        for entry in std::fs::read_dir(lib).into_iter().flatten().flatten() {
            package_dirs.push(entry.path().join("site-packages").join("onnxruntime"));
        }
    }
    for python in ["python3", "python"] {
        let out = std::process::Command::new(python)
            .args([
                "-c",
                "import onnxruntime, os; print(os.path.dirname(onnxruntime.__file__))",
            ])
            .stderr(std::process::Stdio::null())
            .output();
        if let Ok(out) = out {
            if out.status.success() {
                let dir = String::from_utf8_lossy(&out.stdout).trim().to_string();
                package_dirs.push(PathBuf::from(dir));
                break;
            }
        }
    }
    package_dirs
        .into_iter()
        .find_map(|dir| library_in(&dir.join("capi")))
}

fn library_in(dir: &Path) -> Option<PathBuf> {
    let mut candidates: Vec<PathBuf> = std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name().and_then(|n| n.to_str()).is_some_and(|n| {
                (n.starts_with("libonnxruntime.so")
                    || n.starts_with("libonnxruntime.") && n.ends_with(".dylib"))
                    || n == "onnxruntime.dll"
            })
        })
        .collect();
    // Prefer the most specific name (libonnxruntime.so.1.22.0 over libonnxruntime.so).
    candidates.sort_by_key(|p| std::cmp::Reverse(p.as_os_str().len()));
    candidates.into_iter().next()
}

/// One ONNX Runtime session.
pub struct OrtBackend {
    session: Session,
    signature: ModelSignature,
}

impl OrtBackend {
    /// Loads `model` (an `.onnx` file) into a new session.
    pub fn load(model: &Path, config: &OrtConfig) -> Result<OrtBackend, BackendError> {
        let (env, _) = environment(config.library.as_deref())?;
        let fail = |e: ort::Error| {
            BackendError::Load(format!("ONNX Runtime cannot load {}: {e}", model.display()))
        };
        let session = Session::builder(env)
            .map_err(fail)?
            .with_optimization_level(GraphOptimizationLevel::Level3)
            .map_err(|e| fail(e.into()))?
            .with_intra_threads(config.intra_threads.max(1))
            .map_err(|e| fail(e.into()))?
            .with_inter_threads(1)
            .map_err(|e| fail(e.into()))?
            // Spinning threads burn the cores the batchers and HTTP workers need.
            .with_intra_op_spinning(false)
            .map_err(|e| fail(e.into()))?
            .commit_from_file(model)
            .map_err(fail)?;
        let inputs = session
            .inputs()
            .iter()
            .map(|o| spec(o.name(), o.dtype()))
            .collect();
        let outputs = session
            .outputs()
            .iter()
            .map(|o| spec(o.name(), o.dtype()))
            .collect();
        Ok(OrtBackend {
            session,
            signature: ModelSignature { inputs, outputs },
        })
    }
}

/// The declared spec of an input or output. Non-tensor values (skl2onnx's ZipMap
/// sequences of maps) get BYTES and no shape; `infer` refuses to return them.
fn spec(name: &str, ty: &ValueType) -> TensorSpec {
    match ty {
        ValueType::Tensor { ty, shape, .. } => TensorSpec {
            name: name.to_string(),
            datatype: datatype(*ty).unwrap_or(DataType::Bytes),
            shape: shape.iter().copied().collect(),
        },
        _ => TensorSpec {
            name: name.to_string(),
            datatype: DataType::Bytes,
            shape: Vec::new(),
        },
    }
}

fn datatype(ty: TensorElementType) -> Option<DataType> {
    Some(match ty {
        TensorElementType::Bool => DataType::Bool,
        TensorElementType::Uint8 => DataType::Uint8,
        TensorElementType::Uint16 => DataType::Uint16,
        TensorElementType::Uint32 => DataType::Uint32,
        TensorElementType::Uint64 => DataType::Uint64,
        TensorElementType::Int8 => DataType::Int8,
        TensorElementType::Int16 => DataType::Int16,
        TensorElementType::Int32 => DataType::Int32,
        TensorElementType::Int64 => DataType::Int64,
        TensorElementType::Float16 => DataType::Fp16,
        TensorElementType::Float32 => DataType::Fp32,
        TensorElementType::Float64 => DataType::Fp64,
        TensorElementType::String => DataType::Bytes,
        _ => return None,
    })
}

fn engine_err(e: impl std::fmt::Display) -> BackendError {
    BackendError::Inference(format!("onnxruntime: {e}"))
}

/// Wraps an input without copying its elements (strings and FP16 are converted).
fn to_value<'a>(t: &'a Tensor) -> Result<SessionInputValue<'a>, BackendError> {
    let shape: Vec<i64> = t.shape.iter().map(|d| *d as i64).collect();
    macro_rules! view {
        ($v:expr) => {
            TensorRef::from_array_view((shape, $v.as_slice()))
                .map_err(engine_err)?
                .into()
        };
    }
    Ok(match &t.data {
        TensorData::Bool(v) => view!(v),
        TensorData::Uint8(v) => view!(v),
        TensorData::Uint16(v) => view!(v),
        TensorData::Uint32(v) => view!(v),
        TensorData::Uint64(v) => view!(v),
        TensorData::Int8(v) => view!(v),
        TensorData::Int16(v) => view!(v),
        TensorData::Int32(v) => view!(v),
        TensorData::Int64(v) => view!(v),
        TensorData::Fp32(v) => view!(v),
        TensorData::Fp64(v) => view!(v),
        TensorData::Fp16(v) => {
            let halves: Vec<half::f16> = v.iter().map(|b| half::f16::from_bits(*b)).collect();
            ort::value::Tensor::from_array((shape, halves))
                .map_err(engine_err)?
                .into()
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
            ort::value::Tensor::from_string_array((shape, strings.as_slice()))
                .map_err(engine_err)?
                .into()
        }
    })
}

fn from_value(name: &str, value: &DynValue) -> Result<Tensor, BackendError> {
    let ValueType::Tensor { ty, .. } = value.dtype() else {
        return Err(BackendError::Inference(format!(
            "output '{name}' is not a tensor ({}); re-export the model with tensor outputs \
             (for skl2onnx classifiers: options={{'zipmap': False}})",
            value.dtype()
        )));
    };
    macro_rules! take {
        ($t:ty, $var:ident) => {{
            let (shape, data) = value.try_extract_tensor::<$t>().map_err(engine_err)?;
            (
                shape.iter().map(|d| *d as usize).collect::<Vec<_>>(),
                TensorData::$var(data.to_vec()),
            )
        }};
    }
    let (shape, data) = match ty {
        TensorElementType::Bool => take!(bool, Bool),
        TensorElementType::Uint8 => take!(u8, Uint8),
        TensorElementType::Uint16 => take!(u16, Uint16),
        TensorElementType::Uint32 => take!(u32, Uint32),
        TensorElementType::Uint64 => take!(u64, Uint64),
        TensorElementType::Int8 => take!(i8, Int8),
        TensorElementType::Int16 => take!(i16, Int16),
        TensorElementType::Int32 => take!(i32, Int32),
        TensorElementType::Int64 => take!(i64, Int64),
        TensorElementType::Float32 => take!(f32, Fp32),
        TensorElementType::Float64 => take!(f64, Fp64),
        TensorElementType::Float16 => {
            let (shape, data) = value.try_extract_tensor::<half::f16>().map_err(engine_err)?;
            let bits = data.iter().map(|h| h.to_bits()).collect();
            (shape.iter().map(|d| *d as usize).collect(), TensorData::Fp16(bits))
        }
        TensorElementType::String => {
            let (shape, data) = value.try_extract_strings().map_err(engine_err)?;
            let bytes = data.into_iter().map(String::into_bytes).collect();
            (shape.iter().map(|d| *d as usize).collect(), TensorData::Bytes(bytes))
        }
        other => {
            return Err(BackendError::Inference(format!(
                "output '{name}' has element type {other:?}, which the inference protocols cannot carry"
            )))
        }
    };
    Tensor::new(name, shape, data).map_err(engine_err)
}

impl Backend for OrtBackend {
    fn engine(&self) -> &'static str {
        "onnxruntime"
    }

    fn signature(&self) -> &ModelSignature {
        &self.signature
    }

    fn infer(&mut self, inputs: &[Tensor]) -> Result<Vec<Tensor>, BackendError> {
        let values = inputs
            .iter()
            .map(|t| Ok((t.name.as_str(), to_value(t)?)))
            .collect::<Result<Vec<_>, BackendError>>()?;
        let outputs = self.session.run(values).map_err(engine_err)?;
        outputs
            .iter()
            .map(|(name, value)| from_value(name, &value))
            .collect()
    }
}
