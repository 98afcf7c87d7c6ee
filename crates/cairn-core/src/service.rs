//! The tracking service: validates requests, settles MLflow's rules that span several
//! fields (run names, tags, lifecycle), and makes exactly one store call per write.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::error::{CoreError, CoreResult};
use crate::model::{
    DatasetInput, Experiment, LifecycleStage, LoggedModel, LoggedModelStatus, Metric, ModelInput,
    ModelOutput, Param, Run, RunInfo, RunStatus, Tag, ViewType,
};
use crate::page::{decode_offset, Page};
use crate::search::{parse_filter, parse_order_by, OrderBy, SearchKind};
use crate::store::{
    ArtifactLocation, ExperimentSearch, LogBatch, LoggedModelSearch, MetricHistoryQuery,
    NewExperiment, NewLoggedModel, NewRun, RunSearch, RunUpdate, TrackingStore,
};
use crate::validation as v;

/// The tag holding a run's display name.
pub const RUN_NAME_TAG: &str = "mlflow.runName";
/// The tag where legacy `log-model` calls accumulate model metadata.
pub const LOG_MODEL_HISTORY_TAG: &str = "mlflow.log-model.history";
/// Most runs one bulk metric-history request may name.
pub const MAX_RUNS_BULK_HISTORY: usize = 100;
/// Most sampled points per run in a bulk-interval request.
pub const MAX_RESULTS_PER_RUN: u64 = 2500;

/// Milliseconds since the Unix epoch.
pub fn now_millis() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Settings the service needs from configuration.
#[derive(Debug, Clone)]
pub struct TrackingConfig {
    /// Root URI under which new experiments get `<root>/<id>` (e.g. `mlflow-artifacts:/`).
    pub default_artifact_root: String,
}

/// Input of [`TrackingService::create_run`], as sent by the client.
#[derive(Debug, Clone, Default)]
pub struct CreateRunRequest {
    /// Target experiment id (defaults to "0").
    pub experiment_id: Option<String>,
    /// User id.
    pub user_id: Option<String>,
    /// Start time, ms.
    pub start_time: Option<i64>,
    /// Run name.
    pub run_name: Option<String>,
    /// Initial tags.
    pub tags: Vec<Tag>,
}

/// Input of `runs/search`, as sent by the client.
#[derive(Debug, Clone, Default)]
pub struct SearchRunsRequest {
    /// Experiments to search.
    pub experiment_ids: Vec<String>,
    /// Filter string.
    pub filter: Option<String>,
    /// View type.
    pub view: ViewType,
    /// Page size (default 1000).
    pub max_results: Option<i64>,
    /// `order_by` clauses.
    pub order_by: Vec<String>,
    /// Page token.
    pub page_token: Option<String>,
}

/// Input of `experiments/search`.
#[derive(Debug, Clone, Default)]
pub struct SearchExperimentsRequest {
    /// Filter string.
    pub filter: Option<String>,
    /// View type.
    pub view: ViewType,
    /// Page size (default 1000).
    pub max_results: Option<i64>,
    /// `order_by` clauses.
    pub order_by: Vec<String>,
    /// Page token.
    pub page_token: Option<String>,
}

/// Input of `logged-models/search`.
#[derive(Debug, Clone, Default)]
pub struct SearchLoggedModelsRequest {
    /// Experiments to search.
    pub experiment_ids: Vec<String>,
    /// Filter string.
    pub filter: Option<String>,
    /// `order_by` clauses (already rendered as `metrics.x DESC` strings).
    pub order_by: Vec<String>,
    /// Page size (default 100).
    pub max_results: Option<i64>,
    /// Page token.
    pub page_token: Option<String>,
}

/// Input of the bulk-interval metric history request.
#[derive(Debug, Clone, Default)]
pub struct BulkIntervalRequest {
    /// Runs to sample.
    pub run_ids: Vec<String>,
    /// Metric key.
    pub metric_key: String,
    /// Inclusive step range; both or neither.
    pub start_step: Option<i64>,
    /// Inclusive step range end.
    pub end_step: Option<i64>,
    /// Steps to sample per run.
    pub max_results: Option<i64>,
}

