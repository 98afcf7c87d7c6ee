//! Scale-out proof: two `cairn server` processes on one PostgreSQL database.
//!
//! Both processes start at the same moment on an empty database, so they race to migrate
//! it (the migrator's advisory lock must serialise them). Then 2 × 16 clients drive them
//! concurrently: runs are created on one process and written to through the other,
//! identical log-batch retries race each other, every client also writes to one shared
//! hot run (keys in differing orders), tags are set and runs searched. Every
//! acknowledged write must be visible from both processes, with no duplicate or lost row
//! and no error response; experiments created with one name on both processes at once
//! must yield exactly one winner.
//!
//! PostgreSQL is required, never skipped: `CAIRN_TEST_PG_URL` (default
//! `postgres://postgres@127.0.0.1:5432/postgres`) is an admin URL through which the test
//! creates its own database (`cairn_test_scale_*`), dropped again at the end.

#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};
use sqlx::{Connection, Executor, PgConnection};
use tempfile::TempDir;
use tokio::task::JoinSet;

const DEFAULT_ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";
const API: &str = "/api/2.0/mlflow";
const CAIRN: &str = env!("CARGO_BIN_EXE_cairn");

const CLIENTS_PER_SERVER: usize = 16;
const RUNS_PER_CLIENT: usize = 3;
/// Metric keys per run; each log-batch logs `STEPS_PER_BATCH` steps of each (100 metrics).
const METRIC_KEYS: usize = 4;
const STEPS_PER_BATCH: usize = 25;
const PARAMS_PER_BATCH: usize = 5;
/// Rounds of "every client creates the same experiment name at once".
const NAME_RACES: usize = 3;

const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(15);
const WORKLOAD_TIMEOUT: Duration = Duration::from_secs(120);
/// Starting against an unreachable database must fail within this.
const FAIL_FAST: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------------------------
// PostgreSQL: the admin URL and a throwaway database
// ---------------------------------------------------------------------------------------

fn admin_url() -> String {
    std::env::var("CAIRN_TEST_PG_URL")
        .ok()
        .filter(|u| !u.trim().is_empty())
        .unwrap_or_else(|| DEFAULT_ADMIN_URL.to_string())
}

/// `url` with any password replaced by `***`, for messages.
fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let Some((userinfo, host)) = rest.rsplit_once('@') else {
        return url.to_string();
    };
    match userinfo.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
        None => url.to_string(),
    }
}

/// `url` with its database replaced by `db` (a `?query` is kept).
fn url_with_database(url: &str, db: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, format!("?{q}")),
        None => (url, String::new()),
    };
    let (scheme, rest) = base.split_once("://").expect("a postgres:// URL");
    let authority = rest.split_once('/').map_or(rest, |(a, _)| a);
    format!("{scheme}://{authority}/{db}{query}")
}

/// `url` with its scheme replaced (Cairn accepts both `postgres://` and `postgresql://`).
fn with_scheme(url: &str, scheme: &str) -> String {
    let (_, rest) = url.split_once("://").expect("a postgres:// URL");
    format!("{scheme}://{rest}")
}

async fn admin_connect(url: &str) -> PgConnection {
    let hint = "the scale-out tests need PostgreSQL: start it (pg_ctlcluster \
                --skip-systemctl-redirect $(ls /etc/postgresql) main start) or point \
                CAIRN_TEST_PG_URL at a reachable server (scripts/test.sh does both)";
    match tokio::time::timeout(Duration::from_secs(10), PgConnection::connect(url)).await {
        Ok(Ok(conn)) => conn,
        Ok(Err(e)) => panic!("PostgreSQL is unreachable at {}: {e}; {hint}", redact(url)),
        Err(_) => panic!(
            "timed out connecting to PostgreSQL at {}; {hint}",
            redact(url)
        ),
    }
}

/// A database of its own, dropped (with any connection still open) when this is dropped,
/// also when the test panics.
struct TestDb {
    admin: String,
    name: String,
}

impl TestDb {
    async fn create(admin: &str, label: &str) -> Self {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let name = format!("cairn_test_{label}_{}_{nanos}", std::process::id());
        let mut conn = admin_connect(admin).await;
        conn.execute(format!("CREATE DATABASE \"{name}\"").as_str())
            .await
            .unwrap_or_else(|e| panic!("CREATE DATABASE {name} on {}: {e}", redact(admin)));
        conn.close().await.ok();
        Self {
            admin: admin.to_string(),
            name,
        }
    }

