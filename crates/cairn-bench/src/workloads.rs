//! The benchmark workloads. Each returns one or more `WorkloadResult`s; setup
//! phases (populating data) are reported too, flagged `setup`, so their errors
//! are visible, but they are not benchmark figures.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use reqwest::{Client, Url};
use serde::Serialize;
use serde_json::{json, Map, Value};

use crate::http::{self, new_client, now_ms, post_json, timed, Timed, API};
use crate::stats::{percentiles, Percentiles, Recorder};

/// Metrics per log-batch request; also MLflow's per-request limit.
pub const BATCH: usize = 1000;

/// Iteration counts and knobs shared by all workloads.
#[derive(Debug, Clone, Serialize)]
pub struct Config {
    pub clients: usize,
    pub log_batch_requests: usize,
    pub log_batch_per_client: usize,
    pub creates: usize,
    /// Data-set sizes searched, ascending; each grows the previous one.
    pub search_runs: Vec<usize>,
    /// `max_results` of each measured search variant.
    pub search_max_results: Vec<usize>,
    pub search_iters: usize,
    pub history_points: usize,
    pub history_page_size: usize,
    pub history_iters: usize,
    pub warmup: usize,
    pub populate_concurrency: usize,
    /// A measured phase stops issuing requests after this many seconds (see
    /// `over_budget`), so slow servers finish in time.
    pub phase_budget_s: f64,
    /// External command that populates the search data set instead of the
    /// REST API (`{data}`, `{experiment_id}`, `{start}`, `{end}` substituted).
    pub search_populate_cmd: Option<String>,
    /// Command run after every data set-up phase, untimed (`{data}` substituted).
    pub after_populate_cmd: Option<String>,
    #[serde(skip)]
    pub timeout: Duration,
    /// The spawned server's temp dir, for `{data}` in the commands above.
    #[serde(skip)]
    pub data_dir: Option<PathBuf>,
}

impl Config {
    fn budget(&self) -> Duration {
        Duration::try_from_secs_f64(self.phase_budget_s).unwrap_or(Duration::MAX)
    }
}

/// Requests every client makes in a measured phase even past the time budget...
pub const MIN_MEASURED: usize = 5;

/// ...unless the phase has run this many budgets: a request that takes
/// minutes is measured once or twice, not five times.
const HARD_STOP_BUDGETS: u32 = 4;

/// Whether a client that has made `done` measured requests since `elapsed`
/// ago stops before the next one.
fn over_budget(done: usize, elapsed: Duration, budget: Duration) -> bool {
    elapsed >= budget
        && (done >= MIN_MEASURED
            || (done >= 1 && elapsed >= budget.saturating_mul(HARD_STOP_BUDGETS)))
}

#[derive(Debug, Serialize)]
pub struct WorkloadResult {
    pub name: String,
    pub description: String,
    /// Populating data for a later workload: shown for its errors, not a figure.
    pub setup: bool,
    pub clients: usize,
    /// Measured requests attempted (warm-up excluded).
    pub requests: u64,
    /// Measured requests planned; more than `requests` when the phase hit its
    /// time budget.
    pub planned: u64,
    /// All failures, warm-up included.
    pub errors: u64,
    pub error_samples: Vec<String>,
    pub wall_s: f64,
    /// Successful measured requests per second of wall time.
    pub req_per_s: f64,
    /// Unit of `items_per_s` ("metrics", "runs", "points"), if meaningful.
    pub item: Option<&'static str>,
    pub items_per_s: Option<f64>,
    /// Client-side latency per request (per full paged fetch for history).
    pub latency_ms: Option<Percentiles>,
    /// From `Server-Timing: app;dur=`; absent when the server sends none.
    pub server_ms: Option<Percentiles>,
    #[serde(skip_serializing_if = "Map::is_empty")]
    pub extra: Map<String, Value>,
}

impl WorkloadResult {
    fn new(name: impl Into<String>, description: impl Into<String>, clients: usize) -> Self {
        WorkloadResult {
            name: name.into(),
            description: description.into(),
            setup: false,
            clients,
            requests: 0,
            planned: 0,
            errors: 0,
            error_samples: Vec::new(),
            wall_s: 0.0,
            req_per_s: 0.0,
            item: None,
            items_per_s: None,
            latency_ms: None,
            server_ms: None,
            extra: Map::new(),
        }
    }

    /// A workload whose setup failed outright: one error, no figures.
    pub fn failed(name: &str, err: &anyhow::Error) -> Self {
        let mut r = WorkloadResult::new(name, "setup failed", 0);
        r.errors = 1;
        r.error_samples.push(format!("{err:#}"));
        r
    }

