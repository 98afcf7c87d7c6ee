//! `search_runs` over a corpus of a few hundred runs. Every expected result is computed
//! here from the data the corpus wrote; filter and `order_by` strings are parsed with
//! the same parser the service uses, and expected orderings are derived from the parsed
//! [`OrderBy`] keys.
//!
//! Semantics pinned down here (beyond the trait docs):
//! - metric filters see the latest value only; NaN compares like IEEE NaN (it satisfies
//!   only `!=`), infinities like numbers;
//! - `!=`, `LIKE`, ... on a param/tag/metric require the key to exist;
//! - dataset conditions hold if any input dataset of the run satisfies them;
//! - `order_by`: missing values last in both directions; for metrics NaN sorts after
//!   every number and before missing values in both directions (as in MLflow); strings
//!   compare byte-wise; ties break by `start_time DESC, run_id ASC`.

use std::cmp::Ordering;
use std::collections::BTreeMap;

use cairn_core::model::{Dataset, DatasetInput, LifecycleStage, Run, RunStatus, ViewType};
use cairn_core::search::{Attribute, Field, OrderBy, SearchKind};
use cairn_core::service::RUN_NAME_TAG;
use cairn_core::store::{NewRun, RunSearch, RunUpdate};

use crate::support::*;
use crate::Store;

/// One input dataset of a corpus run.
#[derive(Debug, Clone)]
struct DsRec {
    name: &'static str,
    digest: &'static str,
    context: Option<&'static str>,
}

/// What the suite knows about each run it created.
#[derive(Debug, Clone)]
struct RunRec {
    run_id: String,
    experiment_id: i64,
    name: String,
    user_id: String,
    status: RunStatus,
    start_time: i64,
    end_time: Option<i64>,
    metrics: BTreeMap<String, f64>,
    params: BTreeMap<String, String>,
    tags: BTreeMap<String, String>,
    datasets: Vec<DsRec>,
    deleted: bool,
}

impl RunRec {
    fn metric(&self, k: &str) -> Option<f64> {
        self.metrics.get(k).copied()
    }
    fn param(&self, k: &str) -> Option<&str> {
        self.params.get(k).map(String::as_str)
    }
    fn tag(&self, k: &str) -> Option<&str> {
        self.tags.get(k).map(String::as_str)
    }
    /// A numeric metric condition: the key must exist, and the comparison follows IEEE
    /// rules (Rust's `f64` operators), so NaN satisfies only `!=`.
    fn m(&self, k: &str, cond: impl Fn(f64) -> bool) -> bool {
        self.metric(k).is_some_and(cond)
    }
    fn visible(&self, view: ViewType) -> bool {
        match view {
            ViewType::ActiveOnly => !self.deleted,
            ViewType::DeletedOnly => self.deleted,
            ViewType::All => true,
        }
    }
    fn any_dataset(&self, pred: impl Fn(&DsRec) -> bool) -> bool {
        self.datasets.iter().any(pred)
    }
}

struct Corpus {
    /// Searched experiments.
    a: i64,
    b: i64,
    /// An experiment whose runs match most filters and must never leak into a search
    /// that does not name it.
    c: i64,
    runs: Vec<RunRec>,
}

/// Number of runs in experiments A and B together.
const CORPUS_RUNS: usize = 240;

const TRAIN: DsRec = DsRec {
    name: "train-ds",
    digest: "d1",
    context: Some("training"),
};
const EVAL: DsRec = DsRec {
    name: "eval-ds",
    digest: "d2",
    context: Some("eval"),
};
const TRAIN_V2: DsRec = DsRec {
    name: "train-ds",
    digest: "d3",
    context: None,
};

fn dataset_input(d: &DsRec) -> DatasetInput {
    DatasetInput {
        tags: d
            .context
            .map(|c| vec![tag("mlflow.data.context", c)])
            .unwrap_or_default(),
        dataset: Dataset {
            name: d.name.into(),
            digest: d.digest.into(),
            source_type: "local".into(),
            source: format!("{{\"uri\": \"/data/{}-{}\"}}", d.name, d.digest),
            schema: None,
            profile: None,
        },
    }
}

fn loss_of(i: usize) -> Option<f64> {
    match i {
        _ if i.is_multiple_of(7) => None,
        16 => Some(f64::INFINITY),
        17 => Some(f64::NEG_INFINITY),
        _ => Some(((i * 53) % 97) as f64 / 8.0 - 3.0),
    }
}

async fn create(store: &Store, rec: &mut RunRec, extra_tags: Vec<cairn_core::model::Tag>) {
    let mut tags = vec![tag(RUN_NAME_TAG, &rec.name)];
    tags.extend(extra_tags);
    let run = store
        .create_run(NewRun {
            run_id: rec.run_id.clone(),
            experiment_id: rec.experiment_id,
            run_name: rec.name.clone(),
            user_id: rec.user_id.clone(),
            start_time: Some(rec.start_time),
            tags: tags.clone(),
        })
        .await
        .must("create_run (corpus)");
    assert_eq!(run.info.run_id, rec.run_id);
    rec.tags = tag_map(&tags);
}