    fn url(&self) -> String {
        url_with_database(&self.admin, &self.name)
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let admin = self.admin.clone();
        let sql = format!("DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)", self.name);
        // Drop may run inside the test's runtime, which cannot block on itself: use a
        // thread with a runtime of its own.
        let outcome = std::thread::spawn(move || -> Result<(), String> {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            rt.block_on(async {
                let mut conn = PgConnection::connect(&admin)
                    .await
                    .map_err(|e| e.to_string())?;
                conn.execute(sql.as_str())
                    .await
                    .map_err(|e| e.to_string())?;
                conn.close().await.map_err(|e| e.to_string())
            })
        })
        .join();
        match outcome {
            Ok(Ok(())) => {}
            Ok(Err(e)) => eprintln!("warning: could not drop test database {}: {e}", self.name),
            Err(_) => eprintln!("warning: dropping test database {} panicked", self.name),
        }
    }
}

// ---------------------------------------------------------------------------------------
// `cairn server` processes
// ---------------------------------------------------------------------------------------

/// Removes ANSI escape sequences (colours), so log lines can be matched as plain text.
fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\u{1b}' {
            out.push(c);
        } else if chars.next() == Some('[') {
            for c in chars.by_ref() {
                if ('@'..='~').contains(&c) {
                    break;
                }
            }
        }
    }
    out
}

/// Copies one output stream of a server into `log`, and reports the address from the
/// `cairn listening addr=...` line.
fn pump(
    stream: impl Read + Send + 'static,
    log: Arc<Mutex<Vec<String>>>,
    listening: mpsc::Sender<SocketAddr>,
) {
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines() {
            let Ok(line) = line else { break };
            let line = strip_ansi(&line);
            if line.contains("cairn listening") {
                if let Some(addr) = line
                    .split_whitespace()
                    .find_map(|w| w.strip_prefix("addr="))
                    .and_then(|a| a.parse().ok())
                {
                    let _ = listening.send(addr);
                }
            }
            log.lock().unwrap().push(line);
        }
    });
}

/// A running `cairn server`, killed when dropped (also when the test panics).
struct Server {
    label: String,
    child: Child,
    log: Arc<Mutex<Vec<String>>>,
    listening: mpsc::Receiver<SocketAddr>,
    _dir: TempDir,
}

