//! Compiles the core search tree ([`Filter`], [`OrderBy`]) to SQLite SQL with bound
//! parameters. Nothing is interpolated into the SQL text except column names chosen
//! from fixed tables below, so filters cannot inject SQL.

use cairn_core::search::{Attribute, CompareOp, DatasetField, Field, Filter, OrderBy, Value};
use cairn_core::{CoreError, CoreResult};
use sqlx::{QueryBuilder, Sqlite};

/// The entity a query searches; decides table aliases and attribute columns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Target {
    /// `runs r`.
    Runs,
    /// `experiments e`.
    Experiments,
    /// `logged_models lm`.
    LoggedModels,
    /// `registered_models rm`.
    RegisteredModels,
    /// `model_versions mv` joined with `registered_models rm`.
    ModelVersions,
}

impl Target {
    fn id_column(self) -> &'static str {
        match self {
            Self::Runs => "r.run_pk",
            Self::Experiments => "e.experiment_id",
            Self::LoggedModels => "lm.model_id",
            Self::RegisteredModels => "rm.model_pk",
            Self::ModelVersions => "mv.mv_pk",
        }
    }

    /// Column for an attribute; parse-time validation guarantees the pairing is legal,
    /// but we still refuse rather than guess if it is not.
    fn attr_column(self, a: Attribute) -> CoreResult<&'static str> {
        let col = match (self, a) {
            (Self::Runs, Attribute::RunId) => "r.run_id",
            (Self::Runs, Attribute::RunName) => "r.name",
            (Self::Runs, Attribute::Status) => "r.status",
            (Self::Runs, Attribute::ArtifactUri) => "r.artifact_uri",
            (Self::Runs, Attribute::UserId) => "r.user_id",
            (Self::Runs, Attribute::StartTime) => "r.start_time",
            (Self::Runs, Attribute::EndTime) => "r.end_time",
            (Self::Runs, Attribute::ExperimentId) => "r.experiment_id",
            (Self::Experiments, Attribute::Name) => "e.name",
            (Self::Experiments, Attribute::ExperimentId) => "e.experiment_id",
            (Self::Experiments, Attribute::CreationTime) => "e.creation_time",
            (Self::Experiments, Attribute::LastUpdateTime) => "e.last_update_time",
            (Self::LoggedModels, Attribute::Name) => "lm.name",
            (Self::LoggedModels, Attribute::ModelId) => "lm.model_id",
            (Self::LoggedModels, Attribute::ModelType) => "lm.model_type",
            (Self::LoggedModels, Attribute::Status) => "lm.status",
            (Self::LoggedModels, Attribute::SourceRunId) => "lm.source_run_id",
            (Self::LoggedModels, Attribute::ExperimentId) => "lm.experiment_id",
            (Self::LoggedModels, Attribute::CreationTime) => "lm.creation_timestamp",
            (Self::LoggedModels, Attribute::LastUpdateTime) => "lm.last_updated_timestamp",
            (Self::RegisteredModels | Self::ModelVersions, Attribute::Name) => "rm.name",
            (Self::RegisteredModels, Attribute::CreationTime) => "rm.creation_timestamp",
            (Self::RegisteredModels, Attribute::LastUpdateTime) => "rm.last_updated_timestamp",
            (Self::ModelVersions, Attribute::VersionNumber) => "mv.version",
            (Self::ModelVersions, Attribute::RunId) => "mv.run_id",
            (Self::ModelVersions, Attribute::SourcePath) => "mv.source",
            (Self::ModelVersions, Attribute::CreationTime) => "mv.creation_timestamp",
            (Self::ModelVersions, Attribute::LastUpdateTime) => "mv.last_updated_timestamp",
            (t, a) => {
                return Err(CoreError::invalid(format!(
                    "Attribute {a:?} cannot be used when searching {t:?}"
                )))
            }
        };
        Ok(col)
    }

    /// Table, key column owner and value column for metrics/params/tags of this entity.
    fn kv_table(self, field: &Field) -> CoreResult<(&'static str, &'static str)> {
        let t = match (self, field) {
            (Self::Runs, Field::Metric(_)) => ("latest_metrics", "run_pk"),
            (Self::Runs, Field::Param(_)) => ("params", "run_pk"),
            (Self::Runs, Field::Tag(_)) => ("tags", "run_pk"),
            (Self::Experiments, Field::Tag(_)) => ("experiment_tags", "experiment_id"),
            (Self::LoggedModels, Field::Param(_)) => ("logged_model_params", "model_id"),
            (Self::LoggedModels, Field::Tag(_)) => ("logged_model_tags", "model_id"),
            (Self::LoggedModels, Field::Metric(_)) => ("logged_model_latest_metrics", "model_id"),
            (Self::RegisteredModels, Field::Tag(_)) => ("registered_model_tags", "model_pk"),
            (Self::ModelVersions, Field::Tag(_)) => ("model_version_tags", "mv_pk"),
            (t, f) => {
                return Err(CoreError::invalid(format!(
                    "{f:?} cannot be used when searching {t:?}"
                )))
            }
        };
        Ok(t)
    }
}