    fn fill(&mut self, rec: Recorder, wall_s: f64, item: Option<(&'static str, f64)>) {
        self.requests = rec.attempts;
        self.planned = rec.planned.max(rec.attempts);
        self.wall_s = wall_s;
        self.req_per_s = if wall_s > 0.0 {
            rec.ok as f64 / wall_s
        } else {
            0.0
        };
        if let Some((unit, per_req)) = item {
            self.item = Some(unit);
            self.items_per_s = Some(self.req_per_s * per_req);
        }
        self.latency_ms = percentiles(&rec.latencies_ms);
        self.server_ms = percentiles(&rec.server_ms);
        self.errors = rec.errors;
        self.error_samples = rec.error_samples;
    }
}

/// Checks a 200 response body beyond its status code.
type Validator = Arc<dyn Fn(&Timed) -> Result<(), String> + Send + Sync>;

/// Bodies one simulated client POSTs: warm-up first, then the measured ones.
struct ClientPlan {
    warmup: Vec<String>,
    measured: Vec<String>,
}

/// Runs all plans concurrently against `url`, one keep-alive client each. All
/// clients finish warming up before any measured request (a barrier), and
/// wall time runs from the earliest measured start to the latest finish.
async fn drive(
    cfg: &Config,
    url: &str,
    plans: Vec<ClientPlan>,
    validate: Option<Validator>,
) -> Result<(Recorder, f64)> {
    let barrier = Arc::new(Barrier::new(plans.len()));
    let mut tasks = Vec::with_capacity(plans.len());
    for plan in plans {
        let (url, barrier, validate) = (url.to_string(), barrier.clone(), validate.clone());
        let (timeout, budget) = (cfg.timeout, cfg.budget());
        tasks.push(tokio::task::spawn_blocking(move || {
            client_thread(plan, &url, &barrier, validate.as_ref(), timeout, budget)
        }));
    }
    let mut total = Recorder::default();
    let mut first_start: Option<Instant> = None;
    let mut last_end: Option<Instant> = None;
    for t in tasks {
        let (rec, span) = t.await.context("client thread panicked")?;
        total.merge(rec);
        if let Some((start, end)) = span {
            first_start = Some(first_start.map_or(start, |s| s.min(start)));
            last_end = Some(last_end.map_or(end, |e| e.max(end)));
        }
    }
    let wall = match (first_start, last_end) {
        (Some(s), Some(e)) => e.duration_since(s).as_secs_f64(),
        _ => 0.0,
    };
    Ok((total, wall))
}

/// A single-threaded runtime for one simulated client. Each client gets its
/// own OS thread and runtime so that `http::settle` reliably hands the
/// connection back to reqwest's pool before the next request (see there).
fn client_runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("building client runtime")
}

/// Body of one simulated client's OS thread: warm-up, barrier, measured run.
/// Returns the measured span; it always reaches the barrier, even on a set-up
/// failure, so the other clients cannot deadlock. After `budget` the client
/// stops once it has made `MIN_MEASURED` measured requests.
fn client_thread(
    plan: ClientPlan,
    url: &str,
    barrier: &Barrier,
    validate: Option<&Validator>,
    timeout: Duration,
    budget: Duration,
) -> (Recorder, Option<(Instant, Instant)>) {
    let mut rec = Recorder {
        planned: plan.measured.len() as u64,
        ..Recorder::default()
    };
    let ready = client_runtime().and_then(|rt| {
        let client = {
            let _in_rt = rt.enter();
            new_client(timeout)?
        };
        Ok((rt, client))
    });
    let (rt, client) = match ready {
        Ok(v) => v,
        Err(e) => {
            barrier.wait();
            rec.error(format!("client set-up: {e:#}"));
            return (rec, None);
        }
    };
    rt.block_on(async {
        for body in plan.warmup {
            if let Err(e) = one(&client, url, body, validate).await {
                rec.error(format!("(warm-up) {e}"));
            }
        }
    });
    barrier.wait();
    let start = Instant::now();
    rt.block_on(async {
        for (k, body) in plan.measured.into_iter().enumerate() {
            if over_budget(k, start.elapsed(), budget) {
                break;
            }
            match one(&client, url, body, validate).await {
                Ok(t) => rec.success(t.elapsed_ms, t.server_ms),
                Err(e) => rec.measured_error(e),
            }
        }
    });
    (rec, Some((start, Instant::now())))
}

/// One timed POST plus status/body validation.
async fn one(
    client: &Client,
    url: &str,
    body: String,
    validate: Option<&Validator>,
) -> Result<Timed, String> {
    let req = post_json(client, url, body).map_err(|e| format!("{e:#}"))?;
    let t = timed(client, req).await?;
    t.check_ok()?;
    if let Some(v) = validate {
        v(&t)?;
    }
    Ok(t)
}

