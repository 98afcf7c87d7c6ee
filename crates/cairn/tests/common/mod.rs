//! Shared harness for the black-box HTTP tests: each test gets its own server on port 0
//! over its own temporary data directory, and talks to it through a real HTTP client.

// Each test crate uses a different subset of these helpers.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::sync::Once;
use std::time::Duration;

use cairn::{Application, ServerConfig};
use reqwest::header::HeaderMap;
use serde_json::{json, Value};
use tempfile::TempDir;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// How long a test waits for the server to finish shutting down before failing.
pub const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(10);

/// The default API prefix.
pub const API: &str = "/api/2.0/mlflow";

static TRACING: Once = Once::new();

/// Logs go to the test output only when `TEST_LOG` is set; otherwise tests stay quiet.
fn init_tracing() {
    TRACING.call_once(|| {
        if std::env::var_os("TEST_LOG").is_some() {
            let filter = tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("debug,sqlx=warn"));
            let _ = tracing_subscriber::fmt()
                .with_env_filter(filter)
                .with_test_writer()
                .try_init();
        }
    });
}

/// A running server plus a client pointed at it.
pub struct TestApp {
    /// `http://127.0.0.1:<port>`.
    pub base_url: String,
    /// A client that bypasses any proxy configured in the environment.
    pub client: reqwest::Client,
    /// Kept alive for as long as the server uses it.
    pub _dir: TempDir,
    shutdown: oneshot::Sender<()>,
    server: JoinHandle<anyhow::Result<()>>,
}

/// A response reduced to what the tests compare.
#[derive(Debug)]
pub struct Reply {
    /// HTTP status code.
    pub status: u16,
    /// Response headers.
    pub headers: HeaderMap,
    /// The body parsed as JSON, or the raw text as a JSON string if it is not JSON.
    pub body: Value,
}

/// A client with no proxy, so `HTTP_PROXY` in the environment cannot intercept loopback.
pub fn new_client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(60))
        .build()
        .expect("building the HTTP client")
}

/// Starts a server over a fresh temporary data dir.
pub async fn spawn_app() -> TestApp {
    spawn_app_in(tempfile::tempdir().expect("creating a temp dir")).await
}

/// Starts a server over `dir` (which may already hold data from an earlier server).
pub async fn spawn_app_in(dir: TempDir) -> TestApp {
    spawn_app_configured(dir, |_| {}).await
}

/// Starts a server over a fresh temporary data dir with `edit` applied to its config.
pub async fn spawn_app_with(edit: impl FnOnce(&mut ServerConfig)) -> TestApp {
    spawn_app_configured(tempfile::tempdir().expect("creating a temp dir"), edit).await
}

async fn spawn_app_configured(dir: TempDir, edit: impl FnOnce(&mut ServerConfig)) -> TestApp {
    init_tracing();
    let mut config = ServerConfig::with_data_dir(dir.path());
    edit(&mut config);
    assert_eq!(config.port, 0, "tests must never use a fixed port");
    let app = Application::build(&config)
        .await
        .expect("building the application");
    let base_url = format!("http://127.0.0.1:{}", app.port());
    let (tx, rx) = oneshot::channel::<()>();
    // Dropping the sender also resolves `rx`, so a dropped TestApp stops its server.
    let server = tokio::spawn(app.run_until(async {
        rx.await.ok();
    }));
    TestApp {
        base_url,
        client: new_client(),
        _dir: dir,
        shutdown: tx,
        server,
    }
}

/// Builds (binds, migrates) an application over `data_dir` on port 0.
pub async fn build_app(data_dir: &Path) -> Application {
    let config = ServerConfig::with_data_dir(data_dir);
    assert_eq!(config.port, 0, "tests must never use a fixed port");
    Application::build(&config)
        .await
        .expect("building the application")
}

/// Turns a reqwest response into a [`Reply`].
pub async fn reply(res: reqwest::Response) -> Reply {
    let status = res.status().as_u16();
    let headers = res.headers().clone();
    let text = res.text().await.expect("reading the response body");
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    Reply {
        status,
        headers,
        body,
    }
}

