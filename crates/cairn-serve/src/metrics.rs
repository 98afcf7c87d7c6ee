//! Prometheus metrics, per model and version.
//!
//! Handles for a model version are created once when it loads and kept with it, so the
//! request path updates atomics without looking labels up.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VersionLabels {
    model: String,
    version: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    model: String,
    version: String,
    protocol: String,
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LoadLabels {
    model: String,
    outcome: String,
}

fn latency_histogram() -> Histogram {
    // 25 µs .. ~13 s
    Histogram::new(exponential_buckets(0.000_025, 2.0, 20))
}

fn rows_histogram() -> Histogram {
    // 1 .. 32768 rows
    Histogram::new(exponential_buckets(1.0, 2.0, 16))
}

/// All serving metrics; cheap to clone.
#[derive(Clone)]
pub struct Metrics {
    registry: Arc<Mutex<Registry>>,
    requests: Family<OutcomeLabels, Counter>,
    latency: Family<VersionLabels, Histogram, fn() -> Histogram>,
    queue: Family<VersionLabels, Histogram, fn() -> Histogram>,
    compute: Family<VersionLabels, Histogram, fn() -> Histogram>,
    batch_rows: Family<VersionLabels, Histogram, fn() -> Histogram>,
    ready: Family<VersionLabels, Gauge>,
    loads: Family<LoadLabels, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Registers every metric in a fresh registry.
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("cairn");
        let requests = Family::<OutcomeLabels, Counter>::default();
        let latency = Family::new_with_constructor(latency_histogram as fn() -> Histogram);
        let queue = Family::new_with_constructor(latency_histogram as fn() -> Histogram);
        let compute = Family::new_with_constructor(latency_histogram as fn() -> Histogram);
        let batch_rows = Family::new_with_constructor(rows_histogram as fn() -> Histogram);
        let ready = Family::<VersionLabels, Gauge>::default();
        let loads = Family::<LoadLabels, Counter>::default();
        registry.register(
            "inference_requests",
            "Inference requests by model, version, protocol and outcome",
            requests.clone(),
        );
        registry.register(
            "inference_request_duration_seconds",
            "Time from request decoded to response encoded",
            latency.clone(),
        );
        registry.register(
            "inference_queue_duration_seconds",
            "Time a request waited in the batching queue",
            queue.clone(),
        );
        registry.register(
            "inference_compute_duration_seconds",
            "Time of one engine call (one batch)",
            compute.clone(),
        );
        registry.register(
            "inference_batch_rows",
            "Rows per engine call",
            batch_rows.clone(),
        );
        registry.register(
            "model_ready",
            "1 while this model version serves requests",
            ready.clone(),
        );
        registry.register(
            "model_loads",
            "Model load attempts by outcome",
            loads.clone(),
        );
        Metrics {
            registry: Arc::new(Mutex::new(registry)),
            requests,
            latency,
            queue,
            compute,
            batch_rows,
            ready,
            loads,
        }
    }

    /// The handles for one model version.
    pub fn for_version(&self, model: &str, version: &str) -> ModelMetrics {
        let labels = VersionLabels {
            model: model.to_string(),
            version: version.to_string(),
        };
        let outcome = |protocol: &str, outcome: &str| {
            self.requests
                .get_or_create(&OutcomeLabels {
                    model: model.to_string(),
                    version: version.to_string(),
                    protocol: protocol.to_string(),
                    outcome: outcome.to_string(),
                })
                .clone()
        };
        ModelMetrics {
            ok: [
                outcome("v2", "success"),
                outcome("invocations", "success"),
                outcome("grpc", "success"),
            ],
            failed: [
                outcome("v2", "error"),
                outcome("invocations", "error"),
                outcome("grpc", "error"),
            ],
            latency: self.latency.get_or_create(&labels).clone(),
            queue: self.queue.get_or_create(&labels).clone(),
            compute: self.compute.get_or_create(&labels).clone(),
            batch_rows: self.batch_rows.get_or_create(&labels).clone(),
            ready: self.ready.get_or_create(&labels).clone(),
        }
    }

    /// Counts a load attempt.
    pub fn load_attempt(&self, model: &str, ok: bool) {
        let outcome = if ok { "success" } else { "error" };
        self.loads
            .get_or_create(&LoadLabels {
                model: model.to_string(),
                outcome: outcome.to_string(),
            })
            .inc();
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if let Ok(registry) = self.registry.lock() {
            // Writing into a String cannot fail.
            let _ = prometheus_client::encoding::text::encode(&mut out, &registry);
        }
        out
    }
}

/// Which protocol a request came in on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    V2 = 0,
    Invocations = 1,
    Grpc = 2,
}

/// Metric handles of one loaded model version.
#[derive(Clone)]
pub struct ModelMetrics {
    ok: [Counter; 3],
    failed: [Counter; 3],
    latency: Histogram,
    queue: Histogram,
    compute: Histogram,
    batch_rows: Histogram,
    ready: Gauge,
}

impl ModelMetrics {
    /// Records a finished request.
    pub fn request(&self, protocol: Protocol, ok: bool, took: Duration) {
        let i = protocol as usize;
        if ok {
            self.ok[i].inc();
        } else {
            self.failed[i].inc();
        }
        self.latency.observe(took.as_secs_f64());
    }

    /// Records the queue wait of one request.
    pub fn queued(&self, waited: Duration) {
        self.queue.observe(waited.as_secs_f64());
    }

    /// Records one engine call.
    pub fn batch(&self, rows: usize, took: Duration) {
        self.batch_rows.observe(rows as f64);
        self.compute.observe(took.as_secs_f64());
    }

    /// Marks the version as serving or not.
    pub fn set_ready(&self, ready: bool) {
        self.ready.set(i64::from(ready));
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn renders_labelled_series() {
        let m = Metrics::new();
        let v = m.for_version("churn", "3");
        v.request(Protocol::V2, true, Duration::from_micros(80));
        v.request(Protocol::Invocations, false, Duration::from_micros(80));
        v.batch(8, Duration::from_micros(50));
        v.set_ready(true);
        m.load_attempt("churn", true);
        let text = m.render();
        for needle in [
            r#"cairn_inference_requests_total{model="churn",version="3",protocol="v2",outcome="success"} 1"#,
            r#"cairn_inference_requests_total{model="churn",version="3",protocol="invocations",outcome="error"} 1"#,
            r#"cairn_inference_batch_rows_count{model="churn",version="3"} 1"#,
            r#"cairn_model_ready{model="churn",version="3"} 1"#,
            r#"cairn_model_loads_total{model="churn",outcome="success"} 1"#,
        ] {
            assert!(text.contains(needle), "missing {needle} in\n{text}");
        }
    }
}
