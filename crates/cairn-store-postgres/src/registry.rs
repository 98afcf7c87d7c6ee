//! The model registry: registered models, versions, tags and aliases. A version number
//! is taken by bumping the model row's counter (`UPDATE ... RETURNING`): the row lock
//! queues concurrent creations from any replica, each sees the previous one's number.
//! Rows that get children are key-share locked first, so a concurrent delete waits and
//! its cascade includes them.

use std::collections::HashMap;

use cairn_core::auth::GrantKind;
use cairn_core::model::Tag;
use cairn_core::page::{page_from_overfetch, Page};
use cairn_core::registry::{
    alias_not_found, latest_per_stage, model_exists, model_not_found, version_not_found, Alias,
    ModelVersion, NewModelVersion, NewRegisteredModel, RegisteredModel, RegistrySearch,
    StageTransition, IS_PROMPT_TAG_KEY,
};
use cairn_core::CoreResult;
use sqlx::{PgPool, Postgres, QueryBuilder};

use crate::experiments::Tx;
use crate::sql::{push_filter, push_order_by, push_order_joins, Target};
use crate::{db_err, is_unique_violation, parse_col};

/// model_pk, name, created, updated, description
type ModelRow = (i64, String, i64, i64, Option<String>);

const MODEL_COLUMNS: &str =
    "rm.model_pk, rm.name, rm.creation_timestamp, rm.last_updated_timestamp, rm.description";

/// mv_pk, model_pk, name, version, created, updated, description, user, stage, source,
/// run_id, run_link, status, status_message, storage_location, model_id
type VersionRow = (
    i64,
    i64,
    String,
    i64,
    i64,
    i64,
    Option<String>,
    Option<String>,
    String,
    String,
    Option<String>,
    Option<String>,
    String,
    Option<String>,
    Option<String>,
    Option<String>,
);

const VERSION_COLUMNS: &str = "mv.mv_pk, mv.model_pk, rm.name, mv.version, \
    mv.creation_timestamp, mv.last_updated_timestamp, mv.description, mv.user_id, \
    mv.current_stage, mv.source, mv.run_id, mv.run_link, mv.status, mv.status_message, \
    mv.storage_location, mv.model_id";

const VERSIONS_FROM: &str =
    "FROM model_versions mv JOIN registered_models rm ON rm.model_pk = mv.model_pk";

/// The logged-model tag where MLflow lists the registered versions made from a model.
const MODEL_VERSIONS_TAG: &str = "mlflow.modelVersions";

/// Adds `{"name", "version"}` to the JSON list of a `mlflow.modelVersions` tag (a value
/// that is not such a list is replaced, as nothing else could have written it).
fn with_model_version(existing: Option<&str>, name: &str, version: i64) -> String {
    let entry = serde_json::json!({ "name": name, "version": version });
    let mut list = existing
        .and_then(|v| serde_json::from_str::<Vec<serde_json::Value>>(v).ok())
        .unwrap_or_default();
    if !list.contains(&entry) {
        list.push(entry);
    }
    serde_json::Value::Array(list).to_string()
}

/// Records a new version on the logged model it was made from, in the same transaction.
/// The model row is locked so concurrent registrations of one model append in turn.
async fn record_on_logged_model(
    tx: &mut Tx,
    model_id: &str,
    name: &str,
    version: i64,
) -> CoreResult<()> {
    let live: Option<(i32,)> =
        sqlx::query_as("SELECT 1 FROM logged_models WHERE model_id = $1 FOR NO KEY UPDATE")
            .bind(model_id)
            .fetch_optional(&mut **tx)
            .await
            .map_err(db_err)?;
    if live.is_none() {
        return Ok(());
    }
    let existing: Option<(String,)> =
        sqlx::query_as("SELECT value FROM logged_model_tags WHERE model_id = $1 AND key = $2")
            .bind(model_id)
            .bind(MODEL_VERSIONS_TAG)
            .fetch_optional(&mut **tx)
            .await
            .map_err(db_err)?;
    let value = with_model_version(existing.as_ref().map(|e| e.0.as_str()), name, version);
    sqlx::query(
        "INSERT INTO logged_model_tags (model_id, key, value) VALUES ($1, $2, $3) \
         ON CONFLICT (model_id, key) DO UPDATE SET value = excluded.value",
    )
    .bind(model_id)
    .bind(MODEL_VERSIONS_TAG)
    .bind(&value)
    .execute(&mut **tx)
    .await
    .map_err(db_err)?;
    Ok(())
}

