//! The served models: one slot per `--model NAME=URI`, loading, hot swaps.
//!
//! A slot holds the version currently serving behind an `ArcSwapOption`. A request
//! clones that `Arc` once and keeps it to the end, so a swap never interrupts it: the old
//! version (its engines and batching threads) is dropped when its last request finishes.
//! A new version is downloaded, loaded and warmed with one inference *before* it is
//! swapped in; a failed load leaves the old version serving and is retried at the next
//! poll.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use cairn_infer::{BatchConfig, Batcher, ModelSignature, Tensor, TensorData};

use crate::engines::{self, EngineConfig};
use crate::fetch::CacheLease;
use crate::metrics::{Metrics, ModelMetrics};
use crate::mlmodel::MlModel;
use crate::resolve::{Location, ModelUri, Resolved, TrackingClient};

/// One model version, loaded and serving.
pub struct Loaded {
    pub name: String,
    pub version: String,
    /// Engine name (`onnxruntime`), reported as the OIP platform.
    pub engine: &'static str,
    pub signature: ModelSignature,
    pub batcher: Batcher,
    pub metrics: ModelMetrics,
    pub location: Location,
    /// Whether the MLmodel signature declares tensors (MLflow then answers dataframe input
    /// with arrays per output rather than records).
    pub tensor_signature: bool,
    /// The cached copy of the model's files this version was loaded from (the Python
    /// engine reloads from it when a worker restarts); removed after a swap replaces this
    /// version, once nothing else of this process uses it. Kept across restarts.
    pub cache_lease: Option<CacheLease>,
}

impl Loaded {
    /// The OIP platform name: `onnxruntime_onnx`, `tract_onnx` or `mlflow_pyfunc`.
    pub fn platform(&self) -> &'static str {
        match self.engine {
            "onnxruntime" => "onnxruntime_onnx",
            "tract" => "tract_onnx",
            "python" => "mlflow_pyfunc",
            other => other,
        }
    }
}

impl Drop for Loaded {
    fn drop(&mut self) {
        self.metrics.set_ready(false);
        tracing::info!(model = %self.name, version = %self.version, "model version unloaded");
    }
}

/// A served name and whatever version currently serves it.
pub struct Slot {
    pub name: String,
    pub uri: ModelUri,
    current: ArcSwapOption<Loaded>,
    last_error: Mutex<Option<String>>,
}

impl Slot {
    /// The serving version, if any.
    pub fn current(&self) -> Option<Arc<Loaded>> {
        self.current.load_full()
    }

    /// The last load failure, if the latest attempt failed.
    pub fn last_error(&self) -> Option<String> {
        self.last_error.lock().ok().and_then(|e| e.clone())
    }

    fn set_error(&self, error: Option<String>) {
        if let Ok(mut slot) = self.last_error.lock() {
            *slot = error;
        }
    }
}

/// How models are fetched, loaded and followed.
#[derive(Clone)]
pub struct LoaderConfig {
    pub tracking: Option<TrackingClient>,
    pub cache_dir: PathBuf,
    pub engines: EngineConfig,
    pub batching: BatchConfig,
    /// How often aliases are re-resolved and failed loads retried.
    pub poll_interval: Duration,
}

/// Every served model.
pub struct Models {
    slots: BTreeMap<String, Arc<Slot>>,
    loader: Arc<LoaderConfig>,
    metrics: Metrics,
}

impl Models {
    /// Creates the slots; nothing is loaded until `spawn_loaders`.
    pub fn new(specs: Vec<(String, ModelUri)>, loader: LoaderConfig, metrics: Metrics) -> Models {
        let slots = specs
            .into_iter()
            .map(|(name, uri)| {
                let slot = Slot {
                    name: name.clone(),
                    uri,
                    current: ArcSwapOption::empty(),
                    last_error: Mutex::new(None),
                };
                (name, Arc::new(slot))
            })
            .collect();
        Models {
            slots,
            loader: Arc::new(loader),
            metrics,
        }
    }

    /// The slot serving `name`.
    pub fn get(&self, name: &str) -> Option<&Arc<Slot>> {
        self.slots.get(name)
    }

    /// Every slot, by name.
    pub fn all(&self) -> impl Iterator<Item = &Arc<Slot>> {
        self.slots.values()
    }

