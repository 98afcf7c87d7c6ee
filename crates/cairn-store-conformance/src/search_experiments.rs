//! `search_experiments`: views, filters, ordering, paging.
//!
//! String ordering is byte-wise (like Rust's `str` ordering, SQLite's BINARY collation
//! or PostgreSQL's `COLLATE "C"`), so "Alpha" < "alpha" on every backend.

use std::cmp::Ordering;
use std::collections::BTreeMap;

use cairn_core::model::{Experiment, LifecycleStage, ViewType};
use cairn_core::search::SearchKind;
use cairn_core::store::{ArtifactLocation, ExperimentSearch};

use crate::support::*;
use crate::Store;

/// What the suite knows about each experiment it created.
struct ExpRow {
    id: i64,
    name: String,
    tags: BTreeMap<String, String>,
    creation_time: i64,
    last_update_time: i64,
    deleted: bool,
}

impl ExpRow {
    fn tag(&self, k: &str) -> Option<&str> {
        self.tags.get(k).map(String::as_str)
    }
    fn visible(&self, view: ViewType) -> bool {
        match view {
            ViewType::ActiveOnly => !self.deleted,
            ViewType::DeletedOnly => self.deleted,
            ViewType::All => true,
        }
    }
}

const DELETE_TIME: i64 = T0 + 999_000;

/// Default plus 30 experiments with mixed-case names, optional tags, tied creation
/// times (three per millisecond value) and a few deleted ones.
async fn corpus(store: &Store) -> Vec<ExpRow> {
    prepare(&**store).await;
    let default = store.get_experiment(0).await.must("get_experiment(0)");
    let mut rows = vec![ExpRow {
        id: 0,
        name: default.name.clone(),
        tags: tag_map(&default.tags),
        creation_time: default.creation_time,
        last_update_time: default.last_update_time,
        deleted: false,
    }];
    let prefixes = ["alpha", "Alpha", "ALPHA", "beta", "Beta", "gamma"];
    for i in 0..30i64 {
        let name = format!("{}-{i:02}", prefixes[i as usize % prefixes.len()]);
        let mut tags = Vec::new();
        if i % 5 != 0 {
            tags.push(tag("team", ["ml", "ML", "ops"][i as usize % 3]));
        }
        tags.push(tag("tier", &(i % 4).to_string()));
        let creation_time = T0 + (i / 3) * 1000;
        let id = new_experiment_with(
            &**store,
            &name,
            ArtifactLocation::UnderRoot(ARTIFACT_ROOT.into()),
            tags.clone(),
            creation_time,
        )
        .await;
        let deleted = i % 7 == 3;
        if deleted {
            store
                .set_experiment_lifecycle(id, LifecycleStage::Deleted, DELETE_TIME)
                .await
                .must("delete experiment");
        }
        rows.push(ExpRow {
            id,
            name,
            tags: tag_map(&tags),
            creation_time,
            last_update_time: if deleted { DELETE_TIME } else { creation_time },
            deleted,
        });
    }
    rows
}

fn query(
    filter_str: &str,
    view: ViewType,
    order_by: &[&str],
    max_results: u64,
) -> ExperimentSearch {
    ExperimentSearch {
        filter: filter(SearchKind::Experiments, filter_str),
        view,
        max_results,
        order_by: order(SearchKind::Experiments, order_by),
        offset: 0,
    }
}

async fn search_all(store: &Store, q: &ExperimentSearch, page_size: u64) -> Vec<Experiment> {
    let what = format!("search_experiments({q:?})");
    collect_pages(&what, page_size, |offset| {
        let store = store.clone();
        let mut q = q.clone();
        q.max_results = page_size;
        q.offset = offset;
        async move {
            store
                .search_experiments(&q)
                .await
                .must("search_experiments")
        }
    })
    .await
}

fn ids(exps: &[Experiment]) -> Vec<String> {
    exps.iter().map(|e| e.experiment_id.clone()).collect()
}

