//! The conformance suite every [`TrackingStore`] (and [`RegistryStore`], [`AuthStore`])
//! backend runs. A backend store implements all three traits; registry scenarios get it
//! through the first two, auth scenarios through all three.
//!
//! Like `object_store`'s `integration.rs`: each scenario is a `pub async fn` written once
//! against the trait, and a backend's test file turns all of them into tests with one
//! macro call, given an expression that builds a fresh, empty store:
//!
//! ```text
//! async fn fixture() -> cairn_store_conformance::Fixture {
//!     let dir = tempfile::tempdir().unwrap();
//!     let store = MyStore::open(dir.path()).await.unwrap();
//!     cairn_store_conformance::Fixture::with_guard(std::sync::Arc::new(store), dir)
//! }
//! cairn_store_conformance::conformance_tests!(fixture());
//! ```
//!
//! The generated tests use `#[tokio::test(flavor = "multi_thread", worker_threads = 4)]`,
//! so the backend crate needs `tokio` (with `macros` and `rt-multi-thread`) among its
//! (dev-)dependencies. Every scenario calls [`prepare`] first (as the service's `init`
//! does), so factories need not create the Default experiment themselves.
//!
//! Expected results are always computed from the data a scenario wrote, never
//! hard-coded, so the suite stays valid when the corpora change.

// Test-support code: scenarios report failures by panicking (assert!, unwrap, expect),
// exactly as the tests that call them would.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::any::Any;
use std::sync::Arc;

use cairn_core::auth::AuthStore;
use cairn_core::registry::RegistryStore;
use cairn_core::store::TrackingStore;

#[macro_use]
mod support;

mod artifacts;
mod auth;
mod concurrency;
mod experiments;
mod gc;
mod inputs;
mod log_batch;
mod logged_models;
mod metric_history;
mod precision;
mod registry;
mod runs;
mod search_experiments;
mod search_runs;
mod service;

pub use artifacts::*;
pub use auth::*;
pub use concurrency::*;
pub use experiments::*;
pub use gc::*;
pub use inputs::*;
pub use log_batch::*;
pub use logged_models::*;
pub use metric_history::*;
pub use precision::*;
pub use registry::*;
pub use runs::*;
pub use search_experiments::*;
pub use search_runs::*;
pub use service::*;
pub use support::{prepare, ARTIFACT_ROOT, T0};

/// The store under test, shared so concurrency scenarios can hand it to spawned tasks.
pub type Store = Arc<dyn TrackingStore>;

/// The same store seen through its registry trait.
pub type Registry = Arc<dyn RegistryStore>;

/// The same store seen through its auth trait.
pub type Auth = Arc<dyn AuthStore>;

/// A fresh, empty store plus whatever must live as long as it (a temporary directory,
/// a throw-away database or schema that is dropped with the guard).
pub struct Fixture {
    store: Store,
    registry: Registry,
    auth: Auth,
    _guard: Option<Box<dyn Any + Send>>,
}

impl Fixture {
    /// A store that needs nothing kept alive beside it.
    pub fn new<S: TrackingStore + RegistryStore + AuthStore>(store: Arc<S>) -> Self {
        Self {
            store: store.clone(),
            registry: store.clone(),
            auth: store,
            _guard: None,
        }
    }

    /// A store plus a guard dropped after the store is closed (e.g. a `TempDir`).
    pub fn with_guard<S: TrackingStore + RegistryStore + AuthStore>(
        store: Arc<S>,
        guard: impl Any + Send,
    ) -> Self {
        Self {
            store: store.clone(),
            registry: store.clone(),
            auth: store,
            _guard: Some(Box::new(guard)),
        }
    }

    /// The store, for handing to a scenario.
    pub fn store(&self) -> Store {
        self.store.clone()
    }

    /// The same store as a registry store, for the registry scenarios.
    pub fn registry(&self) -> Registry {
        self.registry.clone()
    }

    /// The same store as an auth store, for the auth scenarios.
    pub fn auth(&self) -> Auth {
        self.auth.clone()
    }

    /// Closes the store, then drops the guard.
    pub async fn finish(self) {
        self.store.close().await;
    }
}

