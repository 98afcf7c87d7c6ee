//! Runs: create, get, update, delete/restore.

use cairn_core::model::{LifecycleStage, RunStatus};
use cairn_core::service::RUN_NAME_TAG;
use cairn_core::store::{ArtifactLocation, NewRun, RunUpdate};
use cairn_core::CoreError;

use crate::support::*;
use crate::Store;

/// A run created in an active experiment comes back complete, from `create_run` and
/// from `get_run` alike.
pub async fn run_create(store: Store) {
    prepare(&*store).await;
    let exp = new_experiment_with(
        &*store,
        "runs",
        ArtifactLocation::Explicit("s3://bucket/exp/".into()),
        Vec::new(),
        T0,
    )
    .await;
    let new = NewRun {
        run_id: fresh_id(),
        experiment_id: exp,
        run_name: "my-run".into(),
        user_id: "ana".into(),
        start_time: Some(T0 + 10),
        tags: vec![
            tag("team", "ml"),
            tag(RUN_NAME_TAG, "my-run"),
            tag("mlflow.source.type", "LOCAL"),
        ],
    };
    let created = store.create_run(new.clone()).await.must("create_run");
    let info = &created.info;
    assert_eq!(info.run_id, new.run_id, "run_id is the one given");
    assert_eq!(info.experiment_id, exp.to_string());
    assert_eq!(info.run_name, "my-run");
    assert_eq!(info.user_id, "ana");
    assert_eq!(info.status, RunStatus::Running, "new runs are RUNNING");
    assert_eq!(info.start_time, Some(T0 + 10));
    assert_eq!(info.end_time, None, "new runs have no end_time");
    assert_eq!(info.lifecycle_stage, LifecycleStage::Active);
    assert_eq!(
        info.artifact_uri,
        format!("s3://bucket/exp/{}/artifacts", new.run_id),
        "artifact_uri is <experiment location>/<run_id>/artifacts"
    );
    assert_eq!(
        tag_map(&created.data.tags),
        tag_map(&new.tags),
        "create_run returns the tags it was given"
    );
    assert!(created.data.metrics.is_empty(), "no metrics yet");
    assert!(created.data.params.is_empty(), "no params yet");
    assert!(created.inputs.dataset_inputs.is_empty() && created.inputs.model_inputs.is_empty());
    assert!(created.outputs.model_outputs.is_empty());

    let fetched = store.get_run(&new.run_id).await.must("get_run");
    assert_eq!(fetched.info, created.info, "get_run agrees with create_run");
    assert_eq!(
        tag_map(&fetched.data.tags),
        tag_map(&created.data.tags),
        "get_run returns the same tags"
    );

    // Optional start time.
    let mut no_start = new_run(exp, "no-start", T0);
    no_start.start_time = None;
    let run = store
        .create_run(no_start)
        .await
        .must("create_run without start_time");
    assert_eq!(run.info.start_time, None);
    let fetched = store.get_run(&run.info.run_id).await.must("get_run");
    assert_eq!(
        fetched.info.start_time, None,
        "a missing start_time stays missing"
    );

    // Many runs in one experiment keep their own identities.
    let a = create_run(&*store, exp, "same-name").await;
    let b = create_run(&*store, exp, "same-name").await;
    assert_ne!(a.info.run_id, b.info.run_id, "run names need not be unique");
}

/// create_run in a missing experiment is NotFound, in a deleted one InvalidParameter;
/// get_run of an unknown id is NotFound.
pub async fn run_create_errors(store: Store) {
    prepare(&*store).await;
    let exp = new_experiment(&*store, "errors").await;
    let missing = new_run(exp + 10_000, "x", T0);
    let missing_id = missing.run_id.clone();
    assert_err!(
        store.create_run(missing).await,
        CoreError::NotFound(_),
        "create_run in an unknown experiment"
    );
    assert_err!(
        store.get_run(&missing_id).await,
        CoreError::NotFound(_),
        "the refused run must not exist"
    );

    store
        .set_experiment_lifecycle(exp, LifecycleStage::Deleted, T0 + 1)
        .await
        .must("delete experiment");
    let deleted = new_run(exp, "x", T0);
    let deleted_id = deleted.run_id.clone();
    assert_err!(
        store.create_run(deleted).await,
        CoreError::InvalidParameter(_),
        "create_run in a deleted experiment"
    );
    assert_err!(
        store.get_run(&deleted_id).await,
        CoreError::NotFound(_),
        "the refused run must not exist"
    );
    assert_err!(
        store.get_run(&fresh_id()).await,
        CoreError::NotFound(_),
        "get_run of an unknown id"
    );
}