/// MLflow's default order: creation_time DESC, experiment_id ASC.
fn default_order(a: &ExpRow, b: &ExpRow) -> Ordering {
    b.creation_time.cmp(&a.creation_time).then(a.id.cmp(&b.id))
}

fn expected(rows: &[ExpRow], view: ViewType, pred: impl Fn(&ExpRow) -> bool) -> Vec<String> {
    let mut hits: Vec<&ExpRow> = rows.iter().filter(|r| r.visible(view) && pred(r)).collect();
    hits.sort_by(|a, b| default_order(a, b));
    hits.iter().map(|r| r.id.to_string()).collect()
}

/// ActiveOnly, DeletedOnly and All return exactly the experiments in those stages,
/// each with the data it was created with.
pub async fn search_experiments_view_types(store: Store) {
    let rows = corpus(&store).await;
    for view in [ViewType::ActiveOnly, ViewType::DeletedOnly, ViewType::All] {
        let got = search_all(&store, &query("", view, &[], 1000), 1000).await;
        assert_same_ids(
            "search_experiments by view type (default order)",
            &ids(&got),
            &expected(&rows, view, |_| true),
            view,
        );
        for e in &got {
            let row = rows
                .iter()
                .find(|r| r.id.to_string() == e.experiment_id)
                .expect("a known experiment");
            assert_eq!(e.name, row.name, "name of experiment {}", row.id);
            assert_eq!(tag_map(&e.tags), row.tags, "tags of experiment {}", row.id);
            assert_eq!(
                e.lifecycle_stage,
                if row.deleted {
                    LifecycleStage::Deleted
                } else {
                    LifecycleStage::Active
                },
                "lifecycle_stage of experiment {}",
                row.id
            );
            assert_eq!(
                e.creation_time, row.creation_time,
                "creation_time of {}",
                row.id
            );
            assert_eq!(
                e.last_update_time, row.last_update_time,
                "last_update_time of {}",
                row.id
            );
        }
    }
}

