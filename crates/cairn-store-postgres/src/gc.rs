//! Permanent removal of deleted entities (`cairn gc`). The metric tables carry no foreign
//! key to `runs` (see the migration), so their rows are deleted explicitly, in the same
//! transaction as the run.

use cairn_core::store::{GcCandidates, GcItem, GcQuery};
use cairn_core::CoreResult;
use sqlx::{PgPool, Postgres, Transaction};

use crate::{db_err, PgStore};

type Row = (String, i64, String);

fn items(rows: Vec<Row>, skip_experiments: &[i64]) -> Vec<GcItem> {
    rows.into_iter()
        .filter(|(_, exp, _)| !skip_experiments.contains(exp))
        .map(|(id, _, artifact_uri)| GcItem { id, artifact_uri })
        .collect()
}

pub(crate) async fn candidates(pool: &PgPool, q: &GcQuery) -> CoreResult<GcCandidates> {
    let by_run = !q.run_ids.is_empty();
    let all_experiments = q.experiment_ids.is_empty();
    let all_runs = q.run_ids.is_empty();
    // The Default experiment (0) is never purged: the server needs it to exist.
    let experiments: Vec<Row> = if by_run {
        Vec::new()
    } else {
        sqlx::query_as(
            "SELECT experiment_id::text AS id, experiment_id, artifact_location FROM experiments \
             WHERE lifecycle_stage = 'deleted' AND experiment_id <> 0 \
               AND ($1::bigint IS NULL OR last_update_time <= $1) \
               AND ($2 OR experiment_id = ANY($3)) \
             ORDER BY experiment_id",
        )
        .bind(q.deleted_before)
        .bind(all_experiments)
        .bind(&q.experiment_ids)
        .fetch_all(pool)
        .await
        .map_err(db_err)?
    };
    let purged: Vec<i64> = experiments.iter().map(|e| e.1).collect();
    let runs: Vec<Row> = sqlx::query_as(
        "SELECT run_id, experiment_id, artifact_uri FROM runs \
         WHERE lifecycle_stage = 'deleted' \
           AND ($1::bigint IS NULL OR COALESCE(deleted_time, 0) <= $1) \
           AND ($2 OR experiment_id = ANY($3)) \
           AND ($4 OR run_id = ANY($5)) \
         ORDER BY run_pk",
    )
    .bind(q.deleted_before)
    .bind(all_experiments)
    .bind(&q.experiment_ids)
    .bind(all_runs)
    .bind(&q.run_ids)
    .fetch_all(pool)
    .await
    .map_err(db_err)?;
    let models: Vec<Row> = if by_run {
        Vec::new()
    } else {
        sqlx::query_as(
            "SELECT model_id, experiment_id, artifact_uri FROM logged_models \
             WHERE lifecycle_stage = 'deleted' \
               AND ($1::bigint IS NULL OR last_updated_timestamp <= $1) \
               AND ($2 OR experiment_id = ANY($3)) \
             ORDER BY creation_timestamp, model_id",
        )
        .bind(q.deleted_before)
        .bind(all_experiments)
        .bind(&q.experiment_ids)
        .fetch_all(pool)
        .await
        .map_err(db_err)?
    };
    Ok(GcCandidates {
        experiments: items(experiments, &[]),
        runs: items(runs, &purged),
        logged_models: items(models, &purged),
    })
}

/// Deletes the metric rows of runs, which have no cascading foreign key.
async fn delete_metric_rows(
    tx: &mut Transaction<'static, Postgres>,
    run_pks: &[i64],
) -> CoreResult<()> {
    for table in ["metric_chunks", "metric_contexts", "latest_metrics"] {
        sqlx::query(&format!("DELETE FROM {table} WHERE run_pk = ANY($1)"))
            .bind(run_pks)
            .execute(&mut **tx)
            .await
            .map_err(db_err)?;
    }
    Ok(())
}

pub(crate) async fn purge_run(store: &PgStore, run_id: &str) -> CoreResult<bool> {
    let mut tx = store.pool.begin().await.map_err(db_err)?;
    let pks: Vec<(i64,)> = sqlx::query_as(
        "DELETE FROM runs WHERE run_id = $1 AND lifecycle_stage = 'deleted' RETURNING run_pk",
    )
    .bind(run_id)
    .fetch_all(&mut *tx)
    .await
    .map_err(db_err)?;
    if pks.is_empty() {
        return Ok(false);
    }
    let pks: Vec<i64> = pks.into_iter().map(|p| p.0).collect();
    delete_metric_rows(&mut tx, &pks).await?;
    crate::auth::commit(tx).await?;
    Ok(true)
}

pub(crate) async fn purge_logged_model(store: &PgStore, model_id: &str) -> CoreResult<bool> {
    let mut tx = store.pool.begin().await.map_err(db_err)?;
    let done = sqlx::query(
        "DELETE FROM logged_models WHERE model_id = $1 AND lifecycle_stage = 'deleted'",
    )
    .bind(model_id)
    .execute(&mut *tx)
    .await
    .map_err(db_err)?;
    if done.rows_affected() == 0 {
        return Ok(false);
    }
    // Runs' references to the model (no foreign key: a run may name any model id).
    for table in ["run_model_inputs", "run_model_outputs"] {
        sqlx::query(&format!("DELETE FROM {table} WHERE model_id = $1"))
            .bind(model_id)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
    }
    crate::auth::commit(tx).await?;
    Ok(true)
}

pub(crate) async fn purge_experiment(store: &PgStore, experiment_id: i64) -> CoreResult<bool> {
    let mut tx = store.pool.begin().await.map_err(db_err)?;
    // Locks the experiment so a concurrent restore or run creation waits for the purge.
    let deleted: Option<(i64,)> = sqlx::query_as(
        "SELECT experiment_id FROM experiments \
         WHERE experiment_id = $1 AND lifecycle_stage = 'deleted' AND experiment_id <> 0 \
         FOR UPDATE",
    )
    .bind(experiment_id)
    .fetch_optional(&mut *tx)
    .await
    .map_err(db_err)?;
    if deleted.is_none() {
        return Ok(false);
    }
    let pks: Vec<(i64,)> =
        sqlx::query_as("DELETE FROM runs WHERE experiment_id = $1 RETURNING run_pk")
            .bind(experiment_id)
            .fetch_all(&mut *tx)
            .await
            .map_err(db_err)?;
    let pks: Vec<i64> = pks.into_iter().map(|p| p.0).collect();
    delete_metric_rows(&mut tx, &pks).await?;
    for sql in [
        "DELETE FROM run_model_inputs WHERE model_id IN \
           (SELECT model_id FROM logged_models WHERE experiment_id = $1)",
        "DELETE FROM run_model_outputs WHERE model_id IN \
           (SELECT model_id FROM logged_models WHERE experiment_id = $1)",
        "DELETE FROM logged_models WHERE experiment_id = $1",
        "DELETE FROM datasets WHERE experiment_id = $1",
        "DELETE FROM experiments WHERE experiment_id = $1",
    ] {
        sqlx::query(sql)
            .bind(experiment_id)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
    }
    crate::auth::commit(tx).await?;
    Ok(true)
}
