//! Runs, their metrics, params, tags, inputs and outputs.
//!
//! Bulk writes bind whole columns as arrays and insert with `UNNEST`, so a 1000-metric
//! batch is one statement whose text never changes (one prepared statement per
//! connection, no per-row round trips). Rows are sorted by key first: two transactions
//! touching the same keys then lock them in the same order and cannot deadlock.

use std::collections::{BTreeMap, HashMap};

use cairn_core::history::{self, Point};
use cairn_core::model::{
    Dataset, DatasetInput, LifecycleStage, Metric, ModelInput, ModelOutput, Param, Run, RunData,
    RunInfo, RunInputs, RunOutputs, Tag,
};
use cairn_core::page::{page_from_overfetch, Page, PartWindow};
use cairn_core::search::{Field, OrderBy};
use cairn_core::service::RUN_NAME_TAG;
use cairn_core::store::{
    check_param_conflicts, dedup_tags, latest_per_key, run_artifact_uri, LogBatch,
    MetricHistoryQuery, NewRun, RunSearch, RunUpdate,
};
use cairn_core::{CoreError, CoreResult};
use sqlx::{Connection, PgConnection, PgPool, Postgres, QueryBuilder};

use crate::experiments::{active_experiment_location, Tx};
use crate::sql::{push_filter, push_order_by, push_order_joins, Target};
use crate::{db_err, parse_col};

/// run_pk, run_id, experiment_id, name, user_id, status, start_time, end_time,
/// artifact_uri, stage
type RunRow = (
    i64,
    String,
    i64,
    String,
    String,
    String,
    Option<i64>,
    Option<i64>,
    String,
    String,
);

const RUN_COLUMNS: &str =
    "r.run_pk, r.run_id, r.experiment_id, r.name, r.user_id, r.status, r.start_time, \
                           r.end_time, r.artifact_uri, r.lifecycle_stage";
/// The same columns unqualified, for `RETURNING`.
const RUN_COLUMNS_BARE: &str = "run_pk, run_id, experiment_id, name, user_id, status, \
                                start_time, end_time, artifact_uri, lifecycle_stage";

// NaN is stored as 0 with a flag, as in the SQLite store, so both backends compare and
// order it identically (PostgreSQL's own NaN sorts above every number and equals itself).
pub(crate) use cairn_core::history::{decode_value, encode_value};

pub(crate) fn run_not_found(run_id: &str) -> CoreError {
    CoreError::not_found(format!("Run with id={run_id} not found"))
}

fn to_info(r: RunRow) -> CoreResult<RunInfo> {
    Ok(RunInfo {
        run_id: r.1,
        experiment_id: r.2.to_string(),
        run_name: r.3,
        user_id: r.4,
        status: parse_col(&r.5)?,
        start_time: r.6,
        end_time: r.7,
        artifact_uri: r.8,
        lifecycle_stage: parse_col(&r.9)?,
    })
}

/// Fails unless the run exists and is active; MLflow reports a deleted run as an invalid
/// parameter rather than a missing one. Returns the run's integer key. The row is
/// key-share locked until commit (what a foreign key would take): it cannot be removed
/// under the child rows being written, while status and name updates still proceed.
async fn check_active(tx: &mut Tx, run_id: &str) -> CoreResult<i64> {
    let row: Option<(i64, String)> =
        sqlx::query_as("SELECT run_pk, lifecycle_stage FROM runs WHERE run_id = $1 FOR KEY SHARE")
            .bind(run_id)
            .fetch_optional(&mut **tx)
            .await
            .map_err(db_err)?;
    let (run_pk, stage) = row.ok_or_else(|| run_not_found(run_id))?;
    if parse_col::<LifecycleStage>(&stage)? != LifecycleStage::Active {
        return Err(CoreError::invalid(format!(
            "The run {run_id} must be in the 'active' state. Current state is {stage}."
        )));
    }
    Ok(run_pk)
}

pub(crate) async fn create(pool: &PgPool, new: NewRun) -> CoreResult<Run> {
    let mut tx = pool.begin().await.map_err(db_err)?;
    let location = active_experiment_location(&mut tx, new.experiment_id).await?;
    let artifact_uri = run_artifact_uri(&location, &new.run_id);
    let (run_pk,): (i64,) = sqlx::query_as(
        "INSERT INTO runs (run_id, experiment_id, name, user_id, status, start_time, end_time, \
         artifact_uri, lifecycle_stage) VALUES ($1, $2, $3, $4, 'RUNNING', $5, NULL, $6, 'active') \
         RETURNING run_pk",
    )
    .bind(&new.run_id)
    .bind(new.experiment_id)
    .bind(&new.run_name)
    .bind(&new.user_id)
    .bind(new.start_time)
    .bind(&artifact_uri)
    .fetch_one(&mut *tx)
    .await
    .map_err(db_err)?;
    upsert_tags(&mut tx, run_pk, &new.tags).await?;
    crate::auth::commit(tx).await?;
    let tags = dedup_tags(&new.tags);
    Ok(Run {
        info: RunInfo {
            run_id: new.run_id,
            experiment_id: new.experiment_id.to_string(),
            run_name: new.run_name,
            user_id: new.user_id,
            status: cairn_core::model::RunStatus::Running,
            start_time: new.start_time,
            end_time: None,
            artifact_uri,
            lifecycle_stage: LifecycleStage::Active,
        },
        data: RunData {
            metrics: Vec::new(),
            params: Vec::new(),
            tags,
        },
        inputs: RunInputs::default(),
        outputs: RunOutputs::default(),
    })
}

/// Tags as (keys, values) columns, one per key (see [`dedup_tags`]).
pub(crate) fn tag_columns(tags: &[Tag]) -> (Vec<String>, Vec<String>) {
    dedup_tags(tags)
        .into_iter()
        .map(|t| (t.key, t.value))
        .unzip()
}

async fn upsert_tags(tx: &mut Tx, run_pk: i64, tags: &[Tag]) -> CoreResult<()> {
    if tags.is_empty() {
        return Ok(());
    }
    let (keys, values) = tag_columns(tags);
    sqlx::query(
        "INSERT INTO tags (run_pk, key, value) SELECT $1, * FROM UNNEST($2::text[], $3::text[]) \
         ON CONFLICT (run_pk, key) DO UPDATE SET value = excluded.value",
    )
    .bind(run_pk)
    .bind(keys)
    .bind(values)
    .execute(&mut **tx)
    .await
    .map_err(db_err)?;
    // The run name lives in a column and in the mlflow.runName tag; keep them in step.
    if let Some(name) = tags.iter().rev().find(|t| t.key == RUN_NAME_TAG) {
        sqlx::query("UPDATE runs SET name = $1 WHERE run_pk = $2")
            .bind(&name.value)
            .bind(run_pk)
            .execute(&mut **tx)
            .await
            .map_err(db_err)?;
    }
    Ok(())
}

