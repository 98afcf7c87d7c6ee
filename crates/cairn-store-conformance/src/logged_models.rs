//! MLflow 3 logged models.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};

use cairn_core::model::{LifecycleStage, LoggedModel, LoggedModelStatus, Metric};
use cairn_core::search::{Attribute, Field, OrderBy, SearchKind};
use cairn_core::store::{ArtifactLocation, LoggedModelSearch, NewLoggedModel, TrackingStore};
use cairn_core::CoreError;

use crate::log_batch::history;
use crate::support::*;
use crate::Store;

fn model_id() -> String {
    format!("m-{}", fresh_id())
}

fn new_model(experiment_id: i64, name: &str, now: i64) -> NewLoggedModel {
    NewLoggedModel {
        model_id: model_id(),
        experiment_id,
        name: name.into(),
        model_type: None,
        source_run_id: None,
        tags: Vec::new(),
        params: Vec::new(),
        now,
    }
}

async fn create(store: &dyn TrackingStore, new: NewLoggedModel) -> LoggedModel {
    let name = new.name.clone();
    store
        .create_logged_model(new)
        .await
        .must(format_args!("create_logged_model({name:?})"))
}

/// A new model is PENDING and active, with its artifact URI under the experiment's
/// location; get_logged_model returns the same.
pub async fn logged_model_create_and_get(store: Store) {
    prepare(&*store).await;
    let exp = new_experiment_with(
        &*store,
        "models",
        ArtifactLocation::Explicit("s3://bucket/exp/".into()),
        Vec::new(),
        T0,
    )
    .await;
    let run = create_run(&*store, exp, "producer").await.info.run_id;
    let mut new = new_model(exp, "my-model", T0 + 7);
    new.model_type = Some("sklearn".into());
    new.source_run_id = Some(run.clone());
    new.tags = vec![tag("env", "prod"), tag("owner", "ana")];
    new.params = vec![param("alpha", "0.5"), param("depth", "3")];
    let created = create(&*store, new.clone()).await;

    assert_eq!(created.model_id, new.model_id, "model_id is the one given");
    assert_eq!(created.experiment_id, exp.to_string());
    assert_eq!(created.name, "my-model");
    assert_eq!(
        created.artifact_uri,
        format!("s3://bucket/exp/models/{}/artifacts", new.model_id),
        "artifact_uri is <experiment location>/models/<id>/artifacts"
    );
    assert_eq!(
        created.status,
        LoggedModelStatus::Pending,
        "new models are PENDING"
    );
    assert_eq!(created.lifecycle_stage, LifecycleStage::Active);
    assert_eq!(created.creation_timestamp, T0 + 7);
    assert_eq!(created.last_updated_timestamp, T0 + 7);
    assert_eq!(created.model_type.as_deref(), Some("sklearn"));
    assert_eq!(created.source_run_id.as_deref(), Some(run.as_str()));
    assert_eq!(tag_map(&created.tags), tag_map(&new.tags), "tags");
    assert_eq!(param_map(&created.params), param_map(&new.params), "params");
    assert!(created.metrics.is_empty(), "no metrics yet");

    let fetched = store
        .get_logged_model(&new.model_id)
        .await
        .must("get_logged_model");
    assert_eq!(fetched.model_id, created.model_id);
    assert_eq!(fetched.artifact_uri, created.artifact_uri);
    assert_eq!(fetched.status, created.status);
    assert_eq!(fetched.creation_timestamp, created.creation_timestamp);
    assert_eq!(tag_map(&fetched.tags), tag_map(&created.tags));
    assert_eq!(param_map(&fetched.params), param_map(&created.params));

    // Under a root-derived location too, and with nothing optional set.
    let plain = create(&*store, new_model(0, "in-default", T0)).await;
    assert_eq!(
        plain.artifact_uri,
        format!("{ARTIFACT_ROOT}/0/models/{}/artifacts", plain.model_id)
    );
    assert_eq!(plain.model_type, None);
    assert_eq!(plain.source_run_id, None);

    assert_err!(
        store.get_logged_model(&model_id()).await,
        CoreError::NotFound(_),
        "get_logged_model of an unknown id"
    );
    let missing_exp = new_model(exp + 10_000, "x", T0);
    let missing_id = missing_exp.model_id.clone();
    assert_err!(
        store.create_logged_model(missing_exp).await,
        CoreError::NotFound(_),
        "create_logged_model in an unknown experiment"
    );
    assert_err!(
        store.get_logged_model(&missing_id).await,
        CoreError::NotFound(_),
        "the refused model must not exist"
    );
    store
        .set_experiment_lifecycle(exp, LifecycleStage::Deleted, T0 + 1)
        .await
        .must("delete experiment");
    assert_err!(
        store.create_logged_model(new_model(exp, "x", T0)).await,
        CoreError::InvalidParameter(_),
        "create_logged_model in a deleted experiment"
    );
}

