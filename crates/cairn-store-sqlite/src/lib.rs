//! Embedded SQLite implementation of [`cairn_core::store::TrackingStore`].
//!
//! Design: WAL mode, one writer connection behind sqlx's fair pool queue (so concurrent
//! writers wait their turn instead of failing with "database is locked"), and a separate
//! pool of reader connections that never block on the writer. Every trait method that
//! writes runs in one transaction on the writer.

#![forbid(unsafe_code)]

mod artifacts;
mod auth;
mod experiments;
mod gc;
mod logged_models;
mod registry;
mod runs;
mod sql;

use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use cairn_core::audit::{AuditEvent, StoredAuditEvent};
use cairn_core::auth::{
    Access, AccessToken, AuthStore, Credential, Grant, GrantKind, GrantMode, Permission, Target,
    User,
};
use cairn_core::model::{
    ArtifactFile, DatasetInput, Experiment, LifecycleStage, LoggedModel, LoggedModelStatus, Metric,
    ModelInput, ModelOutput, Param, Run, RunInfo, Tag,
};
use cairn_core::page::Page;
use cairn_core::registry::{
    ModelVersion, NewModelVersion, NewRegisteredModel, RegisteredModel, RegistrySearch,
    RegistryStore, StageTransition,
};
use cairn_core::store::{
    ExperimentSearch, GcCandidates, GcQuery, LogBatch, LoggedModelSearch, MetricHistoryQuery,
    NewExperiment, NewLoggedModel, NewRun, RunSearch, RunUpdate, TrackingStore,
};
use cairn_core::{CoreError, CoreResult};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

/// How to open the database.
#[derive(Debug, Clone)]
pub struct SqliteConfig {
    /// Database file; created with its parent directory if missing.
    pub path: PathBuf,
    /// Reader connections (default: 4).
    pub readers: u32,
    /// How long a write waits for the writer before the request fails with 503.
    pub write_timeout: Duration,
}

impl SqliteConfig {
    /// Defaults for a database file.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            readers: 4,
            write_timeout: Duration::from_secs(30),
        }
    }
}

/// Errors opening the store (request-time errors are [`CoreError`]s).
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The database file could not be opened or created.
    #[error("cannot open SQLite database {path}: {source}")]
    Open {
        /// Path.
        path: String,
        /// Cause.
        source: sqlx::Error,
    },
    /// A migration failed.
    #[error("SQLite migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// The parent directory could not be created.
    #[error("cannot create directory for {path}: {source}")]
    Dir {
        /// Path.
        path: String,
        /// Cause.
        source: std::io::Error,
    },
}

/// The SQLite store.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    /// The single writer connection.
    pub(crate) writer: SqlitePool,
    /// Reader connections.
    pub(crate) reader: SqlitePool,
    /// The audit sealer (see `auth::seal`), stopped with the store.
    sealer: tokio::task::AbortHandle,
}

impl Drop for SqliteStore {
    fn drop(&mut self) {
        self.sealer.abort();
    }
}

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

impl SqliteStore {
    /// Opens (creating if needed) the database and applies pending migrations.
    pub async fn open(config: &SqliteConfig) -> Result<Self, OpenError> {
        if let Some(dir) = config.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| OpenError::Dir {
                path: dir.display().to_string(),
                source,
            })?;
        }
        let open_err = |source| OpenError::Open {
            path: config.path.display().to_string(),
            source,
        };
        let base = SqliteConnectOptions::new()
            .filename(&config.path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // NORMAL is durable across application crashes in WAL mode; only an OS crash
            // can lose the last transactions, never corrupt the file.
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10))
            // MLflow's LIKE is case-sensitive; ILIKE is compiled to lower() LIKE lower().
            .pragma("case_sensitive_like", "ON")
            .pragma("temp_store", "MEMORY")
            .pragma("cache_size", "-16000")
            .statement_cache_capacity(256);
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .acquire_timeout(config.write_timeout)
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_with(base.clone())
            .await
            .map_err(open_err)?;
        MIGRATOR.run(&writer).await?;
        let reader = SqlitePoolOptions::new()
            .max_connections(config.readers.max(1))
            .min_connections(1)
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(base.pragma("query_only", "ON"))
            .await
            .map_err(open_err)?;
        let sealer = tokio::spawn(auth::seal_loop(writer.clone())).abort_handle();
        Ok(Self {
            writer,
            reader,
            sealer,
        })
    }
}

/// Maps a database error to a core error; constraint violations the callers expect are
/// handled before this, so anything reaching here is an internal fault or overload.
pub(crate) fn db_err(e: sqlx::Error) -> CoreError {
    match e {
        sqlx::Error::PoolTimedOut => {
            CoreError::Unavailable("the database is busy; retry the request".into())
        }
        other => CoreError::Internal(other.to_string()),
    }
}