pub(crate) async fn get(pool: &PgPool, run_id: &str) -> CoreResult<Run> {
    let mut conn = pool.acquire().await.map_err(db_err)?;
    let row: Option<RunRow> = sqlx::query_as(&format!(
        "SELECT {RUN_COLUMNS} FROM runs r WHERE r.run_id = $1"
    ))
    .bind(run_id)
    .fetch_optional(&mut *conn)
    .await
    .map_err(db_err)?;
    let row = row.ok_or_else(|| run_not_found(run_id))?;
    hydrate(&mut conn, vec![row])
        .await?
        .pop()
        .ok_or_else(|| run_not_found(run_id))
}

/// The one row of [`HYDRATE`]: every child row of a chunk of runs as parallel arrays, one
/// set per table, each NULL when the table has no rows for those runs.
type ChildColumns = (
    // latest_metrics: run_pk, key, value, is_nan, timestamp, step
    Option<Vec<i64>>,
    Option<Vec<String>>,
    Option<Vec<f64>>,
    Option<Vec<bool>>,
    Option<Vec<i64>>,
    Option<Vec<i64>>,
    // params: run_pk, key, value
    Option<Vec<i64>>,
    Option<Vec<String>>,
    Option<Vec<String>>,
    // tags: run_pk, key, value
    Option<Vec<i64>>,
    Option<Vec<String>>,
    Option<Vec<String>>,
    // the runs that have dataset inputs, model inputs, model outputs
    Option<Vec<i64>>,
    Option<Vec<i64>>,
    Option<Vec<i64>>,
);

/// Every child row a chunk of runs shows, in one statement and one result row: each table
/// aggregated into parallel binary arrays (doubles stay bit-exact; the driver decodes a
/// few arrays, not a row per child, and the server builds a few arrays, not one per run).
/// Aggregates in one query see their rows in the same order, so the arrays line up; that
/// order itself is not guaranteed, so [`hydrate`] sorts each run's lists by key.
const HYDRATE: &str = "SELECT m.pks, m.keys, m.vals, m.nans, m.timestamps, m.steps, \
     pa.pks, pa.keys, pa.vals, t.pks, t.keys, t.vals, \
     (SELECT array_agg(DISTINCT run_pk) FROM run_dataset_inputs WHERE run_pk = ANY($1)), \
     (SELECT array_agg(DISTINCT run_pk) FROM run_model_inputs WHERE run_pk = ANY($1)), \
     (SELECT array_agg(DISTINCT run_pk) FROM run_model_outputs WHERE run_pk = ANY($1)) \
     FROM (SELECT array_agg(run_pk) AS pks, array_agg(key) AS keys, array_agg(value) AS vals, \
       array_agg(is_nan) AS nans, array_agg(timestamp) AS timestamps, array_agg(step) AS steps \
       FROM latest_metrics WHERE run_pk = ANY($1)) m, \
     (SELECT array_agg(run_pk) AS pks, array_agg(key) AS keys, array_agg(value) AS vals \
       FROM params WHERE run_pk = ANY($1)) pa, \
     (SELECT array_agg(run_pk) AS pks, array_agg(key) AS keys, array_agg(value) AS vals \
       FROM tags WHERE run_pk = ANY($1)) t";

/// Runs per [`HYDRATE`] statement. One array value is limited to 1 GB; a chunk keeps even
/// runs with many long params (6000 characters each) and tags far below that, while a
/// page of 100 (the usual size) is still one statement.
const HYDRATE_CHUNK: usize = 100;

/// Fails unless a table's parallel arrays have the same length.
fn check_columns(table: &str, lens: &[usize]) -> CoreResult<()> {
    if lens.windows(2).any(|w| w[0] != w[1]) {
        return Err(CoreError::Internal(format!(
            "{table} arrays of different lengths"
        )));
    }
    Ok(())
}

/// (run_pk, key, value) of params or tags, from their parallel arrays.
fn key_values(
    table: &str,
    pks: Option<Vec<i64>>,
    keys: Option<Vec<String>>,
    values: Option<Vec<String>>,
) -> CoreResult<impl Iterator<Item = (i64, String, String)>> {
    let (pks, keys, values) = (
        pks.unwrap_or_default(),
        keys.unwrap_or_default(),
        values.unwrap_or_default(),
    );
    check_columns(table, &[pks.len(), keys.len(), values.len()])?;
    Ok(pks
        .into_iter()
        .zip(keys)
        .zip(values)
        .map(|((pk, k), v)| (pk, k, v)))
}

/// Loads data, inputs and outputs for a page of runs on one connection: one statement
/// per [`HYDRATE_CHUNK`] runs for metrics, params and tags, then inputs and outputs only
/// for the (few) runs that have any.
async fn hydrate(conn: &mut PgConnection, rows: Vec<RunRow>) -> CoreResult<Vec<Run>> {
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let pks: Vec<i64> = rows.iter().map(|r| r.0).collect();
    let mut data: HashMap<i64, RunData> = HashMap::with_capacity(pks.len());
    let (mut with_datasets, mut with_models, mut with_outputs) =
        (Vec::new(), Vec::new(), Vec::new());
    for chunk in pks.chunks(HYDRATE_CHUNK) {
        let c: ChildColumns = sqlx::query_as(HYDRATE)
            .bind(chunk)
            .fetch_one(&mut *conn)
            .await
            .map_err(db_err)?;
        let (owners, keys, values) = (
            c.0.unwrap_or_default(),
            c.1.unwrap_or_default(),
            c.2.unwrap_or_default(),
        );
        let (nans, timestamps, steps) = (
            c.3.unwrap_or_default(),
            c.4.unwrap_or_default(),
            c.5.unwrap_or_default(),
        );
        let lens = [
            owners.len(),
            keys.len(),
            values.len(),
            nans.len(),
            timestamps.len(),
            steps.len(),
        ];
        check_columns("latest_metrics", &lens)?;
        let metrics = owners
            .into_iter()
            .zip(keys)
            .zip(values.into_iter().zip(nans))
            .zip(timestamps.into_iter().zip(steps));
        for (((pk, key), (v, nan)), (ts, step)) in metrics {
            let metric = Metric::new(key, decode_value(v, nan), ts, step);
            data.entry(pk).or_default().metrics.push(metric);
        }
        for (pk, key, value) in key_values("params", c.6, c.7, c.8)? {
            data.entry(pk)
                .or_default()
                .params
                .push(Param { key, value });
        }
        for (pk, key, value) in key_values("tags", c.9, c.10, c.11)? {
            data.entry(pk).or_default().tags.push(Tag { key, value });
        }
        with_datasets.extend(c.12.unwrap_or_default());
        with_models.extend(c.13.unwrap_or_default());
        with_outputs.extend(c.14.unwrap_or_default());
    }
    // Keys are unique per run and "C"-collated, so byte order is exactly `ORDER BY key`.
    for d in data.values_mut() {
        d.metrics.sort_unstable_by(|a, b| a.key.cmp(&b.key));
        d.params.sort_unstable_by(|a, b| a.key.cmp(&b.key));
        d.tags.sort_unstable_by(|a, b| a.key.cmp(&b.key));
    }
    let mut inputs = load_inputs(conn, &with_datasets, &with_models).await?;
    let mut outputs = load_outputs(conn, &with_outputs).await?;
    rows.into_iter()
        .map(|r| {
            let id = r.0;
            Ok(Run {
                info: to_info(r)?,
                data: data.remove(&id).unwrap_or_default(),
                inputs: inputs.remove(&id).unwrap_or_default(),
                outputs: outputs.remove(&id).unwrap_or_default(),
            })
        })
        .collect()
}

