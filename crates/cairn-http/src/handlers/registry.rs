//! `registered-models/*` and `model-versions/*`: the model registry.

use axum::extract::State;
use axum::Json;
use cairn_api::registry::{
    AliasRequest, CreateModelVersion, CreateRegisteredModel, DownloadUri, GetLatestVersions,
    ModelVersionOut, ModelVersionRef, ModelVersionReply, ModelVersionTag, ModelVersionsPage,
    RegisteredModelOut, RegisteredModelRef, RegisteredModelReply, RegisteredModelTag,
    RegisteredModelsPage, RenameRegisteredModel, SearchRegistry, TransitionStage,
    UpdateModelVersion, UpdateRegisteredModel,
};
use cairn_core::model::Tag;
use cairn_core::registry::{ModelVersion, RegisteredModel};
use cairn_core::service::{CreateModelVersionRequest, RegistrySearchRequest};
use serde_json::{json, Value};

use super::tags;
use crate::error::{required_str, ApiResult};
use crate::extract::Mlflow;
use crate::AppState;

fn model_reply(m: &RegisteredModel) -> Json<RegisteredModelReply> {
    Json(RegisteredModelReply {
        registered_model: RegisteredModelOut::from(m),
    })
}

fn version_reply(mv: &ModelVersion) -> Json<ModelVersionReply> {
    Json(ModelVersionReply {
        model_version: ModelVersionOut::from(mv),
    })
}

fn empty() -> Json<Value> {
    Json(json!({}))
}

/// The service validates names (MLflow's "Missing value" for an empty one).
fn name(n: Option<String>) -> String {
    n.unwrap_or_default()
}

fn search_request(req: SearchRegistry) -> RegistrySearchRequest {
    RegistrySearchRequest {
        filter: req.filter,
        max_results: req.max_results,
        order_by: req.order_by,
        page_token: req.page_token,
    }
}

pub(crate) async fn create_model(
    State(s): State<AppState>,
    Mlflow(req): Mlflow<CreateRegisteredModel>,
) -> ApiResult<Json<RegisteredModelReply>> {
    let tags = tags(req.tags, "tags")?;
    let m = s
        .registry()
        .create_registered_model(name(req.name), req.description, tags)
        .await?;
    Ok(model_reply(&m))
}

pub(crate) async fn get_model(
    State(s): State<AppState>,
    Mlflow(req): Mlflow<RegisteredModelRef>,
) -> ApiResult<Json<RegisteredModelReply>> {
    let m = s.registry().get_registered_model(&name(req.name)).await?;
    Ok(model_reply(&m))
}

pub(crate) async fn update_model(
    State(s): State<AppState>,
    Mlflow(req): Mlflow<UpdateRegisteredModel>,
) -> ApiResult<Json<RegisteredModelReply>> {
    let m = s
        .registry()
        .update_registered_model(&name(req.name), req.description)
        .await?;
    Ok(model_reply(&m))
}

pub(crate) async fn rename_model(
    State(s): State<AppState>,
    Mlflow(req): Mlflow<RenameRegisteredModel>,
) -> ApiResult<Json<RegisteredModelReply>> {
    let m = s
        .registry()
        .rename_registered_model(&name(req.name), &req.new_name.unwrap_or_default())
        .await?;
    Ok(model_reply(&m))
}

pub(crate) async fn delete_model(
    State(s): State<AppState>,
    Mlflow(req): Mlflow<RegisteredModelRef>,
) -> ApiResult<Json<Value>> {
    s.registry()
        .delete_registered_model(&name(req.name))
        .await?;
    Ok(empty())
}

pub(crate) async fn search_models(
    State(s): State<AppState>,
    Mlflow(req): Mlflow<SearchRegistry>,
) -> ApiResult<Json<RegisteredModelsPage>> {
    let page = s
        .registry()
        .search_registered_models(search_request(req))
        .await?;
    Ok(Json(RegisteredModelsPage {
        registered_models: page.items.iter().map(RegisteredModelOut::from).collect(),
        next_page_token: page.next_page_token,
    }))
}

pub(crate) async fn get_latest_versions(
    State(s): State<AppState>,
    Mlflow(req): Mlflow<GetLatestVersions>,
) -> ApiResult<Json<ModelVersionsPage>> {
    let versions = s
        .registry()
        .get_latest_versions(&name(req.name), &req.stages)
        .await?;
    Ok(Json(ModelVersionsPage {
        model_versions: versions.iter().map(ModelVersionOut::from).collect(),
        next_page_token: None,
    }))
}

pub(crate) async fn set_model_tag(
    State(s): State<AppState>,
    Mlflow(req): Mlflow<RegisteredModelTag>,
) -> ApiResult<Json<Value>> {
    let tag = Tag {
        key: required_str(req.key, "key")?,
        value: req.value.unwrap_or_default(),
    };
    s.registry()
        .set_registered_model_tag(&name(req.name), tag)
        .await?;
    Ok(empty())
}

pub(crate) async fn delete_model_tag(
    State(s): State<AppState>,
    Mlflow(req): Mlflow<RegisteredModelTag>,
) -> ApiResult<Json<Value>> {
    let key = required_str(req.key, "key")?;
    s.registry()
        .delete_registered_model_tag(&name(req.name), &key)
        .await?;
    Ok(empty())
}

