//! The typed search tree that stores compile to SQL.

/// Which entity a filter or `order_by` applies to; decides the valid attributes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SearchKind {
    /// `runs/search`.
    Runs,
    /// `experiments/search`.
    Experiments,
    /// `logged-models/search`.
    LoggedModels,
    /// `registered-models/search`.
    RegisteredModels,
    /// `model-versions/search`.
    ModelVersions,
}

/// A boolean filter. `And`/`Or` hold two or more children; `AND` binds tighter than `OR`.
#[derive(Debug, Clone, PartialEq)]
pub enum Filter {
    /// All children must hold.
    And(Vec<Filter>),
    /// At least one child must hold (a Cairn extension to MLflow's grammar).
    Or(Vec<Filter>),
    /// A single comparison.
    Cond(Condition),
}

/// One comparison such as `metrics.loss < 0.5`.
#[derive(Debug, Clone, PartialEq)]
pub struct Condition {
    /// What is compared.
    pub field: Field,
    /// How.
    pub op: CompareOp,
    /// Against what. Already type-checked against `field` and `op`.
    pub value: Value,
}

/// The left-hand side of a comparison or an `order_by` key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Field {
    /// Latest value of a metric (`metrics.<key>`).
    Metric(String),
    /// A parameter (`params.<key>`).
    Param(String),
    /// A tag (`tags.<key>`).
    Tag(String),
    /// A built-in attribute (`attributes.<name>` or a bare name).
    Attr(Attribute),
    /// A property of an input dataset (`datasets.<name>`), runs only.
    Dataset(DatasetField),
}

/// Built-in attributes across the searchable entities, after alias resolution
/// (`created` → `StartTime`, `run name` → `RunName`, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Attribute {
    /// Run: `run_id`.
    RunId,
    /// Run: `run_name`.
    RunName,
    /// Run or logged model: `status`.
    Status,
    /// Run: `artifact_uri`.
    ArtifactUri,
    /// Run: `user_id`.
    UserId,
    /// Run: `start_time` (numeric).
    StartTime,
    /// Run: `end_time` (numeric).
    EndTime,
    /// Experiment or logged model: `name`.
    Name,
    /// Experiment or logged model: `experiment_id`.
    ExperimentId,
    /// Experiment: `creation_time` (numeric); logged model: `creation_timestamp`.
    CreationTime,
    /// Experiment: `last_update_time` (numeric); logged model: `last_updated_timestamp`.
    LastUpdateTime,
    /// Logged model: `model_id`.
    ModelId,
    /// Logged model: `model_type`.
    ModelType,
    /// Logged model: `source_run_id`.
    SourceRunId,
    /// Model version: `version_number` (numeric).
    VersionNumber,
    /// Model version: `source_path`, the version's source URI.
    SourcePath,
}

impl Attribute {
    /// Whether the attribute holds a number (compared with `< <= > >= = !=`).
    pub fn is_numeric(self) -> bool {
        matches!(
            self,
            Self::StartTime
                | Self::EndTime
                | Self::CreationTime
                | Self::LastUpdateTime
                | Self::VersionNumber
        )
    }
}

/// Dataset properties that run filters may test.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DatasetField {
    /// `datasets.name`.
    Name,
    /// `datasets.digest`.
    Digest,
    /// `datasets.context`: the input's `mlflow.data.context` tag.
    Context,
}

/// A comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompareOp {
    /// `=`
    Eq,
    /// `!=`
    Ne,
    /// `>`
    Gt,
    /// `>=`
    Ge,
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `LIKE` (case-sensitive, `%` and `_` wildcards).
    Like,
    /// `ILIKE` (case-insensitive).
    ILike,
    /// `IN (...)`.
    In,
    /// `NOT IN (...)`.
    NotIn,
    /// `IS NULL`.
    IsNull,
    /// `IS NOT NULL`.
    IsNotNull,
}

/// The right-hand side of a comparison.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// A number (metrics, numeric attributes).
    Number(f64),
    /// A string.
    Str(String),
    /// A list of strings for `IN`/`NOT IN`.
    List(Vec<String>),
    /// No value (`IS NULL`, `IS NOT NULL`).
    None,
}

/// One `order_by` key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderBy {
    /// What to sort by. Never `Field::Dataset`.
    pub field: Field,
    /// Ascending (the default) or descending.
    pub ascending: bool,
}