type DatasetRow = (
    i64,
    i64,
    String,
    String,
    String,
    String,
    Option<String>,
    Option<String>,
);

/// Dataset inputs of the runs `dataset_pks` and model inputs of the runs `model_pks`.
async fn load_inputs(
    conn: &mut PgConnection,
    dataset_pks: &[i64],
    model_pks: &[i64],
) -> CoreResult<HashMap<i64, RunInputs>> {
    let mut out: HashMap<i64, RunInputs> = HashMap::new();
    if !dataset_pks.is_empty() {
        let rows: Vec<DatasetRow> = sqlx::query_as(
            "SELECT i.run_pk, d.dataset_id, d.name, d.digest, d.source_type, d.source, d.schema, d.profile \
             FROM run_dataset_inputs i JOIN datasets d ON d.dataset_id = i.dataset_id \
             WHERE i.run_pk = ANY($1) ORDER BY i.run_pk, d.dataset_id",
        )
        .bind(dataset_pks)
        .fetch_all(&mut *conn)
        .await
        .map_err(db_err)?;
        let tag_rows: Vec<(i64, i64, String, String)> = sqlx::query_as(
            "SELECT run_pk, dataset_id, key, value FROM run_dataset_input_tags \
             WHERE run_pk = ANY($1) ORDER BY key",
        )
        .bind(dataset_pks)
        .fetch_all(&mut *conn)
        .await
        .map_err(db_err)?;
        let mut tags: HashMap<(i64, i64), Vec<Tag>> = HashMap::new();
        for (pk, ds, key, value) in tag_rows {
            tags.entry((pk, ds)).or_default().push(Tag { key, value });
        }
        for (pk, ds_id, name, digest, source_type, source, schema, profile) in rows {
            let input = DatasetInput {
                tags: tags.remove(&(pk, ds_id)).unwrap_or_default(),
                dataset: Dataset {
                    name,
                    digest,
                    source_type,
                    source,
                    schema,
                    profile,
                },
            };
            out.entry(pk).or_default().dataset_inputs.push(input);
        }
    }
    if !model_pks.is_empty() {
        let models: Vec<(i64, String)> = sqlx::query_as(
            "SELECT run_pk, model_id FROM run_model_inputs WHERE run_pk = ANY($1) \
             ORDER BY run_pk, model_id",
        )
        .bind(model_pks)
        .fetch_all(&mut *conn)
        .await
        .map_err(db_err)?;
        for (pk, model_id) in models {
            out.entry(pk)
                .or_default()
                .model_inputs
                .push(ModelInput { model_id });
        }
    }
    Ok(out)
}

/// Model outputs of the runs `pks`.
async fn load_outputs(
    conn: &mut PgConnection,
    pks: &[i64],
) -> CoreResult<HashMap<i64, RunOutputs>> {
    let mut outputs: HashMap<i64, RunOutputs> = HashMap::new();
    if pks.is_empty() {
        return Ok(outputs);
    }
    let outs: Vec<(i64, String, i64)> = sqlx::query_as(
        "SELECT run_pk, model_id, step FROM run_model_outputs WHERE run_pk = ANY($1) \
         ORDER BY run_pk, model_id",
    )
    .bind(pks)
    .fetch_all(&mut *conn)
    .await
    .map_err(db_err)?;
    for (pk, model_id, step) in outs {
        outputs
            .entry(pk)
            .or_default()
            .model_outputs
            .push(ModelOutput { model_id, step });
    }
    Ok(outputs)
}

pub(crate) async fn update(pool: &PgPool, u: &RunUpdate) -> CoreResult<RunInfo> {
    let mut tx = pool.begin().await.map_err(db_err)?;
    let run_pk = check_active(&mut tx, &u.run_id).await?;
    let row: RunRow = sqlx::query_as(&format!(
        "UPDATE runs SET status = coalesce($1, status), end_time = coalesce($2, end_time), \
         name = coalesce($3, name) WHERE run_pk = $4 RETURNING {RUN_COLUMNS_BARE}"
    ))
    .bind(u.status.map(|s| s.as_str()))
    .bind(u.end_time)
    .bind(u.run_name.as_deref())
    .bind(run_pk)
    .fetch_one(&mut *tx)
    .await
    .map_err(db_err)?;
    if let Some(name) = &u.run_name {
        sqlx::query(
            "INSERT INTO tags (run_pk, key, value) VALUES ($1, $2, $3) \
             ON CONFLICT (run_pk, key) DO UPDATE SET value = excluded.value",
        )
        .bind(run_pk)
        .bind(RUN_NAME_TAG)
        .bind(name)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
    }
    crate::auth::commit(tx).await?;
    to_info(row)
}