/// Row locks taken when looking a row up: `KEY SHARE` before adding children (a
/// concurrent delete waits, and its cascade includes them), `UPDATE` before changing the
/// row's key or deleting it (so two such writers queue instead of deadlocking).
const KEY_SHARE: &str = "FOR KEY SHARE";
const FOR_UPDATE: &str = "FOR UPDATE";

async fn model_pk(tx: &mut Tx, name: &str) -> CoreResult<i64> {
    model_pk_locked(tx, name, KEY_SHARE).await
}

async fn model_pk_locked(tx: &mut Tx, name: &str, lock: &'static str) -> CoreResult<i64> {
    let row: Option<(i64,)> = sqlx::query_as(&format!(
        "SELECT model_pk FROM registered_models WHERE name = $1 {lock}"
    ))
    .bind(name)
    .fetch_optional(&mut **tx)
    .await
    .map_err(db_err)?;
    row.map(|r| r.0).ok_or_else(|| model_not_found(name))
}

/// (model_pk, mv_pk) of a version.
/// Locks the model row (`FOR NO KEY UPDATE`) before a version of it is changed or
/// deleted, then finds the version. Every writer that changes version rows takes the model
/// lock first, so they queue in one order and cannot deadlock; writers that only add
/// children (tags, aliases) key-share lock and are never waited on by them.
async fn lock_for_version_change(tx: &mut Tx, name: &str, version: i64) -> CoreResult<(i64, i64)> {
    let locked: Option<(i64,)> =
        sqlx::query_as("SELECT model_pk FROM registered_models WHERE name = $1 FOR NO KEY UPDATE")
            .bind(name)
            .fetch_optional(&mut **tx)
            .await
            .map_err(db_err)?;
    if locked.is_none() {
        return Err(version_not_found(name, version));
    }
    version_pk_locked(tx, name, version, FOR_UPDATE).await
}

async fn version_pk(tx: &mut Tx, name: &str, version: i64) -> CoreResult<(i64, i64)> {
    version_pk_locked(tx, name, version, KEY_SHARE).await
}

/// (model_pk, mv_pk) of a version; `lock` applies to the version row, the model row is
/// key-share locked.
async fn version_pk_locked(
    tx: &mut Tx,
    name: &str,
    version: i64,
    lock: &'static str,
) -> CoreResult<(i64, i64)> {
    let row: Option<(i64, i64)> = sqlx::query_as(&format!(
        "SELECT rm.model_pk, mv.mv_pk FROM registered_models rm \
         JOIN model_versions mv ON mv.model_pk = rm.model_pk WHERE rm.name = $1 AND mv.version = $2 \
         {lock} OF mv FOR KEY SHARE OF rm"
    ))
    .bind(name)
    .bind(version)
    .fetch_optional(&mut **tx)
    .await
    .map_err(db_err)?;
    row.ok_or_else(|| version_not_found(name, version))
}

async fn upsert_tags(
    tx: &mut Tx,
    table: &str,
    owner: &str,
    pk: i64,
    tags: &[Tag],
) -> CoreResult<()> {
    for t in tags {
        sqlx::query(&format!(
            "INSERT INTO {table} ({owner}, key, value) VALUES ($1, $2, $3) \
             ON CONFLICT ({owner}, key) DO UPDATE SET value = excluded.value"
        ))
        .bind(pk)
        .bind(&t.key)
        .bind(&t.value)
        .execute(&mut **tx)
        .await
        .map_err(db_err)?;
    }
    Ok(())
}

async fn touch_model(tx: &mut Tx, model_pk: i64, now: i64) -> CoreResult<()> {
    sqlx::query("UPDATE registered_models SET last_updated_timestamp = $1 WHERE model_pk = $2")
        .bind(now)
        .bind(model_pk)
        .execute(&mut **tx)
        .await
        .map_err(db_err)?;
    Ok(())
}