async fn build_corpus(store: &Store) -> Corpus {
    prepare(&**store).await;
    let a = new_experiment(&**store, "search-a").await;
    let b = new_experiment(&**store, "search-b").await;
    let c = new_experiment(&**store, "search-c").await;
    let mut runs = Vec::new();
    for i in 0..CORPUS_RUNS {
        let mut rec = RunRec {
            run_id: fresh_id(),
            experiment_id: if i % 3 == 2 { b } else { a },
            name: format!("{}-{i:03}", ["Train", "train", "eval", "EVAL"][i % 4]),
            user_id: ["alice", "bob", "carol"][(i / 2) % 3].into(),
            status: RunStatus::Running,
            // 60 distinct start times, four runs each: ties exercise the run_id tie-breaker.
            start_time: T0 + ((i * 37) % 60) as i64 * 1000,
            end_time: None,
            metrics: BTreeMap::new(),
            params: BTreeMap::new(),
            tags: BTreeMap::new(),
            datasets: Vec::new(),
            deleted: false,
        };
        let mut extra = Vec::new();
        if i % 6 != 5 {
            extra.push(tag("team", ["ml", "ML", "ops", "Ops"][i % 4]));
        }
        if i % 2 == 1 {
            extra.push(tag("priority", &(i % 3).to_string()));
        }
        create(store, &mut rec, extra).await;

        let status = RunStatus::ALL[(i / 3) % 5];
        if status != RunStatus::Running {
            let end_time = status
                .is_terminated()
                .then_some(rec.start_time + i as i64 * 10);
            store
                .update_run(&RunUpdate {
                    run_id: rec.run_id.clone(),
                    status: Some(status),
                    end_time,
                    run_name: None,
                })
                .await
                .must("update_run (corpus)");
            rec.status = status;
            rec.end_time = end_time;
        }

        let mut metrics = Vec::new();
        if let Some(loss) = loss_of(i) {
            // An older step with a huge value: filters must only see the latest value.
            metrics.push(metric("loss", 1000.0 + i as f64, rec.start_time, 0));
            metrics.push(metric("loss", loss, rec.start_time + 1, 1));
            rec.metrics.insert("loss".into(), loss);
        }
        if i % 2 == 0 {
            let acc = (i % 10) as f64 / 10.0;
            metrics.push(metric("acc", acc, rec.start_time, 0));
            rec.metrics.insert("acc".into(), acc);
        }
        if i % 5 == 0 {
            let score = if i % 25 == 0 {
                f64::NAN
            } else {
                (i % 13) as f64
            };
            metrics.push(metric("score", score, rec.start_time, 0));
            rec.metrics.insert("score".into(), score);
        }
        let mut params = vec![param("model", ["cnn", "rnn", "Transformer"][i % 3])];
        if i % 5 != 0 {
            params.push(param("lr", &format!("0.{}", i % 10)));
        }
        for p in &params {
            rec.params.insert(p.key.clone(), p.value.clone());
        }
        log(&**store, &rec.run_id, batch(metrics, params, vec![])).await;

        rec.datasets = match i % 6 {
            0 => vec![TRAIN],
            1 => vec![EVAL],
            2 => vec![TRAIN, EVAL],
            3 => vec![TRAIN_V2],
            _ => Vec::new(),
        };
        if !rec.datasets.is_empty() {
            let inputs: Vec<DatasetInput> = rec.datasets.iter().map(dataset_input).collect();
            store
                .log_inputs(&rec.run_id, &inputs, &[])
                .await
                .must("log_inputs (corpus)");
        }

        if i % 11 == 0 {
            store
                .set_run_lifecycle(&rec.run_id, LifecycleStage::Deleted, T0 + 5_000_000)
                .await
                .must("delete run (corpus)");
            rec.deleted = true;
        }
        runs.push(rec);
    }
    for i in 0..10 {
        let mut rec = RunRec {
            run_id: fresh_id(),
            experiment_id: c,
            name: format!("c-run-{i}"),
            user_id: "alice".into(),
            status: RunStatus::Running,
            start_time: T0 + i * 1000,
            end_time: None,
            metrics: BTreeMap::from([("loss".to_string(), 0.0)]),
            params: BTreeMap::from([("model".to_string(), "cnn".to_string())]),
            tags: BTreeMap::new(),
            datasets: vec![TRAIN],
            deleted: false,
        };
        create(store, &mut rec, vec![tag("team", "ml")]).await;
        log(
            &**store,
            &rec.run_id,
            batch(
                vec![metric("loss", 0.0, T0, 0)],
                vec![param("model", "cnn")],
                vec![],
            ),
        )
        .await;
        store
            .log_inputs(&rec.run_id, &[dataset_input(&TRAIN)], &[])
            .await
            .must("log_inputs (corpus c)");
        runs.push(rec);
    }
    Corpus { a, b, c, runs }
}

enum SortVal<'a> {
    Num(f64),
    Str(&'a str),
}

