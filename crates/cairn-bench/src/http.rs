//! HTTP plumbing: per-client keep-alive clients, timed requests, and the few
//! untimed setup calls (create experiment / run) the workloads need.

use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use reqwest::header::{HeaderMap, CONTENT_TYPE};
use reqwest::{Client, Method, Request, StatusCode};
use serde_json::{json, Value};

pub const API: &str = "/api/2.0/mlflow";

/// One client = one simulated user = one keep-alive HTTP/1.1 connection.
pub fn new_client(timeout: Duration) -> Result<Client> {
    Client::builder()
        .http1_only()
        .tcp_nodelay(true)
        // A sequential client only ever needs one connection; keeping exactly
        // one idle means every request after the first reuses it.
        .pool_max_idle_per_host(1)
        // ...unless it sat idle for longer than the server keeps it open:
        // uvicorn (stock MLflow) closes idle connections after 5 s, and reusing
        // one just as it closes fails the request. Idle gaps only happen
        // between phases (e.g. at the warm-up barrier), never between the
        // back-to-back measured requests, so no measured request pays for this.
        .pool_idle_timeout(Duration::from_secs(3))
        // Environment proxies must never see loopback benchmark traffic.
        .no_proxy()
        .timeout(timeout)
        .build()
        .context("building HTTP client")
}

/// A request whose body was serialised before timing starts.
pub fn post_json(client: &Client, url: &str, body: String) -> Result<Request> {
    client
        .request(Method::POST, url)
        .header(CONTENT_TYPE, "application/json")
        .body(body)
        .build()
        .context("building request")
}

pub struct Timed {
    pub status: StatusCode,
    pub body: Vec<u8>,
    /// Send until the last body byte arrived.
    pub elapsed_ms: f64,
    pub server_ms: Option<f64>,
}

impl Timed {
    /// Non-200 is an error for every workload; the message keeps a body snippet.
    pub fn check_ok(&self) -> Result<(), String> {
        if self.status == StatusCode::OK {
            Ok(())
        } else {
            Err(format!(
                "HTTP {}: {}",
                self.status.as_u16(),
                snippet(&self.body)
            ))
        }
    }

    pub fn json(&self) -> Result<Value, String> {
        serde_json::from_slice(&self.body)
            .map_err(|e| format!("invalid JSON ({e}): {}", snippet(&self.body)))
    }
}

/// Executes a pre-built request, timing until the full body is read.
pub async fn timed(client: &Client, req: Request) -> Result<Timed, String> {
    let start = Instant::now();
    let resp = client
        .execute(req)
        .await
        .map_err(|e| format!("transport: {}", error_chain(&e)))?;
    let status = resp.status();
    let server_ms = server_timing_app_ms(resp.headers());
    let body = resp
        .bytes()
        .await
        .map_err(|e| format!("reading body: {}", error_chain(&e)))?;
    let elapsed_ms = start.elapsed().as_secs_f64() * 1e3;
    settle().await;
    Ok(Timed {
        status,
        body: body.to_vec(),
        elapsed_ms,
        server_ms,
    })
}

/// An error and its sources, e.g. "error sending request: connection closed
/// before message completed" (reqwest's Display shows only the first part).
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

/// Lets reqwest put the connection back into its idle pool, outside timing.
///
/// hyper returns an HTTP/1 connection to the pool from a separately spawned
/// task once the response body is done; if the next request is sent before
/// that task runs, a *new* connection is opened (up to ~10% of requests in
/// practice). On a current-thread runtime, yielding lets that task run first,
/// so each simulated client really does use one keep-alive connection.
pub async fn settle() {
    for _ in 0..2 {
        tokio::task::yield_now().await;
    }
}

/// Extracts `dur` of the `app` metric from `Server-Timing` headers, e.g.
/// `Server-Timing: app;dur=1.25` (possibly among other comma-separated metrics).
pub fn server_timing_app_ms(headers: &HeaderMap) -> Option<f64> {
    headers
        .get_all("server-timing")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .find_map(|metric| {
            let mut parts = metric.split(';').map(str::trim);
            if parts.next()? != "app" {
                return None;
            }
            parts.find_map(|p| p.strip_prefix("dur=")?.trim_matches('"').parse().ok())
        })
}

pub fn snippet(body: &[u8]) -> String {
    let s = String::from_utf8_lossy(body);
    let s = s.trim();
    if s.len() > 300 {
        let cut = (0..=300)
            .rev()
            .find(|i| s.is_char_boundary(*i))
            .unwrap_or(0);
        format!("{}…", &s[..cut])
    } else {
        s.to_string()
    }
}

/// Untimed POST for setup; fails on anything but 200 with a JSON body.
pub async fn setup_post(client: &Client, base: &str, path: &str, body: &Value) -> Result<Value> {
    let resp = client
        .post(format!("{base}{API}{path}"))
        .json(body)
        .send()
        .await
        .with_context(|| format!("POST {path}"))?;
    let status = resp.status();
    let bytes = resp.bytes().await?;
    if status != StatusCode::OK {
        bail!(
            "POST {path} -> HTTP {}: {}",
            status.as_u16(),
            snippet(&bytes)
        );
    }
    serde_json::from_slice(&bytes).with_context(|| format!("POST {path}: invalid JSON"))
}

pub async fn create_experiment(client: &Client, base: &str, name: &str) -> Result<String> {
    let v = setup_post(
        client,
        base,
        "/experiments/create",
        &json!({ "name": name }),
    )
    .await?;
    v["experiment_id"]
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| anyhow!("experiments/create: no experiment_id in {v}"))
}

pub fn run_id_of(v: &Value) -> Option<String> {
    let info = &v["run"]["info"];
    info["run_id"]
        .as_str()
        .or_else(|| info["run_uuid"].as_str())
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

pub async fn create_run(client: &Client, base: &str, experiment_id: &str) -> Result<String> {
    let body = json!({ "experiment_id": experiment_id, "start_time": now_ms() });
    let v = setup_post(client, base, "/runs/create", &body).await?;
    run_id_of(&v).ok_or_else(|| anyhow!("runs/create: no run id in response"))
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    #[test]
    fn parses_server_timing() {
        let mut h = HeaderMap::new();
        assert_eq!(server_timing_app_ms(&h), None);
        h.insert("server-timing", HeaderValue::from_static("app;dur=1.5"));
        assert_eq!(server_timing_app_ms(&h), Some(1.5));
        h.insert(
            "server-timing",
            HeaderValue::from_static("db;dur=0.2, app;desc=\"x\";dur=12"),
        );
        assert_eq!(server_timing_app_ms(&h), Some(12.0));
        h.insert("server-timing", HeaderValue::from_static("db;dur=3"));
        assert_eq!(server_timing_app_ms(&h), None);
    }
}
