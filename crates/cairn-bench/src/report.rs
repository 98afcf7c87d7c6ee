//! The JSON document and the human-readable table.

use serde::Serialize;

use crate::procfs::MemSnapshot;
use crate::workloads::{Config, WorkloadResult};

#[derive(Debug, Serialize)]
pub struct Report {
    pub tool: &'static str,
    pub tool_version: &'static str,
    /// Free-form name of the server under test (`--label`), e.g. "cairn".
    pub label: String,
    /// Unix time (ms) the bench started.
    pub started_at_ms: i64,
    pub target: Target,
    pub host: Host,
    pub config: Config,
    /// Absent with `--url` (we did not start the server, so cannot time or weigh it).
    pub server: Option<ServerFigures>,
    pub workloads: Vec<WorkloadResult>,
    /// Errors over all workloads, setup phases included; non-zero fails the run.
    pub total_errors: u64,
}

#[derive(Debug, Serialize)]
pub struct Target {
    /// "spawn" (we started it) or "url" (attached to a running server).
    pub mode: &'static str,
    pub server_cmd: Option<String>,
    pub url: String,
}

#[derive(Debug, Serialize)]
pub struct Host {
    pub cpus: usize,
    pub os: &'static str,
}

#[derive(Debug, Default, Serialize)]
pub struct ServerFigures {
    pub start_to_healthy_ms: f64,
    pub idle: MemSnapshot,
    /// Tree memory right after the last workload.
    pub loaded: MemSnapshot,
    /// The largest tree memory seen, field by field: sampled every 250 ms
    /// during the workloads, and `loaded` if that is larger.
    pub peak_sampled: MemSnapshot,
    pub shutdown_ms: f64,
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

fn ms(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

fn rate(v: f64) -> String {
    if v >= 1e6 {
        format!("{:.2}M", v / 1e6)
    } else if v >= 1e4 {
        format!("{:.1}k", v / 1e3)
    } else {
        format!("{v:.1}")
    }
}

impl Report {
    pub fn print_table(&self) {
        println!();
        println!(
            "cairn-bench {} — {} ({}), {} CPU(s)",
            self.tool_version, self.label, self.target.url, self.host.cpus
        );
        if let Some(s) = &self.server {
            println!("  start-to-healthy   {:>10.1} ms", s.start_to_healthy_ms);
            for (name, m) in [
                ("idle memory", &s.idle),
                ("loaded memory", &s.loaded),
                ("peak memory", &s.peak_sampled),
            ] {
                println!(
                    "  {name:<18} RSS {:>11}  PSS {:>11}  ({} process{})",
                    mib(m.rss_kib),
                    mib(m.pss_kib),
                    m.processes,
                    if m.processes == 1 { "" } else { "es" }
                );
            }
            println!(
                "  {:<18} {:>11} (sum of per-process VmHWM, an upper bound)",
                "peak VmHWM sum",
                mib(s.loaded.hwm_sum_kib)
            );
            println!("  shutdown           {:>10.1} ms", s.shutdown_ms);
        }
        println!();
        println!(
            "{:<20} {:>3} {:>6} {:>5} {:>9} {:>9} {:>9} {:>9} {:>17} {:>11}",
            "workload",
            "cli",
            "reqs",
            "errs",
            "p50 ms",
            "p90 ms",
            "p99 ms",
            "req/s",
            "items/s",
            "srv p50 ms"
        );
        for w in &self.workloads {
            let (p50, p90, p99) = w
                .latency_ms
                .map(|p| (ms(p.p50), ms(p.p90), ms(p.p99)))
                .unwrap_or_else(|| ("-".into(), "-".into(), "-".into()));
            let items = match (w.items_per_s, w.item) {
                (Some(v), Some(unit)) => format!("{} {unit}", rate(v)),
                _ => "-".into(),
            };
            let srv = w.server_ms.map(|p| ms(p.p50)).unwrap_or_else(|| "-".into());
            let name = if w.setup {
                format!("({})", w.name)
            } else {
                w.name.clone()
            };
            println!(
                "{name:<20} {:>3} {:>6} {:>5} {p50:>9} {p90:>9} {p99:>9} {:>9} {items:>17} {srv:>11}",
                w.clients,
                w.requests,
                w.errors,
                rate(w.req_per_s)
            );
        }
        println!("(parenthesised rows are data set-up, not benchmark figures)");
        for w in self.workloads.iter().filter(|w| w.planned > w.requests) {
            println!(
                "  {}: time budget reached after {} of {} planned requests",
                w.name, w.requests, w.planned
            );
        }
        for w in self.workloads.iter().filter(|w| !w.extra.is_empty()) {
            let extras: Vec<String> = w.extra.iter().map(|(k, v)| format!("{k}={v}")).collect();
            println!("  {}: {}", w.name, extras.join(" "));
        }
        let failing: Vec<&WorkloadResult> =
            self.workloads.iter().filter(|w| w.errors > 0).collect();
        if !failing.is_empty() {
            println!();
            println!("ERRORS ({} total):", self.total_errors);
            for w in failing {
                println!("  {} — {} error(s):", w.name, w.errors);
                for e in &w.error_samples {
                    println!("    {e}");
                }
            }
        }
        println!();
    }
}
