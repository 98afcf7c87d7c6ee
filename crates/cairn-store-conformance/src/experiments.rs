//! Experiments: creation, lookup, artifact locations, tags, rename, lifecycle.

use cairn_core::model::{LifecycleStage, ViewType};
use cairn_core::store::{ArtifactLocation, ExperimentSearch, NewExperiment, RunSearch};
use cairn_core::CoreError;

use crate::support::*;
use crate::Store;

/// Create with tags, then get by id and by name; unknown ids and names are reported.
pub async fn experiment_create_and_get(store: Store) {
    prepare(&*store).await;
    let tags = vec![tag("team", "ml"), tag("owner", "ana")];
    let name = "conformance-create";
    let id = new_experiment_with(
        &*store,
        name,
        ArtifactLocation::UnderRoot("s3://bucket/root".into()),
        tags.clone(),
        T0 + 5,
    )
    .await;
    assert_ne!(
        id, 0,
        "a new experiment must not take id 0 (the Default experiment)"
    );

    let exp = store.get_experiment(id).await.must("get_experiment");
    assert_eq!(
        exp.experiment_id,
        id.to_string(),
        "experiment_id round-trip"
    );
    assert_eq!(exp.name, name, "name round-trip");
    assert_eq!(
        exp.artifact_location,
        format!("s3://bucket/root/{id}"),
        "UnderRoot location is <root>/<id>"
    );
    assert_eq!(exp.lifecycle_stage, LifecycleStage::Active, "new is active");
    assert_eq!(exp.creation_time, T0 + 5, "creation_time is `now`");
    assert_eq!(exp.last_update_time, T0 + 5, "last_update_time is `now`");
    assert_eq!(tag_map(&exp.tags), tag_map(&tags), "initial tags");

    let by_name = store
        .get_experiment_by_name(name)
        .await
        .must("get_experiment_by_name")
        .expect("get_experiment_by_name must find a just-created experiment");
    assert_eq!(
        normalized(by_name),
        normalized(exp.clone()),
        "get_experiment_by_name and get_experiment must agree"
    );

    assert!(
        store
            .get_experiment_by_name("no-such-experiment")
            .await
            .must("get_experiment_by_name(unknown)")
            .is_none(),
        "an unknown name is Ok(None)"
    );
    assert!(
        store
            .get_experiment_by_name("CONFORMANCE-CREATE")
            .await
            .must("get_experiment_by_name(other case)")
            .is_none(),
        "names are matched exactly (case-sensitively)"
    );
    assert_err!(
        store.get_experiment(id + 10_000).await,
        CoreError::NotFound(_),
        "get_experiment of an unknown id"
    );

    let second = new_experiment(&*store, "conformance-create-2").await;
    assert_ne!(second, id, "every experiment gets its own id");
    assert_ne!(second, 0, "id 0 is reserved for Default");
}

/// Names are unique across all lifecycle stages; a failed create writes nothing.
pub async fn experiment_duplicate_name(store: Store) {
    prepare(&*store).await;
    let id = new_experiment_with(
        &*store,
        "dup",
        ArtifactLocation::UnderRoot(ARTIFACT_ROOT.into()),
        vec![tag("first", "yes")],
        T0,
    )
    .await;
    assert_err!(
        store
            .create_experiment(NewExperiment {
                name: "dup".into(),
                artifact_location: ArtifactLocation::Explicit("s3://elsewhere".into()),
                tags: vec![tag("second", "yes")],
                now: T0 + 1,
            })
            .await,
        CoreError::AlreadyExists(_),
        "creating a second experiment named 'dup'"
    );
    let exp = store
        .get_experiment_by_name("dup")
        .await
        .must("get_experiment_by_name(dup)")
        .expect("the original 'dup' still exists");
    assert_eq!(
        exp.experiment_id,
        id.to_string(),
        "the original keeps the name"
    );
    assert_eq!(
        tag_map(&exp.tags),
        tag_map(&[tag("first", "yes")]),
        "the failed create must not have touched the original's tags"
    );
    assert!(
        !exp.artifact_location.starts_with("s3://elsewhere"),
        "the failed create must not have changed the location"
    );

    // Uniqueness is exact: a different case is a different name.
    let other_case = new_experiment(&*store, "DUP").await;
    assert_ne!(other_case, id, "'DUP' is a separate experiment");

    // A deleted experiment keeps its name reserved (as in MLflow).
    store
        .set_experiment_lifecycle(id, LifecycleStage::Deleted, T0 + 2)
        .await
        .must("delete 'dup'");
    assert_err!(
        store
            .create_experiment(NewExperiment {
                name: "dup".into(),
                artifact_location: ArtifactLocation::UnderRoot(ARTIFACT_ROOT.into()),
                tags: Vec::new(),
                now: T0 + 3,
            })
            .await,
        CoreError::AlreadyExists(_),
        "re-using the name of a deleted experiment"
    );

    let all = store
        .search_experiments(&ExperimentSearch {
            filter: filter(cairn_core::search::SearchKind::Experiments, "name = 'dup'"),
            view: ViewType::All,
            max_results: 100,
            order_by: Vec::new(),
            offset: 0,
        })
        .await
        .must("search name = 'dup'");
    assert_eq!(
        all.items.len(),
        1,
        "exactly one experiment is named 'dup' after the failed creates"
    );
}

