//! Experiments and their tags.

use std::collections::HashMap;

use cairn_core::auth::GrantKind;
use cairn_core::model::{Experiment, LifecycleStage, Tag};
use cairn_core::page::{page_from_overfetch, Page};
use cairn_core::store::{
    experiment_location_under, ArtifactLocation, ExperimentSearch, NewExperiment,
};
use cairn_core::{CoreError, CoreResult};
use sqlx::{PgPool, Postgres, QueryBuilder, Transaction};

use crate::sql::{push_filter, push_order_by, push_order_joins, Target};
use crate::{db_err, is_unique_violation, parse_col};

pub(crate) type Tx = Transaction<'static, Postgres>;

type ExperimentRow = (i64, String, String, String, i64, i64);

const COLUMNS: &str =
    "e.experiment_id, e.name, e.artifact_location, e.lifecycle_stage, e.creation_time, e.last_update_time";

fn not_found(id: i64) -> CoreError {
    CoreError::not_found(format!("No Experiment with id={id} exists"))
}

fn name_taken(name: &str) -> CoreError {
    CoreError::AlreadyExists(format!("Experiment(name={name}) already exists."))
}

pub(crate) async fn ensure_default(pool: &PgPool, location: &str, now: i64) -> CoreResult<()> {
    // Replicas starting together all try; the first wins and the rest do nothing.
    sqlx::query(
        "INSERT INTO experiments \
         (experiment_id, name, artifact_location, lifecycle_stage, creation_time, last_update_time) \
         VALUES (0, 'Default', $1, 'active', $2, $2) ON CONFLICT DO NOTHING",
    )
    .bind(location)
    .bind(now)
    .execute(pool)
    .await
    .map_err(db_err)?;
    Ok(())
}

pub(crate) async fn create(pool: &PgPool, new: NewExperiment) -> CoreResult<String> {
    let mut tx = pool.begin().await.map_err(db_err)?;
    // ON CONFLICT settles concurrent creations of one name (from any replica): the loser
    // waits for the winner's commit and gets no row back.
    let inserted: Option<(i64,)> = sqlx::query_as(
        "INSERT INTO experiments (name, artifact_location, lifecycle_stage, creation_time, last_update_time) \
         VALUES ($1, '', 'active', $2, $2) ON CONFLICT (name) DO NOTHING RETURNING experiment_id",
    )
    .bind(&new.name)
    .bind(new.now)
    .fetch_optional(&mut *tx)
    .await
    .map_err(db_err)?;
    let Some((id,)) = inserted else {
        return Err(name_taken(&new.name));
    };
    let location = match new.artifact_location {
        ArtifactLocation::Explicit(loc) => loc,
        ArtifactLocation::UnderRoot(root) => experiment_location_under(&root, id),
    };
    sqlx::query("UPDATE experiments SET artifact_location = $1 WHERE experiment_id = $2")
        .bind(location)
        .bind(id)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
    upsert_tags(&mut tx, id, &new.tags).await?;
    crate::auth::grant_creator_experiment(&mut tx, id).await?;
    crate::auth::commit(tx).await?;
    Ok(id.to_string())
}

