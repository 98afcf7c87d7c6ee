//! `experiments/*`.

use axum::extract::State;
use axum::Json;
use cairn_api::requests::{
    CreateExperiment, ExperimentByName, ExperimentRef, ExperimentTag, SearchExperiments,
    UpdateExperiment,
};
use cairn_api::responses::{ExperimentOut, ExperimentsPage};
use cairn_core::model::Tag;
use cairn_core::service::SearchExperimentsRequest;
use serde_json::{json, Value};

use super::{tags, view_type};
use crate::error::{required_str, ApiResult};
use crate::extract::Mlflow;
use crate::AppState;

pub(crate) async fn create(
    State(s): State<AppState>,
    Mlflow(req): Mlflow<CreateExperiment>,
) -> ApiResult<Json<Value>> {
    let name = required_str(req.name, "name")?;
    let tags = tags(req.tags, "tags")?;
    let id = s
        .tracking()
        .create_experiment(&name, req.artifact_location, tags)
        .await?;
    Ok(Json(json!({ "experiment_id": id })))
}

pub(crate) async fn get(
    State(s): State<AppState>,
    Mlflow(req): Mlflow<ExperimentRef>,
) -> ApiResult<Json<Value>> {
    let id = required_str(req.experiment_id, "experiment_id")?;
    let e = s.tracking().get_experiment(&id).await?;
    Ok(Json(json!({ "experiment": ExperimentOut::from(&e) })))
}

pub(crate) async fn get_by_name(
    State(s): State<AppState>,
    Mlflow(req): Mlflow<ExperimentByName>,
) -> ApiResult<Json<Value>> {
    let name = required_str(req.experiment_name, "experiment_name")?;
    let e = s.tracking().get_experiment_by_name(&name).await?;
    Ok(Json(json!({ "experiment": ExperimentOut::from(&e) })))
}

pub(crate) async fn search(
    State(s): State<AppState>,
    Mlflow(req): Mlflow<SearchExperiments>,
) -> ApiResult<Json<ExperimentsPage>> {
    let page = s
        .tracking()
        .search_experiments(SearchExperimentsRequest {
            filter: req.filter,
            view: view_type(req.view_type, "view_type")?,
            max_results: req.max_results,
            order_by: req.order_by,
            page_token: req.page_token,
        })
        .await?;
    Ok(Json(ExperimentsPage {
        experiments: page.items.iter().map(ExperimentOut::from).collect(),
        next_page_token: page.next_page_token,
    }))
}

pub(crate) async fn delete(
    State(s): State<AppState>,
    Mlflow(req): Mlflow<ExperimentRef>,
) -> ApiResult<Json<Value>> {
    let id = required_str(req.experiment_id, "experiment_id")?;
    s.tracking().delete_experiment(&id).await?;
    Ok(Json(json!({})))
}

pub(crate) async fn restore(
    State(s): State<AppState>,
    Mlflow(req): Mlflow<ExperimentRef>,
) -> ApiResult<Json<Value>> {
    let id = required_str(req.experiment_id, "experiment_id")?;
    s.tracking().restore_experiment(&id).await?;
    Ok(Json(json!({})))
}

pub(crate) async fn update(
    State(s): State<AppState>,
    Mlflow(req): Mlflow<UpdateExperiment>,
) -> ApiResult<Json<Value>> {
    let id = required_str(req.experiment_id, "experiment_id")?;
    let new_name = required_str(req.new_name, "new_name")?;
    s.tracking().rename_experiment(&id, &new_name).await?;
    Ok(Json(json!({})))
}

pub(crate) async fn set_tag(
    State(s): State<AppState>,
    Mlflow(req): Mlflow<ExperimentTag>,
) -> ApiResult<Json<Value>> {
    let id = required_str(req.experiment_id, "experiment_id")?;
    let key = required_str(req.key, "key")?;
    let tag = Tag {
        key,
        value: req.value.unwrap_or_default(),
    };
    s.tracking().set_experiment_tag(&id, tag).await?;
    Ok(Json(json!({})))
}

pub(crate) async fn delete_tag(
    State(s): State<AppState>,
    Mlflow(req): Mlflow<ExperimentTag>,
) -> ApiResult<Json<Value>> {
    let id = required_str(req.experiment_id, "experiment_id")?;
    let key = required_str(req.key, "key")?;
    s.tracking().delete_experiment_tag(&id, &key).await?;
    Ok(Json(json!({})))
}