/// Every file under `dir`, as paths relative to it, sorted.
pub fn files_under(dir: &Path) -> Vec<String> {
    fn walk(base: &Path, dir: &Path, out: &mut Vec<String>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            let p = e.path();
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                walk(base, &p, out);
            } else {
                out.push(p.strip_prefix(base).unwrap().display().to_string());
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

/// MLflow's error body.
pub fn error(code: &str, message: &str) -> Value {
    json!({ "error_code": code, "message": message })
}

/// Asserts status and the whole error body.
#[track_caller]
pub fn assert_error(got: &(u16, Value), status: u16, code: &str, message: &str) {
    assert_eq!(
        got,
        &(status, error(code, message)),
        "expected {status} {code}: {message}"
    );
}

/// Asserts a 400 `INVALID_PARAMETER_VALUE` with exactly `message`.
#[track_caller]
pub fn assert_invalid(got: &(u16, Value), message: &str) {
    assert_error(got, 400, "INVALID_PARAMETER_VALUE", message);
}

/// Asserts a 400 `INVALID_PARAMETER_VALUE` whose message passes `check`, and that the
/// body is exactly `{error_code, message}`.
#[track_caller]
pub fn assert_invalid_where(got: &(u16, Value), check: impl Fn(&str) -> bool) -> String {
    let (status, body) = got;
    assert_eq!(*status, 400, "{body}");
    assert_eq!(body["error_code"], "INVALID_PARAMETER_VALUE", "{body}");
    let obj = body.as_object().expect("an error body is an object");
    assert_eq!(obj.len(), 2, "error body has exactly two fields: {body}");
    let message = body["message"].as_str().expect("message is a string");
    assert!(check(message), "unexpected message: {message}");
    message.to_string()
}

impl TestApp {
    /// `base_url` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base_url, path)
    }

    /// `base_url` + `/api/2.0/mlflow/` + `endpoint`.
    pub fn api(&self, endpoint: &str) -> String {
        format!("{}{API}/{endpoint}", self.base_url)
    }

    /// POSTs JSON to an absolute path.
    pub async fn post_path(&self, path: &str, body: &Value) -> Reply {
        let res = self
            .client
            .post(self.url(path))
            .json(body)
            .send()
            .await
            .expect("sending POST");
        reply(res).await
    }

    /// POSTs raw bytes as `application/json` to an absolute path.
    pub async fn post_raw(&self, path: &str, body: impl Into<reqwest::Body>) -> Reply {
        let res = self
            .client
            .post(self.url(path))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .expect("sending POST");
        reply(res).await
    }

    /// GETs an absolute path (query string included).
    pub async fn get_path(&self, path_and_query: &str) -> Reply {
        let res = self
            .client
            .get(self.url(path_and_query))
            .send()
            .await
            .expect("sending GET");
        reply(res).await
    }

    /// POSTs JSON to an MLflow endpoint; returns (status, body).
    pub async fn post(&self, endpoint: &str, body: Value) -> (u16, Value) {
        let r = self.post_path(&format!("{API}/{endpoint}"), &body).await;
        (r.status, r.body)
    }

    /// GETs an MLflow endpoint with query pairs (repeat a key for a list).
    pub async fn get(&self, endpoint: &str, query: &[(&str, &str)]) -> (u16, Value) {
        let res = self
            .client
            .get(self.api(endpoint))
            .query(query)
            .send()
            .await
            .expect("sending GET");
        let r = reply(res).await;
        (r.status, r.body)
    }

    /// POSTs and asserts 200, returning the body.
    pub async fn post_ok(&self, endpoint: &str, body: Value) -> Value {
        let (status, body) = self.post(endpoint, body).await;
        assert_eq!(status, 200, "POST {endpoint}: {body}");
        body
    }

    /// GETs and asserts 200, returning the body.
    pub async fn get_ok(&self, endpoint: &str, query: &[(&str, &str)]) -> Value {
        let (status, body) = self.get(endpoint, query).await;
        assert_eq!(status, 200, "GET {endpoint}: {body}");
        body
    }

    /// Creates an experiment and returns its id.
    pub async fn create_experiment(&self, name: &str) -> String {
        let body = self
            .post_ok("experiments/create", json!({ "name": name }))
            .await;
        body["experiment_id"]
            .as_str()
            .expect("experiment_id is a string")
            .to_string()
    }

    /// Creates a run in the Default experiment and returns its id.
    pub async fn create_run(&self) -> String {
        self.create_run_in("0").await
    }

    /// Creates a run in `experiment_id` and returns its id.
    pub async fn create_run_in(&self, experiment_id: &str) -> String {
        let body = self
            .post_ok(
                "runs/create",
                json!({ "experiment_id": experiment_id, "start_time": 1000 }),
            )
            .await;
        body["run"]["info"]["run_id"]
            .as_str()
            .expect("run_id is a string")
            .to_string()
    }

    /// The full history of one metric (first page).
    pub async fn history(&self, run_id: &str, key: &str) -> Value {
        self.get_ok(
            "metrics/get-history",
            &[("run_id", run_id), ("metric_key", key)],
        )
        .await
    }

    /// Stops the server, waits for `run_until` to return Ok, and hands back the data dir.
    pub async fn stop(self) -> TempDir {
        let TestApp {
            _dir: dir,
            shutdown,
            server,
            ..
        } = self;
        // The receiver is gone only if the server already stopped; the join below says why.
        let _ = shutdown.send(());
        let result = tokio::time::timeout(SHUTDOWN_TIMEOUT, server)
            .await
            .expect("the server did not shut down in time")
            .expect("the server task panicked");
        if let Err(e) = result {
            panic!("run_until returned an error: {e:#}");
        }
        dir
    }
}
