//! The tracking service: validates requests, settles MLflow's rules that span several
//! fields (run names, tags, lifecycle), and makes exactly one store call per write.
//! The operations live in one submodule per entity.

mod experiments;
mod logged_models;
mod registry;
mod runs;

pub use registry::*;

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::error::{CoreError, CoreResult};
use crate::model::{
    DatasetInput, Experiment, LifecycleStage, LoggedModel, LoggedModelStatus, Metric, ModelInput,
    ModelOutput, Param, Run, RunInfo, RunStatus, Tag, ViewType,
};
use crate::page::{decode_offset, Page};
use crate::search::{parse_filter, parse_order_by, OrderBy, SearchKind};
use crate::store::{
    ArtifactLocation, ExperimentSearch, LogBatch, LoggedModelSearch, MetricHistoryQuery,
    NewExperiment, NewLoggedModel, NewRun, RunSearch, RunUpdate, TrackingStore,
};
use crate::validation as v;

/// The tag holding a run's display name.
pub const RUN_NAME_TAG: &str = "mlflow.runName";
/// The tag where legacy `log-model` calls accumulate model metadata.
pub const LOG_MODEL_HISTORY_TAG: &str = "mlflow.log-model.history";
/// Most runs one bulk metric-history request may name.
pub const MAX_RUNS_BULK_HISTORY: usize = 100;
/// Most sampled points per run in a bulk-interval request.
pub const MAX_RESULTS_PER_RUN: u64 = 2500;

/// Milliseconds since the Unix epoch.
pub fn now_millis() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Settings the service needs from configuration.
#[derive(Debug, Clone)]
pub struct TrackingConfig {
    /// Root URI under which new experiments get `<root>/<id>` (e.g. `mlflow-artifacts:/`).
    pub default_artifact_root: String,
}

/// Input of [`TrackingService::create_run`], as sent by the client.
#[derive(Debug, Clone, Default)]
pub struct CreateRunRequest {
    /// Target experiment id (defaults to "0").
    pub experiment_id: Option<String>,
    /// User id.
    pub user_id: Option<String>,
    /// Start time, ms.
    pub start_time: Option<i64>,
    /// Run name.
    pub run_name: Option<String>,
    /// Initial tags.
    pub tags: Vec<Tag>,
}

/// Input of `runs/search`, as sent by the client.
#[derive(Debug, Clone, Default)]
pub struct SearchRunsRequest {
    /// Experiments to search.
    pub experiment_ids: Vec<String>,
    /// Filter string.
    pub filter: Option<String>,
    /// View type.
    pub view: ViewType,
    /// Page size (default 1000).
    pub max_results: Option<i64>,
    /// `order_by` clauses.
    pub order_by: Vec<String>,
    /// Page token.
    pub page_token: Option<String>,
}

/// Input of `experiments/search`.
#[derive(Debug, Clone, Default)]
pub struct SearchExperimentsRequest {
    /// Filter string.
    pub filter: Option<String>,
    /// View type.
    pub view: ViewType,
    /// Page size (default 1000).
    pub max_results: Option<i64>,
    /// `order_by` clauses.
    pub order_by: Vec<String>,
    /// Page token.
    pub page_token: Option<String>,
}

/// Input of `logged-models/search`.
#[derive(Debug, Clone, Default)]
pub struct SearchLoggedModelsRequest {
    /// Experiments to search.
    pub experiment_ids: Vec<String>,
    /// Filter string.
    pub filter: Option<String>,
    /// `order_by` clauses (already rendered as `metrics.x DESC` strings).
    pub order_by: Vec<String>,
    /// Page size (default 100).
    pub max_results: Option<i64>,
    /// Page token.
    pub page_token: Option<String>,
}

