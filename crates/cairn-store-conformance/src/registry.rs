//! The model registry: registered models, version numbering (also under concurrency),
//! rename and delete cascades, aliases, stage transitions, tags and both searches.

use std::collections::{BTreeMap, BTreeSet};

use cairn_core::model::Tag;
use cairn_core::registry::{
    ModelVersion, NewModelVersion, NewRegisteredModel, RegisteredModel, RegistrySearch, Stage,
    StageTransition, IS_PROMPT_TAG_KEY,
};
use cairn_core::search::SearchKind;
use cairn_core::service::split_prompt_clause;
use cairn_core::store::NewLoggedModel;
use cairn_core::CoreError;

use crate::support::*;
use crate::{Registry, Store};

fn new_model(name: &str, tags: Vec<Tag>) -> NewRegisteredModel {
    NewRegisteredModel {
        name: name.into(),
        description: None,
        tags,
        now: T0,
    }
}

fn new_version(name: &str, source: &str, now: i64) -> NewModelVersion {
    NewModelVersion {
        name: name.into(),
        source: source.into(),
        storage_location: None,
        run_id: None,
        run_link: None,
        description: None,
        model_id: None,
        tags: Vec::new(),
        now,
    }
}

async fn model(reg: &Registry, name: &str) -> RegisteredModel {
    reg.create_registered_model(new_model(name, Vec::new()))
        .await
        .must(format_args!("create_registered_model({name:?})"))
}

async fn version(reg: &Registry, name: &str, source: &str) -> ModelVersion {
    reg.create_model_version(new_version(name, source, T0))
        .await
        .must(format_args!("create_model_version({name:?})"))
}

/// A search as the service builds it, prompt clause split off.
fn query(kind: SearchKind, f: &str, order_by: &[&str], max_results: u64) -> RegistrySearch {
    let (filter, exclude_prompts) = split_prompt_clause(filter(kind, f));
    RegistrySearch {
        filter,
        exclude_prompts,
        order_by: order(kind, order_by),
        max_results,
        offset: 0,
    }
}

async fn search_models(reg: &Registry, q: &RegistrySearch, page: u64) -> Vec<String> {
    let what = format!("search_registered_models({:?})", q.filter);
    let found = collect_pages(&what, page, |offset| {
        let reg = reg.clone();
        let q = RegistrySearch {
            offset,
            max_results: page,
            ..q.clone()
        };
        async move { reg.search_registered_models(&q).await.must("search") }
    })
    .await;
    found.into_iter().map(|m| m.name).collect()
}

async fn search_versions(reg: &Registry, q: &RegistrySearch, page: u64) -> Vec<(String, i64)> {
    let what = format!("search_model_versions({:?})", q.filter);
    let found = collect_pages(&what, page, |offset| {
        let reg = reg.clone();
        let q = RegistrySearch {
            offset,
            max_results: page,
            ..q.clone()
        };
        async move { reg.search_model_versions(&q).await.must("search") }
    })
    .await;
    found.into_iter().map(|v| (v.name, v.version)).collect()
}

/// Create, get, duplicate, update; errors for unknown models.
pub async fn registry_model_create_get_update(store: Store, reg: Registry) {
    prepare(&*store).await;
    let tags = vec![tag("team", "ml"), tag("tier", "gold")];
    let created = reg
        .create_registered_model(NewRegisteredModel {
            name: "iris".into(),
            description: Some("first".into()),
            tags: tags.clone(),
            now: T0,
        })
        .await
        .must("create");
    assert_eq!(created.name, "iris");
    assert_eq!(created.creation_timestamp, T0);
    assert_eq!(created.last_updated_timestamp, T0);
    assert_eq!(created.description.as_deref(), Some("first"));
    assert_eq!(tag_map(&created.tags), tag_map(&tags));
    assert!(created.latest_versions.is_empty() && created.aliases.is_empty());
    assert_eq!(reg.get_registered_model("iris").await.must("get"), created);

    assert_err!(
        reg.create_registered_model(new_model("iris", Vec::new()))
            .await,
        CoreError::AlreadyExists(_),
        "duplicate name"
    );
    // Names compare byte-wise: a different case is a different model.
    model(&reg, "IRIS").await;
    assert_err!(
        reg.get_registered_model("nope").await,
        CoreError::NotFound(_),
        "unknown model"
    );

    let updated = reg
        .update_registered_model("iris", Some("second".into()), T0 + 5)
        .await
        .must("update");
    assert_eq!(updated.description.as_deref(), Some("second"));
    assert_eq!(updated.last_updated_timestamp, T0 + 5);
    assert_eq!(updated.creation_timestamp, T0);
    assert_err!(
        reg.update_registered_model("nope", None, T0).await,
        CoreError::NotFound(_),
        "update unknown"
    );
}

