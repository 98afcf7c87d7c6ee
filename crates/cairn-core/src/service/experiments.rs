//! Experiment operations.

use super::*;

impl TrackingService {
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
}