    /// Whether every model has a version serving.
    pub fn all_ready(&self) -> bool {
        self.slots.values().all(|s| s.current.load().is_some())
    }

    /// Starts one task per model: load now, then follow the alias and retry failures.
    pub fn spawn_loaders(&self) -> Vec<tokio::task::JoinHandle<()>> {
        self.slots
            .values()
            .map(|slot| {
                let slot = slot.clone();
                let loader = self.loader.clone();
                let metrics = self.metrics.clone();
                tokio::spawn(async move { follow(slot, loader, metrics).await })
            })
            .collect()
    }
}

async fn follow(slot: Arc<Slot>, loader: Arc<LoaderConfig>, metrics: Metrics) {
    loop {
        match refresh(&slot, &loader, &metrics).await {
            Ok(Some(version)) => {
                tracing::info!(model = %slot.name, %version, "model version serving");
                slot.set_error(None);
                metrics.load_attempt(&slot.name, true);
            }
            Ok(None) => slot.set_error(None),
            Err(error) => {
                let serving = slot.current().map(|l| l.version.clone());
                tracing::warn!(model = %slot.name, ?serving, %error, "model load failed; will retry");
                slot.set_error(Some(error));
                metrics.load_attempt(&slot.name, false);
            }
        }
        if slot.current().is_some() && !slot.uri.follows() {
            return;
        }
        tokio::time::sleep(loader.poll_interval).await;
    }
}

/// Resolves the slot's URI and, if it names another version, loads, warms and swaps it
/// in. Returns the new version, or `None` when nothing changed.
async fn refresh(
    slot: &Slot,
    loader: &LoaderConfig,
    metrics: &Metrics,
) -> Result<Option<String>, String> {
    let resolved = match (slot.uri.fixed_location(), &loader.tracking) {
        (Some(location), _) => Resolved {
            version: "1".into(),
            location,
        },
        (None, Some(client)) => client.resolve(&slot.uri).await.map_err(|e| e.to_string())?,
        (None, None) => {
            return Err(crate::resolve::ResolveError::NoTrackingServer(format!(
                "model '{}'",
                slot.name
            ))
            .to_string())
        }
    };
    if let Some(current) = slot.current() {
        if current.version == resolved.version && current.location == resolved.location {
            return Ok(None);
        }
    }
    let started = Instant::now();
    let (dir, cache_lease) = local_dir(&resolved.location, loader).await?;
    let engine_config = loader.engines.clone();
    let (mlmodel, engines) = tokio::task::spawn_blocking(move || {
        let mlmodel = MlModel::read(&dir)?;
        let engines = engines::start(&dir, &mlmodel, &engine_config)?;
        Ok::<_, String>((mlmodel, engines))
    })
    .await
    .map_err(|e| format!("model loading task failed: {e}"))??;
    let tensor_signature = !mlmodel.inputs.is_empty()
        && mlmodel
            .inputs
            .iter()
            .all(|i| matches!(i, crate::mlmodel::ColumnOrTensor::Tensor { .. }));
    let first = engines.first().ok_or("no engine instance started")?;
    let signature = first.signature().clone();
    let engine = first.engine();
    let model_metrics = metrics.for_version(&slot.name, &resolved.version);
    let hook_metrics = model_metrics.clone();
    let hook: cairn_infer::batch::BatchHook =
        Arc::new(move |rows, took| hook_metrics.batch(rows, took));
    let label = format!("{}-v{}", slot.name, resolved.version);
    let batcher = Batcher::start(&label, engines, loader.batching.clone(), Some(hook))
        .map_err(|e| format!("cannot start inference threads: {e}"))?;
    let loaded = Loaded {
        name: slot.name.clone(),
        version: resolved.version.clone(),
        engine,
        signature,
        batcher,
        metrics: model_metrics,
        location: resolved.location,
        tensor_signature,
        cache_lease,
    };
    warm(&loaded).await?;
    loaded.metrics.set_ready(true);
    tracing::info!(model = %slot.name, version = %loaded.version, took_ms = started.elapsed().as_millis() as u64, "model version loaded and warmed");
    let version = loaded.version.clone();
    if let Some(old) = slot.current.swap(Some(Arc::new(loaded))) {
        tracing::info!(model = %slot.name, from = %old.version, to = %version, "swapped model version");
        // Its files go from the cache when its last request is done (unless another
        // served version uses the same copy).
        if let Some(lease) = &old.cache_lease {
            lease.retire_when_released();
        }
    }
    Ok(Some(version))
}