/// Filters on name (=, !=, LIKE case-sensitive, ILIKE case-insensitive, IN, NOT IN),
/// tags (including IS NULL), numeric times and experiment_id, combined with AND/OR.
pub async fn search_experiments_filters(store: Store) {
    let rows = corpus(&store).await;
    let some_id = rows[4].id;
    let other_id = rows[9].id;
    let mid = T0 + 4000;
    type Pred = Box<dyn Fn(&ExpRow) -> bool>;
    let cases: Vec<(String, Pred)> = vec![
        ("name = 'beta-03'".into(), Box::new(|r| r.name == "beta-03")),
        (
            "name != 'beta-03'".into(),
            Box::new(|r| r.name != "beta-03"),
        ),
        (
            "name LIKE 'alpha%'".into(),
            Box::new(|r| like(&r.name, "alpha%")),
        ),
        (
            "name LIKE 'Alpha%'".into(),
            Box::new(|r| like(&r.name, "Alpha%")),
        ),
        (
            "name ILIKE 'alpha%'".into(),
            Box::new(|r| ilike(&r.name, "alpha%")),
        ),
        (
            "name ILIKE '%ETA-1_'".into(),
            Box::new(|r| ilike(&r.name, "%ETA-1_")),
        ),
        (
            "name LIKE '%-2_'".into(),
            Box::new(|r| like(&r.name, "%-2_")),
        ),
        (
            "name IN ('alpha-00', 'Beta-04', 'nope')".into(),
            Box::new(|r| ["alpha-00", "Beta-04", "nope"].contains(&r.name.as_str())),
        ),
        (
            "name NOT IN ('alpha-00', 'Beta-04')".into(),
            Box::new(|r| !["alpha-00", "Beta-04"].contains(&r.name.as_str())),
        ),
        (
            "tags.team = 'ml'".into(),
            Box::new(|r| r.tag("team") == Some("ml")),
        ),
        (
            "tags.team != 'ml'".into(),
            Box::new(|r| r.tag("team").is_some_and(|t| t != "ml")),
        ),
        (
            "tags.team LIKE 'M%'".into(),
            Box::new(|r| r.tag("team").is_some_and(|t| like(t, "M%"))),
        ),
        (
            "tags.team ILIKE 'm%'".into(),
            Box::new(|r| r.tag("team").is_some_and(|t| ilike(t, "m%"))),
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
            format!("creation_time > {mid}"),
            Box::new(move |r| r.creation_time > mid),
        ),
        (
            format!("creation_time >= {mid}"),
            Box::new(move |r| r.creation_time >= mid),
        ),
        (
            format!("creation_time < {mid}"),
            Box::new(move |r| r.creation_time < mid),
        ),
        (
            format!("creation_time <= {mid}"),
            Box::new(move |r| r.creation_time <= mid),
        ),
        (
            format!("creation_time = {mid}"),
            Box::new(move |r| r.creation_time == mid),
        ),
        (
            format!("creation_time != {mid}"),
            Box::new(move |r| r.creation_time != mid),
        ),
        (
            format!("last_update_time >= {DELETE_TIME}"),
            Box::new(|r| r.last_update_time >= DELETE_TIME),
        ),
        (
            format!("experiment_id = '{some_id}'"),
            Box::new(move |r| r.id == some_id),
        ),
        (
            format!("experiment_id IN ('{some_id}', '{other_id}', '0')"),
            Box::new(move |r| [some_id, other_id, 0].contains(&r.id)),
        ),
        (
            "name LIKE 'alpha%' AND tags.tier = '1'".into(),
            Box::new(|r| like(&r.name, "alpha%") && r.tag("tier") == Some("1")),
        ),
        (
            "name LIKE 'beta%' OR tags.team = 'ops'".into(),
            Box::new(|r| like(&r.name, "beta%") || r.tag("team") == Some("ops")),
        ),
        (
            format!("(name ILIKE 'gamma%' OR tags.team IS NULL) AND creation_time >= {mid}"),
            Box::new(move |r| {
                (ilike(&r.name, "gamma%") || r.tag("team").is_none()) && r.creation_time >= mid
            }),
        ),
    ];
    for view in [ViewType::ActiveOnly, ViewType::All] {
        for (f, pred) in &cases {
            let got = search_all(&store, &query(f, view, &[], 1000), 1000).await;
            assert_same_ids(
                "search_experiments filter",
                &ids(&got),
                &expected(&rows, view, pred),
                (f, view),
            );
        }
    }
}

fn sorted_by<K: Ord>(exps: &[Experiment], key: impl Fn(&Experiment) -> K, asc: bool) -> bool {
    exps.windows(2).all(|w| {
        let o = key(&w[0]).cmp(&key(&w[1]));
        if asc {
            o != Ordering::Greater
        } else {
            o != Ordering::Less
        }
    })
}