fn sort_value<'a>(r: &'a RunRec, field: &Field) -> Option<SortVal<'a>> {
    Some(match field {
        Field::Metric(k) => SortVal::Num(r.metric(k)?),
        Field::Param(k) => SortVal::Str(r.param(k)?),
        Field::Tag(k) => SortVal::Str(r.tag(k)?),
        Field::Attr(Attribute::StartTime) => SortVal::Num(r.start_time as f64),
        Field::Attr(Attribute::EndTime) => SortVal::Num(r.end_time? as f64),
        Field::Attr(Attribute::RunName) => SortVal::Str(&r.name),
        Field::Attr(Attribute::RunId) => SortVal::Str(&r.run_id),
        Field::Attr(Attribute::UserId) => SortVal::Str(&r.user_id),
        Field::Attr(Attribute::Status) => SortVal::Str(r.status.as_str()),
        other => panic!("the suite does not model ordering by {other:?}"),
    })
}

/// One `order_by` key: missing last and NaN after numbers, in both directions.
fn compare_key(a: &RunRec, b: &RunRec, o: &OrderBy) -> Ordering {
    let dir = |ord: Ordering| if o.ascending { ord } else { ord.reverse() };
    match (sort_value(a, &o.field), sort_value(b, &o.field)) {
        (None, None) => Ordering::Equal,
        (None, Some(_)) => Ordering::Greater,
        (Some(_), None) => Ordering::Less,
        (Some(SortVal::Num(x)), Some(SortVal::Num(y))) => match (x.is_nan(), y.is_nan()) {
            (true, true) => Ordering::Equal,
            (true, false) => Ordering::Greater,
            (false, true) => Ordering::Less,
            (false, false) => dir(x.total_cmp(&y)),
        },
        (Some(SortVal::Str(x)), Some(SortVal::Str(y))) => dir(x.cmp(y)),
        _ => unreachable!("one field always yields one kind of value"),
    }
}

fn compare(a: &RunRec, b: &RunRec, order_by: &[OrderBy]) -> Ordering {
    order_by
        .iter()
        .map(|o| compare_key(a, b, o))
        .find(|o| o.is_ne())
        .unwrap_or(Ordering::Equal)
        .then_with(|| b.start_time.cmp(&a.start_time))
        .then_with(|| a.run_id.cmp(&b.run_id))
}

impl Corpus {
    fn searched(&self) -> Vec<i64> {
        vec![self.a, self.b]
    }

    fn expected(
        &self,
        experiment_ids: &[i64],
        view: ViewType,
        pred: &dyn Fn(&RunRec) -> bool,
        order_by: &[OrderBy],
    ) -> Vec<String> {
        let mut hits: Vec<&RunRec> = self
            .runs
            .iter()
            .filter(|r| experiment_ids.contains(&r.experiment_id) && r.visible(view) && pred(r))
            .collect();
        hits.sort_by(|x, y| compare(x, y, order_by));
        hits.iter().map(|r| r.run_id.clone()).collect()
    }

    fn rec(&self, run_id: &str) -> &RunRec {
        self.runs
            .iter()
            .find(|r| r.run_id == run_id)
            .unwrap_or_else(|| panic!("search returned a run the suite did not create: {run_id}"))
    }
}

fn run_query(
    experiment_ids: Vec<i64>,
    filter_str: &str,
    view: ViewType,
    order_by: &[&str],
    max_results: u64,
) -> RunSearch {
    RunSearch {
        experiment_ids,
        filter: filter(SearchKind::Runs, filter_str),
        view,
        max_results,
        order_by: order(SearchKind::Runs, order_by),
        offset: 0,
    }
}

async fn search_all(store: &Store, q: &RunSearch, page_size: u64) -> Vec<Run> {
    let what = format!("search_runs({q:?})");
    collect_pages(&what, page_size, |offset| {
        let store = store.clone();
        let mut q = q.clone();
        q.max_results = page_size;
        q.offset = offset;
        async move { store.search_runs(&q).await.must("search_runs") }
    })
    .await
}

fn ids(runs: &[Run]) -> Vec<String> {
    runs.iter().map(|r| r.info.run_id.clone()).collect()
}

type Pred = Box<dyn Fn(&RunRec) -> bool>;

/// Runs each filter over experiments A and B (active runs, default order) and compares
/// with the predicate applied to the corpus.
async fn check_filters(store: &Store, corpus: &Corpus, cases: &[(String, Pred)]) {
    for (f, pred) in cases {
        let q = run_query(corpus.searched(), f, ViewType::ActiveOnly, &[], 5000);
        let got = search_all(store, &q, 5000).await;
        let want = corpus.expected(&corpus.searched(), ViewType::ActiveOnly, pred, &[]);
        assert_same_ids("search_runs filter", &ids(&got), &want, f);
    }
}

/// A metric value from the corpus, used as a comparison threshold.
fn threshold(corpus: &Corpus, i: usize) -> f64 {
    corpus.runs[i]
        .metric("loss")
        .expect("corpus run with a finite loss")
}