/// Versions count from 1; a deleted version's number is never handed out again, but a
/// model deleted and created anew starts over.
pub async fn registry_version_numbers_never_reused(store: Store, reg: Registry) {
    prepare(&*store).await;
    model(&reg, "m").await;
    let mut numbers = Vec::new();
    for i in 0..3 {
        numbers.push(version(&reg, "m", &format!("s3://b/{i}")).await.version);
    }
    assert_eq!(numbers, vec![1, 2, 3]);
    reg.delete_model_version("m", 3, T0 + 1)
        .await
        .must("delete v3");
    assert_err!(
        reg.get_model_version("m", 3).await,
        CoreError::NotFound(_),
        "deleted version"
    );
    assert_err!(
        reg.delete_model_version("m", 3, T0 + 1).await,
        CoreError::NotFound(_),
        "delete twice"
    );
    let next = version(&reg, "m", "s3://b/next").await;
    assert_eq!(next.version, numbers.len() as i64 + 1);
    assert_err!(
        reg.create_model_version(new_version("nope", "s3://x", T0))
            .await,
        CoreError::NotFound(_),
        "version of unknown model"
    );

    reg.delete_registered_model("m").await.must("delete model");
    model(&reg, "m").await;
    assert_eq!(version(&reg, "m", "s3://b/again").await.version, 1);
}

/// 32 concurrent creations on one model get exactly 1..=32.
pub async fn registry_concurrent_version_creation(store: Store, reg: Registry) {
    prepare(&*store).await;
    const N: i64 = 32;
    model(&reg, "hot").await;
    let tasks: Vec<_> = (0..N)
        .map(|i| {
            let reg = reg.clone();
            tokio::spawn(async move {
                reg.create_model_version(new_version("hot", &format!("s3://b/{i}"), T0 + i))
                    .await
            })
        })
        .collect();
    let mut got = Vec::new();
    for t in tasks {
        let mv = t
            .await
            .expect("task")
            .must("concurrent create_model_version");
        got.push(mv.version);
    }
    got.sort_unstable();
    assert_eq!(got, (1..=N).collect::<Vec<_>>(), "numbers must be 1..={N}");
    let all = search_versions(
        &reg,
        &query(SearchKind::ModelVersions, "name = 'hot'", &[], 1000),
        1000,
    )
    .await;
    assert_eq!(all.len() as i64, N);
}

/// Rename carries versions, tags and aliases; the old name is gone.
pub async fn registry_rename_moves_versions_tags_aliases(store: Store, reg: Registry) {
    prepare(&*store).await;
    reg.create_registered_model(new_model("old", vec![tag("k", "v")]))
        .await
        .must("create");
    let v1 = version(&reg, "old", "s3://b/1").await;
    version(&reg, "old", "s3://b/2").await;
    reg.set_model_version_tag("old", v1.version, &tag("vt", "x"))
        .await
        .must("tag");
    reg.set_registered_model_alias("old", "champion", v1.version)
        .await
        .must("alias");
    model(&reg, "taken").await;
    assert_err!(
        reg.rename_registered_model("old", "taken", T0 + 1).await,
        CoreError::AlreadyExists(_),
        "rename onto an existing name"
    );
    assert_err!(
        reg.rename_registered_model("nope", "x", T0 + 1).await,
        CoreError::NotFound(_),
        "rename unknown"
    );

    let renamed = reg
        .rename_registered_model("old", "new", T0 + 7)
        .await
        .must("rename");
    assert_eq!(renamed.name, "new");
    assert_eq!(renamed.last_updated_timestamp, T0 + 7);
    assert_eq!(tag_map(&renamed.tags), tag_map(&[tag("k", "v")]));
    assert_eq!(renamed.aliases.len(), 1);
    assert_eq!(renamed.aliases[0].alias, "champion");
    assert_eq!(renamed.aliases[0].version, v1.version);
    assert_err!(
        reg.get_registered_model("old").await,
        CoreError::NotFound(_),
        "old name"
    );
    let moved = reg
        .get_model_version("new", v1.version)
        .await
        .must("get v1");
    assert_eq!(moved.name, "new");
    assert_eq!(moved.source, v1.source);
    assert_eq!(tag_map(&moved.tags), tag_map(&[tag("vt", "x")]));
    assert_eq!(moved.aliases, vec!["champion".to_string()]);
    let by_alias = reg
        .get_model_version_by_alias("new", "champion")
        .await
        .must("alias after rename");
    assert_eq!(by_alias.version, v1.version);
    // Numbering continues where it was.
    assert_eq!(version(&reg, "new", "s3://b/3").await.version, 3);
    let in_old = search_versions(
        &reg,
        &query(SearchKind::ModelVersions, "name = 'old'", &[], 100),
        100,
    )
    .await;
    assert!(in_old.is_empty(), "{in_old:?}");
}