/// order_by name ASC/DESC is exact (names are unique, compared byte-wise); time and id
/// orderings are checked as sorted and deterministic (tie-breaking by experiment_id).
/// No order_by means creation_time DESC, experiment_id ASC.
pub async fn search_experiments_order_by(store: Store) {
    let rows = corpus(&store).await;
    let view = ViewType::All;

    for (clause, asc) in [("name", true), ("name ASC", true), ("name DESC", false)] {
        let got = search_all(&store, &query("", view, &[clause], 1000), 1000).await;
        let mut want: Vec<&ExpRow> = rows.iter().collect();
        want.sort_by(|a, b| {
            if asc {
                a.name.cmp(&b.name)
            } else {
                b.name.cmp(&a.name)
            }
        });
        let want: Vec<String> = want.iter().map(|r| r.id.to_string()).collect();
        assert_same_ids(
            "search_experiments order_by name",
            &ids(&got),
            &want,
            clause,
        );
    }

    let got = search_all(&store, &query("", view, &[], 1000), 1000).await;
    assert_same_ids(
        "search_experiments default order (creation_time DESC, experiment_id ASC)",
        &ids(&got),
        &expected(&rows, view, |_| true),
        "no order_by",
    );

    let num = |e: &Experiment| e.experiment_id.parse::<i64>().expect("numeric id");
    type Check = Box<dyn Fn(&[Experiment]) -> bool>;
    let checks: Vec<(&str, Check)> = vec![
        (
            "creation_time ASC",
            Box::new(|e: &[Experiment]| sorted_by(e, |x| x.creation_time, true)),
        ),
        (
            "creation_time DESC",
            Box::new(|e: &[Experiment]| sorted_by(e, |x| x.creation_time, false)),
        ),
        (
            "last_update_time DESC",
            Box::new(|e: &[Experiment]| sorted_by(e, |x| x.last_update_time, false)),
        ),
        (
            "experiment_id DESC",
            Box::new(move |e: &[Experiment]| sorted_by(e, num, false)),
        ),
        (
            "experiment_id ASC",
            Box::new(move |e: &[Experiment]| sorted_by(e, num, true)),
        ),
    ];
    for (clause, check) in &checks {
        let first = search_all(&store, &query("", view, &[clause], 1000), 1000).await;
        assert_eq!(first.len(), rows.len(), "{clause}: every experiment once");
        assert!(
            check(&first),
            "{clause}: results are not sorted: {:?}",
            first
                .iter()
                .map(|e| (&e.experiment_id, e.creation_time, e.last_update_time))
                .collect::<Vec<_>>()
        );
        let second = search_all(&store, &query("", view, &[clause], 1000), 1000).await;
        assert_eq!(
            ids(&first),
            ids(&second),
            "{clause}: the same search must return the same order (total tie-breaker)"
        );
        let paged = search_all(&store, &query("", view, &[clause], 1000), 4).await;
        assert_eq!(
            ids(&first),
            ids(&paged),
            "{clause}: paging by 4 must reproduce the unpaged order"
        );
    }

    // A two-key ordering: ties on the first key are ordered by the second.
    let got = search_all(
        &store,
        &query("", view, &["last_update_time DESC", "name ASC"], 1000),
        1000,
    )
    .await;
    let mut want: Vec<&ExpRow> = rows.iter().collect();
    want.sort_by(|a, b| {
        b.last_update_time
            .cmp(&a.last_update_time)
            .then_with(|| a.name.cmp(&b.name))
    });
    let want: Vec<String> = want.iter().map(|r| r.id.to_string()).collect();
    assert_same_ids(
        "search_experiments order_by last_update_time DESC, name ASC",
        &ids(&got),
        &want,
        "two keys",
    );
}

/// Paging with any page size visits every matching experiment exactly once, in the
/// unpaged order, and the last page has no token.
pub async fn search_experiments_paging(store: Store) {
    let rows = corpus(&store).await;
    let total = rows.len() as u64;
    let cases: [(&str, &[&str], ViewType); 3] = [
        ("", &[], ViewType::All),
        ("", &["name DESC"], ViewType::ActiveOnly),
        (
            "tags.team IS NOT NULL",
            &["creation_time ASC"],
            ViewType::All,
        ),
    ];
    for (f, ob, view) in cases {
        let full = search_all(&store, &query(f, view, ob, 1000), 1000).await;
        for size in [1, 2, 3, 7, total - 1, total, total + 5] {
            let paged = search_all(&store, &query(f, view, ob, size), size).await;
            assert_eq!(
                ids(&paged),
                ids(&full),
                "paging by {size} (filter {f:?}, order_by {ob:?}, {view:?}) must visit \
                 every experiment exactly once, in order"
            );
        }
    }
    // An offset past the end is an empty last page.
    let mut q = query("", ViewType::All, &[], 10);
    q.offset = total + 10;
    let page = store
        .search_experiments(&q)
        .await
        .must("search past the end");
    assert!(page.items.is_empty(), "offset past the end returns nothing");
    assert!(
        page.next_page_token.is_none(),
        "offset past the end has no next token"
    );
}
