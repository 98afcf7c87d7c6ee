//! Runs, their metrics, params, tags, inputs and outputs.

use std::collections::HashMap;

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
use sqlx::{QueryBuilder, Sqlite, SqlitePool, Transaction};

use crate::experiments::active_experiment_location;
use crate::sql::{
    fetch_packed, json_list, parse_real, push_filter, push_order_by, push_order_joins, Target,
};
use crate::{db_err, parse_col, SqliteStore};

type Tx = Transaction<'static, Sqlite>;

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
/// The same columns unqualified, for `RETURNING` (which takes no table alias).
const RUN_COLUMNS_BARE: &str = "run_pk, run_id, experiment_id, name, user_id, status, \
                                start_time, end_time, artifact_uri, lifecycle_stage";

/// Rows of metrics that go through SQLite: NaN cannot be stored as REAL (it becomes NULL),
/// so it is stored as 0 with a flag.
fn encode_value(v: f64) -> (f64, i64) {
    if v.is_nan() {
        (0.0, 1)
    } else {
        (v, 0)
    }
}

fn decode_value(v: f64, is_nan: i64) -> f64 {
    if is_nan != 0 {
        f64::NAN
    } else {
        v
    }
}

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
/// parameter rather than a missing one. Returns the run's integer key.
async fn check_active(tx: &mut Tx, run_id: &str) -> CoreResult<i64> {
    let row: Option<(i64, String)> =
        sqlx::query_as("SELECT run_pk, lifecycle_stage FROM runs WHERE run_id = ?")
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

pub(crate) async fn create(store: &SqliteStore, new: NewRun) -> CoreResult<Run> {
    let mut tx = store.writer.begin().await.map_err(db_err)?;
    let location = active_experiment_location(&mut tx, new.experiment_id).await?;
    let artifact_uri = run_artifact_uri(&location, &new.run_id);
    let (run_pk,): (i64,) = sqlx::query_as(
        "INSERT INTO runs (run_id, experiment_id, name, user_id, status, start_time, end_time, \
         artifact_uri, lifecycle_stage) VALUES (?, ?, ?, ?, 'RUNNING', ?, NULL, ?, 'active') \
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

async fn upsert_tags(tx: &mut Tx, run_pk: i64, tags: &[Tag]) -> CoreResult<()> {
    if tags.is_empty() {
        return Ok(());
    }
    let mut qb: QueryBuilder<'static, Sqlite> =
        QueryBuilder::new("INSERT INTO tags (run_pk, key, value) ");
    qb.push_values(dedup_tags(tags), |mut b, t| {
        b.push_bind(run_pk).push_bind(t.key).push_bind(t.value);
    });
    qb.push(" ON CONFLICT (run_pk, key) DO UPDATE SET value = excluded.value");
    qb.build().execute(&mut **tx).await.map_err(db_err)?;
    // The run name lives in a column and in the mlflow.runName tag; keep them in step.
    if let Some(name) = tags.iter().rev().find(|t| t.key == RUN_NAME_TAG) {
        sqlx::query("UPDATE runs SET name = ? WHERE run_pk = ?")
            .bind(&name.value)
            .bind(run_pk)
            .execute(&mut **tx)
            .await
            .map_err(db_err)?;
    }
    Ok(())
}

pub(crate) async fn get(pool: &SqlitePool, run_id: &str) -> CoreResult<Run> {
    let row: Option<RunRow> = sqlx::query_as(&format!(
        "SELECT {RUN_COLUMNS} FROM runs r WHERE r.run_id = ?"
    ))
    .bind(run_id)
    .fetch_optional(pool)
    .await
    .map_err(db_err)?;
    let row = row.ok_or_else(|| run_not_found(run_id))?;
    hydrate(pool, vec![row])
        .await?
        .pop()
        .ok_or_else(|| run_not_found(run_id))
}

/// Loads data, inputs and outputs for a page of runs with one query per child table.
async fn hydrate(pool: &SqlitePool, rows: Vec<RunRow>) -> CoreResult<Vec<Run>> {
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let pks: Vec<i64> = rows.iter().map(|r| r.0).collect();
    let list = json_list(&pks);
    const IN_IDS: &str = "run_pk IN (SELECT value FROM json_each(?))";

    let mut data: HashMap<i64, RunData> = HashMap::new();
    let metrics: Vec<(i64, String, String, i64, i64, i64)> = fetch_packed(
        pool,
        &format!(
            "SELECT json_group_array(json_array(run_pk, key, printf('%!.17g', value), is_nan, \
             timestamp, step)) FROM latest_metrics WHERE {IN_IDS}"
        ),
        &list,
    )
    .await?;
    for (run_id, key, value, is_nan, timestamp, step) in metrics {
        let value = decode_value(parse_real(&value)?, is_nan);
        data.entry(run_id)
            .or_default()
            .metrics
            .push(Metric::new(key, value, timestamp, step));
    }
    let params: Vec<(i64, String, String)> = fetch_packed(
        pool,
        &format!(
            "SELECT json_group_array(json_array(run_pk, key, value)) FROM params WHERE {IN_IDS}"
        ),
        &list,
    )
    .await?;
    for (run_id, key, value) in params {
        data.entry(run_id)
            .or_default()
            .params
            .push(Param { key, value });
    }
    let tags: Vec<(i64, String, String)> = fetch_packed(
        pool,
        &format!(
            "SELECT json_group_array(json_array(run_pk, key, value)) FROM tags WHERE {IN_IDS}"
        ),
        &list,
    )
    .await?;
    for (run_id, key, value) in tags {
        data.entry(run_id)
            .or_default()
            .tags
            .push(Tag { key, value });
    }
    // Packed rows come in no guaranteed order; responses list keys alphabetically.
    for d in data.values_mut() {
        d.metrics.sort_by(|a, b| a.key.cmp(&b.key));
        d.params.sort_by(|a, b| a.key.cmp(&b.key));
        d.tags.sort_by(|a, b| a.key.cmp(&b.key));
    }
    let mut inputs = load_inputs(pool, &list).await?;
    let mut outputs: HashMap<i64, RunOutputs> = HashMap::new();
    let outs: Vec<(i64, String, i64)> = sqlx::query_as(&format!(
        "SELECT run_pk, model_id, step FROM run_model_outputs WHERE {IN_IDS} ORDER BY run_pk, model_id"
    ))
    .bind(&list)
    .fetch_all(pool)
    .await
    .map_err(db_err)?;
    for (run_id, model_id, step) in outs {
        outputs
            .entry(run_id)
            .or_default()
            .model_outputs
            .push(ModelOutput { model_id, step });
    }
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

async fn load_inputs(pool: &SqlitePool, list: &str) -> CoreResult<HashMap<i64, RunInputs>> {
    let mut out: HashMap<i64, RunInputs> = HashMap::new();
    let rows: Vec<DatasetRow> = sqlx::query_as(
        "SELECT i.run_pk, d.dataset_id, d.name, d.digest, d.source_type, d.source, d.schema, d.profile \
         FROM run_dataset_inputs i JOIN datasets d ON d.dataset_id = i.dataset_id \
         WHERE i.run_pk IN (SELECT value FROM json_each(?)) ORDER BY i.run_pk, d.dataset_id",
    )
    .bind(list)
    .fetch_all(pool)
    .await
    .map_err(db_err)?;
    if !rows.is_empty() {
        let tag_rows: Vec<(i64, i64, String, String)> = sqlx::query_as(
            "SELECT run_pk, dataset_id, key, value FROM run_dataset_input_tags \
             WHERE run_pk IN (SELECT value FROM json_each(?)) ORDER BY key",
        )
        .bind(list)
        .fetch_all(pool)
        .await
        .map_err(db_err)?;
        let mut tags: HashMap<(i64, i64), Vec<Tag>> = HashMap::new();
        for (run_id, ds, key, value) in tag_rows {
            tags.entry((run_id, ds))
                .or_default()
                .push(Tag { key, value });
        }
        for (run_id, ds_id, name, digest, source_type, source, schema, profile) in rows {
            let input = DatasetInput {
                tags: tags.remove(&(run_id, ds_id)).unwrap_or_default(),
                dataset: Dataset {
                    name,
                    digest,
                    source_type,
                    source,
                    schema,
                    profile,
                },
            };
            out.entry(run_id).or_default().dataset_inputs.push(input);
        }
    }
    let models: Vec<(i64, String)> = sqlx::query_as(
        "SELECT run_pk, model_id FROM run_model_inputs \
         WHERE run_pk IN (SELECT value FROM json_each(?)) ORDER BY run_pk, model_id",
    )
    .bind(list)
    .fetch_all(pool)
    .await
    .map_err(db_err)?;
    for (run_id, model_id) in models {
        out.entry(run_id)
            .or_default()
            .model_inputs
            .push(ModelInput { model_id });
    }
    Ok(out)
}

pub(crate) async fn update(store: &SqliteStore, u: &RunUpdate) -> CoreResult<RunInfo> {
    let mut tx = store.writer.begin().await.map_err(db_err)?;
    let run_pk = check_active(&mut tx, &u.run_id).await?;
    let row: RunRow = sqlx::query_as(&format!(
        "UPDATE runs SET status = coalesce(?, status), end_time = coalesce(?, end_time), \
         name = coalesce(?, name) WHERE run_pk = ? RETURNING {RUN_COLUMNS_BARE}"
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
            "INSERT INTO tags (run_pk, key, value) VALUES (?, ?, ?) \
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
    store: &SqliteStore,
    run_id: &str,
    stage: LifecycleStage,
    now: i64,
) -> CoreResult<()> {
    let mut tx = store.writer.begin().await.map_err(db_err)?;
    let row: Option<(String,)> =
        sqlx::query_as("SELECT lifecycle_stage FROM runs WHERE run_id = ?")
            .bind(run_id)
            .fetch_optional(&mut *tx)
            .await
            .map_err(db_err)?;
    row.ok_or_else(|| run_not_found(run_id))?;
    // Deleting a deleted run (or restoring an active one) is a harmless no-op, which also
    // makes client retries safe.
    let deleted_time = (stage == LifecycleStage::Deleted).then_some(now);
    sqlx::query(
        "UPDATE runs SET lifecycle_stage = ?, deleted_time = ?, deleted_by_experiment = 0 \
         WHERE run_id = ?",
    )
    .bind(stage.as_str())
    .bind(deleted_time)
    .bind(run_id)
    .execute(&mut *tx)
    .await
    .map_err(db_err)?;
    crate::auth::commit(tx).await
}

pub(crate) async fn log_batch(store: &SqliteStore, run_id: &str, b: &LogBatch) -> CoreResult<()> {
    let mut tx = store.writer.begin().await.map_err(db_err)?;
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
    fn table(self) -> &'static str {
        match self {
            Self::Run { .. } => "params",
            Self::Model(_) => "logged_model_params",
        }
    }
    fn column(self) -> &'static str {
        match self {
            Self::Run { .. } => "run_pk",
            Self::Model(_) => "model_id",
        }
    }
    fn display(self) -> String {
        match self {
            Self::Run { run_id, .. } => format!("run ID='{run_id}'"),
            Self::Model(id) => format!("logged model ID='{id}'"),
        }
    }
}

/// Inserts params, refusing to change an existing value. Same-value re-logs are accepted
/// so retried requests succeed.
pub(crate) async fn insert_params(
    tx: &mut Tx,
    owner: Owner<'_>,
    params: &[Param],
) -> CoreResult<()> {
    let (table, column) = (owner.table(), owner.column());
    let keys: Vec<&str> = params.iter().map(|p| p.key.as_str()).collect();
    let sql = format!(
        "SELECT key, value FROM {table} WHERE {column} = ? AND key IN (SELECT value FROM json_each(?))"
    );
    let query = sqlx::query_as::<_, (String, String)>(&sql);
    let query = match owner {
        Owner::Run { run_pk, .. } => query.bind(run_pk),
        Owner::Model(id) => query.bind(id.to_string()),
    };
    let existing: Vec<(String, String)> = query
        .bind(json_list(&keys))
        .fetch_all(&mut **tx)
        .await
        .map_err(db_err)?;
    let existing: HashMap<String, String> = existing.into_iter().collect();
    check_param_conflicts(params, &existing, &owner.display())?;
    let mut qb: QueryBuilder<'static, Sqlite> = QueryBuilder::new(format!(
        "INSERT OR IGNORE INTO {table} ({column}, key, value) "
    ));
    qb.push_values(params.to_vec(), |mut b, p| {
        match owner {
            Owner::Run { run_pk, .. } => b.push_bind(run_pk),
            Owner::Model(id) => b.push_bind(id.to_string()),
        };
        b.push_bind(p.key).push_bind(p.value);
    });
    qb.build().execute(&mut **tx).await.map_err(db_err)?;
    Ok(())
}

/// Appends one history chunk per key (a resent batch adds repeats that readers drop, so
/// retries stay idempotent), the rare observations with a model or dataset, and advances
/// `latest_metrics` with one upsert per distinct key.
async fn insert_metrics(
    tx: &mut Tx,
    run_pk: i64,
    run_id: &str,
    metrics: &[Metric],
) -> CoreResult<()> {
    let chunks: Vec<(String, String)> = history::chunks_by_key(metrics)
        .into_iter()
        .map(|(key, points)| (key.to_string(), pack_points(&points)))
        .collect();
    // 3 bound values per row keeps each statement well under SQLite's variable limit.
    for group in chunks.chunks(1000) {
        let mut qb: QueryBuilder<'static, Sqlite> =
            QueryBuilder::new("INSERT INTO metric_chunks (run_pk, key, points) ");
        qb.push_values(group.to_vec(), |mut b, (key, points)| {
            b.push_bind(run_pk).push_bind(key).push_bind(points);
        });
        qb.build().execute(&mut **tx).await.map_err(db_err)?;
    }
    let with_context: Vec<Metric> = metrics
        .iter()
        .filter(|m| history::has_context(m))
        .cloned()
        .collect();
    for group in with_context.chunks(500) {
        let mut qb: QueryBuilder<'static, Sqlite> = QueryBuilder::new(
            "INSERT OR IGNORE INTO metric_contexts (run_pk, key, timestamp, step, is_nan, value, \
             model_id, dataset_name, dataset_digest) ",
        );
        qb.push_values(group.to_vec(), |mut b, m| {
            let (value, is_nan) = encode_value(m.value);
            b.push_bind(run_pk)
                .push_bind(m.key)
                .push_bind(m.timestamp)
                .push_bind(m.step)
                .push_bind(is_nan)
                .push_bind(value)
                .push_bind(m.model_id)
                .push_bind(m.dataset_name)
                .push_bind(m.dataset_digest);
        });
        qb.build().execute(&mut **tx).await.map_err(db_err)?;
    }
    // Metrics that name a logged model are also that model's metrics. A model that does
    // not exist would violate the foreign key and fail the whole batch, as it should.
    let model_rows: Vec<Metric> = metrics
        .iter()
        .filter(|m| m.model_id.is_some())
        .cloned()
        .collect();
    if !model_rows.is_empty() {
        let mut ids: Vec<&str> = model_rows
            .iter()
            .filter_map(|m| m.model_id.as_deref())
            .collect();
        ids.sort_unstable();
        ids.dedup();
        let found: Vec<(String,)> = sqlx::query_as(
            "SELECT model_id FROM logged_models WHERE model_id IN (SELECT value FROM json_each(?))",
        )
        .bind(json_list(&ids))
        .fetch_all(&mut **tx)
        .await
        .map_err(db_err)?;
        if let Some(missing) = ids.iter().find(|id| !found.iter().any(|(f,)| f == *id)) {
            return Err(CoreError::not_found(format!(
                "Logged model with ID '{missing}' not found."
            )));
        }
    }
    for chunk in model_rows.chunks(500) {
        let mut qb: QueryBuilder<'static, Sqlite> = QueryBuilder::new(
            "INSERT OR IGNORE INTO logged_model_metrics (model_id, run_id, key, timestamp, step, \
             is_nan, value, dataset_name, dataset_digest) ",
        );
        qb.push_values(chunk.to_vec(), |mut b, m| {
            let (value, is_nan) = encode_value(m.value);
            b.push_bind(m.model_id)
                .push_bind(run_id.to_string())
                .push_bind(m.key)
                .push_bind(m.timestamp)
                .push_bind(m.step)
                .push_bind(is_nan)
                .push_bind(value)
                .push_bind(m.dataset_name)
                .push_bind(m.dataset_digest);
        });
        qb.build().execute(&mut **tx).await.map_err(db_err)?;
    }
    // The newest observation per key within this batch.
    let rows: Vec<Metric> = latest_per_key(metrics).into_iter().cloned().collect();
    let mut qb: QueryBuilder<'static, Sqlite> = QueryBuilder::new(
        "INSERT INTO latest_metrics (run_pk, key, value, is_nan, timestamp, step) ",
    );
    qb.push_values(rows, |mut b, m| {
        let (value, is_nan) = encode_value(m.value);
        b.push_bind(run_pk)
            .push_bind(m.key)
            .push_bind(value)
            .push_bind(is_nan)
            .push_bind(m.timestamp)
            .push_bind(m.step);
    });
    qb.push(
        " ON CONFLICT (run_pk, key) DO UPDATE SET value = excluded.value, is_nan = excluded.is_nan, \
         timestamp = excluded.timestamp, step = excluded.step \
         WHERE (excluded.step, excluded.timestamp, excluded.value) > \
               (latest_metrics.step, latest_metrics.timestamp, latest_metrics.value)",
    );
    qb.build().execute(&mut **tx).await.map_err(db_err)?;
    Ok(())
}

