//! A database written by the first release (one history row per observation) opens
//! with today's store, and every observation comes back bit for bit: values, NaN, the
//! infinities, steps, timestamps, paging and the model/dataset context.

#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::borrow::Cow;

use cairn_core::model::Metric;
use cairn_core::store::{LogBatch, MetricHistoryQuery, TrackingStore};
use cairn_store_sqlite::{SqliteConfig, SqliteStore};
use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};

/// (timestamp, step, value)
fn observations() -> Vec<(i64, i64, f64)> {
    let mut v = vec![
        (1, 0, 0.1),
        (1, 0, f64::NAN),
        (2, 1, f64::INFINITY),
        (3, 1, f64::NEG_INFINITY),
        (4, 2, 1e-300),
        (5, 2, -123_456_789.123_456_79),
        (6, 3, f64::MAX),
        (7, 3, f64::MIN_POSITIVE),
    ];
    v.extend((0..500).map(|i| (100 + i, 10 + i / 7, (i as f64).sqrt() / 3.0)));
    v
}

#[tokio::test]
async fn first_release_history_survives_the_chunk_migration() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old.db");
    let old = SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(
            SqliteConnectOptions::new()
                .filename(&path)
                .create_if_missing(true),
        )
        .await
        .unwrap();
    let mut first = sqlx::migrate!("./migrations");
    first.migrations = Cow::Owned(
        first
            .migrations
            .iter()
            .filter(|m| m.version == 1)
            .cloned()
            .collect(),
    );
    first.run(&old).await.unwrap();
    sqlx::query(
        "INSERT INTO experiments (experiment_id, name, artifact_location, creation_time, \
         last_update_time) VALUES (7, 'old', 'x', 1, 1)",
    )
    .execute(&old)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO runs (run_pk, run_id, experiment_id, name, user_id, status, start_time, \
         artifact_uri) VALUES (1, 'aaaabbbbccccddddeeeeffff00001111', 7, 'r', 'u', 'RUNNING', 1, 'x')",
    )
    .execute(&old)
    .await
    .unwrap();
    for (ts, step, value) in observations() {
        let (stored, is_nan) = if value.is_nan() { (0.0, 1) } else { (value, 0) };
        // Observation 4 was logged against a model and dataset.
        let model = (ts == 4).then_some("m-0123");
        sqlx::query(
            "INSERT INTO metrics (run_pk, key, timestamp, step, is_nan, value, model_id, \
             dataset_name, dataset_digest) VALUES (1, 'loss', ?, ?, ?, ?, ?, ?, NULL)",
        )
        .bind(ts)
        .bind(step)
        .bind(is_nan)
        .bind(stored)
        .bind(model)
        .bind(model.map(|_| "train"))
        .execute(&old)
        .await
        .unwrap();
    }
    old.close().await;

    let store = SqliteStore::open(&SqliteConfig::new(&path)).await.unwrap();
    let run_id = "aaaabbbbccccddddeeeeffff00001111".to_string();
    let all = store
        .metric_history(&MetricHistoryQuery {
            run_id: run_id.clone(),
            key: "loss".into(),
            max_results: None,
            offset: 0,
        })
        .await
        .unwrap()
        .items;
    let mut expected = observations();
    // History order: timestamp, step, then value with NaN last.
    expected.sort_by(|a, b| {
        (a.0, a.1, a.2.is_nan())
            .cmp(&(b.0, b.1, b.2.is_nan()))
            .then(a.2.total_cmp(&b.2))
    });
    assert_eq!(all.len(), expected.len());
    for (got, (ts, step, value)) in all.iter().zip(&expected) {
        assert_eq!((got.timestamp, got.step), (*ts, *step));
        assert_eq!(got.value.to_bits(), value.to_bits(), "value at ts {ts}");
    }
    let with_model: Vec<_> = all.iter().filter(|m| m.model_id.is_some()).collect();
    assert_eq!(with_model.len(), 1);
    assert_eq!(with_model[0].timestamp, 4);
    assert_eq!(with_model[0].dataset_name.as_deref(), Some("train"));

    // New writes land beside the migrated chunk and page together with it.
    let batch = LogBatch {
        metrics: vec![
            Metric::new("loss", 0.5, 2, 1),
            Metric::new("loss", 0.1, 1, 0),
        ],
        params: Vec::new(),
        tags: Vec::new(),
    };
    store.log_batch(&run_id, &batch).await.unwrap();
    let page = store
        .metric_history(&MetricHistoryQuery {
            run_id: run_id.clone(),
            key: "loss".into(),
            max_results: Some(3),
            offset: 2,
        })
        .await
        .unwrap();
    assert_eq!(
        page.items
            .iter()
            .map(|m| (m.timestamp, m.value))
            .collect::<Vec<_>>(),
        [(2, 0.5), (2, f64::INFINITY), (3, f64::NEG_INFINITY)]
    );
    let steps = store.metric_steps(&run_id, "loss").await.unwrap();
    assert_eq!(&steps[..5], &[0, 1, 2, 3, 10]);
}
