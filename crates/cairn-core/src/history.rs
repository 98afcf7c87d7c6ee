//! Metric history as both stores keep it. Every log-batch appends, per metric key, one
//! chunk holding that request's points; nothing is merged on write. Readers gather a
//! key's chunks, sort the points into MLflow's history order and drop repeats (a resent
//! batch repeats its points), so a retry is still a no-op to every reader. This module
//! holds the rules; the stores only move chunks in and out of their databases.

use std::cmp::Ordering;
use std::collections::{HashMap, HashSet};

use crate::model::Metric;

/// One observation: (timestamp, step, is_nan, stored value). NaN is stored as 0 with
/// `is_nan` set, because neither database orders or compares NaN the way MLflow does.
pub type Point = (i64, i64, bool, f64);

/// The model and dataset an observation was logged against, if any:
/// (model_id, dataset_name, dataset_digest).
pub type MetricContext = (Option<String>, Option<String>, Option<String>);

/// The value and NaN flag a store keeps for `v`.
pub fn encode_value(v: f64) -> (f64, bool) {
    if v.is_nan() {
        (0.0, true)
    } else {
        (v, false)
    }
}

/// The value a stored (value, is_nan) pair stands for.
pub fn decode_value(v: f64, is_nan: bool) -> f64 {
    if is_nan {
        f64::NAN
    } else {
        v
    }
}

/// The stored form of one metric observation.
pub fn point_of(m: &Metric) -> Point {
    let (v, nan) = encode_value(m.value);
    (m.timestamp, m.step, nan, v)
}

/// True when an observation names a logged model or dataset.
pub fn has_context(m: &Metric) -> bool {
    m.model_id.is_some() || m.dataset_name.is_some() || m.dataset_digest.is_some()
}

/// MLflow's history order: timestamp, step, then value with NaN after every number.
/// Stored values are never NaN; -0 and 0 compare equal, as they do in SQL.
pub fn point_order(a: &Point, b: &Point) -> Ordering {
    (a.0, a.1, a.2)
        .cmp(&(b.0, b.1, b.2))
        .then(a.3.partial_cmp(&b.3).unwrap_or(Ordering::Equal))
}

/// Sorts gathered points into history order and drops identical repeats.
pub fn merge(mut points: Vec<Point>) -> Vec<Point> {
    points.sort_unstable_by(point_order);
    points.dedup_by(|a, b| point_order(a, b) == Ordering::Equal);
    points
}

/// A batch's metrics split into one chunk of points per key, sorted by key (the order
/// writers take row locks in).
pub fn chunks_by_key(metrics: &[Metric]) -> Vec<(&str, Vec<Point>)> {
    let mut by_key: std::collections::BTreeMap<&str, Vec<Point>> =
        std::collections::BTreeMap::new();
    for m in metrics {
        by_key.entry(m.key.as_str()).or_default().push(point_of(m));
    }
    by_key.into_iter().collect()
}

/// Points `offset..` of a merged history as metrics, at most `take` of them.
pub fn window(points: Vec<Point>, key: &str, offset: u64, take: Option<u64>) -> Vec<Metric> {
    let offset = usize::try_from(offset).unwrap_or(usize::MAX);
    let take = take
        .map(|t| usize::try_from(t).unwrap_or(usize::MAX))
        .unwrap_or(usize::MAX);
    points
        .into_iter()
        .skip(offset)
        .take(take)
        .map(|(ts, step, nan, v)| Metric::new(key, decode_value(v, nan), ts, step))
        .collect()
}

/// The merged history's points whose step is in `steps`, ordered by step, then
/// timestamp (the charting endpoint's order).
pub fn at_steps(points: Vec<Point>, key: &str, steps: &[i64]) -> Vec<Metric> {
    let wanted: HashSet<i64> = steps.iter().copied().collect();
    let mut points: Vec<Point> = points
        .into_iter()
        .filter(|p| wanted.contains(&p.1))
        .collect();
    points.sort_by(|a, b| (a.1, a.0).cmp(&(b.1, b.0)).then(point_order(a, b)));
    window(points, key, 0, None)
}