/// Input of `logged-models` create.
#[derive(Debug, Clone, Default)]
pub struct CreateLoggedModelRequest {
    /// Owning experiment.
    pub experiment_id: String,
    /// Name (generated if absent).
    pub name: Option<String>,
    /// Model type.
    pub model_type: Option<String>,
    /// Source run.
    pub source_run_id: Option<String>,
    /// Params.
    pub params: Vec<Param>,
    /// Tags.
    pub tags: Vec<Tag>,
}

/// MLflow's tracking operations over any [`TrackingStore`].
#[derive(Clone)]
pub struct TrackingService {
    store: Arc<dyn TrackingStore>,
    config: TrackingConfig,
}

fn parse_exp(id: &str) -> CoreResult<i64> {
    v::parse_experiment_id(id)
}

fn parse_exps(ids: &[String]) -> CoreResult<Vec<i64>> {
    ids.iter().map(|s| parse_exp(s)).collect()
}

impl TrackingService {
    /// Wraps a store.
    pub fn new(store: Arc<dyn TrackingStore>, config: TrackingConfig) -> Self {
        Self { store, config }
    }

    /// Prepares a fresh store: experiment "0" ("Default") must always exist.
    pub async fn init(&self) -> CoreResult<()> {
        let location =
            crate::store::experiment_location_under(&self.config.default_artifact_root, 0);
        self.store
            .ensure_default_experiment(&location, now_millis())
            .await
    }

    /// The underlying store (for readiness checks and shutdown).
    pub fn store(&self) -> &Arc<dyn TrackingStore> {
        &self.store
    }

    // ---- experiments -------------------------------------------------------------

    /// Creates an experiment; an empty artifact location means "under the default root".
    pub async fn create_experiment(
        &self,
        name: &str,
        artifact_location: Option<String>,
        tags: Vec<Tag>,
    ) -> CoreResult<String> {
        v::validate_experiment_name(name)?;
        for t in &tags {
            v::validate_experiment_tag(t)?;
        }
        let artifact_location = match artifact_location.filter(|s| !s.is_empty()) {
            Some(loc) => ArtifactLocation::Explicit(loc),
            None => ArtifactLocation::UnderRoot(self.config.default_artifact_root.clone()),
        };
        self.store
            .create_experiment(NewExperiment {
                name: name.to_string(),
                artifact_location,
                tags,
                now: now_millis(),
            })
            .await
    }

    /// Gets an experiment by id.
    pub async fn get_experiment(&self, id: &str) -> CoreResult<Experiment> {
        self.store.get_experiment(parse_exp(id)?).await
    }

    /// Gets an experiment by name; missing is `RESOURCE_DOES_NOT_EXIST` as in MLflow.
    pub async fn get_experiment_by_name(&self, name: &str) -> CoreResult<Experiment> {
        if name.is_empty() {
            return Err(v::missing_value("experiment_name"));
        }
        self.store
            .get_experiment_by_name(name)
            .await?
            .ok_or_else(|| {
                CoreError::not_found(format!("Could not find experiment with name '{name}'"))
            })
    }

    /// Searches experiments.
    pub async fn search_experiments(
        &self,
        req: SearchExperimentsRequest,
    ) -> CoreResult<Page<Experiment>> {
        let max_results = v::validate_max_results(
            req.max_results.unwrap_or(1000),
            v::MAX_EXPERIMENTS_SEARCH_RESULTS,
        )?;
        let q = ExperimentSearch {
            filter: parse_filter(SearchKind::Experiments, req.filter.as_deref().unwrap_or(""))?,
            view: req.view,
            max_results,
            order_by: unique_order_by(parse_order_by(SearchKind::Experiments, &req.order_by)?)?,
            offset: decode_offset(req.page_token.as_deref())?,
        };
        self.store.search_experiments(&q).await
    }