impl Server {
    /// Starts `cairn server` on port 0 over `backend_uri`, logging as text at INFO.
    fn spawn(label: &str, backend_uri: &str) -> Self {
        let dir = tempfile::tempdir().expect("creating a temp dir");
        let mut child = Command::new(CAIRN)
            .args(["--log-format", "text", "server", "--host", "127.0.0.1"])
            .args(["--port", "0", "--backend-store-uri", backend_uri])
            .arg("--data-dir")
            .arg(dir.path())
            .current_dir(dir.path())
            .env("CAIRN_LOG", "info,sqlx=warn")
            .env("NO_COLOR", "1")
            .env_remove("CAIRN_CONFIG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {CAIRN}: {e}"));
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::channel();
        pump(child.stdout.take().unwrap(), log.clone(), tx.clone());
        pump(child.stderr.take().unwrap(), log.clone(), tx);
        Self {
            label: label.to_string(),
            child,
            log,
            listening: rx,
            _dir: dir,
        }
    }

    /// The last `n` lines the server printed.
    fn log_tail(&self, n: usize) -> String {
        let log = self.log.lock().unwrap();
        log[log.len().saturating_sub(n)..].join("\n")
    }

    /// Waits for the `cairn listening` line; panics with the log if the server exits or
    /// does not get there in time.
    fn wait_listening(&mut self, deadline: Instant) -> SocketAddr {
        loop {
            match self.listening.recv_timeout(Duration::from_millis(50)) {
                Ok(addr) => return addr,
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    // Both pipes closed without the line: the process is gone.
                    let status = self.child.wait().ok();
                    std::thread::sleep(Duration::from_millis(50));
                    panic!(
                        "server {} exited before listening ({status:?}):\n{}",
                        self.label,
                        self.log_tail(40)
                    );
                }
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                std::thread::sleep(Duration::from_millis(100));
                if let Ok(addr) = self.listening.try_recv() {
                    return addr;
                }
                panic!(
                    "server {} exited before listening ({status}):\n{}",
                    self.label,
                    self.log_tail(40)
                );
            }
            if Instant::now() > deadline {
                panic!(
                    "server {} did not start listening within {STARTUP_TIMEOUT:?}:\n{}",
                    self.label,
                    self.log_tail(40)
                );
            }
        }
    }

    /// SIGTERM, then waits for a graceful exit.
    fn terminate(&mut self) -> ExitStatus {
        let pid = self.child.id().to_string();
        let sent = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("running kill");
        assert!(sent.success(), "kill -TERM {pid} failed");
        let deadline = Instant::now() + SHUTDOWN_TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait().expect("waiting for the server") {
                return status;
            }
            if Instant::now() > deadline {
                panic!(
                    "server {} did not stop within {SHUTDOWN_TIMEOUT:?} of SIGTERM:\n{}",
                    self.label,
                    self.log_tail(40)
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

// ---------------------------------------------------------------------------------------
// HTTP
// ---------------------------------------------------------------------------------------

/// One client of one server: any non-200 answer is an `Err` naming the request.
#[derive(Clone)]
struct Api {
    label: String,
    base: String,
    client: reqwest::Client,
}

fn truncated(v: &Value) -> String {
    let s = v.to_string();
    if s.len() <= 300 {
        s
    } else {
        format!("{}...", &s[..300])
    }
}

impl Api {
    /// A new client (its own connection pool) of the server at `addr`.
    fn new(label: &str, addr: SocketAddr) -> Self {
        let client = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(60))
            .build()
            .expect("building the HTTP client");
        Self {
            label: label.to_string(),
            base: format!("http://{addr}{API}"),
            client,
        }
    }

    /// With a fresh connection pool, as a separate client process would have.
    fn fresh(&self) -> Self {
        let mut api = self.clone();
        api.client = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(60))
            .build()
            .expect("building the HTTP client");
        api
    }

    async fn send(&self, req: reqwest::RequestBuilder, what: &str) -> Result<(u16, Value), String> {
        let res = req
            .send()
            .await
            .map_err(|e| format!("{} {what}: transport error: {e}", self.label))?;
        let status = res.status().as_u16();
        let text = res
            .text()
            .await
            .map_err(|e| format!("{} {what}: reading the body: {e}", self.label))?;
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Ok((status, body))
    }

    /// POSTs and returns (status, body) whatever the status.
    async fn post_any(&self, endpoint: &str, body: &Value) -> Result<(u16, Value), String> {
        let req = self
            .client
            .post(format!("{}/{endpoint}", self.base))
            .json(body);
        self.send(req, &format!("POST {endpoint}")).await
    }

    async fn post(&self, endpoint: &str, body: &Value) -> Result<Value, String> {
        let (status, reply) = self.post_any(endpoint, body).await?;
        if status == 200 {
            Ok(reply)
        } else {
            Err(format!(
                "{} POST {endpoint} {} -> {status} {reply}",
                self.label,
                truncated(body)
            ))
        }
    }

    async fn get(&self, endpoint: &str, query: &[(&str, String)]) -> Result<Value, String> {
        let req = self
            .client
            .get(format!("{}/{endpoint}", self.base))
            .query(query);
        let (status, reply) = self.send(req, &format!("GET {endpoint}")).await?;
        if status == 200 {
            Ok(reply)
        } else {
            Err(format!(
                "{} GET {endpoint} {query:?} -> {status} {reply}",
                self.label
            ))
        }
    }

    /// Every run of `experiment` matching `filter` (all pages).
    async fn search_all(&self, experiment: &str, filter: &str) -> Result<Vec<Value>, String> {
        let mut runs = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut body = json!({
                "experiment_ids": [experiment],
                "filter": filter,
                "max_results": 1000,
            });
            if let Some(t) = &token {
                body["page_token"] = json!(t);
            }
            let page = self.post("runs/search", &body).await?;
            if let Some(list) = page["runs"].as_array() {
                runs.extend(list.iter().cloned());
            }
            match page["next_page_token"].as_str() {
                Some(t) if !t.is_empty() => token = Some(t.to_string()),
                _ => return Ok(runs),
            }
        }
    }

    /// The full history of one metric (all pages).
    async fn history(&self, run_id: &str, key: &str) -> Result<Vec<Value>, String> {
        let mut points = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut query = vec![
                ("run_id", run_id.to_string()),
                ("metric_key", key.to_string()),
                ("max_results", "1000".to_string()),
            ];
            if let Some(t) = &token {
                query.push(("page_token", t.clone()));
            }
            let page = self.get("metrics/get-history", &query).await?;
            if let Some(list) = page["metrics"].as_array() {
                points.extend(list.iter().cloned());
            }
            match page["next_page_token"].as_str() {
                Some(t) if !t.is_empty() => token = Some(t.to_string()),
                _ => return Ok(points),
            }
        }
    }
}

