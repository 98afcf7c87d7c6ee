//! `cairn-bench`: starts (or attaches to) an MLflow-compatible tracking server
//! and measures start-up time, memory and the latency/throughput of the hot
//! REST endpoints, so Cairn and stock MLflow can be compared like for like.

mod http;
mod procfs;
mod report;
mod server;
mod stats;
mod workloads;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::{Parser, ValueEnum};

use report::{Host, Report, ServerFigures, Target};
use server::{PeakSampler, Server};
use workloads::{Config, WorkloadResult};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Workload {
    LogBatch,
    Create,
    Search,
    History,
}

/// Benchmark an MLflow-compatible tracking server over its REST API.
///
/// Count flags left unset take the full defaults (about 2-3 minutes against a
/// fast server) or, with --quick, smoke-test values that finish in seconds.
#[derive(Debug, Parser)]
// args_override_self: a repeated flag takes its last value, so wrapper scripts
// can pass defaults that users override by appending their own.
#[command(name = "cairn-bench", version, args_override_self = true)]
struct Args {
    /// Command line that starts the server; `{port}` and `{data}` (a fresh
    /// temp dir, also the cwd) are substituted. Run via `sh -c 'exec ...'`.
    #[arg(long, conflicts_with = "url", required_unless_present = "url")]
    server_cmd: Option<String>,

    /// Base URL of an already running server (start-up and memory are skipped).
    #[arg(long)]
    url: Option<String>,

    /// Write all figures as JSON to this path.
    #[arg(long)]
    json: Option<PathBuf>,

    /// Name of the server under test, recorded in the output (e.g. cairn, mlflow).
    #[arg(long, default_value = "server")]
    label: String,

    /// Smoke-test counts (seconds, not minutes) for count flags left unset.
    #[arg(long)]
    quick: bool,

    /// Workloads to run, comma-separated.
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = [Workload::LogBatch, Workload::Create, Workload::Search, Workload::History])]
    workloads: Vec<Workload>,

    /// Concurrent clients for the concurrent variants.
    #[arg(long, default_value_t = 16)]
    clients: usize,

    /// Measured log-batch requests, single client [default: 200, quick 20].
    #[arg(long)]
    log_batch_requests: Option<usize>,

    /// Measured log-batch requests per client, concurrent variant [default: 50, quick 3].
    #[arg(long)]
    log_batch_per_client: Option<usize>,

    /// Measured run creations per variant (split across clients when concurrent)
    /// [default: 500, quick 48].
    #[arg(long)]
    creates: Option<usize>,

    /// Search data-set sizes, comma-separated; each size grows the previous
    /// data set and is searched in turn [default: 10000,100000, quick 300,2000].
    #[arg(long, value_delimiter = ',')]
    search_runs: Vec<usize>,

    /// max_results of each measured search variant, comma-separated.
    #[arg(long, value_delimiter = ',', default_values_t = [100])]
    search_max_results: Vec<usize>,

    /// Measured searches per variant [default: 50, quick 5].
    #[arg(long)]
    search_iters: Option<usize>,

    /// Populate the search data set with this command instead of the REST API
    /// (for servers whose API is too slow to load 100k runs). `{data}`,
    /// `{experiment_id}`, `{start}` and `{end}` are substituted; it must add
    /// runs start..end exactly as populating through the API would.
    #[arg(long)]
    search_populate_cmd: Option<String>,

    /// Command run (untimed) after each data set-up phase, e.g. ANALYZE on
    /// PostgreSQL; `{data}` is substituted.
    #[arg(long)]
    after_populate_cmd: Option<String>,

    /// Seconds after which a measured phase stops issuing requests (each client
    /// still makes at least 5, or 1 once 4 budgets have passed), so a slow
    /// server finishes in bounded time [default: 30, quick 10].
    #[arg(long)]
    phase_budget_s: Option<f64>,

    /// Points in the metric-history run [default: 100000, quick 10000].
    #[arg(long)]
    history_points: Option<usize>,

    /// max_results per get-history page in the paged variant [default: 25000,
    /// quick 2500, so that quick runs still page].
    #[arg(long)]
    history_page_size: Option<usize>,

    /// Measured full history fetches per variant [default: 10, quick 2].
    #[arg(long)]
    history_iters: Option<usize>,

    /// Warm-up requests per client before each measured phase [default: 5, quick 2].
    #[arg(long)]
    warmup: Option<usize>,

    /// Concurrent clients used to populate the search data set (untimed).
    /// Kept below 15, stock MLflow's default SQLAlchemy pool (5 + 10 overflow).
    #[arg(long, default_value_t = 8)]
    populate_concurrency: usize,

    /// Per-request timeout in seconds; a timed-out request counts as an error.
    /// Generous: stock MLflow has been seen taking minutes for one search.
    #[arg(long, default_value_t = 600)]
    request_timeout_s: u64,

    /// Give up if the server is not healthy within this many seconds.
    #[arg(long, default_value_t = 180)]
    start_timeout_s: u64,

    /// Idle time after becoming healthy before idle memory is read.
    #[arg(long, default_value_t = 1.0)]
    idle_s: f64,

    /// Keep the server's temp data dir (and its server.log) afterwards.
    #[arg(long)]
    keep_data: bool,
}