    /// Soft-deletes an experiment and its runs. The Default experiment cannot be deleted.
    pub async fn delete_experiment(&self, id: &str) -> CoreResult<()> {
        let id = parse_exp(id)?;
        if id == 0 {
            return Err(CoreError::invalid(
                "Cannot delete the default experiment '0'. This is an internal experiment.",
            ));
        }
        self.store
            .set_experiment_lifecycle(id, LifecycleStage::Deleted, now_millis())
            .await
    }

    /// Restores a deleted experiment and its runs.
    pub async fn restore_experiment(&self, id: &str) -> CoreResult<()> {
        self.store
            .set_experiment_lifecycle(parse_exp(id)?, LifecycleStage::Active, now_millis())
            .await
    }

    /// Renames an experiment.
    pub async fn rename_experiment(&self, id: &str, new_name: &str) -> CoreResult<()> {
        v::validate_experiment_name(new_name)?;
        self.store
            .rename_experiment(parse_exp(id)?, new_name, now_millis())
            .await
    }

    /// Sets an experiment tag.
    pub async fn set_experiment_tag(&self, id: &str, tag: Tag) -> CoreResult<()> {
        v::validate_experiment_tag(&tag)?;
        self.store.set_experiment_tag(parse_exp(id)?, &tag).await
    }

    /// Deletes an experiment tag.
    pub async fn delete_experiment_tag(&self, id: &str, key: &str) -> CoreResult<()> {
        self.store.delete_experiment_tag(parse_exp(id)?, key).await
    }

    // ---- runs --------------------------------------------------------------------

    /// Creates a run, settling its name against the `mlflow.runName` tag as MLflow does.
    pub async fn create_run(&self, req: CreateRunRequest) -> CoreResult<Run> {
        let experiment_id = parse_exp(req.experiment_id.as_deref().unwrap_or("0"))?;
        let mut req = req;
        for t in &mut req.tags {
            truncate_chars(&mut t.value, v::MAX_TAG_VAL_LENGTH);
        }
        for (i, t) in req.tags.iter().enumerate() {
            v::validate_run_tag(&format!("tags[{i}]"), t)?;
        }
        let mut tags = req.tags;
        // An empty mlflow.runName tag counts as absent, as in MLflow.
        tags.retain(|t| !(t.key == RUN_NAME_TAG && t.value.is_empty()));
        let tag_name = tags
            .iter()
            .rev()
            .find(|t| t.key == RUN_NAME_TAG)
            .map(|t| t.value.clone());
        let arg_name = req.run_name.filter(|n| !n.is_empty());
        if let (Some(a), Some(t)) = (&arg_name, &tag_name) {
            if a != t {
                return Err(CoreError::invalid(format!(
                    "Both 'run_name' argument and 'mlflow.runName' tag are specified, but with \
                     different values (run_name='{a}', mlflow.runName='{t}')."
                )));
            }
        }
        let run_name = arg_name
            .or_else(|| tag_name.clone().filter(|n| !n.is_empty()))
            .unwrap_or_else(generate_run_name);
        if tag_name.is_none() {
            tags.push(Tag {
                key: RUN_NAME_TAG.into(),
                value: run_name.clone(),
            });
        }
        self.store
            .create_run(NewRun {
                run_id: uuid::Uuid::new_v4().simple().to_string(),
                experiment_id,
                run_name,
                user_id: req.user_id.unwrap_or_default(),
                start_time: req.start_time.or_else(|| Some(now_millis())),
                tags,
            })
            .await
    }

    /// Gets a run.
    pub async fn get_run(&self, run_id: &str) -> CoreResult<Run> {
        v::validate_run_id("run_id", run_id)?;
        self.store.get_run(run_id).await
    }

    /// Updates a run's status, end time and name.
    pub async fn update_run(
        &self,
        run_id: &str,
        status: Option<RunStatus>,
        end_time: Option<i64>,
        run_name: Option<String>,
    ) -> CoreResult<RunInfo> {
        v::validate_run_id("run_id", run_id)?;
        self.store
            .update_run(&RunUpdate {
                run_id: run_id.to_string(),
                status,
                end_time,
                run_name: run_name.filter(|n| !n.is_empty()),
            })
            .await
    }