/// Every numeric comparator on metrics, with thresholds taken from the data, infinite
/// values, NaN and a key that only older steps would match.
pub async fn search_runs_metric_filters(store: Store) {
    let corpus = build_corpus(&store).await;
    let t = threshold(&corpus, 3);
    let mut cases: Vec<(String, Pred)> = Vec::new();
    for (op, f) in [
        ("=", (|v, t| v == t) as fn(f64, f64) -> bool),
        ("!=", |v, t| v != t),
        ("<", |v, t| v < t),
        ("<=", |v, t| v <= t),
        (">", |v, t| v > t),
        (">=", |v, t| v >= t),
    ] {
        cases.push((
            format!("metrics.loss {op} {t}"),
            Box::new(move |r: &RunRec| r.m("loss", |v| f(v, t))),
        ));
        cases.push((
            format!("metrics.acc {op} 0.4"),
            Box::new(move |r: &RunRec| r.m("acc", |v| f(v, 0.4))),
        ));
        cases.push((
            format!("metrics.score {op} 3"),
            Box::new(move |r: &RunRec| r.m("score", |v| f(v, 3.0))),
        ));
    }
    cases.extend::<Vec<(String, Pred)>>(vec![
        (
            "metrics.loss > 0".into(),
            Box::new(|r| r.m("loss", |v| v > 0.0)),
        ),
        (
            "metrics.loss <= -1.5".into(),
            Box::new(|r| r.m("loss", |v| v <= -1.5)),
        ),
        (
            "metrics.loss > 1e308".into(),
            Box::new(|r| r.m("loss", |v| v > 1e308)),
        ),
        (
            "metrics.loss < -1e308".into(),
            Box::new(|r| r.m("loss", |v| v < -1e308)),
        ),
        // Older steps hold loss >= 1000; only the latest value may be compared.
        (
            "metrics.loss >= 1000".into(),
            Box::new(|r| r.m("loss", |v| v >= 1000.0)),
        ),
        (
            "metrics.score >= 0".into(),
            Box::new(|r| r.m("score", |v| v >= 0.0)),
        ),
        ("metrics.never_logged > 0".into(), Box::new(|_| false)),
        ("metrics.never_logged != 0".into(), Box::new(|_| false)),
        (
            "metrics.loss > 0 AND metrics.acc >= 0.5".into(),
            Box::new(|r| r.m("loss", |v| v > 0.0) && r.m("acc", |v| v >= 0.5)),
        ),
    ]);
    check_filters(&store, &corpus, &cases).await;
}

/// Params and tags: =, !=, LIKE, ILIKE, IS NULL, IS NOT NULL, keys with dots.
pub async fn search_runs_param_tag_filters(store: Store) {
    let corpus = build_corpus(&store).await;
    let some_name = corpus.runs[10].name.clone();
    let name_for_pred = some_name.clone();
    let cases: Vec<(String, Pred)> = vec![
        (
            "params.model = 'cnn'".into(),
            Box::new(|r| r.param("model") == Some("cnn")),
        ),
        (
            "params.model != 'cnn'".into(),
            Box::new(|r| r.param("model").is_some_and(|v| v != "cnn")),
        ),
        (
            "params.model LIKE 'T%'".into(),
            Box::new(|r| r.param("model").is_some_and(|v| like(v, "T%"))),
        ),
        (
            "params.model LIKE 't%'".into(),
            Box::new(|r| r.param("model").is_some_and(|v| like(v, "t%"))),
        ),
        (
            "params.model ILIKE 't%'".into(),
            Box::new(|r| r.param("model").is_some_and(|v| ilike(v, "t%"))),
        ),
        (
            "params.model ILIKE '_NN'".into(),
            Box::new(|r| r.param("model").is_some_and(|v| ilike(v, "_NN"))),
        ),
        (
            "params.lr = '0.3'".into(),
            Box::new(|r| r.param("lr") == Some("0.3")),
        ),
        (
            "params.lr != '0.3'".into(),
            Box::new(|r| r.param("lr").is_some_and(|v| v != "0.3")),
        ),
        (
            "params.lr LIKE '0._'".into(),
            Box::new(|r| r.param("lr").is_some_and(|v| like(v, "0._"))),
        ),
        (
            "params.lr IS NULL".into(),
            Box::new(|r| r.param("lr").is_none()),
        ),
        (
            "params.lr IS NOT NULL".into(),
            Box::new(|r| r.param("lr").is_some()),
        ),
        ("params.never IS NULL".into(), Box::new(|_| true)),
        ("params.never IS NOT NULL".into(), Box::new(|_| false)),
        ("params.never = 'x'".into(), Box::new(|_| false)),
        ("params.never != 'x'".into(), Box::new(|_| false)),
        (
            "tags.team = 'ml'".into(),
            Box::new(|r| r.tag("team") == Some("ml")),
        ),
        (
            "tags.team != 'ml'".into(),
            Box::new(|r| r.tag("team").is_some_and(|v| v != "ml")),
        ),
        (
            "tags.team LIKE 'O%'".into(),
            Box::new(|r| r.tag("team").is_some_and(|v| like(v, "O%"))),
        ),
        (
            "tags.team ILIKE 'ops'".into(),
            Box::new(|r| r.tag("team").is_some_and(|v| ilike(v, "ops"))),
        ),
        (
            "tags.team ILIKE '%L'".into(),
            Box::new(|r| r.tag("team").is_some_and(|v| ilike(v, "%L"))),
        ),
        (
            "tags.team IS NULL".into(),
            Box::new(|r| r.tag("team").is_none()),
        ),
        (
            "tags.team IS NOT NULL".into(),
            Box::new(|r| r.tag("team").is_some()),
        ),
        (
            "tags.priority = '1'".into(),
            Box::new(|r| r.tag("priority") == Some("1")),
        ),
        (
            format!("tags.mlflow.runName = '{some_name}'"),
            Box::new(move |r| r.tag(RUN_NAME_TAG) == Some(name_for_pred.as_str())),
        ),
        (
            "tags.`mlflow.runName` LIKE 'EVAL-%'".into(),
            Box::new(|r| r.tag(RUN_NAME_TAG).is_some_and(|v| like(v, "EVAL-%"))),
        ),
    ];
    check_filters(&store, &corpus, &cases).await;
}

