//! The model registry over HTTP: every endpoint with MLflow's methods, the exact error
//! bodies for each class of bad input, and 32 concurrent version creations.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use cairn::{Application, ServerConfig};
use common::{assert_error, spawn_app, TestApp};
use reqwest::Method;
use serde_json::{json, Value};
use sqlx::{Connection, Executor, PgConnection};

/// Sends a JSON body with any method (MLflow sends bodies with PATCH and DELETE too).
async fn send(app: &TestApp, method: Method, endpoint: &str, body: Value) -> (u16, Value) {
    let res = app
        .client
        .request(method, app.api(endpoint))
        .json(&body)
        .send()
        .await
        .expect("sending request");
    let r = common::reply(res).await;
    (r.status, r.body)
}

async fn send_ok(app: &TestApp, method: Method, endpoint: &str, body: Value) -> Value {
    let (status, got) = send(app, method.clone(), endpoint, body).await;
    assert_eq!(status, 200, "{method} {endpoint}: {got}");
    got
}

async fn create_model(app: &TestApp, name: &str) -> Value {
    app.post_ok("registered-models/create", json!({ "name": name }))
        .await
}

async fn create_version(app: &TestApp, name: &str, source: &str) -> Value {
    app.post_ok(
        "model-versions/create",
        json!({ "name": name, "source": source }),
    )
    .await["model_version"]
        .clone()
}

fn names(list: &Value, field: &str) -> Vec<String> {
    list[field]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|m| m["name"].as_str().unwrap().to_string())
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn registered_model_endpoints() {
    let app = spawn_app().await;
    let created = app
        .post_ok(
            "registered-models/create",
            json!({
                "name": "iris",
                "description": "flowers",
                "tags": [{"key": "team", "value": "ml"}],
            }),
        )
        .await;
    let rm = &created["registered_model"];
    assert_eq!(rm["name"], "iris");
    assert_eq!(rm["description"], "flowers");
    assert_eq!(rm["tags"], json!([{"key": "team", "value": "ml"}]));
    assert!(rm["creation_timestamp"].is_i64(), "{rm}");
    assert_eq!(rm["creation_timestamp"], rm["last_updated_timestamp"]);

    let got = app
        .get_ok("registered-models/get", &[("name", "iris")])
        .await;
    assert_eq!(&got["registered_model"], rm);

    // PATCH update, camelCase accepted.
    let updated = send_ok(
        &app,
        Method::PATCH,
        "registered-models/update",
        json!({"name": "iris", "description": "new"}),
    )
    .await;
    assert_eq!(updated["registered_model"]["description"], "new");

    // Tags: POST set, DELETE delete.
    app.post_ok(
        "registered-models/set-tag",
        json!({"name": "iris", "key": "stage", "value": "beta"}),
    )
    .await;
    send_ok(
        &app,
        Method::DELETE,
        "registered-models/delete-tag",
        json!({"name": "iris", "key": "team"}),
    )
    .await;
    let got = app
        .get_ok("registered-models/get", &[("name", "iris")])
        .await;
    assert_eq!(
        got["registered_model"]["tags"],
        json!([{"key": "stage", "value": "beta"}])
    );

    // Rename carries versions and aliases.
    create_version(&app, "iris", "s3://bucket/iris/1").await;
    app.post_ok(
        "registered-models/alias",
        json!({"name": "iris", "alias": "champion", "version": "1"}),
    )
    .await;
    let renamed = app
        .post_ok(
            "registered-models/rename",
            json!({"name": "iris", "newName": "iris2"}),
        )
        .await;
    let rm = &renamed["registered_model"];
    assert_eq!(rm["name"], "iris2");
    assert_eq!(
        rm["aliases"],
        json!([{"alias": "champion", "version": "1"}])
    );
    assert_eq!(rm["latest_versions"][0]["name"], "iris2");
    assert_eq!(rm["latest_versions"][0]["version"], "1");
    assert_eq!(rm["latest_versions"][0]["current_stage"], "None");

    // Search: GET with the client's prompt clause, and POST; a prompt stays hidden.
    create_model(&app, "other").await;
    app.post_ok(
        "registered-models/create",
        json!({"name": "p", "tags": [{"key": "mlflow.prompt.is_prompt", "value": "true"}]}),
    )
    .await;
    let found = app
        .get_ok(
            "registered-models/search",
            &[
                (
                    "filter",
                    "name LIKE 'iris%' AND tag.`mlflow.prompt.is_prompt` != 'true'",
                ),
                ("max_results", "10"),
            ],
        )
        .await;
    assert_eq!(names(&found, "registered_models"), vec!["iris2"]);
    let all = app
        .post_ok(
            "registered-models/search",
            json!({"filter": "tags.`mlflow.prompt.is_prompt` != 'true'", "order_by": ["name DESC"]}),
        )
        .await;
    assert_eq!(names(&all, "registered_models"), vec!["other", "iris2"]);
    let page = app
        .get_ok(
            "registered-models/search",
            &[("max_results", "1"), ("order_by", "name ASC")],
        )
        .await;
    assert_eq!(names(&page, "registered_models"), vec!["iris2"]);
    let token = page["next_page_token"].as_str().unwrap().to_string();
    let page2 = app
        .get_ok(
            "registered-models/search",
            &[("max_results", "1"), ("page_token", &token)],
        )
        .await;
    assert_eq!(names(&page2, "registered_models"), vec!["other"]);
    assert!(page2.get("next_page_token").is_none(), "{page2}");

    // DELETE the model: its versions go too.
    send_ok(
        &app,
        Method::DELETE,
        "registered-models/delete",
        json!({"name": "iris2"}),
    )
    .await;
    let gone = app
        .get("model-versions/get", &[("name", "iris2"), ("version", "1")])
        .await;
    assert_error(
        &gone,
        404,
        "RESOURCE_DOES_NOT_EXIST",
        "Model Version (name=iris2, version=1) not found",
    );
}

