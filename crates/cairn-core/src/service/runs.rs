//! Run, metric, param, tag, input and output operations.

use super::*;

impl TrackingService {
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
            // metric_steps fails for an unknown run: an error, not an empty series.
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
}
