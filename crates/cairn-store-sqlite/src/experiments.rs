//! Experiments and their tags.

use std::collections::HashMap;

use cairn_core::auth::GrantKind;
use cairn_core::model::{Experiment, LifecycleStage, Tag};
use cairn_core::page::{page_from_overfetch, Page};
use cairn_core::store::{
    experiment_location_under, ArtifactLocation, ExperimentSearch, NewExperiment,
};
use cairn_core::{CoreError, CoreResult};
use sqlx::{QueryBuilder, Sqlite, SqlitePool};

use crate::sql::{json_list, push_filter, push_order_by, push_order_joins, Target};
use crate::{db_err, parse_col, SqliteStore};

type ExperimentRow = (i64, String, String, String, i64, i64);

const COLUMNS: &str =
    "e.experiment_id, e.name, e.artifact_location, e.lifecycle_stage, e.creation_time, e.last_update_time";

fn not_found(id: i64) -> CoreError {
    CoreError::not_found(format!("No Experiment with id={id} exists"))
}

pub(crate) async fn ensure_default(
    store: &SqliteStore,
    location: &str,
    now: i64,
) -> CoreResult<()> {
    sqlx::query(
        "INSERT OR IGNORE INTO experiments \
         (experiment_id, name, artifact_location, lifecycle_stage, creation_time, last_update_time) \
         VALUES (0, 'Default', ?, 'active', ?, ?)",
    )
    .bind(location)
    .bind(now)
    .bind(now)
    .execute(&store.writer)
    .await
    .map_err(db_err)?;
    Ok(())
}

pub(crate) async fn create(store: &SqliteStore, new: NewExperiment) -> CoreResult<String> {
    let mut tx = store.writer.begin().await.map_err(db_err)?;
    let exists: Option<(i64,)> =
        sqlx::query_as("SELECT experiment_id FROM experiments WHERE name = ?")
            .bind(&new.name)
            .fetch_optional(&mut *tx)
            .await
            .map_err(db_err)?;
    if exists.is_some() {
        return Err(CoreError::AlreadyExists(format!(
            "Experiment(name={}) already exists.",
            new.name
        )));
    }
    // Placeholder location first: the id (and so the default location) is only known
    // after the insert. Both statements are in one transaction.
    let (id,): (i64,) = sqlx::query_as(
        "INSERT INTO experiments (name, artifact_location, lifecycle_stage, creation_time, last_update_time) \
         VALUES (?, '', 'active', ?, ?) RETURNING experiment_id",
    )
    .bind(&new.name)
    .bind(new.now)
    .bind(new.now)
    .fetch_one(&mut *tx)
    .await
    .map_err(db_err)?;
    let location = match new.artifact_location {
        ArtifactLocation::Explicit(loc) => loc,
        ArtifactLocation::UnderRoot(root) => experiment_location_under(&root, id),
    };
    sqlx::query("UPDATE experiments SET artifact_location = ? WHERE experiment_id = ?")
        .bind(location)
        .bind(id)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
    for t in &new.tags {
        upsert_tag(&mut tx, id, t).await?;
    }
    crate::auth::grant_creator_experiment(&mut tx, id).await?;
    crate::auth::commit(tx).await?;
    Ok(id.to_string())
}

async fn upsert_tag(
    tx: &mut sqlx::Transaction<'static, Sqlite>,
    id: i64,
    t: &Tag,
) -> CoreResult<()> {
    sqlx::query(
        "INSERT INTO experiment_tags (experiment_id, key, value) VALUES (?, ?, ?) \
         ON CONFLICT (experiment_id, key) DO UPDATE SET value = excluded.value",
    )
    .bind(id)
    .bind(&t.key)
    .bind(&t.value)
    .execute(&mut **tx)
    .await
    .map_err(db_err)?;
    Ok(())
}

fn to_experiment(row: ExperimentRow, tags: Vec<Tag>) -> CoreResult<Experiment> {
    Ok(Experiment {
        experiment_id: row.0.to_string(),
        name: row.1,
        artifact_location: row.2,
        lifecycle_stage: parse_col(&row.3)?,
        creation_time: row.4,
        last_update_time: row.5,
        tags,
    })
}