pub(crate) async fn set_lifecycle(
    pool: &PgPool,
    run_id: &str,
    stage: LifecycleStage,
    now: i64,
) -> CoreResult<()> {
    // Deleting a deleted run (or restoring an active one) is a harmless no-op, which also
    // makes client retries safe. One statement: nothing to race with; it takes a
    // transaction only to carry the request's pending audit event.
    let deleted_time = (stage == LifecycleStage::Deleted).then_some(now);
    let update = || {
        sqlx::query(
            "UPDATE runs SET lifecycle_stage = $1, deleted_time = $2, \
             deleted_by_experiment = false WHERE run_id = $3",
        )
        .bind(stage.as_str())
        .bind(deleted_time)
        .bind(run_id)
    };
    if !crate::auth::audit_pending() {
        let done = update().execute(pool).await.map_err(db_err)?;
        if done.rows_affected() == 0 {
            return Err(run_not_found(run_id));
        }
        return Ok(());
    }
    let mut tx = pool.begin().await.map_err(db_err)?;
    let done = update().execute(&mut *tx).await.map_err(db_err)?;
    if done.rows_affected() == 0 {
        return Err(run_not_found(run_id));
    }
    crate::auth::commit(tx).await
}

pub(crate) async fn log_batch(pool: &PgPool, run_id: &str, b: &LogBatch) -> CoreResult<()> {
    let metrics_only = b.params.is_empty()
        && b.tags.is_empty()
        && !b.metrics.is_empty()
        && !b.metrics.iter().any(history::has_context);
    // The one-statement path carries the request's audit event in the same statement.
    if metrics_only && log_metrics_in_one_statement(pool, run_id, &b.metrics).await? {
        return Ok(());
    }
    let mut tx = pool.begin().await.map_err(db_err)?;
    let run_pk = check_active(&mut tx, run_id).await?;
    if !b.params.is_empty() {
        insert_params(&mut tx, Owner::Run { run_pk, run_id }, &b.params).await?;
    }
    if !b.metrics.is_empty() {
        insert_metrics(&mut tx, run_pk, run_id, &b.metrics).await?;
    }
    upsert_tags(&mut tx, run_pk, &b.tags).await?;
    crate::auth::commit(tx).await
}

/// Whose params are being written.
#[derive(Clone, Copy)]
pub(crate) enum Owner<'a> {
    /// A run: keyed by its integer key, reported by its id.
    Run {
        /// Integer key.
        run_pk: i64,
        /// Wire id.
        run_id: &'a str,
    },
    /// A logged model.
    Model(&'a str),
}

impl Owner<'_> {
    fn display(self) -> String {
        match self {
            Self::Run { run_id, .. } => format!("run ID='{run_id}'"),
            Self::Model(id) => format!("logged model ID='{id}'"),
        }
    }
}

/// Inserts params, refusing to change an existing value; same-value re-logs are accepted
/// so retried requests succeed. Insert first, compare after: `ON CONFLICT DO NOTHING`
/// waits for a concurrent writer of the same key (from any replica) to commit, and the
/// comparison statement then sees its value, so two different values can never both be
/// acknowledged.
pub(crate) async fn insert_params(
    tx: &mut Tx,
    owner: Owner<'_>,
    params: &[Param],
) -> CoreResult<()> {
    // First value per key in the request; a conflicting duplicate inside the request is
    // reported like a conflict with a stored value.
    let mut sorted: Vec<&Param> = params.iter().collect();
    sorted.sort_by(|a, b| a.key.cmp(&b.key));
    let keys: Vec<&str> = sorted.iter().map(|p| p.key.as_str()).collect();
    let values: Vec<&str> = sorted.iter().map(|p| p.value.as_str()).collect();
    let (insert, select) = match owner {
        Owner::Run { .. } => (
            "INSERT INTO params (run_pk, key, value) SELECT $1, * FROM UNNEST($2::text[], $3::text[]) \
             ON CONFLICT DO NOTHING",
            "SELECT key, value FROM params WHERE run_pk = $1 AND key = ANY($2)",
        ),
        Owner::Model(_) => (
            "INSERT INTO logged_model_params (model_id, key, value) \
             SELECT $1, * FROM UNNEST($2::text[], $3::text[]) ON CONFLICT DO NOTHING",
            "SELECT key, value FROM logged_model_params WHERE model_id = $1 AND key = ANY($2)",
        ),
    };
    let q = sqlx::query(insert);
    let q = match owner {
        Owner::Run { run_pk, .. } => q.bind(run_pk),
        Owner::Model(id) => q.bind(id),
    };
    q.bind(&keys)
        .bind(&values)
        .execute(&mut **tx)
        .await
        .map_err(db_err)?;
    let q = sqlx::query_as::<_, (String, String)>(select);
    let q = match owner {
        Owner::Run { run_pk, .. } => q.bind(run_pk),
        Owner::Model(id) => q.bind(id),
    };
    let stored: HashMap<String, String> = q
        .bind(&keys)
        .fetch_all(&mut **tx)
        .await
        .map_err(db_err)?
        .into_iter()
        .collect();
    // Returning an error drops the transaction: nothing of this batch is kept.
    check_param_conflicts(params, &stored, &owner.display())
}

/// One column per field, ready to bind as arrays.
#[derive(Default)]
struct MetricColumns {
    keys: Vec<String>,
    timestamps: Vec<i64>,
    steps: Vec<i64>,
    is_nan: Vec<bool>,
    values: Vec<f64>,
    model_ids: Vec<Option<String>>,
    dataset_names: Vec<Option<String>>,
    dataset_digests: Vec<Option<String>>,
}

impl MetricColumns {
    fn from_sorted(metrics: &[&Metric]) -> Self {
        let mut c = Self::default();
        for m in metrics {
            let (value, is_nan) = encode_value(m.value);
            c.keys.push(m.key.clone());
            c.timestamps.push(m.timestamp);
            c.steps.push(m.step);
            c.is_nan.push(is_nan);
            c.values.push(value);
            c.model_ids.push(m.model_id.clone());
            c.dataset_names.push(m.dataset_name.clone());
            c.dataset_digests.push(m.dataset_digest.clone());
        }
        c
    }
}

/// The chunk columns of one key: slices `lo..=hi` (1-based) of the flat arrays bound as
/// $2..$5, with the key list and bounds bound as $6..$8 (see [`KeySlices`]).
const CHUNK_SLICES: &str = "g.key, ($2::int8[])[g.lo:g.hi], ($3::int8[])[g.lo:g.hi], \
                            ($4::bool[])[g.lo:g.hi], ($5::float8[])[g.lo:g.hi]";
const KEY_SLICES_FROM: &str = "UNNEST($6::text[], $7::int4[], $8::int4[]) AS g(key, lo, hi)";

/// Where each key's points sit in columns sorted by key: PostgreSQL cuts one chunk per
/// key out of the flat arrays by subscript, which costs half of grouping them itself.
struct KeySlices {
    keys: Vec<String>,
    lo: Vec<i32>,
    hi: Vec<i32>,
}

