//! Latency recording and summary statistics.

use serde::Serialize;

/// How many error messages a workload keeps verbatim; the count is always exact.
const MAX_ERROR_SAMPLES: usize = 5;

/// What one simulated client (or one phase) observed.
#[derive(Debug, Default)]
pub struct Recorder {
    /// Client-side latency of each successful measured request, in ms.
    pub latencies_ms: Vec<f64>,
    /// Server-reported `Server-Timing: app;dur=` of measured requests, in ms.
    pub server_ms: Vec<f64>,
    /// Successful measured requests (the basis of throughput figures).
    pub ok: u64,
    /// Measured requests attempted, successful or not (warm-up excluded).
    pub attempts: u64,
    /// Measured requests planned (more than `attempts` if a time budget cut
    /// the phase short); 0 when the caller does not track it.
    pub planned: u64,
    /// Failed requests, warm-up ones included: failures are never hidden.
    pub errors: u64,
    pub error_samples: Vec<String>,
}

impl Recorder {
    /// A failure outside the measured set (warm-up): counted, not attempted.
    pub fn error(&mut self, msg: impl Into<String>) {
        self.errors += 1;
        if self.error_samples.len() < MAX_ERROR_SAMPLES {
            self.error_samples.push(msg.into());
        }
    }

    /// A failed measured request.
    pub fn measured_error(&mut self, msg: impl Into<String>) {
        self.attempts += 1;
        self.error(msg);
    }

    pub fn success(&mut self, latency_ms: f64, server_ms: Option<f64>) {
        self.ok += 1;
        self.attempts += 1;
        self.latencies_ms.push(latency_ms);
        if let Some(s) = server_ms {
            self.server_ms.push(s);
        }
    }

    pub fn merge(&mut self, other: Recorder) {
        self.latencies_ms.extend(other.latencies_ms);
        self.server_ms.extend(other.server_ms);
        self.ok += other.ok;
        self.attempts += other.attempts;
        self.planned += other.planned;
        self.errors += other.errors;
        for e in other.error_samples {
            if self.error_samples.len() < MAX_ERROR_SAMPLES {
                self.error_samples.push(e);
            }
        }
    }
}

#[derive(Debug, Clone, Copy, Serialize)]
pub struct Percentiles {
    pub n: usize,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub mean: f64,
    pub min: f64,
    pub max: f64,
}

/// Nearest-rank percentiles; `None` for an empty sample.
pub fn percentiles(samples: &[f64]) -> Option<Percentiles> {
    if samples.is_empty() {
        return None;
    }
    let mut v = samples.to_vec();
    v.sort_by(f64::total_cmp);
    let rank = |p: f64| {
        let idx = ((p / 100.0) * v.len() as f64).ceil() as usize;
        v[idx.clamp(1, v.len()) - 1]
    };
    Some(Percentiles {
        n: v.len(),
        p50: rank(50.0),
        p90: rank(90.0),
        p99: rank(99.0),
        mean: v.iter().sum::<f64>() / v.len() as f64,
        min: v[0],
        max: v[v.len() - 1],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        let p = percentiles(&v);
        assert!(p.is_some());
        if let Some(p) = p {
            assert_eq!(p.p50, 50.0);
            assert_eq!(p.p90, 90.0);
            assert_eq!(p.p99, 99.0);
            assert_eq!(p.min, 1.0);
            assert_eq!(p.max, 100.0);
        }
        assert!(percentiles(&[]).is_none());
        assert_eq!(percentiles(&[7.0]).map(|p| p.p99), Some(7.0));
    }

    #[test]
    fn errors_are_counted_beyond_samples() {
        let mut r = Recorder::default();
        for i in 0..10 {
            r.error(format!("e{i}"));
        }
        assert_eq!(r.errors, 10);
        assert_eq!(r.error_samples.len(), MAX_ERROR_SAMPLES);
    }
}