/// Deterministic pseudo-random f64 in [0, 1) (splitmix64), so both servers
/// under comparison get byte-identical data without a rand dependency.
fn unit_rand(seed: u64) -> f64 {
    let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    (z >> 11) as f64 / (1u64 << 53) as f64
}

/// A 1000-metric log-batch body. Request `k` of a run owns steps
/// `k*100 .. k*100+99` for each of the 10 keys and its own timestamps, so no
/// entry duplicates another and nothing can be deduplicated server-side.
fn log_batch_body(run_id: &str, k: usize, ts_base: i64) -> String {
    let metrics: Vec<Value> = (0..BATCH)
        .map(|i| {
            json!({
                "key": format!("m{}", i % 10),
                "value": (k * BATCH + i) as f64 * 0.001,
                "timestamp": ts_base + (k * BATCH + i) as i64,
                "step": k * 100 + i / 10,
            })
        })
        .collect();
    json!({ "run_id": run_id, "metrics": metrics }).to_string()
}

/// log-batch of 1000 metrics, `clients` concurrent clients, each on its own run.
pub async fn log_batch(
    cfg: &Config,
    base: &str,
    experiment_id: &str,
    clients: usize,
    per_client: usize,
) -> Result<WorkloadResult> {
    let setup = new_client(cfg.timeout)?;
    let ts_base = now_ms();
    let mut plans = Vec::with_capacity(clients);
    for _ in 0..clients {
        let run_id = http::create_run(&setup, base, experiment_id).await?;
        let mut bodies = (0..cfg.warmup + per_client).map(|k| log_batch_body(&run_id, k, ts_base));
        plans.push(ClientPlan {
            warmup: bodies.by_ref().take(cfg.warmup).collect(),
            measured: bodies.collect(),
        });
    }
    let url = format!("{base}{API}/runs/log-batch");
    let (rec, wall) = drive(cfg, &url, plans, None).await?;
    let mut r = WorkloadResult::new(
        format!("log_batch_{clients}c"),
        format!("POST runs/log-batch, {BATCH} metrics/request, {clients} client(s), own run each"),
        clients,
    );
    r.fill(rec, wall, Some(("metrics", BATCH as f64)));
    Ok(r)
}

/// runs/create with a run name and two tags; `total` creates split over clients.
pub async fn run_create(
    cfg: &Config,
    base: &str,
    experiment_id: &str,
    clients: usize,
    total: usize,
) -> Result<WorkloadResult> {
    let start_time = now_ms();
    let body = |c: usize, k: usize| {
        json!({
            "experiment_id": experiment_id,
            "start_time": start_time + k as i64,
            "run_name": format!("bench-{clients}c-{c}-{k}"),
            "tags": [
                { "key": "bench.client", "value": c.to_string() },
                { "key": "bench.seq", "value": k.to_string() },
            ],
        })
        .to_string()
    };
    let plans = (0..clients)
        .map(|c| {
            // Spread the remainder so exactly `total` runs are measured.
            let n = total / clients + usize::from(c < total % clients);
            ClientPlan {
                warmup: (0..cfg.warmup).map(|k| body(c, k)).collect(),
                measured: (cfg.warmup..cfg.warmup + n).map(|k| body(c, k)).collect(),
            }
        })
        .collect();
    let validate: Validator = Arc::new(|t: &Timed| {
        http::run_id_of(&t.json()?)
            .map(|_| ())
            .ok_or_else(|| "runs/create response has no run id".to_string())
    });
    let url = format!("{base}{API}/runs/create");
    let (rec, wall) = drive(cfg, &url, plans, Some(validate)).await?;
    let mut r = WorkloadResult::new(
        format!("run_create_{clients}c"),
        format!("POST runs/create with name + 2 tags, {clients} client(s)"),
        clients,
    );
    r.fill(rec, wall, Some(("runs", 1.0)));
    Ok(r)
}

fn metric_of(run: &Value, key: &str) -> Option<f64> {
    run["data"]["metrics"]
        .as_array()?
        .iter()
        .find(|m| m["key"] == key)?["value"]
        .as_f64()
}

