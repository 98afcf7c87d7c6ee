//! Request bodies (POST/PATCH/DELETE) and query strings (GET), accepting MLflow's
//! snake_case and the camelCase that protobuf-JSON also allows. Required fields are
//! `Option`s so a missing one yields MLflow's own "Missing value" message, not serde's.

use serde::Deserialize;

use crate::de::{opt_bool, opt_f64, opt_i64, opt_id, string_list};

/// `{key, value}` for tags and params.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct KeyValue {
    /// Key.
    pub key: Option<String>,
    /// Value.
    pub value: Option<String>,
}

/// A metric inside `log-batch`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct MetricIn {
    /// Key.
    pub key: Option<String>,
    /// Value.
    #[serde(deserialize_with = "opt_f64")]
    pub value: Option<f64>,
    /// Timestamp, ms.
    #[serde(deserialize_with = "opt_i64")]
    pub timestamp: Option<i64>,
    /// Step.
    #[serde(deserialize_with = "opt_i64")]
    pub step: Option<i64>,
    /// Logged model id.
    #[serde(alias = "modelId")]
    pub model_id: Option<String>,
    /// Dataset name.
    #[serde(alias = "datasetName")]
    pub dataset_name: Option<String>,
    /// Dataset digest.
    #[serde(alias = "datasetDigest")]
    pub dataset_digest: Option<String>,
}

/// `experiments/create`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct CreateExperiment {
    /// Name.
    pub name: Option<String>,
    /// Artifact location.
    #[serde(alias = "artifactLocation")]
    pub artifact_location: Option<String>,
    /// Tags.
    pub tags: Vec<KeyValue>,
}

/// Any request naming one experiment (`get`, `delete`, `restore`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct ExperimentRef {
    /// Experiment id.
    #[serde(alias = "experimentId", deserialize_with = "opt_id")]
    pub experiment_id: Option<String>,
}

/// `experiments/get-by-name`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct ExperimentByName {
    /// Name.
    #[serde(alias = "experimentName")]
    pub experiment_name: Option<String>,
}

/// `experiments/search`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct SearchExperiments {
    /// Page size.
    #[serde(alias = "maxResults", deserialize_with = "opt_i64")]
    pub max_results: Option<i64>,
    /// Page token.
    #[serde(alias = "pageToken")]
    pub page_token: Option<String>,
    /// Filter.
    pub filter: Option<String>,
    /// Sort keys.
    #[serde(alias = "orderBy", deserialize_with = "string_list")]
    pub order_by: Vec<String>,
    /// `ACTIVE_ONLY`, `DELETED_ONLY` or `ALL` (or 1, 2, 3).
    #[serde(alias = "viewType")]
    pub view_type: Option<serde_json::Value>,
}

/// `experiments/update`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct UpdateExperiment {
    /// Experiment id.
    #[serde(alias = "experimentId", deserialize_with = "opt_id")]
    pub experiment_id: Option<String>,
    /// New name.
    #[serde(alias = "newName")]
    pub new_name: Option<String>,
}

/// `experiments/set-experiment-tag` and `delete-experiment-tag`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct ExperimentTag {
    /// Experiment id.
    #[serde(alias = "experimentId", deserialize_with = "opt_id")]
    pub experiment_id: Option<String>,
    /// Key.
    pub key: Option<String>,
    /// Value.
    pub value: Option<String>,
}

/// `runs/create`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct CreateRun {
    /// Experiment id.
    #[serde(alias = "experimentId", deserialize_with = "opt_id")]
    pub experiment_id: Option<String>,
    /// User.
    #[serde(alias = "userId")]
    pub user_id: Option<String>,
    /// Run name.
    #[serde(alias = "runName")]
    pub run_name: Option<String>,
    /// Start time.
    #[serde(alias = "startTime", deserialize_with = "opt_i64")]
    pub start_time: Option<i64>,
    /// Tags.
    pub tags: Vec<KeyValue>,
}

/// Any request naming one run; `run_uuid` is the legacy spelling.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct RunRef {
    /// Run id.
    #[serde(alias = "runId")]
    pub run_id: Option<String>,
    /// Legacy run id.
    #[serde(alias = "runUuid")]
    pub run_uuid: Option<String>,
}

impl RunRef {
    /// The run id from either field.
    pub fn id(&self) -> Option<&str> {
        self.run_id
            .as_deref()
            .filter(|s| !s.is_empty())
            .or(self.run_uuid.as_deref().filter(|s| !s.is_empty()))
    }
}

/// `runs/update`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct UpdateRun {
    /// Run.
    #[serde(flatten)]
    pub run: RunRef,
    /// New status.
    pub status: Option<String>,
    /// End time.
    #[serde(alias = "endTime", deserialize_with = "opt_i64")]
    pub end_time: Option<i64>,
    /// New name.
    #[serde(alias = "runName")]
    pub run_name: Option<String>,
}

