//! PostgreSQL implementation of [`cairn_core::store::TrackingStore`].
//!
//! Design: one connection pool shared by reads and writes (PostgreSQL's MVCC lets them
//! run side by side, unlike SQLite's single writer). Every trait method that writes is one
//! transaction at READ COMMITTED; races between replicas are settled by the database, not
//! by the process: `ON CONFLICT` for idempotent inserts and unique names, row locks where
//! a check must hold until commit (an experiment stays active while a run is created in
//! it), and a consistent key order in bulk writes so concurrent batches cannot deadlock.
//! Migrations run under sqlx's PostgreSQL advisory lock, so N replicas may start at once.
//!
//! The store keeps no state beyond the pool: any number of `cairn server` processes can
//! share one database.

#![forbid(unsafe_code)]

mod artifacts;
mod auth;
mod experiments;
mod gc;
mod logged_models;
mod registry;
mod runs;
mod sql;

use std::fmt;
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
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{ConnectOptions, Connection};

/// How to connect.
#[derive(Clone)]
pub struct PgConfig {
    /// `postgresql://user:password@host:port/database?sslmode=...` (also `postgres://`).
    pub url: String,
    /// Pool size per process (default 16). With N replicas the database must allow
    /// N × this many connections.
    pub max_connections: u32,
    /// How long a request waits for a free connection before failing with 503.
    pub acquire_timeout: Duration,
    /// Server-side limit on any one statement (default 60 s); `None` disables it.
    pub statement_timeout: Option<Duration>,
}

impl PgConfig {
    /// Defaults for a connection URL.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            max_connections: 16,
            acquire_timeout: Duration::from_secs(30),
            statement_timeout: Some(Duration::from_secs(60)),
        }
    }
}

impl fmt::Debug for PgConfig {
    // The URL may carry a password: never print it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgConfig")
            .field("url", &"<redacted>")
            .field("max_connections", &self.max_connections)
            .field("acquire_timeout", &self.acquire_timeout)
            .field("statement_timeout", &self.statement_timeout)
            .finish()
    }
}

/// Errors opening the store (request-time errors are [`CoreError`]s). Messages name the
/// host and database, never the password.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The URL could not be parsed.
    #[error("invalid PostgreSQL URL: {0}")]
    Url(String),
    /// The server could not be reached or refused the connection.
    #[error("cannot connect to PostgreSQL at {target}: {source}")]
    Connect {
        /// `host:port/database`.
        target: String,
        /// Cause.
        source: sqlx::Error,
    },
    /// A migration failed.
    #[error("PostgreSQL migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

/// The PostgreSQL store.
#[derive(Debug, Clone)]
pub struct PgStore {
    pub(crate) pool: PgPool,
    /// The audit sealer of this process (see `auth::seal`), stopped with the store.
    sealer: tokio::task::AbortHandle,
}

impl Drop for PgStore {
    fn drop(&mut self) {
        self.sealer.abort();
    }
}

/// How long start-up waits for the first connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

impl PgStore {
    /// Connects and applies pending migrations. Concurrent callers on one database are
    /// serialised by the migrator's advisory lock, so replicas can start together.
    pub async fn open(config: &PgConfig) -> Result<Self, OpenError> {
        // sqlx's parse errors may quote the URL; report only that it is malformed.
        let mut options = PgConnectOptions::from_str(&config.url).map_err(|_| {
            OpenError::Url(
                "expected postgresql://user[:password]@host[:port]/database[?options]".into(),
            )
        })?;
        let target = format!(
            "{}:{}/{}",
            options.get_host(),
            options.get_port(),
            options.get_database().unwrap_or("<default>")
        );
        options = options
            .application_name("cairn")
            .statement_cache_capacity(256);
        if let Some(t) = config.statement_timeout {
            let ms = t.as_millis().to_string();
            options = options.options([("statement_timeout", ms.as_str())]);
        }
        // One direct connection first: the pool would retry a refused connection until
        // its acquire timeout and then report only "timed out", hiding the cause.
        let connect_err = |source| OpenError::Connect {
            target: target.clone(),
            source,
        };
        let first = tokio::time::timeout(CONNECT_TIMEOUT, options.connect())
            .await
            .map_err(|_| connect_err(sqlx::Error::PoolTimedOut))?
            .map_err(connect_err)?;
        first.close().await.map_err(connect_err)?;
        let pool = PgPoolOptions::new()
            .max_connections(config.max_connections.max(1))
            .min_connections(1)
            .acquire_timeout(config.acquire_timeout)
            .idle_timeout(Duration::from_secs(600))
            // No ping before handing out a connection: it is a round trip on every
            // request. A connection that died meanwhile fails its query with an I/O
            // error, which is answered 503 (the client retries) and drops it.
            .test_before_acquire(false)
            .connect_with(options)
            .await
            .map_err(connect_err)?;
        MIGRATOR.run(&pool).await?;
        let sealer = tokio::spawn(auth::seal_loop(pool.clone())).abort_handle();
        Ok(Self { pool, sealer })
    }
}

