//! The storage contract. One implementation per database lives in its own crate;
//! every method is one transaction, so a failed call leaves nothing behind.

use async_trait::async_trait;

use crate::error::CoreResult;
use crate::model::{
    ArtifactFile, DatasetInput, Experiment, LifecycleStage, LoggedModel, LoggedModelStatus, Metric,
    ModelInput, ModelOutput, Param, Run, RunInfo, RunStatus, Tag, ViewType,
};
use crate::page::Page;
use crate::search::{Filter, OrderBy};

/// Where a new experiment's artifacts go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ArtifactLocation {
    /// Exactly this URI, as given by the user.
    Explicit(String),
    /// `<root>/<experiment_id>`: the id is only known inside the store's transaction.
    UnderRoot(String),
}

/// Input of [`TrackingStore::create_experiment`].
#[derive(Debug, Clone)]
pub struct NewExperiment {
    /// Unique name (validated).
    pub name: String,
    /// Artifact location.
    pub artifact_location: ArtifactLocation,
    /// Initial tags (validated).
    pub tags: Vec<Tag>,
    /// Creation time, ms.
    pub now: i64,
}

/// Input of [`TrackingStore::create_run`]; the service has settled name and tags.
#[derive(Debug, Clone)]
pub struct NewRun {
    /// Fresh 32-hex id.
    pub run_id: String,
    /// Target experiment (must be active).
    pub experiment_id: i64,
    /// Final run name (also present as the `mlflow.runName` tag).
    pub run_name: String,
    /// Who started it.
    pub user_id: String,
    /// Start time, ms.
    pub start_time: Option<i64>,
    /// Initial tags.
    pub tags: Vec<Tag>,
}

/// Input of [`TrackingStore::update_run`].
#[derive(Debug, Clone)]
pub struct RunUpdate {
    /// Which run.
    pub run_id: String,
    /// New status, if given.
    pub status: Option<RunStatus>,
    /// New end time, if given.
    pub end_time: Option<i64>,
    /// New name, if given and non-empty (also rewrites the `mlflow.runName` tag).
    pub run_name: Option<String>,
}

/// A validated `log-batch`.
#[derive(Debug, Clone, Default)]
pub struct LogBatch {
    /// Metric observations.
    pub metrics: Vec<Metric>,
    /// Params (immutable: a different value for an existing key is an error).
    pub params: Vec<Param>,
    /// Tags (upserted; `mlflow.runName` renames the run).
    pub tags: Vec<Tag>,
}

/// A validated `runs/search`.
#[derive(Debug, Clone)]
pub struct RunSearch {
    /// Experiments to search.
    pub experiment_ids: Vec<i64>,
    /// Optional filter tree.
    pub filter: Option<Filter>,
    /// Lifecycle stages to include.
    pub view: ViewType,
    /// Page size.
    pub max_results: u64,
    /// Sort keys; the store appends `start_time DESC, run_id` as tie-breakers.
    pub order_by: Vec<OrderBy>,
    /// Rows to skip (decoded from the page token).
    pub offset: u64,
}

/// A validated `experiments/search`.
#[derive(Debug, Clone)]
pub struct ExperimentSearch {
    /// Optional filter tree.
    pub filter: Option<Filter>,
    /// Lifecycle stages to include.
    pub view: ViewType,
    /// Page size.
    pub max_results: u64,
    /// Sort keys; the store appends `experiment_id` as tie-breaker.
    pub order_by: Vec<OrderBy>,
    /// Rows to skip.
    pub offset: u64,
}

/// A validated metric-history request.
#[derive(Debug, Clone)]
pub struct MetricHistoryQuery {
    /// Which run.
    pub run_id: String,
    /// Which metric.
    pub key: String,
    /// Page size; `None` returns everything.
    pub max_results: Option<u64>,
    /// Rows to skip.
    pub offset: u64,
}