/// Finalizing sets the status and last_updated_timestamp.
pub async fn logged_model_status(store: Store) {
    prepare(&*store).await;
    let exp = new_experiment(&*store, "status").await;
    let m = create(&*store, new_model(exp, "m", T0)).await;
    let ready = store
        .set_logged_model_status(&m.model_id, LoggedModelStatus::Ready, T0 + 100)
        .await
        .must("set status READY");
    assert_eq!(ready.status, LoggedModelStatus::Ready);
    assert_eq!(
        ready.last_updated_timestamp,
        T0 + 100,
        "status change updates timestamp"
    );
    assert_eq!(ready.creation_timestamp, T0, "creation_timestamp unchanged");
    let fetched = store.get_logged_model(&m.model_id).await.must("get");
    assert_eq!(fetched.status, LoggedModelStatus::Ready, "READY persisted");

    let failed = store
        .set_logged_model_status(&m.model_id, LoggedModelStatus::Failed, T0 + 200)
        .await
        .must("set status FAILED");
    assert_eq!(failed.status, LoggedModelStatus::Failed);
    assert_eq!(
        store.get_logged_model(&m.model_id).await.must("get").status,
        LoggedModelStatus::Failed
    );
    assert_err!(
        store
            .set_logged_model_status(&model_id(), LoggedModelStatus::Ready, T0)
            .await,
        CoreError::NotFound(_),
        "set status of an unknown model"
    );
}

/// Tags are upserted and deleted; deleting a missing tag is NotFound.
pub async fn logged_model_tags(store: Store) {
    prepare(&*store).await;
    let exp = new_experiment(&*store, "model-tags").await;
    let mut new = new_model(exp, "m", T0);
    new.tags = vec![tag("a", "1")];
    let m = create(&*store, new).await;
    store
        .set_logged_model_tags(&m.model_id, &[tag("a", "one"), tag("b", "2")])
        .await
        .must("set tags");
    let got = store.get_logged_model(&m.model_id).await.must("get");
    assert_eq!(
        tag_map(&got.tags),
        tag_map(&[tag("a", "one"), tag("b", "2")]),
        "tags are upserted"
    );
    store
        .delete_logged_model_tag(&m.model_id, "a")
        .await
        .must("delete tag a");
    let got = store.get_logged_model(&m.model_id).await.must("get");
    assert_eq!(tag_map(&got.tags), tag_map(&[tag("b", "2")]));
    assert_err!(
        store.delete_logged_model_tag(&m.model_id, "a").await,
        CoreError::NotFound(_),
        "deleting a missing logged-model tag"
    );
    assert_err!(
        store
            .set_logged_model_tags(&model_id(), &[tag("x", "1")])
            .await,
        CoreError::NotFound(_),
        "setting tags on an unknown model"
    );
    assert_err!(
        store.delete_logged_model_tag(&model_id(), "b").await,
        CoreError::NotFound(_),
        "deleting a tag of an unknown model"
    );
}