/// SQLSTATE of a unique-constraint violation.
const UNIQUE_VIOLATION: &str = "23505";

/// Whether `e` is a unique-constraint violation (a lost race for a name or key).
pub(crate) fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.code().as_deref() == Some(UNIQUE_VIOLATION))
}

/// Maps a database error to a core error. Conflicts callers expect are handled before
/// this; what reaches here is overload (retryable, 503) or an internal fault.
pub(crate) fn db_err(e: sqlx::Error) -> CoreError {
    match &e {
        sqlx::Error::PoolTimedOut => {
            return CoreError::Unavailable("the database is busy; retry the request".into())
        }
        sqlx::Error::Database(d) => {
            // deadlock, serialization failure, statement timeout, too many connections,
            // server shutting down: all transient.
            if let Some("40P01" | "40001" | "57014" | "53300" | "57P01" | "57P03") =
                d.code().as_deref()
            {
                tracing::warn!(error = %e, "transient database error");
                return CoreError::Unavailable(format!(
                    "the database could not complete the request ({}); retry it",
                    d.message()
                ));
            }
            // PostgreSQL text cannot hold NUL (22021) or unconvertible characters (22P05):
            // the client's input is at fault, not the server.
            if let Some("22021" | "22P05") = d.code().as_deref() {
                return CoreError::InvalidParameter(
                    "Invalid value: text values may not contain NUL (\\u0000) characters".into(),
                );
            }
        }
        sqlx::Error::Io(_) | sqlx::Error::PoolClosed => {
            return CoreError::Unavailable("the database is unreachable; retry the request".into())
        }
        _ => {}
    }
    CoreError::Internal(e.to_string())
}

/// Parses a stored enum column.
pub(crate) fn parse_col<T: FromStr<Err = CoreError>>(s: &str) -> CoreResult<T> {
    s.parse::<T>()
        .map_err(|_| CoreError::Internal(format!("corrupt column value {s:?}")))
}