/// Parses a stored enum column.
pub(crate) fn parse_col<T: FromStr<Err = CoreError>>(s: &str) -> CoreResult<T> {
    s.parse::<T>()
        .map_err(|_| CoreError::Internal(format!("corrupt column value {s:?}")))
}

#[async_trait]
impl TrackingStore for SqliteStore {
    async fn create_experiment(&self, new: NewExperiment) -> CoreResult<String> {
        experiments::create(self, new).await
    }
    async fn get_experiment(&self, id: i64) -> CoreResult<Experiment> {
        experiments::get(&self.reader, id).await
    }
    async fn get_experiment_by_name(&self, name: &str) -> CoreResult<Option<Experiment>> {
        experiments::get_by_name(&self.reader, name).await
    }
    async fn search_experiments(&self, q: &ExperimentSearch) -> CoreResult<Page<Experiment>> {
        experiments::search(&self.reader, q).await
    }
    async fn set_experiment_lifecycle(
        &self,
        id: i64,
        stage: LifecycleStage,
        now: i64,
    ) -> CoreResult<()> {
        experiments::set_lifecycle(self, id, stage, now).await
    }
    async fn rename_experiment(&self, id: i64, new_name: &str, now: i64) -> CoreResult<()> {
        experiments::rename(self, id, new_name, now).await
    }
    async fn set_experiment_tag(&self, id: i64, tag: &Tag) -> CoreResult<()> {
        experiments::set_tag(self, id, tag).await
    }
    async fn delete_experiment_tag(&self, id: i64, key: &str) -> CoreResult<()> {
        experiments::delete_tag(self, id, key).await
    }
    async fn create_run(&self, new: NewRun) -> CoreResult<Run> {
        runs::create(self, new).await
    }
    async fn get_run(&self, run_id: &str) -> CoreResult<Run> {
        runs::get(&self.reader, run_id).await
    }
    async fn update_run(&self, update: &RunUpdate) -> CoreResult<RunInfo> {
        runs::update(self, update).await
    }
    async fn set_run_lifecycle(
        &self,
        run_id: &str,
        stage: LifecycleStage,
        now: i64,
    ) -> CoreResult<()> {
        runs::set_lifecycle(self, run_id, stage, now).await
    }
    async fn log_batch(&self, run_id: &str, batch: &LogBatch) -> CoreResult<()> {
        runs::log_batch(self, run_id, batch).await
    }
    async fn delete_run_tag(&self, run_id: &str, key: &str) -> CoreResult<()> {
        runs::delete_tag(self, run_id, key).await
    }
    async fn search_runs(&self, q: &RunSearch) -> CoreResult<Page<Run>> {
        runs::search(&self.reader, q).await
    }
    async fn metric_history(&self, q: &MetricHistoryQuery) -> CoreResult<Page<Metric>> {
        runs::metric_history(&self.reader, q).await
    }
    async fn metric_steps(&self, run_id: &str, key: &str) -> CoreResult<Vec<i64>> {
        runs::metric_steps(&self.reader, run_id, key).await
    }
    async fn metrics_at_steps(
        &self,
        run_id: &str,
        key: &str,
        steps: &[i64],
    ) -> CoreResult<Vec<Metric>> {
        runs::metrics_at_steps(&self.reader, run_id, key, steps).await
    }
    async fn log_inputs(
        &self,
        run_id: &str,
        datasets: &[DatasetInput],
        models: &[ModelInput],
    ) -> CoreResult<()> {
        runs::log_inputs(self, run_id, datasets, models).await
    }
    async fn log_outputs(&self, run_id: &str, models: &[ModelOutput]) -> CoreResult<()> {
        runs::log_outputs(self, run_id, models).await
    }
    async fn create_logged_model(&self, new: NewLoggedModel) -> CoreResult<LoggedModel> {
        logged_models::create(self, new).await
    }
    async fn get_logged_model(&self, model_id: &str) -> CoreResult<LoggedModel> {
        logged_models::get(&self.reader, model_id).await
    }
    async fn set_logged_model_status(
        &self,
        model_id: &str,
        status: LoggedModelStatus,
        now: i64,
    ) -> CoreResult<LoggedModel> {
        logged_models::set_status(self, model_id, status, now).await
    }
    async fn delete_logged_model(&self, model_id: &str, now: i64) -> CoreResult<()> {
        logged_models::delete(self, model_id, now).await
    }
    async fn set_logged_model_tags(&self, model_id: &str, tags: &[Tag]) -> CoreResult<()> {
        logged_models::set_tags(self, model_id, tags).await
    }
    async fn delete_logged_model_tag(&self, model_id: &str, key: &str) -> CoreResult<()> {
        logged_models::delete_tag(self, model_id, key).await
    }
    async fn log_logged_model_params(&self, model_id: &str, params: &[Param]) -> CoreResult<()> {
        logged_models::log_params(self, model_id, params).await
    }
    async fn search_logged_models(&self, q: &LoggedModelSearch) -> CoreResult<Page<LoggedModel>> {
        logged_models::search(&self.reader, q).await
    }
    async fn record_artifact(&self, file: &ArtifactFile) -> CoreResult<()> {
        artifacts::record(self, file).await
    }
    async fn artifact_files(&self, path: &str) -> CoreResult<Vec<ArtifactFile>> {
        artifacts::files(&self.reader, path).await
    }
    async fn forget_artifacts(&self, path: &str) -> CoreResult<u64> {
        artifacts::forget(self, path).await
    }
    async fn gc_candidates(&self, q: &GcQuery) -> CoreResult<GcCandidates> {
        gc::candidates(&self.reader, q).await
    }
    async fn purge_run(&self, run_id: &str) -> CoreResult<bool> {
        gc::purge_run(self, run_id).await
    }
    async fn purge_logged_model(&self, model_id: &str) -> CoreResult<bool> {
        gc::purge_logged_model(self, model_id).await
    }
    async fn purge_experiment(&self, experiment_id: i64) -> CoreResult<bool> {
        gc::purge_experiment(self, experiment_id).await
    }
    async fn ensure_default_experiment(&self, artifact_location: &str, now: i64) -> CoreResult<()> {
        experiments::ensure_default(self, artifact_location, now).await
    }
    async fn ping(&self) -> CoreResult<()> {
        sqlx::query("SELECT 1")
            .execute(&self.reader)
            .await
            .map_err(db_err)?;
        Ok(())
    }
    async fn close(&self) {
        // Everything committed leaves sealed into the audit chain.
        if let Err(e) = auth::seal(&self.writer).await {
            tracing::warn!(error = %e, "sealing the audit log at shutdown failed");
        }
        self.reader.close().await;
        // Checkpoint so the next start does not replay a large WAL.
        let _ = sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
            .execute(&self.writer)
            .await;
        self.writer.close().await;
    }
}