/// Attributes: status, run_name, user_id, run_id, artifact_uri (string comparators and
/// IN/NOT IN) and start_time/end_time (numeric comparators).
pub async fn search_runs_attribute_filters(store: Store) {
    let corpus = build_corpus(&store).await;
    let mid = T0 + 30_000;
    let end = corpus
        .runs
        .iter()
        .filter_map(|r| r.end_time)
        .nth(20)
        .expect("corpus has ended runs");
    let picked: Vec<String> = [1usize, 2, 50, 77]
        .iter()
        .map(|i| corpus.runs[*i].run_id.clone())
        .collect();
    let some_name = corpus.runs[40].name.clone();
    let (p1, p2, n1) = (picked.clone(), picked.clone(), some_name.clone());
    let n2 = some_name.clone();
    let fragment = corpus.runs[5].run_id.clone();
    let frag2 = fragment.clone();
    let cases: Vec<(String, Pred)> = vec![
        (
            "attributes.status = 'FINISHED'".into(),
            Box::new(|r| r.status == RunStatus::Finished),
        ),
        (
            "status != 'RUNNING'".into(),
            Box::new(|r| r.status != RunStatus::Running),
        ),
        (
            "attributes.status IN ('FAILED', 'KILLED')".into(),
            Box::new(|r| matches!(r.status, RunStatus::Failed | RunStatus::Killed)),
        ),
        (
            "attributes.status NOT IN ('RUNNING', 'SCHEDULED')".into(),
            Box::new(|r| !matches!(r.status, RunStatus::Running | RunStatus::Scheduled)),
        ),
        (
            format!("attributes.run_name = '{some_name}'"),
            Box::new(move |r| r.name == n1),
        ),
        (
            format!("attributes.run_name != '{some_name}'"),
            Box::new(move |r| r.name != n2),
        ),
        (
            "attributes.run_name LIKE 'Train-%'".into(),
            Box::new(|r| like(&r.name, "Train-%")),
        ),
        (
            "attributes.run_name ILIKE 'train-%'".into(),
            Box::new(|r| ilike(&r.name, "train-%")),
        ),
        (
            "run_name LIKE '%-1_0'".into(),
            Box::new(|r| like(&r.name, "%-1_0")),
        ),
        (
            "attributes.user_id = 'bob'".into(),
            Box::new(|r| r.user_id == "bob"),
        ),
        (
            "user_id IN ('alice', 'carol')".into(),
            Box::new(|r| r.user_id == "alice" || r.user_id == "carol"),
        ),
        (
            format!(
                "attributes.run_id IN ('{}', '{}', '{}', '{}', 'ffffffffffffffffffffffffffffffff')",
                picked[0], picked[1], picked[2], picked[3]
            ),
            Box::new(move |r| p1.contains(&r.run_id)),
        ),
        (
            format!(
                "attributes.run_id NOT IN ('{}', '{}', '{}', '{}')",
                picked[0], picked[1], picked[2], picked[3]
            ),
            Box::new(move |r| !p2.contains(&r.run_id)),
        ),
        (
            format!("attributes.run_id = '{}'", picked[0]),
            Box::new({
                let id = picked[0].clone();
                move |r| r.run_id == id
            }),
        ),
        (
            format!("attributes.artifact_uri LIKE '%/{fragment}/artifacts'"),
            Box::new(move |r| r.run_id == frag2),
        ),
        (
            format!("attributes.start_time >= {mid}"),
            Box::new(move |r| r.start_time >= mid),
        ),
        (
            format!("attributes.start_time > {mid}"),
            Box::new(move |r| r.start_time > mid),
        ),
        (
            format!("attributes.start_time < {mid}"),
            Box::new(move |r| r.start_time < mid),
        ),
        (
            format!("attributes.start_time <= {mid}"),
            Box::new(move |r| r.start_time <= mid),
        ),
        (
            format!("attributes.start_time = {mid}"),
            Box::new(move |r| r.start_time == mid),
        ),
        (
            format!("attributes.start_time != {mid}"),
            Box::new(move |r| r.start_time != mid),
        ),
        (
            format!("created > {mid}"),
            Box::new(move |r| r.start_time > mid),
        ),
        (
            format!("attributes.end_time > {end}"),
            Box::new(move |r| r.end_time.is_some_and(|e| e > end)),
        ),
        (
            format!("attributes.end_time <= {end}"),
            Box::new(move |r| r.end_time.is_some_and(|e| e <= end)),
        ),
        (
            format!("attributes.end_time != {end}"),
            Box::new(move |r| r.end_time.is_some_and(|e| e != end)),
        ),
    ];
    check_filters(&store, &corpus, &cases).await;
}

