//! `cairn serve`: registered models behind the Open Inference Protocol (REST and gRPC)
//! and MLflow's scoring protocol.
//!
//! Code map: `resolve` (model URIs → files, through the tracking server), `mlmodel`
//! (the MLmodel file), `engines` (which engine runs a model), `models` (slots, loading,
//! hot swap), `serving` (the one inference path: checks, queue, metrics), `oip` and
//! `invocations` (the REST protocols), `metrics`, `gate` (who may call, `--auth`).

pub mod engines;
pub mod fetch;
pub mod gate;
pub mod grpc;
pub mod invocations;
pub mod metrics;
pub mod mlmodel;
pub mod models;
pub mod oip;
pub mod resolve;
pub mod serving;
pub mod tensor_json;

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::extract::rejection::PathRejection;
use axum::extract::{DefaultBodyLimit, MatchedPath, Path, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::serve::ListenerExt;
use axum::Router;
use cairn_infer::BatchConfig;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::{DefaultOnResponse, TraceLayer};
use tower_http::LatencyUnit;

use crate::engines::EngineConfig;
use crate::gate::{Gate, Need, Refusal};
use crate::metrics::Metrics;
use crate::models::{LoaderConfig, Models};
use crate::resolve::{Credentials, ModelUri, TrackingClient};
use crate::serving::ServeState;

/// Everything `cairn serve` needs, already parsed.
#[derive(Clone, Debug)]
pub struct ServeConfig {
    /// Served name and where the model comes from, per `--model NAME=URI`.
    pub models: Vec<(String, ModelUri)>,
    pub tracking_uri: Option<String>,
    pub credentials: Credentials,
    pub http_addr: SocketAddr,
    /// The Open Inference Protocol gRPC endpoint; `None` disables it.
    pub grpc_addr: Option<SocketAddr>,
    pub cache_dir: std::path::PathBuf,
    pub engines: EngineConfig,
    pub batching: BatchConfig,
    pub poll_interval: Duration,
    pub max_request_bytes: usize,
    /// `Some(ttl)`: callers must be vouched for by the tracking server (`--auth
    /// tracking`), with answers cached for `ttl`.
    pub auth_cache_ttl: Option<Duration>,
    /// `Host` header patterns the HTTP endpoint answers (`*` wildcards).
    pub allowed_hosts: Vec<String>,
}

/// A bound, not yet running, serving application.
pub struct ServeApp {
    http: TcpListener,
    grpc: Option<TcpListener>,
    state: ServeState,
}

impl ServeApp {
    /// Binds the listeners and prepares the model slots (nothing loads yet).
    pub async fn build(config: ServeConfig) -> anyhow::Result<ServeApp> {
        let tracking = match &config.tracking_uri {
            Some(uri) => Some(TrackingClient::new(uri, config.credentials.clone())?),
            None => None,
        };
        let metrics = Metrics::new();
        let loader = LoaderConfig {
            tracking,
            cache_dir: config.cache_dir.clone(),
            engines: config.engines.clone(),
            batching: config.batching.clone(),
            poll_interval: config.poll_interval,
        };
        let gate = match (config.auth_cache_ttl, &loader.tracking) {
            (None, _) => None,
            (Some(ttl), Some(tracking)) => {
                let gate = Gate::new(tracking.clone(), &config.models, ttl);
                gate.check_tracking_enforces_auth().await?;
                Some(Arc::new(gate))
            }
            (Some(_), None) => {
                anyhow::bail!("--auth tracking needs a tracking server (--tracking-uri)")
            }
        };
        let models = Arc::new(Models::new(config.models.clone(), loader, metrics.clone()));
        let http = TcpListener::bind(config.http_addr).await?;
        let grpc = match config.grpc_addr {
            Some(addr) => Some(
                TcpListener::bind(addr)
                    .await
                    .with_context(|| format!("cannot listen on {addr} (gRPC)"))?,
            ),
            None => None,
        };
        Ok(ServeApp {
            http,
            grpc,
            state: ServeState {
                models,
                metrics,
                max_request_bytes: config.max_request_bytes,
                gate,
                allowed_hosts: config.allowed_hosts.clone().into(),
            },
        })
    }

    /// The bound HTTP address (port 0 resolved).
    pub fn http_addr(&self) -> std::io::Result<SocketAddr> {
        self.http.local_addr()
    }

    /// The bound gRPC address (port 0 resolved), if gRPC is enabled.
    pub fn grpc_addr(&self) -> std::io::Result<Option<SocketAddr>> {
        self.grpc.as_ref().map(TcpListener::local_addr).transpose()
    }

    /// Starts loading models and serves HTTP (and gRPC, when enabled) until `shutdown`
    /// resolves; both servers then stop accepting and finish their open requests.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let ServeApp {
            http,
            grpc: grpc_listener,
            state,
        } = self;
        let loaders = state.models.spawn_loaders();
        // One shutdown future, observed by both servers.
        let (stop_tx, stop_rx) = watch::channel(false);
        let signal = tokio::spawn(async move {
            shutdown.await;
            let _ = stop_tx.send(true);
        });
        let stopped = |mut rx: watch::Receiver<bool>| async move {
            // An error means the sender is gone, which also ends serving.
            let _ = rx.wait_for(|stop| *stop).await;
        };
        // Responses go out as soon as they are written: without TCP_NODELAY a response
        // larger than one segment waits for the client's delayed ACK.
        let http = http.tap_io(|tcp| {
            if let Err(e) = tcp.set_nodelay(true) {
                tracing::warn!(error = %e, "cannot set TCP_NODELAY");
            }
        });
        let http = async {
            axum::serve(http, router(state.clone()))
                .with_graceful_shutdown(stopped(stop_rx.clone()))
                .await
                .context("HTTP server")
        };
        let grpc = async {
            match grpc_listener {
                Some(listener) => grpc::serve(listener, state.clone(), stopped(stop_rx.clone()))
                    .await
                    .context("gRPC server"),
                None => Ok(()),
            }
        };
        let result = tokio::try_join!(http, grpc);
        signal.abort();
        for l in loaders {
            l.abort();
        }
        result.map(|_| ())
    }
}

