//! The wire format the MLflow client relies on: prefixes, camelCase, query strings,
//! special doubles, int64-as-string, meta endpoints, headers and idempotent retries.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{spawn_app, API};
use serde_json::{json, Value};

#[tokio::test]
async fn every_api_prefix_serves_the_same_routes() {
    let app = spawn_app().await;
    for prefix in [
        "/api/2.0/mlflow",
        "/ajax-api/2.0/mlflow",
        "/api/3.0/mlflow",
        "/ajax-api/3.0/mlflow",
    ] {
        let r = app
            .get_path(&format!("{prefix}/experiments/get?experiment_id=0"))
            .await;
        assert_eq!(r.status, 200, "{prefix}: {}", r.body);
        assert_eq!(r.body["experiment"]["experiment_id"], "0", "{prefix}");
        let name = format!("exp-{}", prefix.replace('/', "_"));
        let r = app
            .post_path(
                &format!("{prefix}/experiments/create"),
                &json!({ "name": name }),
            )
            .await;
        assert_eq!(r.status, 200, "{prefix}: {}", r.body);
        let id = r.body["experiment_id"].as_str().unwrap().to_string();
        // Written under one prefix, visible under the default one.
        let got = app
            .get_ok("experiments/get", &[("experiment_id", &id)])
            .await;
        assert_eq!(got["experiment"]["name"], name);
    }
}

#[tokio::test]
async fn default_experiment_exists_from_the_start() {
    let app = spawn_app().await;
    let body = app
        .get_ok("experiments/get", &[("experiment_id", "0")])
        .await;
    let e = &body["experiment"];
    assert_eq!(e["experiment_id"], "0");
    assert_eq!(e["name"], "Default");
    assert_eq!(e["lifecycle_stage"], "active");
    let body = app
        .get_ok("experiments/get-by-name", &[("experiment_name", "Default")])
        .await;
    assert_eq!(body["experiment"]["experiment_id"], "0");
}

#[tokio::test]
async fn camel_case_field_names_are_accepted() {
    let app = spawn_app().await;
    let exp = app.create_experiment("camel").await;
    let body = app
        .post_ok(
            "runs/create",
            json!({ "experimentId": exp, "runName": "camel-run", "startTime": 1234, "userId": "u" }),
        )
        .await;
    let info = &body["run"]["info"];
    assert_eq!(info["experiment_id"], exp.as_str());
    assert_eq!(info["run_name"], "camel-run");
    assert_eq!(info["start_time"], 1234);
    assert_eq!(info["user_id"], "u");
    let run = info["run_id"].as_str().unwrap().to_string();

    app.post_ok(
        "runs/log-batch",
        json!({ "runId": run, "metrics": [{ "key": "m", "value": 1.0, "timestamp": 5, "step": 1 }] }),
    )
    .await;
    let got = app
        .post_ok(
            "runs/search",
            json!({ "experimentIds": [exp], "maxResults": 1, "runViewType": "ACTIVE_ONLY" }),
        )
        .await;
    assert_eq!(got["runs"][0]["info"]["run_id"], run.as_str());
    let got = app
        .get_ok(
            "metrics/get-history",
            &[("runId", &run), ("metricKey", "m")],
        )
        .await;
    assert_eq!(got["metrics"][0]["value"], 1.0);
    app.post_ok(
        "runs/update",
        json!({ "runId": run, "status": "FINISHED", "endTime": 2000 }),
    )
    .await;
    let got = app.get_ok("runs/get", &[("run_id", &run)]).await;
    assert_eq!(got["run"]["info"]["end_time"], 2000);
    assert_eq!(got["run"]["info"]["status"], "FINISHED");
}

#[tokio::test]
async fn numeric_experiment_ids_are_accepted() {
    // MLflow's server stringifies every `experiment_id` / `experiment_ids` before parsing
    // (`proto_json_utils._stringify_all_experiment_ids`), so numbers are accepted.
    let app = spawn_app().await;
    let exp = app.create_experiment("numeric").await;
    let n: i64 = exp.parse().unwrap();
    let (status, body) = app.post("runs/create", json!({ "experiment_id": n })).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["run"]["info"]["experiment_id"], exp.as_str());
    let (status, body) = app
        .post("runs/search", json!({ "experiment_ids": [0, n] }))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["runs"].as_array().map(Vec::len), Some(1), "{body}");
    let (status, body) = app
        .post(
            "experiments/set-experiment-tag",
            json!({ "experiment_id": n, "key": "k", "value": "v" }),
        )
        .await;
    assert_eq!((status, body), (200, json!({})));
}