/// The model's directory on this machine, downloading it into the cache if needed; for a
/// cached copy, also the lease that keeps it there while this version is in use.
async fn local_dir(
    location: &Location,
    loader: &LoaderConfig,
) -> Result<(PathBuf, Option<CacheLease>), String> {
    let remote = match location {
        Location::Local(dir) => return Ok((dir.clone(), None)),
        Location::Store(uri) => uri.as_str(),
        Location::Proxied(path) => path.as_str(),
    };
    let dest = loader.cache_dir.join(cache_name(remote));
    // Taken before looking, so a copy being retired cannot be picked up half-deleted.
    let lease = CacheLease::acquire(&dest);
    // Models resolving to the same files download them once; the others wait for it.
    let _downloading = crate::fetch::download_lock(&dest).await;
    if !tokio::fs::try_exists(dest.join("MLmodel"))
        .await
        .unwrap_or(false)
    {
        let fetched = match (location, &loader.tracking) {
            (Location::Store(uri), _) => crate::fetch::download_store(uri, &dest).await,
            (_, Some(client)) => client.download(remote, &dest).await,
            (_, None) => {
                return Err("proxied artifacts need a tracking server".to_string());
            }
        };
        fetched.map_err(|e| e.to_string())?;
    }
    Ok((dest, Some(lease)))
}

/// A directory name for a remote artifact path: readable, and distinct for distinct paths.
fn cache_name(remote: &str) -> String {
    remote
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect::<String>()
        + &format!("-{:x}", fnv1a(remote.as_bytes()))
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Runs one inference on a synthetic one-row input so the first real request does not pay
/// for lazy initialisation, and so a version that cannot run is never swapped in.
async fn warm(loaded: &Loaded) -> Result<(), String> {
    if loaded.signature.is_open() {
        // Nothing to build an input from; the model has loaded in its engine already.
        return Ok(());
    }
    let inputs = synthetic_inputs(&loaded.signature);
    loaded
        .batcher
        .infer(inputs)
        .await
        .map(|_| ())
        .map_err(|e| format!("warm-up inference failed: {e}"))
}

/// Zeros (or empty strings) shaped like the signature, with dynamic dimensions set to 1.
pub fn synthetic_inputs(signature: &ModelSignature) -> Vec<Tensor> {
    signature
        .inputs
        .iter()
        .filter_map(|spec| {
            let shape: Vec<usize> = spec
                .shape
                .iter()
                .map(|d| usize::try_from(*d).unwrap_or(1).max(1))
                .collect();
            let n: usize = shape.iter().product();
            // All-zero bytes decode as zeros of every width, false, and (4 zero bytes per
            // element being a zero length) empty strings.
            let zeros = vec![0u8; n * spec.datatype.element_size().unwrap_or(4)];
            let data = TensorData::from_le_bytes(&spec.name, spec.datatype, n, &zeros).ok()?;
            Some(Tensor {
                name: spec.name.clone(),
                shape,
                data,
            })
        })
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use cairn_infer::DataType;

    #[test]
    fn cache_names_are_safe_and_distinct() {
        let a = cache_name("1/models/m-1/artifacts");
        let b = cache_name("1/models/m_1/artifacts");
        assert!(!a.contains('/'));
        assert_ne!(a, b);
        assert_ne!(cache_name("../x"), "..");
    }

    #[test]
    fn synthetic_inputs_follow_the_signature() {
        let sig = ModelSignature {
            inputs: vec![cairn_infer::TensorSpec {
                name: "x".into(),
                datatype: DataType::Fp32,
                shape: vec![-1, 4],
            }],
            outputs: vec![],
        };
        let t = synthetic_inputs(&sig);
        assert_eq!(t[0].shape, vec![1, 4]);
        assert_eq!(t[0].data, TensorData::Fp32(vec![0.0; 4]));
        let strings = ModelSignature {
            inputs: vec![cairn_infer::TensorSpec {
                name: "s".into(),
                datatype: DataType::Bytes,
                shape: vec![-1, 2],
            }],
            outputs: vec![],
        };
        let t = synthetic_inputs(&strings);
        assert_eq!(t[0].data, TensorData::Bytes(vec![Vec::new(); 2]));
    }
}
