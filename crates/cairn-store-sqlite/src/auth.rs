//! Accounts, grants, access tokens and the audit log. Every write runs on the single
//! writer, which also orders the audit chain: an event reads the last hash and appends
//! the next link inside the same serialised transaction.

use cairn_core::audit::{self, AuditEvent, AuditRow, PendingRow, StoredAuditEvent};
use cairn_core::auth::{
    grant_not_found, resource_not_found, stored_permission, user_not_found, Access, AccessToken,
    Credential, Grant, GrantKind, GrantMode, Permission, Target, TokenRow, User, UserRow,
};
use cairn_core::context;
use cairn_core::{CoreError, CoreResult};
use sqlx::{QueryBuilder, Sqlite, SqliteConnection, SqlitePool, Transaction};

use crate::{db_err, SqliteStore};

type Tx = Transaction<'static, Sqlite>;

/// Commits a write transaction, first appending the current request's pending audit
/// event to it, so the change and its record are durable together or not at all.
pub(crate) async fn commit(mut tx: Tx) -> CoreResult<()> {
    context::with_pending_audit(|event| async move {
        if let Some(event) = &event {
            append_link(&mut tx, event).await?;
        }
        tx.commit().await.map_err(db_err)?;
        Ok(Some(()))
    })
    .await
    .map(|_| ())
}