fn sql_op(op: CompareOp) -> &'static str {
    match op {
        CompareOp::Eq => "=",
        CompareOp::Ne => "!=",
        CompareOp::Gt => ">",
        CompareOp::Ge => ">=",
        CompareOp::Lt => "<",
        CompareOp::Le => "<=",
        CompareOp::Like | CompareOp::ILike => "LIKE",
        CompareOp::In => "IN",
        CompareOp::NotIn => "NOT IN",
        CompareOp::IsNull => "IS NULL",
        CompareOp::IsNotNull => "IS NOT NULL",
    }
}

/// Appends `<column> <op> <value>` with the value bound.
fn push_compare(
    qb: &mut QueryBuilder<'static, Sqlite>,
    column: &str,
    op: CompareOp,
    value: &Value,
) -> CoreResult<()> {
    match (op, value) {
        (CompareOp::IsNull | CompareOp::IsNotNull, _) => {
            qb.push(format!("{column} {}", sql_op(op)));
        }
        (CompareOp::ILike, Value::Str(s)) => {
            qb.push(format!("lower({column}) LIKE lower("));
            qb.push_bind(s.clone());
            qb.push(")");
        }
        (CompareOp::In | CompareOp::NotIn, Value::List(items)) => {
            qb.push(format!(
                "{column} {} (SELECT value FROM json_each(",
                sql_op(op)
            ));
            qb.push_bind(json_list(items));
            qb.push("))");
        }
        (_, Value::Str(s)) => {
            qb.push(format!("{column} {} ", sql_op(op)));
            qb.push_bind(s.clone());
        }
        (_, Value::Number(n)) => {
            qb.push(format!("{column} {} ", sql_op(op)));
            qb.push_bind(*n);
        }
        (op, v) => {
            return Err(CoreError::invalid(format!(
                "Operator {op:?} cannot take value {v:?}"
            )))
        }
    }
    Ok(())
}

/// `READY` → `LOGGED_MODEL_READY`; full names and patterns pass through.
fn logged_model_status_name(s: &str) -> String {
    match s.to_ascii_uppercase().as_str() {
        "READY" | "PENDING" | "UPLOAD_FAILED" => format!("LOGGED_MODEL_{}", s.to_ascii_uppercase()),
        "FAILED" => "LOGGED_MODEL_UPLOAD_FAILED".to_string(),
        _ => s.to_string(),
    }
}

