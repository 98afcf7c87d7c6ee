//! MLflow 3 logged models.

use std::collections::HashMap;

use cairn_core::model::{LifecycleStage, LoggedModel, LoggedModelStatus, Metric, Param, Tag};
use cairn_core::page::{page_from_overfetch, Page};
use cairn_core::store::{logged_model_artifact_uri, LoggedModelSearch, NewLoggedModel};
use cairn_core::{CoreError, CoreResult};
use sqlx::{PgPool, Postgres, QueryBuilder};

use crate::experiments::{active_experiment_location, Tx};
use crate::runs::{decode_value, insert_params, tag_columns, Owner};
use crate::sql::{push_filter, push_order_by, push_order_joins, Target};
use crate::{db_err, parse_col};

/// model_id, experiment_id, name, artifact_uri, created, updated, type, run, status, msg, stage
type ModelRow = (
    String,
    i64,
    String,
    String,
    i64,
    i64,
    Option<String>,
    Option<String>,
    String,
    Option<String>,
    String,
);

const COLUMNS: &str = "lm.model_id, lm.experiment_id, lm.name, lm.artifact_uri, \
    lm.creation_timestamp, lm.last_updated_timestamp, lm.model_type, lm.source_run_id, \
    lm.status, lm.status_message, lm.lifecycle_stage";

fn not_found(id: &str) -> CoreError {
    CoreError::not_found(format!("Logged model with ID '{id}' not found."))
}

pub(crate) async fn create(pool: &PgPool, new: NewLoggedModel) -> CoreResult<LoggedModel> {
    let mut tx = pool.begin().await.map_err(db_err)?;
    let location = active_experiment_location(&mut tx, new.experiment_id).await?;
    let artifact_uri = logged_model_artifact_uri(&location, &new.model_id);
    sqlx::query(
        "INSERT INTO logged_models (model_id, experiment_id, name, artifact_uri, creation_timestamp, \
         last_updated_timestamp, model_type, source_run_id, status, status_message, lifecycle_stage) \
         VALUES ($1, $2, $3, $4, $5, $5, $6, $7, $8, NULL, 'active')",
    )
    .bind(&new.model_id)
    .bind(new.experiment_id)
    .bind(&new.name)
    .bind(&artifact_uri)
    .bind(new.now)
    .bind(&new.model_type)
    .bind(&new.source_run_id)
    .bind(LoggedModelStatus::Pending.as_str())
    .execute(&mut *tx)
    .await
    .map_err(db_err)?;
    upsert_tags(&mut tx, &new.model_id, &new.tags).await?;
    if !new.params.is_empty() {
        insert_params(&mut tx, Owner::Model(&new.model_id), &new.params).await?;
    }
    crate::auth::commit(tx).await?;
    get(pool, &new.model_id).await
}

async fn upsert_tags(tx: &mut Tx, model_id: &str, tags: &[Tag]) -> CoreResult<()> {
    if tags.is_empty() {
        return Ok(());
    }
    let (keys, values) = tag_columns(tags);
    sqlx::query(
        "INSERT INTO logged_model_tags (model_id, key, value) \
         SELECT $1, * FROM UNNEST($2::text[], $3::text[]) \
         ON CONFLICT (model_id, key) DO UPDATE SET value = excluded.value",
    )
    .bind(model_id)
    .bind(keys)
    .bind(values)
    .execute(&mut **tx)
    .await
    .map_err(db_err)?;
    Ok(())
}

async fn hydrate(pool: &PgPool, rows: Vec<ModelRow>) -> CoreResult<Vec<LoggedModel>> {
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<&str> = rows.iter().map(|r| r.0.as_str()).collect();
    let mut tags: HashMap<String, Vec<Tag>> = HashMap::new();
    let tag_rows: Vec<(String, String, String)> = sqlx::query_as(
        "SELECT model_id, key, value FROM logged_model_tags \
         WHERE model_id = ANY($1) ORDER BY key",
    )
    .bind(&ids)
    .fetch_all(pool)
    .await
    .map_err(db_err)?;
    for (id, key, value) in tag_rows {
        tags.entry(id).or_default().push(Tag { key, value });
    }
    let mut params: HashMap<String, Vec<Param>> = HashMap::new();
    let param_rows: Vec<(String, String, String)> = sqlx::query_as(
        "SELECT model_id, key, value FROM logged_model_params \
         WHERE model_id = ANY($1) ORDER BY key",
    )
    .bind(&ids)
    .fetch_all(pool)
    .await
    .map_err(db_err)?;
    for (id, key, value) in param_rows {
        params.entry(id).or_default().push(Param { key, value });
    }
    let mut metrics: HashMap<String, Vec<Metric>> = HashMap::new();
    type Row = (
        String,
        String,
        String,
        f64,
        bool,
        i64,
        i64,
        Option<String>,
        Option<String>,
    );
    let metric_rows: Vec<Row> = sqlx::query_as(
        "SELECT model_id, run_id, key, value, is_nan, timestamp, step, dataset_name, dataset_digest \
         FROM logged_model_metrics WHERE model_id = ANY($1) \
         ORDER BY key, timestamp, step",
    )
    .bind(&ids)
    .fetch_all(pool)
    .await
    .map_err(db_err)?;
    for (id, run_id, key, value, is_nan, timestamp, step, dataset_name, dataset_digest) in
        metric_rows
    {
        let value = decode_value(value, is_nan);
        metrics.entry(id.clone()).or_default().push(Metric {
            key,
            value,
            timestamp,
            step,
            model_id: Some(id),
            dataset_name,
            dataset_digest,
            run_id: Some(run_id),
        });
    }
    rows.into_iter()
        .map(|r| {
            Ok(LoggedModel {
                tags: tags.remove(&r.0).unwrap_or_default(),
                params: params.remove(&r.0).unwrap_or_default(),
                metrics: metrics.remove(&r.0).unwrap_or_default(),
                model_id: r.0,
                experiment_id: r.1.to_string(),
                name: r.2,
                artifact_uri: r.3,
                creation_timestamp: r.4,
                last_updated_timestamp: r.5,
                model_type: r.6,
                source_run_id: r.7,
                status: parse_col(&r.8)?,
                status_message: r.9,
                lifecycle_stage: parse_col(&r.10)?,
            })
        })
        .collect()
}

