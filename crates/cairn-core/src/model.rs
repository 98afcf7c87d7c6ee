//! Tracking entities as the rest of Cairn sees them.

use std::fmt;
use std::str::FromStr;

use crate::error::CoreError;

/// Whether an entity is live or soft-deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LifecycleStage {
    /// Visible in default searches.
    Active,
    /// Soft-deleted: restorable until garbage-collected.
    Deleted,
}

impl LifecycleStage {
    /// The lowercase name MLflow uses on the wire and in storage.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Deleted => "deleted",
        }
    }
}

impl FromStr for LifecycleStage {
    type Err = CoreError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "active" => Ok(Self::Active),
            "deleted" => Ok(Self::Deleted),
            other => Err(CoreError::Internal(format!(
                "unknown lifecycle stage {other:?}"
            ))),
        }
    }
}

/// Which lifecycle stages a search includes (MLflow's `ViewType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ViewType {
    /// Only active entities (the default).
    #[default]
    ActiveOnly,
    /// Only deleted entities.
    DeletedOnly,
    /// Both.
    All,
}

impl ViewType {
    /// The lifecycle stages this view includes.
    pub fn stages(self) -> &'static [LifecycleStage] {
        match self {
            Self::ActiveOnly => &[LifecycleStage::Active],
            Self::DeletedOnly => &[LifecycleStage::Deleted],
            Self::All => &[LifecycleStage::Active, LifecycleStage::Deleted],
        }
    }
}

/// The state of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RunStatus {
    /// Started and not yet ended.
    Running,
    /// Queued to start.
    Scheduled,
    /// Ended successfully.
    Finished,
    /// Ended with an error.
    Failed,
    /// Stopped by a user.
    Killed,
}

impl RunStatus {
    /// All statuses, in MLflow's enum order.
    pub const ALL: [RunStatus; 5] = [
        Self::Running,
        Self::Scheduled,
        Self::Finished,
        Self::Failed,
        Self::Killed,
    ];

    /// The upper-case name MLflow uses.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Running => "RUNNING",
            Self::Scheduled => "SCHEDULED",
            Self::Finished => "FINISHED",
            Self::Failed => "FAILED",
            Self::Killed => "KILLED",
        }
    }

    /// Whether a run in this status has ended.
    pub fn is_terminated(self) -> bool {
        matches!(self, Self::Finished | Self::Failed | Self::Killed)
    }
}

impl FromStr for RunStatus {
    type Err = CoreError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| CoreError::invalid(format!("Invalid run status: '{s}'")))
    }
}

impl fmt::Display for RunStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A key/value tag on any entity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tag {
    /// Tag key.
    pub key: String,
    /// Tag value.
    pub value: String,
}

/// A run parameter (immutable once logged).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Param {
    /// Parameter key.
    pub key: String,
    /// Parameter value.
    pub value: String,
}

/// One metric observation.
#[derive(Debug, Clone, PartialEq)]
pub struct Metric {
    /// Metric key.
    pub key: String,
    /// Value; may be NaN or infinite.
    pub value: f64,
    /// Milliseconds since the epoch.
    pub timestamp: i64,
    /// Training step.
    pub step: i64,
    /// Logged model this metric belongs to (MLflow 3), if any.
    pub model_id: Option<String>,
    /// Dataset the metric was computed on, if any.
    pub dataset_name: Option<String>,
    /// Digest of that dataset, if any.
    pub dataset_digest: Option<String>,
    /// The run that logged it; filled in on reads where MLflow reports it.
    pub run_id: Option<String>,
}

impl Metric {
    /// A plain run metric.
    pub fn new(key: impl Into<String>, value: f64, timestamp: i64, step: i64) -> Self {
        Self {
            key: key.into(),
            value,
            timestamp,
            step,
            model_id: None,
            dataset_name: None,
            dataset_digest: None,
            run_id: None,
        }
    }
}

/// An experiment.
#[derive(Debug, Clone, PartialEq)]
pub struct Experiment {
    /// Numeric id, as a string ("0" is Default).
    pub experiment_id: String,
    /// Unique name.
    pub name: String,
    /// Root URI for artifacts of this experiment's runs.
    pub artifact_location: String,
    /// Active or deleted.
    pub lifecycle_stage: LifecycleStage,
    /// Creation time, ms since the epoch.
    pub creation_time: i64,
    /// Last update time, ms since the epoch.
    pub last_update_time: i64,
    /// Experiment tags.
    pub tags: Vec<Tag>,
}