pub(crate) async fn delete_tag(store: &SqliteStore, run_id: &str, key: &str) -> CoreResult<()> {
    let mut tx = store.writer.begin().await.map_err(db_err)?;
    let run_pk = check_active(&mut tx, run_id).await?;
    let done = sqlx::query("DELETE FROM tags WHERE run_pk = ? AND key = ?")
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
fn push_run_conditions(qb: &mut QueryBuilder<'static, Sqlite>, q: &RunSearch) -> CoreResult<()> {
    // Plain equality for the common one-experiment, one-stage case lets SQLite walk
    // runs_by_experiment in (start_time DESC, run_id) order and stop at LIMIT.
    match q.experiment_ids.as_slice() {
        [one] => {
            qb.push(" r.experiment_id = ");
            qb.push_bind(*one);
        }
        many => {
            qb.push(" r.experiment_id IN (SELECT value FROM json_each(");
            qb.push_bind(json_list(many));
            qb.push("))");
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

pub(crate) async fn search(pool: &SqlitePool, q: &RunSearch) -> CoreResult<Page<Run>> {
    if let [OrderBy {
        field: Field::Metric(key),
        ascending,
    }] = q.order_by.as_slice()
    {
        return search_by_one_metric(pool, q, key, *ascending).await;
    }
    let mut qb: QueryBuilder<'static, Sqlite> =
        QueryBuilder::new(format!("SELECT {RUN_COLUMNS} FROM runs r"));
    let keys = push_order_joins(&mut qb, Target::Runs, &q.order_by)?;
    qb.push(" WHERE");
    push_run_conditions(&mut qb, q)?;
    push_order_by(&mut qb, &keys, "r.start_time DESC, r.run_id ASC");
    qb.push(" LIMIT ");
    qb.push_bind((q.max_results + 1) as i64);
    qb.push(" OFFSET ");
    qb.push_bind(q.offset as i64);
    let rows: Vec<RunRow> = qb.build_query_as().fetch_all(pool).await.map_err(db_err)?;
    let page = page_from_overfetch(rows, q.offset, q.max_results);
    Ok(Page {
        items: hydrate(pool, page.items).await?,
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
) -> CoreResult<QueryBuilder<'static, Sqlite>> {
    let mut qb = QueryBuilder::new(format!("SELECT {select} FROM "));
    match segment {
        Segment::Valued | Segment::Nan => {
            // CROSS JOIN fixes SQLite's join order: walk the metric index in value order
            // and stop at LIMIT, rather than scan the experiment's runs and sort them all
            // (measured on 20k runs: 10.5 ms -> 0.22 ms).
            qb.push("latest_metrics o0 CROSS JOIN runs r ON r.run_pk = o0.run_pk WHERE o0.key = ");
            qb.push_bind(key.to_string());
            qb.push(if matches!(segment, Segment::Nan) {
                " AND o0.is_nan = 1 AND"
            } else {
                " AND o0.is_nan = 0 AND"
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
/// runs; the others run only when a page reaches past the runs that have a value. All
/// read one snapshot (a read transaction), so the parts agree with each other.
async fn search_by_one_metric(
    pool: &SqlitePool,
    q: &RunSearch,
    key: &str,
    ascending: bool,
) -> CoreResult<Page<Run>> {
    let mut tx = pool.begin().await.map_err(db_err)?;
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
    tx.commit().await.map_err(db_err)?;
    let page = page_from_overfetch(rows, q.offset, q.max_results);
    Ok(Page {
        items: hydrate(pool, page.items).await?,
        next_page_token: page.next_page_token,
    })
}

/// The integer key of a run, or NotFound.
async fn run_pk(pool: &SqlitePool, run_id: &str) -> CoreResult<i64> {
    let row: Option<(i64,)> = sqlx::query_as("SELECT run_pk FROM runs WHERE run_id = ?")
        .bind(run_id)
        .fetch_optional(pool)
        .await
        .map_err(db_err)?;
    row.map(|r| r.0).ok_or_else(|| run_not_found(run_id))
}

/// One chunk's points as stored: `timestamp,step,is_nan,value;...`, each value in the
/// shortest form that parses back to the same double.
fn pack_points(points: &[Point]) -> String {
    use std::fmt::Write;
    let mut out = String::with_capacity(points.len() * 32);
    for (i, (ts, step, nan, v)) in points.iter().enumerate() {
        if i > 0 {
            out.push(';');
        }
        // Writing to a String cannot fail.
        let _ = write!(out, "{ts},{step},{},{v:e}", u8::from(*nan));
    }
    out
}

/// Appends the points of one packed chunk (see [`pack_points`]; chunks migrated from the
/// row layout were written by SQLite's `printf('%!.17g')`, which spells infinity `Inf`).
fn unpack_points(key: &str, packed: &str, out: &mut Vec<Point>) -> CoreResult<()> {
    let corrupt = || CoreError::Internal(format!("unreadable metric history chunk for {key:?}"));
    if packed.is_empty() {
        return Ok(());
    }
    for row in packed.split(';') {
        let mut f = row.splitn(4, ',');
        let mut next = || f.next().ok_or_else(corrupt);
        let timestamp = next()?.parse::<i64>().map_err(|_| corrupt())?;
        let step = next()?.parse::<i64>().map_err(|_| corrupt())?;
        let is_nan = next()? == "1";
        let value = match next()? {
            "Inf" | "inf" => f64::INFINITY,
            "-Inf" | "-inf" => f64::NEG_INFINITY,
            v => v.parse::<f64>().map_err(|_| corrupt())?,
        };
        out.push((timestamp, step, is_nan, value));
    }
    Ok(())
}

/// Every distinct observation of one metric, in history order.
async fn load_points(pool: &SqlitePool, run_pk: i64, key: &str) -> CoreResult<Vec<Point>> {
    let chunks: Vec<(String,)> =
        sqlx::query_as("SELECT points FROM metric_chunks WHERE run_pk = ? AND key = ?")
            .bind(run_pk)
            .bind(key)
            .fetch_all(pool)
            .await
            .map_err(db_err)?;
    let mut points = Vec::new();
    for (packed,) in &chunks {
        unpack_points(key, packed, &mut points)?;
    }
    Ok(history::merge(points))
}

/// Reads one metric's history: the key's chunks, merged, then the requested window.
/// Long histories are the hottest read path; a chunk is one text value however many
/// points it holds, so the driver decodes a handful of rows, not one per point.
pub(crate) async fn metric_history(
    pool: &SqlitePool,
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

/// Fills model and dataset fields for the rows that have them (rare: metrics logged
/// against MLflow 3 logged models or with a dataset).
async fn attach_metric_context(
    pool: &SqlitePool,
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
        i64,
        f64,
        Option<String>,
        Option<String>,
        Option<String>,
    );
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT timestamp, step, is_nan, value, model_id, dataset_name, dataset_digest \
         FROM metric_contexts WHERE run_pk = ? AND key = ?",
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
                ((ts, step, nan != 0, v), (model, name, digest))
            }),
    );
    Ok(())
}

/// Distinct steps of one metric, ascending.
pub(crate) async fn metric_steps(
    pool: &SqlitePool,
    run_id: &str,
    key: &str,
) -> CoreResult<Vec<i64>> {
    let pk = run_pk(pool, run_id).await?;
    let points = load_points(pool, pk, key).await?;
    Ok(history::distinct_steps(points.iter().map(|p| p.1)))
}

/// Values of one metric at the given steps, ordered by step, then timestamp.
pub(crate) async fn metrics_at_steps(
    pool: &SqlitePool,
    run_id: &str,
    key: &str,
    steps: &[i64],
) -> CoreResult<Vec<Metric>> {
    let Some((pk,)) = sqlx::query_as::<_, (i64,)>("SELECT run_pk FROM runs WHERE run_id = ?")
        .bind(run_id)
        .fetch_optional(pool)
        .await
        .map_err(db_err)?
    else {
        return Ok(Vec::new());
    };
    let mut metrics = history::at_steps(load_points(pool, pk, key).await?, key, steps);
    attach_metric_context(pool, pk, key, &mut metrics).await?;
    Ok(metrics)
}

pub(crate) async fn log_inputs(
    store: &SqliteStore,
    run_id: &str,
    datasets: &[DatasetInput],
    models: &[ModelInput],
) -> CoreResult<()> {
    let mut tx = store.writer.begin().await.map_err(db_err)?;
    let run_pk = check_active(&mut tx, run_id).await?;
    let (experiment_id,): (i64,) =
        sqlx::query_as("SELECT experiment_id FROM runs WHERE run_pk = ?")
            .bind(run_pk)
            .fetch_one(&mut *tx)
            .await
            .map_err(db_err)?;
    for input in datasets {
        let d = &input.dataset;
        // Datasets are shared per experiment by (name, digest); the first definition wins.
        sqlx::query(
            "INSERT OR IGNORE INTO datasets (experiment_id, name, digest, source_type, source, schema, profile) \
             VALUES (?, ?, ?, ?, ?, ?, ?)",
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
            "SELECT dataset_id FROM datasets WHERE experiment_id = ? AND name = ? AND digest = ?",
        )
        .bind(experiment_id)
        .bind(&d.name)
        .bind(&d.digest)
        .fetch_one(&mut *tx)
        .await
        .map_err(db_err)?;
        sqlx::query("INSERT OR IGNORE INTO run_dataset_inputs (run_pk, dataset_id) VALUES (?, ?)")
            .bind(run_pk)
            .bind(dataset_id)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        for t in &input.tags {
            sqlx::query(
                "INSERT INTO run_dataset_input_tags (run_pk, dataset_id, key, value) VALUES (?, ?, ?, ?) \
                 ON CONFLICT (run_pk, dataset_id, key) DO UPDATE SET value = excluded.value",
            )
            .bind(run_pk)
            .bind(dataset_id)
            .bind(&t.key)
            .bind(&t.value)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        }
    }
    for m in models {
        sqlx::query("INSERT OR IGNORE INTO run_model_inputs (run_pk, model_id) VALUES (?, ?)")
            .bind(run_pk)
            .bind(&m.model_id)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
    }
    crate::auth::commit(tx).await
}

pub(crate) async fn log_outputs(
    store: &SqliteStore,
    run_id: &str,
    models: &[ModelOutput],
) -> CoreResult<()> {
    let mut tx = store.writer.begin().await.map_err(db_err)?;
    let run_pk = check_active(&mut tx, run_id).await?;
    for m in models {
        sqlx::query(
            "INSERT INTO run_model_outputs (run_pk, model_id, step) VALUES (?, ?, ?) \
             ON CONFLICT (run_pk, model_id) DO UPDATE SET step = excluded.step",
        )
        .bind(run_pk)
        .bind(&m.model_id)
        .bind(m.step)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
    }
    crate::auth::commit(tx).await
}
