//! Server lifecycle under real clients: concurrent writers and graceful shutdown.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{build_app, new_client, spawn_app, spawn_app_in, API, SHUTDOWN_TIMEOUT};
use serde_json::{json, Value};

const CLIENTS: usize = 64;
const BATCHES: usize = 5;

/// One client's work: its own connection pool, one run, five batches.
async fn client_session(base_url: String, n: usize) -> Result<String, String> {
    let client = new_client();
    let post = |endpoint: &str, body: Value| {
        let req = client
            .post(format!("{base_url}{API}/{endpoint}"))
            .json(&body);
        async move {
            let res = req.send().await.map_err(|e| e.to_string())?;
            let status = res.status().as_u16();
            let text = res.text().await.map_err(|e| e.to_string())?;
            if status == 200 {
                serde_json::from_str::<Value>(&text).map_err(|e| e.to_string())
            } else {
                Err(format!("{status}: {text}"))
            }
        }
    };
    let created = post(
        "runs/create",
        json!({ "experiment_id": "0", "run_name": format!("client-{n}") }),
    )
    .await?;
    let run = created["run"]["info"]["run_id"]
        .as_str()
        .ok_or("no run id")?
        .to_string();
    for b in 0..BATCHES {
        let step = b as i64;
        post(
            "runs/log-batch",
            json!({
                "run_id": run,
                "metrics": (0..20).map(|k| json!({
                    "key": format!("m{k}"), "value": step as f64, "timestamp": 1000 + step, "step": step
                })).collect::<Vec<_>>(),
                "params": [{ "key": format!("p{b}"), "value": "v" }],
                "tags": [{ "key": "batch", "value": b.to_string() }],
            }),
        )
        .await?;
    }
    Ok(run)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn many_concurrent_writers_all_succeed() {
    let app = spawn_app().await;
    let tasks: Vec<_> = (0..CLIENTS)
        .map(|n| tokio::spawn(client_session(app.base_url.clone(), n)))
        .collect();
    let mut runs = Vec::new();
    let mut failures = Vec::new();
    for t in tasks {
        match t.await.expect("client task panicked") {
            Ok(run) => runs.push(run),
            Err(e) => failures.push(e),
        }
    }
    assert!(failures.is_empty(), "failed requests: {failures:#?}");
    assert_eq!(runs.len(), CLIENTS);

    // Every write landed exactly once.
    for run in &runs {
        let h = app.history(run, "m7").await;
        let steps: Vec<i64> = h["metrics"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["step"].as_i64().unwrap())
            .collect();
        assert_eq!(steps, (0..BATCHES as i64).collect::<Vec<_>>(), "{run}");
        let body = app.get_ok("runs/get", &[("run_id", run)]).await;
        assert_eq!(
            body["run"]["data"]["params"].as_array().unwrap().len(),
            BATCHES
        );
    }
    let body = app
        .post_ok(
            "runs/search",
            json!({ "experiment_ids": ["0"], "max_results": 1000 }),
        )
        .await;
    assert_eq!(body["runs"].as_array().unwrap().len(), CLIENTS);
}

#[tokio::test]
async fn graceful_shutdown_completes_and_data_survives_a_restart() {
    let app = spawn_app().await;
    let exp = app.create_experiment("durable").await;
    let run = app.create_run_in(&exp).await;
    app.post_ok(
        "runs/log-batch",
        json!({
            "run_id": run,
            "metrics": [{ "key": "loss", "value": 0.5, "timestamp": 10, "step": 3 }],
            "params": [{ "key": "lr", "value": "0.01" }],
        }),
    )
    .await;
    // The client keeps its idle keep-alive connection open across the shutdown: that
    // must not hold the server up.
    let client = app.client.clone();
    let base_url = app.base_url.clone();
    let dir = app.stop().await;

    // The old port no longer answers.
    let after = client.get(format!("{base_url}/health")).send().await;
    assert!(after.is_err(), "server still answering: {after:?}");

    // A second server over the same data dir sees everything.
    let app = spawn_app_in(dir).await;
    let body = app
        .get_ok("experiments/get-by-name", &[("experiment_name", "durable")])
        .await;
    assert_eq!(body["experiment"]["experiment_id"], exp.as_str());
    let body = app.get_ok("runs/get", &[("run_id", &run)]).await;
    assert_eq!(
        body["run"]["data"]["params"],
        json!([{ "key": "lr", "value": "0.01" }])
    );
    assert_eq!(
        app.history(&run, "loss").await,
        json!({ "metrics": [{ "key": "loss", "value": 0.5, "timestamp": 10, "step": 3 }] })
    );
    // And it still accepts writes, and shuts down cleanly a second time.
    app.post_ok(
        "runs/update",
        json!({ "run_id": run, "status": "FINISHED", "end_time": 20 }),
    )
    .await;
    app.stop().await;
}

#[tokio::test]
async fn run_until_returns_when_the_shutdown_future_resolves() {
    // Drives `Application` directly, without the harness, so the future under test is
    // exactly the one `main` awaits.
    let dir = tempfile::tempdir().unwrap();
    let app = build_app(dir.path()).await;
    let port = app.port();
    assert_ne!(port, 0);
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until(async {
        rx.await.ok();
    }));
    let client = new_client();
    let res = client
        .get(format!("http://127.0.0.1:{port}/health"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.text().await.unwrap(), "OK");
    tx.send(()).unwrap();
    let result = tokio::time::timeout(SHUTDOWN_TIMEOUT, server)
        .await
        .expect("run_until did not return in time")
        .expect("server task panicked");
    assert!(result.is_ok(), "{result:?}");

    // Reopening the same directory works (the store was closed cleanly).
    let again = build_app(dir.path()).await;
    assert_ne!(again.port(), 0);
}