/// Deleting a model removes its versions, tags and aliases.
pub async fn registry_delete_cascades(store: Store, reg: Registry) {
    prepare(&*store).await;
    reg.create_registered_model(new_model("gone", vec![tag("k", "v")]))
        .await
        .must("create");
    let v = version(&reg, "gone", "s3://b/1").await;
    reg.set_model_version_tag("gone", v.version, &tag("vt", "1"))
        .await
        .must("tag");
    reg.set_registered_model_alias("gone", "a", v.version)
        .await
        .must("alias");
    model(&reg, "kept").await;
    version(&reg, "kept", "s3://b/kept").await;

    reg.delete_registered_model("gone").await.must("delete");
    assert_err!(
        reg.delete_registered_model("gone").await,
        CoreError::NotFound(_),
        "delete twice"
    );
    assert_err!(
        reg.get_model_version("gone", v.version).await,
        CoreError::NotFound(_),
        "version of a deleted model"
    );
    let all = search_versions(&reg, &query(SearchKind::ModelVersions, "", &[], 100), 100).await;
    assert_eq!(all, vec![("kept".to_string(), 1)]);
    // The same name again is a clean model.
    let again = model(&reg, "gone").await;
    assert!(again.tags.is_empty() && again.aliases.is_empty() && again.latest_versions.is_empty());
    assert_err!(
        reg.get_model_version_by_alias("gone", "a").await,
        CoreError::InvalidParameter(_),
        "alias of the deleted model"
    );
}

/// Set, move, read and delete aliases; deleting a version drops its aliases.
pub async fn registry_aliases(store: Store, reg: Registry) {
    prepare(&*store).await;
    model(&reg, "m").await;
    let v1 = version(&reg, "m", "s3://b/1").await;
    let v2 = version(&reg, "m", "s3://b/2").await;
    reg.set_registered_model_alias("m", "champion", v1.version)
        .await
        .must("set champion");
    reg.set_registered_model_alias("m", "challenger", v2.version)
        .await
        .must("set challenger");
    assert_eq!(
        reg.get_model_version_by_alias("m", "champion")
            .await
            .must("champion")
            .version,
        v1.version
    );
    // Moving an alias.
    reg.set_registered_model_alias("m", "champion", v2.version)
        .await
        .must("move champion");
    let got = reg.get_model_version("m", v2.version).await.must("v2");
    assert_eq!(
        got.aliases,
        vec!["challenger".to_string(), "champion".to_string()]
    );
    assert!(reg
        .get_model_version("m", v1.version)
        .await
        .must("v1")
        .aliases
        .is_empty());
    let m = reg.get_registered_model("m").await.must("model");
    let aliases: BTreeMap<String, i64> = m
        .aliases
        .iter()
        .map(|a| (a.alias.clone(), a.version))
        .collect();
    assert_eq!(
        aliases,
        BTreeMap::from([
            ("challenger".to_string(), v2.version),
            ("champion".to_string(), v2.version)
        ])
    );

    assert_err!(
        reg.get_model_version_by_alias("m", "missing").await,
        CoreError::InvalidParameter(_),
        "unknown alias"
    );
    assert_err!(
        reg.get_model_version_by_alias("nope", "champion").await,
        CoreError::NotFound(_),
        "alias of unknown model"
    );
    assert_err!(
        reg.set_registered_model_alias("m", "x", 99).await,
        CoreError::NotFound(_),
        "alias to unknown version"
    );

    reg.delete_registered_model_alias("m", "challenger")
        .await
        .must("delete alias");
    reg.delete_registered_model_alias("m", "challenger")
        .await
        .must("deleting an absent alias is fine");
    reg.delete_model_version("m", v2.version, T0 + 1)
        .await
        .must("delete v2");
    assert_err!(
        reg.get_model_version_by_alias("m", "champion").await,
        CoreError::InvalidParameter(_),
        "alias of a deleted version"
    );
    assert!(reg
        .get_registered_model("m")
        .await
        .must("m")
        .aliases
        .is_empty());
}

