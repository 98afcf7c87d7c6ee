//! Accounts, grants, access tokens and the audit log.
//!
//! The audit chain is one total order across every replica sharing the database: a link
//! is appended under a transaction-scoped advisory lock, as the last statement before
//! COMMIT (so the lock is held for one read and one insert), and the next appender, from
//! any process, waits for that commit and then reads the link it made.

use cairn_core::audit::{self, AuditEvent, AuditRow, PendingRow, StoredAuditEvent};
use cairn_core::auth::{
    grant_not_found, resource_not_found, stored_permission, user_not_found, Access, AccessToken,
    Credential, Grant, GrantKind, GrantMode, Permission, Target, TokenRow, User, UserRow,
};
use cairn_core::context;
use cairn_core::{CoreError, CoreResult};
use sqlx::{PgConnection, PgPool, Postgres, QueryBuilder};

use crate::db_err;
use crate::experiments::Tx;

/// The advisory lock key that serialises appends to the audit chain ("cairnaud" in
/// ASCII). sqlx's migrator derives its own key from the database name, so the two never
/// collide by accident.
const AUDIT_LOCK: i64 = 0x6361_6972_6e61_7564;

/// Whether the current request has an audit event waiting for its first write
/// transaction (a write that would otherwise skip the transaction must then take one).
pub(crate) fn audit_pending() -> bool {
    context::current().is_some_and(|c| c.has_pending_audit())
}

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