/// Input of [`TrackingStore::create_logged_model`].
#[derive(Debug, Clone)]
pub struct NewLoggedModel {
    /// `m-<32 hex>`.
    pub model_id: String,
    /// Owning experiment.
    pub experiment_id: i64,
    /// Name.
    pub name: String,
    /// Artifact root of the experiment the URI is built under.
    pub model_type: Option<String>,
    /// The run that produced it.
    pub source_run_id: Option<String>,
    /// Tags.
    pub tags: Vec<Tag>,
    /// Params.
    pub params: Vec<Param>,
    /// Creation time, ms.
    pub now: i64,
}

/// A validated `logged-models/search`.
#[derive(Debug, Clone)]
pub struct LoggedModelSearch {
    /// Experiments to search.
    pub experiment_ids: Vec<i64>,
    /// Optional filter tree.
    pub filter: Option<Filter>,
    /// Sort keys; the store appends `creation_timestamp DESC, model_id` as tie-breakers.
    pub order_by: Vec<OrderBy>,
    /// Page size.
    pub max_results: u64,
    /// Rows to skip.
    pub offset: u64,
}

/// Everything the tracking service needs from a database.
#[async_trait]
pub trait TrackingStore: Send + Sync + 'static {
    /// Creates an experiment and returns its id.
    async fn create_experiment(&self, new: NewExperiment) -> CoreResult<String>;
    /// Fetches an experiment in any lifecycle stage.
    async fn get_experiment(&self, id: i64) -> CoreResult<Experiment>;
    /// Fetches an experiment by exact name, in any lifecycle stage.
    async fn get_experiment_by_name(&self, name: &str) -> CoreResult<Option<Experiment>>;
    /// Searches experiments.
    async fn search_experiments(&self, q: &ExperimentSearch) -> CoreResult<Page<Experiment>>;
    /// Soft-deletes (with its runs) or restores an experiment; fails if it is not in the
    /// opposite stage.
    async fn set_experiment_lifecycle(
        &self,
        id: i64,
        stage: LifecycleStage,
        now: i64,
    ) -> CoreResult<()>;
    /// Renames an active experiment.
    async fn rename_experiment(&self, id: i64, new_name: &str, now: i64) -> CoreResult<()>;
    /// Sets (upserts) an experiment tag.
    async fn set_experiment_tag(&self, id: i64, tag: &Tag) -> CoreResult<()>;
    /// Deletes an experiment tag; fails if absent.
    async fn delete_experiment_tag(&self, id: i64, key: &str) -> CoreResult<()>;

    /// Creates a run in an active experiment.
    async fn create_run(&self, new: NewRun) -> CoreResult<Run>;
    /// Fetches a run with its latest metrics, params, tags, inputs and outputs.
    async fn get_run(&self, run_id: &str) -> CoreResult<Run>;
    /// Updates status, end time and name of an active run.
    async fn update_run(&self, update: &RunUpdate) -> CoreResult<RunInfo>;
    /// Soft-deletes or restores a run.
    async fn set_run_lifecycle(
        &self,
        run_id: &str,
        stage: LifecycleStage,
        now: i64,
    ) -> CoreResult<()>;
    /// Logs metrics, params and tags to an active run, all or nothing. Identical
    /// re-sends are no-ops so client retries never duplicate data.
    async fn log_batch(&self, run_id: &str, batch: &LogBatch) -> CoreResult<()>;
    /// Deletes a run tag; fails if absent.
    async fn delete_run_tag(&self, run_id: &str, key: &str) -> CoreResult<()>;
    /// Searches runs.
    async fn search_runs(&self, q: &RunSearch) -> CoreResult<Page<Run>>;
    /// Every value of one metric, ordered by timestamp, step, value.
    async fn metric_history(&self, q: &MetricHistoryQuery) -> CoreResult<Page<Metric>>;
    /// Distinct steps logged for a metric of a run, ascending; NotFound for an unknown run.
    async fn metric_steps(&self, run_id: &str, key: &str) -> CoreResult<Vec<i64>>;
    /// Values of a metric at the given steps, ordered by step then timestamp.
    async fn metrics_at_steps(
        &self,
        run_id: &str,
        key: &str,
        steps: &[i64],
    ) -> CoreResult<Vec<Metric>>;
    /// Records datasets and models a run consumed (deduplicated).
    async fn log_inputs(
        &self,
        run_id: &str,
        datasets: &[DatasetInput],
        models: &[ModelInput],
    ) -> CoreResult<()>;
    /// Records models a run produced (deduplicated).
    async fn log_outputs(&self, run_id: &str, models: &[ModelOutput]) -> CoreResult<()>;

    /// Creates a logged model; its artifact URI is `<experiment root>/models/<id>/artifacts`.
    async fn create_logged_model(&self, new: NewLoggedModel) -> CoreResult<LoggedModel>;
    /// Fetches a logged model (any lifecycle stage).
    async fn get_logged_model(&self, model_id: &str) -> CoreResult<LoggedModel>;
    /// Sets a logged model's status.
    async fn set_logged_model_status(
        &self,
        model_id: &str,
        status: LoggedModelStatus,
        now: i64,
    ) -> CoreResult<LoggedModel>;
    /// Soft-deletes a logged model.
    async fn delete_logged_model(&self, model_id: &str, now: i64) -> CoreResult<()>;
    /// Upserts tags on a logged model.
    async fn set_logged_model_tags(&self, model_id: &str, tags: &[Tag]) -> CoreResult<()>;
    /// Deletes a logged-model tag; fails if absent.
    async fn delete_logged_model_tag(&self, model_id: &str, key: &str) -> CoreResult<()>;
    /// Logs params on a logged model (same immutability as run params).
    async fn log_logged_model_params(&self, model_id: &str, params: &[Param]) -> CoreResult<()>;
    /// Searches active logged models.
    async fn search_logged_models(&self, q: &LoggedModelSearch) -> CoreResult<Page<LoggedModel>>;

    /// Records (or replaces) the digest of an artifact file, after its upload finished.
    async fn record_artifact(&self, file: &ArtifactFile) -> CoreResult<()>;
    /// Recorded artifact files at `path` or under it (`path` a file or a directory,
    /// `""` for everything), ordered by path.
    async fn artifact_files(&self, path: &str) -> CoreResult<Vec<ArtifactFile>>;
    /// Forgets the recorded files at `path` or under it; returns how many were forgotten.
    async fn forget_artifacts(&self, path: &str) -> CoreResult<u64>;

    /// What `cairn gc` may purge: deleted experiments, runs and logged models matching
    /// `q`. Runs and logged models of a listed experiment are not listed on their own.
    async fn gc_candidates(&self, q: &GcQuery) -> CoreResult<GcCandidates>;
    /// Permanently removes a deleted run and everything it owns; `false` if the run is
    /// gone or no longer deleted (restored meanwhile), in which case nothing changes.
    async fn purge_run(&self, run_id: &str) -> CoreResult<bool>;
    /// Permanently removes a deleted logged model; `false` if it no longer qualifies.
    async fn purge_logged_model(&self, model_id: &str) -> CoreResult<bool>;
    /// Permanently removes a deleted experiment with all its runs, logged models and
    /// datasets; `false` if it no longer qualifies.
    async fn purge_experiment(&self, experiment_id: i64) -> CoreResult<bool>;

    /// Creates experiment "0" ("Default") if it does not exist yet.
    async fn ensure_default_experiment(&self, artifact_location: &str, now: i64) -> CoreResult<()>;
    /// Checks the database answers (for readiness probes).
    async fn ping(&self) -> CoreResult<()>;
    /// Flushes and closes connections; called once at shutdown.
    async fn close(&self);
}

