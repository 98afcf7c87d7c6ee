//! MLflow's input rules (`mlflow/utils/validation.py`), as checks that return
//! [`CoreError::InvalidParameter`] with MLflow's wording so clients see familiar messages.

use crate::error::{CoreError, CoreResult};
use crate::model::{Metric, Param, Tag};

/// Most metrics in one `log-batch`.
pub const MAX_METRICS_PER_BATCH: usize = 1000;
/// Most params, and separately most tags, in one `log-batch`.
pub const MAX_PARAMS_TAGS_PER_BATCH: usize = 100;
/// Most entities of all kinds in one `log-batch`.
pub const MAX_ENTITIES_PER_BATCH: usize = 1000;
/// Largest `log-batch` request body in bytes.
pub const MAX_BATCH_LOG_REQUEST_SIZE: usize = 1_000_000;
/// Longest param value.
pub const MAX_PARAM_VAL_LENGTH: usize = 6000;
/// Longest run tag value.
pub const MAX_TAG_VAL_LENGTH: usize = 8000;
/// Longest metric/param/tag key.
pub const MAX_ENTITY_KEY_LENGTH: usize = 250;
/// Longest experiment name.
pub const MAX_EXPERIMENT_NAME_LENGTH: usize = 500;
/// Longest experiment tag key.
pub const MAX_EXPERIMENT_TAG_KEY_LENGTH: usize = 250;
/// Longest experiment tag value.
pub const MAX_EXPERIMENT_TAG_VAL_LENGTH: usize = 20_000;
/// Most results of one `runs/search` page.
pub const MAX_RUNS_SEARCH_RESULTS: u64 = 50_000;
/// Most results of one `experiments/search` page.
pub const MAX_EXPERIMENTS_SEARCH_RESULTS: u64 = 50_000;
/// Most points of one metric-history page.
pub const MAX_METRIC_HISTORY_RESULTS: u64 = 25_000;
/// Longest dataset name.
pub const MAX_DATASET_NAME_SIZE: usize = 500;
/// Longest dataset digest.
pub const MAX_DATASET_DIGEST_SIZE: usize = 36;
/// Longest dataset source.
pub const MAX_DATASET_SOURCE_SIZE: usize = 65_535;
/// Longest dataset schema.
pub const MAX_DATASET_SCHEMA_SIZE: usize = 1_048_575;
/// Longest dataset profile.
pub const MAX_DATASET_PROFILE_SIZE: usize = 16_777_215;
/// Longest input tag key.
pub const MAX_INPUT_TAG_KEY_SIZE: usize = 255;
/// Longest input tag value.
pub const MAX_INPUT_TAG_VALUE_SIZE: usize = 500;