fn run_id_of(run: &Value) -> Result<String, String> {
    run["info"]["run_id"]
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| format!("a run without info.run_id: {}", truncated(run)))
}

/// An int64 field, which may travel as a number or a string.
fn int64(v: &Value) -> Option<i64> {
    v.as_i64()
        .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
}

// ---------------------------------------------------------------------------------------
// What was acknowledged
// ---------------------------------------------------------------------------------------

/// One metric point, ordered by step, then timestamp, then value (all values here are
/// positive, so their bits order like the numbers).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Point {
    step: i64,
    timestamp: i64,
    bits: u64,
}

impl std::fmt::Debug for Point {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let value = f64::from_bits(self.bits);
        write!(f, "step {} ts {} value {value}", self.step, self.timestamp)
    }
}

fn point_of(m: &Value) -> Result<(String, Point), String> {
    let key = m["key"]
        .as_str()
        .ok_or_else(|| format!("metric key: {m}"))?;
    let step = int64(&m["step"]).ok_or_else(|| format!("metric step: {m}"))?;
    let ts = int64(&m["timestamp"]).ok_or_else(|| format!("metric timestamp: {m}"))?;
    let value = m["value"]
        .as_f64()
        .ok_or_else(|| format!("metric value: {m}"))?;
    Ok((
        key.to_string(),
        Point {
            step,
            timestamp: ts,
            bits: value.to_bits(),
        },
    ))
}

/// Everything the servers acknowledged for one run.
#[derive(Debug, Default, Clone)]
struct Acked {
    params: BTreeMap<String, String>,
    /// User tags (the server's own `mlflow.*` tags are not compared).
    tags: BTreeMap<String, String>,
    history: BTreeMap<String, BTreeSet<Point>>,
}

impl Acked {
    /// The latest point per key (highest step; steps are distinct here).
    fn latest(&self) -> BTreeMap<String, Point> {
        self.history
            .iter()
            .map(|(k, pts)| (k.clone(), *pts.iter().max().unwrap()))
            .collect()
    }

    fn record_batch(&mut self, batch: &Value) -> Result<(), String> {
        for m in batch["metrics"].as_array().into_iter().flatten() {
            let (key, p) = point_of(m)?;
            self.history.entry(key).or_default().insert(p);
        }
        for (field, map) in [("params", &mut self.params), ("tags", &mut self.tags)] {
            for kv in batch[field].as_array().into_iter().flatten() {
                map.insert(
                    kv["key"].as_str().unwrap().to_string(),
                    kv["value"].as_str().unwrap().to_string(),
                );
            }
        }
        Ok(())
    }
}

fn key_values(list: &Value, skip_system: bool) -> Result<BTreeMap<String, String>, String> {
    let mut map = BTreeMap::new();
    for kv in list.as_array().into_iter().flatten() {
        let key = kv["key"].as_str().ok_or_else(|| format!("key: {kv}"))?;
        if skip_system && key.starts_with("mlflow.") {
            continue;
        }
        let value = kv["value"].as_str().ok_or_else(|| format!("value: {kv}"))?;
        if map.insert(key.to_string(), value.to_string()).is_some() {
            return Err(format!("key {key} appears twice in {list}"));
        }
    }
    Ok(map)
}

/// A log-batch of `STEPS_PER_BATCH` steps of every metric key starting at `first_step`,
/// `PARAMS_PER_BATCH` params named `{prefix}0..` and two tags.
fn batch(run_id: &str, seed: usize, first_step: usize, prefix: &str) -> Value {
    let mut metrics = Vec::new();
    for k in 0..METRIC_KEYS {
        for step in first_step..first_step + STEPS_PER_BATCH {
            // Exactly representable, distinct per (client, run, key, step).
            let value = (seed * 100_000 + k * 1_000 + step) as f64 + 0.5;
            metrics.push(json!({
                "key": format!("m{k}"),
                "value": value,
                "timestamp": 1_700_000_000_000_i64 + step as i64,
                "step": step,
            }));
        }
    }
    let params: Vec<Value> = (0..PARAMS_PER_BATCH)
        .map(|i| json!({ "key": format!("{prefix}{i}"), "value": format!("{seed}-{prefix}-{i}") }))
        .collect();
    json!({
        "run_id": run_id,
        "metrics": metrics,
        "params": params,
        "tags": [
            { "key": format!("{prefix}_tag"), "value": format!("{seed}") },
            { "key": format!("{prefix}_note"), "value": "logged" },
        ],
    })
}