/// The artifact URI of a run under its experiment's location.
pub fn run_artifact_uri(experiment_location: &str, run_id: &str) -> String {
    format!(
        "{}/{run_id}/artifacts",
        experiment_location.trim_end_matches('/')
    )
}

/// The artifact URI of a logged model under its experiment's location.
pub fn logged_model_artifact_uri(experiment_location: &str, model_id: &str) -> String {
    format!(
        "{}/models/{model_id}/artifacts",
        experiment_location.trim_end_matches('/')
    )
}

/// The location of an experiment created under `root`.
pub fn experiment_location_under(root: &str, experiment_id: i64) -> String {
    format!("{}/{experiment_id}", root.trim_end_matches('/'))
}

/// Tags with one entry per key, sorted by key; the last value given for a key wins, as
/// with sequential set-tag calls. (Bulk upserts may not touch one row twice.)
pub fn dedup_tags(tags: &[Tag]) -> Vec<Tag> {
    let last: std::collections::BTreeMap<&str, &str> = tags
        .iter()
        .map(|t| (t.key.as_str(), t.value.as_str()))
        .collect();
    last.into_iter()
        .map(|(key, value)| Tag {
            key: key.to_string(),
            value: value.to_string(),
        })
        .collect()
}

/// The newest observation per key in a batch, sorted by key: highest step, then
/// timestamp, then value. NaN compares as 0, the value both stores keep for it, so this
/// agrees with the stores' own `(step, timestamp, value)` comparison.
pub fn latest_per_key(metrics: &[Metric]) -> Vec<&Metric> {
    let rank = |m: &Metric| {
        let v = if m.value.is_nan() { 0.0 } else { m.value };
        (m.step, m.timestamp, v)
    };
    let mut latest: std::collections::BTreeMap<&str, &Metric> = std::collections::BTreeMap::new();
    for m in metrics {
        let entry = latest.entry(m.key.as_str()).or_insert(m);
        let (new, old) = (rank(m), rank(entry));
        if (new.0, new.1) > (old.0, old.1) || ((new.0, new.1) == (old.0, old.1) && new.2 > old.2) {
            *entry = m;
        }
    }
    latest.into_values().collect()
}