/// Stage transitions, archive_existing_versions and latest versions per stage.
pub async fn registry_stage_transitions(store: Store, reg: Registry) {
    prepare(&*store).await;
    model(&reg, "m").await;
    let mut versions = Vec::new();
    for i in 0..4 {
        versions.push(version(&reg, "m", &format!("s3://b/{i}")).await.version);
    }
    let transition = |version: i64, stage: Stage, archive: bool, now: i64| StageTransition {
        name: "m".into(),
        version,
        stage,
        archive_existing_versions: archive,
        now,
    };
    let mut stages: BTreeMap<i64, Stage> = versions.iter().map(|v| (*v, Stage::None)).collect();
    for (v, stage) in [
        (versions[0], Stage::Production),
        (versions[1], Stage::Production),
    ] {
        let mv = reg
            .transition_model_version_stage(&transition(v, stage, false, T0 + v))
            .await
            .must("transition");
        assert_eq!(mv.current_stage, stage);
        assert_eq!(mv.last_updated_timestamp, T0 + v);
        stages.insert(v, stage);
    }
    reg.transition_model_version_stage(&transition(versions[2], Stage::Staging, false, T0 + 10))
        .await
        .must("to staging");
    stages.insert(versions[2], Stage::Staging);

    // Expected latest per stage, from what was written.
    let expect_latest = |stages: &BTreeMap<i64, Stage>| -> BTreeMap<Stage, i64> {
        let mut out = BTreeMap::new();
        for (v, s) in stages {
            let e = out.entry(*s).or_insert(*v);
            *e = (*e).max(*v);
        }
        out
    };
    let latest = |m: &RegisteredModel| -> BTreeMap<Stage, i64> {
        m.latest_versions
            .iter()
            .map(|mv| (mv.current_stage, mv.version))
            .collect()
    };
    let m = reg.get_registered_model("m").await.must("m");
    assert_eq!(latest(&m), expect_latest(&stages));
    assert_eq!(m.last_updated_timestamp, T0 + 10);

    // Archive the other production versions when promoting the last one.
    let promoted = versions[3];
    reg.transition_model_version_stage(&transition(promoted, Stage::Production, true, T0 + 20))
        .await
        .must("promote with archive");
    for (v, s) in stages.iter_mut() {
        if *s == Stage::Production {
            *s = Stage::Archived;
        }
        if *v == promoted {
            *s = Stage::Production;
        }
    }
    for (v, s) in &stages {
        let got = reg.get_model_version("m", *v).await.must("get");
        assert_eq!(got.current_stage, *s, "version {v}");
        if *s == Stage::Archived {
            assert_eq!(got.last_updated_timestamp, T0 + 20, "archived version {v}");
        }
    }
    let m = reg.get_registered_model("m").await.must("m");
    assert_eq!(latest(&m), expect_latest(&stages));
    assert_err!(
        reg.transition_model_version_stage(&transition(99, Stage::Staging, false, T0))
            .await,
        CoreError::NotFound(_),
        "unknown version"
    );
}

/// Tags on models and versions: upsert, delete, absent deletes are fine.
pub async fn registry_tags(store: Store, reg: Registry) {
    prepare(&*store).await;
    model(&reg, "m").await;
    let v = version(&reg, "m", "s3://b/1").await;
    let mut want: BTreeMap<String, String> = BTreeMap::new();
    for (k, val) in [("a", "1"), ("b", "2"), ("a", "3")] {
        reg.set_registered_model_tag("m", &tag(k, val))
            .await
            .must("set model tag");
        reg.set_model_version_tag("m", v.version, &tag(k, val))
            .await
            .must("set version tag");
        want.insert(k.into(), val.into());
    }
    let long = "x".repeat(100_000);
    reg.set_model_version_tag("m", v.version, &tag("long", &long))
        .await
        .must("long value");
    let m = reg.get_registered_model("m").await.must("m");
    assert_eq!(tag_map(&m.tags), want);
    let got = reg.get_model_version("m", v.version).await.must("v");
    let mut want_v = want.clone();
    want_v.insert("long".into(), long.clone());
    assert_eq!(tag_map(&got.tags), want_v);

    reg.delete_registered_model_tag("m", "a")
        .await
        .must("delete");
    reg.delete_registered_model_tag("m", "a")
        .await
        .must("absent key is fine");
    reg.delete_model_version_tag("m", v.version, "b")
        .await
        .must("delete version tag");
    want.remove("a");
    want_v.remove("b");
    assert_eq!(
        tag_map(&reg.get_registered_model("m").await.must("m").tags),
        want
    );
    assert_eq!(
        tag_map(&reg.get_model_version("m", v.version).await.must("v").tags),
        want_v
    );
    assert_err!(
        reg.set_registered_model_tag("nope", &tag("a", "b")).await,
        CoreError::NotFound(_),
        "tag on unknown model"
    );
    assert_err!(
        reg.set_model_version_tag("m", 42, &tag("a", "b")).await,
        CoreError::NotFound(_),
        "tag on unknown version"
    );
}

