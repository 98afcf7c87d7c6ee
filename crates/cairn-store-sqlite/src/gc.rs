//! Permanent removal of deleted entities (`cairn gc`). Child rows go with their run or
//! model through `ON DELETE CASCADE`.

use cairn_core::store::{GcCandidates, GcItem, GcQuery};
use cairn_core::CoreResult;
use sqlx::SqlitePool;

use crate::sql::json_list;
use crate::{db_err, SqliteStore};

type Row = (String, i64, String);

fn items(rows: Vec<Row>, skip_experiments: &[i64]) -> Vec<GcItem> {
    rows.into_iter()
        .filter(|(_, exp, _)| !skip_experiments.contains(exp))
        .map(|(id, _, artifact_uri)| GcItem { id, artifact_uri })
        .collect()
}

pub(crate) async fn candidates(pool: &SqlitePool, q: &GcQuery) -> CoreResult<GcCandidates> {
    let exps = json_list(&q.experiment_ids);
    let runs = json_list(&q.run_ids);
    let by_run = !q.run_ids.is_empty();
    // The Default experiment (0) is never purged: the server needs it to exist.
    let experiments: Vec<Row> = if by_run {
        Vec::new()
    } else {
        sqlx::query_as(
            "SELECT CAST(experiment_id AS TEXT), experiment_id, artifact_location FROM experiments \
             WHERE lifecycle_stage = 'deleted' AND experiment_id != 0 \
               AND (?1 IS NULL OR last_update_time <= ?1) \
               AND (?2 = '[]' OR experiment_id IN (SELECT value FROM json_each(?2))) \
             ORDER BY experiment_id",
        )
        .bind(q.deleted_before)
        .bind(&exps)
        .fetch_all(pool)
        .await
        .map_err(db_err)?
    };
    let purged_experiments: Vec<i64> = experiments.iter().map(|e| e.1).collect();
    let run_rows: Vec<Row> = sqlx::query_as(
        "SELECT run_id, experiment_id, artifact_uri FROM runs \
         WHERE lifecycle_stage = 'deleted' \
           AND (?1 IS NULL OR COALESCE(deleted_time, 0) <= ?1) \
           AND (?2 = '[]' OR experiment_id IN (SELECT value FROM json_each(?2))) \
           AND (?3 = '[]' OR run_id IN (SELECT value FROM json_each(?3))) \
         ORDER BY run_pk",
    )
    .bind(q.deleted_before)
    .bind(&exps)
    .bind(&runs)
    .fetch_all(pool)
    .await
    .map_err(db_err)?;
    let model_rows: Vec<Row> = if by_run {
        Vec::new()
    } else {
        sqlx::query_as(
            "SELECT model_id, experiment_id, artifact_uri FROM logged_models \
             WHERE lifecycle_stage = 'deleted' \
               AND (?1 IS NULL OR last_updated_timestamp <= ?1) \
               AND (?2 = '[]' OR experiment_id IN (SELECT value FROM json_each(?2))) \
             ORDER BY creation_timestamp, model_id",
        )
        .bind(q.deleted_before)
        .bind(&exps)
        .fetch_all(pool)
        .await
        .map_err(db_err)?
    };
    Ok(GcCandidates {
        experiments: items(experiments, &[]),
        runs: items(run_rows, &purged_experiments),
        logged_models: items(model_rows, &purged_experiments),
    })
}

pub(crate) async fn purge_run(store: &SqliteStore, run_id: &str) -> CoreResult<bool> {
    let mut tx = store.writer.begin().await.map_err(db_err)?;
    let done = sqlx::query("DELETE FROM runs WHERE run_id = ? AND lifecycle_stage = 'deleted'")
        .bind(run_id)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
    if done.rows_affected() == 0 {
        return Ok(false);
    }
    // (With `cairn gc`'s audit event, which commits with the purge.)
    crate::auth::commit(tx).await?;
    Ok(true)
}

pub(crate) async fn purge_logged_model(store: &SqliteStore, model_id: &str) -> CoreResult<bool> {
    let mut tx = store.writer.begin().await.map_err(db_err)?;
    let done =
        sqlx::query("DELETE FROM logged_models WHERE model_id = ? AND lifecycle_stage = 'deleted'")
            .bind(model_id)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
    if done.rows_affected() == 0 {
        return Ok(false);
    }
    // Runs' references to the model (no foreign key: a run may name any model id).
    for table in ["run_model_inputs", "run_model_outputs"] {
        sqlx::query(&format!("DELETE FROM {table} WHERE model_id = ?"))
            .bind(model_id)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
    }
    crate::auth::commit(tx).await?;
    Ok(true)
}

pub(crate) async fn purge_experiment(store: &SqliteStore, experiment_id: i64) -> CoreResult<bool> {
    let mut tx = store.writer.begin().await.map_err(db_err)?;
    let deleted: Option<(i64,)> = sqlx::query_as(
        "SELECT experiment_id FROM experiments \
         WHERE experiment_id = ? AND lifecycle_stage = 'deleted' AND experiment_id != 0",
    )
    .bind(experiment_id)
    .fetch_optional(&mut *tx)
    .await
    .map_err(db_err)?;
    if deleted.is_none() {
        return Ok(false);
    }
    for sql in [
        "DELETE FROM runs WHERE experiment_id = ?",
        "DELETE FROM run_model_inputs WHERE model_id IN \
           (SELECT model_id FROM logged_models WHERE experiment_id = ?)",
        "DELETE FROM run_model_outputs WHERE model_id IN \
           (SELECT model_id FROM logged_models WHERE experiment_id = ?)",
        "DELETE FROM logged_models WHERE experiment_id = ?",
        "DELETE FROM datasets WHERE experiment_id = ?",
        "DELETE FROM experiments WHERE experiment_id = ?",
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