#[tokio::test]
async fn unknown_request_fields_are_ignored() {
    // MLflow parses with `ignore_unknown_fields=True`; newer clients send fields older
    // servers do not know.
    let app = spawn_app().await;
    let body = app
        .post_ok(
            "experiments/create",
            json!({ "name": "extra", "some_future_field": { "x": 1 } }),
        )
        .await;
    assert!(body["experiment_id"].is_string(), "{body}");
    let run = app.create_run().await;
    app.post_ok(
        "runs/log-batch",
        json!({ "run_id": run, "metrics": [
            { "key": "m", "value": 1.0, "timestamp": 1, "step": 0, "future": true }
        ], "future_list": [1, 2] }),
    )
    .await;
}

#[tokio::test]
async fn runs_get_returns_run_id_and_run_uuid() {
    let app = spawn_app().await;
    let run = app.create_run().await;
    let body = app.get_ok("runs/get", &[("run_id", &run)]).await;
    let info = &body["run"]["info"];
    assert_eq!(info["run_id"], run.as_str());
    assert_eq!(info["run_uuid"], run.as_str());
    assert_eq!(info["status"], "RUNNING");
    assert_eq!(info["lifecycle_stage"], "active");
    // The legacy request field works as well.
    let legacy = app.get_ok("runs/get", &[("run_uuid", &run)]).await;
    assert_eq!(legacy["run"]["info"]["run_id"], run.as_str());
}

#[tokio::test]
async fn query_strings_with_repeated_keys_are_lists() {
    let app = spawn_app().await;
    let a = app.create_run().await;
    let b = app.create_run().await;
    for (run, value) in [(&a, 1.0), (&b, 2.0)] {
        app.post_ok(
            "runs/log-batch",
            json!({ "run_id": run, "metrics": [{ "key": "m", "value": value, "timestamp": 1, "step": 0 }] }),
        )
        .await;
    }
    let body = app
        .get_ok(
            "metrics/get-history-bulk-interval",
            &[("run_ids", &a), ("run_ids", &b), ("metric_key", "m")],
        )
        .await;
    let mut got: Vec<(String, f64)> = body["metrics"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["run_id"].as_str().unwrap().to_string(),
                m["value"].as_f64().unwrap(),
            )
        })
        .collect();
    got.sort_by(|x, y| x.0.cmp(&y.0));
    let mut want = vec![(a.clone(), 1.0), (b.clone(), 2.0)];
    want.sort_by(|x, y| x.0.cmp(&y.0));
    assert_eq!(got, want);

    // One occurrence of a list field is a one-element list.
    let body = app
        .get_ok(
            "metrics/get-history-bulk-interval",
            &[("run_ids", &a), ("metric_key", "m")],
        )
        .await;
    assert_eq!(body["metrics"].as_array().unwrap().len(), 1, "{body}");

    // The UI's bulk endpoint repeats `run_id`.
    let r = app
        .get_path(&format!(
            "/ajax-api/2.0/mlflow/metrics/get-history-bulk?run_id={a}&run_id={b}&metric_key=m"
        ))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["metrics"].as_array().unwrap().len(), 2, "{}", r.body);

    // GET runs/search takes repeated experiment_ids.
    let exp = app.create_experiment("other").await;
    let body = app
        .get_ok(
            "runs/search",
            &[("experiment_ids", "0"), ("experiment_ids", &exp)],
        )
        .await;
    assert_eq!(body["runs"].as_array().unwrap().len(), 2, "{body}");
}

