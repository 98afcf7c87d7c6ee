//! `cairn gc`'s store half: which deleted entities qualify, and purging them for good.

use cairn_core::model::{Dataset, DatasetInput, LifecycleStage, ModelOutput};
use cairn_core::store::{GcCandidates, GcQuery, NewLoggedModel};
use cairn_core::CoreError;

use crate::support::*;
use crate::Store;

fn ids(items: &[cairn_core::store::GcItem]) -> Vec<&str> {
    items.iter().map(|i| i.id.as_str()).collect()
}

async fn model(store: &Store, experiment_id: i64, name: &str, run_id: &str) -> String {
    let model_id = format!("m-{}", fresh_id());
    store
        .create_logged_model(NewLoggedModel {
            model_id: model_id.clone(),
            experiment_id,
            name: name.into(),
            model_type: None,
            source_run_id: Some(run_id.into()),
            tags: vec![tag("t", "v")],
            params: vec![param("p", "1")],
            now: T0,
        })
        .await
        .must("create_logged_model");
    model_id
}

async fn populate(store: &Store, run_id: &str) {
    log(
        store.as_ref(),
        run_id,
        batch(
            vec![metric("loss", 0.5, T0, 0), metric("loss", 0.25, T0 + 1, 1)],
            vec![param("lr", "0.1")],
            vec![tag("team", "a")],
        ),
    )
    .await;
    let input = DatasetInput {
        tags: vec![tag("mlflow.data.context", "train")],
        dataset: Dataset {
            name: "ds".into(),
            digest: run_id[..8].into(),
            source_type: "local".into(),
            source: "{}".into(),
            schema: None,
            profile: None,
        },
    };
    store
        .log_inputs(run_id, &[input], &[])
        .await
        .must("log_inputs");
}

/// Only deleted entities qualify, filtered by deletion time, experiment and run; a purge
/// removes the entity and everything it owns, refuses entities that are not deleted, and
/// leaves the rest untouched.
pub async fn gc_purges_deleted_entities_only(store: Store) {
    let keep = new_experiment(store.as_ref(), "gc-keep").await;
    let doomed = new_experiment(store.as_ref(), "gc-doomed").await;
    let active = create_run(store.as_ref(), keep, "active").await.info.run_id;
    let deleted = create_run(store.as_ref(), keep, "deleted")
        .await
        .info
        .run_id;
    let in_doomed = create_run(store.as_ref(), doomed, "in-doomed")
        .await
        .info
        .run_id;
    for run in [&active, &deleted, &in_doomed] {
        populate(&store, run).await;
    }
    let live_model = model(&store, keep, "live", &active).await;
    let dead_model = model(&store, keep, "dead", &active).await;
    let doomed_model = model(&store, doomed, "doomed", &in_doomed).await;
    store
        .log_outputs(
            &active,
            &[ModelOutput {
                model_id: dead_model.clone(),
                step: 0,
            }],
        )
        .await
        .must("log_outputs");

    store
        .set_run_lifecycle(&deleted, LifecycleStage::Deleted, T0 + 10)
        .await
        .must("delete run");
    store
        .set_experiment_lifecycle(doomed, LifecycleStage::Deleted, T0 + 20)
        .await
        .must("delete experiment");
    store
        .delete_logged_model(&dead_model, T0 + 30)
        .await
        .must("delete model");

    let all = store
        .gc_candidates(&GcQuery::default())
        .await
        .must("candidates");
    assert_eq!(ids(&all.experiments), vec![doomed.to_string().as_str()]);
    assert_eq!(
        ids(&all.runs),
        vec![deleted.as_str()],
        "runs of a purged experiment go with it"
    );
    assert_eq!(ids(&all.logged_models), vec![dead_model.as_str()]);
    assert!(all.runs[0]
        .artifact_uri
        .ends_with(&format!("{deleted}/artifacts")));

    let early = store
        .gc_candidates(&GcQuery {
            deleted_before: Some(T0 + 15),
            ..GcQuery::default()
        })
        .await
        .must("candidates before T0+15");
    assert_eq!(
        (
            ids(&early.experiments),
            ids(&early.runs),
            ids(&early.logged_models)
        ),
        (vec![], vec![deleted.as_str()], vec![]),
        "only what was deleted by then"
    );
    let by_run = store
        .gc_candidates(&GcQuery {
            run_ids: vec![active.clone(), deleted.clone()],
            ..GcQuery::default()
        })
        .await
        .must("candidates by run");
    assert_eq!(
        by_run,
        GcCandidates {
            experiments: vec![],
            runs: all.runs.clone(),
            logged_models: vec![],
        }
    );
    let by_experiment = store
        .gc_candidates(&GcQuery {
            experiment_ids: vec![keep],
            ..GcQuery::default()
        })
        .await
        .must("candidates by experiment");
    assert_eq!(ids(&by_experiment.experiments), Vec::<&str>::new());
    assert_eq!(ids(&by_experiment.runs), vec![deleted.as_str()]);

    // Not deleted: refused, untouched.
    assert!(!store.purge_run(&active).await.must("purge active run"));
    assert!(!store
        .purge_experiment(keep)
        .await
        .must("purge active experiment"));
    assert!(!store
        .purge_logged_model(&live_model)
        .await
        .must("purge live model"));
    assert!(!store.purge_experiment(0).await.must("purge Default"));

    assert!(store.purge_run(&deleted).await.must("purge run"));
    assert!(store
        .purge_logged_model(&dead_model)
        .await
        .must("purge model"));
    assert!(store
        .purge_experiment(doomed)
        .await
        .must("purge experiment"));
    // A second purge finds nothing.
    assert!(!store.purge_run(&deleted).await.must("purge run again"));

    assert_err!(
        store.get_run(&deleted).await,
        CoreError::NotFound(_),
        "purged run"
    );
    assert_err!(
        store.get_run(&in_doomed).await,
        CoreError::NotFound(_),
        "run of purged experiment"
    );
    assert_err!(
        store.get_experiment(doomed).await,
        CoreError::NotFound(_),
        "purged experiment"
    );
    assert_err!(
        store.get_logged_model(&dead_model).await,
        CoreError::NotFound(_),
        "purged model"
    );
    assert_err!(
        store.get_logged_model(&doomed_model).await,
        CoreError::NotFound(_),
        "model of purged experiment"
    );
    let left = store
        .gc_candidates(&GcQuery::default())
        .await
        .must("candidates after purge");
    assert_eq!(left, GcCandidates::default());

    // The survivors are whole.
    let run = store.get_run(&active).await.must("active run");
    assert_eq!(run.data.params.len(), 1);
    assert_eq!(run.data.metrics.len(), 1);
    assert_eq!(run.inputs.dataset_inputs.len(), 1);
    assert!(
        run.outputs.model_outputs.is_empty(),
        "the purged model is no longer a run output"
    );
    let history = store
        .metric_history(&cairn_core::store::MetricHistoryQuery {
            run_id: active.clone(),
            key: "loss".into(),
            max_results: None,
            offset: 0,
        })
        .await
        .must("history of the active run");
    assert_eq!(history.items.len(), 2);
    store.get_logged_model(&live_model).await.must("live model");
    // The doomed experiment's name is free again.
    new_experiment(store.as_ref(), "gc-doomed").await;
}
