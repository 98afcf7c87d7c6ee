//! Runs the shared store conformance suite (`cairn-store-conformance`) against SQLite:
//! one test per scenario, each on a fresh database in its own temporary directory.

#![allow(clippy::expect_used)]

use std::sync::Arc;

use cairn_store_conformance::Fixture;
use cairn_store_sqlite::{SqliteConfig, SqliteStore};

async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().expect("create a temporary directory");
    let store = SqliteStore::open(&SqliteConfig::new(dir.path().join("cairn.db")))
        .await
        .expect("open a fresh SQLite store");
    Fixture::with_guard(Arc::new(store), dir)
}

cairn_store_conformance::conformance_tests!(fixture());

#[tokio::test]
async fn zz_debug_nan() {
    use cairn_core::model::Metric;
    use cairn_core::store::*;
    let _ = std::fs::remove_dir_all("/tmp/cairn-debug");
    let store = SqliteStore::open(&SqliteConfig::new("/tmp/cairn-debug/cairn.db"))
        .await
        .expect("open");
    store.ensure_default_experiment("x", 0).await.expect("d");
    for (i, v) in [f64::NAN, 5.0].into_iter().enumerate() {
        let id = format!("{i:032}");
        store
            .create_run(NewRun {
                run_id: id.clone(),
                experiment_id: 0,
                run_name: "r".into(),
                user_id: "u".into(),
                start_time: Some(0),
                tags: vec![],
            })
            .await
            .expect("c");
        store
            .log_batch(
                &id,
                &LogBatch {
                    metrics: vec![Metric::new("score", v, 0, 0)],
                    params: vec![],
                    tags: vec![],
                },
            )
            .await
            .expect("l");
    }
    for f in [
        "metrics.score != 3",
        "metrics.score < 3",
        "metrics.score != 5",
    ] {
        let page = store
            .search_runs(&RunSearch {
                experiment_ids: vec![0],
                filter: cairn_core::search::parse_filter(cairn_core::search::SearchKind::Runs, f)
                    .expect("p"),
                view: cairn_core::model::ViewType::All,
                max_results: 10,
                order_by: vec![],
                offset: 0,
            })
            .await
            .expect("s");
        eprintln!(
            "{f}: {:?} / {:?}",
            page.items
                .iter()
                .map(|r| r.info.run_id.clone())
                .collect::<Vec<_>>(),
            cairn_core::search::parse_filter(cairn_core::search::SearchKind::Runs, f)
        );
    }
    store.close().await;
}