/// `runs/log-metric`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct LogMetric {
    /// Run.
    #[serde(flatten)]
    pub run: RunRef,
    /// The metric.
    #[serde(flatten)]
    pub metric: MetricIn,
}

/// `runs/log-parameter`, `runs/set-tag`, `runs/delete-tag`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct RunKeyValue {
    /// Run.
    #[serde(flatten)]
    pub run: RunRef,
    /// Key.
    pub key: Option<String>,
    /// Value.
    pub value: Option<String>,
}

/// `runs/log-batch`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct LogBatch {
    /// Run.
    #[serde(alias = "runId")]
    pub run_id: Option<String>,
    /// Metrics.
    pub metrics: Vec<MetricIn>,
    /// Params.
    pub params: Vec<KeyValue>,
    /// Tags.
    pub tags: Vec<KeyValue>,
}

/// `runs/log-model` (legacy).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct LogModel {
    /// Run.
    #[serde(alias = "runId")]
    pub run_id: Option<String>,
    /// MLmodel content as JSON text.
    #[serde(alias = "modelJson")]
    pub model_json: Option<String>,
}

/// A dataset inside `runs/log-inputs`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct DatasetIn {
    /// Name.
    pub name: Option<String>,
    /// Digest.
    pub digest: Option<String>,
    /// Source type.
    #[serde(alias = "sourceType")]
    pub source_type: Option<String>,
    /// Source.
    pub source: Option<String>,
    /// Schema.
    pub schema: Option<String>,
    /// Profile.
    pub profile: Option<String>,
}

/// One dataset input.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct DatasetInputIn {
    /// Input tags.
    pub tags: Vec<KeyValue>,
    /// Dataset.
    pub dataset: Option<DatasetIn>,
}

/// A model reference in inputs/outputs.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct ModelRefIn {
    /// Model id.
    #[serde(alias = "modelId")]
    pub model_id: Option<String>,
    /// Step (outputs only).
    #[serde(deserialize_with = "opt_i64")]
    pub step: Option<i64>,
}

/// `runs/log-inputs`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct LogInputs {
    /// Run.
    #[serde(alias = "runId")]
    pub run_id: Option<String>,
    /// Datasets.
    pub datasets: Vec<DatasetInputIn>,
    /// Models.
    pub models: Vec<ModelRefIn>,
}

/// `runs/outputs`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct LogOutputs {
    /// Run.
    #[serde(alias = "runId")]
    pub run_id: Option<String>,
    /// Models.
    pub models: Vec<ModelRefIn>,
}

/// `runs/search`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct SearchRuns {
    /// Experiments.
    #[serde(alias = "experimentIds", deserialize_with = "string_list")]
    pub experiment_ids: Vec<String>,
    /// Filter.
    pub filter: Option<String>,
    /// View type.
    #[serde(alias = "runViewType")]
    pub run_view_type: Option<serde_json::Value>,
    /// Page size.
    #[serde(alias = "maxResults", deserialize_with = "opt_i64")]
    pub max_results: Option<i64>,
    /// Sort keys.
    #[serde(alias = "orderBy", deserialize_with = "string_list")]
    pub order_by: Vec<String>,
    /// Page token.
    #[serde(alias = "pageToken")]
    pub page_token: Option<String>,
}

/// `metrics/get-history`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct GetMetricHistory {
    /// Run.
    #[serde(flatten)]
    pub run: RunRef,
    /// Metric key.
    #[serde(alias = "metricKey")]
    pub metric_key: Option<String>,
    /// Page token.
    #[serde(alias = "pageToken")]
    pub page_token: Option<String>,
    /// Page size.
    #[serde(alias = "maxResults", deserialize_with = "opt_i64")]
    pub max_results: Option<i64>,
}

/// `metrics/get-history-bulk-interval` and the ajax `get-history-bulk`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct GetMetricHistoryBulk {
    /// Runs (`run_ids` for bulk-interval).
    #[serde(alias = "runIds", deserialize_with = "string_list")]
    pub run_ids: Vec<String>,
    /// Runs (`run_id` repeated, for the ajax bulk endpoint).
    #[serde(alias = "runId", deserialize_with = "string_list")]
    pub run_id: Vec<String>,
    /// Metric key.
    #[serde(alias = "metricKey")]
    pub metric_key: Option<String>,
    /// First step.
    #[serde(alias = "startStep", deserialize_with = "opt_i64")]
    pub start_step: Option<i64>,
    /// Last step.
    #[serde(alias = "endStep", deserialize_with = "opt_i64")]
    pub end_step: Option<i64>,
    /// Page size.
    #[serde(alias = "maxResults", deserialize_with = "opt_i64")]
    pub max_results: Option<i64>,
}