/// AND, OR (a Cairn extension), AND binding tighter than OR, and nested parentheses.
pub async fn search_runs_boolean_logic(store: Store) {
    let corpus = build_corpus(&store).await;
    let cases: Vec<(String, Pred)> = vec![
        (
            "metrics.loss < 0 AND params.model = 'cnn'".into(),
            Box::new(|r| r.m("loss", |v| v < 0.0) && r.param("model") == Some("cnn")),
        ),
        (
            "metrics.loss < 0 OR params.model = 'cnn'".into(),
            Box::new(|r| r.m("loss", |v| v < 0.0) || r.param("model") == Some("cnn")),
        ),
        (
            "params.model = 'cnn' OR params.model = 'rnn' AND tags.team = 'ml'".into(),
            Box::new(|r| {
                r.param("model") == Some("cnn")
                    || (r.param("model") == Some("rnn") && r.tag("team") == Some("ml"))
            }),
        ),
        (
            "(params.model = 'cnn' OR params.model = 'rnn') AND tags.team = 'ml'".into(),
            Box::new(|r| {
                (r.param("model") == Some("cnn") || r.param("model") == Some("rnn"))
                    && r.tag("team") == Some("ml")
            }),
        ),
        (
            "(metrics.loss > 2 OR metrics.acc >= 0.5) AND (tags.team ILIKE 'ops' OR \
             params.lr IS NULL) AND status != 'KILLED'"
                .into(),
            Box::new(|r| {
                (r.m("loss", |v| v > 2.0) || r.m("acc", |v| v >= 0.5))
                    && (r.tag("team").is_some_and(|t| ilike(t, "ops")) || r.param("lr").is_none())
                    && r.status != RunStatus::Killed
            }),
        ),
        (
            "((status = 'FINISHED' OR status = 'FAILED') AND (user_id = 'bob' OR \
             (tags.priority = '0' AND metrics.loss >= 1))) OR run_name LIKE 'EVAL-00%'"
                .into(),
            Box::new(|r| {
                (matches!(r.status, RunStatus::Finished | RunStatus::Failed)
                    && (r.user_id == "bob"
                        || (r.tag("priority") == Some("0") && r.m("loss", |v| v >= 1.0))))
                    || like(&r.name, "EVAL-00%")
            }),
        ),
        (
            "tags.team = 'ml' OR tags.team = 'ML' OR tags.team = 'ops' OR tags.team IS NULL".into(),
            Box::new(|r| matches!(r.tag("team"), Some("ml") | Some("ML") | Some("ops") | None)),
        ),
    ];
    check_filters(&store, &corpus, &cases).await;
}

/// datasets.name / digest / context with string comparators and IN lists (after
/// log_inputs); a condition holds if any input of the run satisfies it.
pub async fn search_runs_dataset_filters(store: Store) {
    let corpus = build_corpus(&store).await;
    let cases: Vec<(String, Pred)> = vec![
        (
            "datasets.name = 'train-ds'".into(),
            Box::new(|r| r.any_dataset(|d| d.name == "train-ds")),
        ),
        (
            "datasets.name = 'eval-ds'".into(),
            Box::new(|r| r.any_dataset(|d| d.name == "eval-ds")),
        ),
        (
            "datasets.name IN ('eval-ds', 'nope')".into(),
            Box::new(|r| r.any_dataset(|d| d.name == "eval-ds")),
        ),
        (
            "datasets.name NOT IN ('train-ds')".into(),
            Box::new(|r| r.any_dataset(|d| d.name != "train-ds")),
        ),
        (
            "datasets.name LIKE 'train%'".into(),
            Box::new(|r| r.any_dataset(|d| like(d.name, "train%"))),
        ),
        (
            "datasets.name ILIKE 'EVAL%'".into(),
            Box::new(|r| r.any_dataset(|d| ilike(d.name, "EVAL%"))),
        ),
        (
            "datasets.digest = 'd3'".into(),
            Box::new(|r| r.any_dataset(|d| d.digest == "d3")),
        ),
        (
            "datasets.digest != 'd1'".into(),
            Box::new(|r| r.any_dataset(|d| d.digest != "d1")),
        ),
        (
            "datasets.context = 'training'".into(),
            Box::new(|r| r.any_dataset(|d| d.context == Some("training"))),
        ),
        (
            "datasets.context IN ('eval')".into(),
            Box::new(|r| r.any_dataset(|d| d.context == Some("eval"))),
        ),
        (
            "datasets.name = 'train-ds' AND datasets.context = 'eval'".into(),
            Box::new(|r| {
                r.any_dataset(|d| d.name == "train-ds")
                    && r.any_dataset(|d| d.context == Some("eval"))
            }),
        ),
        (
            "datasets.name = 'train-ds' AND metrics.loss > 0".into(),
            Box::new(|r| r.any_dataset(|d| d.name == "train-ds") && r.m("loss", |v| v > 0.0)),
        ),
        (
            "datasets.digest = 'd3' OR datasets.context = 'eval'".into(),
            Box::new(|r| {
                r.any_dataset(|d| d.digest == "d3") || r.any_dataset(|d| d.context == Some("eval"))
            }),
        ),
    ];
    check_filters(&store, &corpus, &cases).await;
}