impl KeySlices {
    fn of_sorted(keys: &[String]) -> Self {
        let mut out = Self {
            keys: Vec::new(),
            lo: Vec::new(),
            hi: Vec::new(),
        };
        for (i, key) in keys.iter().enumerate() {
            // Batches hold at most 1000 metrics, so positions fit in an int4.
            let pos = i32::try_from(i + 1).unwrap_or(i32::MAX);
            if out.keys.last() == Some(key) {
                if let Some(hi) = out.hi.last_mut() {
                    *hi = pos;
                }
            } else {
                out.keys.push(key.clone());
                out.lo.push(pos);
                out.hi.push(pos);
            }
        }
        out
    }
}

/// A batch of plain metrics (no params, tags, models or datasets: the common case) in a
/// single statement, its own transaction: one round trip instead of five. The run row is
/// key-share locked as in [`check_active`]. Returns false, having written nothing, when
/// the run is missing or not active; the caller's full path then words the error.
async fn log_metrics_in_one_statement(
    pool: &PgPool,
    run_id: &str,
    metrics: &[Metric],
) -> CoreResult<bool> {
    let mut sorted: Vec<&Metric> = metrics.iter().collect();
    sorted.sort_by(history_order);
    let c = MetricColumns::from_sorted(&sorted);
    let slices = KeySlices::of_sorted(&c.keys);
    let latest = latest_per_key(metrics);
    let l = MetricColumns::from_sorted(&latest);
    // The request's audit event, if any, is inserted by the same statement (so with the
    // change, atomically); it goes back to the request if the run was not found.
    let done = cairn_core::context::with_pending_audit(|event| async move {
        let audit_cte = if event.is_some() {
            ", audit AS (INSERT INTO audit_events (time_ms, actor, auth_method, source_ip, action, \
             resource, outcome, request_id) SELECT $14, $15, $16, $17, $18, $19, $20, $21 FROM run)"
        } else {
            ""
        };
        let sql = format!(
            "WITH run AS (SELECT run_pk FROM runs WHERE run_id = $1 AND lifecycle_stage = 'active' \
                          FOR KEY SHARE), \
             chunks AS (INSERT INTO metric_chunks (run_pk, key, timestamps, steps, is_nan, vals) \
                        SELECT run.run_pk, {CHUNK_SLICES} FROM run, {KEY_SLICES_FROM}), \
             latest AS ({LATEST_UPSERT_HEAD} \
                        SELECT run.run_pk, l.* FROM run, UNNEST($9::text[], $10::float8[], \
                        $11::bool[], $12::int8[], $13::int8[]) AS l {LATEST_UPSERT_TAIL}){audit_cte} \
             SELECT run_pk FROM run"
        );
        let mut q = sqlx::query_as(&sql)
            .bind(run_id)
            .bind(&c.timestamps)
            .bind(&c.steps)
            .bind(&c.is_nan)
            .bind(&c.values)
            .bind(&slices.keys)
            .bind(&slices.lo)
            .bind(&slices.hi)
            .bind(&l.keys)
            .bind(&l.values)
            .bind(&l.is_nan)
            .bind(&l.timestamps)
            .bind(&l.steps);
        if let Some(e) = &event {
            q = q
                .bind(e.time_ms)
                .bind(&e.actor)
                .bind(&e.auth_method)
                .bind(&e.source_ip)
                .bind(&e.action)
                .bind(&e.resource)
                .bind(&e.outcome)
                .bind(&e.request_id);
        }
        let row: Option<(i64,)> = q.fetch_optional(pool).await.map_err(db_err)?;
        Ok::<_, cairn_core::CoreError>(row)
    })
    .await?;
    Ok(done.is_some())
}

/// The upsert that advances `latest_metrics`: a row replaces the stored one only when it
/// is newer by (step, timestamp, value).
const LATEST_UPSERT_HEAD: &str =
    "INSERT INTO latest_metrics AS lm (run_pk, key, value, is_nan, timestamp, step)";
const LATEST_UPSERT_TAIL: &str = "ON CONFLICT (run_pk, key) DO UPDATE SET \
     value = excluded.value, is_nan = excluded.is_nan, timestamp = excluded.timestamp, \
     step = excluded.step \
     WHERE (excluded.step, excluded.timestamp, excluded.value) > \
           (lm.step, lm.timestamp, lm.value)";

/// Primary-key order of a history row, for lock ordering.
fn history_order(a: &&Metric, b: &&Metric) -> std::cmp::Ordering {
    let ka = (&a.key, a.timestamp, a.step, encode_value(a.value));
    let kb = (&b.key, b.timestamp, b.step, encode_value(b.value));
    ka.0.cmp(kb.0)
        .then(ka.1.cmp(&kb.1))
        .then(ka.2.cmp(&kb.2))
        .then(ka.3 .1.cmp(&kb.3 .1))
        .then(ka.3 .0.total_cmp(&kb.3 .0))
}