/// The tags in `table` of the owners whose key column `owner` is in the list, grouped by
/// owner and ordered by key. `table` and `owner` are this module's constants.
async fn tags_by_owner(
    pool: &PgPool,
    table: &str,
    owner: &str,
    pks: &[i64],
) -> CoreResult<HashMap<i64, Vec<Tag>>> {
    let rows: Vec<(i64, String, String)> = sqlx::query_as(&format!(
        "SELECT {owner}, key, value FROM {table} WHERE {owner} = ANY($1) ORDER BY key"
    ))
    .bind(pks)
    .fetch_all(pool)
    .await
    .map_err(db_err)?;
    let mut tags: HashMap<i64, Vec<Tag>> = HashMap::new();
    for (pk, key, value) in rows {
        tags.entry(pk).or_default().push(Tag { key, value });
    }
    Ok(tags)
}

/// Adds tags and aliases to version rows, keeping their order.
async fn hydrate_versions(pool: &PgPool, rows: Vec<VersionRow>) -> CoreResult<Vec<ModelVersion>> {
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let pks: Vec<i64> = rows.iter().map(|r| r.0).collect();
    let mut tags = tags_by_owner(pool, "model_version_tags", "mv_pk", &pks).await?;
    let mut aliases: HashMap<i64, Vec<String>> = HashMap::new();
    let alias_rows: Vec<(i64, String)> = sqlx::query_as(
        "SELECT mv_pk, alias FROM registered_model_aliases \
         WHERE mv_pk = ANY($1) ORDER BY alias",
    )
    .bind(&pks)
    .fetch_all(pool)
    .await
    .map_err(db_err)?;
    for (pk, alias) in alias_rows {
        aliases.entry(pk).or_default().push(alias);
    }
    rows.into_iter()
        .map(|r| {
            Ok(ModelVersion {
                tags: tags.remove(&r.0).unwrap_or_default(),
                aliases: aliases.remove(&r.0).unwrap_or_default(),
                name: r.2,
                version: r.3,
                creation_timestamp: r.4,
                last_updated_timestamp: r.5,
                description: r.6,
                user_id: r.7,
                current_stage: parse_col(&r.8)?,
                source: r.9,
                run_id: r.10,
                run_link: r.11,
                status: r.12,
                status_message: r.13,
                storage_location: r.14,
                model_id: r.15,
            })
        })
        .collect()
}

/// Adds tags, aliases and latest versions to model rows, keeping their order.
async fn hydrate_models(pool: &PgPool, rows: Vec<ModelRow>) -> CoreResult<Vec<RegisteredModel>> {
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let pks: Vec<i64> = rows.iter().map(|r| r.0).collect();
    let mut tags = tags_by_owner(pool, "registered_model_tags", "model_pk", &pks).await?;
    let mut aliases: HashMap<i64, Vec<Alias>> = HashMap::new();
    let alias_rows: Vec<(i64, String, i64)> = sqlx::query_as(
        "SELECT a.model_pk, a.alias, mv.version FROM registered_model_aliases a \
         JOIN model_versions mv ON mv.mv_pk = a.mv_pk \
         WHERE a.model_pk = ANY($1) ORDER BY a.alias",
    )
    .bind(&pks)
    .fetch_all(pool)
    .await
    .map_err(db_err)?;
    for (pk, alias, version) in alias_rows {
        aliases
            .entry(pk)
            .or_default()
            .push(Alias { alias, version });
    }
    // The highest version per (model, stage).
    let latest_rows: Vec<VersionRow> = sqlx::query_as(&format!(
        "SELECT {VERSION_COLUMNS} {VERSIONS_FROM} \
         WHERE mv.model_pk = ANY($1) AND mv.version = \
         (SELECT MAX(m2.version) FROM model_versions m2 \
          WHERE m2.model_pk = mv.model_pk AND m2.current_stage = mv.current_stage)"
    ))
    .bind(&pks)
    .fetch_all(pool)
    .await
    .map_err(db_err)?;
    let owners: Vec<i64> = latest_rows.iter().map(|r| r.1).collect();
    let mut latest: HashMap<i64, Vec<ModelVersion>> = HashMap::new();
    for (owner, mv) in owners
        .into_iter()
        .zip(hydrate_versions(pool, latest_rows).await?)
    {
        latest.entry(owner).or_default().push(mv);
    }
    Ok(rows
        .into_iter()
        .map(|r| RegisteredModel {
            tags: tags.remove(&r.0).unwrap_or_default(),
            aliases: aliases.remove(&r.0).unwrap_or_default(),
            latest_versions: latest_per_stage(latest.remove(&r.0).unwrap_or_default()),
            name: r.1,
            creation_timestamp: r.2,
            last_updated_timestamp: r.3,
            description: r.4,
        })
        .collect())
}

