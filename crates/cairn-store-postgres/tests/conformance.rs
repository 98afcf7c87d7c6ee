//! Runs the shared store conformance suite (`cairn-store-conformance`) against
//! PostgreSQL: one test per scenario, each on a fresh database created for it and
//! dropped afterwards.
//!
//! The server comes from `CAIRN_TEST_PG_URL`, an admin URL (default
//! `postgres://postgres@127.0.0.1:5432/postgres`). If it cannot be reached the tests
//! fail: a missing database is a broken test environment, never a reason to skip.

#![allow(clippy::expect_used, clippy::unwrap_used)]

mod support;

use std::sync::Arc;

use cairn_store_conformance::Fixture;
use cairn_store_postgres::{PgConfig, PgStore};

async fn fixture() -> Fixture {
    let db = support::TestDb::create().await;
    let store = PgStore::open(&PgConfig::new(db.url()))
        .await
        .expect("open a fresh PostgreSQL store");
    Fixture::with_guard(Arc::new(store), db)
}

cairn_store_conformance::conformance_tests!(fixture());
