//! `logged-models/*` (MLflow 3).

use axum::extract::{Path, State};
use axum::Json;
use cairn_api::requests::{
    CreateLoggedModel, FinalizeLoggedModel, GetLoggedModel, LoggedModelParams, LoggedModelTags,
    SearchLoggedModels,
};
use cairn_api::responses::{LoggedModelOut, LoggedModelsPage};
use cairn_core::model::LoggedModelStatus;
use cairn_core::service::{CreateLoggedModelRequest, SearchLoggedModelsRequest};
use serde_json::{json, Value};

use super::{params, tags};
use crate::error::{required, required_str, ApiError, ApiResult};
use crate::extract::Mlflow;
use crate::AppState;

fn model_body(m: &cairn_core::model::LoggedModel) -> Json<Value> {
    Json(json!({ "model": LoggedModelOut::from(m) }))
}

pub(crate) async fn create(
    State(s): State<AppState>,
    Mlflow(req): Mlflow<CreateLoggedModel>,
) -> ApiResult<Json<Value>> {
    let model = s
        .tracking()
        .create_logged_model(CreateLoggedModelRequest {
            experiment_id: required_str(req.experiment_id, "experiment_id")?,
            name: req.name,
            model_type: req.model_type.filter(|s| !s.is_empty()),
            source_run_id: req.source_run_id,
            params: params(req.params, "params")?,
            tags: tags(req.tags, "tags")?,
        })
        .await?;
    Ok(model_body(&model))
}

pub(crate) async fn get(
    State(s): State<AppState>,
    Path(model_id): Path<String>,
    Mlflow(req): Mlflow<GetLoggedModel>,
) -> ApiResult<Json<Value>> {
    let allow_deleted = req.allow_deleted.unwrap_or(false);
    Ok(model_body(
        &s.tracking()
            .get_logged_model(&model_id, allow_deleted)
            .await?,
    ))
}

fn parse_status(v: Value) -> ApiResult<LoggedModelStatus> {
    match &v {
        Value::String(s) => Ok(s.parse::<LoggedModelStatus>()?),
        Value::Number(n) => match n.as_i64() {
            Some(1) => Ok(LoggedModelStatus::Pending),
            Some(2) => Ok(LoggedModelStatus::Ready),
            Some(3) => Ok(LoggedModelStatus::Failed),
            _ => Err(ApiError::invalid(format!(
                "Invalid logged model status: {n}"
            ))),
        },
        other => Err(ApiError::invalid(format!(
            "Invalid logged model status: {other}"
        ))),
    }
}

pub(crate) async fn finalize(
    State(s): State<AppState>,
    Path(model_id): Path<String>,
    Mlflow(req): Mlflow<FinalizeLoggedModel>,
) -> ApiResult<Json<Value>> {
    let status = parse_status(required(req.status, "status")?)?;
    let model = s
        .tracking()
        .finalize_logged_model(&model_id, status)
        .await?;
    Ok(model_body(&model))
}

pub(crate) async fn delete(
    State(s): State<AppState>,
    Path(model_id): Path<String>,
) -> ApiResult<Json<Value>> {
    s.tracking().delete_logged_model(&model_id).await?;
    Ok(Json(json!({})))
}

pub(crate) async fn set_tags(
    State(s): State<AppState>,
    Path(model_id): Path<String>,
    Mlflow(req): Mlflow<LoggedModelTags>,
) -> ApiResult<Json<Value>> {
    s.tracking()
        .set_logged_model_tags(&model_id, tags(req.tags, "tags")?)
        .await?;
    Ok(Json(json!({})))
}

pub(crate) async fn delete_tag(
    State(s): State<AppState>,
    Path((model_id, key)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    s.tracking()
        .delete_logged_model_tag(&model_id, &key)
        .await?;
    Ok(Json(json!({})))
}

pub(crate) async fn log_params(
    State(s): State<AppState>,
    Path(model_id): Path<String>,
    Mlflow(req): Mlflow<LoggedModelParams>,
) -> ApiResult<Json<Value>> {
    s.tracking()
        .log_logged_model_params(&model_id, params(req.params, "params")?)
        .await?;
    Ok(Json(json!({})))
}

/// Renders one structured `order_by` entry in the filter language's syntax.
fn order_clause(field: &str, ascending: bool) -> String {
    let dir = if ascending { "ASC" } else { "DESC" };
    match field.split_once('.') {
        Some((kind, key)) if !key.chars().all(|c| c.is_alphanumeric() || c == '_') => {
            format!("{kind}.`{key}` {dir}")
        }
        _ => format!("{field} {dir}"),
    }
}

pub(crate) async fn search(
    State(s): State<AppState>,
    Mlflow(req): Mlflow<SearchLoggedModels>,
) -> ApiResult<Json<LoggedModelsPage>> {
    let order_by = req
        .order_by
        .into_iter()
        .enumerate()
        .map(|(i, o)| {
            let field = required_str(o.field_name, &format!("order_by[{i}].field_name"))?;
            Ok(order_clause(&field, o.ascending.unwrap_or(true)))
        })
        .collect::<ApiResult<Vec<_>>>()?;
    let page = s
        .tracking()
        .search_logged_models(SearchLoggedModelsRequest {
            experiment_ids: req.experiment_ids,
            filter: req.filter,
            order_by,
            max_results: req.max_results,
            page_token: req.page_token,
        })
        .await?;
    Ok(Json(LoggedModelsPage {
        models: page.items.iter().map(LoggedModelOut::from).collect(),
        next_page_token: page.next_page_token,
    }))
}