/// One client's contribution to the hot run that every client writes to at once: one
/// step of each `h*` key (in an order that differs between clients, so transactions that
/// lock rows in the order given would deadlock), plus a param and a tag of its own.
fn hot_batch(run_id: &str, seed: usize) -> Value {
    let metrics: Vec<Value> = (0..METRIC_KEYS)
        .map(|i| {
            let k = (seed + i) % METRIC_KEYS;
            json!({
                "key": format!("h{k}"),
                "value": (seed * 10 + k) as f64 + 0.25,
                "timestamp": 1_700_000_000_000_i64 + seed as i64,
                "step": seed,
            })
        })
        .collect();
    json!({
        "run_id": run_id,
        "metrics": metrics,
        "params": [{ "key": format!("hot{seed}"), "value": seed.to_string() }],
        "tags": [{ "key": format!("hot{seed}"), "value": "written" }],
    })
}

// ---------------------------------------------------------------------------------------
// The workload
// ---------------------------------------------------------------------------------------

/// What one client had acknowledged: its own runs, and its writes to the hot run.
struct ClientAcked {
    runs: Vec<(String, Acked)>,
    hot: Acked,
}

/// One client: creates its runs on `home` and writes to them mostly through `other`,
/// checking after each step that the other process sees the acknowledged write.
async fn client(
    n: usize,
    home: Api,
    other: Api,
    experiment: String,
    hot_run: String,
) -> Result<ClientAcked, String> {
    let owner = format!("client-{n}");
    let mut mine: Vec<(String, Acked)> = Vec::new();
    let mut hot = Acked::default();
    for r in 0..RUNS_PER_CLIENT {
        let seed = n * RUNS_PER_CLIENT + r;
        let created = home
            .post(
                "runs/create",
                &json!({
                    "experiment_id": experiment,
                    "run_name": format!("{owner}-run-{r}"),
                    "start_time": 1_700_000_000_000_i64,
                    "tags": [{ "key": "owner", "value": owner }],
                }),
            )
            .await?;
        let run_id = run_id_of(&created["run"])?;
        let mut acked = Acked::default();
        acked.tags.insert("owner".into(), owner.clone());

        // The run is visible through the other process as soon as it is acknowledged.
        let got = other.get("runs/get", &[("run_id", run_id.clone())]).await?;
        if got["run"]["info"]["experiment_id"] != json!(experiment) {
            return Err(format!("{} runs/get {run_id}: {}", other.label, got));
        }

        // Two batches at once through both processes, plus an identical retry of the
        // first one racing it (as a client whose request timed out would send).
        let first = batch(&run_id, seed, 0, "p");
        let second = batch(&run_id, seed, STEPS_PER_BATCH, "q");
        // Meanwhile every other client writes to the shared hot run too.
        let hot_write = hot_batch(&hot_run, seed);
        let hot_via = [&home, &other][seed % 2];
        let (a, b, c, d) = tokio::join!(
            other.post("runs/log-batch", &first),
            home.post("runs/log-batch", &first),
            other.post("runs/log-batch", &second),
            hot_via.post("runs/log-batch", &hot_write),
        );
        a?;
        b?;
        c?;
        d?;
        acked.record_batch(&first)?;
        acked.record_batch(&second)?;
        hot.record_batch(&hot_write)?;

        let stage = json!({ "run_id": run_id, "key": "stage", "value": format!("done-{r}") });
        home.post("runs/set-tag", &stage).await?;
        acked.tags.insert("stage".into(), format!("done-{r}"));
        let checked = json!({ "run_id": run_id, "key": "checked", "value": "yes" });
        other.post("runs/set-tag", &checked).await?;
        acked.tags.insert("checked".into(), "yes".into());

        // Read back through the process that did not take the last write.
        let got = home.get("runs/get", &[("run_id", run_id.clone())]).await?;
        let data = &got["run"]["data"];
        if key_values(&data["params"], false)? != acked.params
            || key_values(&data["tags"], true)? != acked.tags
        {
            return Err(format!(
                "{} runs/get {run_id} right after the writes: {}, acknowledged {acked:?}",
                home.label,
                truncated(data)
            ));
        }
        let m0 = home.history(&run_id, "m0").await?;
        if m0.len() != 2 * STEPS_PER_BATCH {
            return Err(format!(
                "{} history of m0 of {run_id} has {} points right after the writes, want {}",
                home.label,
                m0.len(),
                2 * STEPS_PER_BATCH
            ));
        }
        mine.push((run_id, acked));

        // A search through either process finds exactly this client's runs so far.
        let via = if r % 2 == 0 { &other } else { &home };
        let found = via
            .search_all(
                &experiment,
                &format!("tags.owner = '{owner}' AND metrics.m0 >= 0"),
            )
            .await?;
        let mut ids: Vec<String> = found.iter().map(run_id_of).collect::<Result<_, _>>()?;
        ids.sort();
        let mut want: Vec<String> = mine.iter().map(|(id, _)| id.clone()).collect();
        want.sort();
        if ids != want {
            return Err(format!(
                "{} search for {owner}'s runs found {ids:?}, acknowledged {want:?}",
                via.label
            ));
        }
    }
    Ok(ClientAcked { runs: mine, hot })
}