#[tokio::test]
async fn model_version_endpoints() {
    let app = spawn_app().await;
    create_model(&app, "m").await;
    let v1 = app
        .post_ok(
            "model-versions/create",
            json!({
                "name": "m",
                "source": "s3://bucket/m/1",
                "run_id": "abc123",
                "run_link": "http://runs/abc123",
                "description": "first",
                "tags": [{"key": "env", "value": "prod"}],
            }),
        )
        .await;
    let mv = &v1["model_version"];
    assert_eq!(mv["version"], "1");
    assert_eq!(mv["status"], "READY");
    assert_eq!(mv["current_stage"], "None");
    assert_eq!(mv["source"], "s3://bucket/m/1");
    assert_eq!(mv["run_id"], "abc123");
    assert_eq!(mv["run_link"], "http://runs/abc123");
    assert_eq!(mv["tags"], json!([{"key": "env", "value": "prod"}]));
    for i in 2..=3 {
        let v = create_version(&app, "m", &format!("s3://bucket/m/{i}")).await;
        assert_eq!(v["version"], i.to_string());
        // Absent strings come back as MLflow's proto defaults.
        for field in ["run_id", "run_link", "description"] {
            assert_eq!(v[field], "", "{field}");
        }
    }

    let got = app
        .get_ok("model-versions/get", &[("name", "m"), ("version", "1")])
        .await;
    assert_eq!(&got["model_version"], mv);
    let updated = send_ok(
        &app,
        Method::PATCH,
        "model-versions/update",
        json!({"name": "m", "version": "2", "description": "second"}),
    )
    .await;
    assert_eq!(updated["model_version"]["description"], "second");

    // Stages: two in Production, then promote 3 archiving the others.
    for v in ["1", "2"] {
        let moved = app
            .post_ok(
                "model-versions/transition-stage",
                json!({"name": "m", "version": v, "stage": "production"}),
            )
            .await;
        assert_eq!(moved["model_version"]["current_stage"], "Production");
    }
    app.post_ok(
        "model-versions/transition-stage",
        json!({"name": "m", "version": "3", "stage": "Production", "archive_existing_versions": true}),
    )
    .await;
    for (v, stage) in [("1", "Archived"), ("2", "Archived"), ("3", "Production")] {
        let got = app
            .get_ok("model-versions/get", &[("name", "m"), ("version", v)])
            .await;
        assert_eq!(got["model_version"]["current_stage"], stage, "version {v}");
    }
    let latest = app
        .post_ok(
            "registered-models/get-latest-versions",
            json!({"name": "m", "stages": ["Production"]}),
        )
        .await;
    assert_eq!(latest["model_versions"].as_array().unwrap().len(), 1);
    assert_eq!(latest["model_versions"][0]["version"], "3");
    let latest = app
        .get_ok("registered-models/get-latest-versions", &[("name", "m")])
        .await;
    let by_stage: Vec<(String, String)> = latest["model_versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            (
                v["current_stage"].as_str().unwrap().to_string(),
                v["version"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        by_stage,
        vec![
            ("Production".to_string(), "3".to_string()),
            ("Archived".to_string(), "2".to_string())
        ]
    );

    // Aliases: POST set, GET lookup, DELETE.
    app.post_ok(
        "registered-models/alias",
        json!({"name": "m", "alias": "champion", "version": "3"}),
    )
    .await;
    let by_alias = app
        .get_ok(
            "registered-models/alias",
            &[("name", "m"), ("alias", "champion")],
        )
        .await;
    assert_eq!(by_alias["model_version"]["version"], "3");
    assert_eq!(by_alias["model_version"]["aliases"], json!(["champion"]));
    let latest_alias = app
        .get_ok(
            "registered-models/alias",
            &[("name", "m"), ("alias", "latest")],
        )
        .await;
    assert_eq!(latest_alias["model_version"]["version"], "3");
    send_ok(
        &app,
        Method::DELETE,
        "registered-models/alias",
        json!({"name": "m", "alias": "champion"}),
    )
    .await;
    let gone = app
        .get(
            "registered-models/alias",
            &[("name", "m"), ("alias", "champion")],
        )
        .await;
    assert_error(
        &gone,
        400,
        "INVALID_PARAMETER_VALUE",
        "Registered model alias champion not found.",
    );

    // Version tags.
    app.post_ok(
        "model-versions/set-tag",
        json!({"name": "m", "version": "2", "key": "k", "value": "v"}),
    )
    .await;
    send_ok(
        &app,
        Method::DELETE,
        "model-versions/delete-tag",
        json!({"name": "m", "version": "1", "key": "env"}),
    )
    .await;

    // Search versions.
    let found = app
        .get_ok(
            "model-versions/search",
            &[("filter", "name = 'm' AND tags.k = 'v'")],
        )
        .await;
    assert_eq!(found["model_versions"].as_array().unwrap().len(), 1);
    assert_eq!(found["model_versions"][0]["version"], "2");
    let ordered = app
        .post_ok(
            "model-versions/search",
            json!({"filter": "run_id IN ('abc123')", "order_by": ["version_number ASC"]}),
        )
        .await;
    assert_eq!(ordered["model_versions"][0]["version"], "1");
    assert_eq!(ordered["model_versions"].as_array().unwrap().len(), 1);

    let uri = app
        .get_ok(
            "model-versions/get-download-uri",
            &[("name", "m"), ("version", "2")],
        )
        .await;
    assert_eq!(uri, json!({"artifact_uri": "s3://bucket/m/2"}));

    // DELETE a version; numbers are not reused.
    send_ok(
        &app,
        Method::DELETE,
        "model-versions/delete",
        json!({"name": "m", "version": "3"}),
    )
    .await;
    let next = create_version(&app, "m", "s3://bucket/m/4").await;
    assert_eq!(next["version"], "4");
}

#[tokio::test]
async fn versions_from_logged_models_and_runs() {
    let app = spawn_app().await;
    let exp = app.create_experiment("reg").await;
    let run_id = app.create_run_in(&exp).await;
    let model = app
        .post_ok(
            "logged-models",
            json!({"experiment_id": exp, "name": "clf", "source_run_id": run_id}),
        )
        .await;
    let model_id = model["model"]["info"]["model_id"]
        .as_str()
        .unwrap()
        .to_string();
    let artifact_uri = model["model"]["info"]["artifact_uri"]
        .as_str()
        .unwrap()
        .to_string();
    create_model(&app, "clf").await;
    let mv = app
        .post_ok(
            "model-versions/create",
            json!({"name": "clf", "source": format!("models:/{model_id}"), "model_id": model_id}),
        )
        .await;
    assert_eq!(mv["model_version"]["model_id"], model_id);
    assert_eq!(mv["model_version"]["run_id"], run_id);
    assert_eq!(mv["model_version"]["status"], "READY");
    let uri = app
        .get_ok(
            "model-versions/get-download-uri",
            &[("name", "clf"), ("version", "1")],
        )
        .await;
    assert_eq!(uri["artifact_uri"], artifact_uri);

    // A models:/ source needs the matching model_id.
    let source = format!("models:/{model_id}");
    let bad = app
        .post(
            "model-versions/create",
            json!({"name": "clf", "source": source}),
        )
        .await;
    assert_error(
        &bad,
        400,
        "INVALID_PARAMETER_VALUE",
        &format!(
            "Invalid model version source: '{source}'. The model_id request parameter must \
             identify the resource that contains the source."
        ),
    );

    // A run's artifact location needs that run.
    let run = app.get_ok("runs/get", &[("run_id", &run_id)]).await;
    let run_root = run["run"]["info"]["artifact_uri"]
        .as_str()
        .unwrap()
        .to_string();
    let source = format!("{run_root}/model");
    let ok = app
        .post_ok(
            "model-versions/create",
            json!({"name": "clf", "source": source, "run_id": run_id}),
        )
        .await;
    assert_eq!(ok["model_version"]["version"], "2");
    let bad = app
        .post(
            "model-versions/create",
            json!({"name": "clf", "source": source}),
        )
        .await;
    assert_error(
        &bad,
        400,
        "INVALID_PARAMETER_VALUE",
        &format!(
            "Invalid model version source: '{source}'. The run_id request parameter must \
             identify the resource that contains the source."
        ),
    );
    let sneaky = "s3://bucket/a/../b";
    let bad = app
        .post(
            "model-versions/create",
            json!({"name": "clf", "source": sneaky}),
        )
        .await;
    assert_eq!(bad.0, 400, "{}", bad.1);
    assert_eq!(bad.1["error_code"], "INVALID_PARAMETER_VALUE");
}

#[tokio::test]
async fn versions_from_other_registered_versions() {
    let app = spawn_app().await;
    create_model(&app, "src").await;
    app.post_ok(
        "model-versions/create",
        json!({"name": "src", "source": "s3://bucket/src/1", "run_id": "r1"}),
    )
    .await;
    create_version(&app, "src", "s3://bucket/src/2").await;
    app.post_ok(
        "model-versions/transition-stage",
        json!({"name": "src", "version": "1", "stage": "Staging"}),
    )
    .await;
    app.post_ok(
        "registered-models/alias",
        json!({"name": "src", "alias": "best", "version": "2"}),
    )
    .await;
    create_model(&app, "dst").await;
    // (source given, canonical source recorded, download URI, run id)
    let cases = [
        (
            "models:/src/1",
            "models:/src/1",
            "s3://bucket/src/1",
            Some("r1"),
        ),
        (
            "models:/src@best",
            "models:/src/2",
            "s3://bucket/src/2",
            Some(""),
        ),
        (
            "models:/src/Staging",
            "models:/src/1",
            "s3://bucket/src/1",
            Some("r1"),
        ),
        (
            "models:/src/latest",
            "models:/src/2",
            "s3://bucket/src/2",
            Some(""),
        ),
    ];
    for (i, (given, recorded, uri, run)) in cases.into_iter().enumerate() {
        let mv = app
            .post_ok(
                "model-versions/create",
                json!({"name": "dst", "source": given}),
            )
            .await;
        let mv = &mv["model_version"];
        let version = (i + 1).to_string();
        assert_eq!(mv["version"], version.as_str(), "{given}");
        assert_eq!(mv["source"], recorded, "{given}");
        assert_eq!(mv["run_id"].as_str(), run, "{given}");
        let got = app
            .get_ok(
                "model-versions/get-download-uri",
                &[("name", "dst"), ("version", &version)],
            )
            .await;
        assert_eq!(got["artifact_uri"], uri, "{given}");
    }
    let bad = app
        .post(
            "model-versions/create",
            json!({"name": "dst", "source": "models:/src/1", "run_id": "other"}),
        )
        .await;
    assert_error(
        &bad,
        400,
        "INVALID_PARAMETER_VALUE",
        "Invalid model version source: 'models:/src/1'. The run_id and model_id request \
         parameters must match the referenced model version.",
    );
    let missing = app
        .post(
            "model-versions/create",
            json!({"name": "dst", "source": "models:/src/9"}),
        )
        .await;
    assert_error(
        &missing,
        404,
        "RESOURCE_DOES_NOT_EXIST",
        "Model Version (name=src, version=9) not found",
    );
}

#[tokio::test]
async fn registry_error_bodies() {
    let app = spawn_app().await;
    create_model(&app, "m").await;
    create_version(&app, "m", "s3://bucket/m/1").await;
    let invalid = "INVALID_PARAMETER_VALUE";

    let got = app.get("registered-models/get", &[("name", "nope")]).await;
    assert_error(
        &got,
        404,
        "RESOURCE_DOES_NOT_EXIST",
        "Registered Model with name=nope not found",
    );
    let got = app
        .post("registered-models/create", json!({"name": "m"}))
        .await;
    assert_error(
        &got,
        400,
        "RESOURCE_ALREADY_EXISTS",
        "Registered Model (name=m) already exists.",
    );
    let got = app.post("registered-models/create", json!({})).await;
    assert_error(
        &got,
        400,
        invalid,
        "Missing value for required parameter 'name'.",
    );
    let got = app
        .post("registered-models/create", json!({"name": "a/b"}))
        .await;
    assert_error(
        &got,
        400,
        invalid,
        "Invalid model name 'a/b'. Names cannot contain '/' or ':'.",
    );
    let got = app
        .post("model-versions/create", json!({"name": "m"}))
        .await;
    assert_error(
        &got,
        400,
        invalid,
        "Missing value for required parameter 'source'.",
    );
    let got = app
        .get("model-versions/get", &[("name", "m"), ("version", "x1")])
        .await;
    assert_error(
        &got,
        400,
        invalid,
        "Parameter 'version' must be an integer, got 'x1'.",
    );
    let got = app
        .get("model-versions/get", &[("name", "m"), ("version", "9")])
        .await;
    assert_error(
        &got,
        404,
        "RESOURCE_DOES_NOT_EXIST",
        "Model Version (name=m, version=9) not found",
    );
    let got = app
        .post(
            "registered-models/alias",
            json!({"name": "m", "alias": "bad alias", "version": "1"}),
        )
        .await;
    assert_error(
        &got,
        400,
        invalid,
        "Invalid alias name: 'bad alias'. Names may only contain alphanumerics, underscores \
         (_), and dashes (-).",
    );
    let got = app
        .post(
            "registered-models/alias",
            json!({"name": "m", "alias": "Latest", "version": "1"}),
        )
        .await;
    assert_error(
        &got,
        400,
        invalid,
        "'latest' alias name (case insensitive) is reserved.",
    );
    let got = app
        .post(
            "registered-models/alias",
            json!({"name": "m", "alias": "v2", "version": "1"}),
        )
        .await;
    assert_error(&got, 400, invalid, "Version alias name 'v2' is reserved.");
    let got = app
        .get("registered-models/alias", &[("name", "m"), ("alias", "x")])
        .await;
    assert_error(&got, 400, invalid, "Registered model alias x not found.");
    let got = app
        .post(
            "model-versions/transition-stage",
            json!({"name": "m", "version": "1", "stage": "Prod"}),
        )
        .await;
    assert_error(
        &got,
        400,
        invalid,
        "Invalid Model Version stage: Prod. Value must be one of None, Staging, Production, \
         Archived.",
    );
    let got = app
        .post(
            "model-versions/transition-stage",
            json!({"name": "m", "version": "1", "stage": "Archived", "archive_existing_versions": true}),
        )
        .await;
    assert_error(
        &got,
        400,
        invalid,
        "Model version transition cannot archive existing model versions because 'Archived' \
         is not an Active stage. Valid stages are ['Staging', 'Production']",
    );
    let got = app
        .post(
            "registered-models/get-latest-versions",
            json!({"name": "m", "stages": ["Nope"]}),
        )
        .await;
    assert_error(
        &got,
        400,
        invalid,
        "Invalid Model Version stage: Nope. Value must be one of None, Staging, Production, \
         Archived.",
    );
    let got = app
        .get("registered-models/search", &[("max_results", "1001")])
        .await;
    assert_error(
        &got,
        400,
        invalid,
        "Invalid value for request parameter max_results. It must be at most 1000, but got \
         value 1001",
    );
    let got = app
        .get(
            "model-versions/search",
            &[("filter", "version_number = 1.5")],
        )
        .await;
    assert_error(
        &got,
        400,
        invalid,
        "Invalid value for numeric attribute 'version_number': 1.5",
    );
    let got = app
        .get("registered-models/search", &[("filter", "run_id = 'x'")])
        .await;
    assert_eq!(got.0, 400, "{}", got.1);
    assert_eq!(got.1["error_code"], invalid);
    let long_key = "k".repeat(251);
    let got = app
        .post(
            "registered-models/set-tag",
            json!({"name": "m", "key": long_key, "value": "v"}),
        )
        .await;
    assert_error(
        &got,
        400,
        invalid,
        "'key' exceeds the maximum length of 250 characters",
    );
    let got = app
        .post(
            "model-versions/create",
            json!({"name": "m", "source": "s3://x",
                   "tags": [{"key": "mlflow.prompt.is_prompt", "value": "true"}]}),
        )
        .await;
    assert_error(
        &got,
        400,
        invalid,
        "Invalid prompt source: 's3://x'. Prompt sources must use an MLflow placeholder.",
    );
    // Wrong methods are refused, not routed.
    let got = send(
        &app,
        Method::POST,
        "registered-models/delete",
        json!({"name": "m"}),
    )
    .await;
    assert_eq!(got.0, 400, "{}", got.1);
    assert_eq!(got.1["error_code"], "BAD_REQUEST");
}

#[tokio::test]
async fn concurrent_version_creation_over_http() {
    let app = spawn_app().await;
    create_model(&app, "hot").await;
    let app = std::sync::Arc::new(app);
    let tasks: Vec<_> = (0..32)
        .map(|i| {
            let app = app.clone();
            tokio::spawn(async move {
                app.post(
                    "model-versions/create",
                    json!({"name": "hot", "source": format!("s3://bucket/hot/{i}")}),
                )
                .await
            })
        })
        .collect();
    assert_versions_are_1_to_32(tasks).await;
}

/// Every concurrent creation succeeded, and together they got exactly versions 1..=32.
async fn assert_versions_are_1_to_32(tasks: Vec<tokio::task::JoinHandle<(u16, Value)>>) {
    let mut versions = Vec::new();
    for t in tasks {
        let (status, body) = t.await.unwrap();
        assert_eq!(status, 200, "{body}");
        versions.push(
            body["model_version"]["version"]
                .as_str()
                .unwrap()
                .parse::<i64>()
                .unwrap(),
        );
    }
    versions.sort_unstable();
    assert_eq!(versions, (1..=32).collect::<Vec<i64>>());
}

/// Admin URL of the PostgreSQL test server (required, never skipped).
fn pg_admin_url() -> String {
    std::env::var("CAIRN_TEST_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_string())
}

/// A database of its own, dropped with the guard (also when the test panics).
struct PgDb {
    admin: String,
    name: String,
}

impl PgDb {
    async fn create() -> Self {
        let admin = pg_admin_url();
        let name = format!("cairn_test_registry_{}", unique_suffix());
        let mut conn = PgConnection::connect(&admin)
            .await
            .expect("PostgreSQL must be reachable at CAIRN_TEST_PG_URL");
        conn.execute(format!("CREATE DATABASE {name}").as_str())
            .await
            .expect("CREATE DATABASE");
        conn.close().await.ok();
        Self { admin, name }
    }

    fn url(&self) -> String {
        match self.admin.rsplit_once('/') {
            Some((head, _)) => format!("{head}/{}", self.name),
            None => self.admin.clone(),
        }
    }
}

impl Drop for PgDb {
    fn drop(&mut self) {
        let admin = self.admin.clone();
        let sql = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
        let dropped = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                let mut conn = PgConnection::connect(&admin).await?;
                conn.execute(sql.as_str()).await?;
                conn.close().await
            })
        })
        .join();
        if !matches!(dropped, Ok(Ok(()))) {
            eprintln!("warning: could not drop test database {}", self.name);
        }
    }
}

