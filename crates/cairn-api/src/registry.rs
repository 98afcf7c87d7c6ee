//! Model-registry wire types: request bodies and query strings (snake_case or camelCase
//! in) and response bodies (snake_case out, version numbers as strings as in MLflow's
//! proto, timestamps as JSON numbers).

use cairn_core::registry::{Alias, ModelVersion, RegisteredModel};
use serde::{Deserialize, Serialize};

use crate::de::{opt_bool, opt_i64, opt_id, string_list};
use crate::requests::KeyValue;
use crate::responses::KeyValueOut;

/// `registered-models/create`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct CreateRegisteredModel {
    /// Name.
    pub name: Option<String>,
    /// Tags.
    pub tags: Vec<KeyValue>,
    /// Description.
    pub description: Option<String>,
}

/// Requests naming one registered model (`get`, `delete`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct RegisteredModelRef {
    /// Name.
    pub name: Option<String>,
}

/// `registered-models/update`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct UpdateRegisteredModel {
    /// Name.
    pub name: Option<String>,
    /// New description.
    pub description: Option<String>,
}

/// `registered-models/rename`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct RenameRegisteredModel {
    /// Current name.
    pub name: Option<String>,
    /// New name.
    #[serde(alias = "newName")]
    pub new_name: Option<String>,
}

/// `registered-models/search` and `model-versions/search`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct SearchRegistry {
    /// Filter.
    pub filter: Option<String>,
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

/// `registered-models/get-latest-versions`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct GetLatestVersions {
    /// Name.
    pub name: Option<String>,
    /// Stages to report (all when empty).
    #[serde(deserialize_with = "string_list")]
    pub stages: Vec<String>,
}

/// `registered-models/set-tag` and `delete-tag`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct RegisteredModelTag {
    /// Name.
    pub name: Option<String>,
    /// Key.
    pub key: Option<String>,
    /// Value.
    pub value: Option<String>,
}

/// `model-versions/create`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct CreateModelVersion {
    /// Registered model name.
    pub name: Option<String>,
    /// Source URI.
    pub source: Option<String>,
    /// Producing run.
    #[serde(alias = "runId")]
    pub run_id: Option<String>,
    /// Tags.
    pub tags: Vec<KeyValue>,
    /// Link to the run.
    #[serde(alias = "runLink")]
    pub run_link: Option<String>,
    /// Description.
    pub description: Option<String>,
    /// Logged model id.
    #[serde(alias = "modelId")]
    pub model_id: Option<String>,
}

/// Requests naming one version (`get`, `delete`, `get-download-uri`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct ModelVersionRef {
    /// Registered model name.
    pub name: Option<String>,
    /// Version (a string on the wire; numbers are accepted too).
    #[serde(deserialize_with = "opt_id")]
    pub version: Option<String>,
}

/// `model-versions/update`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct UpdateModelVersion {
    /// Registered model name.
    pub name: Option<String>,
    /// Version.
    #[serde(deserialize_with = "opt_id")]
    pub version: Option<String>,
    /// New description.
    pub description: Option<String>,
}

/// `model-versions/transition-stage`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct TransitionStage {
    /// Registered model name.
    pub name: Option<String>,
    /// Version.
    #[serde(deserialize_with = "opt_id")]
    pub version: Option<String>,
    /// Target stage.
    pub stage: Option<String>,
    /// Archive the other versions in the target stage.
    #[serde(alias = "archiveExistingVersions", deserialize_with = "opt_bool")]
    pub archive_existing_versions: Option<bool>,
}

/// `model-versions/set-tag` and `delete-tag`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct ModelVersionTag {
    /// Registered model name.
    pub name: Option<String>,
    /// Version.
    #[serde(deserialize_with = "opt_id")]
    pub version: Option<String>,
    /// Key.
    pub key: Option<String>,
    /// Value.
    pub value: Option<String>,
}

/// `registered-models/alias` (set, delete and lookup).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct AliasRequest {
    /// Registered model name.
    pub name: Option<String>,
    /// Alias.
    pub alias: Option<String>,
    /// Version (set only).
    #[serde(deserialize_with = "opt_id")]
    pub version: Option<String>,
}