/// Everything wrong with what `api` serves compared with what was acknowledged.
async fn verify_from(api: &Api, experiment: &str, acked: &BTreeMap<String, Acked>) -> Vec<String> {
    let mut problems = Vec::new();
    let runs = match api.search_all(experiment, "").await {
        Ok(runs) => runs,
        Err(e) => return vec![e],
    };
    let mut seen = BTreeSet::new();
    for run in &runs {
        let id = match run_id_of(run) {
            Ok(id) => id,
            Err(e) => {
                problems.push(e);
                continue;
            }
        };
        if !seen.insert(id.clone()) {
            problems.push(format!("{}: run {id} listed twice by search", api.label));
            continue;
        }
        let Some(want) = acked.get(&id) else {
            problems.push(format!("{}: search lists unknown run {id}", api.label));
            continue;
        };
        let data = &run["data"];
        match key_values(&data["params"], false) {
            Ok(params) if params == want.params => {}
            Ok(params) => problems.push(format!(
                "{}: run {id} params {params:?}, acknowledged {:?}",
                api.label, want.params
            )),
            Err(e) => problems.push(format!("{}: run {id} params: {e}", api.label)),
        }
        match key_values(&data["tags"], true) {
            Ok(tags) if tags == want.tags => {}
            Ok(tags) => problems.push(format!(
                "{}: run {id} tags {tags:?}, acknowledged {:?}",
                api.label, want.tags
            )),
            Err(e) => problems.push(format!("{}: run {id} tags: {e}", api.label)),
        }
        let latest: Result<BTreeMap<String, Point>, String> = data["metrics"]
            .as_array()
            .into_iter()
            .flatten()
            .map(point_of)
            .collect();
        match latest {
            Ok(latest) if latest == want.latest() => {}
            Ok(latest) => problems.push(format!(
                "{}: run {id} latest metrics {latest:?}, want {:?}",
                api.label,
                want.latest()
            )),
            Err(e) => problems.push(format!("{}: run {id} metrics: {e}", api.label)),
        }
    }
    for id in acked.keys() {
        if !seen.contains(id) {
            problems.push(format!("{}: acknowledged run {id} is missing", api.label));
        }
    }

    // Every metric's full history, exactly: no duplicate and no lost point.
    let mut checks = JoinSet::new();
    for (id, want) in acked {
        let (api, id, want) = (api.clone(), id.clone(), want.clone());
        checks.spawn(async move {
            let mut problems = Vec::new();
            for (key, points) in &want.history {
                match api.history(&id, key).await {
                    Err(e) => problems.push(e),
                    Ok(got) => {
                        let parsed: Result<Vec<(String, Point)>, String> =
                            got.iter().map(point_of).collect();
                        match parsed {
                            Err(e) => problems.push(e),
                            Ok(parsed) => {
                                let set: BTreeSet<Point> = parsed.iter().map(|(_, p)| *p).collect();
                                if parsed.len() != points.len() || &set != points {
                                    problems.push(format!(
                                        "{}: run {id} history of {key} has {} points \
                                         ({} distinct), acknowledged {}",
                                        api.label,
                                        parsed.len(),
                                        set.len(),
                                        points.len()
                                    ));
                                }
                            }
                        }
                    }
                }
            }
            problems
        });
    }
    while let Some(done) = checks.join_next().await {
        problems.extend(done.expect("a history check panicked"));
    }
    problems
}