async fn upsert_tags(tx: &mut Tx, id: i64, tags: &[Tag]) -> CoreResult<()> {
    if tags.is_empty() {
        return Ok(());
    }
    let (keys, values) = crate::runs::tag_columns(tags);
    sqlx::query(
        "INSERT INTO experiment_tags (experiment_id, key, value) \
         SELECT $1, * FROM UNNEST($2::text[], $3::text[]) \
         ON CONFLICT (experiment_id, key) DO UPDATE SET value = excluded.value",
    )
    .bind(id)
    .bind(keys)
    .bind(values)
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

async fn load_tags(pool: &PgPool, ids: &[i64]) -> CoreResult<HashMap<i64, Vec<Tag>>> {
    let rows: Vec<(i64, String, String)> = sqlx::query_as(
        "SELECT experiment_id, key, value FROM experiment_tags \
         WHERE experiment_id = ANY($1) ORDER BY experiment_id, key",
    )
    .bind(ids)
    .fetch_all(pool)
    .await
    .map_err(db_err)?;
    let mut out: HashMap<i64, Vec<Tag>> = HashMap::new();
    for (id, key, value) in rows {
        out.entry(id).or_default().push(Tag { key, value });
    }
    Ok(out)
}

async fn hydrate(pool: &PgPool, rows: Vec<ExperimentRow>) -> CoreResult<Vec<Experiment>> {
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<i64> = rows.iter().map(|r| r.0).collect();
    let mut tags = load_tags(pool, &ids).await?;
    rows.into_iter()
        .map(|r| {
            let t = tags.remove(&r.0).unwrap_or_default();
            to_experiment(r, t)
        })
        .collect()
}

pub(crate) async fn get(pool: &PgPool, id: i64) -> CoreResult<Experiment> {
    let row: Option<ExperimentRow> = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM experiments e WHERE e.experiment_id = $1"
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

pub(crate) async fn get_by_name(pool: &PgPool, name: &str) -> CoreResult<Option<Experiment>> {
    let row: Option<ExperimentRow> = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM experiments e WHERE e.name = $1"
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

pub(crate) async fn search(pool: &PgPool, q: &ExperimentSearch) -> CoreResult<Page<Experiment>> {
    let mut qb: QueryBuilder<'static, Postgres> =
        QueryBuilder::new(format!("SELECT {COLUMNS} FROM experiments e"));
    let keys = push_order_joins(&mut qb, Target::Experiments, &q.order_by)?;
    qb.push(" WHERE e.lifecycle_stage = ANY(");
    qb.push_bind(stage_names(q.view.stages()));
    qb.push(")");
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

fn stage_names(stages: &[LifecycleStage]) -> Vec<String> {
    stages.iter().map(|s| s.as_str().to_string()).collect()
}

/// The artifact location of an experiment that new runs or models may be added to:
/// missing is NotFound, deleted is an invalid parameter (MLflow's wording). The row stays
/// share-locked until the caller commits, so a concurrent delete (from any replica) waits
/// and its cascade then sees the new run.
pub(crate) async fn active_experiment_location(tx: &mut Tx, id: i64) -> CoreResult<String> {
    let row: Option<(String, String)> = sqlx::query_as(
        "SELECT artifact_location, lifecycle_stage FROM experiments WHERE experiment_id = $1 \
         FOR SHARE",
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

/// The experiment's stage, with the row locked for update until commit.
async fn lock_stage(tx: &mut Tx, id: i64) -> CoreResult<LifecycleStage> {
    let row: Option<(String,)> = sqlx::query_as(
        "SELECT lifecycle_stage FROM experiments WHERE experiment_id = $1 FOR NO KEY UPDATE",
    )
    .bind(id)
    .fetch_optional(&mut **tx)
    .await
    .map_err(db_err)?;
    let (stage,) = row.ok_or_else(|| not_found(id))?;
    parse_col(&stage)
}

pub(crate) async fn set_lifecycle(
    pool: &PgPool,
    id: i64,
    stage: LifecycleStage,
    now: i64,
) -> CoreResult<()> {
    let mut tx = pool.begin().await.map_err(db_err)?;
    let current = lock_stage(&mut tx, id).await?;
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
        "UPDATE experiments SET lifecycle_stage = $1, last_update_time = $2 WHERE experiment_id = $3",
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
        sqlx::query(
            "UPDATE runs SET lifecycle_stage = 'deleted', deleted_time = $1, \
             deleted_by_experiment = true WHERE experiment_id = $2 AND lifecycle_stage = 'active'",
        )
        .bind(now)
    } else {
        sqlx::query(
            "UPDATE runs SET lifecycle_stage = 'active', deleted_time = NULL, \
             deleted_by_experiment = false WHERE experiment_id = $1 AND deleted_by_experiment",
        )
    };
    cascade.bind(id).execute(&mut *tx).await.map_err(db_err)?;
    crate::auth::commit(tx).await
}

pub(crate) async fn rename(pool: &PgPool, id: i64, name: &str, now: i64) -> CoreResult<()> {
    let mut tx = pool.begin().await.map_err(db_err)?;
    if lock_stage(&mut tx, id).await? != LifecycleStage::Active {
        return Err(CoreError::InvalidState(
            "Cannot rename a non-active experiment.".into(),
        ));
    }
    let done = sqlx::query(
        "UPDATE experiments SET name = $1, last_update_time = $2 WHERE experiment_id = $3",
    )
    .bind(name)
    .bind(now)
    .bind(id)
    .execute(&mut *tx)
    .await;
    match done {
        Ok(_) => crate::auth::commit(tx).await,
        Err(e) if is_unique_violation(&e) => Err(name_taken(name)),
        Err(e) => Err(db_err(e)),
    }
}

async fn check_active_for_tags(tx: &mut Tx, id: i64) -> CoreResult<()> {
    let row: Option<(String,)> = sqlx::query_as(
        "SELECT lifecycle_stage FROM experiments WHERE experiment_id = $1 FOR KEY SHARE",
    )
    .bind(id)
    .fetch_optional(&mut **tx)
    .await
    .map_err(db_err)?;
    let (stage,) = row.ok_or_else(|| not_found(id))?;
    if parse_col::<LifecycleStage>(&stage)? != LifecycleStage::Active {
        return Err(CoreError::invalid(format!(
            "The experiment {id} must be in the 'active' state. Current state is deleted."
        )));
    }
    Ok(())
}

pub(crate) async fn set_tag(pool: &PgPool, id: i64, tag: &Tag) -> CoreResult<()> {
    let mut tx = pool.begin().await.map_err(db_err)?;
    check_active_for_tags(&mut tx, id).await?;
    upsert_tags(&mut tx, id, std::slice::from_ref(tag)).await?;
    crate::auth::commit(tx).await
}

pub(crate) async fn delete_tag(pool: &PgPool, id: i64, key: &str) -> CoreResult<()> {
    let mut tx = pool.begin().await.map_err(db_err)?;
    check_active_for_tags(&mut tx, id).await?;
    let done = sqlx::query("DELETE FROM experiment_tags WHERE experiment_id = $1 AND key = $2")
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