#[tokio::test]
async fn special_doubles_round_trip_as_strings() {
    let app = spawn_app().await;
    let run = app.create_run().await;
    let values = [("nan", "NaN"), ("inf", "Infinity"), ("ninf", "-Infinity")];
    let metrics: Vec<Value> = values
        .iter()
        .map(|(k, v)| json!({ "key": k, "value": v, "timestamp": 1, "step": 0 }))
        .collect();
    app.post_ok(
        "runs/log-batch",
        json!({ "run_id": run, "metrics": metrics }),
    )
    .await;
    for (key, wire) in values {
        let h = app.history(&run, key).await;
        assert_eq!(h["metrics"][0]["value"], wire, "{key}: {h}");
    }
    let body = app.get_ok("runs/get", &[("run_id", &run)]).await;
    let mut latest: Vec<(String, Value)> = body["run"]["data"]["metrics"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (m["key"].as_str().unwrap().to_string(), m["value"].clone()))
        .collect();
    latest.sort_by(|x, y| x.0.cmp(&y.0));
    assert_eq!(
        latest,
        vec![
            ("inf".to_string(), json!("Infinity")),
            ("nan".to_string(), json!("NaN")),
            ("ninf".to_string(), json!("-Infinity")),
        ]
    );
    // The single-metric endpoint accepts them too.
    app.post_ok(
        "runs/log-metric",
        json!({ "run_id": run, "key": "single", "value": "NaN", "timestamp": 1 }),
    )
    .await;
    let h = app.history(&run, "single").await;
    assert_eq!(h["metrics"][0]["value"], "NaN");
}

#[tokio::test]
async fn int64_fields_sent_as_strings_are_accepted_and_returned_as_numbers() {
    let app = spawn_app().await;
    let body = app
        .post_ok(
            "runs/create",
            json!({ "experiment_id": "0", "start_time": "1700000000000" }),
        )
        .await;
    assert_eq!(body["run"]["info"]["start_time"], 1_700_000_000_000_i64);
    let run = body["run"]["info"]["run_id"].as_str().unwrap().to_string();
    app.post_ok(
        "runs/log-batch",
        json!({ "run_id": run, "metrics": [
            { "key": "m", "value": "0.5", "timestamp": "123", "step": "9007199254740993" }
        ]}),
    )
    .await;
    let h = app.history(&run, "m").await;
    assert_eq!(
        h,
        json!({ "metrics": [
            { "key": "m", "value": 0.5, "timestamp": 123, "step": 9_007_199_254_740_993_i64 }
        ]})
    );
    // Integral floats are integers too (JavaScript clients send 123.0 for 123).
    app.post_ok(
        "runs/update",
        json!({ "run_id": run, "status": "FINISHED", "end_time": 456.0 }),
    )
    .await;
    let got = app.get_ok("runs/get", &[("run_id", &run)]).await;
    assert_eq!(got["run"]["info"]["end_time"], 456);
}

#[tokio::test]
async fn health_version_and_server_info() {
    let app = spawn_app().await;
    let r = app.get_path("/health").await;
    assert_eq!((r.status, r.body), (200, json!("OK")));

    let r = app.get_path("/version").await;
    assert_eq!(r.status, 200);
    let version = r.body.as_str().expect("the version is plain text");
    assert!(is_pep440_release(version), "not PEP 440: {version:?}");
    // The client only sends traces over OTLP to servers that report >= 3.4.
    let parts: Vec<u64> = version
        .split('.')
        .map(|p| {
            p.chars()
                .take_while(char::is_ascii_digit)
                .collect::<String>()
        })
        .map(|p| p.parse().unwrap_or(0))
        .collect();
    assert!(parts >= vec![3, 4], "{version}");

    let r = app.get_path("/api/3.0/mlflow/server-info").await;
    assert_eq!(r.status, 200);
    assert!(r.body.is_object(), "{}", r.body);
    assert_eq!(r.headers["content-type"], "application/json");
    assert_eq!(r.body["multipart_uploads_enabled"], false);
    let r = app.get_path("/ajax-api/3.0/mlflow/server-info").await;
    assert_eq!(r.status, 200);
}