/// Records `event` in the transaction: one insert. It joins the hash chain when the
/// sealer gives it a position (see [`seal`]).
async fn append_link(conn: &mut SqliteConnection, event: &AuditEvent) -> CoreResult<()> {
    sqlx::query(
        "INSERT INTO audit_events (time_ms, actor, auth_method, source_ip, action, resource, \
         outcome, request_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(event.time_ms)
    .bind(&event.actor)
    .bind(&event.auth_method)
    .bind(&event.source_ip)
    .bind(&event.action)
    .bind(&event.resource)
    .bind(&event.outcome)
    .bind(&event.request_id)
    .execute(&mut *conn)
    .await
    .map_err(db_err)?;
    Ok(())
}

/// The background sealer (see [`seal`]).
pub(crate) async fn seal_loop(writer: SqlitePool) {
    audit::run_sealer(|| writer.is_closed(), || seal(&writer)).await
}

/// Chains every unsealed event, in `event_id` order, after the last sealed one: each gets
/// the next position and its hash. Runs on the single writer, so it is the only sealer.
/// Returns how many events were sealed.
pub(crate) async fn seal(writer: &SqlitePool) -> CoreResult<u64> {
    let mut sealed = 0u64;
    loop {
        let mut tx = writer.begin().await.map_err(db_err)?;
        let last: Option<(i64, String)> = sqlx::query_as(
            "SELECT seq, hash FROM audit_events WHERE seq IS NOT NULL ORDER BY seq DESC LIMIT 1",
        )
        .fetch_optional(&mut *tx)
        .await
        .map_err(db_err)?;
        let pending: Vec<PendingRow> = sqlx::query_as(
            "SELECT event_id, time_ms, actor, auth_method, source_ip, action, resource, \
             outcome, request_id FROM audit_events WHERE seq IS NULL ORDER BY event_id LIMIT ?",
        )
        .bind(audit::SEAL_BATCH)
        .fetch_all(&mut *tx)
        .await
        .map_err(db_err)?;
        if pending.is_empty() {
            return Ok(sealed);
        }
        let n = pending.len() as i64;
        let links: Vec<serde_json::Value> = audit::seal_links(last, pending)
            .into_iter()
            .map(|(id, l)| serde_json::json!([id, l.seq, l.prev_hash, l.hash]))
            .collect();
        // One statement for the whole batch.
        sqlx::query(
            "UPDATE audit_events SET seq = j.seq, prev_hash = j.prev_hash, hash = j.hash \
             FROM (SELECT json_extract(value, '$[0]') AS event_id, \
                          json_extract(value, '$[1]') AS seq, \
                          json_extract(value, '$[2]') AS prev_hash, \
                          json_extract(value, '$[3]') AS hash FROM json_each(?)) AS j \
             WHERE audit_events.event_id = j.event_id",
        )
        .bind(serde_json::Value::Array(links).to_string())
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        tx.commit().await.map_err(db_err)?;
        sealed += n as u64;
        if n < audit::SEAL_BATCH {
            return Ok(sealed);
        }
    }
}

/// Grants the current request's caller MANAGE on the experiment just created in `tx`.
pub(crate) async fn grant_creator_experiment(tx: &mut Tx, experiment_id: i64) -> CoreResult<()> {
    let Some(user) = context::creator() else {
        return Ok(());
    };
    sqlx::query(
        "INSERT OR REPLACE INTO experiment_permissions (experiment_id, user_id, permission) \
         SELECT ?, user_id, 'MANAGE' FROM users WHERE username = ?",
    )
    .bind(experiment_id)
    .bind(user)
    .execute(&mut **tx)
    .await
    .map_err(db_err)?;
    Ok(())
}

/// Grants the current request's caller MANAGE on the registered model just created.
pub(crate) async fn grant_creator_model(tx: &mut Tx, model_pk: i64) -> CoreResult<()> {
    let Some(user) = context::creator() else {
        return Ok(());
    };
    sqlx::query(
        "INSERT OR REPLACE INTO registered_model_permissions (model_pk, user_id, permission) \
         SELECT ?, user_id, 'MANAGE' FROM users WHERE username = ?",
    )
    .bind(model_pk)
    .bind(user)
    .execute(&mut **tx)
    .await
    .map_err(db_err)?;
    Ok(())
}

/// Restricts a search to what the current caller may read, in the query itself (so pages
/// stay full and counts stay right): their grant on the resource at `col`, or, without
/// one, the server's default permission. Administrators and requests without a caller
/// are not restricted.
pub(crate) fn push_visible(qb: &mut QueryBuilder<'static, Sqlite>, kind: GrantKind, col: &str) {
    let Some(viewer) = context::restricted_viewer() else {
        return;
    };
    let (table, key) = grant_table(kind);
    qb.push(format!(
        " AND COALESCE((SELECT g.permission != 'NO_PERMISSIONS' FROM {table} g \
         WHERE g.{key} = {col} AND g.user_id = (SELECT user_id FROM users WHERE username = "
    ));
    qb.push_bind(viewer.username);
    qb.push(")), ");
    qb.push_bind(viewer.default_read);
    qb.push(")");
}

/// The key a grant of `kind` hangs off, or `None` if the resource does not exist.
async fn resource_key(
    conn: &mut SqliteConnection,
    kind: GrantKind,
    resource_id: &str,
) -> CoreResult<Option<i64>> {
    match kind {
        GrantKind::Experiment => {
            let Ok(id) = resource_id.parse::<i64>() else {
                return Ok(None);
            };
            let row: Option<(i64,)> =
                sqlx::query_as("SELECT experiment_id FROM experiments WHERE experiment_id = ?")
                    .bind(id)
                    .fetch_optional(&mut *conn)
                    .await
                    .map_err(db_err)?;
            Ok(row.map(|r| r.0))
        }
        GrantKind::RegisteredModel => {
            let row: Option<(i64,)> =
                sqlx::query_as("SELECT model_pk FROM registered_models WHERE name = ?")
                    .bind(resource_id)
                    .fetch_optional(&mut *conn)
                    .await
                    .map_err(db_err)?;
            Ok(row.map(|r| r.0))
        }
    }
}

fn grant_table(kind: GrantKind) -> (&'static str, &'static str) {
    match kind {
        GrantKind::Experiment => ("experiment_permissions", "experiment_id"),
        GrantKind::RegisteredModel => ("registered_model_permissions", "model_pk"),
    }
}

pub(crate) async fn create_user(
    store: &SqliteStore,
    username: &str,
    password_hash: &str,
    is_admin: bool,
) -> CoreResult<User> {
    let mut tx = store.writer.begin().await.map_err(db_err)?;
    let row: Option<(i64,)> = sqlx::query_as(
        "INSERT INTO users (username, password_hash, is_admin) VALUES (?, ?, ?) \
         ON CONFLICT (username) DO NOTHING RETURNING user_id",
    )
    .bind(username)
    .bind(password_hash)
    .bind(is_admin)
    .fetch_optional(&mut *tx)
    .await
    .map_err(db_err)?;
    let Some((id,)) = row else {
        return Err(CoreError::AlreadyExists(format!(
            "User '{username}' already exists"
        )));
    };
    commit(tx).await?;
    Ok(User {
        id,
        username: username.to_string(),
        is_admin,
    })
}

pub(crate) async fn credential(
    store: &SqliteStore,
    username: &str,
) -> CoreResult<Option<Credential>> {
    let row: Option<(i64, String, bool, String)> = sqlx::query_as(
        "SELECT user_id, username, is_admin, password_hash FROM users WHERE username = ?",
    )
    .bind(username)
    .fetch_optional(&store.reader)
    .await
    .map_err(db_err)?;
    Ok(
        row.map(|(id, username, is_admin, password_hash)| Credential {
            user: User {
                id,
                username,
                is_admin,
            },
            password_hash,
        }),
    )
}

pub(crate) async fn get_user(store: &SqliteStore, username: &str) -> CoreResult<User> {
    let row: Option<UserRow> =
        sqlx::query_as("SELECT user_id, username, is_admin FROM users WHERE username = ?")
            .bind(username)
            .fetch_optional(&store.reader)
            .await
            .map_err(db_err)?;
    row.map(User::from).ok_or_else(|| user_not_found(username))
}

pub(crate) async fn list_users(store: &SqliteStore) -> CoreResult<Vec<User>> {
    let rows: Vec<UserRow> =
        sqlx::query_as("SELECT user_id, username, is_admin FROM users ORDER BY username")
            .fetch_all(&store.reader)
            .await
            .map_err(db_err)?;
    Ok(rows.into_iter().map(User::from).collect())
}

/// Runs one `UPDATE/DELETE ... WHERE username = ?` and fails if no user matched.
pub(crate) async fn change_user(
    store: &SqliteStore,
    sql: &str,
    value: Option<&str>,
    flag: Option<bool>,
    username: &str,
) -> CoreResult<()> {
    let mut tx = store.writer.begin().await.map_err(db_err)?;
    let mut q = sqlx::query(sql);
    if let Some(v) = value {
        q = q.bind(v);
    }
    if let Some(f) = flag {
        q = q.bind(f);
    }
    let done = q.bind(username).execute(&mut *tx).await.map_err(db_err)?;
    if done.rows_affected() == 0 {
        return Err(user_not_found(username));
    }
    commit(tx).await
}

pub(crate) async fn put_grant(
    store: &SqliteStore,
    kind: GrantKind,
    resource_id: &str,
    username: &str,
    permission: Permission,
    mode: GrantMode,
) -> CoreResult<Grant> {
    let mut tx = store.writer.begin().await.map_err(db_err)?;
    let user: Option<(i64,)> = sqlx::query_as("SELECT user_id FROM users WHERE username = ?")
        .bind(username)
        .fetch_optional(&mut *tx)
        .await
        .map_err(db_err)?;
    let Some((user_id,)) = user else {
        return Err(user_not_found(username));
    };
    let Some(key) = resource_key(&mut tx, kind, resource_id).await? else {
        return Err(resource_not_found(kind, resource_id));
    };
    let (table, column) = grant_table(kind);
    let existing: Option<(String,)> = sqlx::query_as(&format!(
        "SELECT permission FROM {table} WHERE {column} = ? AND user_id = ?"
    ))
    .bind(key)
    .bind(user_id)
    .fetch_optional(&mut *tx)
    .await
    .map_err(db_err)?;
    match (mode, existing.is_some()) {
        (GrantMode::Create, true) => {
            return Err(CoreError::AlreadyExists(format!(
                "{} permission on {resource_id} for user {username} already exists",
                kind.name()
            )))
        }
        (GrantMode::Update, false) => return Err(grant_not_found(kind, resource_id, username)),
        _ => {}
    }
    sqlx::query(&format!(
        "INSERT OR REPLACE INTO {table} ({column}, user_id, permission) VALUES (?, ?, ?)"
    ))
    .bind(key)
    .bind(user_id)
    .bind(permission.name())
    .execute(&mut *tx)
    .await
    .map_err(db_err)?;
    commit(tx).await?;
    Ok(Grant {
        resource_id: resource_id.to_string(),
        user_id,
        permission,
    })
}

pub(crate) async fn get_grant(
    store: &SqliteStore,
    kind: GrantKind,
    resource_id: &str,
    username: &str,
) -> CoreResult<Grant> {
    let sql = match kind {
        GrantKind::Experiment => {
            "SELECT g.user_id, g.permission FROM experiment_permissions g \
             JOIN users u ON u.user_id = g.user_id \
             WHERE g.experiment_id = CAST(? AS INTEGER) AND u.username = ?"
        }
        GrantKind::RegisteredModel => {
            "SELECT g.user_id, g.permission FROM registered_model_permissions g \
             JOIN users u ON u.user_id = g.user_id \
             JOIN registered_models rm ON rm.model_pk = g.model_pk \
             WHERE rm.name = ? AND u.username = ?"
        }
    };
    let row: Option<(i64, String)> = sqlx::query_as(sql)
        .bind(resource_id)
        .bind(username)
        .fetch_optional(&store.reader)
        .await
        .map_err(db_err)?;
    let Some((user_id, permission)) = row else {
        return Err(grant_not_found(kind, resource_id, username));
    };
    Ok(Grant {
        resource_id: resource_id.to_string(),
        user_id,
        permission: stored_permission(&permission)?,
    })
}

pub(crate) async fn delete_grant(
    store: &SqliteStore,
    kind: GrantKind,
    resource_id: &str,
    username: &str,
) -> CoreResult<()> {
    let sql = match kind {
        GrantKind::Experiment => {
            "DELETE FROM experiment_permissions \
             WHERE experiment_id = CAST(? AS INTEGER) \
               AND user_id = (SELECT user_id FROM users WHERE username = ?)"
        }
        GrantKind::RegisteredModel => {
            "DELETE FROM registered_model_permissions \
             WHERE model_pk = (SELECT model_pk FROM registered_models WHERE name = ?) \
               AND user_id = (SELECT user_id FROM users WHERE username = ?)"
        }
    };
    let mut tx = store.writer.begin().await.map_err(db_err)?;
    let done = sqlx::query(sql)
        .bind(resource_id)
        .bind(username)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
    if done.rows_affected() == 0 {
        return Err(grant_not_found(kind, resource_id, username));
    }
    commit(tx).await
}

pub(crate) async fn list_grants(
    store: &SqliteStore,
    username: &str,
) -> CoreResult<Vec<(GrantKind, Grant)>> {
    let user = get_user(store, username).await?;
    let rows: Vec<(String, String, String)> = sqlx::query_as(
        "SELECT 'experiment', CAST(experiment_id AS TEXT), permission \
           FROM experiment_permissions WHERE user_id = ? \
         UNION ALL \
         SELECT 'registered_model', rm.name, mp.permission \
           FROM registered_model_permissions mp \
           JOIN registered_models rm ON rm.model_pk = mp.model_pk WHERE mp.user_id = ? \
         ORDER BY 1, 2",
    )
    .bind(user.id)
    .bind(user.id)
    .fetch_all(&store.reader)
    .await
    .map_err(db_err)?;
    rows.into_iter()
        .map(|(kind, resource_id, permission)| {
            Ok((
                GrantKind::parse(&kind)?,
                Grant {
                    resource_id,
                    user_id: user.id,
                    permission: stored_permission(&permission)?,
                },
            ))
        })
        .collect()
}

pub(crate) async fn access(
    store: &SqliteStore,
    username: &str,
    target: &Target,
) -> CoreResult<Option<Access>> {
    // Each form yields (is_admin, exists, permission) for one user in one statement.
    let (sql, key): (&str, String) = match target {
        Target::Experiment(id) => (
            "SELECT u.is_admin, e.experiment_id IS NOT NULL, ep.permission FROM users u \
             LEFT JOIN experiments e ON e.experiment_id = CAST(?1 AS INTEGER) \
             LEFT JOIN experiment_permissions ep \
               ON ep.experiment_id = e.experiment_id AND ep.user_id = u.user_id \
             WHERE u.username = ?2",
            id.to_string(),
        ),
        Target::ExperimentName(name) => (
            "SELECT u.is_admin, e.experiment_id IS NOT NULL, ep.permission FROM users u \
             LEFT JOIN experiments e ON e.name = ?1 \
             LEFT JOIN experiment_permissions ep \
               ON ep.experiment_id = e.experiment_id AND ep.user_id = u.user_id \
             WHERE u.username = ?2",
            name.clone(),
        ),
        Target::Run(run_id) => (
            "SELECT u.is_admin, r.experiment_id IS NOT NULL, ep.permission FROM users u \
             LEFT JOIN runs r ON r.run_id = ?1 \
             LEFT JOIN experiment_permissions ep \
               ON ep.experiment_id = r.experiment_id AND ep.user_id = u.user_id \
             WHERE u.username = ?2",
            run_id.clone(),
        ),
        Target::LoggedModel(model_id) => (
            "SELECT u.is_admin, m.experiment_id IS NOT NULL, ep.permission FROM users u \
             LEFT JOIN logged_models m ON m.model_id = ?1 \
             LEFT JOIN experiment_permissions ep \
               ON ep.experiment_id = m.experiment_id AND ep.user_id = u.user_id \
             WHERE u.username = ?2",
            model_id.clone(),
        ),
        Target::RegisteredModel(name) => (
            "SELECT u.is_admin, rm.model_pk IS NOT NULL, mp.permission FROM users u \
             LEFT JOIN registered_models rm ON rm.name = ?1 \
             LEFT JOIN registered_model_permissions mp \
               ON mp.model_pk = rm.model_pk AND mp.user_id = u.user_id \
             WHERE u.username = ?2",
            name.clone(),
        ),
    };
    let row: Option<(bool, bool, Option<String>)> = sqlx::query_as(sql)
        .bind(key)
        .bind(username)
        .fetch_optional(&store.reader)
        .await
        .map_err(db_err)?;
    row.map(|(is_admin, exists, grant)| {
        Ok(Access {
            is_admin,
            exists,
            grant: grant.as_deref().map(stored_permission).transpose()?,
        })
    })
    .transpose()
}

pub(crate) async fn create_token(
    store: &SqliteStore,
    username: &str,
    name: &str,
    secret_sha256: &str,
    created_ms: i64,
    expires_ms: Option<i64>,
) -> CoreResult<AccessToken> {
    let mut tx = store.writer.begin().await.map_err(db_err)?;
    let row: Option<TokenRow> = sqlx::query_as(
        "INSERT INTO access_tokens (user_id, name, secret_sha256, created_ms, expires_ms) \
         SELECT user_id, ?, ?, ?, ? FROM users WHERE username = ? \
         RETURNING token_id, user_id, name, created_ms, expires_ms, revoked_ms",
    )
    .bind(name)
    .bind(secret_sha256)
    .bind(created_ms)
    .bind(expires_ms)
    .bind(username)
    .fetch_optional(&mut *tx)
    .await
    .map_err(db_err)?;
    let Some(row) = row else {
        return Err(user_not_found(username));
    };
    commit(tx).await?;
    Ok(AccessToken::from(row))
}

pub(crate) async fn token_owner(
    store: &SqliteStore,
    secret_sha256: &str,
    now_ms: i64,
) -> CoreResult<Option<User>> {
    let row: Option<UserRow> = sqlx::query_as(
        "SELECT u.user_id, u.username, u.is_admin FROM access_tokens t \
         JOIN users u ON u.user_id = t.user_id \
         WHERE t.secret_sha256 = ? AND t.revoked_ms IS NULL \
           AND (t.expires_ms IS NULL OR t.expires_ms > ?)",
    )
    .bind(secret_sha256)
    .bind(now_ms)
    .fetch_optional(&store.reader)
    .await
    .map_err(db_err)?;
    Ok(row.map(User::from))
}

pub(crate) async fn list_tokens(
    store: &SqliteStore,
    username: &str,
) -> CoreResult<Vec<AccessToken>> {
    let user = get_user(store, username).await?;
    let rows: Vec<TokenRow> = sqlx::query_as(
        "SELECT token_id, user_id, name, created_ms, expires_ms, revoked_ms \
         FROM access_tokens WHERE user_id = ? ORDER BY token_id DESC",
    )
    .bind(user.id)
    .fetch_all(&store.reader)
    .await
    .map_err(db_err)?;
    Ok(rows.into_iter().map(AccessToken::from).collect())
}

pub(crate) async fn revoke_token(
    store: &SqliteStore,
    username: &str,
    id: i64,
    now_ms: i64,
) -> CoreResult<()> {
    let mut tx = store.writer.begin().await.map_err(db_err)?;
    let done = sqlx::query(
        "UPDATE access_tokens SET revoked_ms = COALESCE(revoked_ms, ?) \
         WHERE token_id = ? AND user_id = (SELECT user_id FROM users WHERE username = ?)",
    )
    .bind(now_ms)
    .bind(id)
    .bind(username)
    .execute(&mut *tx)
    .await
    .map_err(db_err)?;
    if done.rows_affected() == 0 {
        return Err(CoreError::not_found(format!(
            "Access token {id} of user {username} not found"
        )));
    }
    commit(tx).await
}

pub(crate) async fn append_audit(store: &SqliteStore, event: &AuditEvent) -> CoreResult<()> {
    let mut conn = store.writer.acquire().await.map_err(db_err)?;
    append_link(&mut conn, event).await
}

pub(crate) async fn audit_events(
    store: &SqliteStore,
    after: i64,
    limit: i64,
) -> CoreResult<Vec<StoredAuditEvent>> {
    // Readers see a complete chain: whatever has committed is sealed first.
    seal(&store.writer).await?;
    let rows: Vec<AuditRow> = sqlx::query_as(
        "SELECT seq, time_ms, actor, auth_method, source_ip, action, resource, outcome, \
         request_id, prev_hash, hash FROM audit_events WHERE seq > ? ORDER BY seq LIMIT ?",
    )
    .bind(after)
    .bind(limit)
    .fetch_all(&store.reader)
    .await
    .map_err(db_err)?;
    Ok(rows.into_iter().map(StoredAuditEvent::from).collect())
}