#[async_trait]
impl RegistryStore for SqliteStore {
    async fn create_registered_model(
        &self,
        new: NewRegisteredModel,
    ) -> CoreResult<RegisteredModel> {
        registry::create_model(self, new).await
    }
    async fn get_registered_model(&self, name: &str) -> CoreResult<RegisteredModel> {
        registry::get_model(&self.reader, name).await
    }
    async fn update_registered_model(
        &self,
        name: &str,
        description: Option<String>,
        now: i64,
    ) -> CoreResult<RegisteredModel> {
        registry::update_model(self, name, description, now).await
    }
    async fn rename_registered_model(
        &self,
        name: &str,
        new_name: &str,
        now: i64,
    ) -> CoreResult<RegisteredModel> {
        registry::rename_model(self, name, new_name, now).await
    }
    async fn delete_registered_model(&self, name: &str) -> CoreResult<()> {
        registry::delete_model(self, name).await
    }
    async fn search_registered_models(
        &self,
        q: &RegistrySearch,
    ) -> CoreResult<Page<RegisteredModel>> {
        registry::search_models(&self.reader, q).await
    }
    async fn set_registered_model_tag(&self, name: &str, tag: &Tag) -> CoreResult<()> {
        registry::set_model_tag(self, name, tag).await
    }
    async fn delete_registered_model_tag(&self, name: &str, key: &str) -> CoreResult<()> {
        registry::delete_model_tag(self, name, key).await
    }
    async fn create_model_version(&self, new: NewModelVersion) -> CoreResult<ModelVersion> {
        registry::create_version(self, new).await
    }
    async fn get_model_version(&self, name: &str, version: i64) -> CoreResult<ModelVersion> {
        registry::get_version(&self.reader, name, version).await
    }
    async fn update_model_version(
        &self,
        name: &str,
        version: i64,
        description: Option<String>,
        now: i64,
    ) -> CoreResult<ModelVersion> {
        registry::update_version(self, name, version, description, now).await
    }
    async fn transition_model_version_stage(
        &self,
        t: &StageTransition,
    ) -> CoreResult<ModelVersion> {
        registry::transition(self, t).await
    }
    async fn delete_model_version(&self, name: &str, version: i64, now: i64) -> CoreResult<()> {
        registry::delete_version(self, name, version, now).await
    }
    async fn search_model_versions(&self, q: &RegistrySearch) -> CoreResult<Page<ModelVersion>> {
        registry::search_versions(&self.reader, q).await
    }
    async fn set_model_version_tag(&self, name: &str, version: i64, tag: &Tag) -> CoreResult<()> {
        registry::set_version_tag(self, name, version, tag).await
    }
    async fn delete_model_version_tag(
        &self,
        name: &str,
        version: i64,
        key: &str,
    ) -> CoreResult<()> {
        registry::delete_version_tag(self, name, version, key).await
    }
    async fn set_registered_model_alias(
        &self,
        name: &str,
        alias: &str,
        version: i64,
    ) -> CoreResult<()> {
        registry::set_alias(self, name, alias, version).await
    }
    async fn delete_registered_model_alias(&self, name: &str, alias: &str) -> CoreResult<()> {
        registry::delete_alias(self, name, alias).await
    }
    async fn get_model_version_by_alias(
        &self,
        name: &str,
        alias: &str,
    ) -> CoreResult<ModelVersion> {
        registry::get_by_alias(&self.reader, name, alias).await
    }
}