    /// Soft-deletes a run.
    pub async fn delete_run(&self, run_id: &str) -> CoreResult<()> {
        v::validate_run_id("run_id", run_id)?;
        self.store
            .set_run_lifecycle(run_id, LifecycleStage::Deleted, now_millis())
            .await
    }

    /// Restores a run.
    pub async fn restore_run(&self, run_id: &str) -> CoreResult<()> {
        v::validate_run_id("run_id", run_id)?;
        self.store
            .set_run_lifecycle(run_id, LifecycleStage::Active, now_millis())
            .await
    }

    /// Logs a batch; single-metric, param and tag endpoints go through here too.
    pub async fn log_batch(&self, run_id: &str, mut batch: LogBatch) -> CoreResult<()> {
        v::validate_run_id("run_id", run_id)?;
        truncate_batch(&mut batch);
        v::validate_batch(&batch.metrics, &batch.params, &batch.tags)?;
        if batch.metrics.is_empty() && batch.params.is_empty() && batch.tags.is_empty() {
            // Still report a missing run, as MLflow does.
            self.store.get_run(run_id).await?;
            return Ok(());
        }
        self.store.log_batch(run_id, &batch).await
    }

    /// Logs one metric.
    pub async fn log_metric(&self, run_id: &str, metric: Metric) -> CoreResult<()> {
        v::validate_run_id("run_id", run_id)?;
        v::validate_metric("", &metric)?;
        self.store
            .log_batch(
                run_id,
                &LogBatch {
                    metrics: vec![metric],
                    ..LogBatch::default()
                },
            )
            .await
    }

    /// Logs one param.
    pub async fn log_param(&self, run_id: &str, mut param: Param) -> CoreResult<()> {
        v::validate_run_id("run_id", run_id)?;
        truncate_chars(&mut param.value, v::MAX_PARAM_VAL_LENGTH);
        v::validate_param("", &param)?;
        self.store
            .log_batch(
                run_id,
                &LogBatch {
                    params: vec![param],
                    ..LogBatch::default()
                },
            )
            .await
    }

    /// Sets one run tag.
    pub async fn set_tag(&self, run_id: &str, mut tag: Tag) -> CoreResult<()> {
        v::validate_run_id("run_id", run_id)?;
        truncate_chars(&mut tag.value, v::MAX_TAG_VAL_LENGTH);
        v::validate_run_tag("", &tag)?;
        self.store
            .log_batch(
                run_id,
                &LogBatch {
                    tags: vec![tag],
                    ..LogBatch::default()
                },
            )
            .await
    }

    /// Legacy `runs/log-model`: appends the model's JSON to the run's
    /// `mlflow.log-model.history` tag.
    pub async fn record_logged_model(&self, run_id: &str, model_json: &str) -> CoreResult<()> {
        v::validate_run_id("run_id", run_id)?;
        if !model_json.trim_start().starts_with('{') {
            return Err(v::invalid_value(
                "model_json",
                model_json,
                Some("must be a JSON object"),
            ));
        }
        let run = self.store.get_run(run_id).await?;
        let history = run
            .data
            .tags
            .iter()
            .find(|t| t.key == LOG_MODEL_HISTORY_TAG)
            .map(|t| t.value.trim().to_string())
            .filter(|s| s.starts_with('[') && s.ends_with(']'));
        let value = match history {
            Some(list) if list.len() > 2 => {
                format!("{}, {}]", &list[..list.len() - 1], model_json)
            }
            _ => format!("[{model_json}]"),
        };
        self.store
            .log_batch(
                run_id,
                &LogBatch {
                    tags: vec![Tag {
                        key: LOG_MODEL_HISTORY_TAG.into(),
                        value,
                    }],
                    ..LogBatch::default()
                },
            )
            .await
    }