/// Registered-model search: name and tag filters, the prompt clause, order and paging.
pub async fn registry_search_models(store: Store, reg: Registry) {
    prepare(&*store).await;
    // (name, tags, created)
    type Entry = (String, Vec<Tag>, i64);
    let corpus: Vec<Entry> = (0..12)
        .map(|i| {
            let name = match i % 3 {
                0 => format!("alpha-{i:02}"),
                1 => format!("Beta_{i:02}"),
                _ => format!("gamma.{i:02}"),
            };
            let mut tags = vec![tag("team", if i % 2 == 0 { "red" } else { "blue" })];
            if i % 4 == 0 {
                tags.push(tag("tier", &format!("t{i}")));
            }
            (name, tags, T0 + (i * 7 % 5) as i64)
        })
        .collect();
    for (name, tags, now) in &corpus {
        reg.create_registered_model(NewRegisteredModel {
            name: name.clone(),
            description: None,
            tags: tags.clone(),
            now: *now,
        })
        .await
        .must("create");
    }
    // A prompt: hidden unless asked for.
    reg.create_registered_model(new_model("prompt-1", vec![tag(IS_PROMPT_TAG_KEY, "true")]))
        .await
        .must("create prompt");

    let tag_of = |tags: &[Tag], k: &str| tags.iter().find(|t| t.key == k).map(|t| t.value.clone());
    let names = |pred: &dyn Fn(&Entry) -> bool| -> Vec<String> {
        let mut v: Vec<String> = corpus
            .iter()
            .filter(|c| pred(c))
            .map(|c| c.0.clone())
            .collect();
        v.sort();
        v
    };
    let prompt_clause = format!("tags.`{IS_PROMPT_TAG_KEY}` != 'true'");
    let cases: Vec<(String, Vec<String>)> = vec![
        (String::new(), names(&|_| true)),
        (prompt_clause.clone(), names(&|_| true)),
        (
            format!("name LIKE 'alpha%' AND {prompt_clause}"),
            names(&|c| like(&c.0, "alpha%")),
        ),
        (
            "name ILIKE 'beta%'".into(),
            names(&|c| ilike(&c.0, "beta%")),
        ),
        ("name = 'gamma.02'".into(), names(&|c| c.0 == "gamma.02")),
        ("name != 'gamma.02'".into(), names(&|c| c.0 != "gamma.02")),
        (
            "tags.team = 'red'".into(),
            names(&|c| tag_of(&c.1, "team").as_deref() == Some("red")),
        ),
        (
            "tags.tier LIKE 't%' AND tags.team = 'red'".into(),
            names(&|c| {
                tag_of(&c.1, "tier").is_some_and(|t| like(&t, "t%"))
                    && tag_of(&c.1, "team").as_deref() == Some("red")
            }),
        ),
        (
            "tags.tier != 't0'".into(),
            names(&|c| tag_of(&c.1, "tier").is_some_and(|t| t != "t0")),
        ),
        (
            format!("tags.`{IS_PROMPT_TAG_KEY}` = 'true'"),
            vec!["prompt-1".to_string()],
        ),
    ];
    for (f, want) in &cases {
        let got = search_models(&reg, &query(SearchKind::RegisteredModels, f, &[], 5), 5).await;
        assert_same_ids("registered models", &got, want, f);
    }

    // Order by creation time (ties by name), both directions, through pages.
    for desc in [false, true] {
        let clause = if desc {
            "creation_timestamp DESC"
        } else {
            "creation_timestamp ASC"
        };
        let mut want: Vec<(i64, String)> = corpus.iter().map(|c| (c.2, c.0.clone())).collect();
        want.sort_by(|a, b| {
            let by_time = if desc { b.0.cmp(&a.0) } else { a.0.cmp(&b.0) };
            by_time.then_with(|| a.1.cmp(&b.1))
        });
        let want: Vec<String> = want.into_iter().map(|w| w.1).collect();
        let got = search_models(
            &reg,
            &query(SearchKind::RegisteredModels, &prompt_clause, &[clause], 4),
            4,
        )
        .await;
        assert_same_ids("order by creation", &got, &want, clause);
    }
    let mut want = names(&|_| true);
    want.reverse();
    let got = search_models(
        &reg,
        &query(SearchKind::RegisteredModels, "", &["name DESC"], 3),
        3,
    )
    .await;
    assert_same_ids("order by name DESC", &got, &want, "name DESC");
}