#[async_trait]
impl TrackingStore for PgStore {
    async fn create_experiment(&self, new: NewExperiment) -> CoreResult<String> {
        experiments::create(&self.pool, new).await
    }
    async fn get_experiment(&self, id: i64) -> CoreResult<Experiment> {
        experiments::get(&self.pool, id).await
    }
    async fn get_experiment_by_name(&self, name: &str) -> CoreResult<Option<Experiment>> {
        experiments::get_by_name(&self.pool, name).await
    }
    async fn search_experiments(&self, q: &ExperimentSearch) -> CoreResult<Page<Experiment>> {
        experiments::search(&self.pool, q).await
    }
    async fn set_experiment_lifecycle(
        &self,
        id: i64,
        stage: LifecycleStage,
        now: i64,
    ) -> CoreResult<()> {
        experiments::set_lifecycle(&self.pool, id, stage, now).await
    }
    async fn rename_experiment(&self, id: i64, new_name: &str, now: i64) -> CoreResult<()> {
        experiments::rename(&self.pool, id, new_name, now).await
    }
    async fn set_experiment_tag(&self, id: i64, tag: &Tag) -> CoreResult<()> {
        experiments::set_tag(&self.pool, id, tag).await
    }
    async fn delete_experiment_tag(&self, id: i64, key: &str) -> CoreResult<()> {
        experiments::delete_tag(&self.pool, id, key).await
    }
    async fn create_run(&self, new: NewRun) -> CoreResult<Run> {
        runs::create(&self.pool, new).await
    }
    async fn get_run(&self, run_id: &str) -> CoreResult<Run> {
        runs::get(&self.pool, run_id).await
    }
    async fn update_run(&self, update: &RunUpdate) -> CoreResult<RunInfo> {
        runs::update(&self.pool, update).await
    }
    async fn set_run_lifecycle(
        &self,
        run_id: &str,
        stage: LifecycleStage,
        now: i64,
    ) -> CoreResult<()> {
        runs::set_lifecycle(&self.pool, run_id, stage, now).await
    }
    async fn log_batch(&self, run_id: &str, batch: &LogBatch) -> CoreResult<()> {
        runs::log_batch(&self.pool, run_id, batch).await
    }
    async fn delete_run_tag(&self, run_id: &str, key: &str) -> CoreResult<()> {
        runs::delete_tag(&self.pool, run_id, key).await
    }
    async fn search_runs(&self, q: &RunSearch) -> CoreResult<Page<Run>> {
        runs::search(&self.pool, q).await
    }
    async fn metric_history(&self, q: &MetricHistoryQuery) -> CoreResult<Page<Metric>> {
        runs::metric_history(&self.pool, q).await
    }
    async fn metric_steps(&self, run_id: &str, key: &str) -> CoreResult<Vec<i64>> {
        runs::metric_steps(&self.pool, run_id, key).await
    }
    async fn metrics_at_steps(
        &self,
        run_id: &str,
        key: &str,
        steps: &[i64],
    ) -> CoreResult<Vec<Metric>> {
        runs::metrics_at_steps(&self.pool, run_id, key, steps).await
    }
    async fn log_inputs(
        &self,
        run_id: &str,
        datasets: &[DatasetInput],
        models: &[ModelInput],
    ) -> CoreResult<()> {
        runs::log_inputs(&self.pool, run_id, datasets, models).await
    }
    async fn log_outputs(&self, run_id: &str, models: &[ModelOutput]) -> CoreResult<()> {
        runs::log_outputs(&self.pool, run_id, models).await
    }
    async fn create_logged_model(&self, new: NewLoggedModel) -> CoreResult<LoggedModel> {
        logged_models::create(&self.pool, new).await
    }
    async fn get_logged_model(&self, model_id: &str) -> CoreResult<LoggedModel> {
        logged_models::get(&self.pool, model_id).await
    }
    async fn set_logged_model_status(
        &self,
        model_id: &str,
        status: LoggedModelStatus,
        now: i64,
    ) -> CoreResult<LoggedModel> {
        logged_models::set_status(&self.pool, model_id, status, now).await
    }
    async fn delete_logged_model(&self, model_id: &str, now: i64) -> CoreResult<()> {
        logged_models::delete(&self.pool, model_id, now).await
    }
    async fn set_logged_model_tags(&self, model_id: &str, tags: &[Tag]) -> CoreResult<()> {
        logged_models::set_tags(&self.pool, model_id, tags).await
    }
    async fn delete_logged_model_tag(&self, model_id: &str, key: &str) -> CoreResult<()> {
        logged_models::delete_tag(&self.pool, model_id, key).await
    }
    async fn log_logged_model_params(&self, model_id: &str, params: &[Param]) -> CoreResult<()> {
        logged_models::log_params(&self.pool, model_id, params).await
    }
    async fn search_logged_models(&self, q: &LoggedModelSearch) -> CoreResult<Page<LoggedModel>> {
        logged_models::search(&self.pool, q).await
    }
    async fn record_artifact(&self, file: &ArtifactFile) -> CoreResult<()> {
        artifacts::record(self, file).await
    }
    async fn artifact_files(&self, path: &str) -> CoreResult<Vec<ArtifactFile>> {
        artifacts::files(&self.pool, path).await
    }
    async fn forget_artifacts(&self, path: &str) -> CoreResult<u64> {
        artifacts::forget(self, path).await
    }
    async fn gc_candidates(&self, q: &GcQuery) -> CoreResult<GcCandidates> {
        gc::candidates(&self.pool, q).await
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
        experiments::ensure_default(&self.pool, artifact_location, now).await
    }
    async fn ping(&self) -> CoreResult<()> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map_err(db_err)?;
        Ok(())
    }
    async fn close(&self) {
        // Everything committed leaves sealed into the audit chain.
        if let Err(e) = auth::seal(&self.pool).await {
            tracing::warn!(error = %e, "sealing the audit log at shutdown failed");
        }
        self.pool.close().await;
    }
}