    /// Deletes a run tag.
    pub async fn delete_tag(&self, run_id: &str, key: &str) -> CoreResult<()> {
        v::validate_run_id("run_id", run_id)?;
        self.store.delete_run_tag(run_id, key).await
    }

    /// Searches runs.
    pub async fn search_runs(&self, req: SearchRunsRequest) -> CoreResult<Page<Run>> {
        let max_results =
            v::validate_max_results(req.max_results.unwrap_or(1000), v::MAX_RUNS_SEARCH_RESULTS)?;
        let q = RunSearch {
            experiment_ids: parse_exps(&req.experiment_ids)?,
            filter: parse_filter(SearchKind::Runs, req.filter.as_deref().unwrap_or(""))?,
            view: req.view,
            max_results,
            order_by: unique_order_by(parse_order_by(SearchKind::Runs, &req.order_by)?)?,
            offset: decode_offset(req.page_token.as_deref())?,
        };
        if q.experiment_ids.is_empty() {
            return Ok(Page {
                items: Vec::new(),
                next_page_token: None,
            });
        }
        self.store.search_runs(&q).await
    }

    /// Pages through one metric's history.
    pub async fn metric_history(
        &self,
        run_id: &str,
        key: &str,
        max_results: Option<i64>,
        page_token: Option<&str>,
    ) -> CoreResult<Page<Metric>> {
        v::validate_run_id("run_id", run_id)?;
        if key.is_empty() {
            return Err(v::missing_value("metric_key"));
        }
        let max_results = max_results
            .map(|m| v::validate_max_results(m, v::MAX_METRIC_HISTORY_RESULTS))
            .transpose()?;
        self.store
            .metric_history(&MetricHistoryQuery {
                run_id: run_id.to_string(),
                key: key.to_string(),
                max_results,
                offset: decode_offset(page_token)?,
            })
            .await
    }

    /// Full history of one metric across up to 100 runs (the UI's bulk endpoint),
    /// ordered by run id then timestamp, step, value.
    pub async fn metric_history_bulk(
        &self,
        run_ids: &[String],
        key: &str,
        max_results: Option<i64>,
    ) -> CoreResult<Vec<Metric>> {
        self.check_bulk_runs(run_ids, key)?;
        let limit = max_results
            .map(|m| v::validate_max_results(m, v::MAX_METRIC_HISTORY_RESULTS))
            .transpose()?
            .unwrap_or(v::MAX_METRIC_HISTORY_RESULTS);
        let mut ids = run_ids.to_vec();
        ids.sort();
        ids.dedup();
        let mut out = Vec::new();
        for run_id in ids {
            let page = self
                .store
                .metric_history(&MetricHistoryQuery {
                    run_id: run_id.clone(),
                    key: key.to_string(),
                    max_results: Some(limit - out.len() as u64),
                    offset: 0,
                })
                .await?;
            out.extend(page.items.into_iter().map(|mut m| {
                m.run_id = Some(run_id.clone());
                m
            }));
            if out.len() as u64 >= limit {
                break;
            }
        }
        Ok(out)
    }

    fn check_bulk_runs(&self, run_ids: &[String], key: &str) -> CoreResult<()> {
        if run_ids.is_empty() {
            return Err(v::missing_value("run_ids"));
        }
        if run_ids.len() > MAX_RUNS_BULK_HISTORY {
            return Err(CoreError::invalid(format!(
                "GetMetricHistoryBulkInterval request must specify at most \
                 {MAX_RUNS_BULK_HISTORY} run_ids. Received {} run_ids.",
                run_ids.len()
            )));
        }
        if key.is_empty() {
            return Err(v::missing_value("metric_key"));
        }
        for id in run_ids {
            v::validate_run_id("run_ids", id)?;
        }
        Ok(())
    }