/// The distinct steps among `steps`, ascending.
pub fn distinct_steps(steps: impl IntoIterator<Item = i64>) -> Vec<i64> {
    let mut steps: Vec<i64> = steps.into_iter().collect();
    steps.sort_unstable();
    steps.dedup();
    steps
}

/// Fills model and dataset fields of the metrics that were logged with them.
pub fn attach_contexts(
    metrics: &mut [Metric],
    contexts: impl IntoIterator<Item = (Point, MetricContext)>,
) {
    let by_point: HashMap<(i64, i64, bool, u64), MetricContext> = contexts
        .into_iter()
        .map(|((ts, step, nan, v), ctx)| ((ts, step, nan, v.to_bits()), ctx))
        .collect();
    if by_point.is_empty() {
        return;
    }
    for m in metrics.iter_mut() {
        let (ts, step, nan, v) = point_of(m);
        if let Some((model_id, name, digest)) = by_point.get(&(ts, step, nan, v.to_bits())) {
            m.model_id.clone_from(model_id);
            m.dataset_name.clone_from(name);
            m.dataset_digest.clone_from(digest);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(key: &str, value: f64, ts: i64, step: i64) -> Metric {
        Metric::new(key, value, ts, step)
    }

    #[test]
    fn merge_orders_and_drops_repeats() {
        let a = vec![
            point_of(&m("k", 2.0, 5, 0)),
            point_of(&m("k", f64::NAN, 1, 0)),
            point_of(&m("k", 1.0, 1, 0)),
        ];
        let mut all = a.clone();
        all.extend(a);
        all.push(point_of(&m("k", 0.5, 1, 0)));
        let merged = merge(all);
        let values: Vec<String> = window(merged, "k", 0, None)
            .iter()
            .map(|x| format!("{}@{}", x.value, x.timestamp))
            .collect();
        // NaN sorts after every number at the same timestamp and step.
        assert_eq!(values, ["0.5@1", "1@1", "NaN@1", "2@5"]);
    }

    #[test]
    fn window_and_steps() {
        let points = merge(
            (0..10)
                .map(|i| point_of(&m("k", i as f64, 100 - i, i % 3)))
                .collect(),
        );
        let page = window(points.clone(), "k", 2, Some(3));
        assert_eq!(
            page.iter().map(|x| x.timestamp).collect::<Vec<_>>(),
            [93, 94, 95]
        );
        assert_eq!(distinct_steps(points.iter().map(|p| p.1)), [0, 1, 2]);
        let at = at_steps(points, "k", &[2]);
        assert_eq!(
            at.iter().map(|x| x.timestamp).collect::<Vec<_>>(),
            [92, 95, 98]
        );
    }

    #[test]
    fn chunks_group_by_key_in_key_order() {
        let batch = [m("b", 1.0, 1, 0), m("a", 2.0, 1, 0), m("b", 3.0, 2, 1)];
        let chunks = chunks_by_key(&batch);
        assert_eq!(chunks.len(), 2);
        assert_eq!(chunks[0].0, "a");
        assert_eq!(chunks[1].1.len(), 2);
    }

    #[test]
    fn contexts_attach_by_identity() {
        let mut ms = vec![m("k", 1.0, 1, 0), m("k", f64::NAN, 2, 0)];
        let ctx: MetricContext = (Some("m-1".into()), Some("ds".into()), None);
        attach_contexts(&mut ms, [(point_of(&m("k", f64::NAN, 2, 0)), ctx)]);
        assert_eq!(ms[0].model_id, None);
        assert_eq!(ms[1].model_id.as_deref(), Some("m-1"));
        assert_eq!(ms[1].dataset_name.as_deref(), Some("ds"));
    }
}
