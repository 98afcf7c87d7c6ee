//! `runs/*` and `metrics/*`.

use axum::extract::State;
use axum::Json;
use cairn_api::requests::{
    CreateRun, GetMetricHistory, GetMetricHistoryBulk, LogBatch, LogInputs, LogMetric, LogModel,
    LogOutputs, RunKeyValue, RunRef, SearchRuns, UpdateRun,
};
use cairn_api::responses::{MetricOut, MetricsPage, RunInfoOut, RunOut, RunsPage};
use cairn_core::model::{Dataset, DatasetInput, ModelInput, ModelOutput, Param, RunStatus, Tag};
use cairn_core::service::{BulkIntervalRequest, CreateRunRequest, SearchRunsRequest};
use cairn_core::store;
use cairn_core::validation::MAX_BATCH_LOG_REQUEST_SIZE;
use serde_json::{json, Value};

use super::{metric, params, tags, view_type};
use crate::error::{required, required_str, ApiError, ApiResult};
use crate::extract::{LimitedMlflow, Mlflow};
use crate::AppState;

fn run_id(r: &RunRef) -> ApiResult<String> {
    r.id()
        .map(str::to_string)
        .ok_or_else(|| ApiError::missing("run_id"))
}

fn ok() -> Json<Value> {
    Json(json!({}))
}

pub(crate) async fn create(
    State(s): State<AppState>,
    Mlflow(req): Mlflow<CreateRun>,
) -> ApiResult<Json<Value>> {
    let run = s
        .tracking()
        .create_run(CreateRunRequest {
            experiment_id: req.experiment_id.filter(|s| !s.is_empty()),
            user_id: req.user_id,
            start_time: req.start_time,
            run_name: req.run_name,
            tags: tags(req.tags, "tags")?,
        })
        .await?;
    Ok(Json(json!({ "run": RunOut::from(&run) })))
}

pub(crate) async fn get(
    State(s): State<AppState>,
    Mlflow(req): Mlflow<RunRef>,
) -> ApiResult<Json<Value>> {
    let run = s.tracking().get_run(&run_id(&req)?).await?;
    Ok(Json(json!({ "run": RunOut::from(&run) })))
}

pub(crate) async fn update(
    State(s): State<AppState>,
    Mlflow(req): Mlflow<UpdateRun>,
) -> ApiResult<Json<Value>> {
    let id = run_id(&req.run)?;
    let status = req
        .status
        .filter(|s| !s.is_empty())
        .map(|s| s.parse::<RunStatus>())
        .transpose()?;
    let info = s
        .tracking()
        .update_run(&id, status, req.end_time, req.run_name)
        .await?;
    Ok(Json(json!({ "run_info": RunInfoOut::from(&info) })))
}

pub(crate) async fn delete(
    State(s): State<AppState>,
    Mlflow(req): Mlflow<RunRef>,
) -> ApiResult<Json<Value>> {
    s.tracking().delete_run(&run_id(&req)?).await?;
    Ok(ok())
}

pub(crate) async fn restore(
    State(s): State<AppState>,
    Mlflow(req): Mlflow<RunRef>,
) -> ApiResult<Json<Value>> {
    s.tracking().restore_run(&run_id(&req)?).await?;
    Ok(ok())
}

pub(crate) async fn log_metric(
    State(s): State<AppState>,
    Mlflow(req): Mlflow<LogMetric>,
) -> ApiResult<Json<Value>> {
    let id = run_id(&req.run)?;
    s.tracking()
        .log_metric(&id, metric(req.metric, "")?)
        .await?;
    Ok(ok())
}

pub(crate) async fn log_param(
    State(s): State<AppState>,
    Mlflow(req): Mlflow<RunKeyValue>,
) -> ApiResult<Json<Value>> {
    let id = run_id(&req.run)?;
    let param = Param {
        key: required_str(req.key, "key")?,
        value: req.value.unwrap_or_default(),
    };
    s.tracking().log_param(&id, param).await?;
    Ok(ok())
}

pub(crate) async fn set_tag(
    State(s): State<AppState>,
    Mlflow(req): Mlflow<RunKeyValue>,
) -> ApiResult<Json<Value>> {
    let id = run_id(&req.run)?;
    let tag = Tag {
        key: required_str(req.key, "key")?,
        value: req.value.unwrap_or_default(),
    };
    s.tracking().set_tag(&id, tag).await?;
    Ok(ok())
}

pub(crate) async fn delete_tag(
    State(s): State<AppState>,
    Mlflow(req): Mlflow<RunKeyValue>,
) -> ApiResult<Json<Value>> {
    let id = run_id(&req.run)?;
    let key = required_str(req.key, "key")?;
    s.tracking().delete_tag(&id, &key).await?;
    Ok(ok())
}

pub(crate) async fn log_batch(
    State(s): State<AppState>,
    LimitedMlflow(req): LimitedMlflow<LogBatch, MAX_BATCH_LOG_REQUEST_SIZE>,
) -> ApiResult<Json<Value>> {
    let id = required_str(req.run_id, "run_id")?;
    let metrics = req
        .metrics
        .into_iter()
        .enumerate()
        .map(|(i, m)| metric(m, &format!("metrics[{i}]")))
        .collect::<ApiResult<Vec<_>>>()?;
    let batch = store::LogBatch {
        metrics,
        params: params(req.params, "params")?,
        tags: tags(req.tags, "tags")?,
    };
    s.tracking().log_batch(&id, batch).await?;
    Ok(ok())
}

