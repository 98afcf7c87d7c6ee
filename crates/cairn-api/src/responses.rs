//! Response bodies in MLflow's JSON shape: snake_case, int64 as numbers, NaN and
//! infinities as strings, empty lists and unset fields omitted as protobuf-JSON does.

use cairn_core::model::{DatasetInput, Experiment, LoggedModel, Metric, Param, Run, RunInfo, Tag};
use serde::{Serialize, Serializer};

/// A double that may be NaN or infinite: JSON has no literal for those.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Double(pub f64);

impl Serialize for Double {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let v = self.0;
        if v.is_nan() {
            s.serialize_str("NaN")
        } else if v == f64::INFINITY {
            s.serialize_str("Infinity")
        } else if v == f64::NEG_INFINITY {
            s.serialize_str("-Infinity")
        } else {
            s.serialize_f64(v)
        }
    }
}

/// `{key, value}`.
#[derive(Debug, Clone, Serialize)]
pub struct KeyValueOut {
    /// Key.
    pub key: String,
    /// Value.
    pub value: String,
}

impl From<&Tag> for KeyValueOut {
    fn from(t: &Tag) -> Self {
        Self {
            key: t.key.clone(),
            value: t.value.clone(),
        }
    }
}

impl From<&Param> for KeyValueOut {
    fn from(p: &Param) -> Self {
        Self {
            key: p.key.clone(),
            value: p.value.clone(),
        }
    }
}