/// MLflow's error for params whose stored value differs from the one given; `owner` is
/// e.g. `run ID='…'`. Same-value re-logs are fine (retries).
pub fn check_param_conflicts(
    params: &[Param],
    stored: &std::collections::HashMap<String, String>,
    owner: &str,
) -> CoreResult<()> {
    let conflicts: Vec<String> = params
        .iter()
        .filter_map(|p| {
            stored
                .get(&p.key)
                .filter(|old| **old != p.value)
                .map(|old| {
                    format!(
                        "{{'key': '{}', 'old_value': '{}', 'new_value': '{}'}}",
                        p.key, old, p.value
                    )
                })
        })
        .collect();
    if conflicts.is_empty() {
        return Ok(());
    }
    Err(crate::CoreError::invalid(format!(
        "Changing param values is not allowed. Params were already logged='[{}]' for {owner}.",
        conflicts.join(", ")
    )))
}

/// The half-open key range `[path/, path0)` holding every artifact file under the
/// directory `path` (`'0'` is the byte after `'/'`); the whole key space for `""`.
pub fn artifact_path_range(path: &str) -> (String, String) {
    if path.is_empty() {
        // Every path is >= "" and < "\u{10FFFF}" in byte order.
        (String::new(), char::MAX.to_string())
    } else {
        (format!("{path}/"), format!("{path}0"))
    }
}

/// Which deleted entities `cairn gc` considers.
#[derive(Debug, Clone, Default)]
pub struct GcQuery {
    /// Only entities deleted at or before this time (ms); `None`: any.
    pub deleted_before: Option<i64>,
    /// Only these experiments (and runs / logged models in them); empty: all.
    pub experiment_ids: Vec<i64>,
    /// Only these runs; when non-empty, no experiment or logged model is considered.
    pub run_ids: Vec<String>,
}

/// One entity `cairn gc` may purge, with the artifact location it owns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GcItem {
    /// Experiment id, run id or model id.
    pub id: String,
    /// Its artifact root.
    pub artifact_uri: String,
}

/// Everything [`TrackingStore::gc_candidates`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GcCandidates {
    /// Deleted experiments.
    pub experiments: Vec<GcItem>,
    /// Deleted runs outside those experiments.
    pub runs: Vec<GcItem>,
    /// Deleted logged models outside those experiments.
    pub logged_models: Vec<GcItem>,
}