/// Params are immutable like run params, and a refused call writes nothing.
pub async fn logged_model_params(store: Store) {
    prepare(&*store).await;
    let exp = new_experiment(&*store, "model-params").await;
    let mut new = new_model(exp, "m", T0);
    new.params = vec![param("p", "1")];
    let m = create(&*store, new).await;
    store
        .log_logged_model_params(&m.model_id, &[param("p", "1"), param("q", "2")])
        .await
        .must("same value again plus a new key");
    assert_err!(
        store
            .log_logged_model_params(&m.model_id, &[param("r", "new"), param("p", "changed")])
            .await,
        CoreError::InvalidParameter(_),
        "changing a logged-model param"
    );
    let got = store.get_logged_model(&m.model_id).await.must("get");
    assert_eq!(
        param_map(&got.params),
        param_map(&[param("p", "1"), param("q", "2")]),
        "the refused call changed nothing and added nothing"
    );
    assert_err!(
        store
            .log_logged_model_params(&model_id(), &[param("p", "1")])
            .await,
        CoreError::NotFound(_),
        "params on an unknown model"
    );
}

/// A deleted model is still readable by id (lifecycle deleted, per the trait), is
/// hidden from search and refuses changes.
pub async fn logged_model_delete(store: Store) {
    prepare(&*store).await;
    let exp = new_experiment(&*store, "model-delete").await;
    let keep = create(&*store, new_model(exp, "keep", T0)).await;
    let doomed = create(&*store, new_model(exp, "doomed", T0 + 1)).await;
    store
        .delete_logged_model(&doomed.model_id, T0 + 50)
        .await
        .must("delete_logged_model");

    let got = store
        .get_logged_model(&doomed.model_id)
        .await
        .must("get_logged_model returns deleted models (any lifecycle stage)");
    assert_eq!(got.lifecycle_stage, LifecycleStage::Deleted);

    let page = store
        .search_logged_models(&LoggedModelSearch {
            experiment_ids: vec![exp],
            filter: None,
            order_by: Vec::new(),
            max_results: 100,
            offset: 0,
        })
        .await
        .must("search_logged_models");
    let ids: Vec<&str> = page.items.iter().map(|m| m.model_id.as_str()).collect();
    assert_eq!(
        ids,
        vec![keep.model_id.as_str()],
        "deleted models are hidden from search"
    );

    assert!(
        store
            .set_logged_model_status(&doomed.model_id, LoggedModelStatus::Ready, T0 + 60)
            .await
            .is_err(),
        "finalizing a deleted model must fail"
    );
    assert!(
        store
            .set_logged_model_tags(&doomed.model_id, &[tag("x", "1")])
            .await
            .is_err(),
        "tagging a deleted model must fail"
    );
    assert!(
        store
            .log_logged_model_params(&doomed.model_id, &[param("x", "1")])
            .await
            .is_err(),
        "logging params on a deleted model must fail"
    );
    let again = store.delete_logged_model(&doomed.model_id, T0 + 70).await;
    assert!(
        matches!(again, Ok(()) | Err(CoreError::NotFound(_))),
        "deleting a deleted model is either a no-op or NotFound, got {again:?}"
    );
    assert_err!(
        store.delete_logged_model(&model_id(), T0).await,
        CoreError::NotFound(_),
        "deleting an unknown model"
    );
}

fn model_metric(key: &str, value: f64, ts: i64, step: i64, model: &str) -> Metric {
    Metric {
        model_id: Some(model.into()),
        ..metric(key, value, ts, step)
    }
}