pub(crate) async fn create_version(
    State(s): State<AppState>,
    Mlflow(req): Mlflow<CreateModelVersion>,
) -> ApiResult<Json<ModelVersionReply>> {
    let mv = s
        .registry()
        .create_model_version(CreateModelVersionRequest {
            name: name(req.name),
            source: required_str(req.source, "source")?,
            run_id: req.run_id,
            run_link: req.run_link,
            description: req.description,
            model_id: req.model_id,
            tags: tags(req.tags, "tags")?,
        })
        .await?;
    Ok(version_reply(&mv))
}

pub(crate) async fn get_version(
    State(s): State<AppState>,
    Mlflow(req): Mlflow<ModelVersionRef>,
) -> ApiResult<Json<ModelVersionReply>> {
    let version = required_str(req.version, "version")?;
    let mv = s
        .registry()
        .get_model_version(&name(req.name), &version)
        .await?;
    Ok(version_reply(&mv))
}

pub(crate) async fn update_version(
    State(s): State<AppState>,
    Mlflow(req): Mlflow<UpdateModelVersion>,
) -> ApiResult<Json<ModelVersionReply>> {
    let version = required_str(req.version, "version")?;
    let mv = s
        .registry()
        .update_model_version(&name(req.name), &version, req.description)
        .await?;
    Ok(version_reply(&mv))
}

pub(crate) async fn transition_stage(
    State(s): State<AppState>,
    Mlflow(req): Mlflow<TransitionStage>,
) -> ApiResult<Json<ModelVersionReply>> {
    let version = required_str(req.version, "version")?;
    let stage = required_str(req.stage, "stage")?;
    let mv = s
        .registry()
        .transition_model_version_stage(
            &name(req.name),
            &version,
            &stage,
            req.archive_existing_versions.unwrap_or(false),
        )
        .await?;
    Ok(version_reply(&mv))
}

pub(crate) async fn delete_version(
    State(s): State<AppState>,
    Mlflow(req): Mlflow<ModelVersionRef>,
) -> ApiResult<Json<Value>> {
    let version = required_str(req.version, "version")?;
    s.registry()
        .delete_model_version(&name(req.name), &version)
        .await?;
    Ok(empty())
}

pub(crate) async fn search_versions(
    State(s): State<AppState>,
    Mlflow(req): Mlflow<SearchRegistry>,
) -> ApiResult<Json<ModelVersionsPage>> {
    let page = s
        .registry()
        .search_model_versions(search_request(req))
        .await?;
    Ok(Json(ModelVersionsPage {
        model_versions: page.items.iter().map(ModelVersionOut::from).collect(),
        next_page_token: page.next_page_token,
    }))
}

pub(crate) async fn download_uri(
    State(s): State<AppState>,
    Mlflow(req): Mlflow<ModelVersionRef>,
) -> ApiResult<Json<DownloadUri>> {
    let version = required_str(req.version, "version")?;
    let artifact_uri = s
        .registry()
        .get_model_version_download_uri(&name(req.name), &version)
        .await?;
    Ok(Json(DownloadUri { artifact_uri }))
}

pub(crate) async fn set_version_tag(
    State(s): State<AppState>,
    Mlflow(req): Mlflow<ModelVersionTag>,
) -> ApiResult<Json<Value>> {
    let version = required_str(req.version, "version")?;
    let tag = Tag {
        key: required_str(req.key, "key")?,
        value: req.value.unwrap_or_default(),
    };
    s.registry()
        .set_model_version_tag(&name(req.name), &version, tag)
        .await?;
    Ok(empty())
}

pub(crate) async fn delete_version_tag(
    State(s): State<AppState>,
    Mlflow(req): Mlflow<ModelVersionTag>,
) -> ApiResult<Json<Value>> {
    let version = required_str(req.version, "version")?;
    let key = required_str(req.key, "key")?;
    s.registry()
        .delete_model_version_tag(&name(req.name), &version, &key)
        .await?;
    Ok(empty())
}

pub(crate) async fn set_alias(
    State(s): State<AppState>,
    Mlflow(req): Mlflow<AliasRequest>,
) -> ApiResult<Json<Value>> {
    let alias = required_str(req.alias, "alias")?;
    let version = required_str(req.version, "version")?;
    s.registry()
        .set_registered_model_alias(&name(req.name), &alias, &version)
        .await?;
    Ok(empty())
}

pub(crate) async fn delete_alias(
    State(s): State<AppState>,
    Mlflow(req): Mlflow<AliasRequest>,
) -> ApiResult<Json<Value>> {
    let alias = required_str(req.alias, "alias")?;
    s.registry()
        .delete_registered_model_alias(&name(req.name), &alias)
        .await?;
    Ok(empty())
}

pub(crate) async fn get_by_alias(
    State(s): State<AppState>,
    Mlflow(req): Mlflow<AliasRequest>,
) -> ApiResult<Json<ModelVersionReply>> {
    let alias = required_str(req.alias, "alias")?;
    let mv = s
        .registry()
        .get_model_version_by_alias(&name(req.name), &alias)
        .await?;
    Ok(version_reply(&mv))
}