/// Model-version search: attribute and tag filters, order and paging.
pub async fn registry_search_versions(store: Store, reg: Registry) {
    prepare(&*store).await;
    let runs = ["run-a", "run-b", "run-c"];
    // (name, version, run, source, tag "env", created)
    let mut corpus: Vec<(String, i64, String, String, String, i64)> = Vec::new();
    for (m, name) in ["m1", "m2", "m3"].iter().enumerate() {
        model(&reg, name).await;
        for i in 0..(m + 3) {
            let run = runs[(m + i) % runs.len()].to_string();
            let source = format!("s3://bucket/{name}/{i}");
            let env = if i % 2 == 0 { "prod" } else { "dev" }.to_string();
            let created = T0 + ((m * 10 + i) * 37 % 23) as i64;
            let mv = reg
                .create_model_version(NewModelVersion {
                    run_id: Some(run.clone()),
                    tags: vec![tag("env", &env)],
                    ..new_version(name, &source, created)
                })
                .await
                .must("create version");
            corpus.push((name.to_string(), mv.version, run, source, env, created));
        }
    }
    type Row = (String, i64, String, String, String, i64);
    let select = |pred: &dyn Fn(&Row) -> bool| -> Vec<(String, i64)> {
        // Default order for an explicit sort on name: name ASC, version DESC.
        let mut v: Vec<(String, i64)> = corpus
            .iter()
            .filter(|c| pred(c))
            .map(|c| (c.0.clone(), c.1))
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)));
        v
    };
    let cases: Vec<(&str, Vec<(String, i64)>)> = vec![
        ("name = 'm2'", select(&|c| c.0 == "m2")),
        ("run_id = 'run-b'", select(&|c| c.2 == "run-b")),
        (
            "run_id IN ('run-a', 'run-c')",
            select(&|c| c.2 == "run-a" || c.2 == "run-c"),
        ),
        (
            "source_path LIKE 's3://bucket/m3/%'",
            select(&|c| like(&c.3, "s3://bucket/m3/%")),
        ),
        ("version_number >= 3", select(&|c| c.1 >= 3)),
        (
            "name = 'm3' AND version_number < 3",
            select(&|c| c.0 == "m3" && c.1 < 3),
        ),
        ("tags.env = 'prod'", select(&|c| c.4 == "prod")),
        (
            "tags.env != 'prod' AND name ILIKE 'M1'",
            select(&|c| c.4 != "prod" && c.0 == "m1"),
        ),
    ];
    for (f, want) in &cases {
        let got = search_versions(
            &reg,
            &query(SearchKind::ModelVersions, f, &["name ASC"], 2),
            2,
        )
        .await;
        let show = |v: &[(String, i64)]| {
            v.iter()
                .map(|(n, v)| format!("{n}/{v}"))
                .collect::<Vec<_>>()
        };
        assert_same_ids("model versions", &show(&got), &show(want), f);
    }
    // Order by creation time descending; ties by name ASC, version DESC.
    let mut want: Vec<&Row> = corpus.iter().collect();
    want.sort_by(|a, b| b.5.cmp(&a.5).then(a.0.cmp(&b.0)).then(b.1.cmp(&a.1)));
    let want: Vec<String> = want.iter().map(|c| format!("{}/{}", c.0, c.1)).collect();
    let got: Vec<String> = search_versions(
        &reg,
        &query(
            SearchKind::ModelVersions,
            "",
            &["creation_timestamp DESC"],
            4,
        ),
        4,
    )
    .await
    .into_iter()
    .map(|(n, v)| format!("{n}/{v}"))
    .collect();
    assert_same_ids(
        "order by creation DESC",
        &got,
        &want,
        "creation_timestamp DESC",
    );
    let mut want: Vec<(i64, String)> = corpus.iter().map(|c| (c.1, c.0.clone())).collect();
    want.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.cmp(&b.1)));
    let want: Vec<String> = want.iter().map(|(v, n)| format!("{n}/{v}")).collect();
    let got: Vec<String> = search_versions(
        &reg,
        &query(SearchKind::ModelVersions, "", &["version_number ASC"], 5),
        5,
    )
    .await
    .into_iter()
    .map(|(n, v)| format!("{n}/{v}"))
    .collect();
    assert_same_ids("order by version ASC", &got, &want, "version_number ASC");
    let distinct: BTreeSet<&str> = corpus.iter().map(|c| c.0.as_str()).collect();
    assert_eq!(distinct.len(), 3);
}

