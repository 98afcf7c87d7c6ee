//! Request hardening with no authentication configured: Host validation against DNS
//! rebinding, cross-origin state changes refused, CORS only for configured origins,
//! nosniff, and the API time limit. Each answer is MLflow's JSON error format.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{reply, spawn_app, spawn_app_with, API};
use reqwest::header::{HOST, ORIGIN};
use serde_json::json;

#[tokio::test]
async fn a_foreign_host_header_is_refused_except_on_health() {
    let app = spawn_app().await;
    let search = format!("{}{API}/experiments/search?max_results=5", app.base_url);
    for host in [
        "evil.example.com",
        "evil.example.com:5000",
        "8.8.8.8",
        "127.0.0.1.nip.io",
    ] {
        let r = reply(
            app.client
                .get(&search)
                .header(HOST, host)
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(r.status, 403, "{host}: {:?}", r.body);
        assert_eq!(r.body["error_code"], "PERMISSION_DENIED", "{host}");
        assert!(
            r.body["message"]
                .as_str()
                .unwrap()
                .contains("DNS rebinding"),
            "{:?}",
            r.body
        );
        assert_eq!(r.headers["x-content-type-options"], "nosniff");
    }
    for host in [
        "localhost:5000",
        "127.0.0.1",
        "[::1]:80",
        "10.0.0.5:5000",
        "192.168.1.2",
    ] {
        let r = reply(
            app.client
                .get(&search)
                .header(HOST, host)
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(r.status, 200, "{host}: {:?}", r.body);
    }
    // Load balancers probe health with whatever Host they like.
    let health = format!("{}/health", app.base_url);
    let r = reply(
        app.client
            .get(&health)
            .header(HOST, "lb.example.com")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(r.status, 200);
}

#[tokio::test]
async fn configured_hosts_replace_the_defaults() {
    let app = spawn_app_with(|c| {
        c.allowed_hosts = Some(vec!["mlflow.corp.example:*".into(), "127.0.0.1:*".into()]);
    })
    .await;
    let search = format!("{}{API}/experiments/search?max_results=5", app.base_url);
    let status = |host: &'static str| {
        let req = app.client.get(&search).header(HOST, host);
        async move { req.send().await.unwrap().status().as_u16() }
    };
    assert_eq!(status("mlflow.corp.example:443").await, 200);
    assert_eq!(
        status("10.0.0.5:5000").await,
        403,
        "defaults no longer apply"
    );
}

#[tokio::test]
async fn cross_origin_writes_are_refused_without_a_trace() {
    let app = spawn_app().await;
    let create = format!("{}{API}/experiments/create", app.base_url);
    let r = reply(
        app.client
            .post(&create)
            .header(ORIGIN, "https://evil.example")
            .json(&json!({ "name": "from-evil" }))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(r.status, 403, "{:?}", r.body);
    assert_eq!(r.body["error_code"], "PERMISSION_DENIED");
    assert!(r.body["message"].as_str().unwrap().contains("Cross-origin"));
    let (status, body) = app
        .get(
            "experiments/get-by-name",
            &[("experiment_name", "from-evil")],
        )
        .await;
    assert_eq!(status, 404, "the refused request created something: {body}");

    // The server's own UI origin (localhost) may write; reads from anywhere get no CORS
    // headers, so a foreign page cannot read the answer.
    let r = app
        .client
        .post(&create)
        .header(ORIGIN, "http://localhost:5000")
        .json(&json!({ "name": "from-localhost" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = app
        .client
        .get(format!("{}{API}/experiments/search", app.base_url))
        .header(ORIGIN, "https://evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers().get("access-control-allow-origin").is_none());
}

#[tokio::test]
async fn cors_is_granted_only_to_configured_origins() {
    let app =
        spawn_app_with(|c| c.cors_allowed_origins = vec!["https://ui.corp.example".into()]).await;
    let create = format!("{}{API}/experiments/create", app.base_url);
    let preflight = |origin: &'static str| {
        app.client
            .request(reqwest::Method::OPTIONS, &create)
            .header(ORIGIN, origin)
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", "content-type")
            .send()
    };
    let ok = preflight("https://ui.corp.example").await.unwrap();
    assert_eq!(
        ok.headers()["access-control-allow-origin"],
        "https://ui.corp.example"
    );
    assert_eq!(ok.headers()["access-control-allow-credentials"], "true");
    let denied = preflight("https://evil.example").await.unwrap();
    assert!(denied
        .headers()
        .get("access-control-allow-origin")
        .is_none());

    let post = |origin: &'static str, name: &'static str| {
        app.client
            .post(&create)
            .header(ORIGIN, origin)
            .json(&json!({ "name": name }))
            .send()
    };
    let r = post("https://ui.corp.example", "from-ui").await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["access-control-allow-origin"],
        "https://ui.corp.example"
    );
    assert_eq!(
        post("https://evil.example", "from-evil")
            .await
            .unwrap()
            .status(),
        403
    );
}

#[tokio::test]
async fn api_requests_past_the_time_limit_get_504_and_artifacts_are_exempt() {
    // A limit no database call can meet, so the API path times out deterministically.
    let app = spawn_app_with(|c| c.request_timeout = Duration::from_nanos(1)).await;
    let r = reply(
        app.client
            .get(format!(
                "{}{API}/experiments/search?max_results=5",
                app.base_url
            ))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(r.status, 504, "{:?}", r.body);
    assert_eq!(r.body["error_code"], "DEADLINE_EXCEEDED");
    assert!(r.body["message"]
        .as_str()
        .unwrap()
        .contains("--request-timeout"));
    // Artifact transfers stream for as long as they need.
    let put = app
        .client
        .put(format!(
            "{}/api/2.0/mlflow-artifacts/artifacts/0/x/file.txt",
            app.base_url
        ))
        .body("hello")
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 200);
}