/// Appends the SQL for `filter`, parenthesised.
pub(crate) fn push_filter(
    qb: &mut QueryBuilder<'static, Sqlite>,
    target: Target,
    filter: &Filter,
) -> CoreResult<()> {
    match filter {
        Filter::And(parts) | Filter::Or(parts) => {
            let joiner = if matches!(filter, Filter::And(_)) {
                " AND "
            } else {
                " OR "
            };
            qb.push("(");
            for (i, part) in parts.iter().enumerate() {
                if i > 0 {
                    qb.push(joiner);
                }
                push_filter(qb, target, part)?;
            }
            qb.push(")");
        }
        Filter::Cond(c) => {
            qb.push("(");
            match &c.field {
                Field::Attr(Attribute::Status) if target == Target::LoggedModels => {
                    // Users write `status = 'READY'`; the stored value is the proto name.
                    let value = match &c.value {
                        Value::Str(s) => Value::Str(logged_model_status_name(s)),
                        Value::List(items) => {
                            Value::List(items.iter().map(|s| logged_model_status_name(s)).collect())
                        }
                        other => other.clone(),
                    };
                    push_compare(qb, "lm.status", c.op, &value)?;
                }
                Field::Attr(a) => {
                    let col = target.attr_column(*a)?;
                    if *a == Attribute::ExperimentId {
                        // Stored as an integer; compare its text form with the given ids.
                        push_compare(qb, &format!("CAST({col} AS TEXT)"), c.op, &c.value)?;
                    } else {
                        push_compare(qb, col, c.op, &c.value)?;
                    }
                }
                Field::Dataset(d) => push_dataset(qb, *d, c.op, &c.value)?,
                f @ (Field::Metric(key) | Field::Param(key) | Field::Tag(key)) => {
                    let (table, owner) = target.kv_table(f)?;
                    let id = target.id_column();
                    // Missing keys: IS NULL means "no such key", everything else requires it.
                    let negate = c.op == CompareOp::IsNull;
                    if negate {
                        qb.push("NOT ");
                    }
                    qb.push(format!(
                        "EXISTS (SELECT 1 FROM {table} kv WHERE kv.{owner} = {id} AND kv.key = "
                    ));
                    qb.push_bind(key.clone());
                    if !matches!(c.op, CompareOp::IsNull | CompareOp::IsNotNull) {
                        qb.push(" AND ");
                        if matches!(f, Field::Metric(_)) {
                            // NaN is stored as 0 with is_nan = 1: like IEEE NaN it satisfies
                            // only `!=`.
                            if c.op == CompareOp::Ne {
                                qb.push("(kv.is_nan = 1 OR ");
                                push_compare(qb, "kv.value", c.op, &c.value)?;
                                qb.push(")");
                            } else {
                                qb.push("kv.is_nan = 0 AND ");
                                push_compare(qb, "kv.value", c.op, &c.value)?;
                            }
                        } else {
                            push_compare(qb, "kv.value", c.op, &c.value)?;
                        }
                    }
                    qb.push(")");
                }
            }
            qb.push(")");
        }
    }
    Ok(())
}

fn push_dataset(
    qb: &mut QueryBuilder<'static, Sqlite>,
    field: DatasetField,
    op: CompareOp,
    value: &Value,
) -> CoreResult<()> {
    match field {
        DatasetField::Name | DatasetField::Digest => {
            let col = if field == DatasetField::Name {
                "d.name"
            } else {
                "d.digest"
            };
            qb.push(
                "EXISTS (SELECT 1 FROM run_dataset_inputs i JOIN datasets d \
                 ON d.dataset_id = i.dataset_id WHERE i.run_pk = r.run_pk AND ",
            );
            push_compare(qb, col, op, value)?;
        }
        DatasetField::Context => {
            qb.push(
                "EXISTS (SELECT 1 FROM run_dataset_input_tags t WHERE t.run_pk = r.run_pk \
                 AND t.key = 'mlflow.data.context' AND ",
            );
            push_compare(qb, "t.value", op, value)?;
        }
    }
    qb.push(")");
    Ok(())
}