fn unique_suffix() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{}_{nanos}", std::process::id())
}

/// An in-process server on `backend`; stops when the sender is dropped.
async fn replica(
    backend: &str,
    dir: &std::path::Path,
) -> (String, tokio::sync::oneshot::Sender<()>) {
    let mut config = ServerConfig::with_data_dir(dir);
    config.backend_store_uri = Some(backend.to_string());
    let app = Application::build(&config).await.expect("build replica");
    let url = format!("http://127.0.0.1:{}/api/2.0/mlflow", app.port());
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(app.run_until(async {
        rx.await.ok();
    }));
    (url, tx)
}

/// Two replicas on one PostgreSQL database: 32 concurrent creations spread over both
/// still get exactly 1..=32, and each replica reads the other's writes.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_version_creation_across_postgres_replicas() {
    let db = PgDb::create().await;
    let dir = tempfile::tempdir().unwrap();
    let (a, _stop_a) = replica(&db.url(), dir.path()).await;
    let (b, _stop_b) = replica(&db.url(), dir.path()).await;
    let client = common::new_client();
    let created = client
        .post(format!("{a}/registered-models/create"))
        .json(&json!({"name": "shared"}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 200);
    // PostgreSQL cannot store NUL: bad input, answered 400 rather than a storage error.
    let nul = client
        .post(format!("{a}/model-versions/create"))
        .json(&json!({"name": "shared", "source": "s3://x", "description": "a\u{0}b"}))
        .send()
        .await
        .unwrap();
    assert_eq!(nul.status(), 400);
    // The same for tracking input, which reaches PostgreSQL unchecked.
    let nul = client
        .post(format!("{a}/experiments/create"))
        .json(&json!({"name": "bad\u{0}name"}))
        .send()
        .await
        .unwrap();
    assert_eq!(nul.status(), 400);
    let body: Value = nul.json().await.unwrap();
    assert_eq!(body["error_code"], "INVALID_PARAMETER_VALUE", "{body}");
    let tasks: Vec<_> = (0..32)
        .map(|i| {
            let client = client.clone();
            let base = if i % 2 == 0 { a.clone() } else { b.clone() };
            tokio::spawn(async move {
                let res = client
                    .post(format!("{base}/model-versions/create"))
                    .json(&json!({"name": "shared", "source": format!("s3://bucket/{i}")}))
                    .send()
                    .await
                    .unwrap();
                let status = res.status().as_u16();
                let body: Value = res.json().await.unwrap();
                (status, body)
            })
        })
        .collect();
    assert_versions_are_1_to_32(tasks).await;
    let latest: Value = client
        .get(format!("{b}/registered-models/get"))
        .query(&[("name", "shared")])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        latest["registered_model"]["latest_versions"][0]["version"],
        "32"
    );
}