#[async_trait]
impl RegistryStore for PgStore {
    async fn create_registered_model(
        &self,
        new: NewRegisteredModel,
    ) -> CoreResult<RegisteredModel> {
        registry::create_model(&self.pool, new).await
    }
    async fn get_registered_model(&self, name: &str) -> CoreResult<RegisteredModel> {
        registry::get_model(&self.pool, name).await
    }
    async fn update_registered_model(
        &self,
        name: &str,
        description: Option<String>,
        now: i64,
    ) -> CoreResult<RegisteredModel> {
        registry::update_model(&self.pool, name, description, now).await
    }
    async fn rename_registered_model(
        &self,
        name: &str,
        new_name: &str,
        now: i64,
    ) -> CoreResult<RegisteredModel> {
        registry::rename_model(&self.pool, name, new_name, now).await
    }
    async fn delete_registered_model(&self, name: &str) -> CoreResult<()> {
        registry::delete_model(&self.pool, name).await
    }
    async fn search_registered_models(
        &self,
        q: &RegistrySearch,
    ) -> CoreResult<Page<RegisteredModel>> {
        registry::search_models(&self.pool, q).await
    }
    async fn set_registered_model_tag(&self, name: &str, tag: &Tag) -> CoreResult<()> {
        registry::set_model_tag(&self.pool, name, tag).await
    }
    async fn delete_registered_model_tag(&self, name: &str, key: &str) -> CoreResult<()> {
        registry::delete_model_tag(&self.pool, name, key).await
    }
    async fn create_model_version(&self, new: NewModelVersion) -> CoreResult<ModelVersion> {
        registry::create_version(&self.pool, new).await
    }
    async fn get_model_version(&self, name: &str, version: i64) -> CoreResult<ModelVersion> {
        registry::get_version(&self.pool, name, version).await
    }
    async fn update_model_version(
        &self,
        name: &str,
        version: i64,
        description: Option<String>,
        now: i64,
    ) -> CoreResult<ModelVersion> {
        registry::update_version(&self.pool, name, version, description, now).await
    }
    async fn transition_model_version_stage(
        &self,
        t: &StageTransition,
    ) -> CoreResult<ModelVersion> {
        registry::transition(&self.pool, t).await
    }
    async fn delete_model_version(&self, name: &str, version: i64, now: i64) -> CoreResult<()> {
        registry::delete_version(&self.pool, name, version, now).await
    }
    async fn search_model_versions(&self, q: &RegistrySearch) -> CoreResult<Page<ModelVersion>> {
        registry::search_versions(&self.pool, q).await
    }
    async fn set_model_version_tag(&self, name: &str, version: i64, tag: &Tag) -> CoreResult<()> {
        registry::set_version_tag(&self.pool, name, version, tag).await
    }
    async fn delete_model_version_tag(
        &self,
        name: &str,
        version: i64,
        key: &str,
    ) -> CoreResult<()> {
        registry::delete_version_tag(&self.pool, name, version, key).await
    }
    async fn set_registered_model_alias(
        &self,
        name: &str,
        alias: &str,
        version: i64,
    ) -> CoreResult<()> {
        registry::set_alias(&self.pool, name, alias, version).await
    }
    async fn delete_registered_model_alias(&self, name: &str, alias: &str) -> CoreResult<()> {
        registry::delete_alias(&self.pool, name, alias).await
    }
    async fn get_model_version_by_alias(
        &self,
        name: &str,
        alias: &str,
    ) -> CoreResult<ModelVersion> {
        registry::get_by_alias(&self.pool, name, alias).await
    }
}