/// Generates one `#[tokio::test]` per scenario. `$factory` is an expression evaluating to
/// a future of [`Fixture`] (e.g. `fixture()` for an `async fn fixture() -> Fixture`); it
/// is awaited once per test, so every test gets its own empty store.
///
/// The scenario list lives here, once; `cargo test <name>` selects scenarios by the
/// same names as the `pub async fn`s of this crate.
#[macro_export]
macro_rules! conformance_tests {
    (@gen ($factory:expr) [$($name:ident),* $(,)?]) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $name() {
                let fixture: $crate::Fixture = $factory.await;
                $crate::$name(fixture.store()).await;
                fixture.finish().await;
            }
        )*
    };
    (@gen_registry ($factory:expr) [$($name:ident),* $(,)?]) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $name() {
                let fixture: $crate::Fixture = $factory.await;
                $crate::$name(fixture.store(), fixture.registry()).await;
                fixture.finish().await;
            }
        )*
    };
    (@gen_auth ($factory:expr) [$($name:ident),* $(,)?]) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $name() {
                let fixture: $crate::Fixture = $factory.await;
                $crate::$name(fixture.store(), fixture.registry(), fixture.auth()).await;
                fixture.finish().await;
            }
        )*
    };
    ($factory:expr $(,)?) => {
        $crate::conformance_tests!(@gen_auth ($factory) [
            auth_users,
            auth_grants,
            auth_grants_follow_their_resources,
            auth_access,
            auth_tokens,
            auth_audit_chain,
            auth_audit_chain_under_concurrency,
            auth_request_context_audits_and_grants,
            auth_searches_show_what_the_viewer_may_read,
        ]);
        $crate::conformance_tests!(@gen_registry ($factory) [
            registry_model_create_get_update,
            registry_version_numbers_never_reused,
            registry_concurrent_version_creation,
            registry_rename_moves_versions_tags_aliases,
            registry_delete_cascades,
            registry_aliases,
            registry_stage_transitions,
            registry_tags,
            registry_search_models,
            registry_search_versions,
            registry_model_version_fields_round_trip,
            registry_version_recorded_on_logged_model,
            registry_races_settle_like_sequential_calls,
        ]);
        $crate::conformance_tests!(@gen ($factory) [
            // experiments
            experiment_create_and_get,
            experiment_duplicate_name,
            experiment_artifact_location,
            experiment_tags,
            experiment_rename,
            experiment_delete_restore_cascades_to_runs,
            experiment_default_is_idempotent,
            // experiment search
            search_experiments_view_types,
            search_experiments_filters,
            search_experiments_order_by,
            search_experiments_paging,
            // runs
            run_create,
            run_create_errors,
            run_update,
            run_delete_restore,
            // log_batch
            log_batch_lands_data,
            log_batch_special_values_round_trip,
            log_batch_latest_metric_rule,
            log_batch_latest_metric_any_order,
            log_batch_param_immutability_is_atomic,
            log_batch_identical_resend_is_noop,
            log_batch_run_name_tag_renames,
            log_batch_lifecycle_errors,
            run_tag_delete,
            // metric history
            metric_history_order,
            metric_history_paging,
            metric_steps_and_values_at_steps,
            // exact values
            history_doubles_round_trip_exactly,
            history_keeps_dataset_context,
            history_empty_and_last_page,
            run_data_round_trips_exactly,
            // run search
            search_runs_metric_filters,
            search_runs_param_tag_filters,
            search_runs_attribute_filters,
            search_runs_boolean_logic,
            search_runs_dataset_filters,
            search_runs_order_by_metric,
            search_runs_order_by_metric_nan_last,
            search_runs_order_by_param_tag_attribute,
            search_runs_default_order,
            search_runs_paging,
            search_runs_view_types,
            search_runs_experiment_ids,
            // inputs and outputs
            log_inputs_datasets,
            log_inputs_outputs_models,
            // logged models
            logged_model_create_and_get,
            logged_model_status,
            logged_model_tags,
            logged_model_params,
            logged_model_delete,
            logged_model_metrics_from_log_batch,
            logged_model_metrics_same_observation,
            logged_model_search,
            // concurrency
            concurrent_runs_and_batches,
            concurrent_writes_to_one_run,
            concurrent_experiment_creation,
            // artifact digests
            artifact_index_by_directory,
            // gc
            gc_purges_deleted_entities_only,
            // service + store
            service_run_name_is_consistent,
        ]);
    };
}