async fn load_tags(pool: &SqlitePool, ids: &[i64]) -> CoreResult<HashMap<i64, Vec<Tag>>> {
    let list = json_list(ids);
    let rows: Vec<(i64, String, String)> = sqlx::query_as(
        "SELECT experiment_id, key, value FROM experiment_tags \
         WHERE experiment_id IN (SELECT value FROM json_each(?)) ORDER BY experiment_id, key",
    )
    .bind(list)
    .fetch_all(pool)
    .await
    .map_err(db_err)?;
    let mut out: HashMap<i64, Vec<Tag>> = HashMap::new();
    for (id, key, value) in rows {
        out.entry(id).or_default().push(Tag { key, value });
    }
    Ok(out)
}

async fn hydrate(pool: &SqlitePool, rows: Vec<ExperimentRow>) -> CoreResult<Vec<Experiment>> {
    let ids: Vec<i64> = rows.iter().map(|r| r.0).collect();
    let mut tags = load_tags(pool, &ids).await?;
    rows.into_iter()
        .map(|r| {
            let t = tags.remove(&r.0).unwrap_or_default();
            to_experiment(r, t)
        })
        .collect()
}

pub(crate) async fn get(pool: &SqlitePool, id: i64) -> CoreResult<Experiment> {
    let row: Option<ExperimentRow> = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM experiments e WHERE e.experiment_id = ?"
    ))
    .bind(id)
    .fetch_optional(pool)
    .await
    .map_err(db_err)?;
    let row = row.ok_or_else(|| not_found(id))?;
    hydrate(pool, vec![row])
        .await?
        .pop()
        .ok_or_else(|| not_found(id))
}

pub(crate) async fn get_by_name(pool: &SqlitePool, name: &str) -> CoreResult<Option<Experiment>> {
    let row: Option<ExperimentRow> = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM experiments e WHERE e.name = ?"
    ))
    .bind(name)
    .fetch_optional(pool)
    .await
    .map_err(db_err)?;
    match row {
        Some(r) => Ok(hydrate(pool, vec![r]).await?.pop()),
        None => Ok(None),
    }
}

pub(crate) async fn search(
    pool: &SqlitePool,
    q: &ExperimentSearch,
) -> CoreResult<Page<Experiment>> {
    let mut qb: QueryBuilder<'static, Sqlite> =
        QueryBuilder::new(format!("SELECT {COLUMNS} FROM experiments e"));
    let keys = push_order_joins(&mut qb, Target::Experiments, &q.order_by)?;
    qb.push(" WHERE e.lifecycle_stage IN (SELECT value FROM json_each(");
    qb.push_bind(stages_json(q.view.stages()));
    qb.push("))");
    if let Some(f) = &q.filter {
        qb.push(" AND ");
        push_filter(&mut qb, Target::Experiments, f)?;
    }
    crate::auth::push_visible(&mut qb, GrantKind::Experiment, "e.experiment_id");
    // MLflow's defaults: newest first; with explicit keys, experiment_id DESC breaks ties.
    let tie_breakers = if q.order_by.is_empty() {
        "e.creation_time DESC, e.experiment_id ASC"
    } else {
        "e.experiment_id DESC"
    };
    push_order_by(&mut qb, &keys, tie_breakers);
    qb.push(" LIMIT ");
    qb.push_bind((q.max_results + 1) as i64);
    qb.push(" OFFSET ");
    qb.push_bind(q.offset as i64);
    let rows: Vec<ExperimentRow> = qb.build_query_as().fetch_all(pool).await.map_err(db_err)?;
    let page = page_from_overfetch(rows, q.offset, q.max_results);
    Ok(Page {
        items: hydrate(pool, page.items).await?,
        next_page_token: page.next_page_token,
    })
}

fn stages_json(stages: &[LifecycleStage]) -> String {
    json_list(&stages.iter().map(|s| s.as_str()).collect::<Vec<_>>())
}

/// The artifact location of an experiment that new runs or models may be added to:
/// missing is NotFound, deleted is an invalid parameter (MLflow's wording).
pub(crate) async fn active_experiment_location(
    tx: &mut sqlx::Transaction<'static, Sqlite>,
    id: i64,
) -> CoreResult<String> {
    let row: Option<(String, String)> = sqlx::query_as(
        "SELECT artifact_location, lifecycle_stage FROM experiments WHERE experiment_id = ?",
    )
    .bind(id)
    .fetch_optional(&mut **tx)
    .await
    .map_err(db_err)?;
    let (location, stage) = row.ok_or_else(|| not_found(id))?;
    if parse_col::<LifecycleStage>(&stage)? != LifecycleStage::Active {
        return Err(CoreError::invalid(format!(
            "The experiment {id} must be in the 'active' state. Current state is {stage}."
        )));
    }
    Ok(location)
}