/// Appends history rows (identical rows are ignored, making retries idempotent) and
/// advances `latest_metrics` with one upsert.
async fn insert_metrics(
    tx: &mut Tx,
    run_pk: i64,
    run_id: &str,
    metrics: &[Metric],
) -> CoreResult<()> {
    let mut sorted: Vec<&Metric> = metrics.iter().collect();
    sorted.sort_by(history_order);
    let c = MetricColumns::from_sorted(&sorted);
    let slices = KeySlices::of_sorted(&c.keys);
    sqlx::query(&format!(
        "INSERT INTO metric_chunks (run_pk, key, timestamps, steps, is_nan, vals) \
         SELECT $1, {CHUNK_SLICES} FROM {KEY_SLICES_FROM}"
    ))
    .bind(run_pk)
    .bind(&c.timestamps)
    .bind(&c.steps)
    .bind(&c.is_nan)
    .bind(&c.values)
    .bind(&slices.keys)
    .bind(&slices.lo)
    .bind(&slices.hi)
    .execute(&mut **tx)
    .await
    .map_err(db_err)?;
    // The rare observations with a model or dataset also get a row of their own.
    let with_context: Vec<&Metric> = sorted
        .iter()
        .copied()
        .filter(|m| m.model_id.is_some() || m.dataset_name.is_some() || m.dataset_digest.is_some())
        .collect();
    if !with_context.is_empty() {
        let x = MetricColumns::from_sorted(&with_context);
        sqlx::query(
            "INSERT INTO metric_contexts (run_pk, key, timestamp, step, is_nan, value, model_id, \
             dataset_name, dataset_digest) \
             SELECT $1, * FROM UNNEST($2::text[], $3::int8[], $4::int8[], $5::bool[], \
             $6::float8[], $7::text[], $8::text[], $9::text[]) ON CONFLICT DO NOTHING",
        )
        .bind(run_pk)
        .bind(&x.keys)
        .bind(&x.timestamps)
        .bind(&x.steps)
        .bind(&x.is_nan)
        .bind(&x.values)
        .bind(&x.model_ids)
        .bind(&x.dataset_names)
        .bind(&x.dataset_digests)
        .execute(&mut **tx)
        .await
        .map_err(db_err)?;
    }
    // Metrics that name a logged model are also that model's metrics.
    let model_rows: Vec<&Metric> = sorted
        .iter()
        .copied()
        .filter(|m| m.model_id.is_some())
        .collect();
    if !model_rows.is_empty() {
        let mut ids: Vec<&str> = model_rows
            .iter()
            .filter_map(|m| m.model_id.as_deref())
            .collect();
        ids.sort_unstable();
        ids.dedup();
        let found: Vec<(String,)> =
            sqlx::query_as("SELECT model_id FROM logged_models WHERE model_id = ANY($1)")
                .bind(&ids)
                .fetch_all(&mut **tx)
                .await
                .map_err(db_err)?;
        if let Some(missing) = ids.iter().find(|id| !found.iter().any(|(f,)| f == *id)) {
            return Err(CoreError::not_found(format!(
                "Logged model with ID '{missing}' not found."
            )));
        }
        let m = MetricColumns::from_sorted(&model_rows);
        sqlx::query(
            "INSERT INTO logged_model_metrics (model_id, run_id, key, timestamp, step, is_nan, \
             value, dataset_name, dataset_digest) \
             SELECT model_id, $1, key, ts, step, is_nan, value, dn, dd FROM UNNEST($2::text[], \
             $3::text[], $4::int8[], $5::int8[], $6::bool[], $7::float8[], $8::text[], $9::text[]) \
             AS u(model_id, key, ts, step, is_nan, value, dn, dd) ON CONFLICT DO NOTHING",
        )
        .bind(run_id)
        .bind(&m.model_ids)
        .bind(&m.keys)
        .bind(&m.timestamps)
        .bind(&m.steps)
        .bind(&m.is_nan)
        .bind(&m.values)
        .bind(&m.dataset_names)
        .bind(&m.dataset_digests)
        .execute(&mut **tx)
        .await
        .map_err(db_err)?;
    }
    // The newest observation per key within this batch, sorted by key (lock order).
    let rows = latest_per_key(metrics);
    let l = MetricColumns::from_sorted(&rows);
    sqlx::query(&format!(
        "{LATEST_UPSERT_HEAD} SELECT $1, * FROM UNNEST($2::text[], $3::float8[], $4::bool[], \
         $5::int8[], $6::int8[]) {LATEST_UPSERT_TAIL}"
    ))
    .bind(run_pk)
    .bind(&l.keys)
    .bind(&l.values)
    .bind(&l.is_nan)
    .bind(&l.timestamps)
    .bind(&l.steps)
    .execute(&mut **tx)
    .await
    .map_err(db_err)?;
    Ok(())
}

pub(crate) async fn delete_tag(pool: &PgPool, run_id: &str, key: &str) -> CoreResult<()> {
    let mut tx = pool.begin().await.map_err(db_err)?;
    let run_pk = check_active(&mut tx, run_id).await?;
    let done = sqlx::query("DELETE FROM tags WHERE run_pk = $1 AND key = $2")
        .bind(run_pk)
        .bind(key)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
    if done.rows_affected() == 0 {
        return Err(CoreError::not_found(format!(
            "No tag with name: {key} in run with id {run_id}"
        )));
    }
    crate::auth::commit(tx).await
}

/// Appends the conditions every run search shares: experiments, lifecycle stage, filter.
fn push_run_conditions(qb: &mut QueryBuilder<'static, Postgres>, q: &RunSearch) -> CoreResult<()> {
    // Plain equality for the common one-experiment case lets the planner walk
    // runs_by_experiment in (start_time DESC, run_id) order and stop at LIMIT.
    match q.experiment_ids.as_slice() {
        [one] => {
            qb.push(" r.experiment_id = ");
            qb.push_bind(*one);
        }
        many => {
            qb.push(" r.experiment_id = ANY(");
            qb.push_bind(many.to_vec());
            qb.push(")");
        }
    }
    // ViewType::All needs no stage condition at all.
    if let [one] = q.view.stages() {
        qb.push(" AND r.lifecycle_stage = ");
        qb.push_bind(one.as_str());
    }
    if let Some(f) = &q.filter {
        qb.push(" AND ");
        push_filter(qb, Target::Runs, f)?;
    }
    Ok(())
}

pub(crate) async fn search(pool: &PgPool, q: &RunSearch) -> CoreResult<Page<Run>> {
    if let [OrderBy {
        field: Field::Metric(key),
        ascending,
    }] = q.order_by.as_slice()
    {
        return search_by_one_metric(pool, q, key, *ascending).await;
    }
    let mut qb: QueryBuilder<'static, Postgres> =
        QueryBuilder::new(format!("SELECT {RUN_COLUMNS} FROM runs r"));
    let keys = push_order_joins(&mut qb, Target::Runs, &q.order_by)?;
    qb.push(" WHERE");
    push_run_conditions(&mut qb, q)?;
    push_order_by(&mut qb, &keys, "r.start_time DESC, r.run_id ASC");
    qb.push(" LIMIT ");
    qb.push_bind((q.max_results + 1) as i64);
    qb.push(" OFFSET ");
    qb.push_bind(q.offset as i64);
    // One connection for the page and its hydration.
    let mut conn = pool.acquire().await.map_err(db_err)?;
    let rows: Vec<RunRow> = qb
        .build_query_as()
        .fetch_all(&mut *conn)
        .await
        .map_err(db_err)?;
    let page = page_from_overfetch(rows, q.offset, q.max_results);
    Ok(Page {
        items: hydrate(&mut conn, page.items).await?,
        next_page_token: page.next_page_token,
    })
}

/// The three parts of an ordering by one metric, in MLflow's order: runs with a number
/// (by value), runs whose latest value is NaN, runs without the metric.
#[derive(Clone, Copy)]
enum Segment {
    Valued,
    Nan,
    Missing,
}

