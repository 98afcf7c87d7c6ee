//! `log_batch` and `delete_run_tag`.

use std::collections::BTreeMap;

use cairn_core::model::{LifecycleStage, Metric, Run};
use cairn_core::service::RUN_NAME_TAG;
use cairn_core::store::{MetricHistoryQuery, TrackingStore};
use cairn_core::CoreError;

use crate::support::*;
use crate::Store;

pub(crate) async fn history(store: &dyn TrackingStore, run_id: &str, key: &str) -> Vec<Metric> {
    let page = store
        .metric_history(&MetricHistoryQuery {
            run_id: run_id.into(),
            key: key.into(),
            max_results: None,
            offset: 0,
        })
        .await
        .must(format_args!("metric_history({run_id}, {key})"));
    assert!(
        page.next_page_token.is_none(),
        "metric_history without max_results returns everything, with no token"
    );
    page.items
}

fn latest(run: &Run, key: &str) -> Option<Metric> {
    let found: Vec<&Metric> = run.data.metrics.iter().filter(|m| m.key == key).collect();
    assert!(
        found.len() <= 1,
        "get_run must report one latest value per metric key, got {found:?}"
    );
    found.first().map(|m| (*m).clone())
}

/// Metrics, params and tags of a batch all land; metrics keep timestamp and step.
pub async fn log_batch_lands_data(store: Store) {
    prepare(&*store).await;
    let exp = new_experiment(&*store, "batch").await;
    let run = create_run(&*store, exp, "r").await;
    let id = run.info.run_id.clone();
    log(
        &*store,
        &id,
        batch(
            vec![
                metric("loss", 0.5, T0 + 1, 0),
                metric("loss", 0.25, T0 + 2, 1),
                metric("acc", 0.9, T0 + 3, 7),
                metric("nested/key.with:chars", -1.5, T0 + 4, -3),
            ],
            vec![
                param("lr", "0.01"),
                param("layers", "3"),
                param("empty", ""),
            ],
            vec![tag("team", "ml"), tag("note", "")],
        ),
    )
    .await;
    let got = store.get_run(&id).await.must("get_run");
    let loss = latest(&got, "loss").expect("loss is reported");
    assert_eq!(
        (loss.value, loss.timestamp, loss.step),
        (0.25, T0 + 2, 1),
        "latest loss"
    );
    let acc = latest(&got, "acc").expect("acc is reported");
    assert_eq!(
        (acc.value, acc.timestamp, acc.step),
        (0.9, T0 + 3, 7),
        "acc"
    );
    let odd = latest(&got, "nested/key.with:chars").expect("odd key is reported");
    assert_eq!(
        (odd.value, odd.timestamp, odd.step),
        (-1.5, T0 + 4, -3),
        "negative step"
    );
    assert_eq!(got.data.metrics.len(), 3, "one latest metric per key");
    assert_eq!(
        param_map(&got.data.params),
        param_map(&[
            param("lr", "0.01"),
            param("layers", "3"),
            param("empty", "")
        ]),
        "params land (empty values included)"
    );
    let tags = tag_map(&got.data.tags);
    assert_eq!(tags.get("team").map(String::as_str), Some("ml"));
    assert_eq!(
        tags.get("note").map(String::as_str),
        Some(""),
        "empty tag values land"
    );
    assert_eq!(
        tags.get(RUN_NAME_TAG).map(String::as_str),
        Some("r"),
        "existing tags are kept"
    );
    assert_eq!(
        history(&*store, &id, "loss").await.len(),
        2,
        "full loss history"
    );

    // A later batch upserts tags and adds to what is there.
    log(
        &*store,
        &id,
        batch(vec![], vec![param("extra", "x")], vec![tag("team", "ops")]),
    )
    .await;
    let got = store.get_run(&id).await.must("get_run");
    assert_eq!(
        tag_map(&got.data.tags).get("team").map(String::as_str),
        Some("ops"),
        "tags are upserted"
    );
    assert_eq!(got.data.params.len(), 4, "params accumulate");
    assert_eq!(
        got.data.metrics.len(),
        3,
        "metrics untouched by a batch without metrics"
    );

    // A large batch (more rows than a naive single INSERT allows on some databases).
    let big: Vec<Metric> = (0..1000)
        .map(|i| metric("big", f64::from(i), T0 + i64::from(i), i64::from(i)))
        .collect();
    log(&*store, &id, batch(big, vec![], vec![])).await;
    assert_eq!(
        history(&*store, &id, "big").await.len(),
        1000,
        "a 1000-metric batch lands completely"
    );
    let got = store.get_run(&id).await.must("get_run");
    assert_eq!(latest(&got, "big").map(|m| m.step), Some(999));
}