fn kvs<'a, T: 'a>(items: impl IntoIterator<Item = &'a T>) -> Vec<KeyValueOut>
where
    KeyValueOut: From<&'a T>,
{
    items.into_iter().map(KeyValueOut::from).collect()
}

/// A metric.
#[derive(Debug, Clone, Serialize)]
pub struct MetricOut {
    /// Key.
    pub key: String,
    /// Value.
    pub value: Double,
    /// Timestamp, ms.
    pub timestamp: i64,
    /// Step.
    pub step: i64,
    /// Run id (bulk history and logged-model metrics).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run_id: Option<String>,
    /// Logged model id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model_id: Option<String>,
    /// Dataset name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dataset_name: Option<String>,
    /// Dataset digest.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dataset_digest: Option<String>,
}

impl From<&Metric> for MetricOut {
    fn from(m: &Metric) -> Self {
        Self {
            key: m.key.clone(),
            value: Double(m.value),
            timestamp: m.timestamp,
            step: m.step,
            run_id: m.run_id.clone(),
            model_id: m.model_id.clone(),
            dataset_name: m.dataset_name.clone(),
            dataset_digest: m.dataset_digest.clone(),
        }
    }
}

/// An experiment.
#[derive(Debug, Clone, Serialize)]
pub struct ExperimentOut {
    /// Id.
    pub experiment_id: String,
    /// Name.
    pub name: String,
    /// Artifact location.
    pub artifact_location: String,
    /// `active` / `deleted`.
    pub lifecycle_stage: &'static str,
    /// Last update, ms.
    pub last_update_time: i64,
    /// Creation, ms.
    pub creation_time: i64,
    /// Tags.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<KeyValueOut>,
}

impl From<&Experiment> for ExperimentOut {
    fn from(e: &Experiment) -> Self {
        Self {
            experiment_id: e.experiment_id.clone(),
            name: e.name.clone(),
            artifact_location: e.artifact_location.clone(),
            lifecycle_stage: e.lifecycle_stage.as_str(),
            last_update_time: e.last_update_time,
            creation_time: e.creation_time,
            tags: kvs(&e.tags),
        }
    }
}

/// Run metadata, with both `run_id` and the legacy `run_uuid`.
#[derive(Debug, Clone, Serialize)]
pub struct RunInfoOut {
    /// Id.
    pub run_id: String,
    /// Legacy id (same value).
    pub run_uuid: String,
    /// Name.
    pub run_name: String,
    /// Experiment.
    pub experiment_id: String,
    /// User.
    pub user_id: String,
    /// Status.
    pub status: &'static str,
    /// Start, ms.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start_time: Option<i64>,
    /// End, ms.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub end_time: Option<i64>,
    /// Artifact URI.
    pub artifact_uri: String,
    /// Lifecycle.
    pub lifecycle_stage: &'static str,
}

impl From<&RunInfo> for RunInfoOut {
    fn from(i: &RunInfo) -> Self {
        Self {
            run_id: i.run_id.clone(),
            run_uuid: i.run_id.clone(),
            run_name: i.run_name.clone(),
            experiment_id: i.experiment_id.clone(),
            user_id: i.user_id.clone(),
            status: i.status.as_str(),
            start_time: i.start_time,
            end_time: i.end_time,
            artifact_uri: i.artifact_uri.clone(),
            lifecycle_stage: i.lifecycle_stage.as_str(),
        }
    }
}

/// Run data.
#[derive(Debug, Clone, Serialize)]
pub struct RunDataOut {
    /// Latest metrics.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub metrics: Vec<MetricOut>,
    /// Params.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub params: Vec<KeyValueOut>,
    /// Tags.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<KeyValueOut>,
}

/// A dataset.
#[derive(Debug, Clone, Serialize)]
pub struct DatasetOut {
    /// Name.
    pub name: String,
    /// Digest.
    pub digest: String,
    /// Source type.
    pub source_type: String,
    /// Source.
    pub source: String,
    /// Schema.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub schema: Option<String>,
    /// Profile.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub profile: Option<String>,
}

/// A dataset input.
#[derive(Debug, Clone, Serialize)]
pub struct DatasetInputOut {
    /// Input tags.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<KeyValueOut>,
    /// Dataset.
    pub dataset: DatasetOut,
}

impl From<&DatasetInput> for DatasetInputOut {
    fn from(d: &DatasetInput) -> Self {
        let ds = &d.dataset;
        Self {
            tags: kvs(&d.tags),
            dataset: DatasetOut {
                name: ds.name.clone(),
                digest: ds.digest.clone(),
                source_type: ds.source_type.clone(),
                source: ds.source.clone(),
                schema: ds.schema.clone(),
                profile: ds.profile.clone(),
            },
        }
    }
}

/// `{model_id}` or `{model_id, step}`.
#[derive(Debug, Clone, Serialize)]
pub struct ModelRefOut {
    /// Model id.
    pub model_id: String,
    /// Step (outputs only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub step: Option<i64>,
}

/// Run inputs.
#[derive(Debug, Clone, Serialize)]
pub struct RunInputsOut {
    /// Datasets.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub dataset_inputs: Vec<DatasetInputOut>,
    /// Models.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub model_inputs: Vec<ModelRefOut>,
}

/// Run outputs.
#[derive(Debug, Clone, Serialize)]
pub struct RunOutputsOut {
    /// Models.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub model_outputs: Vec<ModelRefOut>,
}

/// A run.
#[derive(Debug, Clone, Serialize)]
pub struct RunOut {
    /// Metadata.
    pub info: RunInfoOut,
    /// Data.
    pub data: RunDataOut,
    /// Inputs.
    pub inputs: RunInputsOut,
    /// Outputs.
    pub outputs: RunOutputsOut,
}

impl From<&Run> for RunOut {
    fn from(r: &Run) -> Self {
        Self {
            info: RunInfoOut::from(&r.info),
            data: RunDataOut {
                metrics: r.data.metrics.iter().map(MetricOut::from).collect(),
                params: kvs(&r.data.params),
                tags: kvs(&r.data.tags),
            },
            inputs: RunInputsOut {
                dataset_inputs: r.inputs.dataset_inputs.iter().map(Into::into).collect(),
                model_inputs: r
                    .inputs
                    .model_inputs
                    .iter()
                    .map(|m| ModelRefOut {
                        model_id: m.model_id.clone(),
                        step: None,
                    })
                    .collect(),
            },
            outputs: RunOutputsOut {
                model_outputs: r
                    .outputs
                    .model_outputs
                    .iter()
                    .map(|m| ModelRefOut {
                        model_id: m.model_id.clone(),
                        step: Some(m.step),
                    })
                    .collect(),
            },
        }
    }
}

/// Logged-model metadata.
#[derive(Debug, Clone, Serialize)]
pub struct LoggedModelInfoOut {
    /// Id.
    pub model_id: String,
    /// Experiment.
    pub experiment_id: String,
    /// Name.
    pub name: String,
    /// Created, ms.
    pub creation_timestamp_ms: i64,
    /// Updated, ms.
    pub last_updated_timestamp_ms: i64,
    /// Artifact URI.
    pub artifact_uri: String,
    /// Status.
    pub status: &'static str,
    /// Model type.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model_type: Option<String>,
    /// Source run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source_run_id: Option<String>,
    /// Status message.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status_message: Option<String>,
    /// Tags.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<KeyValueOut>,
}

/// Logged-model data.
#[derive(Debug, Clone, Serialize)]
pub struct LoggedModelDataOut {
    /// Params.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub params: Vec<KeyValueOut>,
    /// Metrics.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub metrics: Vec<MetricOut>,
}

/// A logged model.
#[derive(Debug, Clone, Serialize)]
pub struct LoggedModelOut {
    /// Metadata.
    pub info: LoggedModelInfoOut,
    /// Data.
    pub data: LoggedModelDataOut,
}

impl From<&LoggedModel> for LoggedModelOut {
    fn from(m: &LoggedModel) -> Self {
        Self {
            info: LoggedModelInfoOut {
                model_id: m.model_id.clone(),
                experiment_id: m.experiment_id.clone(),
                name: m.name.clone(),
                creation_timestamp_ms: m.creation_timestamp,
                last_updated_timestamp_ms: m.last_updated_timestamp,
                artifact_uri: m.artifact_uri.clone(),
                status: m.status.as_str(),
                model_type: m.model_type.clone(),
                source_run_id: m.source_run_id.clone(),
                status_message: m.status_message.clone(),
                tags: kvs(&m.tags),
            },
            data: LoggedModelDataOut {
                params: kvs(&m.params),
                metrics: m.metrics.iter().map(MetricOut::from).collect(),
            },
        }
    }
}

/// A page of metrics (`metrics/get-history` and the bulk endpoints), serialised directly
/// rather than through a JSON DOM: histories can hold 100k points.
#[derive(Debug, Clone, Serialize)]
pub struct MetricsPage {
    /// The metrics.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub metrics: Vec<MetricOut>,
    /// Next page, absent on the last one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_page_token: Option<String>,
}

/// A page of runs.
#[derive(Debug, Clone, Serialize)]
pub struct RunsPage {
    /// The runs.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub runs: Vec<RunOut>,
    /// Next page, absent on the last one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_page_token: Option<String>,
}

/// A page of experiments.
#[derive(Debug, Clone, Serialize)]
pub struct ExperimentsPage {
    /// The experiments.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub experiments: Vec<ExperimentOut>,
    /// Next page, absent on the last one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_page_token: Option<String>,
}

/// A page of logged models.
#[derive(Debug, Clone, Serialize)]
pub struct LoggedModelsPage {
    /// The models (always present, as MLflow sends it).
    pub models: Vec<LoggedModelOut>,
    /// Next page, absent on the last one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_page_token: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_finite_doubles_are_strings() {
        let s = |v: f64| serde_json::to_string(&Double(v)).unwrap_or_default();
        assert_eq!(s(f64::NAN), "\"NaN\"");
        assert_eq!(s(f64::INFINITY), "\"Infinity\"");
        assert_eq!(s(f64::NEG_INFINITY), "\"-Infinity\"");
        assert_eq!(s(1.5), "1.5");
    }
}
