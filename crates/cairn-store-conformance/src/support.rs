//! Helpers shared by the scenarios: builders shaped like the service's store calls,
//! error assertions, a LIKE matcher for computing expected results, and a pager that
//! checks page-token invariants while it collects every page.

use std::collections::BTreeMap;
use std::fmt::{Debug, Display};
use std::future::Future;

use cairn_core::model::{Experiment, Metric, Param, Run, Tag};
use cairn_core::page::{decode_offset, Page};
use cairn_core::search::{parse_filter, parse_order_by, Filter, OrderBy, SearchKind};
use cairn_core::service::RUN_NAME_TAG;
use cairn_core::store::{
    experiment_location_under, ArtifactLocation, LogBatch, NewExperiment, NewRun, TrackingStore,
};
use cairn_core::CoreResult;

/// The artifact root the suite creates experiments under.
pub const ARTIFACT_ROOT: &str = "file:///cairn-conformance/artifacts";

/// A fixed "now" (ms) so expected timestamps are exact.
pub const T0: i64 = 1_700_000_000_000;

/// What the service's `init` does: make sure experiment "0" exists.
pub async fn prepare(store: &dyn TrackingStore) {
    store
        .ensure_default_experiment(&experiment_location_under(ARTIFACT_ROOT, 0), T0)
        .await
        .must("ensure_default_experiment");
}

/// `unwrap` with the failing step in the message.
pub(crate) trait Must<T> {
    /// The value, or a panic naming `what` and the error.
    fn must(self, what: impl Display) -> T;
}

impl<T> Must<T> for CoreResult<T> {
    #[track_caller]
    fn must(self, what: impl Display) -> T {
        match self {
            Ok(v) => v,
            Err(e) => panic!("{what}: unexpected error {e:?}"),
        }
    }
}

/// Asserts that `$res` is an `Err` matching `$pat`, with a formatted context message.
macro_rules! assert_err {
    ($res:expr, $pat:pat, $($ctx:tt)+) => {
        match $res {
            Err($pat) => {}
            Ok(v) => panic!(
                "{}: expected Err({}), got Ok({:?})",
                format!($($ctx)+),
                stringify!($pat),
                v
            ),
            Err(e) => panic!(
                "{}: expected Err({}), got Err({:?})",
                format!($($ctx)+),
                stringify!($pat),
                e
            ),
        }
    };
}

pub(crate) fn tag(key: &str, value: &str) -> Tag {
    Tag {
        key: key.into(),
        value: value.into(),
    }
}

pub(crate) fn param(key: &str, value: &str) -> Param {
    Param {
        key: key.into(),
        value: value.into(),
    }
}

pub(crate) fn metric(key: &str, value: f64, timestamp: i64, step: i64) -> Metric {
    Metric::new(key, value, timestamp, step)
}

pub(crate) fn batch(metrics: Vec<Metric>, params: Vec<Param>, tags: Vec<Tag>) -> LogBatch {
    LogBatch {
        metrics,
        params,
        tags,
    }
}

pub(crate) fn tag_map(tags: &[Tag]) -> BTreeMap<String, String> {
    tags.iter()
        .map(|t| (t.key.clone(), t.value.clone()))
        .collect()
}

pub(crate) fn param_map(params: &[Param]) -> BTreeMap<String, String> {
    params
        .iter()
        .map(|p| (p.key.clone(), p.value.clone()))
        .collect()
}

/// Equality for metric values where NaN equals NaN.
pub(crate) fn same_value(a: f64, b: f64) -> bool {
    (a.is_nan() && b.is_nan()) || a == b
}

/// Metric fields that must round-trip, with NaN comparable.
pub(crate) fn metric_key(m: &Metric) -> (String, u64, i64, i64) {
    let bits = if m.value.is_nan() {
        f64::NAN.to_bits()
    } else {
        m.value.to_bits()
    };
    (m.key.clone(), bits, m.timestamp, m.step)
}

/// An experiment with its tags sorted, so two reads compare equal regardless of tag order.
pub(crate) fn normalized(mut e: Experiment) -> Experiment {
    e.tags.sort_by(|a, b| a.key.cmp(&b.key));
    e
}

pub(crate) fn fresh_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// Creates an experiment under [`ARTIFACT_ROOT`] and returns its numeric id.
pub(crate) async fn new_experiment(store: &dyn TrackingStore, name: &str) -> i64 {
    new_experiment_with(
        store,
        name,
        ArtifactLocation::UnderRoot(ARTIFACT_ROOT.into()),
        Vec::new(),
        T0,
    )
    .await
}

pub(crate) async fn new_experiment_with(
    store: &dyn TrackingStore,
    name: &str,
    location: ArtifactLocation,
    tags: Vec<Tag>,
    now: i64,
) -> i64 {
    let id = store
        .create_experiment(NewExperiment {
            name: name.into(),
            artifact_location: location,
            tags,
            now,
        })
        .await
        .must(format_args!("create_experiment({name:?})"));
    id.parse()
        .unwrap_or_else(|_| panic!("create_experiment returned a non-numeric id {id:?}"))
}