/// Metrics logged through log_batch with a model_id appear on the logged model (and stay
/// run metrics); model_id and dataset fields round-trip through metric history.
pub async fn logged_model_metrics_from_log_batch(store: Store) {
    prepare(&*store).await;
    let exp = new_experiment(&*store, "model-metrics").await;
    let run = create_run(&*store, exp, "trainer").await.info.run_id;
    let m = create(&*store, new_model(exp, "m", T0)).await;
    let other = create(&*store, new_model(exp, "other", T0)).await;
    let mut with_ds = model_metric("acc", 0.7, T0 + 2, 1, &m.model_id);
    with_ds.dataset_name = Some("eval-ds".into());
    with_ds.dataset_digest = Some("d2".into());
    let logged = vec![
        model_metric("acc", 0.5, T0 + 1, 0, &m.model_id),
        with_ds.clone(),
        model_metric("loss", 0.3, T0 + 1, 0, &m.model_id),
        model_metric("acc", 0.1, T0 + 1, 0, &other.model_id),
        metric("plain", 1.0, T0, 0),
    ];
    log(&*store, &run, batch(logged.clone(), vec![], vec![])).await;

    let got = store
        .get_logged_model(&m.model_id)
        .await
        .must("get_logged_model");
    let have: BTreeSet<_> = got.metrics.iter().map(metric_key).collect();
    let want: BTreeSet<_> = logged
        .iter()
        .filter(|x| x.model_id.as_deref() == Some(m.model_id.as_str()))
        .map(metric_key)
        .collect();
    assert_eq!(
        have, want,
        "the logged model reports exactly the metrics logged with its model_id"
    );
    for x in &got.metrics {
        assert_eq!(
            x.model_id.as_deref(),
            Some(m.model_id.as_str()),
            "model_id on {x:?}"
        );
        if let Some(r) = &x.run_id {
            assert_eq!(
                r, &run,
                "run_id on a logged-model metric is the logging run"
            );
        }
    }
    let acc1 = got
        .metrics
        .iter()
        .find(|x| x.key == "acc" && x.step == 1)
        .expect("acc at step 1");
    assert_eq!(
        acc1.dataset_name.as_deref(),
        Some("eval-ds"),
        "dataset_name"
    );
    assert_eq!(acc1.dataset_digest.as_deref(), Some("d2"), "dataset_digest");

    let run_view = store.get_run(&run).await.must("get_run");
    let keys: BTreeSet<&str> = run_view
        .data
        .metrics
        .iter()
        .map(|x| x.key.as_str())
        .collect();
    assert_eq!(
        keys,
        BTreeSet::from(["acc", "loss", "plain"]),
        "model metrics are run metrics too"
    );
    let h = history(&*store, &run, "acc").await;
    let step1 = h
        .iter()
        .find(|x| x.step == 1)
        .expect("acc step 1 in history");
    assert_eq!(
        step1.model_id.as_deref(),
        Some(m.model_id.as_str()),
        "history model_id"
    );
    assert_eq!(step1.dataset_name.as_deref(), Some("eval-ds"));
    assert_eq!(step1.dataset_digest.as_deref(), Some("d2"));
}

/// Two models evaluated in the same run can get identical observations (same key,
/// value, step and millisecond timestamp, e.g. an accuracy of 1.0 on a small set).
/// Each model must still report its metric, and be found by a metric filter.
pub async fn logged_model_metrics_same_observation(store: Store) {
    prepare(&*store).await;
    let exp = new_experiment(&*store, "shared-observation").await;
    let run = create_run(&*store, exp, "evaluator").await.info.run_id;
    let m1 = create(&*store, new_model(exp, "m1", T0)).await.model_id;
    let m2 = create(&*store, new_model(exp, "m2", T0)).await.model_id;
    log(
        &*store,
        &run,
        batch(
            vec![
                model_metric("acc", 1.0, T0 + 5, 0, &m1),
                model_metric("acc", 1.0, T0 + 5, 0, &m2),
            ],
            vec![],
            vec![],
        ),
    )
    .await;
    // The same in separate batches.
    log(
        &*store,
        &run,
        batch(
            vec![model_metric("f1", 0.5, T0 + 6, 0, &m1)],
            vec![],
            vec![],
        ),
    )
    .await;
    log(
        &*store,
        &run,
        batch(
            vec![model_metric("f1", 0.5, T0 + 6, 0, &m2)],
            vec![],
            vec![],
        ),
    )
    .await;

    for m in [&m1, &m2] {
        let got = store.get_logged_model(m).await.must("get_logged_model");
        let keys: BTreeSet<&str> = got.metrics.iter().map(|x| x.key.as_str()).collect();
        assert_eq!(
            keys,
            BTreeSet::from(["acc", "f1"]),
            "model {m} must report the metrics logged for it, even when another model got \
             an identical (key, value, step, timestamp) observation from the same run; got \
             {:?}",
            got.metrics
        );
    }
    let page = store
        .search_logged_models(&LoggedModelSearch {
            experiment_ids: vec![exp],
            filter: filter(SearchKind::LoggedModels, "metrics.acc >= 1"),
            order_by: Vec::new(),
            max_results: 100,
            offset: 0,
        })
        .await
        .must("search_logged_models");
    let mut found: Vec<String> = page.items.into_iter().map(|m| m.model_id).collect();
    found.sort();
    let mut want = vec![m1, m2];
    want.sort();
    assert_eq!(found, want, "both models match metrics.acc >= 1");
}