/// `N(.N)*` optionally followed by `aN`, `bN`, `rcN`, `.postN`, `.devN`.
fn is_pep440_release(v: &str) -> bool {
    let digits = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_digit());
    let mut rest = v;
    for suffix in [".dev", ".post"] {
        if let Some((head, n)) = rest.rsplit_once(suffix) {
            if !digits(n) {
                return false;
            }
            rest = head;
        }
    }
    let release_end = rest
        .char_indices()
        .find(|(_, c)| !(c.is_ascii_digit() || *c == '.'))
        .map(|(i, _)| i)
        .unwrap_or(rest.len());
    let (release, pre) = rest.split_at(release_end);
    let release_ok = release.split('.').all(digits);
    let pre_ok = pre.is_empty()
        || ["a", "b", "rc"]
            .iter()
            .any(|p| pre.strip_prefix(p).is_some_and(digits));
    release_ok && pre_ok
}

#[test]
fn pep440_checker_works() {
    for ok in ["3.17.2", "1.0", "2.0.0rc1", "3.4.0.dev0", "1.2.post3"] {
        assert!(is_pep440_release(ok), "{ok}");
    }
    for bad in ["", "v3.1", "3..1", "3.1-beta", "3.1.", "abc"] {
        assert!(!is_pep440_release(bad), "{bad}");
    }
}

#[tokio::test]
async fn every_response_carries_request_id_and_server_timing() {
    let app = spawn_app().await;
    let run = app.create_run().await;
    let replies = vec![
        app.get_path("/health").await,
        app.get_path("/version").await,
        app.get_path(&format!("{API}/runs/get?run_id={run}")).await,
        app.get_path(&format!("{API}/runs/get")).await,
        app.get_path("/definitely/not/here").await,
        app.get_path(&format!("{API}/runs/create")).await,
        app.post_raw(&format!("{API}/runs/log-batch"), "{bad").await,
        app.post_path(&format!("{API}/runs/log-batch"), &json!({ "run_id": run }))
            .await,
    ];
    let mut ids = Vec::new();
    for r in &replies {
        let id = r
            .headers
            .get("x-request-id")
            .unwrap_or_else(|| panic!("no x-request-id: {} {:?}", r.status, r.headers));
        let id = id.to_str().unwrap().to_string();
        assert!(!id.is_empty());
        ids.push(id);
        let timing = r
            .headers
            .get("server-timing")
            .unwrap_or_else(|| panic!("no server-timing: {} {:?}", r.status, r.headers));
        let timing = timing.to_str().unwrap();
        let ms = timing
            .strip_prefix("app;dur=")
            .and_then(|d| d.parse::<f64>().ok());
        assert!(ms.is_some_and(|ms| ms >= 0.0), "{timing}");
    }
    let mut unique = ids.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), ids.len(), "request ids repeat: {ids:?}");

    // A caller's own request id is kept, so logs can be correlated end to end.
    let res = app
        .client
        .get(app.url("/health"))
        .header("x-request-id", "caller-chosen-id")
        .send()
        .await
        .unwrap();
    assert_eq!(res.headers()["x-request-id"], "caller-chosen-id");
    // One that could smuggle text into log lines and the audit log (or bloat them) is
    // replaced by a fresh id.
    for bad in ["id with spaces", "{\"forged\":true}", &"a".repeat(200)] {
        let res = app
            .client
            .get(app.url("/health"))
            .header("x-request-id", bad)
            .send()
            .await
            .unwrap();
        let id = res.headers()["x-request-id"].to_str().unwrap();
        assert_ne!(id, bad);
        assert_eq!(id.len(), 36, "a UUID: {id}");
    }
}

