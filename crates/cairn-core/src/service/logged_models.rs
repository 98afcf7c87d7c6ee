//! MLflow 3 logged-model operations.

use super::*;

impl TrackingService {
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