/// JSON-quotes a value the way MLflow's messages show it.
fn quoted(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// MLflow's "Invalid value ... for parameter ..." message.
pub fn invalid_value(path: &str, value: &str, detail: Option<&str>) -> CoreError {
    let v = quoted(value);
    match detail {
        Some(d) => CoreError::invalid(format!(
            "Invalid value {v} for parameter '{path}' supplied: {d}"
        )),
        None => CoreError::invalid(format!(
            "Invalid value {v} for parameter '{path}' supplied."
        )),
    }
}

/// MLflow's "Missing value for required parameter" message.
pub fn missing_value(path: &str) -> CoreError {
    CoreError::invalid(format!("Missing value for required parameter '{path}'."))
}

fn exceeds_maximum_length(what: &str, limit: usize) -> CoreError {
    CoreError::invalid(format!(
        "'{what}' exceeds the maximum length of {limit} characters"
    ))
}

/// Checks a length limit counted in characters, as Python's `len` does.
pub fn check_length(what: &str, limit: usize, value: &str) -> CoreResult<()> {
    // Byte length bounds char length from above, so the cheap check settles most cases.
    if value.len() <= limit || value.chars().count() <= limit {
        Ok(())
    } else {
        Err(exceeds_maximum_length(what, limit))
    }
}

const BAD_CHARACTER: &str = "Names may only contain alphanumerics, underscores (_), dashes (-), \
periods (.), spaces ( ), colon(:) and slashes (/).";

/// What `posixpath.normpath` would make of `name`: keys are used as file names by some
/// artifact layouts, so a key must not normalise to a different key.
pub(crate) fn normalises_to_itself(name: &str) -> bool {
    if name.is_empty() || name.starts_with('/') || name.ends_with('/') {
        return false;
    }
    name.split('/')
        .all(|seg| !seg.is_empty() && seg != "." && seg != "..")
}

pub(crate) fn bad_path(name: &str) -> String {
    format!(
        "Names may be treated as files in certain cases, and must not resolve to other names \
         when treated as such. This name would resolve to '{}'",
        normpath(name)
    )
}

/// A small `posixpath.normpath` used only to explain a rejection.
fn normpath(name: &str) -> String {
    let absolute = name.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for seg in name.split('/') {
        match seg {
            "" | "." => {}
            ".." if parts.last().is_some_and(|p| *p != "..") => {
                parts.pop();
            }
            ".." if absolute => {}
            s => parts.push(s),
        }
    }
    let body = parts.join("/");
    match (absolute, body.is_empty()) {
        (true, _) => format!("/{body}"),
        (false, true) => ".".to_string(),
        (false, false) => body,
    }
}

/// Validates a metric, param or tag key: allowed characters and no path tricks.
pub fn validate_key(path: &str, name: &str) -> CoreResult<()> {
    let ok_chars = name
        .chars()
        .all(|c| c.is_alphanumeric() || matches!(c, '_' | '/' | '.' | '-' | ' ' | ':'));
    if !ok_chars {
        return Err(invalid_value(path, name, Some(BAD_CHARACTER)));
    }
    if !normalises_to_itself(name) {
        return Err(invalid_value(path, name, Some(&bad_path(name))));
    }
    Ok(())
}

fn join_path(prefix: &str, field: &str) -> String {
    if prefix.is_empty() {
        field.to_string()
    } else {
        format!("{prefix}.{field}")
    }
}

/// Validates one metric; `path` is e.g. `metrics[3]` inside a batch, empty otherwise.
pub fn validate_metric(path: &str, m: &Metric) -> CoreResult<()> {
    let name_path = join_path(path, "name");
    validate_key(&name_path, &m.key)?;
    if m.timestamp < 0 {
        return Err(invalid_value(
            &join_path(path, "timestamp"),
            &m.timestamp.to_string(),
            Some(&format!(
                "metric '{}' (value={}). Timestamp must be a nonnegative long (64-bit integer) ",
                m.key, m.value
            )),
        ));
    }
    check_length("Metric name", MAX_ENTITY_KEY_LENGTH, &m.key)
}

/// Validates one param.
pub fn validate_param(path: &str, p: &Param) -> CoreResult<()> {
    validate_key(&join_path(path, "key"), &p.key)?;
    check_length("Param key", MAX_ENTITY_KEY_LENGTH, &p.key)?;
    check_length("Param value", MAX_PARAM_VAL_LENGTH, &p.value)
}

/// Validates one run tag.
pub fn validate_run_tag(path: &str, t: &Tag) -> CoreResult<()> {
    validate_key(&join_path(path, "key"), &t.key)?;
    check_length(&join_path(path, "key"), MAX_ENTITY_KEY_LENGTH, &t.key)?;
    check_length(&join_path(path, "value"), MAX_TAG_VAL_LENGTH, &t.value)
}

/// Validates one experiment tag.
pub fn validate_experiment_tag(t: &Tag) -> CoreResult<()> {
    validate_key("key", &t.key)?;
    check_length("key", MAX_EXPERIMENT_TAG_KEY_LENGTH, &t.key)?;
    check_length("value", MAX_EXPERIMENT_TAG_VAL_LENGTH, &t.value)
}

/// Validates a run id against `^[a-zA-Z0-9][\w\-]{0,255}$`.
pub fn validate_run_id(path: &str, run_id: &str) -> CoreResult<()> {
    let mut chars = run_id.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric());
    let rest_ok = chars.all(|c| c.is_alphanumeric() || c == '_' || c == '-');
    if first_ok && rest_ok && run_id.chars().count() <= 256 {
        Ok(())
    } else {
        Err(invalid_value(path, run_id, None))
    }
}

/// Parses an experiment id: Cairn's ids are non-negative integers, as in MLflow's SQL store.
pub fn parse_experiment_id(id: &str) -> CoreResult<i64> {
    id.trim()
        .parse::<i64>()
        .ok()
        .filter(|n| *n >= 0)
        .ok_or_else(|| {
            CoreError::invalid(format!(
                "Invalid experiment ID '{id}'. Experiment ID must be a valid integer."
            ))
        })
}

/// Validates an experiment name.
pub fn validate_experiment_name(name: &str) -> CoreResult<()> {
    if name.is_empty() {
        return Err(CoreError::invalid(format!(
            "Invalid experiment name: '{name}'"
        )));
    }
    check_length("name", MAX_EXPERIMENT_NAME_LENGTH, name)
}

fn batch_limit(what: &str, limit: usize, got: usize) -> CoreResult<()> {
    if got > limit {
        return Err(CoreError::invalid(format!(
            "A batch logging request can contain at most {limit} {what}. Got {got} {what}. \
             Please split up {what} across multiple requests and try again."
        )));
    }
    Ok(())
}