/// Every HTTP route of the serving app.
pub fn router(state: ServeState) -> Router {
    let limit = state.max_request_bytes;
    // Requests get an x-request-id (kept if the client sent one) that is echoed back and
    // carried by a DEBUG access-log line (`CAIRN_LOG=cairn_serve=debug,tower_http=debug`):
    // at tens of thousands of requests per second an INFO line each would cost more
    // than the inference.
    let access_log = TraceLayer::new_for_http()
        .make_span_with(|req: &axum::extract::Request| {
            let id = req
                .headers()
                .get("x-request-id")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            tracing::debug_span!("request", request_id = %id, method = %req.method(), path = %req.uri().path())
        })
        .on_response(
            DefaultOnResponse::new()
                .level(tracing::Level::DEBUG)
                .latency_unit(LatencyUnit::Micros),
        );
    let mut routes = Router::new()
        .merge(oip::routes())
        .merge(invocations::routes())
        .route("/metrics", get(metrics_text));
    if let Some(gate) = state.gate.clone() {
        routes = routes.route_layer(middleware::from_fn_with_state(gate, admit));
    }
    routes
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(
            state.allowed_hosts.clone(),
            check_host,
        ))
        .layer(DefaultBodyLimit::max(limit))
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(access_log)
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
        .with_state(state)
}

/// Paths answered whatever the `Host` header: probes, which often name the pod's address.
const PROBE_PATHS: &[&str] = &["/v2/health/live", "/v2/health/ready", "/ping", "/health"];

/// Refuses a `Host` header outside `--allowed-hosts`: a web page whose public name an
/// attacker re-points at this machine (DNS rebinding) must not reach the models.
async fn check_host(
    State(allowed): State<Arc<[String]>>,
    request: Request,
    next: Next,
) -> Response {
    if !PROBE_PATHS.contains(&request.uri().path()) {
        let host = request
            .headers()
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .or_else(|| request.uri().authority().map(|a| a.as_str()))
            .unwrap_or("");
        if !cairn_core::hosts::host_allowed(&allowed, host) {
            tracing::warn!(
                host,
                "refused a request with a Host header not in --allowed-hosts"
            );
            return refusal_response(&Refusal::Denied(
                "Invalid Host header - possible DNS rebinding attack detected; add the host \
                 to --allowed-hosts if it is legitimate"
                    .into(),
            ));
        }
    }
    next.run(request).await
}

/// Checks the caller of a matched route when `--auth` is on (see `gate`): health probes
/// are public, model routes need READ on the model, the rest a recognised caller.
async fn admit(
    State(gate): State<Arc<Gate>>,
    matched: Option<MatchedPath>,
    params: Result<Path<HashMap<String, String>>, PathRejection>,
    request: Request,
    next: Next,
) -> Response {
    let route = matched.as_ref().map_or("", MatchedPath::as_str);
    let params = params.ok();
    let named = params.as_ref().and_then(|p| p.get("name"));
    let need = match (route, named) {
        ("/v2/health/live" | "/v2/health/ready" | "/ping" | "/health", _) => Need::Public,
        ("/invocations", _) => gate.unnamed_model(),
        (_, Some(name)) => Need::Model(name),
        (_, None) => Need::SignedIn,
    };
    let authorization = request
        .headers()
        .get(header::AUTHORIZATION)
        .map(|v| v.as_bytes());
    match gate.check(authorization, need).await {
        Ok(()) => next.run(request).await,
        Err(refusal) => refusal_response(&refusal),
    }
}

/// A refusal in MLflow's error format (`error_code`, `message`), with the message also
/// under `error`, where Open Inference Protocol clients read it.
fn refusal_response(refusal: &Refusal) -> Response {
    let (status, code) = match refusal {
        Refusal::Unauthenticated(_) => (StatusCode::UNAUTHORIZED, "UNAUTHENTICATED"),
        Refusal::Denied(_) => (StatusCode::FORBIDDEN, "PERMISSION_DENIED"),
        Refusal::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "TEMPORARILY_UNAVAILABLE"),
    };
    let message = refusal.to_string();
    let body = axum::Json(serde_json::json!({
        "error_code": code,
        "message": message,
        "error": message,
    }));
    if status == StatusCode::UNAUTHORIZED {
        let challenge = [(header::WWW_AUTHENTICATE, r#"Basic realm="cairn serve""#)];
        (status, challenge, body).into_response()
    } else {
        (status, body).into_response()
    }
}

async fn metrics_text(State(s): State<ServeState>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        s.metrics.render(),
    )
        .into_response()
}

async fn not_found(uri: axum::http::Uri) -> Response {
    (
        StatusCode::NOT_FOUND,
        axum::Json(serde_json::json!({ "error": format!("no route for {}", uri.path()) })),
    )
        .into_response()
}