/// `UnderRoot` yields `<root>/<id>` (one slash), `Explicit` is kept verbatim, and runs and
/// logged models nest under whichever location the experiment has.
pub async fn experiment_artifact_location(store: Store) {
    prepare(&*store).await;
    for (i, root) in ["mlflow-artifacts:/", "file:///tmp/root/", "s3://bucket/a/b"]
        .into_iter()
        .enumerate()
    {
        let id = new_experiment_with(
            &*store,
            &format!("under-root-{i}"),
            ArtifactLocation::UnderRoot(root.into()),
            Vec::new(),
            T0,
        )
        .await;
        let exp = store.get_experiment(id).await.must("get_experiment");
        let want = format!("{}/{id}", root.trim_end_matches('/'));
        assert_eq!(
            exp.artifact_location, want,
            "UnderRoot({root:?}) must become <root>/<id>"
        );
        let run = create_run(&*store, id, "r").await;
        assert_eq!(
            run.info.artifact_uri,
            format!("{want}/{}/artifacts", run.info.run_id),
            "run artifact_uri is <experiment location>/<run_id>/artifacts"
        );
    }

    let explicit = "s3://bucket/explicit/path/";
    let id = new_experiment_with(
        &*store,
        "explicit",
        ArtifactLocation::Explicit(explicit.into()),
        Vec::new(),
        T0,
    )
    .await;
    let exp = store.get_experiment(id).await.must("get_experiment");
    assert_eq!(
        exp.artifact_location, explicit,
        "an Explicit location is stored verbatim (trailing slash included)"
    );
    let run = create_run(&*store, id, "r").await;
    assert_eq!(
        run.info.artifact_uri,
        format!("s3://bucket/explicit/path/{}/artifacts", run.info.run_id),
        "run artifact_uri under an explicit location (no double slash)"
    );
    let fetched = store.get_run(&run.info.run_id).await.must("get_run");
    assert_eq!(
        fetched.info.artifact_uri, run.info.artifact_uri,
        "get_run returns the same artifact_uri as create_run"
    );
}

/// Tags: set (upsert), delete, and the errors for missing tags and experiments.
pub async fn experiment_tags(store: Store) {
    prepare(&*store).await;
    let id = new_experiment_with(
        &*store,
        "tags",
        ArtifactLocation::UnderRoot(ARTIFACT_ROOT.into()),
        vec![tag("a", "1"), tag("b", "2")],
        T0,
    )
    .await;
    store
        .set_experiment_tag(id, &tag("c", "3"))
        .await
        .must("set new tag");
    store
        .set_experiment_tag(id, &tag("a", "one"))
        .await
        .must("upsert tag a");
    let exp = store.get_experiment(id).await.must("get_experiment");
    assert_eq!(
        tag_map(&exp.tags),
        tag_map(&[tag("a", "one"), tag("b", "2"), tag("c", "3")]),
        "set_experiment_tag adds new keys and overwrites existing ones"
    );

    store
        .delete_experiment_tag(id, "b")
        .await
        .must("delete tag b");
    let exp = store.get_experiment(id).await.must("get_experiment");
    assert_eq!(
        tag_map(&exp.tags),
        tag_map(&[tag("a", "one"), tag("c", "3")]),
        "delete_experiment_tag removes exactly that key"
    );
    assert_err!(
        store.delete_experiment_tag(id, "b").await,
        CoreError::NotFound(_),
        "deleting a tag that is already gone"
    );
    assert_err!(
        store.delete_experiment_tag(id, "never-set").await,
        CoreError::NotFound(_),
        "deleting a tag that never existed"
    );
    assert_err!(
        store.set_experiment_tag(id + 10_000, &tag("x", "y")).await,
        CoreError::NotFound(_),
        "setting a tag on an unknown experiment"
    );
    assert_err!(
        store.delete_experiment_tag(id + 10_000, "a").await,
        CoreError::NotFound(_),
        "deleting a tag of an unknown experiment"
    );

    // Tag keys are per experiment.
    let other = new_experiment(&*store, "tags-other").await;
    store
        .set_experiment_tag(other, &tag("a", "other"))
        .await
        .must("set tag on other experiment");
    let exp = store.get_experiment(id).await.must("get_experiment");
    assert_eq!(
        tag_map(&exp.tags).get("a").map(String::as_str),
        Some("one"),
        "a tag on another experiment must not leak"
    );

    // A deleted experiment is read-only.
    store
        .set_experiment_lifecycle(id, LifecycleStage::Deleted, T0 + 1)
        .await
        .must("delete experiment");
    assert_err!(
        store.set_experiment_tag(id, &tag("z", "1")).await,
        CoreError::InvalidParameter(_) | CoreError::InvalidState(_),
        "setting a tag on a deleted experiment"
    );
}