/// Validates a whole `log-batch`: counts first, then each entity, then duplicate params.
pub fn validate_batch(metrics: &[Metric], params: &[Param], tags: &[Tag]) -> CoreResult<()> {
    batch_limit("metrics", MAX_METRICS_PER_BATCH, metrics.len())?;
    batch_limit("params", MAX_PARAMS_TAGS_PER_BATCH, params.len())?;
    batch_limit("tags", MAX_PARAMS_TAGS_PER_BATCH, tags.len())?;
    batch_limit(
        "metrics, params, and tags",
        MAX_ENTITIES_PER_BATCH,
        metrics.len() + params.len() + tags.len(),
    )?;
    for (i, m) in metrics.iter().enumerate() {
        validate_metric(&format!("metrics[{i}]"), m)?;
    }
    for (i, p) in params.iter().enumerate() {
        validate_param(&format!("params[{i}]"), p)?;
    }
    for (i, t) in tags.iter().enumerate() {
        validate_run_tag(&format!("tags[{i}]"), t)?;
    }
    // A batch may repeat a param only with the same value: anything else is ambiguous.
    let mut seen: std::collections::HashMap<&str, &str> = std::collections::HashMap::new();
    let mut dupes = Vec::new();
    for p in params {
        if let Some(prev) = seen.insert(&p.key, &p.value) {
            if prev != p.value {
                dupes.push(p.key.clone());
            }
        }
    }
    if !dupes.is_empty() {
        return Err(CoreError::invalid(format!(
            "Duplicate parameter keys have been submitted: {dupes:?}. Please ensure the request \
             contains only one param value per param key."
        )));
    }
    Ok(())
}

/// Validates a `max_results` argument against an upper bound.
pub fn validate_max_results(value: i64, limit: u64) -> CoreResult<u64> {
    if value <= 0 || value as u64 > limit {
        return Err(CoreError::invalid(format!(
            "Invalid value {value} for parameter 'max_results' supplied. It must be a positive \
             integer at most {limit}"
        )));
    }
    Ok(value as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys() {
        for ok in ["loss", "a/b", "val loss", "x:y", "a.b-c_d", "ünïcode"] {
            assert!(validate_key("key", ok).is_ok(), "{ok}");
        }
        for bad in [
            "", "/a", "a/", "a//b", "./a", "a/../b", "..", ".", "a$b", "a\nb",
        ] {
            assert!(validate_key("key", bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn normpath_matches_python() {
        assert_eq!(normpath("a//b"), "a/b");
        assert_eq!(normpath("a/../b"), "b");
        assert_eq!(normpath("../a"), "../a");
        assert_eq!(normpath(""), ".");
        assert_eq!(normpath("/x/"), "/x");
    }

    #[test]
    fn run_ids() {
        assert!(validate_run_id("run_id", "0123abcd").is_ok());
        assert!(validate_run_id("run_id", "a-b_c").is_ok());
        assert!(validate_run_id("run_id", "").is_err());
        assert!(validate_run_id("run_id", "_abc").is_err());
        assert!(validate_run_id("run_id", "abc/def").is_err());
        assert!(validate_run_id("run_id", &"a".repeat(257)).is_err());
        assert!(validate_run_id("run_id", &"a".repeat(256)).is_ok());
    }

    #[test]
    fn lengths_count_chars() {
        assert!(check_length("v", 3, "äöü").is_ok());
        assert!(check_length("v", 2, "äöü").is_err());
    }

    #[test]
    fn batch_limits_and_dupes() {
        let m: Vec<Metric> = (0..1001).map(|i| Metric::new("m", 1.0, 0, i)).collect();
        assert!(validate_batch(&m, &[], &[]).is_err());
        assert!(validate_batch(&m[..1000], &[], &[]).is_ok());
        let p = |k: &str, v: &str| Param {
            key: k.into(),
            value: v.into(),
        };
        assert!(validate_batch(&[], &[p("a", "1"), p("a", "1")], &[]).is_ok());
        assert!(validate_batch(&[], &[p("a", "1"), p("a", "2")], &[]).is_err());
        let tags: Vec<Tag> = (0..101)
            .map(|i| Tag {
                key: format!("t{i}"),
                value: String::new(),
            })
            .collect();
        assert!(validate_batch(&[], &[], &tags).is_err());
    }

    #[test]
    fn experiment_ids() {
        assert_eq!(parse_experiment_id("0").ok(), Some(0));
        assert_eq!(parse_experiment_id("42").ok(), Some(42));
        assert!(parse_experiment_id("abc").is_err());
        assert!(parse_experiment_id("-1").is_err());
    }
}
