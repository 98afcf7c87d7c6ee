//! `cairn-load`: closed-loop HTTP load against one URL with one fixed request body.
//!
//! C clients, each with its own keep-alive connection, send the same request back to
//! back for a warm-up period and then for the measured duration. Prints one JSON object:
//! requests, errors, req/s, and latency percentiles in microseconds. Used by
//! `scripts/bench_serving.py` against both `cairn serve` and `mlflow models serve`, so
//! both are driven by the same client.

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Parser;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};

#[derive(Parser, Debug)]
#[command(name = "cairn-load")]
struct Args {
    /// URL to POST to.
    #[arg(long)]
    url: String,
    /// File holding the request body (POST); without it, GET.
    #[arg(long)]
    body: Option<std::path::PathBuf>,
    /// Extra header, `Name: value` (repeatable).
    #[arg(long = "header")]
    headers: Vec<String>,
    /// Concurrent clients (connections).
    #[arg(long, default_value_t = 1)]
    concurrency: usize,
    /// Measured time.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// Unmeasured time before it.
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    warmup: Duration,
}

#[derive(Default)]
struct Tally {
    latencies_us: Vec<f64>,
    errors: u64,
    first_error: Option<String>,
}

async fn client_loop(
    client: reqwest::Client,
    url: String,
    body: Option<bytes::Bytes>,
    headers: HeaderMap,
    measure_from: Instant,
    stop_at: Instant,
) -> Tally {
    let mut tally = Tally::default();
    loop {
        let start = Instant::now();
        if start >= stop_at {
            break;
        }
        let request = match &body {
            Some(body) => client.post(&url).body(body.clone()),
            None => client.get(&url),
        };
        let result = request.headers(headers.clone()).send().await;
        let outcome = match result {
            Ok(resp) => {
                let status = resp.status();
                match resp.bytes().await {
                    Ok(_) if status.is_success() => Ok(()),
                    Ok(b) => Err(format!(
                        "HTTP {status}: {}",
                        String::from_utf8_lossy(&b[..b.len().min(200)])
                    )),
                    Err(e) => Err(e.to_string()),
                }
            }
            Err(e) => Err(e.to_string()),
        };
        if start < measure_from {
            continue;
        }
        match outcome {
            Ok(()) => tally.latencies_us.push(start.elapsed().as_secs_f64() * 1e6),
            Err(e) => {
                tally.errors += 1;
                tally.first_error.get_or_insert(e);
            }
        }
    }
    tally
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

fn main() -> Result<()> {
    let args = Args::parse();
    // One client thread per connection, up to the CPU count: a single client then never
    // pays for waking a second runtime thread, which would inflate every latency.
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.concurrency.clamp(1, cpus))
        .enable_all()
        .build()?;
    runtime.block_on(run(args))
}

async fn run(args: Args) -> Result<()> {
    if args.concurrency == 0 {
        bail!("--concurrency must be at least 1");
    }
    let body = match &args.body {
        Some(path) => Some(bytes::Bytes::from(
            std::fs::read(path).with_context(|| format!("reading {}", path.display()))?,
        )),
        None => None,
    };
    let mut headers = HeaderMap::new();
    for h in &args.headers {
        let (k, v) = h
            .split_once(':')
            .with_context(|| format!("--header {h}: expected 'Name: value'"))?;
        headers.insert(
            HeaderName::from_bytes(k.trim().as_bytes())?,
            HeaderValue::from_str(v.trim())?,
        );
    }
    let start = Instant::now();
    let measure_from = start + args.warmup;
    let stop_at = measure_from + args.duration;
    let mut tasks = Vec::new();
    for _ in 0..args.concurrency {
        let client = reqwest::Client::builder()
            .http1_only()
            .tcp_nodelay(true)
            .no_proxy()
            .pool_max_idle_per_host(1)
            .timeout(Duration::from_secs(60))
            .build()?;
        tasks.push(tokio::spawn(client_loop(
            client,
            args.url.clone(),
            body.clone(),
            headers.clone(),
            measure_from,
            stop_at,
        )));
    }
    let mut all = Tally::default();
    for t in tasks {
        let t = t.await?;
        all.latencies_us.extend(t.latencies_us);
        all.errors += t.errors;
        if all.first_error.is_none() {
            all.first_error = t.first_error;
        }
    }
    all.latencies_us.sort_by(f64::total_cmp);
    let n = all.latencies_us.len();
    let out = serde_json::json!({
        "concurrency": args.concurrency,
        "requests": n,
        "errors": all.errors,
        "first_error": all.first_error,
        "rps": n as f64 / args.duration.as_secs_f64(),
        "p50_us": percentile(&all.latencies_us, 50.0),
        "p90_us": percentile(&all.latencies_us, 90.0),
        "p99_us": percentile(&all.latencies_us, 99.0),
        "max_us": all.latencies_us.last().copied().unwrap_or(f64::NAN),
    });
    println!("{out}");
    Ok(())
}