pub(crate) async fn get_model(pool: &PgPool, name: &str) -> CoreResult<RegisteredModel> {
    let row: Option<ModelRow> = sqlx::query_as(&format!(
        "SELECT {MODEL_COLUMNS} FROM registered_models rm WHERE rm.name = $1"
    ))
    .bind(name)
    .fetch_optional(pool)
    .await
    .map_err(db_err)?;
    let row = row.ok_or_else(|| model_not_found(name))?;
    hydrate_models(pool, vec![row])
        .await?
        .pop()
        .ok_or_else(|| model_not_found(name))
}

pub(crate) async fn create_model(
    pool: &PgPool,
    new: NewRegisteredModel,
) -> CoreResult<RegisteredModel> {
    let mut tx = pool.begin().await.map_err(db_err)?;
    let inserted: Option<(i64,)> = sqlx::query_as(
        "INSERT INTO registered_models (name, creation_timestamp, last_updated_timestamp, description) \
         VALUES ($1, $2, $3, $4) ON CONFLICT (name) DO NOTHING RETURNING model_pk",
    )
    .bind(&new.name)
    .bind(new.now)
    .bind(new.now)
    .bind(&new.description)
    .fetch_optional(&mut *tx)
    .await
    .map_err(db_err)?;
    let (pk,) = inserted.ok_or_else(|| model_exists(&new.name))?;
    upsert_tags(&mut tx, "registered_model_tags", "model_pk", pk, &new.tags).await?;
    crate::auth::grant_creator_model(&mut tx, pk).await?;
    crate::auth::commit(tx).await?;
    get_model(pool, &new.name).await
}

pub(crate) async fn update_model(
    pool: &PgPool,
    name: &str,
    description: Option<String>,
    now: i64,
) -> CoreResult<RegisteredModel> {
    let mut tx = pool.begin().await.map_err(db_err)?;
    let pk = model_pk(&mut tx, name).await?;
    sqlx::query(
        "UPDATE registered_models SET description = $1, last_updated_timestamp = $2 WHERE model_pk = $3",
    )
    .bind(&description)
    .bind(now)
    .bind(pk)
    .execute(&mut *tx)
    .await
    .map_err(db_err)?;
    crate::auth::commit(tx).await?;
    get_model(pool, name).await
}

pub(crate) async fn rename_model(
    pool: &PgPool,
    name: &str,
    new_name: &str,
    now: i64,
) -> CoreResult<RegisteredModel> {
    let mut tx = pool.begin().await.map_err(db_err)?;
    let pk = model_pk_locked(&mut tx, name, FOR_UPDATE).await?;
    let taken: Option<(i64,)> =
        sqlx::query_as("SELECT model_pk FROM registered_models WHERE name = $1 AND model_pk != $2")
            .bind(new_name)
            .bind(pk)
            .fetch_optional(&mut *tx)
            .await
            .map_err(db_err)?;
    if taken.is_some() {
        return Err(model_exists(new_name));
    }
    // A concurrent rename or create to the same name loses on the unique index.
    sqlx::query(
        "UPDATE registered_models SET name = $1, last_updated_timestamp = $2 WHERE model_pk = $3",
    )
    .bind(new_name)
    .bind(now)
    .bind(pk)
    .execute(&mut *tx)
    .await
    .map_err(|e| {
        if is_unique_violation(&e) {
            model_exists(new_name)
        } else {
            db_err(e)
        }
    })?;
    // Versions, tags and aliases hang off model_pk; MLflow also touches every version.
    sqlx::query("UPDATE model_versions SET last_updated_timestamp = $1 WHERE model_pk = $2")
        .bind(now)
        .bind(pk)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
    crate::auth::commit(tx).await?;
    get_model(pool, new_name).await
}

pub(crate) async fn delete_model(pool: &PgPool, name: &str) -> CoreResult<()> {
    let mut tx = pool.begin().await.map_err(db_err)?;
    // Versions, tags and aliases go with it (ON DELETE CASCADE).
    let done = sqlx::query("DELETE FROM registered_models WHERE name = $1")
        .bind(name)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
    if done.rows_affected() == 0 {
        return Err(model_not_found(name));
    }
    crate::auth::commit(tx).await
}