/// Builds one segment's query; `select` is the column list (or `count(*)`).
fn segment_query(
    q: &RunSearch,
    key: &str,
    ascending: bool,
    segment: Segment,
    select: &str,
    window: Option<(i64, i64)>,
) -> CoreResult<QueryBuilder<'static, Postgres>> {
    let mut qb = QueryBuilder::new(format!("SELECT {select} FROM "));
    match segment {
        Segment::Valued | Segment::Nan => {
            qb.push("latest_metrics o0 JOIN runs r ON r.run_pk = o0.run_pk WHERE o0.key = ");
            qb.push_bind(key.to_string());
            qb.push(if matches!(segment, Segment::Nan) {
                " AND o0.is_nan AND"
            } else {
                " AND NOT o0.is_nan AND"
            });
        }
        Segment::Missing => {
            qb.push(
                "runs r WHERE NOT EXISTS (SELECT 1 FROM latest_metrics o0 \
                 WHERE o0.run_pk = r.run_pk AND o0.key = ",
            );
            qb.push_bind(key.to_string());
            qb.push(") AND");
        }
    }
    push_run_conditions(&mut qb, q)?;
    if let Some((limit, offset)) = window {
        qb.push(" ORDER BY ");
        if matches!(segment, Segment::Valued) {
            qb.push(if ascending {
                "o0.value ASC, "
            } else {
                "o0.value DESC, "
            });
        }
        qb.push("r.start_time DESC, r.run_id ASC LIMIT ");
        qb.push_bind(limit);
        qb.push(" OFFSET ");
        qb.push_bind(offset);
    }
    Ok(qb)
}

/// `order_by` one metric, the UI's sort-by-column case, as up to three ordered queries
/// instead of one sort over every matching run. The first walks the (key, value) index in
/// order and stops once the page is full, so its cost follows the page, not the number of
/// runs; the others run only when a page reaches past the runs that have a value.
///
/// The parts must agree with each other, so they read one snapshot. When the first part
/// alone fills the page (the usual case), its single statement already is one: no
/// transaction, and the page is hydrated on the same connection. Otherwise every part is
/// read again inside a REPEATABLE READ transaction, hydration included.
async fn search_by_one_metric(
    pool: &PgPool,
    q: &RunSearch,
    key: &str,
    ascending: bool,
) -> CoreResult<Page<Run>> {
    let mut conn = pool.acquire().await.map_err(db_err)?;
    if let Some(limit_offset @ (limit, _)) = PartWindow::new(q.offset, q.max_results).next() {
        let rows: Vec<RunRow> = segment_query(
            q,
            key,
            ascending,
            Segment::Valued,
            RUN_COLUMNS,
            Some(limit_offset),
        )?
        .build_query_as()
        .fetch_all(&mut *conn)
        .await
        .map_err(db_err)?;
        if i64::try_from(rows.len()).is_ok_and(|n| n >= limit) {
            let page = page_from_overfetch(rows, q.offset, q.max_results);
            return Ok(Page {
                items: hydrate(&mut conn, page.items).await?,
                next_page_token: page.next_page_token,
            });
        }
    }
    // BEGIN with its options in one statement: one round trip, not two.
    let mut tx = conn
        .begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        .await
        .map_err(db_err)?;
    let mut window = PartWindow::new(q.offset, q.max_results);
    let mut rows: Vec<RunRow> = Vec::new();
    for segment in [Segment::Valued, Segment::Nan, Segment::Missing] {
        let Some(limit_offset) = window.next() else {
            break;
        };
        let got: Vec<RunRow> =
            segment_query(q, key, ascending, segment, RUN_COLUMNS, Some(limit_offset))?
                .build_query_as()
                .fetch_all(&mut *tx)
                .await
                .map_err(db_err)?;
        if window.took(got.len()) {
            // The page starts beyond this part: skip all of it.
            let (n,): (i64,) = segment_query(q, key, ascending, segment, "count(*)", None)?
                .build_query_as()
                .fetch_one(&mut *tx)
                .await
                .map_err(db_err)?;
            window.skip_part(n.max(0) as u64);
        }
        rows.extend(got);
    }
    let page = page_from_overfetch(rows, q.offset, q.max_results);
    let items = hydrate(&mut tx, page.items).await?;
    tx.commit().await.map_err(db_err)?;
    Ok(Page {
        items,
        next_page_token: page.next_page_token,
    })
}

/// The integer key of a run, or NotFound.
async fn run_pk(pool: &PgPool, run_id: &str) -> CoreResult<i64> {
    let row: Option<(i64,)> = sqlx::query_as("SELECT run_pk FROM runs WHERE run_id = $1")
        .bind(run_id)
        .fetch_optional(pool)
        .await
        .map_err(db_err)?;
    row.map(|r| r.0).ok_or_else(|| run_not_found(run_id))
}

/// Every distinct observation of one metric, in history order: the key's chunks merged,
/// sorted, and identical observations (resent batches) dropped.
async fn load_points(pool: &PgPool, run_pk: i64, key: &str) -> CoreResult<Vec<Point>> {
    type Chunk = (Vec<i64>, Vec<i64>, Vec<bool>, Vec<f64>);
    let chunks: Vec<Chunk> = sqlx::query_as(
        "SELECT timestamps, steps, is_nan, vals FROM metric_chunks \
         WHERE run_pk = $1 AND key = $2",
    )
    .bind(run_pk)
    .bind(key)
    .fetch_all(pool)
    .await
    .map_err(db_err)?;
    let total = chunks.iter().map(|c| c.0.len()).sum();
    let mut points: Vec<Point> = Vec::with_capacity(total);
    for (timestamps, steps, nans, values) in chunks {
        if [steps.len(), nans.len(), values.len()] != [timestamps.len(); 3] {
            return Err(CoreError::Internal(format!(
                "metric chunk of {key:?} has columns of different lengths"
            )));
        }
        points.extend(
            timestamps
                .into_iter()
                .zip(steps)
                .zip(nans.into_iter().zip(values))
                .map(|((ts, step), (nan, v))| (ts, step, nan, v)),
        );
    }
    Ok(history::merge(points))
}