/// Every client creates an experiment called `name` at once, half through each process:
/// exactly one wins, every other gets RESOURCE_ALREADY_EXISTS. Returns the winner's id.
async fn race_experiment_name(servers: &[Api; 2], name: &str) -> String {
    let mut attempts = JoinSet::new();
    for n in 0..2 * CLIENTS_PER_SERVER {
        let api = servers[n % 2].fresh();
        let name = name.to_string();
        attempts.spawn(async move {
            api.post_any("experiments/create", &json!({ "name": name }))
                .await
        });
    }
    let mut winners = Vec::new();
    let mut unexpected = Vec::new();
    while let Some(done) = attempts.join_next().await {
        match done.expect("a create task panicked") {
            Ok((200, body)) => winners.push(body["experiment_id"].clone()),
            Ok((400, body)) if body["error_code"] == "RESOURCE_ALREADY_EXISTS" => {}
            Ok((status, body)) => unexpected.push(format!("{status} {body}")),
            Err(e) => unexpected.push(e),
        }
    }
    assert!(
        unexpected.is_empty(),
        "creating experiment {name:?} concurrently: answers other than 200 or 400 \
         RESOURCE_ALREADY_EXISTS: {unexpected:#?}"
    );
    assert_eq!(
        winners.len(),
        1,
        "exactly one concurrent create of {name:?} must succeed, got ids {winners:?}"
    );
    let id = winners[0]
        .as_str()
        .expect("experiment_id is a string")
        .to_string();
    for api in servers {
        let got = api
            .get(
                "experiments/get-by-name",
                &[("experiment_name", name.into())],
            )
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            got["experiment"]["experiment_id"],
            json!(id),
            "{} resolves {name:?} to another experiment",
            api.label
        );
    }
    id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_processes_on_one_database_agree_on_every_acknowledged_write() {
    let started = Instant::now();
    let db = TestDb::create(&admin_url(), "scale").await;
    let uri = db.url();

    // Both processes at once on the empty database: they race to migrate it. One says
    // postgresql://, the other postgres://.
    let mut servers = [
        Server::spawn("A", &with_scheme(&uri, "postgresql")),
        Server::spawn("B", &with_scheme(&uri, "postgres")),
    ];
    let deadline = Instant::now() + STARTUP_TIMEOUT;
    let addrs = [
        servers[0].wait_listening(deadline),
        servers[1].wait_listening(deadline),
    ];
    let apis = [Api::new("A", addrs[0]), Api::new("B", addrs[1])];
    eprintln!(
        "both servers listening after {:?} ({} / {})",
        started.elapsed(),
        addrs[0],
        addrs[1]
    );
    for api in &apis {
        let default = api
            .get("experiments/get", &[("experiment_id", "0".into())])
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(default["experiment"]["name"], "Default", "{}", api.label);
    }

    let unique = format!("{}-{}", std::process::id(), started.elapsed().as_nanos());
    let mut experiment = String::new();
    for round in 0..NAME_RACES {
        let id = race_experiment_name(&apis, &format!("scale-out-{unique}-{round}")).await;
        if round == 0 {
            experiment = id;
        }
    }

    // One run that every client writes to.
    let hot_run = apis[0]
        .post(
            "runs/create",
            &json!({ "experiment_id": experiment, "run_name": "hot" }),
        )
        .await
        .and_then(|created| run_id_of(&created["run"]))
        .unwrap_or_else(|e| panic!("{e}"));
    let mut hot = Acked::default();

    // 2 × 16 clients, each with its own connections.
    let mut clients = JoinSet::new();
    for n in 0..2 * CLIENTS_PER_SERVER {
        let home = apis[n % 2].fresh();
        let other = apis[(n + 1) % 2].fresh();
        clients.spawn(client(n, home, other, experiment.clone(), hot_run.clone()));
    }
    let mut acked = BTreeMap::new();
    let mut errors = Vec::new();
    let collected = tokio::time::timeout(WORKLOAD_TIMEOUT, async {
        while let Some(done) = clients.join_next().await {
            match done.expect("a client task panicked") {
                Ok(done) => {
                    for (id, run) in done.runs {
                        assert!(
                            acked.insert(id.clone(), run).is_none(),
                            "run id {id} returned twice"
                        );
                    }
                    hot.params.extend(done.hot.params);
                    hot.tags.extend(done.hot.tags);
                    for (key, points) in done.hot.history {
                        hot.history.entry(key).or_default().extend(points);
                    }
                }
                Err(e) => errors.push(e),
            }
        }
    })
    .await;
    assert!(
        collected.is_ok(),
        "the workload did not finish within {WORKLOAD_TIMEOUT:?}"
    );
    assert!(
        errors.is_empty(),
        "{} of {} clients hit an error:\n{}\n--- server A ---\n{}\n--- server B ---\n{}",
        errors.len(),
        2 * CLIENTS_PER_SERVER,
        errors.join("\n"),
        servers[0].log_tail(20),
        servers[1].log_tail(20)
    );
    assert_eq!(acked.len(), 2 * CLIENTS_PER_SERVER * RUNS_PER_CLIENT);
    assert_eq!(hot.params.len(), 2 * CLIENTS_PER_SERVER * RUNS_PER_CLIENT);
    acked.insert(hot_run, hot);
    eprintln!(
        "workload done after {:?}: {} runs acknowledged",
        started.elapsed(),
        acked.len()
    );

    // Both processes serve exactly what was acknowledged.
    let (a, b) = tokio::join!(
        verify_from(&apis[0], &experiment, &acked),
        verify_from(&apis[1], &experiment, &acked)
    );
    let problems: Vec<String> = a.into_iter().chain(b).collect();
    assert!(
        problems.is_empty(),
        "{} mismatches between what was acknowledged and what the servers serve:\n{}",
        problems.len(),
        problems
            .iter()
            .take(40)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );

    // Neither process logged an internal error, and both stop cleanly.
    for server in &mut servers {
        let status = server.terminate();
        let log = server.log.lock().unwrap().clone();
        let bad: Vec<&String> = log
            .iter()
            .filter(|l| l.contains(" ERROR ") || l.contains("panicked"))
            .collect();
        assert!(
            bad.is_empty(),
            "server {} logged errors:\n{}",
            server.label,
            bad.iter()
                .take(20)
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join("\n")
        );
        assert!(
            status.success(),
            "server {} exited with {status} after SIGTERM:\n{}",
            server.label,
            server.log_tail(20)
        );
    }
    eprintln!("scale-out test done after {:?}", started.elapsed());
    drop(servers);
    drop(db);
}