/// Run `i` of the search data set: a pure function of `i`, so every server
/// (and `scripts/bench_populate_mlflow.py`, which mirrors it) holds the same data.
struct SearchRun {
    name: String,
    tags: [(&'static str, String); 2],
    params: [(&'static str, String); 3],
    loss: f64,
    acc: f64,
}

impl SearchRun {
    fn new(i: usize) -> Self {
        SearchRun {
            name: format!("search-{i}"),
            tags: [
                ("family", format!("f{}", i % 7)),
                ("bench.idx", i.to_string()),
            ],
            params: [
                ("lr", format!("{:.4}", 0.001 * (1 + i % 10) as f64)),
                ("batch_size", (16 << (i % 4)).to_string()),
                ("optimizer", ["adam", "sgd", "adamw"][i % 3].to_string()),
            ],
            loss: unit_rand(2 * i as u64),
            acc: unit_rand(2 * i as u64 + 1),
        }
    }

    /// Checks a run returned by runs/search against what was populated.
    fn check(run: &Value) -> Result<(), String> {
        let name = run["info"]["run_name"].as_str().unwrap_or_default();
        let i: usize = name
            .strip_prefix("search-")
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| format!("unexpected run name {name:?}"))?;
        let want = SearchRun::new(i);
        let pairs = |field: &str| -> Vec<(String, String)> {
            run["data"][field]
                .as_array()
                .map(Vec::as_slice)
                .unwrap_or(&[])
                .iter()
                .map(|kv| {
                    let s = |k: &str| kv[k].as_str().unwrap_or_default().to_string();
                    (s("key"), s("value"))
                })
                .collect()
        };
        let tags = pairs("tags");
        let run_name_tag = ("mlflow.runName", want.name.clone());
        for (k, v) in want.tags.iter().chain(std::iter::once(&run_name_tag)) {
            if !tags.iter().any(|(tk, tv)| tk == k && tv == v) {
                return Err(format!("{name}: tag {k}={v} missing (got {tags:?})"));
            }
        }
        let mut params = pairs("params");
        params.sort();
        let mut want_params: Vec<(String, String)> = want
            .params
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect();
        want_params.sort();
        if params != want_params {
            return Err(format!(
                "{name}: params {params:?}, expected {want_params:?}"
            ));
        }
        let n_metrics = run["data"]["metrics"].as_array().map_or(0, Vec::len);
        let (loss, acc) = (metric_of(run, "loss"), metric_of(run, "acc"));
        if n_metrics != 2 || loss != Some(want.loss) || acc != Some(want.acc) {
            return Err(format!(
                "{name}: {n_metrics} metrics, loss {loss:?} acc {acc:?}, expected {} {}",
                want.loss, want.acc
            ));
        }
        Ok(())
    }
}

/// How many of runs `0..n` match `metrics.loss < 0.5`.
fn matching_runs(n: usize) -> usize {
    (0..n).filter(|&i| SearchRun::new(i).loss < 0.5).count()
}

/// "10k" for 10000, "1500" for 1500: workload names stay short and stable.
pub fn size_label(n: usize) -> String {
    if n >= 1000 && n.rem_euclid(1000) == 0 {
        format!("{}k", n / 1000)
    } else {
        n.to_string()
    }
}

/// FNV-1a over the run names of a result page, in order: equal fingerprints
/// from two servers mean they returned the same runs in the same order.
fn page_fingerprint(names: &[&str]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in names.join("\n").bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}

/// Runs a set-up command through `sh -c` with `{name}` placeholders replaced;
/// its stdout goes to our stderr so stdout stays the results table.
async fn run_command(what: &str, template: &str, vars: Vec<(&'static str, String)>) -> Result<()> {
    let mut cmd = template.to_string();
    for (k, v) in &vars {
        cmd = cmd.replace(&format!("{{{k}}}"), v);
    }
    eprintln!("[bench] {what}: {cmd}");
    let shown = cmd.clone();
    let status = tokio::task::spawn_blocking(move || {
        Command::new("sh")
            .arg("-c")
            .arg(&cmd)
            .stdin(Stdio::null())
            .stdout(Stdio::from(std::io::stderr()))
            .status()
    })
    .await
    .context("command thread panicked")?
    .with_context(|| format!("running {what} command: {shown}"))?;
    if !status.success() {
        bail!("{what} command failed ({status}): {shown}");
    }
    Ok(())
}

/// Runs `--after-populate-cmd`, if any, after a data set-up phase.
pub async fn after_populate(cfg: &Config) -> Result<()> {
    match &cfg.after_populate_cmd {
        Some(t) => run_command("after-populate", t, data_var(cfg)).await,
        None => Ok(()),
    }
}

fn data_var(cfg: &Config) -> Vec<(&'static str, String)> {
    let data = cfg
        .data_dir
        .as_ref()
        .map(|d| d.display().to_string())
        .unwrap_or_default();
    vec![("data", data)]
}

/// Grows the search data set to each size in `cfg.search_runs` in turn (runs
/// with 2 metrics, 3 params, 2 tags), then times each search variant on it.
/// A failure ends the sequence but keeps the figures measured before it.
pub async fn search(cfg: &Config, base: &str, exp_name: &str) -> Vec<WorkloadResult> {
    let mut results = Vec::new();
    if let Err(e) = search_sizes(cfg, base, exp_name, &mut results).await {
        results.push(WorkloadResult::failed("search", &e));
    }
    results
}

async fn search_sizes(
    cfg: &Config,
    base: &str,
    exp_name: &str,
    results: &mut Vec<WorkloadResult>,
) -> Result<()> {
    let setup = new_client(cfg.timeout)?;
    let experiment_id = http::create_experiment(&setup, base, exp_name).await?;
    let mut sizes = cfg.search_runs.clone();
    sizes.sort_unstable();
    sizes.dedup();
    let mut have = 0;
    for n in sizes {
        let label = size_label(n);
        crate::phase(&format!("search: populating runs {have}..{n}"));
        let pop = populate(cfg, base, &experiment_id, have, n).await?;
        let failed = pop.errors > 0;
        results.push(pop);
        if failed {
            bail!("populating the search data set failed (see search_populate_{label})");
        }
        have = n;
        after_populate(cfg).await?;
        let matching = matching_runs(n);
        for &max_results in &cfg.search_max_results {
            let name = format!("search_{label}_{max_results}");
            crate::phase(&name);
            let r = search_variant(cfg, base, &setup, &experiment_id, n, matching, max_results)
                .await
                .unwrap_or_else(|e| WorkloadResult::failed(&name, &e));
            results.push(r);
        }
    }
    Ok(())
}

/// One measured search variant over the first `n` runs.
async fn search_variant(
    cfg: &Config,
    base: &str,
    setup: &Client,
    experiment_id: &str,
    n: usize,
    matching: usize,
    max_results: usize,
) -> Result<WorkloadResult> {
    let label = size_label(n);
    let query = json!({
        "experiment_ids": [experiment_id],
        "filter": "metrics.loss < 0.5",
        "order_by": ["metrics.acc DESC"],
        "max_results": max_results,
    });
    let expected = matching.min(max_results);
    // Fast-but-wrong must not pass: check row count, filter and order on
    // every response, and every run's full contents once, untimed.
    let validate: Validator = Arc::new(move |t: &Timed| {
        let v = t.json()?;
        let runs = v["runs"].as_array().map(Vec::as_slice).unwrap_or(&[]);
        if runs.len() != expected {
            return Err(format!("expected {expected} runs, got {}", runs.len()));
        }
        let mut prev = f64::INFINITY;
        for run in runs {
            let loss = metric_of(run, "loss").ok_or("run without metrics.loss")?;
            let acc = metric_of(run, "acc").ok_or("run without metrics.acc")?;
            if loss >= 0.5 {
                return Err(format!("filter violated: loss {loss}"));
            }
            if acc > prev {
                return Err("not ordered by metrics.acc DESC".into());
            }
            prev = acc;
        }
        Ok(())
    });
    let t0 = Instant::now();
    let first = http::setup_post(setup, base, "/runs/search", &query).await?;
    let first_took = t0.elapsed();
    let runs = first["runs"].as_array().map(Vec::as_slice).unwrap_or(&[]);
    for run in runs {
        SearchRun::check(run).map_err(|e| anyhow::anyhow!("populated data is wrong: {e}"))?;
    }
    let names: Vec<&str> = runs
        .iter()
        .filter_map(|r| r["info"]["run_name"].as_str())
        .collect();

    let body = query.to_string();
    // The checked request above already warmed the server up; more warm-up
    // only pays off when a search is quick enough to repeat many times.
    let warmup = if first_took.saturating_mul(10) > cfg.budget() {
        0
    } else {
        cfg.warmup.min(3)
    };
    let plan = ClientPlan {
        warmup: vec![body.clone(); warmup],
        measured: vec![body; cfg.search_iters],
    };
    let url = format!("{base}{API}/runs/search");
    let (rec, wall) = drive(cfg, &url, vec![plan], Some(validate)).await?;
    let mut r = WorkloadResult::new(
        format!("search_{label}_{max_results}"),
        format!(
            "POST runs/search over {n} runs, filter metrics.loss < 0.5, \
             order_by metrics.acc DESC, max_results {max_results}"
        ),
        1,
    );
    r.fill(rec, wall, None);
    r.extra.insert("runs".into(), json!(n));
    r.extra.insert("max_results".into(), json!(max_results));
    r.extra.insert("rows_per_request".into(), json!(expected));
    r.extra
        .insert("page_fingerprint".into(), json!(page_fingerprint(&names)));
    r.extra.insert(
        "page_head".into(),
        json!(names.iter().take(3).collect::<Vec<_>>()),
    );
    Ok(r)
}

/// Adds runs `start..end` to the search experiment, via the REST API or
/// `--search-populate-cmd`. A set-up result; errors are in it, not returned.
async fn populate(
    cfg: &Config,
    base: &str,
    experiment_id: &str,
    start: usize,
    end: usize,
) -> Result<WorkloadResult> {
    let started = Instant::now();
    let label = size_label(end);
    let (rec, how) = match &cfg.search_populate_cmd {
        Some(template) => {
            let mut vars = data_var(cfg);
            vars.extend([
                ("experiment_id", experiment_id.to_string()),
                ("start", start.to_string()),
                ("end", end.to_string()),
            ]);
            let mut rec = Recorder::default();
            match run_command("search-populate", template, vars).await {
                Ok(()) => rec.success(started.elapsed().as_secs_f64() * 1e3, None),
                Err(e) => rec.measured_error(format!("{e:#}")),
            }
            (rec, "--search-populate-cmd (direct database insert)")
        }
        None => (
            populate_rest(cfg, base, experiment_id, start, end).await?,
            "runs/create + runs/log-batch",
        ),
    };
    let mut pop = WorkloadResult::new(
        format!("search_populate_{label}"),
        format!("setup: runs {start}..{end} via {how} (2 metrics, 3 params, 2 tags + run name)"),
        cfg.populate_concurrency,
    );
    pop.setup = true;
    let wall = started.elapsed().as_secs_f64();
    pop.fill(rec, wall, None);
    pop.item = Some("runs");
    pop.items_per_s = Some((end - start) as f64 / wall.max(1e-9));
    pop.extra.insert("runs_added".into(), json!(end - start));
    Ok(pop)
}

/// Populates runs `start..end` through the REST API with concurrent clients.
async fn populate_rest(
    cfg: &Config,
    base: &str,
    experiment_id: &str,
    start: usize,
    end: usize,
) -> Result<Recorder> {
    let next = Arc::new(AtomicUsize::new(start));
    let mut tasks = Vec::new();
    for _ in 0..cfg.populate_concurrency.max(1) {
        let client = new_client(cfg.timeout)?;
        let next = next.clone();
        let (base, exp) = (base.to_string(), experiment_id.to_string());
        tasks.push(tokio::spawn(async move {
            let mut rec = Recorder::default();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= end {
                    break;
                }
                let t = Instant::now();
                match populate_one(&client, &base, &exp, i).await {
                    Ok(()) => rec.success(t.elapsed().as_secs_f64() * 1e3, None),
                    Err(e) => rec.measured_error(format!("run {i}: {e:#}")),
                }
            }
            rec
        }));
    }
    let mut rec = Recorder::default();
    for t in tasks {
        rec.merge(t.await.context("populate task panicked")?);
    }
    Ok(rec)
}

/// Creates run `i` of the search data set through the REST API.
async fn populate_one(client: &Client, base: &str, exp: &str, i: usize) -> Result<()> {
    let run = SearchRun::new(i);
    let tags: Vec<Value> = run
        .tags
        .iter()
        .map(|(k, v)| json!({ "key": k, "value": v }))
        .collect();
    let create = json!({
        "experiment_id": exp,
        "start_time": now_ms(),
        "run_name": run.name,
        "tags": tags,
    });
    let v = http::setup_post(client, base, "/runs/create", &create).await?;
    let run_id = http::run_id_of(&v).context("runs/create: no run id")?;
    let ts = now_ms();
    let params: Vec<Value> = run
        .params
        .iter()
        .map(|(k, v)| json!({ "key": k, "value": v }))
        .collect();
    let batch = json!({
        "run_id": run_id,
        "metrics": [
            { "key": "loss", "value": run.loss, "timestamp": ts, "step": 0 },
            { "key": "acc", "value": run.acc, "timestamp": ts, "step": 0 },
        ],
        "params": params,
    });
    http::setup_post(client, base, "/runs/log-batch", &batch).await?;
    Ok(())
}

/// The one metric key of the history run.
const HISTORY_KEY: &str = "hist";

/// What one complete (possibly paged) metric-history fetch returned.
struct Fetch {
    /// Sum of the page requests' latencies (JSON parsing between pages excluded).
    ms: f64,
    /// Sum of the pages' Server-Timing, if every page carried one.
    server_ms: Option<f64>,
    pages: usize,
    points: usize,
    distinct_steps: usize,
    largest_page: usize,
}

async fn fetch_history(
    client: &Client,
    base: &str,
    run_id: &str,
    key: &str,
    page_size: Option<usize>,
    max_pages: usize,
) -> Result<Fetch, String> {
    let endpoint = format!("{base}{API}/metrics/get-history");
    let mut f = Fetch {
        ms: 0.0,
        server_ms: Some(0.0),
        pages: 0,
        points: 0,
        distinct_steps: 0,
        largest_page: 0,
    };
    let mut steps: Vec<i64> = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let mut params = vec![
            ("run_id", run_id.to_string()),
            ("metric_key", key.to_string()),
        ];
        if let Some(n) = page_size {
            params.push(("max_results", n.to_string()));
        }
        if let Some(t) = &token {
            params.push(("page_token", t.clone()));
        }
        let url = Url::parse_with_params(&endpoint, &params).map_err(|e| e.to_string())?;
        let req = client.get(url).build().map_err(|e| e.to_string())?;
        let t = timed(client, req).await?;
        t.check_ok()?;
        f.ms += t.elapsed_ms;
        f.server_ms = f.server_ms.zip(t.server_ms).map(|(a, b)| a + b);
        f.pages += 1;
        let v = t.json()?;
        let page = v["metrics"].as_array().map(Vec::as_slice).unwrap_or(&[]);
        f.points += page.len();
        f.largest_page = f.largest_page.max(page.len());
        steps.extend(page.iter().filter_map(|m| m["step"].as_i64()));
        token = v["next_page_token"]
            .as_str()
            .filter(|s| !s.is_empty())
            .map(str::to_string);
        if token.is_none() {
            break;
        }
        if f.pages >= max_pages {
            return Err(format!("still paging after {max_pages} pages"));
        }
    }
    steps.sort_unstable();
    steps.dedup();
    f.distinct_steps = steps.len();
    Ok(f)
}

/// Logs `cfg.history_points` points of one key, then times full fetches.
pub async fn history(cfg: &Config, base: &str, experiment_id: &str) -> Result<Vec<WorkloadResult>> {
    let client = new_client(cfg.timeout)?;
    let run_id = http::create_run(&client, base, experiment_id).await?;
    let n = cfg.history_points;

    // --- populate (setup): sequential batches, one key, unique steps ---
    let url = format!("{base}{API}/runs/log-batch");
    let ts = now_ms();
    let mut rec = Recorder::default();
    let started = Instant::now();
    for chunk_start in (0..n).step_by(BATCH) {
        let metrics: Vec<Value> = (chunk_start..(chunk_start + BATCH).min(n))
            .map(|j| json!({ "key": HISTORY_KEY, "value": j as f64 * 0.5, "timestamp": ts + j as i64, "step": j }))
            .collect();
        let body = json!({ "run_id": run_id, "metrics": metrics }).to_string();
        match one(&client, &url, body, None).await {
            Ok(t) => rec.success(t.elapsed_ms, t.server_ms),
            Err(e) => rec.measured_error(format!("batch at {chunk_start}: {e}")),
        }
    }
    let mut pop = WorkloadResult::new(
        "history_populate",
        format!("setup: {n} points of one key via runs/log-batch"),
        1,
    );
    pop.setup = true;
    pop.fill(
        rec,
        started.elapsed().as_secs_f64(),
        Some(("metrics", BATCH as f64)),
    );
    let failed = pop.errors > 0;
    let mut results = vec![pop];
    if failed {
        return Ok(results);
    }
    after_populate(cfg).await?;

    let variants = [
        ("history_paged", Some(cfg.history_page_size)),
        ("history_unpaged", None),
    ];
    for (name, page_size) in variants {
        let (base, run_id) = (base.to_string(), run_id.clone());
        let (warmup, iters, timeout) = (cfg.warmup.min(1), cfg.history_iters, cfg.timeout);
        let budget = cfg.budget();
        // Measured on its own thread + runtime, like every timed client.
        let (rec, wall, last) = tokio::task::spawn_blocking(move || {
            let rt = client_runtime()?;
            let client = {
                let _in_rt = rt.enter();
                new_client(timeout)?
            };
            Ok::<_, anyhow::Error>(rt.block_on(history_fetches(
                &client, &base, &run_id, page_size, n, warmup, iters, budget,
            )))
        })
        .await
        .context("history client thread panicked")??;
        let desc = match page_size {
            Some(p) => format!("GET metrics/get-history, {n} points, max_results={p}, all pages"),
            None => format!("GET metrics/get-history, {n} points, no max_results"),
        };
        let mut r = WorkloadResult::new(name, desc, 1);
        r.fill(rec, wall.as_secs_f64(), None);
        // Points/s from the median full fetch, the figure that matters here.
        if let Some(p) = &r.latency_ms {
            r.item = Some("points");
            r.items_per_s = Some(n as f64 / (p.p50 / 1e3));
        }
        r.extra.insert("expected_points".into(), json!(n));
        if let Some(f) = last {
            r.extra.insert("points_received".into(), json!(f.points));
            r.extra.insert("pages".into(), json!(f.pages));
            r.extra.insert("largest_page".into(), json!(f.largest_page));
        }
        results.push(r);
    }
    Ok(results)
}

/// `warmup` + `iters` full fetches of the history (fewer once the measured
/// ones exceed `budget`); returns the recorder, the measured wall time and the
/// last successful fetch.
#[allow(clippy::too_many_arguments)]
async fn history_fetches(
    client: &Client,
    base: &str,
    run_id: &str,
    page_size: Option<usize>,
    n: usize,
    warmup: usize,
    iters: usize,
    budget: Duration,
) -> (Recorder, Duration, Option<Fetch>) {
    let max_pages = n / page_size.unwrap_or(BATCH).max(1) + 10;
    let mut rec = Recorder {
        planned: iters as u64,
        ..Recorder::default()
    };
    let mut last: Option<Fetch> = None;
    let mut wall = Duration::ZERO;
    for iter in 0..warmup + iters {
        let measured = iter >= warmup;
        if measured && over_budget(iter - warmup, wall, budget) {
            break;
        }
        let t0 = Instant::now();
        let outcome = fetch_history(client, base, run_id, HISTORY_KEY, page_size, max_pages).await;
        if measured {
            wall += t0.elapsed();
        }
        // A wrong point count is as much an error as a failed request.
        let outcome = outcome.and_then(|f| {
            if f.points == n && f.distinct_steps == n {
                Ok(f)
            } else {
                Err(format!(
                    "received {} points ({} distinct steps) in {} page(s), expected {n}",
                    f.points, f.distinct_steps, f.pages
                ))
            }
        });
        match (measured, outcome) {
            (true, Ok(f)) => {
                rec.success(f.ms, f.server_ms);
                last = Some(f);
            }
            (false, Ok(f)) => last = Some(f),
            (true, Err(e)) => rec.measured_error(e),
            (false, Err(e)) => rec.error(format!("(warm-up) {e}")),
        }
    }
    (rec, wall, last)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_batch_entries_are_unique() {
        let body = log_batch_body("r", 3, 0);
        let v: Value = serde_json::from_str(&body).unwrap_or_default();
        let metrics = v["metrics"].as_array().cloned().unwrap_or_default();
        assert_eq!(metrics.len(), BATCH);
        let mut keys: Vec<(String, i64)> = metrics
            .iter()
            .map(|m| (m["key"].to_string(), m["step"].as_i64().unwrap_or(-1)))
            .collect();
        keys.sort();
        keys.dedup();
        assert_eq!(keys.len(), BATCH, "every (key, step) pair must be unique");
    }

    #[test]
    fn search_runs_match_the_python_populator() {
        // Values printed by scripts/bench_populate_mlflow.py's unit_rand and
        // f-strings: the MLflow data set is loaded by that script, so the two
        // must agree bit for bit.
        assert_eq!(unit_rand(0), 0.8833108082136426);
        assert_eq!(unit_rand(1), 0.5665615751722809);
        assert_eq!(unit_rand(12345), 0.1330796686614273);
        let r = SearchRun::new(2);
        assert_eq!(r.params[0].1, "0.0030");
        assert_eq!(r.params[1].1, "64");
        assert_eq!(r.params[2].1, "adamw");
        assert_eq!(SearchRun::new(6).params[0].1, "0.0070");
        assert_eq!(r.tags[0].1, "f2");
        assert_eq!(size_label(100_000), "100k");
        assert_eq!(size_label(1500), "1500");
    }

    #[test]
    fn populated_runs_pass_their_own_check() {
        let r = SearchRun::new(9);
        let tags: Vec<Value> = r
            .tags
            .iter()
            .chain(std::iter::once(&("mlflow.runName", r.name.clone())))
            .map(|(k, v)| json!({"key": k, "value": v}))
            .collect();
        let params: Vec<Value> = r
            .params
            .iter()
            .map(|(k, v)| json!({"key": k, "value": v}))
            .collect();
        let mut run = json!({
            "info": {"run_name": r.name},
            "data": {"tags": tags, "params": params, "metrics": [
                {"key": "loss", "value": r.loss}, {"key": "acc", "value": r.acc}]},
        });
        assert_eq!(SearchRun::check(&run), Ok(()));
        run["data"]["metrics"][0]["value"] = json!(0.123);
        assert!(SearchRun::check(&run).is_err());
    }

    #[test]
    fn budget_rules() {
        let b = Duration::from_secs(30);
        assert!(!over_budget(100, Duration::from_secs(29), b));
        assert!(!over_budget(4, Duration::from_secs(31), b));
        assert!(over_budget(5, Duration::from_secs(31), b));
        assert!(over_budget(1, Duration::from_secs(121), b));
        assert!(!over_budget(0, Duration::from_secs(500), b));
    }

    #[test]
    fn unit_rand_in_range() {
        let below = (0..10_000).filter(|i| unit_rand(*i) < 0.5).count();
        assert!((4_500..5_500).contains(&below));
        assert!((0..1000).all(|i| (0.0..1.0).contains(&unit_rand(i))));
    }
}