/// `AND <model> NOT IN (prompt models)`: leaves out prompts, of versions or of models.
fn push_exclude_prompts(qb: &mut QueryBuilder<'static, Postgres>, versions: bool) {
    if versions {
        // As MLflow: a version is a prompt if any version of its model is tagged one.
        // One uncorrelated set of prompt models (through the tag index), not a probe
        // of every version of the model per candidate row (141 -> 10 ms over 10k versions).
        qb.push(
            " AND mv.model_pk NOT IN (SELECT pv.model_pk FROM model_version_tags p \
             JOIN model_versions pv ON pv.mv_pk = p.mv_pk WHERE p.key = ",
        );
    } else {
        qb.push(
            " AND rm.model_pk NOT IN (SELECT p.model_pk FROM registered_model_tags p \
             WHERE p.key = ",
        );
    }
    // The key is our constant, written literally so the partial prompt indexes apply.
    qb.push(format!("'{IS_PROMPT_TAG_KEY}' AND p.value = 'true')"));
}

pub(crate) async fn search_models(
    pool: &PgPool,
    q: &RegistrySearch,
) -> CoreResult<Page<RegisteredModel>> {
    let mut qb: QueryBuilder<'static, Postgres> =
        QueryBuilder::new(format!("SELECT {MODEL_COLUMNS} FROM registered_models rm"));
    let keys = push_order_joins(&mut qb, Target::RegisteredModels, &q.order_by)?;
    qb.push(" WHERE 1 = 1");
    if let Some(f) = &q.filter {
        qb.push(" AND ");
        push_filter(&mut qb, Target::RegisteredModels, f)?;
    }
    if q.exclude_prompts {
        push_exclude_prompts(&mut qb, false);
    }
    crate::auth::push_visible(&mut qb, GrantKind::RegisteredModel, "rm.model_pk");
    push_order_by(&mut qb, &keys, "rm.name ASC");
    qb.push(" LIMIT ");
    qb.push_bind((q.max_results + 1) as i64);
    qb.push(" OFFSET ");
    qb.push_bind(q.offset as i64);
    let rows: Vec<ModelRow> = qb.build_query_as().fetch_all(pool).await.map_err(db_err)?;
    let page = page_from_overfetch(rows, q.offset, q.max_results);
    Ok(Page {
        items: hydrate_models(pool, page.items).await?,
        next_page_token: page.next_page_token,
    })
}

pub(crate) async fn set_model_tag(pool: &PgPool, name: &str, tag: &Tag) -> CoreResult<()> {
    let mut tx = pool.begin().await.map_err(db_err)?;
    let pk = model_pk(&mut tx, name).await?;
    upsert_tags(
        &mut tx,
        "registered_model_tags",
        "model_pk",
        pk,
        std::slice::from_ref(tag),
    )
    .await?;
    crate::auth::commit(tx).await
}

pub(crate) async fn delete_model_tag(pool: &PgPool, name: &str, key: &str) -> CoreResult<()> {
    let mut tx = pool.begin().await.map_err(db_err)?;
    let pk = model_pk(&mut tx, name).await?;
    sqlx::query("DELETE FROM registered_model_tags WHERE model_pk = $1 AND key = $2")
        .bind(pk)
        .bind(key)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
    crate::auth::commit(tx).await
}

async fn get_version_by_pk(pool: &PgPool, mv_pk: i64) -> CoreResult<Option<ModelVersion>> {
    let row: Option<VersionRow> = sqlx::query_as(&format!(
        "SELECT {VERSION_COLUMNS} {VERSIONS_FROM} WHERE mv.mv_pk = $1"
    ))
    .bind(mv_pk)
    .fetch_optional(pool)
    .await
    .map_err(db_err)?;
    Ok(hydrate_versions(pool, row.into_iter().collect())
        .await?
        .pop())
}

pub(crate) async fn get_version(
    pool: &PgPool,
    name: &str,
    version: i64,
) -> CoreResult<ModelVersion> {
    let row: Option<VersionRow> = sqlx::query_as(&format!(
        "SELECT {VERSION_COLUMNS} {VERSIONS_FROM} WHERE rm.name = $1 AND mv.version = $2"
    ))
    .bind(name)
    .bind(version)
    .fetch_optional(pool)
    .await
    .map_err(db_err)?;
    let row = row.ok_or_else(|| version_not_found(name, version))?;
    hydrate_versions(pool, vec![row])
        .await?
        .pop()
        .ok_or_else(|| version_not_found(name, version))
}

