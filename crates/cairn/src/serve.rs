//! `cairn serve` flags → `cairn_serve::ServeConfig`.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};
use cairn_infer::BatchConfig;
use cairn_serve::engines::{EngineChoice, EngineConfig};
use cairn_serve::resolve::{Credentials, ModelUri};
use cairn_serve::ServeConfig;
use clap::{Args, ValueEnum};

/// Who may call `cairn serve` (`--auth`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ServeAuth {
    /// Anyone who reaches the port.
    None,
    /// Callers the tracking server vouches for.
    Tracking,
}

/// Serve registered models over the Open Inference Protocol and MLflow's /invocations.
#[derive(Args, Debug)]
pub struct ServeArgs {
    /// A model to serve, as NAME=URI (repeatable). URI is models:/name@alias,
    /// models:/name/<version|latest|stage>, models:/<model_id>, runs:/<run_id>/<path>, or a
    /// local model directory.
    #[arg(long = "model", value_name = "NAME=URI", required = true)]
    pub models: Vec<String>,
    /// The tracking server models are resolved and downloaded through.
    #[arg(long, env = "MLFLOW_TRACKING_URI")]
    pub tracking_uri: Option<String>,
    /// Address to listen on.
    #[arg(long, env = "CAIRN_SERVE_HOST", default_value = "127.0.0.1")]
    pub host: IpAddr,
    /// Listen on a non-loopback address without `--auth`: anyone who reaches the port can
    /// call the models. Only behind a gateway that authenticates, or on a private
    /// network; say so with this flag.
    #[arg(long, env = "CAIRN_INSECURE_NO_AUTH")]
    pub insecure_no_auth: bool,
    /// Who may call: `none`, or `tracking` — each request's Authorization header (the
    /// tracking server's passwords, access tokens or OIDC tokens) is checked with the
    /// tracking server, and model routes need READ on the served model there. Health
    /// probes stay public.
    #[arg(long, env = "CAIRN_SERVE_AUTH", value_enum, default_value_t = ServeAuth::None)]
    pub auth: ServeAuth,
    /// How long a caller's checked credentials are trusted before the tracking server is
    /// asked again (a revoked token or permission stops working within this).
    #[arg(long, env = "CAIRN_SERVE_AUTH_CACHE_TTL", default_value = "10s", value_parser = humantime::parse_duration)]
    pub auth_cache_ttl: Duration,
    /// `Host` header values the HTTP endpoint answers, comma-separated, `*` wildcards
    /// (DNS-rebinding protection, as `cairn server --allowed-hosts`) [default: loopback
    /// and private addresses with any port, plus --host]. Health probes are exempt.
    #[arg(long, env = "CAIRN_SERVE_ALLOWED_HOSTS", value_delimiter = ',')]
    pub allowed_hosts: Option<Vec<String>>,
    /// HTTP port (Open Inference Protocol REST, /invocations, /metrics).
    #[arg(long, env = "CAIRN_SERVE_PORT", default_value_t = 8080)]
    pub port: u16,
    /// gRPC port (Open Inference Protocol gRPC, inference.GRPCInferenceService).
    #[arg(long, env = "CAIRN_SERVE_GRPC_PORT", default_value_t = 8081)]
    pub grpc_port: u16,
    /// Do not serve gRPC.
    #[arg(long)]
    pub no_grpc: bool,
    /// Engine: auto (onnx flavor → onnxruntime, or tract when no onnxruntime library is
    /// found; other pyfunc flavors → python), onnxruntime, tract or python.
    #[arg(long, env = "CAIRN_SERVE_ENGINE", default_value = "auto")]
    pub engine: String,
    /// Engine instances per model, each on its own thread (default: one per CPU, at most 4).
    #[arg(long, env = "CAIRN_SERVE_INSTANCES")]
    pub instances: Option<usize>,
    /// Threads each engine instance uses inside one call.
    #[arg(long, env = "CAIRN_SERVE_ENGINE_THREADS", default_value_t = 1)]
    pub engine_threads: usize,
    /// Most rows one engine call receives (requests are stacked up to this).
    #[arg(long, env = "CAIRN_SERVE_MAX_BATCH_ROWS", default_value_t = 256)]
    pub max_batch_rows: usize,
    /// How long a request may wait for others to join its batch (e.g. 0, 500us, 2ms).
    #[arg(long, env = "CAIRN_SERVE_MAX_QUEUE_DELAY", default_value = "0s", value_parser = humantime::parse_duration)]
    pub max_queue_delay: Duration,
    /// Requests that may wait per model before new ones get 503.
    #[arg(long, env = "CAIRN_SERVE_QUEUE_CAPACITY", default_value_t = 1024)]
    pub queue_capacity: usize,
    /// How long an idle engine thread keeps polling for the next request before it sleeps
    /// (trades CPU for latency; 0 disables).
    #[arg(long, env = "CAIRN_SERVE_SPIN", default_value = "300us", value_parser = humantime::parse_duration)]
    pub spin: Duration,
    /// How often aliases are re-resolved (and failed loads retried).
    #[arg(long, env = "CAIRN_SERVE_POLL_INTERVAL", default_value = "10s", value_parser = humantime::parse_duration)]
    pub poll_interval: Duration,
    /// Where downloaded models are kept.
    #[arg(long, env = "CAIRN_SERVE_CACHE_DIR")]
    pub cache_dir: Option<PathBuf>,
    /// The ONNX Runtime library (default: the onnxruntime wheel of the active Python).
    #[arg(long, env = "ORT_DYLIB_PATH")]
    pub ort_library: Option<PathBuf>,
    /// Python interpreter for the Python engine (needs mlflow and the model's packages).
    #[arg(long, env = "CAIRN_SERVE_PYTHON")]
    pub python: Option<PathBuf>,
    /// Longest one Python-engine `predict` call may take before its worker is killed and
    /// the request gets 504 (0 disables). MLflow's scoring server allows 60s.
    #[arg(long, env = "CAIRN_SERVE_PREDICT_TIMEOUT", default_value = "60s", value_parser = humantime::parse_duration)]
    pub predict_timeout: Duration,
    /// Largest request body, in bytes.
    #[arg(long, env = "CAIRN_SERVE_MAX_REQUEST_BYTES", default_value_t = 64 << 20)]
    pub max_request_bytes: usize,
}