#[test]
fn unreachable_postgres_fails_fast_without_leaking_the_password() {
    let dir = tempfile::tempdir().expect("creating a temp dir");
    let started = Instant::now();
    let mut child = Command::new(CAIRN)
        .args(["server", "--host", "127.0.0.1", "--port", "0"])
        .args(["--backend-store-uri", "postgresql://u:s3cret@127.0.0.1:1/x"])
        .arg("--data-dir")
        .arg(dir.path())
        .current_dir(dir.path())
        // Debug logging too must never print the password.
        .env("CAIRN_LOG", "debug")
        .env("NO_COLOR", "1")
        .env_remove("CAIRN_CONFIG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("starting {CAIRN}: {e}"));
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let out = std::thread::spawn(move || {
        let mut s = String::new();
        stdout.read_to_string(&mut s).ok();
        s
    });
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        stderr.read_to_string(&mut s).ok();
        s
    });
    let mut timed_out = false;
    let status = loop {
        if let Some(status) = child.try_wait().expect("waiting for cairn") {
            break status;
        }
        if started.elapsed() > FAIL_FAST {
            timed_out = true;
            let _ = child.kill();
            break child.wait().expect("waiting for cairn");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let elapsed = started.elapsed();
    let stdout = out.join().unwrap();
    let stderr = err.join().unwrap();
    let context = format!("exit {status} after {elapsed:?}\nstderr:\n{stderr}\nstdout:\n{stdout}");
    assert!(
        !timed_out,
        "still running {FAIL_FAST:?} after start against an unreachable database (killed): \
         {context}"
    );
    assert!(!status.success(), "must fail: {context}");
    assert!(
        elapsed < FAIL_FAST,
        "must fail within {FAIL_FAST:?}: {context}"
    );
    assert!(
        !stderr.contains("s3cret") && !stdout.contains("s3cret"),
        "the password leaked: {context}"
    );
    assert!(
        stderr.to_lowercase().contains("postgres"),
        "stderr must say that PostgreSQL could not be reached: {context}"
    );
}

#[test]
fn url_helpers() {
    assert_eq!(
        url_with_database("postgres://postgres@127.0.0.1:5432/postgres", "db1"),
        "postgres://postgres@127.0.0.1:5432/db1"
    );
    assert_eq!(
        url_with_database("postgresql://u:p@h:1?sslmode=disable", "db1"),
        "postgresql://u:p@h:1/db1?sslmode=disable"
    );
    assert_eq!(
        with_scheme("postgres://h/d", "postgresql"),
        "postgresql://h/d"
    );
    assert_eq!(redact("postgres://u:p@w@h/d"), "postgres://u:***@h/d");
    assert_eq!(redact("postgres://u@h/d"), "postgres://u@h/d");
    assert_eq!(
        strip_ansi("\u{1b}[3maddr\u{1b}[0m\u{1b}[2m=\u{1b}[0m1"),
        "addr=1"
    );
}
