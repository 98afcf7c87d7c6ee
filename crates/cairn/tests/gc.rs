//! `cairn gc` against a live server's data: deleted runs, experiments and logged models go,
//! with their artifacts; everything else stays; a dry run changes nothing.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::PathBuf;
use std::process::Command;

use cairn::gc::{self, GcOptions};
use cairn::ServerConfig;
use cairn_core::store::GcQuery;
use common::{files_under, spawn_app, TestApp};
use serde_json::json;

struct World {
    kept_run: String,
    deleted_run: String,
    doomed_exp: String,
    doomed_run: String,
    live_model: String,
    dead_model: String,
}

fn store_path(artifact_uri: &str) -> String {
    artifact_uri
        .strip_prefix("mlflow-artifacts:/")
        .unwrap()
        .to_string()
}

async fn upload(app: &TestApp, artifact_uri: &str, file: &str, body: &[u8]) {
    let res = app
        .client
        .put(app.url(&format!(
            "/api/2.0/mlflow-artifacts/artifacts/{}/{file}",
            store_path(artifact_uri)
        )))
        .body(body.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
}

async fn run_uri(app: &TestApp, run_id: &str) -> String {
    let run = app.get_ok("runs/get", &[("run_id", run_id)]).await;
    run["run"]["info"]["artifact_uri"]
        .as_str()
        .unwrap()
        .to_string()
}

async fn new_model(app: &TestApp, exp: &str, name: &str) -> (String, String) {
    let m = app
        .post_ok("logged-models", json!({"experiment_id": exp, "name": name}))
        .await;
    let info = &m["model"]["info"];
    (
        info["model_id"].as_str().unwrap().to_string(),
        info["artifact_uri"].as_str().unwrap().to_string(),
    )
}

async fn build_world(app: &TestApp) -> World {
    let keep = app.create_experiment("keep").await;
    let doomed_exp = app.create_experiment("doomed").await;
    let kept_run = app.create_run_in(&keep).await;
    let deleted_run = app.create_run_in(&keep).await;
    let doomed_run = app.create_run_in(&doomed_exp).await;
    for run in [&kept_run, &deleted_run, &doomed_run] {
        let uri = run_uri(app, run).await;
        upload(app, &uri, "model/weights.bin", &[7u8; 1000]).await;
        upload(app, &uri, "notes.txt", b"hello").await;
    }
    let (live_model, live_uri) = new_model(app, &keep, "live").await;
    let (dead_model, dead_uri) = new_model(app, &keep, "dead").await;
    upload(app, &live_uri, "MLmodel", b"flavors: {}").await;
    upload(app, &dead_uri, "MLmodel", b"flavors: {}").await;

    app.post_ok("runs/delete", json!({"run_id": deleted_run}))
        .await;
    app.post_ok("experiments/delete", json!({"experiment_id": doomed_exp}))
        .await;
    let res = app
        .client
        .delete(app.api(&format!("logged-models/{dead_model}")))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    World {
        kept_run,
        deleted_run,
        doomed_exp,
        doomed_run,
        live_model,
        dead_model,
    }
}

fn artifacts_dir(app: &TestApp) -> PathBuf {
    app._dir.path().join("artifacts")
}

#[tokio::test]
async fn gc_purges_deleted_entities_and_their_artifacts() {
    let app = spawn_app().await;
    let w = build_world(&app).await;
    let before = files_under(&artifacts_dir(&app));
    assert_eq!(before.len(), 8, "{before:?}");
    let config = ServerConfig::with_data_dir(app._dir.path());

    // Dry run: the plan and its size, nothing touched.
    let dry = gc::run(
        &config,
        &GcOptions {
            query: GcQuery::default(),
            dry_run: true,
            progress: false,
        },
    )
    .await
    .unwrap();
    let summary = gc::summary(&dry, true);
    assert!(
        summary.contains("Would purge 1 experiments, 1 runs, 1 logged models; 5 artifact files"),
        "{summary}"
    );
    assert_eq!(files_under(&artifacts_dir(&app)), before);
    app.get_ok("runs/get", &[("run_id", &w.deleted_run)]).await;

    // Too recent for --older-than: nothing qualifies.
    let recent = gc::run(
        &config,
        &GcOptions {
            query: GcQuery {
                deleted_before: Some(0),
                ..GcQuery::default()
            },
            dry_run: false,
            progress: false,
        },
    )
    .await
    .unwrap();
    assert!(recent.steps.is_empty(), "{recent:?}");

    let report = gc::run(
        &config,
        &GcOptions {
            query: GcQuery::default(),
            dry_run: false,
            progress: false,
        },
    )
    .await
    .unwrap();
    assert_eq!(report.files(), 5, "{report:?}");
    assert!(report.steps.iter().all(|s| s.purged), "{report:?}");

    // Only the kept run's and the live model's artifacts remain, on disk and over HTTP.
    let kept_uri = run_uri(&app, &w.kept_run).await;
    let mut expected = vec![
        format!("{}/model/weights.bin", store_path(&kept_uri)),
        format!("{}/notes.txt", store_path(&kept_uri)),
    ];
    let live = app
        .get_path(&format!("/api/2.0/mlflow/logged-models/{}", w.live_model))
        .await;
    let live_uri = live.body["model"]["info"]["artifact_uri"].as_str().unwrap();
    expected.push(format!("{}/MLmodel", store_path(live_uri)));
    expected.sort();
    assert_eq!(files_under(&artifacts_dir(&app)), expected);

    for run in [&w.deleted_run, &w.doomed_run] {
        let (status, body) = app.get("runs/get", &[("run_id", run)]).await;
        assert_eq!(status, 404, "{body}");
    }
    let (status, _) = app
        .get("experiments/get", &[("experiment_id", &w.doomed_exp)])
        .await;
    assert_eq!(status, 404);
    let gone = app
        .get_path(&format!("/api/2.0/mlflow/logged-models/{}", w.dead_model))
        .await;
    assert_eq!(gone.status, 404);
    // The name of a purged experiment can be used again.
    app.create_experiment("doomed").await;

    // Nothing left to do.
    let again = gc::run(
        &config,
        &GcOptions {
            query: GcQuery::default(),
            dry_run: false,
            progress: false,
        },
    )
    .await
    .unwrap();
    assert!(again.steps.is_empty());
}

#[tokio::test]
async fn gc_command_selects_by_run_and_reports() {
    let app = spawn_app().await;
    let w = build_world(&app).await;
    let before = files_under(&artifacts_dir(&app));
    let cairn = env!("CARGO_BIN_EXE_cairn");
    let dir = app._dir.path().to_str().unwrap();

    let out = Command::new(cairn)
        .args(["gc", "--data-dir", dir, "--dry-run", "--run-ids"])
        .arg(format!("{},{}", w.deleted_run, w.kept_run))
        .env("CAIRN_LOG", "warn")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains(
            "Would purge 0 experiments, 1 runs, 0 logged models; 2 artifact files (1005 bytes)"
        ),
        "{stdout}"
    );
    assert_eq!(files_under(&artifacts_dir(&app)), before);

    let out = Command::new(cairn)
        .args(["gc", "--data-dir", dir, "--older-than", "not-a-duration"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--older-than"));

    let out = Command::new(cairn)
        .args(["gc", "--data-dir", dir, "--run-ids", &w.deleted_run])
        .env("CAIRN_LOG", "warn")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(
        stdout.contains("Purged 0 experiments, 1 runs, 0 logged models; 2 artifact files"),
        "{stdout}"
    );
    assert_eq!(files_under(&artifacts_dir(&app)).len(), before.len() - 2);
    let (status, _) = app.get("runs/get", &[("run_id", &w.deleted_run)]).await;
    assert_eq!(status, 404);
    app.get_ok("runs/get", &[("run_id", &w.doomed_run)]).await;
}