/// update_run sets status, end_time and name (also rewriting `mlflow.runName`), leaves
/// unspecified fields alone and returns what get_run then shows.
pub async fn run_update(store: Store) {
    prepare(&*store).await;
    let exp = new_experiment(&*store, "update").await;
    let run = create_run(&*store, exp, "original").await;
    let id = run.info.run_id.clone();

    let info = store
        .update_run(&RunUpdate {
            run_id: id.clone(),
            status: None,
            end_time: None,
            run_name: None,
        })
        .await
        .must("empty update_run");
    assert_eq!(info, run.info, "an update with nothing set changes nothing");

    let info = store
        .update_run(&RunUpdate {
            run_id: id.clone(),
            status: Some(RunStatus::Finished),
            end_time: Some(T0 + 500),
            run_name: None,
        })
        .await
        .must("update_run status+end_time");
    assert_eq!(info.status, RunStatus::Finished);
    assert_eq!(info.end_time, Some(T0 + 500));
    assert_eq!(info.run_name, "original", "name untouched when not given");
    assert_eq!(info.start_time, run.info.start_time, "start_time untouched");
    let fetched = store.get_run(&id).await.must("get_run");
    assert_eq!(fetched.info, info, "update_run returns what get_run shows");

    let info = store
        .update_run(&RunUpdate {
            run_id: id.clone(),
            status: None,
            end_time: None,
            run_name: Some("renamed".into()),
        })
        .await
        .must("update_run run_name");
    assert_eq!(info.run_name, "renamed");
    assert_eq!(info.status, RunStatus::Finished, "status kept");
    assert_eq!(info.end_time, Some(T0 + 500), "end_time kept");
    let fetched = store.get_run(&id).await.must("get_run");
    assert_eq!(fetched.info.run_name, "renamed");
    assert_eq!(
        tag_map(&fetched.data.tags)
            .get(RUN_NAME_TAG)
            .map(String::as_str),
        Some("renamed"),
        "renaming a run rewrites its mlflow.runName tag"
    );

    // Every status can be set, including going back to RUNNING.
    for status in RunStatus::ALL {
        let info = store
            .update_run(&RunUpdate {
                run_id: id.clone(),
                status: Some(status),
                end_time: None,
                run_name: None,
            })
            .await
            .must(format_args!("update_run to {status}"));
        assert_eq!(info.status, status);
        assert_eq!(
            store.get_run(&id).await.must("get_run").info.status,
            status,
            "status {status} persisted"
        );
    }

    assert_err!(
        store
            .update_run(&RunUpdate {
                run_id: fresh_id(),
                status: Some(RunStatus::Failed),
                end_time: None,
                run_name: None,
            })
            .await,
        CoreError::NotFound(_),
        "update_run of an unknown run"
    );
}

/// Soft delete and restore; a deleted run refuses updates and writes.
pub async fn run_delete_restore(store: Store) {
    prepare(&*store).await;
    let exp = new_experiment(&*store, "delete").await;
    let run = create_run(&*store, exp, "doomed").await;
    let id = run.info.run_id.clone();
    log(
        &*store,
        &id,
        batch(vec![metric("m", 1.0, T0, 0)], vec![param("p", "1")], vec![]),
    )
    .await;

    store
        .set_run_lifecycle(&id, LifecycleStage::Deleted, T0 + 1)
        .await
        .must("delete run");
    let fetched = store
        .get_run(&id)
        .await
        .must("get_run works on deleted runs");
    assert_eq!(fetched.info.lifecycle_stage, LifecycleStage::Deleted);
    assert_eq!(
        fetched.data.params.len(),
        1,
        "a soft-deleted run keeps its data"
    );
    assert_eq!(
        fetched.data.metrics.len(),
        1,
        "a soft-deleted run keeps its data"
    );

    assert!(
        store
            .update_run(&RunUpdate {
                run_id: id.clone(),
                status: Some(RunStatus::Finished),
                end_time: Some(T0 + 2),
                run_name: Some("zombie".into()),
            })
            .await
            .is_err(),
        "update_run of a deleted run must fail"
    );
    let fetched = store.get_run(&id).await.must("get_run");
    assert_eq!(
        fetched.info.status,
        RunStatus::Running,
        "refused update changed nothing"
    );
    assert_eq!(
        fetched.info.run_name, "doomed",
        "refused update changed nothing"
    );

    store
        .set_run_lifecycle(&id, LifecycleStage::Active, T0 + 3)
        .await
        .must("restore run");
    let fetched = store.get_run(&id).await.must("get_run");
    assert_eq!(fetched.info.lifecycle_stage, LifecycleStage::Active);
    log(
        &*store,
        &id,
        batch(vec![metric("m", 2.0, T0, 1)], vec![], vec![]),
    )
    .await;
    store
        .update_run(&RunUpdate {
            run_id: id.clone(),
            status: Some(RunStatus::Finished),
            end_time: Some(T0 + 4),
            run_name: None,
        })
        .await
        .must("update_run after restore");

    assert_err!(
        store
            .set_run_lifecycle(&fresh_id(), LifecycleStage::Deleted, T0)
            .await,
        CoreError::NotFound(_),
        "deleting an unknown run"
    );
    assert_err!(
        store
            .set_run_lifecycle(&fresh_id(), LifecycleStage::Active, T0)
            .await,
        CoreError::NotFound(_),
        "restoring an unknown run"
    );
}