    /// Samples a metric evenly over steps for each run, keeping each run's first and last
    /// step so charts show the true range.
    pub async fn metric_history_bulk_interval(
        &self,
        req: BulkIntervalRequest,
    ) -> CoreResult<Vec<Metric>> {
        self.check_bulk_runs(&req.run_ids, &req.metric_key)?;
        let max_results = match req.max_results {
            None => MAX_RESULTS_PER_RUN,
            Some(m) if m >= 1 && m as u64 <= MAX_RESULTS_PER_RUN => m as u64,
            Some(_) => {
                return Err(CoreError::invalid(format!(
                    "max_results must be between 1 and {MAX_RESULTS_PER_RUN}."
                )))
            }
        };
        let range = match (req.start_step, req.end_step) {
            (Some(s), Some(e)) if s > e => {
                return Err(CoreError::invalid(format!(
                "end_step must be greater than start_step. Found start_step={s} and end_step={e}."
            )))
            }
            (Some(s), Some(e)) => Some((s, e)),
            (None, None) => None,
            _ => {
                return Err(CoreError::invalid(
                    "If either start step or end step are specified, both must be specified.",
                ))
            }
        };
        let mut per_run = Vec::with_capacity(req.run_ids.len());
        for run_id in &req.run_ids {
            // Existence check: an unknown run is an error, not an empty series.
            self.store.get_run(run_id).await?;
            per_run.push(self.store.metric_steps(run_id, &req.metric_key).await?);
        }
        let steps = sample_steps(&per_run, range, max_results as usize);
        let mut out = Vec::new();
        for run_id in &req.run_ids {
            let rows = self
                .store
                .metrics_at_steps(run_id, &req.metric_key, &steps)
                .await?;
            out.extend(rows.into_iter().map(|mut m| {
                m.run_id = Some(run_id.clone());
                m
            }));
        }
        Ok(out)
    }

    /// Records run inputs.
    pub async fn log_inputs(
        &self,
        run_id: &str,
        datasets: Vec<DatasetInput>,
        models: Vec<ModelInput>,
    ) -> CoreResult<()> {
        v::validate_run_id("run_id", run_id)?;
        for d in &datasets {
            validate_dataset_input(d)?;
        }
        self.store.log_inputs(run_id, &datasets, &models).await
    }

    /// Records run outputs.
    pub async fn log_outputs(&self, run_id: &str, models: Vec<ModelOutput>) -> CoreResult<()> {
        v::validate_run_id("run_id", run_id)?;
        self.store.log_outputs(run_id, &models).await
    }

    // ---- logged models -----------------------------------------------------------

    /// Creates a logged model in PENDING state.
    pub async fn create_logged_model(
        &self,
        req: CreateLoggedModelRequest,
    ) -> CoreResult<LoggedModel> {
        let experiment_id = parse_exp(&req.experiment_id)?;
        for (i, p) in req.params.iter().enumerate() {
            v::validate_param(&format!("params[{i}]"), p)?;
        }
        for (i, t) in req.tags.iter().enumerate() {
            v::validate_run_tag(&format!("tags[{i}]"), t)?;
        }
        if let Some(run) = &req.source_run_id {
            v::validate_run_id("source_run_id", run)?;
        }
        self.store
            .create_logged_model(NewLoggedModel {
                model_id: format!("m-{}", uuid::Uuid::new_v4().simple()),
                experiment_id,
                name: req
                    .name
                    .filter(|n| !n.is_empty())
                    .unwrap_or_else(generate_run_name),
                model_type: req.model_type,
                source_run_id: req.source_run_id.filter(|s| !s.is_empty()),
                tags: req.tags,
                params: req.params,
                now: now_millis(),
            })
            .await
    }

    /// Gets a logged model; deleted ones only when asked for explicitly.
    pub async fn get_logged_model(
        &self,
        model_id: &str,
        allow_deleted: bool,
    ) -> CoreResult<LoggedModel> {
        let model = self.store.get_logged_model(model_id).await?;
        if model.lifecycle_stage == LifecycleStage::Deleted && !allow_deleted {
            return Err(CoreError::not_found(format!(
                "Logged model with ID '{model_id}' not found."
            )));
        }
        Ok(model)
    }

    /// Sets a logged model's status (finalize).
    pub async fn finalize_logged_model(
        &self,
        model_id: &str,
        status: LoggedModelStatus,
    ) -> CoreResult<LoggedModel> {
        self.store
            .set_logged_model_status(model_id, status, now_millis())
            .await
    }