pub(crate) async fn get(pool: &PgPool, model_id: &str) -> CoreResult<LoggedModel> {
    let row: Option<ModelRow> = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM logged_models lm WHERE lm.model_id = $1"
    ))
    .bind(model_id)
    .fetch_optional(pool)
    .await
    .map_err(db_err)?;
    let row = row.ok_or_else(|| not_found(model_id))?;
    hydrate(pool, vec![row])
        .await?
        .pop()
        .ok_or_else(|| not_found(model_id))
}

/// Fails unless the model exists and is not deleted.
async fn check_live(tx: &mut Tx, model_id: &str) -> CoreResult<()> {
    let row: Option<(String,)> = sqlx::query_as(
        "SELECT lifecycle_stage FROM logged_models WHERE model_id = $1 FOR KEY SHARE",
    )
    .bind(model_id)
    .fetch_optional(&mut **tx)
    .await
    .map_err(db_err)?;
    let (stage,) = row.ok_or_else(|| not_found(model_id))?;
    if parse_col::<LifecycleStage>(&stage)? != LifecycleStage::Active {
        return Err(not_found(model_id));
    }
    Ok(())
}

pub(crate) async fn set_status(
    pool: &PgPool,
    model_id: &str,
    status: LoggedModelStatus,
    now: i64,
) -> CoreResult<LoggedModel> {
    let mut tx = pool.begin().await.map_err(db_err)?;
    check_live(&mut tx, model_id).await?;
    sqlx::query(
        "UPDATE logged_models SET status = $1, last_updated_timestamp = $2 WHERE model_id = $3",
    )
    .bind(status.as_str())
    .bind(now)
    .bind(model_id)
    .execute(&mut *tx)
    .await
    .map_err(db_err)?;
    crate::auth::commit(tx).await?;
    get(pool, model_id).await
}

pub(crate) async fn delete(pool: &PgPool, model_id: &str, now: i64) -> CoreResult<()> {
    let mut tx = pool.begin().await.map_err(db_err)?;
    check_live(&mut tx, model_id).await?;
    sqlx::query(
        "UPDATE logged_models SET lifecycle_stage = 'deleted', last_updated_timestamp = $1 WHERE model_id = $2",
    )
    .bind(now)
    .bind(model_id)
    .execute(&mut *tx)
    .await
    .map_err(db_err)?;
    crate::auth::commit(tx).await
}

pub(crate) async fn set_tags(pool: &PgPool, model_id: &str, tags: &[Tag]) -> CoreResult<()> {
    let mut tx = pool.begin().await.map_err(db_err)?;
    check_live(&mut tx, model_id).await?;
    upsert_tags(&mut tx, model_id, tags).await?;
    crate::auth::commit(tx).await
}

pub(crate) async fn delete_tag(pool: &PgPool, model_id: &str, key: &str) -> CoreResult<()> {
    let mut tx = pool.begin().await.map_err(db_err)?;
    check_live(&mut tx, model_id).await?;
    let done = sqlx::query("DELETE FROM logged_model_tags WHERE model_id = $1 AND key = $2")
        .bind(model_id)
        .bind(key)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
    if done.rows_affected() == 0 {
        return Err(CoreError::not_found(format!(
            "No tag with key '{key}' found for logged model with ID '{model_id}'."
        )));
    }
    crate::auth::commit(tx).await
}

pub(crate) async fn log_params(pool: &PgPool, model_id: &str, params: &[Param]) -> CoreResult<()> {
    let mut tx = pool.begin().await.map_err(db_err)?;
    check_live(&mut tx, model_id).await?;
    if !params.is_empty() {
        insert_params(&mut tx, Owner::Model(model_id), params).await?;
    }
    crate::auth::commit(tx).await
}

pub(crate) async fn search(pool: &PgPool, q: &LoggedModelSearch) -> CoreResult<Page<LoggedModel>> {
    let mut qb: QueryBuilder<'static, Postgres> =
        QueryBuilder::new(format!("SELECT {COLUMNS} FROM logged_models lm"));
    let keys = push_order_joins(&mut qb, Target::LoggedModels, &q.order_by)?;
    qb.push(" WHERE lm.lifecycle_stage = 'active' AND lm.experiment_id = ANY(");
    qb.push_bind(q.experiment_ids.clone());
    qb.push(")");
    if let Some(f) = &q.filter {
        qb.push(" AND ");
        push_filter(&mut qb, Target::LoggedModels, f)?;
    }
    push_order_by(
        &mut qb,
        &keys,
        "lm.creation_timestamp DESC, lm.model_id ASC",
    );
    qb.push(" LIMIT ");
    qb.push_bind((q.max_results + 1) as i64);
    qb.push(" OFFSET ");
    qb.push_bind(q.offset as i64);
    let rows: Vec<ModelRow> = qb.build_query_as().fetch_all(pool).await.map_err(db_err)?;
    let page = page_from_overfetch(rows, q.offset, q.max_results);
    Ok(Page {
        items: hydrate(pool, page.items).await?,
        next_page_token: page.next_page_token,
    })
}