/// Input of the bulk-interval metric history request.
#[derive(Debug, Clone, Default)]
pub struct BulkIntervalRequest {
    /// Runs to sample.
    pub run_ids: Vec<String>,
    /// Metric key.
    pub metric_key: String,
    /// Inclusive step range; both or neither.
    pub start_step: Option<i64>,
    /// Inclusive step range end.
    pub end_step: Option<i64>,
    /// Steps to sample per run.
    pub max_results: Option<i64>,
}

/// Input of `logged-models` create.
#[derive(Debug, Clone, Default)]
pub struct CreateLoggedModelRequest {
    /// Owning experiment.
    pub experiment_id: String,
    /// Name (generated if absent).
    pub name: Option<String>,
    /// Model type.
    pub model_type: Option<String>,
    /// Source run.
    pub source_run_id: Option<String>,
    /// Params.
    pub params: Vec<Param>,
    /// Tags.
    pub tags: Vec<Tag>,
}

/// MLflow's tracking operations over any [`TrackingStore`].
#[derive(Clone)]
pub struct TrackingService {
    store: Arc<dyn TrackingStore>,
    config: TrackingConfig,
}

fn parse_exp(id: &str) -> CoreResult<i64> {
    v::parse_experiment_id(id)
}

fn parse_exps(ids: &[String]) -> CoreResult<Vec<i64>> {
    ids.iter().map(|s| parse_exp(s)).collect()
}

impl TrackingService {
    /// Wraps a store.
    pub fn new(store: Arc<dyn TrackingStore>, config: TrackingConfig) -> Self {
        Self { store, config }
    }

    /// Prepares a fresh store: experiment "0" ("Default") must always exist.
    pub async fn init(&self) -> CoreResult<()> {
        let location =
            crate::store::experiment_location_under(&self.config.default_artifact_root, 0);
        self.store
            .ensure_default_experiment(&location, now_millis())
            .await
    }

    /// The underlying store (for readiness checks and shutdown).
    pub fn store(&self) -> &Arc<dyn TrackingStore> {
        &self.store
    }
}

/// Sorting twice by one key is contradictory (`x ASC, x DESC`); MLflow rejects it too.
fn unique_order_by(keys: Vec<OrderBy>) -> CoreResult<Vec<OrderBy>> {
    for (i, k) in keys.iter().enumerate() {
        if keys[..i].iter().any(|prev| prev.field == k.field) {
            return Err(CoreError::invalid(format!(
                "`order_by` contains duplicate fields: {:?}",
                k.field
            )));
        }
    }
    Ok(keys)
}

/// MLflow truncates over-long param and tag values rather than failing the request
/// (`MLFLOW_TRUNCATE_LONG_VALUES`, on by default).
fn truncate_chars(value: &mut String, limit: usize) {
    if value.len() > limit {
        if let Some((idx, _)) = value.char_indices().nth(limit) {
            value.truncate(idx);
        }
    }
}

fn truncate_batch(batch: &mut LogBatch) {
    for p in &mut batch.params {
        truncate_chars(&mut p.value, v::MAX_PARAM_VAL_LENGTH);
    }
    for t in &mut batch.tags {
        truncate_chars(&mut t.value, v::MAX_TAG_VAL_LENGTH);
    }
}

fn validate_dataset_input(d: &DatasetInput) -> CoreResult<()> {
    let ds = &d.dataset;
    if ds.name.is_empty() {
        return Err(v::missing_value("dataset.name"));
    }
    if ds.digest.is_empty() {
        return Err(v::missing_value("dataset.digest"));
    }
    v::check_length("Dataset name", v::MAX_DATASET_NAME_SIZE, &ds.name)?;
    v::check_length("Dataset digest", v::MAX_DATASET_DIGEST_SIZE, &ds.digest)?;
    v::check_length("Dataset source", v::MAX_DATASET_SOURCE_SIZE, &ds.source)?;
    if let Some(s) = &ds.schema {
        v::check_length("Dataset schema", v::MAX_DATASET_SCHEMA_SIZE, s)?;
    }
    if let Some(p) = &ds.profile {
        v::check_length("Dataset profile", v::MAX_DATASET_PROFILE_SIZE, p)?;
    }
    for t in &d.tags {
        v::check_length("Input tag key", v::MAX_INPUT_TAG_KEY_SIZE, &t.key)?;
        v::check_length("Input tag value", v::MAX_INPUT_TAG_VALUE_SIZE, &t.value)?;
    }
    Ok(())
}

