//! Concurrent writers: no errors (in particular no "database is locked"), no lost or
//! duplicated writes, and races resolved with the same errors as sequential calls.
//!
//! These scenarios spawn tasks with `tokio::spawn`, so they need a multi-thread runtime
//! (the generated tests use one).

use std::collections::BTreeMap;

use cairn_core::model::{Metric, RunStatus, ViewType};
use cairn_core::service::RUN_NAME_TAG;
use cairn_core::store::{ArtifactLocation, LogBatch, NewExperiment, RunSearch, RunUpdate};
use cairn_core::{CoreError, CoreResult};

use crate::log_batch::history;
use crate::support::*;
use crate::Store;

const TASKS: i64 = 64;
const BATCHES: i64 = 5;
const METRICS_PER_BATCH: i64 = 10;

fn task_batch(task: i64, b: i64) -> LogBatch {
    let metrics: Vec<Metric> = (0..METRICS_PER_BATCH)
        .map(|k| {
            let step = b * METRICS_PER_BATCH + k;
            metric("m", (task * 1000 + step) as f64, T0 + step, step)
        })
        .chain(std::iter::once(metric(
            &format!("only_{task}"),
            b as f64,
            T0 + b,
            b,
        )))
        .collect();
    batch(
        metrics,
        vec![param(&format!("p{b}"), &format!("{task}-{b}"))],
        vec![tag(&format!("t{b}"), &format!("{task}-{b}"))],
    )
}

async fn run_task(store: Store, exp: i64, task: i64) -> CoreResult<String> {
    let run = store
        .create_run(new_run(exp, &format!("task-{task}"), T0 + task))
        .await?;
    let id = run.info.run_id;
    for b in 0..BATCHES {
        store.log_batch(&id, &task_batch(task, b)).await?;
        // Interleave reads with the writes of other tasks.
        store.get_run(&id).await?;
    }
    store
        .update_run(&RunUpdate {
            run_id: id.clone(),
            status: Some(RunStatus::Finished),
            end_time: Some(T0 + 10_000),
            run_name: None,
        })
        .await?;
    Ok(id)
}

/// Joins spawned tasks, failing on panics and listing every error.
async fn join_all<T: Send + 'static>(
    what: &str,
    handles: Vec<tokio::task::JoinHandle<CoreResult<T>>>,
) -> Vec<CoreResult<T>> {
    let mut out = Vec::with_capacity(handles.len());
    for (i, h) in handles.into_iter().enumerate() {
        match h.await {
            Ok(r) => out.push(r),
            Err(e) => panic!("{what}: task {i} panicked or was cancelled: {e}"),
        }
    }
    out
}

fn errors<T>(results: &[CoreResult<T>]) -> Vec<String> {
    results
        .iter()
        .enumerate()
        .filter_map(|(i, r)| r.as_ref().err().map(|e| format!("task {i}: {e:?}")))
        .collect()
}