/// Runs each `order_by` over all active runs of A and B and compares with the order
/// computed from the parsed keys.
async fn check_orders(store: &Store, corpus: &Corpus, orders: &[&[&str]]) {
    for ob in orders {
        let q = run_query(corpus.searched(), "", ViewType::ActiveOnly, ob, 5000);
        let got = search_all(store, &q, 5000).await;
        let want = corpus.expected(
            &corpus.searched(),
            ViewType::ActiveOnly,
            &|_| true,
            &q.order_by,
        );
        assert_same_ids("search_runs order_by", &ids(&got), &want, ob);
        // Small pages cross every boundary a backend may split its ordering at (runs
        // with a value, NaN, missing): the pages must still concatenate to the order.
        for page_size in [3, 7] {
            let paged = search_all(store, &q, page_size).await;
            let ctx = format!("{ob:?} in pages of {page_size}");
            assert_same_ids("search_runs order_by, paged", &ids(&paged), &want, ctx);
        }
    }
}

/// Ordering by a metric in both directions; runs without the metric come last either way.
pub async fn search_runs_order_by_metric(store: Store) {
    let corpus = build_corpus(&store).await;
    for (clause, asc) in [
        ("metrics.loss ASC", true),
        ("metrics.loss DESC", false),
        ("metrics.acc DESC", false),
    ] {
        let q = run_query(corpus.searched(), "", ViewType::ActiveOnly, &[clause], 5000);
        let got = search_all(&store, &q, 5000).await;
        let key = clause
            .split_whitespace()
            .next()
            .and_then(|k| k.strip_prefix("metrics."))
            .expect("metric clause");
        let values: Vec<Option<f64>> = got
            .iter()
            .map(|r| corpus.rec(&r.info.run_id).metric(key))
            .collect();
        let first_missing = values
            .iter()
            .position(Option::is_none)
            .unwrap_or(values.len());
        assert!(
            values[first_missing..].iter().all(Option::is_none),
            "{clause}: runs without the metric must come after all runs with it"
        );
        let present: Vec<f64> = values[..first_missing].iter().flatten().copied().collect();
        assert!(
            present
                .windows(2)
                .all(|w| if asc { w[0] <= w[1] } else { w[0] >= w[1] }),
            "{clause}: values out of order: {present:?}"
        );
    }
    check_orders(
        &store,
        &corpus,
        &[
            &["metrics.loss ASC"],
            &["metrics.loss DESC"],
            &["metrics.loss"],
            &["metrics.acc DESC"],
            &["metrics.acc ASC"],
            &["metrics.never_logged DESC"],
            &["metrics.acc DESC", "metrics.loss ASC"],
        ],
    )
    .await;
}

/// NaN sorts after every number and before missing values, ascending and descending
/// (MLflow's rule).
pub async fn search_runs_order_by_metric_nan_last(store: Store) {
    let corpus = build_corpus(&store).await;
    for clause in ["metrics.score ASC", "metrics.score DESC"] {
        let q = run_query(corpus.searched(), "", ViewType::ActiveOnly, &[clause], 5000);
        let got = search_all(&store, &q, 5000).await;
        let classes: Vec<u8> = got
            .iter()
            .map(|r| match corpus.rec(&r.info.run_id).metric("score") {
                Some(v) if v.is_nan() => 1,
                Some(_) => 0,
                None => 2,
            })
            .collect();
        assert!(
            classes.windows(2).all(|w| w[0] <= w[1]),
            "{clause}: expected numbers, then NaN, then missing; got classes (0 = number, \
             1 = NaN, 2 = missing) {classes:?}"
        );
    }
    check_orders(
        &store,
        &corpus,
        &[&["metrics.score ASC"], &["metrics.score DESC"]],
    )
    .await;
}

/// Ordering by params, tags and attributes, alone and combined.
pub async fn search_runs_order_by_param_tag_attribute(store: Store) {
    let corpus = build_corpus(&store).await;
    check_orders(
        &store,
        &corpus,
        &[
            &["params.lr ASC"],
            &["params.lr DESC"],
            &["params.model"],
            &["tags.team"],
            &["tags.team DESC"],
            &["attributes.run_name ASC"],
            &["run_name DESC"],
            &["attributes.start_time ASC"],
            &["start_time DESC"],
            &["created"],
            &["attributes.status"],
            &["end_time DESC"],
            &["end_time ASC"],
            &["attributes.user_id ASC", "metrics.loss DESC"],
            &["params.model ASC", "tags.team DESC", "start_time ASC"],
            &["run_id DESC"],
        ],
    )
    .await;
}

/// Without order_by: start_time DESC, then run_id ASC.
pub async fn search_runs_default_order(store: Store) {
    let corpus = build_corpus(&store).await;
    for view in [ViewType::ActiveOnly, ViewType::All] {
        let q = run_query(corpus.searched(), "", view, &[], 5000);
        let got = search_all(&store, &q, 5000).await;
        let want = corpus.expected(&corpus.searched(), view, &|_| true, &[]);
        assert_same_ids(
            "search_runs default order (start_time DESC, run_id ASC)",
            &ids(&got),
            &want,
            view,
        );
    }
}