pub(crate) async fn create_version(
    pool: &PgPool,
    new: NewModelVersion,
) -> CoreResult<ModelVersion> {
    let mut tx = pool.begin().await.map_err(db_err)?;
    // The counter lives on the model row: bumping it is the allocation.
    let bumped: Option<(i64, i64)> = sqlx::query_as(
        "UPDATE registered_models SET last_version = last_version + 1, last_updated_timestamp = $1 \
         WHERE name = $2 RETURNING model_pk, last_version",
    )
    .bind(new.now)
    .bind(&new.name)
    .fetch_optional(&mut *tx)
    .await
    .map_err(db_err)?;
    let (pk, version) = bumped.ok_or_else(|| model_not_found(&new.name))?;
    let (mv_pk,): (i64,) = sqlx::query_as(
        "INSERT INTO model_versions (model_pk, version, creation_timestamp, last_updated_timestamp, \
         description, current_stage, source, run_id, run_link, status, storage_location, model_id) \
         VALUES ($1, $2, $3, $4, $5, 'None', $6, $7, $8, 'READY', $9, $10) RETURNING mv_pk",
    )
    .bind(pk)
    .bind(version)
    .bind(new.now)
    .bind(new.now)
    .bind(&new.description)
    .bind(&new.source)
    .bind(&new.run_id)
    .bind(&new.run_link)
    .bind(&new.storage_location)
    .bind(&new.model_id)
    .fetch_one(&mut *tx)
    .await
    .map_err(db_err)?;
    upsert_tags(&mut tx, "model_version_tags", "mv_pk", mv_pk, &new.tags).await?;
    if let Some(model_id) = &new.model_id {
        record_on_logged_model(&mut tx, model_id, &new.name, version).await?;
    }
    crate::auth::commit(tx).await?;
    get_version(pool, &new.name, version).await
}

pub(crate) async fn update_version(
    pool: &PgPool,
    name: &str,
    version: i64,
    description: Option<String>,
    now: i64,
) -> CoreResult<ModelVersion> {
    let mut tx = pool.begin().await.map_err(db_err)?;
    let (_, mv_pk) = lock_for_version_change(&mut tx, name, version).await?;
    sqlx::query(
        "UPDATE model_versions SET description = $1, last_updated_timestamp = $2 WHERE mv_pk = $3",
    )
    .bind(&description)
    .bind(now)
    .bind(mv_pk)
    .execute(&mut *tx)
    .await
    .map_err(db_err)?;
    crate::auth::commit(tx).await?;
    get_version(pool, name, version).await
}

pub(crate) async fn transition(pool: &PgPool, t: &StageTransition) -> CoreResult<ModelVersion> {
    let mut tx = pool.begin().await.map_err(db_err)?;
    // Transitions of one model run one at a time (they may archive each other's versions).
    let (pk, mv_pk) = lock_for_version_change(&mut tx, &t.name, t.version).await?;
    touch_model(&mut tx, pk, t.now).await?;
    if t.archive_existing_versions {
        sqlx::query(
            "UPDATE model_versions SET current_stage = 'Archived', last_updated_timestamp = $1 \
             WHERE model_pk = $2 AND mv_pk != $3 AND current_stage = $4",
        )
        .bind(t.now)
        .bind(pk)
        .bind(mv_pk)
        .bind(t.stage.as_str())
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
    }
    sqlx::query(
        "UPDATE model_versions SET current_stage = $1, last_updated_timestamp = $2 WHERE mv_pk = $3",
    )
    .bind(t.stage.as_str())
    .bind(t.now)
    .bind(mv_pk)
    .execute(&mut *tx)
    .await
    .map_err(db_err)?;
    crate::auth::commit(tx).await?;
    get_version(pool, &t.name, t.version).await
}

pub(crate) async fn delete_version(
    pool: &PgPool,
    name: &str,
    version: i64,
    now: i64,
) -> CoreResult<()> {
    let mut tx = pool.begin().await.map_err(db_err)?;
    let (pk, mv_pk) = lock_for_version_change(&mut tx, name, version).await?;
    // Tags and the aliases pointing here go with it; the counter keeps the number used.
    sqlx::query("DELETE FROM model_versions WHERE mv_pk = $1")
        .bind(mv_pk)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
    touch_model(&mut tx, pk, now).await?;
    crate::auth::commit(tx).await
}

