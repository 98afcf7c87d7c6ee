//! A Python engine: worker processes running `mlflow.pyfunc`, for flavors Rust cannot run
//! (scikit-learn pickles, skops, custom pyfunc code).
//!
//! Each `PythonBackend` owns one worker process (so `instances` workers form the pool, fed
//! by the same batching queue as every engine). Models are deserialised only inside the
//! worker, never in the server process: a pickle's code runs in a child that can be killed
//! and restarted. Frames over the pipes are a JSON header plus raw little-endian tensor
//! bytes (the OIP binary layout), so numbers never go through text.

use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cairn_infer::{Backend, BackendError, DataType, ModelSignature, Tensor, TensorData};
use serde::{Deserialize, Serialize};

const WORKER: &str = include_str!("worker.py");

/// How the worker hands inputs to `predict`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InputKind {
    /// A pandas DataFrame, one column per input (column-based signatures).
    DataFrame,
    /// The single input as a numpy array (an unnamed tensor signature).
    Array,
    /// A dict of numpy arrays by input name (named tensor signatures).
    Dict,
    /// No signature: decided per request from the inputs' names and shapes (see
    /// `UNNAMED_INPUT`).
    Infer,
}

/// The name an input gets when the request did not name it (MLflow's `instances` or
/// `inputs` list for a model without a signature). The Python engine hands such an input
/// to `predict` as the bare array.
pub const UNNAMED_INPUT: &str = "input";

impl InputKind {
    fn arg(self) -> &'static str {
        match self {
            InputKind::DataFrame => "dataframe",
            InputKind::Array => "array",
            InputKind::Dict => "dict",
            InputKind::Infer => "infer",
        }
    }
}

/// Worker settings.
#[derive(Clone, Debug, Default)]
pub struct PythonConfig {
    /// The interpreter (default: `$VIRTUAL_ENV/bin/python`, else `python3`); it needs
    /// `mlflow` and the model's own dependencies.
    pub python: Option<PathBuf>,
    /// Longest one `predict` call may take; past it the worker is killed (and restarted
    /// on the next request). `None`: no limit.
    pub predict_timeout: Option<Duration>,
}

impl PythonConfig {
    fn interpreter(&self) -> PathBuf {
        if let Some(p) = &self.python {
            return p.clone();
        }
        match std::env::var_os("VIRTUAL_ENV") {
            Some(venv) => Path::new(&venv).join("bin").join("python"),
            None => PathBuf::from("python3"),
        }
    }
}

#[derive(Serialize)]
struct WireSpec<'a> {
    name: &'a str,
    datatype: &'static str,
    shape: &'a [usize],
    nbytes: usize,
}

#[derive(Serialize)]
struct RequestHeader<'a> {
    inputs: Vec<WireSpec<'a>>,
    /// MLflow `params`, passed to `predict(data, params=...)`.
    #[serde(skip_serializing_if = "Option::is_none")]
    params: Option<&'a serde_json::value::RawValue>,
}

#[derive(Deserialize)]
struct ReplySpec {
    name: String,
    datatype: String,
    shape: Vec<usize>,
    nbytes: usize,
}

#[derive(Deserialize)]
struct ReplyHeader {
    #[serde(default)]
    ready: bool,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    outputs: Vec<ReplySpec>,
}

struct Worker {
    /// Shared with the watchdog, which kills a worker stuck past its deadline.
    child: Arc<Mutex<Child>>,
    stdin: BufWriter<ChildStdin>,
    stdout: BufReader<ChildStdout>,
}

