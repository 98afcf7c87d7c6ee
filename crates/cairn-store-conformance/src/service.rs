//! The tracking service over the store under test, for rules that span the service and
//! the store (the service settles a value, the store must persist it consistently).

use cairn_core::service::{CreateRunRequest, TrackingConfig, TrackingService, RUN_NAME_TAG};

use crate::support::*;
use crate::Store;

/// Whatever combination of `run_name` argument and `mlflow.runName` tag a client sends,
/// the run gets one non-empty name, reported identically by create_run and get_run and
/// mirrored in the `mlflow.runName` tag (MLflow treats empty values as absent).
pub async fn service_run_name_is_consistent(store: Store) {
    let svc = TrackingService::new(
        store,
        TrackingConfig {
            default_artifact_root: ARTIFACT_ROOT.into(),
        },
    );
    svc.init().await.must("service init");
    let cases: [(Option<&str>, Option<&str>, Option<&str>); 6] = [
        (Some("arg"), None, Some("arg")),
        (None, Some("tagged"), Some("tagged")),
        (Some("same"), Some("same"), Some("same")),
        (None, None, None),
        (Some(""), None, None),
        (None, Some(""), None),
    ];
    for (arg, tag_value, want) in cases {
        let ctx = format!("run_name={arg:?}, mlflow.runName tag={tag_value:?}");
        let created = svc
            .create_run(CreateRunRequest {
                experiment_id: Some("0".into()),
                run_name: arg.map(String::from),
                tags: tag_value
                    .map(|v| vec![tag(RUN_NAME_TAG, v)])
                    .unwrap_or_default(),
                ..CreateRunRequest::default()
            })
            .await
            .must(format_args!("create_run({ctx})"));
        let name = created.info.run_name.clone();
        assert!(!name.is_empty(), "{ctx}: the run must get a non-empty name");
        if let Some(w) = want {
            assert_eq!(name, w, "{ctx}: settled name");
        }
        let fetched = svc
            .get_run(&created.info.run_id)
            .await
            .must(format_args!("get_run({ctx})"));
        assert_eq!(
            fetched.info.run_name, name,
            "{ctx}: get_run must report the name create_run returned"
        );
        assert_eq!(
            tag_map(&created.data.tags).get(RUN_NAME_TAG),
            Some(&name),
            "{ctx}: create_run's mlflow.runName tag must equal its run_name"
        );
        assert_eq!(
            tag_map(&fetched.data.tags).get(RUN_NAME_TAG),
            Some(&name),
            "{ctx}: get_run's mlflow.runName tag must equal the run name"
        );
    }
}