/// Rename: new name visible everywhere, clashes and deleted experiments refused.
pub async fn experiment_rename(store: Store) {
    prepare(&*store).await;
    let id = new_experiment(&*store, "before").await;
    let other = new_experiment(&*store, "taken").await;

    store
        .rename_experiment(id, "after", T0 + 100)
        .await
        .must("rename");
    let exp = store.get_experiment(id).await.must("get_experiment");
    assert_eq!(exp.name, "after", "rename changes the name");
    assert_eq!(
        exp.last_update_time,
        T0 + 100,
        "rename sets last_update_time to `now`"
    );
    assert_eq!(exp.creation_time, T0, "rename keeps creation_time");
    assert!(
        store
            .get_experiment_by_name("before")
            .await
            .must("get_experiment_by_name(before)")
            .is_none(),
        "the old name no longer resolves"
    );
    let by_new = store
        .get_experiment_by_name("after")
        .await
        .must("get_experiment_by_name(after)")
        .expect("the new name resolves");
    assert_eq!(by_new.experiment_id, id.to_string());
    // The old name is free again.
    new_experiment(&*store, "before").await;

    assert_err!(
        store.rename_experiment(id, "taken", T0 + 200).await,
        CoreError::AlreadyExists(_),
        "renaming onto another experiment's name"
    );
    let exp = store.get_experiment(id).await.must("get_experiment");
    assert_eq!(exp.name, "after", "a refused rename changes nothing");
    let taken = store.get_experiment(other).await.must("get_experiment");
    assert_eq!(taken.name, "taken");

    store
        .rename_experiment(id, "after", T0 + 300)
        .await
        .must("renaming an experiment to its own name is allowed");

    assert_err!(
        store.rename_experiment(id + 10_000, "ghost", T0).await,
        CoreError::NotFound(_),
        "renaming an unknown experiment"
    );

    store
        .set_experiment_lifecycle(id, LifecycleStage::Deleted, T0 + 400)
        .await
        .must("delete");
    assert_err!(
        store
            .rename_experiment(id, "renamed-while-deleted", T0)
            .await,
        CoreError::InvalidState(_),
        "renaming a deleted experiment"
    );
    let exp = store.get_experiment(id).await.must("get_experiment");
    assert_eq!(exp.name, "after", "a refused rename changes nothing");
}

fn runs_in(experiment_id: i64, view: ViewType) -> RunSearch {
    RunSearch {
        experiment_ids: vec![experiment_id],
        filter: None,
        view,
        max_results: 1000,
        order_by: Vec::new(),
        offset: 0,
    }
}