/// Records `event` in the transaction: one insert, no lock. It joins the hash chain when
/// the sealer gives it a position (see [`seal`]).
async fn append_link(conn: &mut PgConnection, event: &AuditEvent) -> CoreResult<()> {
    sqlx::query(
        "INSERT INTO audit_events (time_ms, actor, auth_method, source_ip, action, resource, \
         outcome, request_id) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
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

/// Chains every committed, unsealed event: under the advisory lock (one sealer at a time
/// across all replicas), reads the last sealed link and the unsealed events in
/// `event_id` order, and gives each the next position and its hash. An event whose
/// transaction commits after a pass is sealed by the next one, after whatever was
/// sealed before it: positions follow sealing, so the chain never has to be reordered.
/// Returns how many events were sealed.
pub(crate) async fn seal(pool: &PgPool) -> CoreResult<u64> {
    let mut sealed = 0u64;
    loop {
        let mut tx = pool.begin().await.map_err(db_err)?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(AUDIT_LOCK)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        // READ COMMITTED: these statements' snapshots are taken after the lock was
        // granted, so they see what the previous sealer committed.
        let last: Option<(i64, String)> = sqlx::query_as(
            "SELECT seq, hash FROM audit_events WHERE seq IS NOT NULL ORDER BY seq DESC LIMIT 1",
        )
        .fetch_optional(&mut *tx)
        .await
        .map_err(db_err)?;
        let pending: Vec<PendingRow> = sqlx::query_as(
            "SELECT event_id, time_ms, actor, auth_method, source_ip, action, resource, \
             outcome, request_id FROM audit_events WHERE seq IS NULL ORDER BY event_id LIMIT $1",
        )
        .bind(audit::SEAL_BATCH)
        .fetch_all(&mut *tx)
        .await
        .map_err(db_err)?;
        if pending.is_empty() {
            return Ok(sealed);
        }
        let n = pending.len() as i64;
        let (mut ids, mut seqs, mut prevs, mut hashes) = (vec![], vec![], vec![], vec![]);
        for (id, link) in audit::seal_links(last, pending) {
            ids.push(id);
            seqs.push(link.seq);
            prevs.push(link.prev_hash);
            hashes.push(link.hash);
        }
        sqlx::query(
            "UPDATE audit_events a SET seq = u.seq, prev_hash = u.prev_hash, hash = u.hash \
             FROM UNNEST($1::bigint[], $2::bigint[], $3::text[], $4::text[]) \
               AS u(event_id, seq, prev_hash, hash) \
             WHERE a.event_id = u.event_id",
        )
        .bind(&ids)
        .bind(&seqs)
        .bind(&prevs)
        .bind(&hashes)
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

/// The background sealer (see [`seal`]).
pub(crate) async fn seal_loop(pool: PgPool) {
    audit::run_sealer(|| pool.is_closed(), || seal(&pool)).await
}

/// Grants the current request's caller MANAGE on the experiment just created in `tx`.
pub(crate) async fn grant_creator_experiment(tx: &mut Tx, experiment_id: i64) -> CoreResult<()> {
    let Some(user) = context::creator() else {
        return Ok(());
    };
    sqlx::query(
        "INSERT INTO experiment_permissions (experiment_id, user_id, permission) \
         SELECT $1, user_id, 'MANAGE' FROM users WHERE username = $2 \
         ON CONFLICT (experiment_id, user_id) DO UPDATE SET permission = excluded.permission",
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
        "INSERT INTO registered_model_permissions (model_pk, user_id, permission) \
         SELECT $1, user_id, 'MANAGE' FROM users WHERE username = $2 \
         ON CONFLICT (model_pk, user_id) DO UPDATE SET permission = excluded.permission",
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
pub(crate) fn push_visible(qb: &mut QueryBuilder<'static, Postgres>, kind: GrantKind, col: &str) {
    let Some(viewer) = context::restricted_viewer() else {
        return;
    };
    let (table, key) = grant_table(kind);
    qb.push(format!(
        " AND COALESCE((SELECT g.permission <> 'NO_PERMISSIONS' FROM {table} g \
         WHERE g.{key} = {col} AND g.user_id = (SELECT user_id FROM users WHERE username = "
    ));
    qb.push_bind(viewer.username);
    qb.push(")), ");
    qb.push_bind(viewer.default_read);
    qb.push(")");
}

/// The key a grant of `kind` hangs off, or `None` if the resource does not exist. The
/// row is key-share locked until commit, so it cannot be deleted under the grant.
async fn resource_key(tx: &mut Tx, kind: GrantKind, resource_id: &str) -> CoreResult<Option<i64>> {
    match kind {
        GrantKind::Experiment => {
            let Ok(id) = resource_id.parse::<i64>() else {
                return Ok(None);
            };
            let row: Option<(i64,)> = sqlx::query_as(
                "SELECT experiment_id FROM experiments WHERE experiment_id = $1 FOR KEY SHARE",
            )
            .bind(id)
            .fetch_optional(&mut **tx)
            .await
            .map_err(db_err)?;
            Ok(row.map(|r| r.0))
        }
        GrantKind::RegisteredModel => {
            let row: Option<(i64,)> = sqlx::query_as(
                "SELECT model_pk FROM registered_models WHERE name = $1 FOR KEY SHARE",
            )
            .bind(resource_id)
            .fetch_optional(&mut **tx)
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
    pool: &PgPool,
    username: &str,
    password_hash: &str,
    is_admin: bool,
) -> CoreResult<User> {
    let mut tx = pool.begin().await.map_err(db_err)?;
    // A concurrent creation of the same name (from any replica) waits for the winner's
    // commit and then gets no row back.
    let row: Option<(i64,)> = sqlx::query_as(
        "INSERT INTO users (username, password_hash, is_admin) VALUES ($1, $2, $3) \
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

pub(crate) async fn credential(pool: &PgPool, username: &str) -> CoreResult<Option<Credential>> {
    let row: Option<(i64, String, bool, String)> = sqlx::query_as(
        "SELECT user_id, username, is_admin, password_hash FROM users WHERE username = $1",
    )
    .bind(username)
    .fetch_optional(pool)
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

pub(crate) async fn get_user(pool: &PgPool, username: &str) -> CoreResult<User> {
    let row: Option<UserRow> =
        sqlx::query_as("SELECT user_id, username, is_admin FROM users WHERE username = $1")
            .bind(username)
            .fetch_optional(pool)
            .await
            .map_err(db_err)?;
    row.map(User::from).ok_or_else(|| user_not_found(username))
}

pub(crate) async fn list_users(pool: &PgPool) -> CoreResult<Vec<User>> {
    let rows: Vec<UserRow> =
        sqlx::query_as("SELECT user_id, username, is_admin FROM users ORDER BY username")
            .fetch_all(pool)
            .await
            .map_err(db_err)?;
    Ok(rows.into_iter().map(User::from).collect())
}

/// Runs one `UPDATE/DELETE ... WHERE username = $n` (binding `value`, then `flag`, then
/// the name) and fails if no user matched.
pub(crate) async fn change_user(
    pool: &PgPool,
    sql: &str,
    value: Option<&str>,
    flag: Option<bool>,
    username: &str,
) -> CoreResult<()> {
    let mut tx = pool.begin().await.map_err(db_err)?;
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
    pool: &PgPool,
    kind: GrantKind,
    resource_id: &str,
    username: &str,
    permission: Permission,
    mode: GrantMode,
) -> CoreResult<Grant> {
    let mut tx = pool.begin().await.map_err(db_err)?;
    // Key-share locks: neither the user nor the resource can be deleted before commit.
    let user: Option<(i64,)> =
        sqlx::query_as("SELECT user_id FROM users WHERE username = $1 FOR KEY SHARE")
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
    // One statement per mode, so concurrent grants (from any replica) settle on the
    // primary key: a second Create finds the first one's row, an Update a deleted none.
    let sql = match mode {
        GrantMode::Create => format!(
            "INSERT INTO {table} ({column}, user_id, permission) VALUES ($1, $2, $3) \
             ON CONFLICT ({column}, user_id) DO NOTHING"
        ),
        GrantMode::Update => {
            format!("UPDATE {table} SET permission = $3 WHERE {column} = $1 AND user_id = $2")
        }
        GrantMode::Upsert => format!(
            "INSERT INTO {table} ({column}, user_id, permission) VALUES ($1, $2, $3) \
             ON CONFLICT ({column}, user_id) DO UPDATE SET permission = excluded.permission"
        ),
    };
    let done = sqlx::query(&sql)
        .bind(key)
        .bind(user_id)
        .bind(permission.name())
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
    if done.rows_affected() == 0 {
        return Err(match mode {
            GrantMode::Update => grant_not_found(kind, resource_id, username),
            _ => CoreError::AlreadyExists(format!(
                "{} permission on {resource_id} for user {username} already exists",
                kind.name()
            )),
        });
    }
    commit(tx).await?;
    Ok(Grant {
        resource_id: resource_id.to_string(),
        user_id,
        permission,
    })
}

pub(crate) async fn get_grant(
    pool: &PgPool,
    kind: GrantKind,
    resource_id: &str,
    username: &str,
) -> CoreResult<Grant> {
    let row: Option<(i64, String)> = match kind {
        GrantKind::Experiment => {
            let Ok(id) = resource_id.parse::<i64>() else {
                return Err(grant_not_found(kind, resource_id, username));
            };
            sqlx::query_as(
                "SELECT g.user_id, g.permission FROM experiment_permissions g \
                 JOIN users u ON u.user_id = g.user_id \
                 WHERE g.experiment_id = $1 AND u.username = $2",
            )
            .bind(id)
            .bind(username)
            .fetch_optional(pool)
            .await
        }
        GrantKind::RegisteredModel => {
            sqlx::query_as(
                "SELECT g.user_id, g.permission FROM registered_model_permissions g \
                 JOIN users u ON u.user_id = g.user_id \
                 JOIN registered_models rm ON rm.model_pk = g.model_pk \
                 WHERE rm.name = $1 AND u.username = $2",
            )
            .bind(resource_id)
            .bind(username)
            .fetch_optional(pool)
            .await
        }
    }
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
    pool: &PgPool,
    kind: GrantKind,
    resource_id: &str,
    username: &str,
) -> CoreResult<()> {
    let mut tx = pool.begin().await.map_err(db_err)?;
    let done = match kind {
        GrantKind::Experiment => {
            let Ok(id) = resource_id.parse::<i64>() else {
                return Err(grant_not_found(kind, resource_id, username));
            };
            sqlx::query(
                "DELETE FROM experiment_permissions WHERE experiment_id = $1 \
                   AND user_id = (SELECT user_id FROM users WHERE username = $2)",
            )
            .bind(id)
            .bind(username)
            .execute(&mut *tx)
            .await
        }
        GrantKind::RegisteredModel => {
            sqlx::query(
                "DELETE FROM registered_model_permissions \
                 WHERE model_pk = (SELECT model_pk FROM registered_models WHERE name = $1) \
                   AND user_id = (SELECT user_id FROM users WHERE username = $2)",
            )
            .bind(resource_id)
            .bind(username)
            .execute(&mut *tx)
            .await
        }
    }
    .map_err(db_err)?;
    if done.rows_affected() == 0 {
        return Err(grant_not_found(kind, resource_id, username));
    }
    commit(tx).await
}

pub(crate) async fn list_grants(
    pool: &PgPool,
    username: &str,
) -> CoreResult<Vec<(GrantKind, Grant)>> {
    let user = get_user(pool, username).await?;
    // Experiments first, then by resource id as text (byte order), as in SQLite.
    let rows: Vec<(String, String, String)> = sqlx::query_as(
        "SELECT 'experiment'::text COLLATE \"C\", experiment_id::text COLLATE \"C\", permission \
           FROM experiment_permissions WHERE user_id = $1 \
         UNION ALL \
         SELECT 'registered_model'::text COLLATE \"C\", rm.name, mp.permission \
           FROM registered_model_permissions mp \
           JOIN registered_models rm ON rm.model_pk = mp.model_pk WHERE mp.user_id = $1 \
         ORDER BY 1, 2",
    )
    .bind(user.id)
    .fetch_all(pool)
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
    pool: &PgPool,
    username: &str,
    target: &Target,
) -> CoreResult<Option<Access>> {
    // Each form yields (is_admin, exists, permission) for one user in one statement.
    let sql = match target {
        Target::Experiment(_) => {
            "SELECT u.is_admin, e.experiment_id IS NOT NULL, ep.permission FROM users u \
             LEFT JOIN experiments e ON e.experiment_id = $1 \
             LEFT JOIN experiment_permissions ep \
               ON ep.experiment_id = e.experiment_id AND ep.user_id = u.user_id \
             WHERE u.username = $2"
        }
        Target::ExperimentName(_) => {
            "SELECT u.is_admin, e.experiment_id IS NOT NULL, ep.permission FROM users u \
             LEFT JOIN experiments e ON e.name = $1 \
             LEFT JOIN experiment_permissions ep \
               ON ep.experiment_id = e.experiment_id AND ep.user_id = u.user_id \
             WHERE u.username = $2"
        }
        Target::Run(_) => {
            "SELECT u.is_admin, r.experiment_id IS NOT NULL, ep.permission FROM users u \
             LEFT JOIN runs r ON r.run_id = $1 \
             LEFT JOIN experiment_permissions ep \
               ON ep.experiment_id = r.experiment_id AND ep.user_id = u.user_id \
             WHERE u.username = $2"
        }
        Target::LoggedModel(_) => {
            "SELECT u.is_admin, m.experiment_id IS NOT NULL, ep.permission FROM users u \
             LEFT JOIN logged_models m ON m.model_id = $1 \
             LEFT JOIN experiment_permissions ep \
               ON ep.experiment_id = m.experiment_id AND ep.user_id = u.user_id \
             WHERE u.username = $2"
        }
        Target::RegisteredModel(_) => {
            "SELECT u.is_admin, rm.model_pk IS NOT NULL, mp.permission FROM users u \
             LEFT JOIN registered_models rm ON rm.name = $1 \
             LEFT JOIN registered_model_permissions mp \
               ON mp.model_pk = rm.model_pk AND mp.user_id = u.user_id \
             WHERE u.username = $2"
        }
    };
    let q = sqlx::query_as::<_, (bool, bool, Option<String>)>(sql);
    let q = match target {
        Target::Experiment(id) => q.bind(*id),
        Target::ExperimentName(key)
        | Target::Run(key)
        | Target::LoggedModel(key)
        | Target::RegisteredModel(key) => q.bind(key.as_str()),
    };
    let row = q
        .bind(username)
        .fetch_optional(pool)
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
    pool: &PgPool,
    username: &str,
    name: &str,
    secret_sha256: &str,
    created_ms: i64,
    expires_ms: Option<i64>,
) -> CoreResult<AccessToken> {
    let mut tx = pool.begin().await.map_err(db_err)?;
    let row: Option<TokenRow> = sqlx::query_as(
        "INSERT INTO access_tokens (user_id, name, secret_sha256, created_ms, expires_ms) \
         SELECT user_id, $1, $2, $3, $4 FROM users WHERE username = $5 \
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
    pool: &PgPool,
    secret_sha256: &str,
    now_ms: i64,
) -> CoreResult<Option<User>> {
    let row: Option<UserRow> = sqlx::query_as(
        "SELECT u.user_id, u.username, u.is_admin FROM access_tokens t \
         JOIN users u ON u.user_id = t.user_id \
         WHERE t.secret_sha256 = $1 AND t.revoked_ms IS NULL \
           AND (t.expires_ms IS NULL OR t.expires_ms > $2)",
    )
    .bind(secret_sha256)
    .bind(now_ms)
    .fetch_optional(pool)
    .await
    .map_err(db_err)?;
    Ok(row.map(User::from))
}

pub(crate) async fn list_tokens(pool: &PgPool, username: &str) -> CoreResult<Vec<AccessToken>> {
    let user = get_user(pool, username).await?;
    let rows: Vec<TokenRow> = sqlx::query_as(
        "SELECT token_id, user_id, name, created_ms, expires_ms, revoked_ms \
         FROM access_tokens WHERE user_id = $1 ORDER BY token_id DESC",
    )
    .bind(user.id)
    .fetch_all(pool)
    .await
    .map_err(db_err)?;
    Ok(rows.into_iter().map(AccessToken::from).collect())
}

pub(crate) async fn revoke_token(
    pool: &PgPool,
    username: &str,
    id: i64,
    now_ms: i64,
) -> CoreResult<()> {
    let mut tx = pool.begin().await.map_err(db_err)?;
    let done = sqlx::query(
        "UPDATE access_tokens SET revoked_ms = COALESCE(revoked_ms, $1) \
         WHERE token_id = $2 AND user_id = (SELECT user_id FROM users WHERE username = $3)",
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

pub(crate) async fn append_audit(pool: &PgPool, event: &AuditEvent) -> CoreResult<()> {
    let mut conn = pool.acquire().await.map_err(db_err)?;
    append_link(&mut conn, event).await
}

pub(crate) async fn audit_events(
    pool: &PgPool,
    after: i64,
    limit: i64,
) -> CoreResult<Vec<StoredAuditEvent>> {
    // Readers see a complete chain: whatever has committed is sealed first.
    seal(pool).await?;
    let rows: Vec<AuditRow> = sqlx::query_as(
        "SELECT seq, time_ms, actor, auth_method, source_ip, action, resource, outcome, \
         request_id, prev_hash, hash FROM audit_events WHERE seq > $1 ORDER BY seq LIMIT $2",
    )
    .bind(after)
    .bind(limit.max(0))
    .fetch_all(pool)
    .await
    .map_err(db_err)?;
    Ok(rows.into_iter().map(StoredAuditEvent::from).collect())
}