/// Every field of a version comes back as written; update touches only the description.
pub async fn registry_model_version_fields_round_trip(store: Store, reg: Registry) {
    prepare(&*store).await;
    model(&reg, "m").await;
    let new = NewModelVersion {
        name: "m".into(),
        source: "models:/m-0123456789abcdef0123456789abcdef".into(),
        storage_location: Some("file:///art/1/models/m-0123/artifacts".into()),
        run_id: Some("0123456789abcdef0123456789abcdef".into()),
        run_link: Some("http://x/run".into()),
        description: Some("desc ünïcode".into()),
        model_id: Some("m-0123456789abcdef0123456789abcdef".into()),
        tags: vec![tag("a", "1")],
        now: T0 + 3,
    };
    let mv = reg.create_model_version(new.clone()).await.must("create");
    assert_eq!(mv.name, new.name);
    assert_eq!(mv.version, 1);
    assert_eq!(mv.source, new.source);
    assert_eq!(mv.storage_location, new.storage_location);
    assert_eq!(mv.run_id, new.run_id);
    assert_eq!(mv.run_link, new.run_link);
    assert_eq!(mv.description, new.description);
    assert_eq!(mv.model_id, new.model_id);
    assert_eq!(mv.current_stage, Stage::None);
    assert_eq!(mv.status, "READY");
    assert_eq!(mv.creation_timestamp, new.now);
    assert_eq!(mv.last_updated_timestamp, new.now);
    assert_eq!(tag_map(&mv.tags), tag_map(&new.tags));
    assert_eq!(reg.get_model_version("m", 1).await.must("get"), mv);
    // Creating a version touches the model.
    assert_eq!(
        reg.get_registered_model("m")
            .await
            .must("m")
            .last_updated_timestamp,
        new.now
    );

    let updated = reg
        .update_model_version("m", 1, Some("new".into()), T0 + 9)
        .await
        .must("update");
    assert_eq!(updated.description.as_deref(), Some("new"));
    assert_eq!(updated.last_updated_timestamp, T0 + 9);
    assert_eq!(
        ModelVersion {
            description: mv.description.clone(),
            last_updated_timestamp: mv.last_updated_timestamp,
            ..updated
        },
        mv
    );
    assert_err!(
        reg.update_model_version("m", 2, None, T0).await,
        CoreError::NotFound(_),
        "update unknown version"
    );
}

/// A version made from a logged model is listed in the model's `mlflow.modelVersions` tag
/// (a JSON list of `{"name", "version"}`), written in the version's transaction.
pub async fn registry_version_recorded_on_logged_model(store: Store, reg: Registry) {
    prepare(&*store).await;
    let exp = new_experiment(&*store, "lm").await;
    let model_id = format!("m-{}", fresh_id());
    store
        .create_logged_model(NewLoggedModel {
            model_id: model_id.clone(),
            experiment_id: exp,
            name: "clf".into(),
            model_type: None,
            source_run_id: None,
            tags: Vec::new(),
            params: Vec::new(),
            now: T0,
        })
        .await
        .must("create_logged_model");
    let mut want = Vec::new();
    for name in ["a", "b", "a"] {
        if reg.get_registered_model(name).await.is_err() {
            model(&reg, name).await;
        }
        let mv = reg
            .create_model_version(NewModelVersion {
                model_id: Some(model_id.clone()),
                ..new_version(name, &format!("models:/{model_id}"), T0)
            })
            .await
            .must("create version from the logged model");
        want.push(format!(
            "{{\"name\":\"{name}\",\"version\":{}}}",
            mv.version
        ));
    }
    let lm = store
        .get_logged_model(&model_id)
        .await
        .must("get_logged_model");
    let got = lm
        .tags
        .iter()
        .find(|t| t.key == "mlflow.modelVersions")
        .map(|t| t.value.clone());
    assert_eq!(got, Some(format!("[{}]", want.join(","))));
}

