//! `metric_history`, `metric_steps`, `metrics_at_steps`.

use std::collections::BTreeSet;

use cairn_core::model::Metric;
use cairn_core::store::MetricHistoryQuery;
use cairn_core::CoreError;

use crate::log_batch::{history, Lcg};
use crate::support::*;
use crate::Store;

/// (timestamp, step, value) with NaN after every number, as history is ordered.
fn order_key(m: &Metric) -> (i64, i64, bool, f64) {
    (
        m.timestamp,
        m.step,
        m.value.is_nan(),
        if m.value.is_nan() { 0.0 } else { m.value },
    )
}

fn cmp(a: &Metric, b: &Metric) -> std::cmp::Ordering {
    let (ka, kb) = (order_key(a), order_key(b));
    (ka.0, ka.1, ka.2)
        .cmp(&(kb.0, kb.1, kb.2))
        .then(ka.3.total_cmp(&kb.3))
}

/// 60 observations with timestamp ties (broken by step) and timestamp+step ties (broken by
/// value), logged shuffled over several batches.
async fn seed(store: &Store, run_id: &str) -> Vec<Metric> {
    let mut obs = Vec::new();
    for i in 0..60i64 {
        let ts = T0 + i / 6; // six per timestamp
        let step = (i % 6) / 2; // pairs share a step within a timestamp
                                // Never -0.0: it equals 0.0 in SQL and need not keep its sign.
        let value = if i % 2 == 0 {
            (i % 5) as f64
        } else {
            -((i % 7) as f64) - 0.5
        };
        obs.push(metric("m", value, ts, step));
    }
    // Unique (timestamp, step) positions for the special values.
    obs.push(metric("m", f64::INFINITY, T0 + 100, 0));
    obs.push(metric("m", f64::NEG_INFINITY, T0 + 101, 0));
    obs.push(metric("m", f64::NAN, T0 + 102, 0));
    let mut shuffled = obs.clone();
    Lcg(7).shuffle(&mut shuffled);
    for chunk in shuffled.chunks(11) {
        log(
            &**store,
            run_id,
            batch(
                chunk
                    .iter()
                    .cloned()
                    .chain(std::iter::once(metric(
                        "other",
                        1.0,
                        T0,
                        chunk.len() as i64,
                    )))
                    .collect(),
                vec![],
                vec![],
            ),
        )
        .await;
    }
    // Duplicates (same key, timestamp, step, value) are stored once, so dedupe.
    obs.sort_by(cmp);
    obs.dedup_by(|a, b| metric_key(a) == metric_key(b));
    obs
}

/// History is ordered by timestamp, then step, then value, and holds only that key.
pub async fn metric_history_order(store: Store) {
    prepare(&*store).await;
    let exp = new_experiment(&*store, "history").await;
    let id = create_run(&*store, exp, "r").await.info.run_id;
    let want = seed(&store, &id).await;
    let got = history(&*store, &id, "m").await;
    assert_eq!(
        got.iter().map(metric_key).collect::<Vec<_>>(),
        want.iter().map(metric_key).collect::<Vec<_>>(),
        "metric_history must be every observation ordered by (timestamp, step, value)"
    );
    assert!(got.iter().all(|m| m.key == "m"), "only the requested key");

    let none = history(&*store, &id, "never-logged").await;
    assert!(
        none.is_empty(),
        "an unknown key on an existing run is an empty history"
    );
    assert_err!(
        store
            .metric_history(&MetricHistoryQuery {
                run_id: fresh_id(),
                key: "m".into(),
                max_results: None,
                offset: 0,
            })
            .await,
        CoreError::NotFound(_),
        "metric_history of an unknown run"
    );
}

/// Paging through history with any page size reproduces the full history.
pub async fn metric_history_paging(store: Store) {
    prepare(&*store).await;
    let exp = new_experiment(&*store, "history-paging").await;
    let id = create_run(&*store, exp, "r").await.info.run_id;
    let want = seed(&store, &id).await;
    let total = want.len() as u64;
    for size in [1, 5, 7, total - 1, total, total + 1, 10_000] {
        let got = collect_pages(&format!("metric_history by {size}"), size, |offset| {
            let store = store.clone();
            let id = id.clone();
            async move {
                store
                    .metric_history(&MetricHistoryQuery {
                        run_id: id,
                        key: "m".into(),
                        max_results: Some(size),
                        offset,
                    })
                    .await
                    .must("metric_history page")
            }
        })
        .await;
        assert_eq!(
            got.iter().map(metric_key).collect::<Vec<_>>(),
            want.iter().map(metric_key).collect::<Vec<_>>(),
            "metric_history paged by {size} must equal the full history"
        );
    }
}

/// metric_steps lists distinct steps ascending; metrics_at_steps returns the values at
/// the requested steps ordered by step, then timestamp.
pub async fn metric_steps_and_values_at_steps(store: Store) {
    prepare(&*store).await;
    let exp = new_experiment(&*store, "steps").await;
    let id = create_run(&*store, exp, "r").await.info.run_id;
    let mut obs = Vec::new();
    for step in [10i64, 0, 5, 20, 5, 15, 0, -2] {
        // Distinct timestamps per step so order within a step is defined.
        let n = obs.iter().filter(|m: &&Metric| m.step == step).count() as i64;
        obs.push(metric(
            "m",
            step as f64 * 1.5 + n as f64,
            T0 + 100 - n,
            step,
        ));
    }
    log(&*store, &id, batch(obs.clone(), vec![], vec![])).await;
    log(
        &*store,
        &id,
        batch(vec![metric("other", 1.0, T0, 99)], vec![], vec![]),
    )
    .await;

    let steps = store.metric_steps(&id, "m").await.must("metric_steps");
    let want: Vec<i64> = obs
        .iter()
        .map(|m| m.step)
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    assert_eq!(
        steps, want,
        "metric_steps: distinct steps, ascending, this key only"
    );
    assert!(
        store
            .metric_steps(&id, "never-logged")
            .await
            .must("metric_steps of unknown key")
            .is_empty(),
        "no steps for an unknown key"
    );
    assert_err!(
        store
            .metric_steps("ffffffffffffffffffffffffffffffff", "m")
            .await,
        CoreError::NotFound(_),
        "metric_steps of an unknown run"
    );

    let ask = [0i64, 5, 15, 1000, -2];
    let got = store
        .metrics_at_steps(&id, "m", &ask)
        .await
        .must("metrics_at_steps");
    let mut want: Vec<Metric> = obs
        .iter()
        .filter(|m| ask.contains(&m.step))
        .cloned()
        .collect();
    want.sort_by_key(|m| (m.step, m.timestamp));
    assert_eq!(
        got.iter().map(metric_key).collect::<Vec<_>>(),
        want.iter().map(metric_key).collect::<Vec<_>>(),
        "metrics_at_steps: values at the asked steps, by step then timestamp; unknown \
         steps ignored"
    );
    assert!(
        store
            .metrics_at_steps(&id, "m", &[])
            .await
            .must("metrics_at_steps(no steps)")
            .is_empty(),
        "no steps asked, no values"
    );
}