/// NaN, +Inf and -Inf survive get_run and metric_history.
pub async fn log_batch_special_values_round_trip(store: Store) {
    prepare(&*store).await;
    let exp = new_experiment(&*store, "special").await;
    let id = create_run(&*store, exp, "r").await.info.run_id;
    let specials = [
        ("nan", f64::NAN),
        ("pinf", f64::INFINITY),
        ("ninf", f64::NEG_INFINITY),
        ("max", f64::MAX),
        ("min_positive", f64::MIN_POSITIVE),
        ("neg_zero", -0.0),
    ];
    log(
        &*store,
        &id,
        batch(
            specials.iter().map(|(k, v)| metric(k, *v, T0, 0)).collect(),
            vec![],
            vec![],
        ),
    )
    .await;
    let got = store.get_run(&id).await.must("get_run");
    for (k, v) in specials {
        let m = latest(&got, k).unwrap_or_else(|| panic!("metric {k} missing from get_run"));
        assert!(
            same_value(m.value, v),
            "get_run: metric {k} should be {v:?}, got {:?}",
            m.value
        );
        let h = history(&*store, &id, k).await;
        assert_eq!(h.len(), 1, "history of {k}");
        assert!(
            same_value(h[0].value, v),
            "metric_history: metric {k} should be {v:?}, got {:?}",
            h[0].value
        );
    }

    // A series mixing all of them keeps every value at its step.
    let series = [1.0, f64::NAN, f64::INFINITY, f64::NEG_INFINITY, 2.0];
    log(
        &*store,
        &id,
        batch(
            series
                .iter()
                .enumerate()
                .map(|(i, v)| metric("series", *v, T0 + i as i64, i as i64))
                .collect(),
            vec![],
            vec![],
        ),
    )
    .await;
    let h = history(&*store, &id, "series").await;
    assert_eq!(h.len(), series.len(), "series history length");
    for (i, v) in series.iter().enumerate() {
        assert!(
            same_value(h[i].value, *v) && h[i].step == i as i64,
            "series[{i}] should be {v:?} at step {i}, got {:?}",
            h[i]
        );
    }

    // NaN as the newest value is reported as the latest.
    log(
        &*store,
        &id,
        batch(
            vec![metric("series", f64::NAN, T0 + 100, 100)],
            vec![],
            vec![],
        ),
    )
    .await;
    let got = store.get_run(&id).await.must("get_run");
    let m = latest(&got, "series").expect("series latest");
    assert!(
        m.value.is_nan() && m.step == 100,
        "latest series value is the NaN at step 100, got {m:?}"
    );
}

/// The latest value per key is the highest step, then highest timestamp, then highest
/// value, however the observations arrive.
pub async fn log_batch_latest_metric_rule(store: Store) {
    prepare(&*store).await;
    let exp = new_experiment(&*store, "latest").await;
    let id = create_run(&*store, exp, "r").await.info.run_id;
    // (step, timestamp, value) per batch, and the expected latest after it.
    type Obs = (i64, i64, f64);
    let steps: [(Obs, Obs); 7] = [
        ((1, 100, 1.0), (1, 100, 1.0)),
        ((3, 50, 0.5), (3, 50, 0.5)), // higher step wins despite older timestamp
        ((2, 500, 9.0), (3, 50, 0.5)), // lower step never wins
        ((3, 60, 0.1), (3, 60, 0.1)), // same step: newer timestamp wins
        ((3, 40, 7.0), (3, 60, 0.1)), // same step: older timestamp loses
        ((3, 60, 0.05), (3, 60, 0.1)), // same step+timestamp: lower value loses
        ((3, 60, 0.2), (3, 60, 0.2)), // same step+timestamp: higher value wins
    ];
    for (i, ((s, t, v), (ws, wt, wv))) in steps.into_iter().enumerate() {
        log(
            &*store,
            &id,
            batch(vec![metric("loss", v, T0 + t, s)], vec![], vec![]),
        )
        .await;
        let got = store.get_run(&id).await.must("get_run");
        let m = latest(&got, "loss").expect("loss latest");
        assert_eq!(
            (m.step, m.timestamp, m.value),
            (ws, T0 + wt, wv),
            "after batch {i} (step {s}, ts {t}, value {v})"
        );
    }

    // Within one batch, order does not matter either.
    log(
        &*store,
        &id,
        batch(
            vec![
                metric("acc", 1.0, T0 + 10, 5),
                metric("acc", 2.0, T0 + 1, 7),
                metric("acc", 3.0, T0 + 100, 6),
                metric("acc", 1.5, T0 + 1, 7),
            ],
            vec![],
            vec![],
        ),
    )
    .await;
    let got = store.get_run(&id).await.must("get_run");
    let m = latest(&got, "acc").expect("acc latest");
    assert_eq!(
        (m.step, m.timestamp, m.value),
        (7, T0 + 1, 2.0),
        "latest within one batch"
    );
}

