//! The packed metric-history read path must return every double bit-for-bit and keep the
//! model/dataset context of the rows that have one.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use cairn_core::model::Metric;
use cairn_core::store::{LogBatch, MetricHistoryQuery, NewRun, TrackingStore};
use cairn_store_sqlite::{SqliteConfig, SqliteStore};

async fn store_with_run() -> (SqliteStore, tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&SqliteConfig::new(dir.path().join("db.sqlite")))
        .await
        .unwrap();
    store
        .ensure_default_experiment("mlflow-artifacts:/0", 1)
        .await
        .unwrap();
    let run_id = "0123456789abcdef0123456789abcdef".to_string();
    store
        .create_run(NewRun {
            run_id: run_id.clone(),
            experiment_id: 0,
            run_name: "r".into(),
            user_id: "u".into(),
            start_time: Some(1),
            tags: vec![],
        })
        .await
        .unwrap();
    (store, dir, run_id)
}

fn query(run_id: &str, key: &str) -> MetricHistoryQuery {
    MetricHistoryQuery {
        run_id: run_id.into(),
        key: key.into(),
        max_results: None,
        offset: 0,
    }
}

#[tokio::test]
async fn doubles_round_trip_exactly() {
    let (store, _dir, run_id) = store_with_run().await;
    let values = [
        0.1 + 0.2,
        1.4000000000000001,
        -1.0 / 3.0,
        f64::MAX,
        f64::MIN_POSITIVE,
        5e-324,
        -2.5e-300,
        123456789012345680.0,
        f64::INFINITY,
        f64::NEG_INFINITY,
        f64::NAN,
        0.0,
    ];
    let metrics: Vec<Metric> = values
        .iter()
        .enumerate()
        .map(|(i, v)| Metric::new("m", *v, i as i64, i as i64))
        .collect();
    let batch = LogBatch {
        metrics,
        ..LogBatch::default()
    };
    store.log_batch(&run_id, &batch).await.unwrap();
    let got = store.metric_history(&query(&run_id, "m")).await.unwrap();
    assert_eq!(got.items.len(), values.len());
    for (m, v) in got.items.iter().zip(values) {
        if v.is_nan() {
            assert!(m.value.is_nan(), "step {}: {} is not NaN", m.step, m.value);
        } else {
            assert_eq!(
                m.value.to_bits(),
                v.to_bits(),
                "step {}: {} != {v}",
                m.step,
                m.value
            );
        }
        assert_eq!(m.key, "m");
    }
}

#[tokio::test]
async fn dataset_context_survives_the_packed_path() {
    let (store, _dir, run_id) = store_with_run().await;
    let mut with_ctx = Metric::new("acc", 0.5, 10, 1);
    with_ctx.dataset_name = Some("train, v2;x".into());
    with_ctx.dataset_digest = Some("abc".into());
    let plain = Metric::new("acc", 0.25, 5, 0);
    let batch = LogBatch {
        metrics: vec![with_ctx, plain],
        ..LogBatch::default()
    };
    store.log_batch(&run_id, &batch).await.unwrap();
    let got = store.metric_history(&query(&run_id, "acc")).await.unwrap();
    assert_eq!(got.items.len(), 2);
    assert_eq!(got.items[0].value, 0.25);
    assert_eq!(got.items[0].dataset_name, None);
    assert_eq!(got.items[1].dataset_name.as_deref(), Some("train, v2;x"));
    assert_eq!(got.items[1].dataset_digest.as_deref(), Some("abc"));
}

#[tokio::test]
async fn empty_history_and_paging() {
    let (store, _dir, run_id) = store_with_run().await;
    let got = store.metric_history(&query(&run_id, "none")).await.unwrap();
    assert!(got.items.is_empty());
    assert!(got.next_page_token.is_none());
    let metrics: Vec<Metric> = (0..10).map(|i| Metric::new("p", i as f64, i, i)).collect();
    store
        .log_batch(
            &run_id,
            &LogBatch {
                metrics,
                ..LogBatch::default()
            },
        )
        .await
        .unwrap();
    let mut q = query(&run_id, "p");
    q.max_results = Some(4);
    q.offset = 8;
    let got = store.metric_history(&q).await.unwrap();
    let steps: Vec<i64> = got.items.iter().map(|m| m.step).collect();
    assert_eq!(steps, vec![8, 9]);
    assert!(got.next_page_token.is_none());
}

#[tokio::test]
async fn run_data_values_round_trip_exactly() {
    let (store, _dir, run_id) = store_with_run().await;
    let values = [0.1 + 0.2, 5e-324, f64::MAX, -1.0 / 3.0, f64::NEG_INFINITY];
    let metrics: Vec<Metric> = values
        .iter()
        .enumerate()
        .map(|(i, v)| Metric::new(format!("k{i}"), *v, 1, 0))
        .collect();
    let params = vec![cairn_core::model::Param {
        key: "quote\"and,comma".into(),
        value: "line\nbreak \u{1F600} ;[]".into(),
    }];
    let batch = LogBatch {
        metrics,
        params,
        ..LogBatch::default()
    };
    store.log_batch(&run_id, &batch).await.unwrap();
    let run = store.get_run(&run_id).await.unwrap();
    for (i, v) in values.iter().enumerate() {
        let m = run
            .data
            .metrics
            .iter()
            .find(|m| m.key == format!("k{i}"))
            .unwrap();
        assert_eq!(m.value.to_bits(), v.to_bits(), "k{i}");
    }
    assert_eq!(run.data.params[0].value, "line\nbreak \u{1F600} ;[]");
    assert_eq!(run.data.params[0].key, "quote\"and,comma");
}