/// A `NewRun` as the service builds it: fresh id, name mirrored in `mlflow.runName`.
pub(crate) fn new_run(experiment_id: i64, name: &str, start_time: i64) -> NewRun {
    NewRun {
        run_id: fresh_id(),
        experiment_id,
        run_name: name.into(),
        user_id: "conformance".into(),
        start_time: Some(start_time),
        tags: vec![tag(RUN_NAME_TAG, name)],
    }
}

pub(crate) async fn create_run(store: &dyn TrackingStore, experiment_id: i64, name: &str) -> Run {
    store
        .create_run(new_run(experiment_id, name, T0))
        .await
        .must(format_args!("create_run({name:?})"))
}

pub(crate) async fn log(store: &dyn TrackingStore, run_id: &str, b: LogBatch) {
    store
        .log_batch(run_id, &b)
        .await
        .must(format_args!("log_batch to run {run_id}"));
}

#[track_caller]
pub(crate) fn filter(kind: SearchKind, s: &str) -> Option<Filter> {
    parse_filter(kind, s).must(format_args!("parse_filter({s:?})"))
}

#[track_caller]
pub(crate) fn order(kind: SearchKind, clauses: &[&str]) -> Vec<OrderBy> {
    let owned: Vec<String> = clauses.iter().map(|s| s.to_string()).collect();
    parse_order_by(kind, &owned).must(format_args!("parse_order_by({clauses:?})"))
}

/// SQL `LIKE` with `%` and `_` wildcards and no escape character.
pub(crate) fn like(s: &str, pattern: &str) -> bool {
    fn go(s: &[char], p: &[char]) -> bool {
        match p.split_first() {
            None => s.is_empty(),
            Some(('%', rest)) => (0..=s.len()).any(|i| go(&s[i..], rest)),
            Some(('_', rest)) => !s.is_empty() && go(&s[1..], rest),
            Some((c, rest)) => s.first() == Some(c) && go(&s[1..], rest),
        }
    }
    let s: Vec<char> = s.chars().collect();
    let p: Vec<char> = pattern.chars().collect();
    go(&s, &p)
}

/// SQL `ILIKE`: `LIKE` ignoring (ASCII) case.
pub(crate) fn ilike(s: &str, pattern: &str) -> bool {
    like(&s.to_lowercase(), &pattern.to_lowercase())
}

/// Fetches every page of a search, `page_size` at a time, checking the paging contract:
/// a page with a token is full, a page without one ends the listing, and a token is
/// never followed by an empty page. `fetch(offset)` runs the search at that offset.
pub(crate) async fn collect_pages<T, F, Fut>(what: &str, page_size: u64, mut fetch: F) -> Vec<T>
where
    F: FnMut(u64) -> Fut,
    Fut: Future<Output = Page<T>>,
{
    let mut out = Vec::new();
    let mut offset = 0u64;
    for page_no in 0u64.. {
        assert!(
            page_no <= 100_000,
            "{what}: more than 100000 pages of size {page_size}; the token never ends"
        );
        let page = fetch(offset).await;
        let n = page.items.len() as u64;
        assert!(
            n <= page_size,
            "{what}: page {page_no} has {n} items, more than max_results={page_size}"
        );
        // A token promises more rows: a page reached through one must not be empty.
        assert!(
            page_no == 0 || n > 0,
            "{what}: page {} had a next_page_token but page {page_no} is empty (the token \
             must be None on the last page)",
            page_no - 1
        );
        out.extend(page.items);
        let Some(token) = page.next_page_token else {
            break;
        };
        assert_eq!(
            n, page_size,
            "{what}: page {page_no} carries a next_page_token but is not full"
        );
        let next = decode_offset(Some(&token)).must(format_args!(
            "{what}: the store's next_page_token {token:?} must decode"
        ));
        assert_eq!(
            next,
            offset + n,
            "{what}: next_page_token of page {page_no} points to the wrong offset"
        );
        offset = next;
    }
    out
}

/// Compares two ordered id lists and panics with a readable diff.
#[track_caller]
pub(crate) fn assert_same_ids<D: Debug>(what: &str, got: &[String], want: &[String], ctx: D) {
    if got == want {
        return;
    }
    let missing: Vec<&String> = want.iter().filter(|w| !got.contains(w)).collect();
    let unexpected: Vec<&String> = got.iter().filter(|g| !want.contains(g)).collect();
    panic!(
        "{what}: results differ.\n  context: {ctx:?}\n  got  ({} items): {got:?}\n  want ({} \
         items): {want:?}\n  missing: {missing:?}\n  unexpected: {unexpected:?}\n  (if neither \
         list is non-empty, only the order differs)",
        got.len(),
        want.len()
    );
}