/// A tiny deterministic generator so the suite needs no `rand`.
pub(crate) struct Lcg(pub(crate) u64);

impl Lcg {
    pub(crate) fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        self.0 >> 33
    }
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    pub(crate) fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            let j = self.below(i as u64 + 1) as usize;
            v.swap(i, j);
        }
    }
}

/// The same observations sent in different orders and batch splits to different runs
/// always produce the same latest values and the same history.
pub async fn log_batch_latest_metric_any_order(store: Store) {
    prepare(&*store).await;
    let exp = new_experiment(&*store, "any-order").await;
    let mut rng = Lcg(42);
    let mut obs = Vec::new();
    for key in ["a", "b", "c"] {
        for _ in 0..40 {
            // Small ranges force plenty of step and timestamp ties.
            let step = rng.below(5) as i64;
            let ts = T0 + rng.below(4) as i64;
            let value = rng.below(7) as f64 - 3.0;
            obs.push(metric(key, value, ts, step));
        }
    }
    let mut want: BTreeMap<String, (i64, i64, f64)> = BTreeMap::new();
    for m in &obs {
        let cand = (m.step, m.timestamp, m.value);
        let e = want.entry(m.key.clone()).or_insert(cand);
        if cand.partial_cmp(e) == Some(std::cmp::Ordering::Greater) {
            *e = cand;
        }
    }
    type Histories<'a> = BTreeMap<&'a str, Vec<(i64, i64, u64)>>;
    let mut histories: Option<Histories> = None;
    for trial in 0..4 {
        let id = create_run(&*store, exp, &format!("trial-{trial}"))
            .await
            .info
            .run_id;
        let mut order = obs.clone();
        rng.shuffle(&mut order);
        let mut rest = order.as_slice();
        while !rest.is_empty() {
            let n = (rng.below(25) as usize + 1).min(rest.len());
            let (chunk, tail) = rest.split_at(n);
            log(&*store, &id, batch(chunk.to_vec(), vec![], vec![])).await;
            rest = tail;
        }
        let got = store.get_run(&id).await.must("get_run");
        for (key, (s, t, v)) in &want {
            let m = latest(&got, key).expect("latest");
            assert_eq!(
                (m.step, m.timestamp, m.value),
                (*s, *t, *v),
                "trial {trial}: latest {key} must be the max by (step, timestamp, value)"
            );
        }
        let mut h = BTreeMap::new();
        for key in ["a", "b", "c"] {
            let items: Vec<(i64, i64, u64)> = history(&*store, &id, key)
                .await
                .iter()
                .map(|m| (m.timestamp, m.step, m.value.to_bits()))
                .collect();
            h.insert(key, items);
        }
        match &histories {
            None => histories = Some(h),
            Some(first) => assert_eq!(
                first, &h,
                "trial {trial}: metric history must not depend on arrival order"
            ),
        }
    }
}