impl ServeArgs {
    /// Checks the flags and builds the serving configuration.
    pub fn resolve(self) -> anyhow::Result<ServeConfig> {
        let auth = self.auth == ServeAuth::Tracking;
        if !self.host.is_loopback() && !auth && !self.insecure_no_auth {
            bail!(
                "refusing to serve models on {} without authentication: anyone who can reach \
                 this address could call the models. Pass --auth tracking (callers sign in \
                 with their tracking-server credentials), listen on loopback (the default) \
                 behind an authenticating gateway, or pass --insecure-no-auth to accept the \
                 exposure",
                self.host
            );
        }
        if auth && self.tracking_uri.is_none() {
            bail!("--auth tracking checks callers with the tracking server: pass --tracking-uri or set MLFLOW_TRACKING_URI");
        }
        let mut models: Vec<(String, ModelUri)> = Vec::new();
        for spec in &self.models {
            let (name, uri) = spec
                .split_once('=')
                .with_context(|| format!("--model {spec}: expected NAME=URI"))?;
            if name.is_empty() || name.contains('/') {
                bail!("--model {spec}: the name must be non-empty and contain no '/'");
            }
            if models.iter().any(|(n, _)| n == name) {
                bail!("--model {spec}: the name '{name}' is given twice");
            }
            let uri = ModelUri::parse(uri).map_err(anyhow::Error::msg)?;
            if uri.needs_tracking() && self.tracking_uri.is_none() {
                bail!("--model {spec} needs a tracking server: pass --tracking-uri or set MLFLOW_TRACKING_URI");
            }
            models.push((name.to_string(), uri));
        }
        let choice = EngineChoice::parse(&self.engine).map_err(anyhow::Error::msg)?;
        if self.max_batch_rows == 0 || self.queue_capacity == 0 {
            bail!("--max-batch-rows and --queue-capacity must be at least 1");
        }
        if !self.no_grpc && self.grpc_port != 0 && self.grpc_port == self.port {
            bail!(
                "--grpc-port and --port are both {}; give gRPC its own port or pass --no-grpc",
                self.port
            );
        }
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        let cache_dir = self.cache_dir.unwrap_or_else(|| {
            std::env::var_os("HOME")
                .map(|h| PathBuf::from(h).join(".cache").join("cairn").join("models"))
                .unwrap_or_else(|| std::env::temp_dir().join("cairn-models"))
        });
        Ok(ServeConfig {
            models,
            tracking_uri: self.tracking_uri,
            credentials: Credentials::from_env(),
            http_addr: SocketAddr::new(self.host, self.port),
            grpc_addr: (!self.no_grpc).then(|| SocketAddr::new(self.host, self.grpc_port)),
            cache_dir,
            engines: EngineConfig {
                choice,
                instances: self.instances.unwrap_or(cpus.min(4)).max(1),
                threads_per_instance: self.engine_threads.max(1),
                ort_library: self.ort_library,
                python: self.python,
                predict_timeout: (!self.predict_timeout.is_zero()).then_some(self.predict_timeout),
            },
            batching: BatchConfig {
                max_batch_rows: self.max_batch_rows,
                max_queue_delay: self.max_queue_delay,
                queue_capacity: self.queue_capacity,
                spin: self.spin,
            },
            poll_interval: self.poll_interval,
            max_request_bytes: self.max_request_bytes,
            auth_cache_ttl: auth.then_some(self.auth_cache_ttl),
            allowed_hosts: self
                .allowed_hosts
                .unwrap_or_else(|| cairn_core::hosts::allowed_hosts_for(&self.host.to_string())),
        })
    }
}