/// `artifacts/list`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct ListArtifacts {
    /// Run.
    #[serde(flatten)]
    pub run: RunRef,
    /// Sub-path.
    pub path: Option<String>,
    /// Page token.
    #[serde(alias = "pageToken")]
    pub page_token: Option<String>,
}

/// `logged-models` create.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct CreateLoggedModel {
    /// Experiment.
    #[serde(alias = "experimentId", deserialize_with = "opt_id")]
    pub experiment_id: Option<String>,
    /// Name.
    pub name: Option<String>,
    /// Model type.
    #[serde(alias = "modelType")]
    pub model_type: Option<String>,
    /// Source run.
    #[serde(alias = "sourceRunId")]
    pub source_run_id: Option<String>,
    /// Params.
    pub params: Vec<KeyValue>,
    /// Tags.
    pub tags: Vec<KeyValue>,
}

/// `logged-models/{id}` PATCH (finalize).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct FinalizeLoggedModel {
    /// New status (name or number).
    pub status: Option<serde_json::Value>,
}

/// `logged-models/{id}/tags` PATCH.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct LoggedModelTags {
    /// Tags.
    pub tags: Vec<KeyValue>,
}

/// `logged-models/{id}/params` POST.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct LoggedModelParams {
    /// Params.
    pub params: Vec<KeyValue>,
}

/// One `order_by` entry of `logged-models/search`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct LoggedModelOrderBy {
    /// Field, e.g. `creation_timestamp` or `metrics.acc`.
    #[serde(alias = "fieldName")]
    pub field_name: Option<String>,
    /// Ascending (default true).
    #[serde(deserialize_with = "opt_bool")]
    pub ascending: Option<bool>,
    /// Dataset restriction for metric keys (accepted, not yet applied).
    #[serde(alias = "datasetName")]
    pub dataset_name: Option<String>,
    /// Dataset digest restriction (accepted, not yet applied).
    #[serde(alias = "datasetDigest")]
    pub dataset_digest: Option<String>,
}

/// `logged-models/search`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct SearchLoggedModels {
    /// Experiments.
    #[serde(alias = "experimentIds", deserialize_with = "string_list")]
    pub experiment_ids: Vec<String>,
    /// Filter.
    pub filter: Option<String>,
    /// Sort keys.
    #[serde(alias = "orderBy")]
    pub order_by: Vec<LoggedModelOrderBy>,
    /// Page size.
    #[serde(alias = "maxResults", deserialize_with = "opt_i64")]
    pub max_results: Option<i64>,
    /// Page token.
    #[serde(alias = "pageToken")]
    pub page_token: Option<String>,
}

/// `logged-models/{id}` GET query.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct GetLoggedModel {
    /// Also return a deleted model.
    #[serde(alias = "allowDeleted", deserialize_with = "opt_bool")]
    pub allow_deleted: Option<bool>,
}

/// `GET mlflow-artifacts/artifacts?path=`: list a directory of the proxied store.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct ListProxiedArtifacts {
    /// Directory, relative to the store's root (absent: the root).
    pub path: Option<String>,
}

/// `GET /get-artifact?run_uuid=&path=`: one file of a run.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct GetRunArtifact {
    /// Run.
    #[serde(flatten)]
    pub run: RunRef,
    /// File, relative to the run's artifact root.
    pub path: Option<String>,
}

/// `GET /model-versions/get-artifact?name=&version=&path=`: one file of a model version.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct GetModelVersionArtifact {
    /// Registered model name.
    pub name: Option<String>,
    /// Version.
    #[serde(deserialize_with = "opt_id")]
    pub version: Option<String>,
    /// File, relative to the version's artifact root.
    pub path: Option<String>,
}

/// `mlflow-artifacts/mpu/create/<dir>`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct CreateMultipartUpload {
    /// The client's local file; its name is the artifact's.
    pub path: Option<String>,
    /// Number of parts.
    #[serde(deserialize_with = "opt_i64")]
    pub num_parts: Option<i64>,
}

/// One uploaded part of a multipart upload.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct MultipartUploadPart {
    /// Part number, from 1.
    #[serde(deserialize_with = "opt_i64")]
    pub part_number: Option<i64>,
    /// The ETag the store answered the part's upload with.
    pub etag: Option<String>,
    /// The URL the part went to.
    pub url: Option<String>,
}

/// `mlflow-artifacts/mpu/complete/<dir>` and `.../abort/<dir>`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct FinishMultipartUpload {
    /// The client's local file; its name is the artifact's.
    pub path: Option<String>,
    /// The store's upload id.
    pub upload_id: Option<String>,
    /// The uploaded parts (complete only).
    pub parts: Vec<MultipartUploadPart>,
}