    /// Deletes a logged model.
    pub async fn delete_logged_model(&self, model_id: &str) -> CoreResult<()> {
        self.store.delete_logged_model(model_id, now_millis()).await
    }

    /// Sets tags on a logged model.
    pub async fn set_logged_model_tags(&self, model_id: &str, tags: Vec<Tag>) -> CoreResult<()> {
        for (i, t) in tags.iter().enumerate() {
            v::validate_run_tag(&format!("tags[{i}]"), t)?;
        }
        self.store.set_logged_model_tags(model_id, &tags).await
    }

    /// Deletes a logged-model tag.
    pub async fn delete_logged_model_tag(&self, model_id: &str, key: &str) -> CoreResult<()> {
        self.store.delete_logged_model_tag(model_id, key).await
    }

    /// Logs params on a logged model.
    pub async fn log_logged_model_params(
        &self,
        model_id: &str,
        params: Vec<Param>,
    ) -> CoreResult<()> {
        for (i, p) in params.iter().enumerate() {
            v::validate_param(&format!("params[{i}]"), p)?;
        }
        self.store.log_logged_model_params(model_id, &params).await
    }

    /// Searches logged models.
    pub async fn search_logged_models(
        &self,
        req: SearchLoggedModelsRequest,
    ) -> CoreResult<Page<LoggedModel>> {
        let max_results = v::validate_max_results(req.max_results.unwrap_or(100), 50_000)?;
        let q = LoggedModelSearch {
            experiment_ids: parse_exps(&req.experiment_ids)?,
            filter: parse_filter(
                SearchKind::LoggedModels,
                req.filter.as_deref().unwrap_or(""),
            )?,
            order_by: unique_order_by(parse_order_by(SearchKind::LoggedModels, &req.order_by)?)?,
            max_results,
            offset: decode_offset(req.page_token.as_deref())?,
        };
        if q.experiment_ids.is_empty() {
            return Err(v::missing_value("experiment_ids"));
        }
        self.store.search_logged_models(&q).await
    }
}

/// Sorting twice by one key is contradictory (`x ASC, x DESC`); MLflow rejects it too.
fn unique_order_by(keys: Vec<OrderBy>) -> CoreResult<Vec<OrderBy>> {
    for (i, k) in keys.iter().enumerate() {
        if keys[..i].iter().any(|prev| prev.field == k.field) {
            return Err(CoreError::invalid(format!(
                "`order_by` contains duplicate fields: {:?}",
                k.field
            )));
        }
    }
    Ok(keys)
}

/// MLflow truncates over-long param and tag values rather than failing the request
/// (`MLFLOW_TRUNCATE_LONG_VALUES`, on by default).
fn truncate_chars(value: &mut String, limit: usize) {
    if value.len() > limit {
        if let Some((idx, _)) = value.char_indices().nth(limit) {
            value.truncate(idx);
        }
    }
}

fn truncate_batch(batch: &mut LogBatch) {
    for p in &mut batch.params {
        truncate_chars(&mut p.value, v::MAX_PARAM_VAL_LENGTH);
    }
    for t in &mut batch.tags {
        truncate_chars(&mut t.value, v::MAX_TAG_VAL_LENGTH);
    }
}

fn validate_dataset_input(d: &DatasetInput) -> CoreResult<()> {
    let ds = &d.dataset;
    if ds.name.is_empty() {
        return Err(v::missing_value("dataset.name"));
    }
    if ds.digest.is_empty() {
        return Err(v::missing_value("dataset.digest"));
    }
    v::check_length("Dataset name", v::MAX_DATASET_NAME_SIZE, &ds.name)?;
    v::check_length("Dataset digest", v::MAX_DATASET_DIGEST_SIZE, &ds.digest)?;
    v::check_length("Dataset source", v::MAX_DATASET_SOURCE_SIZE, &ds.source)?;
    if let Some(s) = &ds.schema {
        v::check_length("Dataset schema", v::MAX_DATASET_SCHEMA_SIZE, s)?;
    }
    if let Some(p) = &ds.profile {
        v::check_length("Dataset profile", v::MAX_DATASET_PROFILE_SIZE, p)?;
    }
    for t in &d.tags {
        v::check_length("Input tag key", v::MAX_INPUT_TAG_KEY_SIZE, &t.key)?;
        v::check_length("Input tag value", v::MAX_INPUT_TAG_VALUE_SIZE, &t.value)?;
    }
    Ok(())
}