/// Paging visits every run exactly once, in the unpaged order, for several page sizes,
/// with and without filter and order_by.
pub async fn search_runs_paging(store: Store) {
    let corpus = build_corpus(&store).await;
    let total = corpus
        .runs
        .iter()
        .filter(|r| !r.deleted && r.experiment_id != corpus.c)
        .count() as u64;
    let cases: [(&str, &[&str], &[u64]); 3] = [
        ("", &[], &[1, 7, 50, total - 1, total, total + 1]),
        ("metrics.loss > -2", &["metrics.loss DESC"], &[1, 13]),
        ("", &["params.lr ASC", "tags.team DESC"], &[9, 64]),
    ];
    for (f, ob, sizes) in cases {
        let unpaged = search_all(
            &store,
            &run_query(corpus.searched(), f, ViewType::ActiveOnly, ob, 5000),
            5000,
        )
        .await;
        if f.is_empty() && ob.is_empty() {
            assert_eq!(unpaged.len() as u64, total, "every active run is found");
        }
        let mut unique = ids(&unpaged);
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), unpaged.len(), "no run appears twice");
        for &size in sizes {
            let paged = search_all(
                &store,
                &run_query(corpus.searched(), f, ViewType::ActiveOnly, ob, size),
                size,
            )
            .await;
            assert_eq!(
                ids(&paged),
                ids(&unpaged),
                "paging by {size} (filter {f:?}, order_by {ob:?}) must visit every run \
                 exactly once, in order"
            );
        }
    }
}

/// ActiveOnly / DeletedOnly / All, and every returned run carries its full data.
pub async fn search_runs_view_types(store: Store) {
    let corpus = build_corpus(&store).await;
    for view in [ViewType::ActiveOnly, ViewType::DeletedOnly, ViewType::All] {
        let q = run_query(corpus.searched(), "", view, &[], 5000);
        let got = search_all(&store, &q, 5000).await;
        let want = corpus.expected(&corpus.searched(), view, &|_| true, &[]);
        assert_same_ids("search_runs view type", &ids(&got), &want, view);
        if view != ViewType::All {
            continue;
        }
        // Search results are hydrated like get_run.
        for run in &got {
            let rec = corpus.rec(&run.info.run_id);
            let ctx = &rec.name;
            assert_eq!(run.info.run_name, rec.name, "{ctx}: run_name");
            assert_eq!(
                run.info.experiment_id,
                rec.experiment_id.to_string(),
                "{ctx}"
            );
            assert_eq!(run.info.user_id, rec.user_id, "{ctx}: user_id");
            assert_eq!(run.info.status, rec.status, "{ctx}: status");
            assert_eq!(
                run.info.start_time,
                Some(rec.start_time),
                "{ctx}: start_time"
            );
            assert_eq!(run.info.end_time, rec.end_time, "{ctx}: end_time");
            assert_eq!(
                run.info.lifecycle_stage,
                if rec.deleted {
                    LifecycleStage::Deleted
                } else {
                    LifecycleStage::Active
                },
                "{ctx}: lifecycle_stage"
            );
            let metrics: BTreeMap<String, u64> = run
                .data
                .metrics
                .iter()
                .map(|m| (m.key.clone(), metric_key(m).1))
                .collect();
            let want_metrics: BTreeMap<String, u64> = rec
                .metrics
                .iter()
                .map(|(k, v)| (k.clone(), metric_key(&metric(k, *v, 0, 0)).1))
                .collect();
            assert_eq!(
                metrics, want_metrics,
                "{ctx}: latest metrics in search results"
            );
            assert_eq!(param_map(&run.data.params), rec.params, "{ctx}: params");
            assert_eq!(tag_map(&run.data.tags), rec.tags, "{ctx}: tags");
            let mut ds: Vec<(String, String)> = run
                .inputs
                .dataset_inputs
                .iter()
                .map(|d| (d.dataset.name.clone(), d.dataset.digest.clone()))
                .collect();
            ds.sort();
            let mut want_ds: Vec<(String, String)> = rec
                .datasets
                .iter()
                .map(|d| (d.name.to_string(), d.digest.to_string()))
                .collect();
            want_ds.sort();
            assert_eq!(ds, want_ds, "{ctx}: dataset inputs in search results");
        }
    }
}

/// Only the named experiments are searched; unknown ids simply match nothing.
pub async fn search_runs_experiment_ids(store: Store) {
    let corpus = build_corpus(&store).await;
    let (a, b, c) = (corpus.a, corpus.b, corpus.c);
    let unknown = a.max(b).max(c) + 10_000;
    let sets: Vec<Vec<i64>> = vec![
        vec![a],
        vec![b],
        vec![c],
        vec![a, b],
        vec![b, a],
        vec![a, c],
        vec![a, b, c],
        vec![unknown],
        vec![b, unknown],
    ];
    for exps in sets {
        for f in ["", "params.model = 'cnn'", "metrics.loss <= 0"] {
            let q = run_query(exps.clone(), f, ViewType::ActiveOnly, &[], 5000);
            let got = search_all(&store, &q, 5000).await;
            let pred: Pred = match f {
                "" => Box::new(|_| true),
                "params.model = 'cnn'" => Box::new(|r| r.param("model") == Some("cnn")),
                _ => Box::new(|r| r.m("loss", |v| v <= 0.0)),
            };
            let want = corpus.expected(&exps, ViewType::ActiveOnly, &pred, &[]);
            assert_same_ids("search_runs experiment_ids", &ids(&got), &want, (&exps, f));
        }
    }
}
