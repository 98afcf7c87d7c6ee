//! The model registry: registered models, their numbered versions, stages, aliases, and
//! the [`RegistryStore`] trait every database backend implements next to
//! [`crate::store::TrackingStore`].
//!
//! Version numbers are allocated by the store inside the transaction that inserts the
//! version (a per-model counter), so concurrent creations get 1, 2, 3, ... with no gap or
//! duplicate, and numbers of deleted versions are never handed out again.

use std::fmt;
use std::str::FromStr;

use async_trait::async_trait;

use crate::error::{CoreError, CoreResult};
use crate::model::Tag;
use crate::page::Page;
use crate::search::{Filter, OrderBy};

/// The tag that marks a registered model (or version) as a prompt.
pub const IS_PROMPT_TAG_KEY: &str = "mlflow.prompt.is_prompt";

/// A model version's deployment stage (MLflow's legacy stages).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Stage {
    /// `None`, the stage of a new version.
    None,
    /// `Staging`.
    Staging,
    /// `Production`.
    Production,
    /// `Archived`.
    Archived,
}

impl Stage {
    /// Every stage, in MLflow's order.
    pub const ALL: [Stage; 4] = [Self::None, Self::Staging, Self::Production, Self::Archived];

    /// The canonical spelling stored and sent on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "None",
            Self::Staging => "Staging",
            Self::Production => "Production",
            Self::Archived => "Archived",
        }
    }

    /// Whether `archive_existing_versions` may be used when moving into this stage.
    pub fn is_active(self) -> bool {
        matches!(self, Self::Staging | Self::Production)
    }
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Stage {
    type Err = CoreError;
    /// Case-insensitive, as MLflow's `get_canonical_stage`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|st| st.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| {
                CoreError::invalid(format!(
                    "Invalid Model Version stage: {s}. Value must be one of None, Staging, \
                     Production, Archived."
                ))
            })
    }
}

/// An alias of a registered model pointing at one of its versions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Alias {
    /// Alias name.
    pub alias: String,
    /// Version it points at.
    pub version: i64,
}

/// One version of a registered model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelVersion {
    /// Registered model name.
    pub name: String,
    /// Version number, from 1.
    pub version: i64,
    /// Created, ms.
    pub creation_timestamp: i64,
    /// Last updated, ms.
    pub last_updated_timestamp: i64,
    /// Description.
    pub description: Option<String>,
    /// Creator (MLflow's server never sets it).
    pub user_id: Option<String>,
    /// Stage.
    pub current_stage: Stage,
    /// Source URI as given by the client.
    pub source: String,
    /// Producing run.
    pub run_id: Option<String>,
    /// Link to the producing run.
    pub run_link: Option<String>,
    /// Status; versions are `READY` as soon as they are created.
    pub status: String,
    /// Status message.
    pub status_message: Option<String>,
    /// Resolved artifact location (e.g. a logged model's artifact URI).
    pub storage_location: Option<String>,
    /// MLflow 3 logged model the version was created from.
    pub model_id: Option<String>,
    /// Tags, sorted by key.
    pub tags: Vec<Tag>,
    /// Aliases pointing at this version, sorted.
    pub aliases: Vec<String>,
}

/// A registered model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegisteredModel {
    /// Unique name.
    pub name: String,
    /// Created, ms.
    pub creation_timestamp: i64,
    /// Last updated, ms.
    pub last_updated_timestamp: i64,
    /// Description.
    pub description: Option<String>,
    /// Tags, sorted by key.
    pub tags: Vec<Tag>,
    /// Aliases, sorted by alias.
    pub aliases: Vec<Alias>,
    /// The highest version in each stage that has one, ordered by stage.
    pub latest_versions: Vec<ModelVersion>,
}

/// Input of [`RegistryStore::create_registered_model`].
#[derive(Debug, Clone)]
pub struct NewRegisteredModel {
    /// Unique name (validated).
    pub name: String,
    /// Description.
    pub description: Option<String>,
    /// Tags (validated, one per key).
    pub tags: Vec<Tag>,
    /// Creation time, ms.
    pub now: i64,
}

/// Input of [`RegistryStore::create_model_version`].
#[derive(Debug, Clone)]
pub struct NewModelVersion {
    /// Registered model name.
    pub name: String,
    /// Source URI.
    pub source: String,
    /// Resolved artifact location, if it differs from `source`.
    pub storage_location: Option<String>,
    /// Producing run.
    pub run_id: Option<String>,
    /// Link to the run.
    pub run_link: Option<String>,
    /// Description.
    pub description: Option<String>,
    /// Logged model id.
    pub model_id: Option<String>,
    /// Tags (validated, one per key).
    pub tags: Vec<Tag>,
    /// Creation time, ms.
    pub now: i64,
}

/// Input of [`RegistryStore::transition_model_version_stage`].
#[derive(Debug, Clone)]
pub struct StageTransition {
    /// Registered model name.
    pub name: String,
    /// Version.
    pub version: i64,
    /// Target stage.
    pub stage: Stage,
    /// Move every other version in `stage` to `Archived` (only for active stages).
    pub archive_existing_versions: bool,
    /// Time of the change, ms.
    pub now: i64,
}

/// A validated registered-model or model-version search.
#[derive(Debug, Clone)]
pub struct RegistrySearch {
    /// Filter tree without the prompt clause (see `exclude_prompts`).
    pub filter: Option<Filter>,
    /// Leave out prompts: models (or versions of models) tagged `mlflow.prompt.is_prompt`
    /// = `true`.
    pub exclude_prompts: bool,
    /// Sort keys; the store appends `name ASC` (and `version DESC` for versions).
    pub order_by: Vec<OrderBy>,
    /// Page size.
    pub max_results: u64,
    /// Rows to skip.
    pub offset: u64,
}