impl Drop for Worker {
    fn drop(&mut self) {
        // Closing stdin ends the worker's loop; kill covers a model stuck in predict.
        let _ = self.stdin.flush();
        if let Ok(mut child) = self.child.lock() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// What the watchdog thread is told: a call started (kill this child if it is still
/// running at the deadline), or the call ended.
enum Watch {
    Start(Instant, Arc<Mutex<Child>>),
    Done,
}

/// A thread per backend that kills the worker when a call overruns its deadline. The
/// blocked read on the worker's stdout then fails, and the call reports the timeout.
struct Watchdog {
    tx: mpsc::Sender<Watch>,
    fired: Arc<AtomicBool>,
}

impl Watchdog {
    fn start(label: String) -> Result<Watchdog, BackendError> {
        let (tx, rx) = mpsc::channel::<Watch>();
        let fired = Arc::new(AtomicBool::new(false));
        let flag = fired.clone();
        std::thread::Builder::new()
            .name("cairn-py-watchdog".into())
            .spawn(move || {
                let mut armed: Option<(Instant, Arc<Mutex<Child>>)> = None;
                loop {
                    let next = match &armed {
                        None => rx.recv().map_err(|_| RecvTimeoutError::Disconnected),
                        Some((deadline, _)) => {
                            rx.recv_timeout(deadline.saturating_duration_since(Instant::now()))
                        }
                    };
                    match next {
                        Ok(Watch::Start(deadline, child)) => armed = Some((deadline, child)),
                        Ok(Watch::Done) => armed = None,
                        Err(RecvTimeoutError::Timeout) => {
                            if let Some((_, child)) = armed.take() {
                                flag.store(true, Ordering::SeqCst);
                                tracing::warn!(model = %label, "python predict overran its time limit; killing the worker");
                                if let Ok(mut child) = child.lock() {
                                    let _ = child.kill();
                                }
                            }
                        }
                        Err(RecvTimeoutError::Disconnected) => return,
                    }
                }
            })
            .map_err(|e| BackendError::Load(format!("cannot start the watchdog thread: {e}")))?;
        Ok(Watchdog { tx, fired })
    }
}

/// One worker process serving one model.
pub struct PythonBackend {
    model_dir: PathBuf,
    config: PythonConfig,
    kind: InputKind,
    signature: ModelSignature,
    worker: Option<Worker>,
    watchdog: Option<Watchdog>,
}

impl PythonBackend {
    /// Starts a worker and waits until it has loaded the model.
    pub fn start(
        model_dir: &Path,
        config: &PythonConfig,
        signature: ModelSignature,
        kind: InputKind,
    ) -> Result<PythonBackend, BackendError> {
        let watchdog = match config.predict_timeout {
            Some(_) => Some(Watchdog::start(model_dir.display().to_string())?),
            None => None,
        };
        let mut backend = PythonBackend {
            model_dir: model_dir.to_path_buf(),
            config: config.clone(),
            kind,
            signature,
            worker: None,
            watchdog,
        };
        backend.worker = Some(backend.spawn()?);
        Ok(backend)
    }

    fn spawn(&self) -> Result<Worker, BackendError> {
        let python = self.config.interpreter();
        let mut child = Command::new(&python)
            .arg("-u")
            .arg("-c")
            .arg(WORKER)
            .arg(&self.model_dir)
            .arg(self.kind.arg())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            // The worker's own messages (and the model's prints) go to the server's log.
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| {
                BackendError::Load(format!(
                    "cannot start the Python engine with {}: {e}; set --python or VIRTUAL_ENV to \
                     an environment with mlflow installed",
                    python.display()
                ))
            })?;
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            let _ = child.kill();
            return Err(BackendError::Load("the Python worker has no pipes".into()));
        };
        let mut worker = Worker {
            child: Arc::new(Mutex::new(child)),
            stdin: BufWriter::new(stdin),
            stdout: BufReader::new(stdout),
        };
        let (header, _) = read_frame(&mut worker.stdout).map_err(|e| {
            BackendError::Load(format!("the Python worker exited while loading: {e}"))
        })?;
        match header.error {
            Some(error) => Err(BackendError::Load(format!(
                "mlflow.pyfunc cannot load {}: {error}",
                self.model_dir.display()
            ))),
            None if header.ready => Ok(worker),
            None => Err(BackendError::Load(
                "the Python worker sent no ready frame".into(),
            )),
        }
    }

    fn call(
        &mut self,
        inputs: &[Tensor],
        params: Option<&str>,
    ) -> Result<Vec<Tensor>, BackendError> {
        let params: Option<&serde_json::value::RawValue> = match params {
            Some(text) => Some(serde_json::from_str(text).map_err(|e| {
                BackendError::Inference(format!("params are not a JSON object: {e}"))
            })?),
            None => None,
        };
        if self.worker.is_none() {
            self.worker = Some(self.spawn()?);
        }
        let Some(worker) = self.worker.as_mut() else {
            return Err(BackendError::Inference("no Python worker".into()));
        };
        let watch = match (&self.watchdog, self.config.predict_timeout) {
            (Some(dog), Some(limit)) => {
                dog.fired.store(false, Ordering::SeqCst);
                let _ = dog
                    .tx
                    .send(Watch::Start(Instant::now() + limit, worker.child.clone()));
                Some((dog, limit))
            }
            _ => None,
        };
        let result = exchange(worker, inputs, params);
        if let Some((dog, limit)) = watch {
            let _ = dog.tx.send(Watch::Done);
            if dog.fired.swap(false, Ordering::SeqCst) {
                self.worker = None;
                return Err(BackendError::Timeout(format!(
                    "predict did not finish within {limit:?} (--predict-timeout); the Python \
                     worker was stopped and restarts on the next request"
                )));
            }
        }
        if let Err(Broken(e)) = &result {
            // The process died or the stream is out of sync: start afresh next call.
            tracing::warn!(model = %self.model_dir.display(), error = %e, "python worker lost; restarting on next request");
            self.worker = None;
        }
        match result {
            Ok(Ok(t)) => Ok(t),
            Ok(Err(model_error)) => Err(BackendError::Inference(model_error)),
            Err(Broken(e)) => Err(BackendError::Inference(format!(
                "the Python worker failed: {e}"
            ))),
        }
    }
}