/// Params are immutable: the same value again is fine, a different value fails and the
/// whole batch is rejected (no metric, param or tag from it is written).
pub async fn log_batch_param_immutability_is_atomic(store: Store) {
    prepare(&*store).await;
    let exp = new_experiment(&*store, "params").await;
    let id = create_run(&*store, exp, "r").await.info.run_id;
    log(&*store, &id, batch(vec![], vec![param("p", "1")], vec![])).await;
    log(&*store, &id, batch(vec![], vec![param("p", "1")], vec![])).await;

    let before = store.get_run(&id).await.must("get_run");
    let bad = batch(
        vec![
            metric("new_metric", 1.0, T0, 0),
            metric("new_metric", 2.0, T0, 1),
        ],
        vec![param("q", "new"), param("p", "2"), param("r", "also-new")],
        vec![
            tag("new_tag", "x"),
            tag(RUN_NAME_TAG, "renamed-by-failed-batch"),
        ],
    );
    assert_err!(
        store.log_batch(&id, &bad).await,
        CoreError::InvalidParameter(_),
        "changing param p from 1 to 2"
    );
    let after = store.get_run(&id).await.must("get_run");
    assert_eq!(
        param_map(&after.data.params),
        param_map(&[param("p", "1")]),
        "a failed batch must not write any of its params, and p keeps its value"
    );
    assert!(
        after.data.metrics.is_empty(),
        "a failed batch must not write its metrics: {:?}",
        after.data.metrics
    );
    assert!(
        history(&*store, &id, "new_metric").await.is_empty(),
        "a failed batch must not leave metric history"
    );
    assert_eq!(
        tag_map(&after.data.tags),
        tag_map(&before.data.tags),
        "a failed batch must not write its tags"
    );
    assert_eq!(
        after.info.run_name, before.info.run_name,
        "a failed batch must not rename the run"
    );

    // The failure is per key: other new params still work afterwards.
    log(
        &*store,
        &id,
        batch(vec![], vec![param("p", "1"), param("q", "new")], vec![]),
    )
    .await;
    let got = store.get_run(&id).await.must("get_run");
    assert_eq!(
        param_map(&got.data.params),
        param_map(&[param("p", "1"), param("q", "new")])
    );

    // Params are per run.
    let other = create_run(&*store, exp, "other").await.info.run_id;
    log(
        &*store,
        &other,
        batch(vec![], vec![param("p", "different")], vec![]),
    )
    .await;
}

/// Sending the same batch twice (a client retry) duplicates nothing.
pub async fn log_batch_identical_resend_is_noop(store: Store) {
    prepare(&*store).await;
    let exp = new_experiment(&*store, "resend").await;
    let id = create_run(&*store, exp, "r").await.info.run_id;
    let b = batch(
        vec![
            metric("m", 1.0, T0, 0),
            metric("m", 2.0, T0 + 1, 1),
            metric("m", f64::NAN, T0 + 2, 2),
            metric("n", 5.0, T0, 0),
        ],
        vec![param("p", "v")],
        vec![tag("t", "v")],
    );
    log(&*store, &id, b.clone()).await;
    let first = store.get_run(&id).await.must("get_run");
    let first_hist = history(&*store, &id, "m").await;
    log(&*store, &id, b.clone()).await;
    log(&*store, &id, b).await;
    let again = store.get_run(&id).await.must("get_run");
    let again_hist = history(&*store, &id, "m").await;
    assert_eq!(
        again_hist.iter().map(metric_key).collect::<Vec<_>>(),
        first_hist.iter().map(metric_key).collect::<Vec<_>>(),
        "re-sent metrics must not duplicate history"
    );
    assert_eq!(again_hist.len(), 3);
    assert_eq!(history(&*store, &id, "n").await.len(), 1);
    assert_eq!(param_map(&again.data.params), param_map(&first.data.params));
    assert_eq!(tag_map(&again.data.tags), tag_map(&first.data.tags));
    assert_eq!(
        again
            .data
            .metrics
            .iter()
            .map(metric_key)
            .collect::<std::collections::BTreeSet<_>>(),
        first.data.metrics.iter().map(metric_key).collect(),
        "latest metrics unchanged"
    );

    // The same observation repeated inside one batch is stored once too.
    log(
        &*store,
        &id,
        batch(
            vec![metric("dup", 1.0, T0, 0), metric("dup", 1.0, T0, 0)],
            vec![],
            vec![],
        ),
    )
    .await;
    assert_eq!(
        history(&*store, &id, "dup").await.len(),
        1,
        "in-batch duplicate"
    );
}