pub(crate) async fn log_model(
    State(s): State<AppState>,
    Mlflow(req): Mlflow<LogModel>,
) -> ApiResult<Json<Value>> {
    let id = required_str(req.run_id, "run_id")?;
    let model_json = required_str(req.model_json, "model_json")?;
    // It is appended verbatim to a JSON list in a tag, so it must be a JSON object.
    if serde_json::from_str::<serde_json::Map<String, Value>>(&model_json).is_err() {
        return Err(ApiError::invalid(
            "Invalid value for parameter 'model_json' supplied: must be a JSON object",
        ));
    }
    s.tracking().record_logged_model(&id, &model_json).await?;
    Ok(ok())
}

pub(crate) async fn log_inputs(
    State(s): State<AppState>,
    Mlflow(req): Mlflow<LogInputs>,
) -> ApiResult<Json<Value>> {
    let id = required_str(req.run_id, "run_id")?;
    let mut datasets = Vec::with_capacity(req.datasets.len());
    for (i, d) in req.datasets.into_iter().enumerate() {
        let path = format!("datasets[{i}]");
        let ds = required(d.dataset, &format!("{path}.dataset"))?;
        datasets.push(DatasetInput {
            tags: tags(d.tags, &format!("{path}.tags"))?,
            dataset: Dataset {
                name: required_str(ds.name, &format!("{path}.dataset.name"))?,
                digest: required_str(ds.digest, &format!("{path}.dataset.digest"))?,
                source_type: required_str(ds.source_type, &format!("{path}.dataset.source_type"))?,
                source: required_str(ds.source, &format!("{path}.dataset.source"))?,
                schema: ds.schema.filter(|s| !s.is_empty()),
                profile: ds.profile.filter(|s| !s.is_empty()),
            },
        });
    }
    let models = req
        .models
        .into_iter()
        .enumerate()
        .map(|(i, m)| {
            Ok(ModelInput {
                model_id: required_str(m.model_id, &format!("models[{i}].model_id"))?,
            })
        })
        .collect::<ApiResult<Vec<_>>>()?;
    s.tracking().log_inputs(&id, datasets, models).await?;
    Ok(ok())
}

pub(crate) async fn log_outputs(
    State(s): State<AppState>,
    Mlflow(req): Mlflow<LogOutputs>,
) -> ApiResult<Json<Value>> {
    let id = required_str(req.run_id, "run_id")?;
    let models = req
        .models
        .into_iter()
        .enumerate()
        .map(|(i, m)| {
            Ok(ModelOutput {
                model_id: required_str(m.model_id, &format!("models[{i}].model_id"))?,
                step: m.step.unwrap_or(0),
            })
        })
        .collect::<ApiResult<Vec<_>>>()?;
    s.tracking().log_outputs(&id, models).await?;
    Ok(ok())
}

pub(crate) async fn search(
    State(s): State<AppState>,
    Mlflow(req): Mlflow<SearchRuns>,
) -> ApiResult<Json<RunsPage>> {
    let page = s
        .tracking()
        .search_runs(SearchRunsRequest {
            experiment_ids: req.experiment_ids,
            filter: req.filter,
            view: view_type(req.run_view_type, "run_view_type")?,
            max_results: req.max_results,
            order_by: req.order_by,
            page_token: req.page_token,
        })
        .await?;
    Ok(Json(RunsPage {
        runs: page.items.iter().map(RunOut::from).collect(),
        next_page_token: page.next_page_token,
    }))
}

pub(crate) async fn get_history(
    State(s): State<AppState>,
    Mlflow(req): Mlflow<GetMetricHistory>,
) -> ApiResult<Json<MetricsPage>> {
    let id = run_id(&req.run)?;
    let key = required_str(req.metric_key, "metric_key")?;
    let page = s
        .tracking()
        .metric_history(&id, &key, req.max_results, req.page_token.as_deref())
        .await?;
    Ok(Json(MetricsPage {
        metrics: page.items.iter().map(MetricOut::from).collect(),
        next_page_token: page.next_page_token,
    }))
}

/// The bulk endpoints always send the `metrics` field, even when empty.
fn metrics_body(metrics: &[cairn_core::model::Metric]) -> Json<Value> {
    let list: Vec<MetricOut> = metrics.iter().map(MetricOut::from).collect();
    Json(json!({ "metrics": list }))
}

pub(crate) async fn get_history_bulk_interval(
    State(s): State<AppState>,
    Mlflow(req): Mlflow<GetMetricHistoryBulk>,
) -> ApiResult<Json<Value>> {
    let metric_key = required_str(req.metric_key, "metric_key")?;
    let metrics = s
        .tracking()
        .metric_history_bulk_interval(BulkIntervalRequest {
            run_ids: req.run_ids,
            metric_key,
            start_step: req.start_step,
            end_step: req.end_step,
            max_results: req.max_results,
        })
        .await?;
    Ok(metrics_body(&metrics))
}

pub(crate) async fn get_history_bulk(
    State(s): State<AppState>,
    Mlflow(req): Mlflow<GetMetricHistoryBulk>,
) -> ApiResult<Json<Value>> {
    let metric_key = required_str(req.metric_key, "metric_key")?;
    let mut ids = req.run_id;
    ids.extend(req.run_ids);
    let metrics = s
        .tracking()
        .metric_history_bulk(&ids, &metric_key, req.max_results)
        .await?;
    Ok(metrics_body(&metrics))
}
