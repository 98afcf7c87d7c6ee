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