/// 64 tasks each create a run and log 5 batches concurrently: every call succeeds and
/// every run ends up with exactly its own data.
pub async fn concurrent_runs_and_batches(store: Store) {
    prepare(&*store).await;
    let exp = new_experiment(&*store, "concurrency").await;
    let handles: Vec<_> = (0..TASKS)
        .map(|t| tokio::spawn(run_task(store.clone(), exp, t)))
        .collect();
    let results = join_all("concurrent runs", handles).await;
    let errs = errors(&results);
    assert!(
        errs.is_empty(),
        "concurrent writers must not fail (no 'database is locked', no timeouts): {errs:#?}"
    );
    let ids: Vec<String> = results.into_iter().map(|r| r.unwrap()).collect();

    for (task, id) in ids.iter().enumerate() {
        let task = task as i64;
        let run = store.get_run(id).await.must("get_run");
        assert_eq!(run.info.run_name, format!("task-{task}"));
        assert_eq!(
            run.info.status,
            RunStatus::Finished,
            "task {task}: final update"
        );
        let want_params: BTreeMap<String, String> = (0..BATCHES)
            .map(|b| (format!("p{b}"), format!("{task}-{b}")))
            .collect();
        assert_eq!(
            param_map(&run.data.params),
            want_params,
            "task {task}: exactly its own params"
        );
        let mut want_tags: BTreeMap<String, String> = (0..BATCHES)
            .map(|b| (format!("t{b}"), format!("{task}-{b}")))
            .collect();
        want_tags.insert(RUN_NAME_TAG.into(), format!("task-{task}"));
        assert_eq!(
            tag_map(&run.data.tags),
            want_tags,
            "task {task}: exactly its own tags"
        );
        let keys: Vec<&str> = run.data.metrics.iter().map(|m| m.key.as_str()).collect();
        let own = format!("only_{task}");
        let mut want_keys = vec!["m", own.as_str()];
        want_keys.sort();
        let mut keys_sorted = keys.clone();
        keys_sorted.sort();
        assert_eq!(
            keys_sorted, want_keys,
            "task {task}: exactly its own metric keys"
        );
        let h = history(&*store, id, "m").await;
        let total = BATCHES * METRICS_PER_BATCH;
        assert_eq!(h.len() as i64, total, "task {task}: every metric row, once");
        assert!(
            h.iter()
                .enumerate()
                .all(|(i, m)| m.step == i as i64 && m.value == (task * 1000 + i as i64) as f64),
            "task {task}: history holds exactly its own values"
        );
        let latest = run
            .data
            .metrics
            .iter()
            .find(|m| m.key == "m")
            .expect("latest m");
        assert_eq!(latest.step, total - 1, "task {task}: latest step");
        assert_eq!(latest.value, (task * 1000 + total - 1) as f64);
        assert_eq!(history(&*store, id, &own).await.len() as i64, BATCHES);
    }

    let page = store
        .search_runs(&RunSearch {
            experiment_ids: vec![exp],
            filter: None,
            view: ViewType::All,
            max_results: 1000,
            order_by: Vec::new(),
            offset: 0,
        })
        .await
        .must("search_runs");
    assert_eq!(
        page.items.len() as i64,
        TASKS,
        "every run was created exactly once"
    );
}

/// Many tasks write to one run at once: distinct metrics all land, identical batches are
/// stored once, a shared param with one value is accepted by everyone, and a first-write
/// race on a param with different values lets exactly one writer win while the others
/// get InvalidParameter (never an internal error).
pub async fn concurrent_writes_to_one_run(store: Store) {
    prepare(&*store).await;
    let exp = new_experiment(&*store, "one-run").await;
    let id = create_run(&*store, exp, "shared").await.info.run_id;
    let n = 32i64;

    let handles: Vec<_> = (0..n)
        .map(|t| {
            let store = store.clone();
            let id = id.clone();
            tokio::spawn(async move {
                store
                    .log_batch(
                        &id,
                        &batch(
                            vec![metric("m", t as f64, T0 + t, t)],
                            vec![param("shared", "same"), param(&format!("own_{t}"), "x")],
                            vec![tag("last", &t.to_string())],
                        ),
                    )
                    .await
            })
        })
        .collect();
    let results = join_all("writes to one run", handles).await;
    let errs = errors(&results);
    assert!(
        errs.is_empty(),
        "concurrent writes to one run must succeed: {errs:#?}"
    );
    let run = store.get_run(&id).await.must("get_run");
    assert_eq!(
        history(&*store, &id, "m").await.len() as i64,
        n,
        "every metric row"
    );
    let latest = run.data.metrics.iter().find(|m| m.key == "m").expect("m");
    assert_eq!(
        latest.step,
        n - 1,
        "latest is the highest step whatever the commit order"
    );
    assert_eq!(
        run.data.params.len() as i64,
        n + 1,
        "shared + one own param per task"
    );
    let last: i64 = tag_map(&run.data.tags)["last"]
        .parse()
        .expect("numeric tag");
    assert!(
        (0..n).contains(&last),
        "the tag holds one of the written values"
    );

    // Identical batches sent concurrently (client retries racing each other).
    let same = batch(
        vec![metric("retry", 1.0, T0, 0), metric("retry", 2.0, T0 + 1, 1)],
        vec![param("retry_p", "v")],
        vec![tag("retry_t", "v")],
    );
    let handles: Vec<_> = (0..8)
        .map(|_| {
            let store = store.clone();
            let id = id.clone();
            let b = same.clone();
            tokio::spawn(async move { store.log_batch(&id, &b).await })
        })
        .collect();
    let results = join_all("identical batches", handles).await;
    let errs = errors(&results);
    assert!(
        errs.is_empty(),
        "identical concurrent batches must all succeed: {errs:#?}"
    );
    assert_eq!(
        history(&*store, &id, "retry").await.len(),
        2,
        "identical concurrent batches must not duplicate history"
    );

    // First-write race on one param key with different values.
    let handles: Vec<_> = (0..8)
        .map(|t| {
            let store = store.clone();
            let id = id.clone();
            tokio::spawn(async move {
                store
                    .log_batch(
                        &id,
                        &batch(vec![], vec![param("race", &t.to_string())], vec![]),
                    )
                    .await
            })
        })
        .collect();
    let results = join_all("param race", handles).await;
    let winners = results.iter().filter(|r| r.is_ok()).count();
    let others: Vec<String> = results
        .iter()
        .filter_map(|r| match r {
            Err(CoreError::InvalidParameter(_)) | Ok(()) => None,
            Err(e) => Some(format!("{e:?}")),
        })
        .collect();
    assert!(
        others.is_empty(),
        "losers of a param race must get InvalidParameter: {others:#?}"
    );
    assert_eq!(winners, 1, "exactly one writer of param 'race' wins");
    let run = store.get_run(&id).await.must("get_run");
    let value = param_map(&run.data.params)
        .get("race")
        .cloned()
        .expect("param race was written");
    let winner = results
        .iter()
        .position(|r| r.is_ok())
        .expect("one winner")
        .to_string();
    assert_eq!(value, winner, "the stored value is the winner's");
}