async fn stage_of(
    tx: &mut sqlx::Transaction<'static, Sqlite>,
    id: i64,
) -> CoreResult<LifecycleStage> {
    let row: Option<(String,)> =
        sqlx::query_as("SELECT lifecycle_stage FROM experiments WHERE experiment_id = ?")
            .bind(id)
            .fetch_optional(&mut **tx)
            .await
            .map_err(db_err)?;
    let (stage,) = row.ok_or_else(|| not_found(id))?;
    parse_col(&stage)
}

pub(crate) async fn set_lifecycle(
    store: &SqliteStore,
    id: i64,
    stage: LifecycleStage,
    now: i64,
) -> CoreResult<()> {
    let mut tx = store.writer.begin().await.map_err(db_err)?;
    let current = stage_of(&mut tx, id).await?;
    if current == stage {
        return Err(CoreError::invalid(format!(
            "Cannot {} experiment {id} because it is already {}.",
            if stage == LifecycleStage::Deleted {
                "delete"
            } else {
                "restore"
            },
            current.as_str()
        )));
    }
    sqlx::query(
        "UPDATE experiments SET lifecycle_stage = ?, last_update_time = ? WHERE experiment_id = ?",
    )
    .bind(stage.as_str())
    .bind(now)
    .bind(id)
    .execute(&mut *tx)
    .await
    .map_err(db_err)?;
    // Runs follow their experiment. Unlike MLflow, a restore brings back only the runs the
    // delete took with it; runs deleted on their own earlier stay deleted.
    let cascade = if stage == LifecycleStage::Deleted {
        "UPDATE runs SET lifecycle_stage = 'deleted', deleted_time = ?, deleted_by_experiment = 1 \
         WHERE experiment_id = ? AND lifecycle_stage = 'active'"
    } else {
        "UPDATE runs SET lifecycle_stage = 'active', deleted_time = NULL, deleted_by_experiment = 0 \
         WHERE experiment_id = ? AND deleted_by_experiment = 1"
    };
    let query = sqlx::query(cascade);
    let query = if stage == LifecycleStage::Deleted {
        query.bind(now)
    } else {
        query
    };
    query.bind(id).execute(&mut *tx).await.map_err(db_err)?;
    crate::auth::commit(tx).await
}

pub(crate) async fn rename(store: &SqliteStore, id: i64, name: &str, now: i64) -> CoreResult<()> {
    let mut tx = store.writer.begin().await.map_err(db_err)?;
    if stage_of(&mut tx, id).await? != LifecycleStage::Active {
        return Err(CoreError::InvalidState(
            "Cannot rename a non-active experiment.".into(),
        ));
    }
    let clash: Option<(i64,)> = sqlx::query_as(
        "SELECT experiment_id FROM experiments WHERE name = ? AND experiment_id != ?",
    )
    .bind(name)
    .bind(id)
    .fetch_optional(&mut *tx)
    .await
    .map_err(db_err)?;
    if clash.is_some() {
        return Err(CoreError::AlreadyExists(format!(
            "Experiment(name={name}) already exists."
        )));
    }
    sqlx::query("UPDATE experiments SET name = ?, last_update_time = ? WHERE experiment_id = ?")
        .bind(name)
        .bind(now)
        .bind(id)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
    crate::auth::commit(tx).await
}

pub(crate) async fn set_tag(store: &SqliteStore, id: i64, tag: &Tag) -> CoreResult<()> {
    let mut tx = store.writer.begin().await.map_err(db_err)?;
    if stage_of(&mut tx, id).await? != LifecycleStage::Active {
        return Err(CoreError::invalid(format!(
            "The experiment {id} must be in the 'active' state. Current state is deleted."
        )));
    }
    upsert_tag(&mut tx, id, tag).await?;
    crate::auth::commit(tx).await
}

pub(crate) async fn delete_tag(store: &SqliteStore, id: i64, key: &str) -> CoreResult<()> {
    let mut tx = store.writer.begin().await.map_err(db_err)?;
    if stage_of(&mut tx, id).await? != LifecycleStage::Active {
        return Err(CoreError::invalid(format!(
            "The experiment {id} must be in the 'active' state. Current state is deleted."
        )));
    }
    let done = sqlx::query("DELETE FROM experiment_tags WHERE experiment_id = ? AND key = ?")
        .bind(id)
        .bind(key)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
    if done.rows_affected() == 0 {
        return Err(CoreError::not_found(format!(
            "No tag with name: {key} in experiment with id {id}"
        )));
    }
    crate::auth::commit(tx).await
}