/// Reads one metric's history. Long histories are the hottest read path: they arrive as
/// a few chunk rows of binary arrays (no per-point row decoding) and are merged here. The
/// rare points that carry a model or dataset get those fields attached afterwards.
pub(crate) async fn metric_history(
    pool: &PgPool,
    q: &MetricHistoryQuery,
) -> CoreResult<Page<Metric>> {
    let pk = run_pk(pool, &q.run_id).await?;
    let points = load_points(pool, pk, &q.key).await?;
    // One more than the page, so the page helper can tell whether another follows.
    let take = q.max_results.map(|m| m.saturating_add(1));
    let mut metrics = history::window(points, &q.key, q.offset, take);
    attach_metric_context(pool, pk, &q.key, &mut metrics).await?;
    Ok(match q.max_results {
        Some(m) => page_from_overfetch(metrics, q.offset, m),
        None => Page {
            items: metrics,
            next_page_token: None,
        },
    })
}

/// Fills model and dataset fields for the points that have them (rare: metrics logged
/// against MLflow 3 logged models or with a dataset).
async fn attach_metric_context(
    pool: &PgPool,
    run_pk: i64,
    key: &str,
    metrics: &mut [Metric],
) -> CoreResult<()> {
    if metrics.is_empty() {
        return Ok(());
    }
    type Row = (
        i64,
        i64,
        bool,
        f64,
        Option<String>,
        Option<String>,
        Option<String>,
    );
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT timestamp, step, is_nan, value, model_id, dataset_name, dataset_digest \
         FROM metric_contexts WHERE run_pk = $1 AND key = $2",
    )
    .bind(run_pk)
    .bind(key)
    .fetch_all(pool)
    .await
    .map_err(db_err)?;
    history::attach_contexts(
        metrics,
        rows.into_iter()
            .map(|(ts, step, nan, v, model, name, digest)| {
                ((ts, step, nan, v), (model, name, digest))
            }),
    );
    Ok(())
}

/// Distinct steps of one metric, ascending.
pub(crate) async fn metric_steps(pool: &PgPool, run_id: &str, key: &str) -> CoreResult<Vec<i64>> {
    let pk = run_pk(pool, run_id).await?;
    let chunks: Vec<(Vec<i64>,)> =
        sqlx::query_as("SELECT steps FROM metric_chunks WHERE run_pk = $1 AND key = $2")
            .bind(pk)
            .bind(key)
            .fetch_all(pool)
            .await
            .map_err(db_err)?;
    Ok(history::distinct_steps(
        chunks.into_iter().flat_map(|(steps,)| steps),
    ))
}

/// Values of one metric at the given steps, ordered by step, then timestamp.
pub(crate) async fn metrics_at_steps(
    pool: &PgPool,
    run_id: &str,
    key: &str,
    steps: &[i64],
) -> CoreResult<Vec<Metric>> {
    let Some(pk) = sqlx::query_as::<_, (i64,)>("SELECT run_pk FROM runs WHERE run_id = $1")
        .bind(run_id)
        .fetch_optional(pool)
        .await
        .map_err(db_err)?
        .map(|r| r.0)
    else {
        return Ok(Vec::new());
    };
    let mut metrics = history::at_steps(load_points(pool, pk, key).await?, key, steps);
    attach_metric_context(pool, pk, key, &mut metrics).await?;
    Ok(metrics)
}

pub(crate) async fn log_inputs(
    pool: &PgPool,
    run_id: &str,
    datasets: &[DatasetInput],
    models: &[ModelInput],
) -> CoreResult<()> {
    let mut tx = pool.begin().await.map_err(db_err)?;
    let run_pk = check_active(&mut tx, run_id).await?;
    let (experiment_id,): (i64,) =
        sqlx::query_as("SELECT experiment_id FROM runs WHERE run_pk = $1")
            .bind(run_pk)
            .fetch_one(&mut *tx)
            .await
            .map_err(db_err)?;
    for input in datasets {
        let d = &input.dataset;
        // Datasets are shared per experiment by (name, digest); the first definition wins.
        sqlx::query(
            "INSERT INTO datasets (experiment_id, name, digest, source_type, source, schema, profile) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING",
        )
        .bind(experiment_id)
        .bind(&d.name)
        .bind(&d.digest)
        .bind(&d.source_type)
        .bind(&d.source)
        .bind(&d.schema)
        .bind(&d.profile)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        let (dataset_id,): (i64,) = sqlx::query_as(
            "SELECT dataset_id FROM datasets WHERE experiment_id = $1 AND name = $2 AND digest = $3",
        )
        .bind(experiment_id)
        .bind(&d.name)
        .bind(&d.digest)
        .fetch_one(&mut *tx)
        .await
        .map_err(db_err)?;
        sqlx::query(
            "INSERT INTO run_dataset_inputs (run_pk, dataset_id) VALUES ($1, $2) \
             ON CONFLICT DO NOTHING",
        )
        .bind(run_pk)
        .bind(dataset_id)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        if !input.tags.is_empty() {
            let (keys, values) = tag_columns(&input.tags);
            sqlx::query(
                "INSERT INTO run_dataset_input_tags (run_pk, dataset_id, key, value) \
                 SELECT $1, $2, * FROM UNNEST($3::text[], $4::text[]) \
                 ON CONFLICT (run_pk, dataset_id, key) DO UPDATE SET value = excluded.value",
            )
            .bind(run_pk)
            .bind(dataset_id)
            .bind(keys)
            .bind(values)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        }
    }
    if !models.is_empty() {
        let mut ids: Vec<&str> = models.iter().map(|m| m.model_id.as_str()).collect();
        ids.sort_unstable();
        sqlx::query(
            "INSERT INTO run_model_inputs (run_pk, model_id) SELECT $1, * FROM UNNEST($2::text[]) \
             ON CONFLICT DO NOTHING",
        )
        .bind(run_pk)
        .bind(&ids)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
    }
    crate::auth::commit(tx).await
}

pub(crate) async fn log_outputs(
    pool: &PgPool,
    run_id: &str,
    models: &[ModelOutput],
) -> CoreResult<()> {
    let mut tx = pool.begin().await.map_err(db_err)?;
    let run_pk = check_active(&mut tx, run_id).await?;
    // Last step wins for a repeated model, as with sequential calls.
    let by_model: BTreeMap<&str, i64> = models
        .iter()
        .map(|m| (m.model_id.as_str(), m.step))
        .collect();
    if !by_model.is_empty() {
        let (ids, steps): (Vec<&str>, Vec<i64>) = by_model.into_iter().unzip();
        sqlx::query(
            "INSERT INTO run_model_outputs (run_pk, model_id, step) \
             SELECT $1, * FROM UNNEST($2::text[], $3::int8[]) \
             ON CONFLICT (run_pk, model_id) DO UPDATE SET step = excluded.step",
        )
        .bind(run_pk)
        .bind(&ids)
        .bind(&steps)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
    }
    crate::auth::commit(tx).await
}