/// Concurrent experiment creation: distinct names all succeed with distinct ids; for one
/// contested name exactly one wins and the rest get AlreadyExists.
pub async fn concurrent_experiment_creation(store: Store) {
    prepare(&*store).await;
    let create = |store: Store, name: String| async move {
        store
            .create_experiment(NewExperiment {
                name,
                artifact_location: ArtifactLocation::UnderRoot(ARTIFACT_ROOT.into()),
                tags: vec![tag("k", "v")],
                now: T0,
            })
            .await
    };
    let handles: Vec<_> = (0..24)
        .map(|i| {
            let name = if i % 3 == 0 {
                "contested".to_string()
            } else {
                format!("distinct-{i}")
            };
            tokio::spawn(create(store.clone(), name))
        })
        .collect();
    let results = join_all("experiment creation", handles).await;
    let mut ids = Vec::new();
    let mut contested_ok = 0;
    for (i, r) in results.iter().enumerate() {
        match (i % 3 == 0, r) {
            (false, Ok(id)) => ids.push(id.clone()),
            (false, Err(e)) => panic!("creating distinct-{i} failed: {e:?}"),
            (true, Ok(id)) => {
                contested_ok += 1;
                ids.push(id.clone());
            }
            (true, Err(CoreError::AlreadyExists(_))) => {}
            (true, Err(e)) => {
                panic!("losers of a name race must get AlreadyExists, task {i} got {e:?}")
            }
        }
    }
    assert_eq!(
        contested_ok, 1,
        "exactly one 'contested' experiment is created"
    );
    let mut unique = ids.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(
        unique.len(),
        ids.len(),
        "every created experiment has its own id"
    );
    for id in &ids {
        let id: i64 = id.parse().expect("numeric id");
        let exp = store.get_experiment(id).await.must("get_experiment");
        assert_eq!(
            tag_map(&exp.tags),
            tag_map(&[tag("k", "v")]),
            "tags of {id}"
        );
        assert_eq!(
            exp.artifact_location,
            format!("{ARTIFACT_ROOT}/{id}"),
            "location of {id} uses its own id"
        );
    }
}
