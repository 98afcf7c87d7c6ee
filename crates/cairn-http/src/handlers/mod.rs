//! Thin handlers: decode the wire request, call one service method, render the view.

pub(crate) mod artifacts;
pub(crate) mod experiments;
pub(crate) mod logged_models;
pub(crate) mod meta;
pub(crate) mod registry;
pub(crate) mod runs;
pub(crate) mod users;

use cairn_api::requests::{KeyValue, MetricIn};
use cairn_core::model::{Metric, Param, Tag, ViewType};
use serde_json::Value;

use crate::error::{required_str, ApiError, ApiResult};

/// Converts wire tags, requiring keys.
pub(crate) fn tags(items: Vec<KeyValue>, field: &str) -> ApiResult<Vec<Tag>> {
    items
        .into_iter()
        .enumerate()
        .map(|(i, kv)| {
            Ok(Tag {
                key: required_str(kv.key, &format!("{field}[{i}].key"))?,
                value: kv.value.unwrap_or_default(),
            })
        })
        .collect()
}

/// Converts wire params, requiring keys.
pub(crate) fn params(items: Vec<KeyValue>, field: &str) -> ApiResult<Vec<Param>> {
    items
        .into_iter()
        .enumerate()
        .map(|(i, kv)| {
            Ok(Param {
                key: required_str(kv.key, &format!("{field}[{i}].key"))?,
                value: kv.value.unwrap_or_default(),
            })
        })
        .collect()
}

/// Converts a wire metric; key, value and timestamp are required, step defaults to 0.
pub(crate) fn metric(m: MetricIn, path: &str) -> ApiResult<Metric> {
    let at = |f: &str| {
        if path.is_empty() {
            f.to_string()
        } else {
            format!("{path}.{f}")
        }
    };
    Ok(Metric {
        key: required_str(m.key, &at("key"))?,
        value: m.value.ok_or_else(|| ApiError::missing(&at("value")))?,
        timestamp: m
            .timestamp
            .ok_or_else(|| ApiError::missing(&at("timestamp")))?,
        step: m.step.unwrap_or(0),
        model_id: m.model_id.filter(|s| !s.is_empty()),
        dataset_name: m.dataset_name.filter(|s| !s.is_empty()),
        dataset_digest: m.dataset_digest.filter(|s| !s.is_empty()),
        run_id: None,
    })
}

/// Parses a ViewType given by name or by proto number.
pub(crate) fn view_type(v: Option<Value>, field: &str) -> ApiResult<ViewType> {
    let bad = |v: &Value| {
        ApiError::invalid(format!(
            "Invalid value {v} for parameter '{field}' supplied: expected ACTIVE_ONLY, \
             DELETED_ONLY or ALL"
        ))
    };
    match v {
        None | Some(Value::Null) => Ok(ViewType::ActiveOnly),
        Some(Value::String(s)) => match s.as_str() {
            "ACTIVE_ONLY" | "1" | "" => Ok(ViewType::ActiveOnly),
            "DELETED_ONLY" | "2" => Ok(ViewType::DeletedOnly),
            "ALL" | "3" => Ok(ViewType::All),
            _ => Err(bad(&Value::String(s))),
        },
        Some(Value::Number(n)) => match n.as_i64() {
            Some(1) => Ok(ViewType::ActiveOnly),
            Some(2) => Ok(ViewType::DeletedOnly),
            Some(3) => Ok(ViewType::All),
            _ => Err(bad(&Value::Number(n))),
        },
        Some(other) => Err(bad(&other)),
    }
}