/// The metadata half of a run.
#[derive(Debug, Clone, PartialEq)]
pub struct RunInfo {
    /// 32 hex characters.
    pub run_id: String,
    /// Owning experiment.
    pub experiment_id: String,
    /// Display name.
    pub run_name: String,
    /// Who started it.
    pub user_id: String,
    /// Current status.
    pub status: RunStatus,
    /// Start time, ms since the epoch.
    pub start_time: Option<i64>,
    /// End time, ms since the epoch.
    pub end_time: Option<i64>,
    /// Where the run's artifacts live.
    pub artifact_uri: String,
    /// Active or deleted.
    pub lifecycle_stage: LifecycleStage,
}

/// The data half of a run: latest metric per key, params and tags.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RunData {
    /// Latest value per metric key.
    pub metrics: Vec<Metric>,
    /// All params.
    pub params: Vec<Param>,
    /// All tags.
    pub tags: Vec<Tag>,
}

/// A dataset as logged with `log_inputs`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dataset {
    /// Dataset name.
    pub name: String,
    /// Content digest.
    pub digest: String,
    /// Kind of source (e.g. "local", "s3").
    pub source_type: String,
    /// Source description (JSON text).
    pub source: String,
    /// Schema (JSON text), optional.
    pub schema: Option<String>,
    /// Profile (JSON text), optional.
    pub profile: Option<String>,
}

/// A dataset used by a run, with input tags (e.g. `mlflow.data.context`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatasetInput {
    /// Tags of the input relation.
    pub tags: Vec<Tag>,
    /// The dataset.
    pub dataset: Dataset,
}

/// A logged model used as a run input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelInput {
    /// The logged model's id.
    pub model_id: String,
}

/// A logged model produced by a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelOutput {
    /// The logged model's id.
    pub model_id: String,
    /// Step at which it was produced.
    pub step: i64,
}

/// Everything a run consumed.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RunInputs {
    /// Datasets.
    pub dataset_inputs: Vec<DatasetInput>,
    /// Logged models.
    pub model_inputs: Vec<ModelInput>,
}

/// Everything a run produced.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RunOutputs {
    /// Logged models.
    pub model_outputs: Vec<ModelOutput>,
}

/// A complete run.
#[derive(Debug, Clone, PartialEq)]
pub struct Run {
    /// Metadata.
    pub info: RunInfo,
    /// Metrics, params, tags.
    pub data: RunData,
    /// Inputs.
    pub inputs: RunInputs,
    /// Outputs.
    pub outputs: RunOutputs,
}

/// Status of an MLflow 3 logged model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoggedModelStatus {
    /// Created, artifacts being uploaded.
    Pending,
    /// Finalized and ready.
    Ready,
    /// Upload failed.
    Failed,
}

impl LoggedModelStatus {
    /// The proto enum name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "LOGGED_MODEL_PENDING",
            Self::Ready => "LOGGED_MODEL_READY",
            Self::Failed => "LOGGED_MODEL_UPLOAD_FAILED",
        }
    }
}

impl FromStr for LoggedModelStatus {
    type Err = CoreError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "LOGGED_MODEL_PENDING" => Ok(Self::Pending),
            "LOGGED_MODEL_READY" => Ok(Self::Ready),
            "LOGGED_MODEL_UPLOAD_FAILED" => Ok(Self::Failed),
            other => Err(CoreError::invalid(format!(
                "Invalid logged model status: '{other}'"
            ))),
        }
    }
}

/// An MLflow 3 logged model.
#[derive(Debug, Clone, PartialEq)]
pub struct LoggedModel {
    /// `m-<32 hex>`.
    pub model_id: String,
    /// Owning experiment.
    pub experiment_id: String,
    /// Name.
    pub name: String,
    /// Where its artifacts live.
    pub artifact_uri: String,
    /// Creation time, ms.
    pub creation_timestamp: i64,
    /// Last update, ms.
    pub last_updated_timestamp: i64,
    /// Free-form model type.
    pub model_type: Option<String>,
    /// The run that produced it.
    pub source_run_id: Option<String>,
    /// Upload status.
    pub status: LoggedModelStatus,
    /// Status detail.
    pub status_message: Option<String>,
    /// Active or deleted.
    pub lifecycle_stage: LifecycleStage,
    /// Tags.
    pub tags: Vec<Tag>,
    /// Params.
    pub params: Vec<Param>,
    /// Metrics logged against this model.
    pub metrics: Vec<Metric>,
}

/// A file stored in the artifact store, as recorded at upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArtifactFile {
    /// Path relative to the artifact store's root (`<experiment>/<run>/artifacts/...`).
    pub path: String,
    /// Size in bytes.
    pub size: i64,
    /// SHA-256 of the content, lowercase hex.
    pub sha256: String,
    /// The storage's ETag for these bytes, if it has one: a digest is trusted for a file
    /// only while the file still carries this ETag (a later overwrite changes it).
    pub etag: Option<String>,
    /// When the upload finished, ms since the epoch.
    pub uploaded_at: i64,
}