pub(crate) async fn search_versions(
    pool: &PgPool,
    q: &RegistrySearch,
) -> CoreResult<Page<ModelVersion>> {
    let mut qb: QueryBuilder<'static, Postgres> =
        QueryBuilder::new(format!("SELECT {VERSION_COLUMNS} {VERSIONS_FROM}"));
    let keys = push_order_joins(&mut qb, Target::ModelVersions, &q.order_by)?;
    qb.push(" WHERE 1 = 1");
    if let Some(f) = &q.filter {
        qb.push(" AND ");
        push_filter(&mut qb, Target::ModelVersions, f)?;
    }
    if q.exclude_prompts {
        push_exclude_prompts(&mut qb, true);
    }
    crate::auth::push_visible(&mut qb, GrantKind::RegisteredModel, "rm.model_pk");
    push_order_by(&mut qb, &keys, "rm.name ASC, mv.version DESC");
    qb.push(" LIMIT ");
    qb.push_bind((q.max_results + 1) as i64);
    qb.push(" OFFSET ");
    qb.push_bind(q.offset as i64);
    let rows: Vec<VersionRow> = qb.build_query_as().fetch_all(pool).await.map_err(db_err)?;
    let page = page_from_overfetch(rows, q.offset, q.max_results);
    Ok(Page {
        items: hydrate_versions(pool, page.items).await?,
        next_page_token: page.next_page_token,
    })
}

pub(crate) async fn set_version_tag(
    pool: &PgPool,
    name: &str,
    version: i64,
    tag: &Tag,
) -> CoreResult<()> {
    let mut tx = pool.begin().await.map_err(db_err)?;
    let (_, mv_pk) = version_pk(&mut tx, name, version).await?;
    upsert_tags(
        &mut tx,
        "model_version_tags",
        "mv_pk",
        mv_pk,
        std::slice::from_ref(tag),
    )
    .await?;
    crate::auth::commit(tx).await
}

pub(crate) async fn delete_version_tag(
    pool: &PgPool,
    name: &str,
    version: i64,
    key: &str,
) -> CoreResult<()> {
    let mut tx = pool.begin().await.map_err(db_err)?;
    let (_, mv_pk) = version_pk(&mut tx, name, version).await?;
    sqlx::query("DELETE FROM model_version_tags WHERE mv_pk = $1 AND key = $2")
        .bind(mv_pk)
        .bind(key)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
    crate::auth::commit(tx).await
}

pub(crate) async fn set_alias(
    pool: &PgPool,
    name: &str,
    alias: &str,
    version: i64,
) -> CoreResult<()> {
    let mut tx = pool.begin().await.map_err(db_err)?;
    let (pk, mv_pk) = version_pk(&mut tx, name, version).await?;
    sqlx::query(
        "INSERT INTO registered_model_aliases (model_pk, alias, mv_pk) VALUES ($1, $2, $3) \
         ON CONFLICT (model_pk, alias) DO UPDATE SET mv_pk = excluded.mv_pk",
    )
    .bind(pk)
    .bind(alias)
    .bind(mv_pk)
    .execute(&mut *tx)
    .await
    .map_err(db_err)?;
    crate::auth::commit(tx).await
}

pub(crate) async fn delete_alias(pool: &PgPool, name: &str, alias: &str) -> CoreResult<()> {
    let mut tx = pool.begin().await.map_err(db_err)?;
    let pk = model_pk(&mut tx, name).await?;
    sqlx::query("DELETE FROM registered_model_aliases WHERE model_pk = $1 AND alias = $2")
        .bind(pk)
        .bind(alias)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
    crate::auth::commit(tx).await
}

pub(crate) async fn get_by_alias(
    pool: &PgPool,
    name: &str,
    alias: &str,
) -> CoreResult<ModelVersion> {
    let row: Option<(i64, Option<i64>)> = sqlx::query_as(
        "SELECT rm.model_pk, a.mv_pk FROM registered_models rm \
         LEFT JOIN registered_model_aliases a ON a.model_pk = rm.model_pk AND a.alias = $1 \
         WHERE rm.name = $2",
    )
    .bind(alias)
    .bind(name)
    .fetch_optional(pool)
    .await
    .map_err(db_err)?;
    let (_, mv_pk) = row.ok_or_else(|| model_not_found(name))?;
    let mv_pk = mv_pk.ok_or_else(|| alias_not_found(alias))?;
    get_version_by_pk(pool, mv_pk)
        .await?
        .ok_or_else(|| alias_not_found(alias))
}