#[async_trait]
impl AuthStore for PgStore {
    async fn create_user(
        &self,
        username: &str,
        password_hash: &str,
        is_admin: bool,
    ) -> CoreResult<User> {
        auth::create_user(&self.pool, username, password_hash, is_admin).await
    }
    async fn credential(&self, username: &str) -> CoreResult<Option<Credential>> {
        auth::credential(&self.pool, username).await
    }
    async fn get_user(&self, username: &str) -> CoreResult<User> {
        auth::get_user(&self.pool, username).await
    }
    async fn list_users(&self) -> CoreResult<Vec<User>> {
        auth::list_users(&self.pool).await
    }
    async fn set_password(&self, username: &str, password_hash: &str) -> CoreResult<()> {
        let sql = "UPDATE users SET password_hash = $1 WHERE username = $2";
        auth::change_user(&self.pool, sql, Some(password_hash), None, username).await
    }
    async fn set_admin(&self, username: &str, is_admin: bool) -> CoreResult<()> {
        let sql = "UPDATE users SET is_admin = $1 WHERE username = $2";
        auth::change_user(&self.pool, sql, None, Some(is_admin), username).await
    }
    async fn delete_user(&self, username: &str) -> CoreResult<()> {
        // Grants and tokens go with the user (ON DELETE CASCADE).
        let sql = "DELETE FROM users WHERE username = $1";
        auth::change_user(&self.pool, sql, None, None, username).await
    }
    async fn put_grant(
        &self,
        kind: GrantKind,
        resource_id: &str,
        username: &str,
        permission: Permission,
        mode: GrantMode,
    ) -> CoreResult<Grant> {
        auth::put_grant(&self.pool, kind, resource_id, username, permission, mode).await
    }
    async fn get_grant(
        &self,
        kind: GrantKind,
        resource_id: &str,
        username: &str,
    ) -> CoreResult<Grant> {
        auth::get_grant(&self.pool, kind, resource_id, username).await
    }
    async fn delete_grant(
        &self,
        kind: GrantKind,
        resource_id: &str,
        username: &str,
    ) -> CoreResult<()> {
        auth::delete_grant(&self.pool, kind, resource_id, username).await
    }
    async fn list_grants(&self, username: &str) -> CoreResult<Vec<(GrantKind, Grant)>> {
        auth::list_grants(&self.pool, username).await
    }
    async fn access(&self, username: &str, target: &Target) -> CoreResult<Option<Access>> {
        auth::access(&self.pool, username, target).await
    }
    async fn create_token(
        &self,
        username: &str,
        name: &str,
        secret_sha256: &str,
        created_ms: i64,
        expires_ms: Option<i64>,
    ) -> CoreResult<AccessToken> {
        auth::create_token(
            &self.pool,
            username,
            name,
            secret_sha256,
            created_ms,
            expires_ms,
        )
        .await
    }
    async fn token_owner(&self, secret_sha256: &str, now_ms: i64) -> CoreResult<Option<User>> {
        auth::token_owner(&self.pool, secret_sha256, now_ms).await
    }
    async fn list_tokens(&self, username: &str) -> CoreResult<Vec<AccessToken>> {
        auth::list_tokens(&self.pool, username).await
    }
    async fn revoke_token(&self, username: &str, id: i64, now_ms: i64) -> CoreResult<()> {
        auth::revoke_token(&self.pool, username, id, now_ms).await
    }
    async fn append_audit(&self, event: &AuditEvent) -> CoreResult<()> {
        auth::append_audit(&self.pool, event).await
    }
    async fn audit_events(&self, after: i64, limit: i64) -> CoreResult<Vec<StoredAuditEvent>> {
        auth::audit_events(&self.pool, after, limit).await
    }
}