/// A model version as MLflow renders it.
#[derive(Debug, Clone, Serialize)]
pub struct ModelVersionOut {
    /// Registered model name.
    pub name: String,
    /// Version number, as a string.
    pub version: String,
    /// Created, ms.
    pub creation_timestamp: i64,
    /// Updated, ms.
    pub last_updated_timestamp: i64,
    /// Creator.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    /// Stage.
    pub current_stage: &'static str,
    /// Description.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Source URI.
    pub source: String,
    /// Producing run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run_id: Option<String>,
    /// Status (`READY`).
    pub status: String,
    /// Status message.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status_message: Option<String>,
    /// Tags.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<KeyValueOut>,
    /// Link to the run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run_link: Option<String>,
    /// Aliases pointing here.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub aliases: Vec<String>,
    /// Logged model id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model_id: Option<String>,
}

impl From<&ModelVersion> for ModelVersionOut {
    fn from(mv: &ModelVersion) -> Self {
        Self {
            name: mv.name.clone(),
            version: mv.version.to_string(),
            creation_timestamp: mv.creation_timestamp,
            last_updated_timestamp: mv.last_updated_timestamp,
            user_id: mv.user_id.clone(),
            current_stage: mv.current_stage.as_str(),
            description: mv.description.clone(),
            source: mv.source.clone(),
            run_id: mv.run_id.clone(),
            status: mv.status.clone(),
            status_message: mv.status_message.clone().filter(|s| !s.is_empty()),
            tags: mv.tags.iter().map(KeyValueOut::from).collect(),
            run_link: mv.run_link.clone(),
            aliases: mv.aliases.clone(),
            model_id: mv.model_id.clone(),
        }
    }
}

/// `{alias, version}` of a registered model.
#[derive(Debug, Clone, Serialize)]
pub struct AliasOut {
    /// Alias.
    pub alias: String,
    /// Version, as a string.
    pub version: String,
}

impl From<&Alias> for AliasOut {
    fn from(a: &Alias) -> Self {
        Self {
            alias: a.alias.clone(),
            version: a.version.to_string(),
        }
    }
}

/// A registered model as MLflow renders it.
#[derive(Debug, Clone, Serialize)]
pub struct RegisteredModelOut {
    /// Name.
    pub name: String,
    /// Created, ms.
    pub creation_timestamp: i64,
    /// Updated, ms.
    pub last_updated_timestamp: i64,
    /// Description (omitted when empty, as MLflow).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The latest version per stage.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub latest_versions: Vec<ModelVersionOut>,
    /// Tags.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<KeyValueOut>,
    /// Aliases.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub aliases: Vec<AliasOut>,
}

impl From<&RegisteredModel> for RegisteredModelOut {
    fn from(m: &RegisteredModel) -> Self {
        Self {
            name: m.name.clone(),
            creation_timestamp: m.creation_timestamp,
            last_updated_timestamp: m.last_updated_timestamp,
            description: m.description.clone().filter(|d| !d.is_empty()),
            latest_versions: m
                .latest_versions
                .iter()
                .map(ModelVersionOut::from)
                .collect(),
            tags: m.tags.iter().map(KeyValueOut::from).collect(),
            aliases: m.aliases.iter().map(AliasOut::from).collect(),
        }
    }
}

/// `{"registered_model": ...}`.
#[derive(Debug, Clone, Serialize)]
pub struct RegisteredModelReply {
    /// The model.
    pub registered_model: RegisteredModelOut,
}

/// `{"model_version": ...}`.
#[derive(Debug, Clone, Serialize)]
pub struct ModelVersionReply {
    /// The version.
    pub model_version: ModelVersionOut,
}

/// A page of `registered-models/search`.
#[derive(Debug, Clone, Serialize)]
pub struct RegisteredModelsPage {
    /// Models.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub registered_models: Vec<RegisteredModelOut>,
    /// Next page token.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_page_token: Option<String>,
}

/// A page of `model-versions/search`, or `get-latest-versions` (no token).
#[derive(Debug, Clone, Serialize)]
pub struct ModelVersionsPage {
    /// Versions.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub model_versions: Vec<ModelVersionOut>,
    /// Next page token.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_page_token: Option<String>,
}

/// `{"artifact_uri": ...}` of `get-download-uri`.
#[derive(Debug, Clone, Serialize)]
pub struct DownloadUri {
    /// Where the version's artifacts are.
    pub artifact_uri: String,
}