/// What the suite knows about each model in the search corpus.
struct ModelRec {
    id: String,
    experiment_id: i64,
    name: String,
    model_type: Option<String>,
    source_run_id: Option<String>,
    status: LoggedModelStatus,
    creation: i64,
    last_updated: i64,
    tags: BTreeMap<String, String>,
    params: BTreeMap<String, String>,
    acc: Option<f64>,
    deleted: bool,
}

fn compare(a: &ModelRec, b: &ModelRec, order_by: &[OrderBy]) -> Ordering {
    for o in order_by {
        let ord = match &o.field {
            Field::Metric(k) if k == "acc" => match (a.acc, b.acc) {
                (None, None) => Ordering::Equal,
                (None, Some(_)) => Ordering::Greater,
                (Some(_), None) => Ordering::Less,
                (Some(x), Some(y)) => {
                    let ord = x.total_cmp(&y);
                    if o.ascending {
                        ord
                    } else {
                        ord.reverse()
                    }
                }
            },
            Field::Attr(attr) => {
                let ord = match attr {
                    Attribute::Name => a.name.cmp(&b.name),
                    Attribute::CreationTime => a.creation.cmp(&b.creation),
                    Attribute::LastUpdateTime => a.last_updated.cmp(&b.last_updated),
                    Attribute::ModelId => a.id.cmp(&b.id),
                    other => panic!("the suite does not model ordering by {other:?}"),
                };
                if o.ascending {
                    ord
                } else {
                    ord.reverse()
                }
            }
            other => panic!("the suite does not model ordering by {other:?}"),
        };
        if ord.is_ne() {
            return ord;
        }
    }
    b.creation.cmp(&a.creation).then_with(|| a.id.cmp(&b.id))
}