/// A `mlflow.runName` tag renames the run.
pub async fn log_batch_run_name_tag_renames(store: Store) {
    prepare(&*store).await;
    let exp = new_experiment(&*store, "rename-tag").await;
    let id = create_run(&*store, exp, "before").await.info.run_id;
    log(
        &*store,
        &id,
        batch(vec![], vec![], vec![tag(RUN_NAME_TAG, "after")]),
    )
    .await;
    let got = store.get_run(&id).await.must("get_run");
    assert_eq!(
        got.info.run_name, "after",
        "the mlflow.runName tag renames the run"
    );
    assert_eq!(
        tag_map(&got.data.tags)
            .get(RUN_NAME_TAG)
            .map(String::as_str),
        Some("after")
    );
    let found = store
        .search_runs(&cairn_core::store::RunSearch {
            experiment_ids: vec![exp],
            filter: filter(
                cairn_core::search::SearchKind::Runs,
                "attributes.run_name = 'after'",
            ),
            view: cairn_core::model::ViewType::ActiveOnly,
            max_results: 10,
            order_by: Vec::new(),
            offset: 0,
        })
        .await
        .must("search by new name");
    assert_eq!(found.items.len(), 1, "search sees the new name");
}

/// Logging to a deleted run is InvalidParameter, to an unknown run NotFound.
pub async fn log_batch_lifecycle_errors(store: Store) {
    prepare(&*store).await;
    let exp = new_experiment(&*store, "batch-errors").await;
    let id = create_run(&*store, exp, "r").await.info.run_id;
    store
        .set_run_lifecycle(&id, LifecycleStage::Deleted, T0 + 1)
        .await
        .must("delete run");
    let b = batch(
        vec![metric("m", 1.0, T0, 0)],
        vec![param("p", "1")],
        vec![tag("t", "1")],
    );
    assert_err!(
        store.log_batch(&id, &b).await,
        CoreError::InvalidParameter(_),
        "log_batch to a deleted run"
    );
    let got = store.get_run(&id).await.must("get_run");
    assert!(
        got.data.metrics.is_empty() && got.data.params.is_empty(),
        "nothing was written to the deleted run"
    );
    assert!(!tag_map(&got.data.tags).contains_key("t"));
    assert_err!(
        store.log_batch(&fresh_id(), &b).await,
        CoreError::NotFound(_),
        "log_batch to an unknown run"
    );
}

/// delete_run_tag removes one tag; a missing tag or run is NotFound.
pub async fn run_tag_delete(store: Store) {
    prepare(&*store).await;
    let exp = new_experiment(&*store, "tag-delete").await;
    let id = create_run(&*store, exp, "r").await.info.run_id;
    log(
        &*store,
        &id,
        batch(vec![], vec![], vec![tag("a", "1"), tag("b", "2")]),
    )
    .await;
    store
        .delete_run_tag(&id, "a")
        .await
        .must("delete_run_tag(a)");
    let got = store.get_run(&id).await.must("get_run");
    let tags = tag_map(&got.data.tags);
    assert!(!tags.contains_key("a"), "tag a is gone");
    assert_eq!(tags.get("b").map(String::as_str), Some("2"), "tag b stays");
    assert_err!(
        store.delete_run_tag(&id, "a").await,
        CoreError::NotFound(_),
        "deleting an already deleted tag"
    );
    assert_err!(
        store.delete_run_tag(&id, "never").await,
        CoreError::NotFound(_),
        "deleting a tag that never existed"
    );
    assert_err!(
        store.delete_run_tag(&fresh_id(), "b").await,
        CoreError::NotFound(_),
        "deleting a tag of an unknown run"
    );
    // A deleted tag can be set again.
    log(&*store, &id, batch(vec![], vec![], vec![tag("a", "3")])).await;
    let got = store.get_run(&id).await.must("get_run");
    assert_eq!(
        tag_map(&got.data.tags).get("a").map(String::as_str),
        Some("3")
    );

    store
        .set_run_lifecycle(&id, LifecycleStage::Deleted, T0 + 1)
        .await
        .must("delete run");
    assert!(
        store.delete_run_tag(&id, "b").await.is_err(),
        "deleting a tag of a deleted run must fail"
    );
}