#[tokio::test]
async fn identical_log_batch_twice_leaves_no_duplicates() {
    let app = spawn_app().await;
    let run = app.create_run().await;
    let batch = json!({
        "run_id": run,
        "metrics": [
            { "key": "loss", "value": 0.5, "timestamp": 10, "step": 1 },
            { "key": "loss", "value": 0.25, "timestamp": 20, "step": 2 },
        ],
        "params": [{ "key": "lr", "value": "0.1" }],
        "tags": [{ "key": "team", "value": "ml" }],
    });
    app.post_ok("runs/log-batch", batch.clone()).await;
    app.post_ok("runs/log-batch", batch).await;
    let h = app.history(&run, "loss").await;
    assert_eq!(
        h,
        json!({ "metrics": [
            { "key": "loss", "value": 0.5, "timestamp": 10, "step": 1 },
            { "key": "loss", "value": 0.25, "timestamp": 20, "step": 2 },
        ]})
    );
    // Single-metric retries do not duplicate either.
    for _ in 0..2 {
        app.post_ok(
            "runs/log-metric",
            json!({ "run_id": run, "key": "acc", "value": 0.9, "timestamp": 30, "step": 3 }),
        )
        .await;
    }
    let h = app.history(&run, "acc").await;
    assert_eq!(h["metrics"].as_array().unwrap().len(), 1, "{h}");

    let body = app.get_ok("runs/get", &[("run_id", &run)]).await;
    let data = &body["run"]["data"];
    assert_eq!(data["params"], json!([{ "key": "lr", "value": "0.1" }]));
    let team: Vec<&Value> = data["tags"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["key"] == "team")
        .collect();
    assert_eq!(team, vec![&json!({ "key": "team", "value": "ml" })]);
}

#[tokio::test]
async fn a_full_client_flow() {
    // What `mlflow.set_experiment` + `start_run` + logging + `end_run` send, in order.
    let app = spawn_app().await;
    let (status, _) = app
        .get("experiments/get-by-name", &[("experiment_name", "flow")])
        .await;
    assert_eq!(status, 404);
    let exp = app.create_experiment("flow").await;
    app.get_ok("experiments/get", &[("experiment_id", &exp)])
        .await;
    let body = app
        .post_ok(
            "runs/create",
            json!({
                "experiment_id": exp,
                "user_id": "alice",
                "run_name": "first",
                "start_time": 100,
                "tags": [
                    { "key": "mlflow.user", "value": "alice" },
                    { "key": "mlflow.source.type", "value": "LOCAL" },
                    { "key": "mlflow.runName", "value": "first" },
                ],
            }),
        )
        .await;
    let info = &body["run"]["info"];
    let run = info["run_id"].as_str().unwrap().to_string();
    assert_eq!(
        info["artifact_uri"],
        format!("mlflow-artifacts:/{exp}/{run}/artifacts")
    );
    app.post_ok(
        "runs/log-batch",
        json!({
            "run_id": run,
            "metrics": [{ "key": "loss", "value": 0.1, "timestamp": 150, "step": 0 }],
            "params": [{ "key": "alpha", "value": "0.5" }],
        }),
    )
    .await;
    app.get_ok("runs/get", &[("run_id", &run)]).await;
    let body = app
        .post_ok(
            "runs/update",
            json!({ "run_id": run, "run_uuid": run, "status": "FINISHED", "end_time": 200 }),
        )
        .await;
    assert_eq!(body["run_info"]["status"], "FINISHED");
    assert_eq!(body["run_info"]["end_time"], 200);
    let body = app
        .post_ok(
            "runs/search",
            json!({
                "experiment_ids": [exp],
                "filter": "metrics.loss < 0.5 AND params.alpha = '0.5' AND status = 'FINISHED'",
                "order_by": ["metrics.loss DESC"],
            }),
        )
        .await;
    assert_eq!(body["runs"].as_array().unwrap().len(), 1, "{body}");
    assert!(body.get("next_page_token").is_none(), "{body}");
}

#[tokio::test]
async fn pagination_tokens_round_trip() {
    let app = spawn_app().await;
    let mut created = Vec::new();
    for _ in 0..3 {
        created.push(app.create_run().await);
    }
    let mut seen = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let mut req = json!({ "experiment_ids": ["0"], "max_results": 2 });
        if let Some(t) = &token {
            req["page_token"] = json!(t);
        }
        let body = app.post_ok("runs/search", req).await;
        for r in body["runs"].as_array().unwrap() {
            seen.push(r["info"]["run_id"].as_str().unwrap().to_string());
        }
        match body.get("next_page_token").and_then(Value::as_str) {
            Some(t) => token = Some(t.to_string()),
            None => break,
        }
        assert!(seen.len() <= 3, "pagination does not terminate: {seen:?}");
    }
    seen.sort();
    created.sort();
    assert_eq!(seen, created);
}