/// Races settle as sequential calls would: one winner, the rest get the error a later
/// call would get (never a deadlock, a 503 or an internal error).
pub async fn registry_races_settle_like_sequential_calls(store: Store, reg: Registry) {
    prepare(&*store).await;
    const N: usize = 8;
    async fn race<T: Send + 'static>(
        tasks: Vec<tokio::task::JoinHandle<Result<T, CoreError>>>,
    ) -> (usize, Vec<CoreError>) {
        let mut ok = 0;
        let mut errors = Vec::new();
        for t in tasks {
            match t.await.expect("task") {
                Ok(_) => ok += 1,
                Err(e) => errors.push(e),
            }
        }
        (ok, errors)
    }

    let creates = (0..N)
        .map(|_| {
            let reg = reg.clone();
            tokio::spawn(async move {
                reg.create_registered_model(new_model("same", Vec::new()))
                    .await
            })
        })
        .collect();
    let (ok, errors) = race(creates).await;
    assert_eq!(ok, 1, "one create wins: {errors:?}");
    assert!(
        errors
            .iter()
            .all(|e| matches!(e, CoreError::AlreadyExists(_))),
        "{errors:?}"
    );

    for i in 0..N {
        model(&reg, &format!("src-{i}")).await;
    }
    let renames = (0..N)
        .map(|i| {
            let reg = reg.clone();
            tokio::spawn(async move {
                reg.rename_registered_model(&format!("src-{i}"), "target", T0 + 1)
                    .await
            })
        })
        .collect();
    let (ok, errors) = race(renames).await;
    assert_eq!(ok, 1, "one rename wins: {errors:?}");
    assert!(
        errors
            .iter()
            .all(|e| matches!(e, CoreError::AlreadyExists(_))),
        "{errors:?}"
    );

    model(&reg, "del").await;
    version(&reg, "del", "s3://b/1").await;
    let deletes = (0..N)
        .map(|_| {
            let reg = reg.clone();
            tokio::spawn(async move { reg.delete_model_version("del", 1, T0 + 2).await })
        })
        .collect();
    let (ok, errors) = race(deletes).await;
    assert_eq!(ok, 1, "one delete wins: {errors:?}");
    assert!(
        errors.iter().all(|e| matches!(e, CoreError::NotFound(_))),
        "{errors:?}"
    );

    // Alias writes and stage transitions on one version all succeed.
    let v = version(&reg, "del", "s3://b/2").await.version;
    let writes = (0..N)
        .map(|i| {
            let reg = reg.clone();
            tokio::spawn(async move {
                reg.set_registered_model_alias("del", &format!("a{i}"), v)
                    .await?;
                reg.transition_model_version_stage(&StageTransition {
                    name: "del".into(),
                    version: v,
                    stage: if i % 2 == 0 {
                        Stage::Staging
                    } else {
                        Stage::Production
                    },
                    archive_existing_versions: true,
                    now: T0 + 3,
                })
                .await
                .map(|_| ())
            })
        })
        .collect();
    let (ok, errors) = race(writes).await;
    assert_eq!(ok, N, "{errors:?}");
    let got = reg.get_model_version("del", v).await.must("get");
    assert_eq!(got.aliases.len(), N);

    // Deletes, archiving transitions, tags and updates on one model's versions at once.
    model(&reg, "mix").await;
    for i in 0..N {
        version(&reg, "mix", &format!("s3://b/{i}")).await;
    }
    let mixed = (1..=N as i64)
        .map(|v| {
            let reg = reg.clone();
            tokio::spawn(async move {
                match v % 4 {
                    0 => reg.delete_model_version("mix", v, T0 + 4).await,
                    1 => reg
                        .transition_model_version_stage(&StageTransition {
                            name: "mix".into(),
                            version: v,
                            stage: Stage::Production,
                            archive_existing_versions: true,
                            now: T0 + 4,
                        })
                        .await
                        .map(|_| ()),
                    2 => reg.set_model_version_tag("mix", v, &tag("k", "v")).await,
                    _ => reg
                        .update_model_version("mix", v, Some("d".into()), T0 + 4)
                        .await
                        .map(|_| ()),
                }
            })
        })
        .collect();
    let (ok, errors) = race(mixed).await;
    assert_eq!(ok, N, "{errors:?}");
    let m = reg.get_registered_model("mix").await.must("mix");
    let production: Vec<i64> = m
        .latest_versions
        .iter()
        .filter(|mv| mv.current_stage == Stage::Production)
        .map(|mv| mv.version)
        .collect();
    assert_eq!(production.len(), 1, "{m:?}");
}