/// A sort key ready to render: either a direct column or a joined key/value table.
pub(crate) struct SortKey {
    expr: String,
    ascending: bool,
    nan_column: Option<String>,
}

/// Adds LEFT JOINs for metric/param/tag sort keys and returns the keys to render later.
pub(crate) fn push_order_joins(
    qb: &mut QueryBuilder<'static, Sqlite>,
    target: Target,
    order_by: &[OrderBy],
) -> CoreResult<Vec<SortKey>> {
    let mut keys = Vec::with_capacity(order_by.len());
    for (i, o) in order_by.iter().enumerate() {
        match &o.field {
            Field::Attr(a) => keys.push(SortKey {
                expr: target.attr_column(*a)?.to_string(),
                ascending: o.ascending,
                nan_column: None,
            }),
            f @ (Field::Metric(key) | Field::Param(key) | Field::Tag(key)) => {
                let (table, owner) = target.kv_table(f)?;
                let alias = format!("o{i}");
                qb.push(format!(
                    " LEFT JOIN {table} {alias} ON {alias}.{owner} = {} AND {alias}.key = ",
                    target.id_column()
                ));
                qb.push_bind(key.clone());
                keys.push(SortKey {
                    expr: format!("{alias}.value"),
                    ascending: o.ascending,
                    nan_column: matches!(f, Field::Metric(_)).then(|| format!("{alias}.is_nan")),
                });
            }
            Field::Dataset(_) => {
                return Err(CoreError::invalid("Datasets cannot be used in order_by"))
            }
        }
    }
    Ok(keys)
}

/// Renders ORDER BY: missing values last in both directions, NaN just before them,
/// then the given tie-breakers.
pub(crate) fn push_order_by(
    qb: &mut QueryBuilder<'static, Sqlite>,
    keys: &[SortKey],
    tie_breakers: &str,
) {
    qb.push(" ORDER BY ");
    for k in keys {
        let dir = if k.ascending { "ASC" } else { "DESC" };
        qb.push(format!("({} IS NULL) ASC, ", k.expr));
        // MLflow puts NaN after every number in both directions.
        if let Some(nan) = &k.nan_column {
            qb.push(format!("{nan} ASC, "));
        }
        qb.push(format!("{} {dir}, ", k.expr));
    }
    qb.push(tie_breakers);
}

/// JSON array text for binding a list (of strings or integers) to `json_each(?)`.
pub(crate) fn json_list<T: serde::Serialize>(items: &[T]) -> String {
    // Serialising a slice of strings or integers cannot fail.
    serde_json::to_string(items).unwrap_or_else(|_| "[]".to_string())
}

/// Runs an aggregate query whose single column is a JSON array of rows (built with
/// `json_group_array(json_array(...))`) and decodes it. Pages of runs need thousands of
/// child rows (params, tags, metrics); one packed value avoids the driver's per-row cost,
/// which dominates at that size. Row order is whatever SQLite produced.
pub(crate) async fn fetch_packed<T: serde::de::DeserializeOwned>(
    pool: &sqlx::SqlitePool,
    sql: &str,
    bind: &str,
) -> CoreResult<Vec<T>> {
    let (packed,): (String,) = sqlx::query_as(sql)
        .bind(bind)
        .fetch_one(pool)
        .await
        .map_err(crate::db_err)?;
    serde_json::from_str(&packed)
        .map_err(|e| CoreError::Internal(format!("unreadable packed rows: {e}")))
}

/// Parses a REAL rendered with `printf('%!.17g', x)` (17 digits round-trip exactly).
pub(crate) fn parse_real(text: &str) -> CoreResult<f64> {
    match text {
        "Inf" => Ok(f64::INFINITY),
        "-Inf" => Ok(f64::NEG_INFINITY),
        t => t
            .parse::<f64>()
            .map_err(|_| CoreError::Internal(format!("unreadable REAL {t:?}"))),
    }
}