/// Chooses which steps a bulk-interval response carries: up to `max_results` steps spread
/// evenly over the union of all runs' steps in range, plus each run's first and last step.
pub fn sample_steps(
    per_run: &[Vec<i64>],
    range: Option<(i64, i64)>,
    max_results: usize,
) -> Vec<i64> {
    let mut all: Vec<i64> = per_run.iter().flatten().copied().collect();
    all.sort_unstable();
    all.dedup();
    let (lo, hi) = range.unwrap_or((0, all.last().copied().unwrap_or(0)));
    let in_range: Vec<i64> = all.into_iter().filter(|s| (lo..=hi).contains(s)).collect();
    // Evenly spaced indices that always include the first and last step, so the
    // result never exceeds `max_results` for a single run.
    let n = in_range.len();
    let mut chosen: Vec<i64> = if n <= max_results.max(1) {
        in_range.clone()
    } else if max_results <= 1 {
        in_range.last().copied().into_iter().collect()
    } else {
        (0..max_results)
            .filter_map(|i| in_range.get(i * (n - 1) / (max_results - 1)).copied())
            .collect()
    };
    for steps in per_run {
        for edge in [steps.iter().min(), steps.iter().max()]
            .into_iter()
            .flatten()
        {
            if (lo..=hi).contains(edge) {
                chosen.push(*edge);
            }
        }
    }
    chosen.sort_unstable();
    chosen.dedup();
    chosen
}

const ADJECTIVES: &[&str] = &[
    "amber", "bold", "brisk", "calm", "clever", "crisp", "dapper", "eager", "fleet", "gentle",
    "glad", "grand", "hardy", "keen", "lively", "lucid", "merry", "nimble", "placid", "proud",
    "quiet", "rapid", "silent", "steady", "sunny", "swift", "tidy", "vivid", "wise", "zesty",
];
const NOUNS: &[&str] = &[
    "badger", "bison", "crane", "falcon", "ferret", "finch", "fox", "gecko", "heron", "ibex",
    "lark", "lynx", "marten", "moose", "newt", "otter", "owl", "panda", "puffin", "quail", "raven",
    "robin", "seal", "shrew", "stoat", "swan", "tern", "toad", "vole", "wren",
];

/// A readable random run name such as `brisk-otter-417`.
pub fn generate_run_name() -> String {
    let bytes = *uuid::Uuid::new_v4().as_bytes();
    let a = ADJECTIVES[bytes[0] as usize % ADJECTIVES.len()];
    let n = NOUNS[bytes[1] as usize % NOUNS.len()];
    let num = u16::from_le_bytes([bytes[2], bytes[3]]) % 1000;
    format!("{a}-{n}-{num}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sampling_keeps_edges_and_bounds() {
        let run: Vec<i64> = (0..1000).collect();
        let s = sample_steps(std::slice::from_ref(&run), None, 10);
        assert!(s.len() <= 12, "{s:?}");
        assert_eq!(s.first(), Some(&0));
        assert_eq!(s.last(), Some(&999));
        let s = sample_steps(std::slice::from_ref(&run), Some((100, 200)), 1000);
        assert_eq!(s.len(), 101);
        let short = vec![5, 7];
        let s = sample_steps(&[run, short], None, 3);
        assert!(s.contains(&5) && s.contains(&7));
    }

    #[test]
    fn run_names_look_right() {
        let n = generate_run_name();
        assert_eq!(n.split('-').count(), 3);
    }
}