/// An I/O failure after which the worker cannot be trusted.
struct Broken(String);

fn exchange(
    worker: &mut Worker,
    inputs: &[Tensor],
    params: Option<&serde_json::value::RawValue>,
) -> Result<Result<Vec<Tensor>, String>, Broken> {
    let mut payloads = Vec::with_capacity(inputs.len());
    for t in inputs {
        let mut raw = Vec::new();
        t.data.write_le_bytes(&mut raw);
        payloads.push(raw);
    }
    let header = RequestHeader {
        inputs: inputs
            .iter()
            .zip(&payloads)
            .map(|(t, raw)| WireSpec {
                name: &t.name,
                datatype: t.datatype().name(),
                shape: &t.shape,
                nbytes: raw.len(),
            })
            .collect(),
        params,
    };
    let json = serde_json::to_vec(&header).map_err(|e| Broken(e.to_string()))?;
    let len = u32::try_from(json.len()).map_err(|_| Broken("header too large".into()))?;
    let io = |e: std::io::Error| Broken(e.to_string());
    worker.stdin.write_all(&len.to_le_bytes()).map_err(io)?;
    worker.stdin.write_all(&json).map_err(io)?;
    for raw in &payloads {
        worker.stdin.write_all(raw).map_err(io)?;
    }
    worker.stdin.flush().map_err(io)?;
    let (reply, body) = read_frame(&mut worker.stdout).map_err(Broken)?;
    if let Some(error) = reply.error {
        return Ok(Err(error));
    }
    let mut offset = 0;
    let mut outputs = Vec::with_capacity(reply.outputs.len());
    for spec in reply.outputs {
        let datatype = DataType::from_name(&spec.datatype)
            .ok_or_else(|| Broken(format!("unknown datatype {}", spec.datatype)))?;
        let end = offset + spec.nbytes;
        let raw = body
            .get(offset..end)
            .ok_or_else(|| Broken("short reply".into()))?;
        offset = end;
        let count = cairn_infer::tensor::element_count(&spec.shape).unwrap_or(usize::MAX);
        let data = TensorData::from_le_bytes(&spec.name, datatype, count, raw)
            .map_err(|e| Broken(e.to_string()))?;
        let tensor = Tensor::new(spec.name, spec.shape, data).map_err(|e| Broken(e.to_string()))?;
        outputs.push(tensor);
    }
    Ok(Ok(outputs))
}

fn read_frame(stdout: &mut BufReader<ChildStdout>) -> Result<(ReplyHeader, Vec<u8>), String> {
    let mut len = [0u8; 4];
    stdout.read_exact(&mut len).map_err(|e| e.to_string())?;
    let mut header = vec![0u8; u32::from_le_bytes(len) as usize];
    stdout.read_exact(&mut header).map_err(|e| e.to_string())?;
    let parsed: ReplyHeader =
        serde_json::from_slice(&header).map_err(|e| format!("bad frame: {e}"))?;
    let total: usize = parsed.outputs.iter().map(|o| o.nbytes).sum();
    let mut body = vec![0u8; total];
    stdout.read_exact(&mut body).map_err(|e| e.to_string())?;
    Ok((parsed, body))
}

impl Backend for PythonBackend {
    fn engine(&self) -> &'static str {
        "python"
    }

    fn signature(&self) -> &ModelSignature {
        &self.signature
    }

    fn infer(&mut self, inputs: &[Tensor]) -> Result<Vec<Tensor>, BackendError> {
        self.call(inputs, None)
    }

    fn infer_with_params(
        &mut self,
        inputs: &[Tensor],
        params: Option<&str>,
    ) -> Result<Vec<Tensor>, BackendError> {
        self.call(inputs, params)
    }
}