/// Filters on attributes, tags, params and metrics; order_by attributes and metrics
/// (missing last); default order creation_timestamp DESC, model_id ASC; paging.
pub async fn logged_model_search(store: Store) {
    prepare(&*store).await;
    let x = new_experiment(&*store, "lm-x").await;
    let y = new_experiment(&*store, "lm-y").await;
    let z = new_experiment(&*store, "lm-z").await;
    let run = create_run(&*store, x, "producer").await.info.run_id;
    let mut recs = Vec::new();
    for i in 0..36usize {
        let experiment_id = [x, y, z][i % 3];
        let mut new = new_model(
            experiment_id,
            &format!("{}-{i:02}", ["model-a", "Model-b", "other"][(i / 3) % 3]),
            T0 + (i / 2) as i64 * 1000,
        );
        new.model_type = (i % 5 != 0).then(|| ["sklearn", "pytorch"][i % 2].to_string());
        new.source_run_id = (i % 4 == 0).then(|| run.clone());
        if i % 4 != 3 {
            new.tags.push(tag("env", ["prod", "dev"][i % 2]));
        }
        new.params.push(param("alpha", &(i % 5).to_string()));
        let created = create(&*store, new.clone()).await;
        let status = match i % 3 {
            0 => LoggedModelStatus::Ready,
            1 => LoggedModelStatus::Failed,
            _ => LoggedModelStatus::Pending,
        };
        let mut last_updated = new.now;
        if status != LoggedModelStatus::Pending {
            last_updated = T0 + 100_000 + i as i64;
            store
                .set_logged_model_status(&created.model_id, status, last_updated)
                .await
                .must("set status");
        }
        let acc = (i % 4 != 1).then(|| ((i * 7) % 11) as f64 / 10.0);
        if let Some(a) = acc {
            // An older, larger value first: only the latest step counts. Timestamps
            // are distinct per model (see logged_model_metrics_same_observation).
            let ts = T0 + 10 * i as i64;
            log(
                &*store,
                &run,
                batch(
                    vec![
                        model_metric("acc", 100.0, ts, 0, &created.model_id),
                        model_metric("acc", a, ts + 1, 1, &created.model_id),
                    ],
                    vec![],
                    vec![],
                ),
            )
            .await;
        }
        let deleted = i % 9 == 4;
        if deleted {
            store
                .delete_logged_model(&created.model_id, T0 + 200_000)
                .await
                .must("delete model");
        }
        recs.push(ModelRec {
            id: created.model_id,
            experiment_id,
            name: new.name,
            model_type: new.model_type,
            source_run_id: new.source_run_id,
            status,
            creation: new.now,
            last_updated,
            tags: tag_map(&new.tags),
            params: param_map(&new.params),
            acc,
            deleted,
        });
    }

    let searched = vec![x, y];
    let run_for_pred = run.clone();
    let picked: Vec<String> = recs.iter().step_by(5).map(|r| r.id.clone()).collect();
    let picked_pred = picked.clone();
    let mid = T0 + 8000;
    type Pred = Box<dyn Fn(&ModelRec) -> bool>;
    let tag_is = |r: &ModelRec, k: &str| r.tags.get(k).cloned();
    let cases: Vec<(String, Pred)> = vec![
        (String::new(), Box::new(|_| true)),
        (
            "name LIKE 'model%'".into(),
            Box::new(|r| like(&r.name, "model%")),
        ),
        (
            "name ILIKE 'model%'".into(),
            Box::new(|r| ilike(&r.name, "model%")),
        ),
        (
            "name = 'other-08'".into(),
            Box::new(|r| r.name == "other-08"),
        ),
        (
            "name != 'other-08'".into(),
            Box::new(|r| r.name != "other-08"),
        ),
        (
            "status = 'LOGGED_MODEL_READY'".into(),
            Box::new(|r| r.status == LoggedModelStatus::Ready),
        ),
        (
            "status IN ('LOGGED_MODEL_PENDING', 'LOGGED_MODEL_UPLOAD_FAILED')".into(),
            Box::new(|r| r.status != LoggedModelStatus::Ready),
        ),
        (
            "model_type = 'sklearn'".into(),
            Box::new(|r| r.model_type.as_deref() == Some("sklearn")),
        ),
        (
            "model_type != 'sklearn'".into(),
            Box::new(|r| r.model_type.as_deref().is_some_and(|t| t != "sklearn")),
        ),
        (
            format!("source_run_id = '{run}'"),
            Box::new(move |r| r.source_run_id.as_deref() == Some(run_for_pred.as_str())),
        ),
        (
            format!(
                "model_id IN ({})",
                picked
                    .iter()
                    .map(|p| format!("'{p}'"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            Box::new(move |r| picked_pred.contains(&r.id)),
        ),
        (
            format!("experiment_id = '{y}'"),
            Box::new(move |r| r.experiment_id == y),
        ),
        (
            format!("creation_timestamp >= {mid}"),
            Box::new(move |r| r.creation >= mid),
        ),
        (
            format!("creation_time < {mid}"),
            Box::new(move |r| r.creation < mid),
        ),
        (
            "tags.env = 'prod'".into(),
            Box::new(move |r| tag_is(r, "env").as_deref() == Some("prod")),
        ),
        (
            "tags.env != 'prod'".into(),
            Box::new(move |r| tag_is(r, "env").is_some_and(|v| v != "prod")),
        ),
        (
            "tags.env LIKE 'd%'".into(),
            Box::new(move |r| tag_is(r, "env").is_some_and(|v| like(&v, "d%"))),
        ),
        (
            "params.alpha = '3'".into(),
            Box::new(|r| r.params.get("alpha").map(String::as_str) == Some("3")),
        ),
        (
            "metrics.acc > 0.5".into(),
            Box::new(|r| r.acc.is_some_and(|a| a > 0.5)),
        ),
        (
            "metrics.acc <= 0.3".into(),
            Box::new(|r| r.acc.is_some_and(|a| a <= 0.3)),
        ),
        (
            "metrics.acc >= 10".into(),
            Box::new(|r| r.acc.is_some_and(|a| a >= 10.0)),
        ),
        (
            "name LIKE 'model%' AND metrics.acc > 0.2 OR tags.env = 'dev'".into(),
            Box::new(move |r| {
                (like(&r.name, "model%") && r.acc.is_some_and(|a| a > 0.2))
                    || tag_is(r, "env").as_deref() == Some("dev")
            }),
        ),
    ];
    let expected = |exps: &[i64], pred: &Pred, order_by: &[OrderBy]| -> Vec<String> {
        let mut hits: Vec<&ModelRec> = recs
            .iter()
            .filter(|r| exps.contains(&r.experiment_id) && !r.deleted && pred(r))
            .collect();
        hits.sort_by(|a, b| compare(a, b, order_by));
        hits.iter().map(|r| r.id.clone()).collect()
    };
    let search = |exps: Vec<i64>, f: String, ob: Vec<OrderBy>, page: u64| {
        let store = store.clone();
        async move {
            let q = LoggedModelSearch {
                experiment_ids: exps,
                filter: filter(SearchKind::LoggedModels, &f),
                order_by: ob,
                max_results: page,
                offset: 0,
            };
            let what = format!("search_logged_models({q:?})");
            let found = collect_pages(&what, page, |offset| {
                let store = store.clone();
                let mut q = q.clone();
                q.offset = offset;
                async move {
                    store
                        .search_logged_models(&q)
                        .await
                        .must("search_logged_models")
                }
            })
            .await;
            found.into_iter().map(|m| m.model_id).collect::<Vec<_>>()
        }
    };

    for (f, pred) in &cases {
        let got = search(searched.clone(), f.clone(), Vec::new(), 1000).await;
        assert_same_ids(
            "search_logged_models filter (default order)",
            &got,
            &expected(&searched, pred, &[]),
            f,
        );
    }

    let all: Pred = Box::new(|_| true);
    for ob in [
        &["name ASC"][..],
        &["name DESC"],
        &["creation_timestamp ASC"],
        &["last_updated_timestamp DESC"],
        &["metrics.acc DESC"],
        &["metrics.acc ASC"],
        &["metrics.acc DESC", "name ASC"],
    ] {
        let parsed = order(SearchKind::LoggedModels, ob);
        let got = search(searched.clone(), String::new(), parsed.clone(), 1000).await;
        assert_same_ids(
            "search_logged_models order_by",
            &got,
            &expected(&searched, &all, &parsed),
            ob,
        );
    }

    for exps in [vec![x], vec![y], vec![z], vec![x, y, z]] {
        let got = search(exps.clone(), String::new(), Vec::new(), 1000).await;
        assert_same_ids(
            "search_logged_models experiment_ids",
            &got,
            &expected(&exps, &all, &[]),
            &exps,
        );
    }

    let parsed = order(SearchKind::LoggedModels, &["metrics.acc DESC"]);
    let full = search(searched.clone(), String::new(), parsed.clone(), 1000).await;
    for size in [1u64, 4, full.len() as u64, full.len() as u64 + 1] {
        let paged = search(searched.clone(), String::new(), parsed.clone(), size).await;
        assert_eq!(
            paged, full,
            "search_logged_models paged by {size} must visit every model once, in order"
        );
    }
}
