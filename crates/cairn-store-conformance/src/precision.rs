//! Values survive the store bit for bit: every double (including subnormals, ±Inf and
//! NaN), awkward strings, and the model/dataset context of history rows. Backends read
//! history through packed or array paths; these scenarios pin that those paths are exact.

use cairn_core::model::Metric;
use cairn_core::store::MetricHistoryQuery;

use crate::support::*;
use crate::Store;

fn query(run_id: &str, key: &str) -> MetricHistoryQuery {
    MetricHistoryQuery {
        run_id: run_id.into(),
        key: key.into(),
        max_results: None,
        offset: 0,
    }
}

async fn run_in_default(store: &Store) -> String {
    prepare(store.as_ref()).await;
    create_run(store.as_ref(), 0, "precision").await.info.run_id
}

/// Doubles that only round-trip through 17 significant digits or the binary form.
pub async fn history_doubles_round_trip_exactly(store: Store) {
    let run_id = run_in_default(&store).await;
    let values = [
        0.1 + 0.2,
        1.400_000_000_000_000_1,
        -1.0 / 3.0,
        f64::MAX,
        f64::MIN_POSITIVE,
        5e-324,
        -2.5e-300,
        123_456_789_012_345_680.0,
        f64::INFINITY,
        f64::NEG_INFINITY,
        f64::NAN,
        0.0,
        -0.0,
    ];
    let metrics: Vec<Metric> = values
        .iter()
        .enumerate()
        .map(|(i, v)| metric("m", *v, i as i64, i as i64))
        .collect();
    log(store.as_ref(), &run_id, batch(metrics, vec![], vec![])).await;
    let got = store
        .metric_history(&query(&run_id, "m"))
        .await
        .must("history of m");
    assert_eq!(got.items.len(), values.len());
    for (m, v) in got.items.iter().zip(values) {
        assert_eq!(m.key, "m");
        if v.is_nan() {
            assert!(m.value.is_nan(), "step {}: {} is not NaN", m.step, m.value);
        } else if v == 0.0 {
            // -0.0 and 0.0 are one value to MLflow (and to a primary key).
            assert_eq!(m.value, 0.0, "step {}", m.step);
        } else {
            assert_eq!(
                m.value.to_bits(),
                v.to_bits(),
                "step {}: {} != {v}",
                m.step,
                m.value
            );
        }
    }
}

/// History rows carrying a dataset keep it; rows without one stay without.
pub async fn history_keeps_dataset_context(store: Store) {
    let run_id = run_in_default(&store).await;
    let mut with_ctx = metric("acc", 0.5, 10, 1);
    with_ctx.dataset_name = Some("train, v2;x".into());
    with_ctx.dataset_digest = Some("abc".into());
    let plain = metric("acc", 0.25, 5, 0);
    log(
        store.as_ref(),
        &run_id,
        batch(vec![with_ctx, plain], vec![], vec![]),
    )
    .await;
    let got = store
        .metric_history(&query(&run_id, "acc"))
        .await
        .must("history of acc");
    assert_eq!(got.items.len(), 2);
    assert_eq!(got.items[0].value, 0.25);
    assert_eq!(got.items[0].dataset_name, None);
    assert_eq!(got.items[1].dataset_name.as_deref(), Some("train, v2;x"));
    assert_eq!(got.items[1].dataset_digest.as_deref(), Some("abc"));
}

/// An unknown key has an empty history; a last partial page has no next token.
pub async fn history_empty_and_last_page(store: Store) {
    let run_id = run_in_default(&store).await;
    let got = store
        .metric_history(&query(&run_id, "none"))
        .await
        .must("history of an unknown key");
    assert!(got.items.is_empty());
    assert!(got.next_page_token.is_none());
    let metrics: Vec<Metric> = (0..10).map(|i| metric("p", i as f64, i, i)).collect();
    log(store.as_ref(), &run_id, batch(metrics, vec![], vec![])).await;
    let mut q = query(&run_id, "p");
    q.max_results = Some(4);
    q.offset = 8;
    let got = store.metric_history(&q).await.must("last page");
    let steps: Vec<i64> = got.items.iter().map(|m| m.step).collect();
    assert_eq!(steps, vec![8, 9]);
    assert!(got.next_page_token.is_none());
}

/// Latest metrics and params read back by `get_run` are exact too.
pub async fn run_data_round_trips_exactly(store: Store) {
    let run_id = run_in_default(&store).await;
    let values = [0.1 + 0.2, 5e-324, f64::MAX, -1.0 / 3.0, f64::NEG_INFINITY];
    let metrics: Vec<Metric> = values
        .iter()
        .enumerate()
        .map(|(i, v)| metric(&format!("k{i}"), *v, 1, 0))
        .collect();
    let params = vec![param("quote\"and,comma", "line\nbreak \u{1F600} ;[]'\\")];
    log(store.as_ref(), &run_id, batch(metrics, params, vec![])).await;
    let run = store.get_run(&run_id).await.must("get_run");
    for (i, v) in values.iter().enumerate() {
        let m = run
            .data
            .metrics
            .iter()
            .find(|m| m.key == format!("k{i}"))
            .unwrap_or_else(|| panic!("metric k{i} missing"));
        assert_eq!(m.value.to_bits(), v.to_bits(), "k{i}");
    }
    assert_eq!(run.data.params[0].value, "line\nbreak \u{1F600} ;[]'\\");
    assert_eq!(run.data.params[0].key, "quote\"and,comma");
}