/// Deleting an experiment deletes its runs; restoring brings them back. Repeating either
/// transition is an error; unknown ids are NotFound.
pub async fn experiment_delete_restore_cascades_to_runs(store: Store) {
    prepare(&*store).await;
    let id = new_experiment(&*store, "cascade").await;
    let bystander = new_experiment(&*store, "bystander").await;
    let mut run_ids = Vec::new();
    for i in 0..3 {
        run_ids.push(create_run(&*store, id, &format!("r{i}")).await.info.run_id);
    }
    let other_run = create_run(&*store, bystander, "other").await.info.run_id;
    // Deleted on its own before the experiment: a restore must not resurrect it.
    let loner = create_run(&*store, id, "loner").await.info.run_id;
    store
        .set_run_lifecycle(&loner, LifecycleStage::Deleted, T0 + 40)
        .await
        .must("delete loner run");

    store
        .set_experiment_lifecycle(id, LifecycleStage::Deleted, T0 + 50)
        .await
        .must("delete experiment");
    let exp = store
        .get_experiment(id)
        .await
        .must("get_experiment works on deleted experiments");
    assert_eq!(exp.lifecycle_stage, LifecycleStage::Deleted);
    assert_eq!(
        exp.last_update_time,
        T0 + 50,
        "delete sets last_update_time"
    );
    let by_name = store
        .get_experiment_by_name("cascade")
        .await
        .must("get_experiment_by_name")
        .expect("get_experiment_by_name finds deleted experiments too");
    assert_eq!(by_name.lifecycle_stage, LifecycleStage::Deleted);

    for r in &run_ids {
        let run = store.get_run(r).await.must("get_run of a cascaded run");
        assert_eq!(
            run.info.lifecycle_stage,
            LifecycleStage::Deleted,
            "deleting the experiment must delete its run {r}"
        );
    }
    let other = store.get_run(&other_run).await.must("get_run");
    assert_eq!(
        other.info.lifecycle_stage,
        LifecycleStage::Active,
        "runs of other experiments are untouched"
    );
    let active = store
        .search_runs(&runs_in(id, ViewType::ActiveOnly))
        .await
        .must("search active runs");
    assert!(
        active.items.is_empty(),
        "no active runs remain in a deleted experiment"
    );
    let deleted = store
        .search_runs(&runs_in(id, ViewType::DeletedOnly))
        .await
        .must("search deleted runs");
    assert_eq!(
        deleted.items.len(),
        run_ids.len() + 1,
        "all runs are deleted (the cascaded ones and the loner)"
    );

    assert!(
        store
            .set_experiment_lifecycle(id, LifecycleStage::Deleted, T0 + 60)
            .await
            .is_err(),
        "deleting an already deleted experiment must fail"
    );
    assert_err!(
        store.create_run(new_run(id, "late", T0)).await,
        CoreError::InvalidParameter(_),
        "creating a run in a deleted experiment"
    );

    store
        .set_experiment_lifecycle(id, LifecycleStage::Active, T0 + 70)
        .await
        .must("restore experiment");
    let exp = store.get_experiment(id).await.must("get_experiment");
    assert_eq!(exp.lifecycle_stage, LifecycleStage::Active);
    assert_eq!(
        exp.last_update_time,
        T0 + 70,
        "restore sets last_update_time"
    );
    for r in &run_ids {
        let run = store.get_run(r).await.must("get_run");
        assert_eq!(
            run.info.lifecycle_stage,
            LifecycleStage::Active,
            "restoring the experiment must restore its run {r}"
        );
    }
    let loner_now = store.get_run(&loner).await.must("get_run loner");
    assert_eq!(
        loner_now.info.lifecycle_stage,
        LifecycleStage::Deleted,
        "a run deleted on its own before the experiment stays deleted after the restore"
    );
    assert!(
        store
            .set_experiment_lifecycle(id, LifecycleStage::Active, T0 + 80)
            .await
            .is_err(),
        "restoring an active experiment must fail"
    );
    assert_err!(
        store
            .set_experiment_lifecycle(id + 10_000, LifecycleStage::Deleted, T0)
            .await,
        CoreError::NotFound(_),
        "deleting an unknown experiment"
    );
    assert_err!(
        store
            .set_experiment_lifecycle(id + 10_000, LifecycleStage::Active, T0)
            .await,
        CoreError::NotFound(_),
        "restoring an unknown experiment"
    );
}

/// `ensure_default_experiment` creates "0"/"Default" once; later calls change nothing.
pub async fn experiment_default_is_idempotent(store: Store) {
    prepare(&*store).await;
    let default = store
        .get_experiment(0)
        .await
        .must("experiment 0 exists after ensure_default_experiment");
    assert_eq!(default.experiment_id, "0");
    assert_eq!(default.name, "Default");
    assert_eq!(default.lifecycle_stage, LifecycleStage::Active);
    assert_eq!(
        default.artifact_location,
        format!("{ARTIFACT_ROOT}/0"),
        "Default's location is the one given"
    );
    assert_eq!(default.creation_time, T0);

    store
        .ensure_default_experiment("s3://somewhere-else/0", T0 + 999)
        .await
        .must("second ensure_default_experiment");
    prepare(&*store).await;
    let again = store.get_experiment(0).await.must("get_experiment(0)");
    assert_eq!(
        normalized(again),
        normalized(default),
        "calling ensure_default_experiment again must not change experiment 0"
    );
    let by_name = store
        .get_experiment_by_name("Default")
        .await
        .must("get_experiment_by_name(Default)")
        .expect("Default resolves by name");
    assert_eq!(by_name.experiment_id, "0");

    let id = new_experiment(&*store, "after-default").await;
    assert!(id > 0, "ids after Default are positive, got {id}");
    let run = create_run(&*store, 0, "in-default").await;
    assert_eq!(run.info.experiment_id, "0", "runs can go to Default");
    assert_eq!(
        run.info.artifact_uri,
        format!("{ARTIFACT_ROOT}/0/{}/artifacts", run.info.run_id)
    );

    let page = store
        .search_experiments(&ExperimentSearch {
            filter: None,
            view: ViewType::ActiveOnly,
            max_results: 100,
            order_by: Vec::new(),
            offset: 0,
        })
        .await
        .must("search_experiments");
    let zeros = page.items.iter().filter(|e| e.experiment_id == "0").count();
    assert_eq!(zeros, 1, "Default appears exactly once in searches");
}