impl Args {
    fn config(&self) -> Result<Config> {
        let q = self.quick;
        let pick =
            |v: Option<usize>, full: usize, quick: usize| v.unwrap_or(if q { quick } else { full });
        let cfg = Config {
            clients: self.clients,
            log_batch_requests: pick(self.log_batch_requests, 200, 20),
            log_batch_per_client: pick(self.log_batch_per_client, 50, 3),
            creates: pick(self.creates, 500, 48),
            search_runs: if self.search_runs.is_empty() {
                if q {
                    vec![300, 2_000]
                } else {
                    vec![10_000, 100_000]
                }
            } else {
                self.search_runs.clone()
            },
            search_max_results: self.search_max_results.clone(),
            search_iters: pick(self.search_iters, 50, 5),
            history_points: pick(self.history_points, 100_000, 10_000),
            history_page_size: pick(self.history_page_size, 25_000, 2_500),
            history_iters: pick(self.history_iters, 10, 2),
            warmup: pick(self.warmup, 5, 2),
            populate_concurrency: self.populate_concurrency,
            phase_budget_s: self.phase_budget_s.unwrap_or(if q { 10.0 } else { 30.0 }),
            search_populate_cmd: self.search_populate_cmd.clone(),
            after_populate_cmd: self.after_populate_cmd.clone(),
            timeout: Duration::from_secs(self.request_timeout_s),
            data_dir: None,
        };
        if cfg.clients == 0 || cfg.history_page_size == 0 || cfg.populate_concurrency == 0 {
            bail!("--clients, --history-page-size and --populate-concurrency must be > 0");
        }
        if cfg.search_runs.contains(&0) || cfg.search_max_results.contains(&0) {
            bail!("--search-runs and --search-max-results must be > 0");
        }
        if cfg.phase_budget_s.is_nan() || cfg.phase_budget_s <= 0.0 {
            bail!("--phase-budget-s must be > 0");
        }
        Ok(cfg)
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    match run(Args::parse()).await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("cairn-bench: error: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// Returns Ok(false) when the benchmark ran but some workload had errors.
async fn run(args: Args) -> Result<bool> {
    let mut cfg = args.config()?;
    let started_at_ms = http::now_ms();

    // Start (or attach to) the server.
    let mut spawned: Option<(Server, ServerFigures)> = None;
    let base = if let Some(cmd) = &args.server_cmd {
        let (mut srv, t0) = Server::spawn(cmd, args.keep_data)?;
        let healthy = srv
            .wait_healthy(t0, Duration::from_secs(args.start_timeout_s))
            .await
            .context("server failed to start")?;
        eprintln!(
            "[bench] healthy after {:.1} ms",
            healthy.as_secs_f64() * 1e3
        );
        tokio::time::sleep(Duration::from_secs_f64(args.idle_s)).await;
        let figures = ServerFigures {
            start_to_healthy_ms: healthy.as_secs_f64() * 1e3,
            idle: srv.memory(),
            ..ServerFigures::default()
        };
        let base = srv.base_url.clone();
        cfg.data_dir = Some(srv.data_dir.clone());
        spawned = Some((srv, figures));
        base
    } else {
        let url = args
            .url
            .clone()
            .context("--url or --server-cmd is required")?;
        let url = url.trim_end_matches('/').to_string();
        check_health(&url, cfg.timeout).await?;
        url
    };

    let sampler = spawned
        .as_ref()
        .map(|(srv, _)| PeakSampler::start(srv.pid(), srv.pgid()));

    // Ctrl-C still reaches the clean-up below, so the server never outlives us.
    let results = tokio::select! {
        r = run_workloads(&cfg, &base, &args.workloads, started_at_ms) => r,
        _ = tokio::signal::ctrl_c() => Err(anyhow::anyhow!("interrupted")),
    };

    let server = match spawned {
        Some((mut srv, mut figures)) => {
            figures.loaded = srv.memory();
            if let Some(s) = sampler {
                figures.peak_sampled = s.finish();
            }
            // The last sample may predate the final workload's growth.
            figures.peak_sampled = figures.peak_sampled.max(&figures.loaded);
            figures.shutdown_ms = srv.stop()?.as_secs_f64() * 1e3;
            if args.keep_data {
                eprintln!("[bench] data dir kept: {}", srv.data_dir.display());
            }
            if results.is_err() {
                eprintln!(
                    "[bench] server log tail:\n{}",
                    server::log_tail(&srv.log_path)
                );
            }
            Some(figures)
        }
        None => None,
    };
    let workloads = results?;

    let total_errors = workloads.iter().map(|w| w.errors).sum();
    let report = Report {
        tool: "cairn-bench",
        tool_version: env!("CARGO_PKG_VERSION"),
        label: args.label.clone(),
        started_at_ms,
        target: Target {
            mode: if args.server_cmd.is_some() {
                "spawn"
            } else {
                "url"
            },
            server_cmd: args.server_cmd.clone(),
            url: base,
        },
        host: Host {
            cpus: std::thread::available_parallelism().map_or(0, |n| n.get()),
            os: std::env::consts::OS,
        },
        config: cfg,
        server,
        workloads,
        total_errors,
    };
    report.print_table();
    if let Some(path) = &args.json {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let text = serde_json::to_string_pretty(&report)?;
        std::fs::write(path, text + "\n").with_context(|| format!("writing {}", path.display()))?;
        eprintln!("[bench] wrote {}", path.display());
    }
    if total_errors > 0 {
        eprintln!("cairn-bench: {total_errors} error(s); see the ERRORS section above");
    }
    Ok(total_errors == 0)
}

async fn check_health(base: &str, timeout: Duration) -> Result<()> {
    let client = http::new_client(timeout)?;
    let resp = client
        .get(format!("{base}/health"))
        .send()
        .await
        .with_context(|| format!("GET {base}/health"))?;
    if !resp.status().is_success() {
        bail!("GET {base}/health -> HTTP {}", resp.status());
    }
    Ok(())
}

/// Runs the selected workloads in a fixed order. A workload whose set-up fails
/// becomes a result with one error instead of aborting the others.
async fn run_workloads(
    cfg: &Config,
    base: &str,
    selected: &[Workload],
    started_at_ms: i64,
) -> Result<Vec<WorkloadResult>> {
    let setup = http::new_client(cfg.timeout)?;
    // A unique name, so re-running against the same --url server works.
    let exp_name = format!("cairn-bench-{started_at_ms}");
    let experiment_id = http::create_experiment(&setup, base, &exp_name)
        .await
        .context("creating the benchmark experiment")?;
    let mut out = Vec::new();
    let wants = |w: Workload| selected.contains(&w);
    // Single-client and concurrent variants (just one if --clients 1).
    let client_counts: Vec<usize> = if cfg.clients > 1 {
        vec![1, cfg.clients]
    } else {
        vec![1]
    };

    if wants(Workload::LogBatch) {
        for &clients in &client_counts {
            let per_client = if clients == 1 {
                cfg.log_batch_requests
            } else {
                cfg.log_batch_per_client
            };
            let name = format!("log_batch_{clients}c");
            phase(&name);
            let r = workloads::log_batch(cfg, base, &experiment_id, clients, per_client).await;
            out.push(r.unwrap_or_else(|e| WorkloadResult::failed(&name, &e)));
        }
    }
    if wants(Workload::Create) {
        for &clients in &client_counts {
            let name = format!("run_create_{clients}c");
            phase(&name);
            let r = workloads::run_create(cfg, base, &experiment_id, clients, cfg.creates).await;
            out.push(r.unwrap_or_else(|e| WorkloadResult::failed(&name, &e)));
        }
    }
    if wants(Workload::Search) {
        phase("search");
        out.extend(workloads::search(cfg, base, &format!("{exp_name}-search")).await);
    }
    if wants(Workload::History) {
        phase("history");
        match workloads::history(cfg, base, &experiment_id).await {
            Ok(rs) => out.extend(rs),
            Err(e) => out.push(WorkloadResult::failed("history", &e)),
        }
    }
    Ok(out)
}

/// Progress on stderr so stdout stays the clean table.
pub(crate) fn phase(name: &str) {
    static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    let t = START.get_or_init(Instant::now).elapsed().as_secs_f64();
    eprintln!("[bench] +{t:6.1}s {name}");
}