/// Chooses which steps a bulk-interval response carries: up to `max_results` steps spread
/// evenly over the union of all runs' steps in range, plus each run's first and last step.
pub fn sample_steps(
    per_run: &[Vec<i64>],
    range: Option<(i64, i64)>,
    max_results: usize,
) -> Vec<i64> {
    let mut all: Vec<i64> = per_run.iter().flatten().copied().collect();
    all.sort_unstable();
    all.dedup();
    let (lo, hi) = range.unwrap_or((0, all.last().copied().unwrap_or(0)));
    let in_range: Vec<i64> = all.into_iter().filter(|s| (lo..=hi).contains(s)).collect();
    // Evenly spaced indices that always include the first and last step, so the
    // result never exceeds `max_results` for a single run.
    let n = in_range.len();
    let mut chosen: Vec<i64> = if n <= max_results.max(1) {
        in_range.clone()
    } else if max_results <= 1 {
        in_range.last().copied().into_iter().collect()
    } else {
        (0..max_results)
            .filter_map(|i| in_range.get(i * (n - 1) / (max_results - 1)).copied())
            .collect()
    };
    for steps in per_run {
        for edge in [steps.iter().min(), steps.iter().max()]
            .into_iter()
            .flatten()
        {
            if (lo..=hi).contains(edge) {
                chosen.push(*edge);
            }
        }
    }
    chosen.sort_unstable();
    chosen.dedup();
    chosen
}

const ADJECTIVES: &[&str] = &[
    "amber", "bold", "brisk", "calm", "clever", "crisp", "dapper", "eager", "fleet", "gentle",
    "glad", "grand", "hardy", "keen", "lively", "lucid", "merry", "nimble", "placid", "proud",
    "quiet", "rapid", "silent", "steady", "sunny", "swift", "tidy", "vivid", "wise", "zesty",
];
const NOUNS: &[&str] = &[
    "badger", "bison", "crane", "falcon", "ferret", "finch", "fox", "gecko", "heron", "ibex",
    "lark", "lynx", "marten", "moose", "newt", "otter", "owl", "panda", "puffin", "quail", "raven",
    "robin", "seal", "shrew", "stoat", "swan", "tern", "toad", "vole", "wren",
];

/// A readable random run name such as `brisk-otter-417`.
pub fn generate_run_name() -> String {
    let bytes = *uuid::Uuid::new_v4().as_bytes();
    let a = ADJECTIVES[bytes[0] as usize % ADJECTIVES.len()];
    let n = NOUNS[bytes[1] as usize % NOUNS.len()];
    let num = u16::from_le_bytes([bytes[2], bytes[3]]) % 1000;
    format!("{a}-{n}-{num}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sampling_keeps_edges_and_bounds() {
        let run: Vec<i64> = (0..1000).collect();
        let s = sample_steps(std::slice::from_ref(&run), None, 10);
        assert!(s.len() <= 12, "{s:?}");
        assert_eq!(s.first(), Some(&0));
        assert_eq!(s.last(), Some(&999));
        let s = sample_steps(std::slice::from_ref(&run), Some((100, 200)), 1000);
        assert_eq!(s.len(), 101);
        let short = vec![5, 7];
        let s = sample_steps(&[run, short], None, 3);
        assert!(s.contains(&5) && s.contains(&7));
    }

    #[test]
    fn run_names_look_right() {
        let n = generate_run_name();
        assert_eq!(n.split('-').count(), 3);
    }
}