/// Everything the registry service needs from a database. Every method is one
/// transaction.
#[async_trait]
pub trait RegistryStore: Send + Sync + 'static {
    /// Creates a registered model; `AlreadyExists` if the name is taken.
    async fn create_registered_model(&self, new: NewRegisteredModel)
        -> CoreResult<RegisteredModel>;
    /// Fetches a registered model with tags, aliases and latest versions.
    async fn get_registered_model(&self, name: &str) -> CoreResult<RegisteredModel>;
    /// Replaces the description.
    async fn update_registered_model(
        &self,
        name: &str,
        description: Option<String>,
        now: i64,
    ) -> CoreResult<RegisteredModel>;
    /// Renames a model; its versions, tags and aliases follow.
    async fn rename_registered_model(
        &self,
        name: &str,
        new_name: &str,
        now: i64,
    ) -> CoreResult<RegisteredModel>;
    /// Deletes a model with its versions, tags and aliases.
    async fn delete_registered_model(&self, name: &str) -> CoreResult<()>;
    /// Searches registered models.
    async fn search_registered_models(
        &self,
        q: &RegistrySearch,
    ) -> CoreResult<Page<RegisteredModel>>;
    /// Upserts a registered-model tag.
    async fn set_registered_model_tag(&self, name: &str, tag: &Tag) -> CoreResult<()>;
    /// Deletes a registered-model tag; an absent key is not an error (as MLflow).
    async fn delete_registered_model_tag(&self, name: &str, key: &str) -> CoreResult<()>;

    /// Creates the next version of a model; the number is allocated in the transaction.
    async fn create_model_version(&self, new: NewModelVersion) -> CoreResult<ModelVersion>;
    /// Fetches one version with tags and aliases.
    async fn get_model_version(&self, name: &str, version: i64) -> CoreResult<ModelVersion>;
    /// Replaces a version's description.
    async fn update_model_version(
        &self,
        name: &str,
        version: i64,
        description: Option<String>,
        now: i64,
    ) -> CoreResult<ModelVersion>;
    /// Moves a version to another stage, optionally archiving the others in that stage.
    async fn transition_model_version_stage(&self, t: &StageTransition)
        -> CoreResult<ModelVersion>;
    /// Deletes a version with its tags and the aliases pointing at it.
    async fn delete_model_version(&self, name: &str, version: i64, now: i64) -> CoreResult<()>;
    /// Searches model versions.
    async fn search_model_versions(&self, q: &RegistrySearch) -> CoreResult<Page<ModelVersion>>;
    /// Upserts a model-version tag.
    async fn set_model_version_tag(&self, name: &str, version: i64, tag: &Tag) -> CoreResult<()>;
    /// Deletes a model-version tag; an absent key is not an error (as MLflow).
    async fn delete_model_version_tag(&self, name: &str, version: i64, key: &str)
        -> CoreResult<()>;
    /// Points an alias at an existing version (moving it if it exists).
    async fn set_registered_model_alias(
        &self,
        name: &str,
        alias: &str,
        version: i64,
    ) -> CoreResult<()>;
    /// Deletes an alias; an absent alias is not an error (as MLflow).
    async fn delete_registered_model_alias(&self, name: &str, alias: &str) -> CoreResult<()>;
    /// The version an alias points at; `InvalidParameter` if the alias does not exist.
    async fn get_model_version_by_alias(&self, name: &str, alias: &str)
        -> CoreResult<ModelVersion>;
}

/// MLflow's error for an unknown registered model.
pub fn model_not_found(name: &str) -> CoreError {
    CoreError::not_found(format!("Registered Model with name={name} not found"))
}

/// MLflow's error for an unknown model version.
pub fn version_not_found(name: &str, version: i64) -> CoreError {
    CoreError::not_found(format!(
        "Model Version (name={name}, version={version}) not found"
    ))
}

/// MLflow's error for a registered-model name that is taken.
pub fn model_exists(name: &str) -> CoreError {
    CoreError::AlreadyExists(format!("Registered Model (name={name}) already exists."))
}

/// MLflow's error for an unknown alias (400, not 404).
pub fn alias_not_found(alias: &str) -> CoreError {
    CoreError::invalid(format!("Registered model alias {alias} not found."))
}

/// The highest version per stage, ordered by stage, from versions in any order.
pub fn latest_per_stage(versions: impl IntoIterator<Item = ModelVersion>) -> Vec<ModelVersion> {
    let mut best: std::collections::BTreeMap<Stage, ModelVersion> =
        std::collections::BTreeMap::new();
    for v in versions {
        match best.get(&v.current_stage) {
            Some(b) if b.version >= v.version => {}
            _ => {
                best.insert(v.current_stage, v);
            }
        }
    }
    best.into_values().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stages_parse_case_insensitively() {
        assert_eq!("production".parse::<Stage>().ok(), Some(Stage::Production));
        assert_eq!("NONE".parse::<Stage>().ok(), Some(Stage::None));
        let err = "Prod".parse::<Stage>().err().map(|e| e.to_string());
        assert_eq!(
            err.as_deref(),
            Some(
                "Invalid Model Version stage: Prod. Value must be one of None, Staging, \
                 Production, Archived."
            )
        );
        assert!(Stage::Staging.is_active() && !Stage::Archived.is_active());
    }
}