#[async_trait]
impl AuthStore for SqliteStore {
    async fn create_user(
        &self,
        username: &str,
        password_hash: &str,
        is_admin: bool,
    ) -> CoreResult<User> {
        auth::create_user(self, username, password_hash, is_admin).await
    }
    async fn credential(&self, username: &str) -> CoreResult<Option<Credential>> {
        auth::credential(self, username).await
    }
    async fn get_user(&self, username: &str) -> CoreResult<User> {
        auth::get_user(self, username).await
    }
    async fn list_users(&self) -> CoreResult<Vec<User>> {
        auth::list_users(self).await
    }
    async fn set_password(&self, username: &str, password_hash: &str) -> CoreResult<()> {
        let sql = "UPDATE users SET password_hash = ? WHERE username = ?";
        auth::change_user(self, sql, Some(password_hash), None, username).await
    }
    async fn set_admin(&self, username: &str, is_admin: bool) -> CoreResult<()> {
        let sql = "UPDATE users SET is_admin = ? WHERE username = ?";
        auth::change_user(self, sql, None, Some(is_admin), username).await
    }
    async fn delete_user(&self, username: &str) -> CoreResult<()> {
        let sql = "DELETE FROM users WHERE username = ?";
        auth::change_user(self, sql, None, None, username).await
    }
    async fn put_grant(
        &self,
        kind: GrantKind,
        resource_id: &str,
        username: &str,
        permission: Permission,
        mode: GrantMode,
    ) -> CoreResult<Grant> {
        auth::put_grant(self, kind, resource_id, username, permission, mode).await
    }
    async fn get_grant(
        &self,
        kind: GrantKind,
        resource_id: &str,
        username: &str,
    ) -> CoreResult<Grant> {
        auth::get_grant(self, kind, resource_id, username).await
    }
    async fn delete_grant(
        &self,
        kind: GrantKind,
        resource_id: &str,
        username: &str,
    ) -> CoreResult<()> {
        auth::delete_grant(self, kind, resource_id, username).await
    }
    async fn list_grants(&self, username: &str) -> CoreResult<Vec<(GrantKind, Grant)>> {
        auth::list_grants(self, username).await
    }
    async fn access(&self, username: &str, target: &Target) -> CoreResult<Option<Access>> {
        auth::access(self, username, target).await
    }
    async fn create_token(
        &self,
        username: &str,
        name: &str,
        secret_sha256: &str,
        created_ms: i64,
        expires_ms: Option<i64>,
    ) -> CoreResult<AccessToken> {
        auth::create_token(self, username, name, secret_sha256, created_ms, expires_ms).await
    }
    async fn token_owner(&self, secret_sha256: &str, now_ms: i64) -> CoreResult<Option<User>> {
        auth::token_owner(self, secret_sha256, now_ms).await
    }
    async fn list_tokens(&self, username: &str) -> CoreResult<Vec<AccessToken>> {
        auth::list_tokens(self, username).await
    }
    async fn revoke_token(&self, username: &str, id: i64, now_ms: i64) -> CoreResult<()> {
        auth::revoke_token(self, username, id, now_ms).await
    }
    async fn append_audit(&self, event: &AuditEvent) -> CoreResult<()> {
        auth::append_audit(self, event).await
    }
    async fn audit_events(&self, after: i64, limit: i64) -> CoreResult<Vec<StoredAuditEvent>> {
        auth::audit_events(self, after, limit).await
    }
}
