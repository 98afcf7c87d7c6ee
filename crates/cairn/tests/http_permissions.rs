//! Authorization with authentication on: MLflow's basic-auth API (users, grants), the
//! permission matrix (each level against each operation on experiments, runs, logged
//! models, artifacts, registered models and versions), 401 versus 403, search results
//! restricted in the query, personal access tokens, and per-address sign-in slow-down.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use cairn::config::AdminAccount;
use cairn_core::auth::{Need, Permission};
use common::{reply, spawn_app_with, TestApp, API};
use reqwest::Method;
use serde_json::{json, Value};

const ADMIN_PW: &str = "admin password 1";
const USER_PW: &str = "user password 1";

async fn app_with_default(default: Permission) -> TestApp {
    spawn_app_with(|c| {
        c.auth = Some(AdminAccount {
            username: "admin".into(),
            password: ADMIN_PW.into(),
        });
        c.default_permission = default;
    })
    .await
}

/// Who a request is sent as.
#[derive(Clone, Copy)]
enum As<'a> {
    Basic(&'a str, &'a str),
    Token(&'a str),
    Nobody,
}

const ADMIN: As<'static> = As::Basic("admin", ADMIN_PW);

/// Sends `method` to `path` (absolute, or relative to the MLflow API prefix) as `who`:
/// GET carries `body`'s fields as the query string, other methods as JSON.
async fn call(app: &TestApp, who: As<'_>, method: Method, path: &str, body: Value) -> (u16, Value) {
    let url = if path.starts_with('/') {
        app.url(path)
    } else {
        app.api(path)
    };
    let mut req = app.client.request(method.clone(), url);
    req = match who {
        As::Basic(u, p) => req.basic_auth(u, Some(p)),
        As::Token(t) => req.bearer_auth(t),
        As::Nobody => req,
    };
    if method == Method::GET {
        let pairs: Vec<(String, String)> = body
            .as_object()
            .map(|o| {
                o.iter()
                    .flat_map(|(k, v)| match v {
                        Value::Array(items) => items
                            .iter()
                            .map(|i| (k.clone(), plain(i)))
                            .collect::<Vec<_>>(),
                        other => vec![(k.clone(), plain(other))],
                    })
                    .collect()
            })
            .unwrap_or_default();
        req = req.query(&pairs);
    } else if method == Method::PUT {
        req = req.body(body.as_str().unwrap_or_default().to_string());
    } else {
        req = req.json(&body);
    }
    let r = reply(req.send().await.unwrap()).await;
    (r.status, r.body)
}

fn plain(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

async fn ok(app: &TestApp, who: As<'_>, method: Method, path: &str, body: Value) -> Value {
    let (status, body_out) = call(app, who, method.clone(), path, body).await;
    assert_eq!(status, 200, "{method} {path}: {body_out}");
    body_out
}

async fn create_user(app: &TestApp, name: &str) {
    let created = ok(
        app,
        ADMIN,
        Method::POST,
        "users/create",
        json!({"username": name, "password": USER_PW}),
    )
    .await;
    assert_eq!(created["user"]["username"], name);
    assert_eq!(created["user"]["is_admin"], false);
}

/// One operation of the matrix: what it needs, and how to send it against the fixture.
struct Op {
    name: &'static str,
    need: Need,
    method: Method,
    path: String,
    body: Value,
}

/// Everything one level is tested against: an experiment with a run and a logged model,
/// an artifact in the run, and a registered model with one version.
struct Fixture {
    experiment_id: String,
    run_id: String,
    logged_model_id: String,
    model: String,
}

async fn fixture(app: &TestApp, tag: &str) -> Fixture {
    let e = ok(
        app,
        ADMIN,
        Method::POST,
        "experiments/create",
        json!({"name": format!("exp-{tag}")}),
    )
    .await;
    let experiment_id = e["experiment_id"].as_str().unwrap().to_string();
    let r = ok(
        app,
        ADMIN,
        Method::POST,
        "runs/create",
        json!({"experiment_id": experiment_id, "start_time": 1}),
    )
    .await;
    let run_id = r["run"]["info"]["run_id"].as_str().unwrap().to_string();
    let m = ok(
        app,
        ADMIN,
        Method::POST,
        "logged-models",
        json!({"experiment_id": experiment_id, "name": "lm"}),
    )
    .await;
    let logged_model_id = m["model"]["info"]["model_id"].as_str().unwrap().to_string();
    let model = format!("model-{tag}");
    ok(
        app,
        ADMIN,
        Method::POST,
        "registered-models/create",
        json!({"name": model}),
    )
    .await;
    ok(
        app,
        ADMIN,
        Method::POST,
        "model-versions/create",
        json!({"name": model, "source": format!("runs:/{run_id}/model"), "run_id": run_id}),
    )
    .await;
    ok(
        app,
        ADMIN,
        Method::PUT,
        &artifact_path(&experiment_id, &run_id, "seed.txt"),
        json!("seed"),
    )
    .await;
    Fixture {
        experiment_id,
        run_id,
        logged_model_id,
        model,
    }
}

fn artifact_path(experiment_id: &str, run_id: &str, file: &str) -> String {
    format!("/api/2.0/mlflow-artifacts/artifacts/{experiment_id}/{run_id}/artifacts/{file}")
}

/// The operations, destructive ones last (so earlier ones still find their targets).
fn operations(f: &Fixture) -> Vec<Op> {
    let (e, r, lm, m) = (&f.experiment_id, &f.run_id, &f.logged_model_id, &f.model);
    let op = |name, need, method, path: String, body| Op {
        name,
        need,
        method,
        path,
        body,
    };
    vec![
        op(
            "get experiment",
            Need::Read,
            Method::GET,
            "experiments/get".into(),
            json!({"experiment_id": e}),
        ),
        op(
            "search runs",
            Need::Read,
            Method::POST,
            "runs/search".into(),
            json!({"experiment_ids": [e]}),
        ),
        op(
            "get run",
            Need::Read,
            Method::GET,
            "runs/get".into(),
            json!({"run_id": r}),
        ),
        op(
            "metric history",
            Need::Read,
            Method::GET,
            "metrics/get-history".into(),
            json!({"run_id": r, "metric_key": "m"}),
        ),
        op(
            "list run artifacts",
            Need::Read,
            Method::GET,
            "artifacts/list".into(),
            json!({"run_id": r}),
        ),
        op(
            "download artifact",
            Need::Read,
            Method::GET,
            artifact_path(e, r, "seed.txt"),
            json!({}),
        ),
        op(
            "get logged model",
            Need::Read,
            Method::GET,
            format!("logged-models/{lm}"),
            json!({}),
        ),
        op(
            "get registered model",
            Need::Read,
            Method::GET,
            "registered-models/get".into(),
            json!({"name": m}),
        ),
        op(
            "get model version",
            Need::Read,
            Method::GET,
            "model-versions/get".into(),
            json!({"name": m, "version": "1"}),
        ),
        op(
            "latest versions",
            Need::Read,
            Method::POST,
            "registered-models/get-latest-versions".into(),
            json!({"name": m}),
        ),
        op(
            "set experiment tag",
            Need::Update,
            Method::POST,
            "experiments/set-experiment-tag".into(),
            json!({"experiment_id": e, "key": "k", "value": "v"}),
        ),
        op(
            "create run",
            Need::Update,
            Method::POST,
            "runs/create".into(),
            json!({"experiment_id": e, "start_time": 2}),
        ),
        op(
            "log metric",
            Need::Update,
            Method::POST,
            "runs/log-metric".into(),
            json!({"run_id": r, "key": "m", "value": 1.0, "timestamp": 5}),
        ),
        op(
            "log batch",
            Need::Update,
            Method::POST,
            "runs/log-batch".into(),
            json!({"run_id": r, "params": [{"key": "p", "value": "1"}]}),
        ),
        op(
            "upload artifact",
            Need::Update,
            Method::PUT,
            artifact_path(e, r, "new.txt"),
            json!("new"),
        ),
        op(
            "tag logged model",
            Need::Update,
            Method::PATCH,
            format!("logged-models/{lm}/tags"),
            json!({"tags": [{"key": "k", "value": "v"}]}),
        ),
        op(
            "update registered model",
            Need::Update,
            Method::PATCH,
            "registered-models/update".into(),
            json!({"name": m, "description": "d"}),
        ),
        op(
            "create model version",
            Need::Update,
            Method::POST,
            "model-versions/create".into(),
            json!({"name": m, "source": format!("runs:/{r}/model"), "run_id": r}),
        ),
        op(
            "set alias",
            Need::Update,
            Method::POST,
            "registered-models/alias".into(),
            json!({"name": m, "alias": "champion", "version": "1"}),
        ),
        op(
            "read experiment grants",
            Need::Manage,
            Method::GET,
            "experiments/permissions/get".into(),
            json!({"experiment_id": e, "username": "admin"}),
        ),
        op(
            "grant on registered model",
            Need::Manage,
            Method::POST,
            "registered-models/permissions/create".into(),
            json!({"name": m, "username": "bystander", "permission": "READ"}),
        ),
        op(
            "delete artifact",
            Need::Delete,
            Method::DELETE,
            artifact_path(e, r, "seed.txt"),
            json!({}),
        ),
        op(
            "delete model version",
            Need::Delete,
            Method::DELETE,
            "model-versions/delete".into(),
            json!({"name": m, "version": "1"}),
        ),
        op(
            "delete logged model",
            Need::Delete,
            Method::DELETE,
            format!("logged-models/{lm}"),
            json!({}),
        ),
        op(
            "delete run",
            Need::Delete,
            Method::POST,
            "runs/delete".into(),
            json!({"run_id": r}),
        ),
        op(
            "delete registered model",
            Need::Delete,
            Method::DELETE,
            "registered-models/delete".into(),
            json!({"name": m}),
        ),
        op(
            "delete experiment",
            Need::Delete,
            Method::POST,
            "experiments/delete".into(),
            json!({"experiment_id": e}),
        ),
    ]
}

#[tokio::test]
async fn each_level_allows_exactly_its_operations() {
    // Default NO_PERMISSIONS, so only the explicit grant decides.
    let app = app_with_default(Permission::NoPermissions).await;
    create_user(&app, "u").await;
    create_user(&app, "bystander").await;
    let user = As::Basic("u", USER_PW);
    let levels = [
        Permission::NoPermissions,
        Permission::Read,
        Permission::Use,
        Permission::Edit,
        Permission::Manage,
    ];
    let mut checked = 0;
    for level in levels {
        let f = fixture(&app, level.name()).await;
        ok(
            &app,
            ADMIN,
            Method::POST,
            "experiments/permissions/create",
            json!({"experiment_id": f.experiment_id, "username": "u", "permission": level.name()}),
        )
        .await;
        ok(
            &app,
            ADMIN,
            Method::POST,
            "registered-models/permissions/create",
            json!({"name": f.model, "username": "u", "permission": level.name()}),
        )
        .await;
        for op in operations(&f) {
            let (status, body) =
                call(&app, user, op.method.clone(), &op.path, op.body.clone()).await;
            if level.allows(op.need) {
                assert_eq!(status, 200, "{} with {}: {body}", op.name, level.name());
            } else {
                assert_eq!(
                    (status, body["error_code"].as_str()),
                    (403, Some("PERMISSION_DENIED")),
                    "{} with {}: {body}",
                    op.name,
                    level.name()
                );
            }
            checked += 1;
        }
        // Nothing a refused write touched changed: the admin still sees the originals.
        if !level.allows(Need::Update) {
            let run = ok(
                &app,
                ADMIN,
                Method::GET,
                "runs/get",
                json!({"run_id": f.run_id}),
            )
            .await;
            assert!(run["run"]["data"].get("metrics").is_none(), "{run}");
            let model = ok(
                &app,
                ADMIN,
                Method::GET,
                "registered-models/get",
                json!({"name": f.model}),
            )
            .await;
            assert!(
                model["registered_model"].get("description").is_none(),
                "{model}"
            );
        }
        if !level.allows(Need::Delete) {
            ok(
                &app,
                ADMIN,
                Method::GET,
                "experiments/get",
                json!({"experiment_id": f.experiment_id}),
            )
            .await;
            ok(
                &app,
                ADMIN,
                Method::GET,
                &artifact_path(&f.experiment_id, &f.run_id, "seed.txt"),
                json!({}),
            )
            .await;
        }
    }
    assert_eq!(checked, levels.len() * 27);
}

#[tokio::test]
async fn anonymous_gets_401_and_the_wrong_user_403() {
    let app = app_with_default(Permission::NoPermissions).await;
    create_user(&app, "alice").await;
    let f = fixture(&app, "x").await;
    let get = json!({"experiment_id": f.experiment_id});
    let (status, body) = call(
        &app,
        As::Nobody,
        Method::GET,
        "experiments/get",
        get.clone(),
    )
    .await;
    assert_eq!(
        (status, body["error_code"].as_str()),
        (401, Some("UNAUTHENTICATED"))
    );
    let (status, body) = call(
        &app,
        As::Basic("alice", USER_PW),
        Method::GET,
        "experiments/get",
        get.clone(),
    )
    .await;
    assert_eq!(
        (status, body["error_code"].as_str()),
        (403, Some("PERMISSION_DENIED")),
        "{body}"
    );
    // A resource that does not exist is the handler's 404, not a 403.
    let (status, body) = call(
        &app,
        As::Basic("alice", USER_PW),
        Method::GET,
        "experiments/get",
        json!({"experiment_id": "999999"}),
    )
    .await;
    assert_eq!(
        (status, body["error_code"].as_str()),
        (404, Some("RESOURCE_DOES_NOT_EXIST"))
    );
    // Administrator-only routes.
    for (method, path, body) in [
        (
            Method::POST,
            "users/create",
            json!({"username": "x", "password": USER_PW}),
        ),
        (Method::GET, "users/list", json!({})),
        (
            Method::PATCH,
            "users/update-admin",
            json!({"username": "alice", "is_admin": true}),
        ),
        (Method::GET, "/api/2.0/cairn/audit/events", json!({})),
    ] {
        let (status, out) = call(&app, As::Basic("alice", USER_PW), method, path, body).await;
        assert_eq!(
            (status, out["error_code"].as_str()),
            (403, Some("PERMISSION_DENIED")),
            "{path}: {out}"
        );
    }
    // Missing ids are a 400, not a pass.
    let (status, body) = call(
        &app,
        As::Basic("alice", USER_PW),
        Method::POST,
        "runs/log-metric",
        json!({"key": "m"}),
    )
    .await;
    assert_eq!(
        (status, body["error_code"].as_str()),
        (400, Some("INVALID_PARAMETER_VALUE")),
        "{body}"
    );
}

#[tokio::test]
async fn creators_manage_what_they_create_and_searches_show_only_what_one_may_read() {
    let app = app_with_default(Permission::NoPermissions).await;
    create_user(&app, "alice").await;
    create_user(&app, "bob").await;
    let alice = As::Basic("alice", USER_PW);
    let bob = As::Basic("bob", USER_PW);
    let mut mine = Vec::new();
    for i in 0..3 {
        let e = ok(
            &app,
            alice,
            Method::POST,
            "experiments/create",
            json!({"name": format!("alice-{i}")}),
        )
        .await;
        mine.push(e["experiment_id"].as_str().unwrap().to_string());
    }
    ok(
        &app,
        ADMIN,
        Method::POST,
        "experiments/create",
        json!({"name": "admin-only"}),
    )
    .await;
    ok(
        &app,
        alice,
        Method::POST,
        "registered-models/create",
        json!({"name": "alice-model"}),
    )
    .await;
    ok(
        &app,
        ADMIN,
        Method::POST,
        "registered-models/create",
        json!({"name": "admin-model"}),
    )
    .await;

    // The creator holds MANAGE: she may grant, and her grant is visible to her.
    let g = ok(
        &app,
        alice,
        Method::GET,
        "experiments/permissions/get",
        json!({"experiment_id": mine[0], "username": "alice"}),
    )
    .await;
    assert_eq!(g["experiment_permission"]["permission"], "MANAGE");
    ok(
        &app,
        alice,
        Method::POST,
        "experiments/permissions/create",
        json!({"experiment_id": mine[1], "username": "bob", "permission": "READ"}),
    )
    .await;

    // Searches: only readable experiments, decided in the query, so pages stay full.
    let names = |v: &Value, field: &str| -> Vec<String> {
        v[field]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|e| e["name"].as_str().unwrap().to_string())
                    .collect()
            })
            .unwrap_or_default()
    };
    let seen = ok(
        &app,
        alice,
        Method::POST,
        "experiments/search",
        json!({"max_results": 100}),
    )
    .await;
    let mut got = names(&seen, "experiments");
    got.sort();
    assert_eq!(got, vec!["alice-0", "alice-1", "alice-2"]);
    let page = ok(
        &app,
        alice,
        Method::POST,
        "experiments/search",
        json!({"max_results": 2}),
    )
    .await;
    assert_eq!(names(&page, "experiments").len(), 2);
    assert!(page["next_page_token"].is_string(), "{page}");
    let bob_sees = ok(
        &app,
        bob,
        Method::POST,
        "experiments/search",
        json!({"max_results": 100}),
    )
    .await;
    assert_eq!(names(&bob_sees, "experiments"), vec!["alice-1"]);
    let all = ok(
        &app,
        ADMIN,
        Method::POST,
        "experiments/search",
        json!({"max_results": 100}),
    )
    .await;
    assert_eq!(names(&all, "experiments").len(), 5, "{all}"); // with Default
    let models = ok(
        &app,
        bob,
        Method::GET,
        "registered-models/search",
        json!({}),
    )
    .await;
    assert_eq!(names(&models, "registered_models"), Vec::<String>::new());
    let models = ok(
        &app,
        alice,
        Method::GET,
        "registered-models/search",
        json!({}),
    )
    .await;
    assert_eq!(names(&models, "registered_models"), vec!["alice-model"]);

    // READ is not EDIT: bob cannot log to alice's experiment.
    let (status, _) = call(
        &app,
        bob,
        Method::POST,
        "runs/create",
        json!({"experiment_id": mine[1]}),
    )
    .await;
    assert_eq!(status, 403);
    // MLflow 3's unified API reports the effective permission.
    let eff = ok(
        &app,
        alice,
        Method::GET,
        "/api/3.0/mlflow/users/permissions/get",
        json!({"username": "bob", "resource_type": "experiment", "resource_id": mine[1]}),
    )
    .await;
    assert_eq!(eff, json!({"allowed": false, "permission": "READ"}));
    ok(&app, alice, Method::POST, "/api/3.0/mlflow/users/permissions/grant",
        json!({"username": "bob", "resource_type": "experiment", "resource_id": mine[1], "permission": "EDIT"})).await;
    ok(
        &app,
        bob,
        Method::POST,
        "runs/create",
        json!({"experiment_id": mine[1]}),
    )
    .await;
    // Bob cannot manage it, so he cannot grant himself more.
    let (status, _) = call(
        &app,
        bob,
        Method::PATCH,
        "experiments/permissions/update",
        json!({"experiment_id": mine[1], "username": "bob", "permission": "MANAGE"}),
    )
    .await;
    assert_eq!(status, 403);

    // Only administrators choose artifact locations, and artifacts outside any
    // experiment's directory are theirs alone.
    let (status, body) = call(
        &app,
        alice,
        Method::POST,
        "experiments/create",
        json!({"name": "sneaky", "artifact_location": format!("mlflow-artifacts:/{}", mine[0])}),
    )
    .await;
    assert_eq!(status, 403, "{body}");
    let (status, _) = call(
        &app,
        alice,
        Method::PUT,
        "/api/2.0/mlflow-artifacts/artifacts/elsewhere/x.txt",
        json!("x"),
    )
    .await;
    assert_eq!(status, 403);
    ok(
        &app,
        ADMIN,
        Method::PUT,
        "/api/2.0/mlflow-artifacts/artifacts/elsewhere/x.txt",
        json!("x"),
    )
    .await;
}

#[tokio::test]
async fn the_default_permission_applies_without_a_grant_and_an_explicit_grant_overrides_it() {
    let app = app_with_default(Permission::Read).await;
    create_user(&app, "bob").await;
    let bob = As::Basic("bob", USER_PW);
    let f = fixture(&app, "d").await;
    ok(
        &app,
        bob,
        Method::GET,
        "runs/get",
        json!({"run_id": f.run_id}),
    )
    .await;
    let (status, _) = call(
        &app,
        bob,
        Method::POST,
        "runs/log-metric",
        json!({"run_id": f.run_id, "key": "m", "value": 1.0, "timestamp": 1}),
    )
    .await;
    assert_eq!(status, 403);
    ok(&app, ADMIN, Method::POST, "experiments/permissions/create",
        json!({"experiment_id": f.experiment_id, "username": "bob", "permission": "NO_PERMISSIONS"})).await;
    let (status, _) = call(
        &app,
        bob,
        Method::GET,
        "runs/get",
        json!({"run_id": f.run_id}),
    )
    .await;
    assert_eq!(status, 403);
    let seen = ok(
        &app,
        bob,
        Method::POST,
        "experiments/search",
        json!({"max_results": 100}),
    )
    .await;
    let ids: Vec<&str> = seen["experiments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["experiment_id"].as_str().unwrap())
        .collect();
    assert!(
        !ids.contains(&f.experiment_id.as_str()) && ids.contains(&"0"),
        "{seen}"
    );
    // Deleting the grant restores the default.
    ok(
        &app,
        ADMIN,
        Method::DELETE,
        "experiments/permissions/delete",
        json!({"experiment_id": f.experiment_id, "username": "bob"}),
    )
    .await;
    ok(
        &app,
        bob,
        Method::GET,
        "runs/get",
        json!({"run_id": f.run_id}),
    )
    .await;
}

#[tokio::test]
async fn accounts_are_managed_through_mlflows_user_api() {
    let app = app_with_default(Permission::Read).await;
    create_user(&app, "carol").await;
    let (status, body) = call(
        &app,
        ADMIN,
        Method::POST,
        "users/create",
        json!({"username": "carol", "password": USER_PW}),
    )
    .await;
    assert_eq!(
        (status, body["error_code"].as_str()),
        (400, Some("RESOURCE_ALREADY_EXISTS")),
        "{body}"
    );
    let (status, body) = call(
        &app,
        ADMIN,
        Method::POST,
        "users/create",
        json!({"username": "dave", "password": "short"}),
    )
    .await;
    assert_eq!(
        (status, body["error_code"].as_str()),
        (400, Some("INVALID_PARAMETER_VALUE")),
        "{body}"
    );
    let carol = As::Basic("carol", USER_PW);
    let me = ok(&app, carol, Method::GET, "users/current", json!({})).await;
    assert_eq!(me["user"]["username"], "carol");
    let (status, _) = call(
        &app,
        carol,
        Method::GET,
        "users/get",
        json!({"username": "admin"}),
    )
    .await;
    assert_eq!(status, 403);
    // Changing one's own password needs the current one.
    let (status, _) = call(
        &app,
        carol,
        Method::PATCH,
        "users/update-password",
        json!({"username": "carol", "password": "new password 1", "current_password": "wrong one"}),
    )
    .await;
    assert_eq!(status, 400);
    ok(
        &app,
        carol,
        Method::PATCH,
        "users/update-password",
        json!({"username": "carol", "password": "new password 1", "current_password": USER_PW}),
    )
    .await;
    let (status, _) = call(&app, carol, Method::GET, "users/current", json!({})).await;
    assert_eq!(status, 401, "the old password no longer works");
    let carol = As::Basic("carol", "new password 1");
    ok(&app, carol, Method::GET, "users/current", json!({})).await;
    // Admin flag: takes effect on the next request.
    ok(
        &app,
        ADMIN,
        Method::PATCH,
        "users/update-admin",
        json!({"username": "carol", "is_admin": true}),
    )
    .await;
    ok(&app, carol, Method::GET, "users/list", json!({})).await;
    ok(
        &app,
        ADMIN,
        Method::PATCH,
        "users/update-admin",
        json!({"username": "carol", "is_admin": false}),
    )
    .await;
    let (status, _) = call(&app, carol, Method::GET, "users/list", json!({})).await;
    assert_eq!(status, 403);
    // Deleting the account ends its access at once (the credential cache is not trusted
    // for authorization).
    ok(
        &app,
        ADMIN,
        Method::DELETE,
        "users/delete",
        json!({"username": "carol"}),
    )
    .await;
    let (status, _) = call(&app, carol, Method::GET, "users/current", json!({})).await;
    assert_eq!(status, 401);
    let list = ok(&app, ADMIN, Method::GET, "users/list", json!({})).await;
    assert_eq!(list["users"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn personal_access_tokens_authenticate_until_revoked() {
    let app = app_with_default(Permission::Read).await;
    create_user(&app, "erin").await;
    let erin = As::Basic("erin", USER_PW);
    let created = ok(
        &app,
        erin,
        Method::POST,
        "users/access-tokens/create",
        json!({"name": "ci", "expires_in_days": 7}),
    )
    .await;
    let token = created["token"].as_str().unwrap().to_string();
    assert!(token.starts_with("cairn_pat_"), "{created}");
    let expires = created["access_token"]["expires_ms"].as_i64().unwrap();
    let made = created["access_token"]["created_ms"].as_i64().unwrap();
    assert_eq!(expires - made, 7 * 86_400_000);
    let me = ok(
        &app,
        As::Token(&token),
        Method::GET,
        "users/current",
        json!({}),
    )
    .await;
    assert_eq!(me["user"]["username"], "erin");
    ok(
        &app,
        As::Token(&token),
        Method::POST,
        "experiments/create",
        json!({"name": "by-token"}),
    )
    .await;
    // The list never shows the secret.
    let list = ok(
        &app,
        erin,
        Method::GET,
        "users/access-tokens/list",
        json!({}),
    )
    .await;
    assert!(!list.to_string().contains(&token));
    let id = list["access_tokens"][0]["id"].clone();
    // Someone else's token cannot be revoked by a non-admin, and bad lifetimes are refused.
    create_user(&app, "frank").await;
    let (status, _) = call(
        &app,
        As::Basic("frank", USER_PW),
        Method::POST,
        "users/access-tokens/revoke",
        json!({"username": "erin", "id": id}),
    )
    .await;
    assert_eq!(status, 403);
    let (status, _) = call(
        &app,
        As::Basic("frank", USER_PW),
        Method::POST,
        "users/access-tokens/revoke",
        json!({"id": id}),
    )
    .await;
    assert_eq!(status, 404);
    for days in [0, 366, -1] {
        let (status, _) = call(
            &app,
            erin,
            Method::POST,
            "users/access-tokens/create",
            json!({"name": "x", "expires_in_days": days}),
        )
        .await;
        assert_eq!(status, 400, "{days}");
    }
    ok(
        &app,
        erin,
        Method::POST,
        "users/access-tokens/revoke",
        json!({"id": id}),
    )
    .await;
    let (status, body) = call(
        &app,
        As::Token(&token),
        Method::GET,
        "users/current",
        json!({}),
    )
    .await;
    assert_eq!(
        (status, body["error_code"].as_str()),
        (401, Some("UNAUTHENTICATED"))
    );
}

#[tokio::test]
async fn failures_from_one_address_are_slowed_down_across_usernames() {
    let app = app_with_default(Permission::Read).await;
    let mut times = Vec::new();
    for i in 0..5 {
        let name = format!("guess-{i}");
        let started = std::time::Instant::now();
        let (status, _) = call(
            &app,
            As::Basic(&name, "nope nope"),
            Method::GET,
            "users/current",
            json!({}),
        )
        .await;
        assert_eq!(status, 401);
        times.push(started.elapsed());
    }
    // Every name is new, so only the per-address count can hold the 4th and 5th.
    assert!(
        times[3] >= std::time::Duration::from_millis(250),
        "{times:?}"
    );
    assert!(
        times[4] >= std::time::Duration::from_millis(500),
        "{times:?}"
    );
}

#[tokio::test]
async fn grants_on_missing_users_or_resources_are_404s_and_bad_levels_400s() {
    let app = app_with_default(Permission::Read).await;
    create_user(&app, "gina").await;
    let f = fixture(&app, "g").await;
    let (status, body) = call(
        &app,
        ADMIN,
        Method::POST,
        "experiments/permissions/create",
        json!({"experiment_id": f.experiment_id, "username": "nobody", "permission": "READ"}),
    )
    .await;
    assert_eq!(
        (status, body["error_code"].as_str()),
        (404, Some("RESOURCE_DOES_NOT_EXIST")),
        "{body}"
    );
    let (status, body) = call(
        &app,
        ADMIN,
        Method::POST,
        "experiments/permissions/create",
        json!({"experiment_id": f.experiment_id, "username": "gina", "permission": "OWNER"}),
    )
    .await;
    assert_eq!(
        (status, body["error_code"].as_str()),
        (400, Some("INVALID_PARAMETER_VALUE")),
        "{body}"
    );
    let (status, body) = call(
        &app,
        ADMIN,
        Method::PATCH,
        "registered-models/permissions/update",
        json!({"name": f.model, "username": "gina", "permission": "EDIT"}),
    )
    .await;
    assert_eq!(
        (status, body["error_code"].as_str()),
        (404, Some("RESOURCE_DOES_NOT_EXIST")),
        "{body}"
    );
    ok(
        &app,
        ADMIN,
        Method::POST,
        "registered-models/permissions/create",
        json!({"name": f.model, "username": "gina", "permission": "EDIT"}),
    )
    .await;
    let (status, _) = call(
        &app,
        ADMIN,
        Method::POST,
        "registered-models/permissions/create",
        json!({"name": f.model, "username": "gina", "permission": "EDIT"}),
    )
    .await;
    assert_eq!(status, 400);
    // A rename keeps the grant.
    ok(
        &app,
        ADMIN,
        Method::POST,
        "registered-models/rename",
        json!({"name": f.model, "new_name": "renamed"}),
    )
    .await;
    let g = ok(
        &app,
        ADMIN,
        Method::GET,
        "registered-models/permissions/get",
        json!({"name": "renamed", "username": "gina"}),
    )
    .await;
    assert_eq!(g["registered_model_permission"]["permission"], "EDIT");
    let _ = API;
}

#[tokio::test]
async fn a_resource_created_after_a_404_is_checked_not_remembered_as_missing() {
    let app = app_with_default(Permission::NoPermissions).await;
    create_user(&app, "hank").await;
    let hank = As::Basic("hank", USER_PW);
    let query = json!({"experiment_name": "appears-later"});
    let (status, _) = call(
        &app,
        hank,
        Method::GET,
        "experiments/get-by-name",
        query.clone(),
    )
    .await;
    assert_eq!(status, 404);
    ok(
        &app,
        ADMIN,
        Method::POST,
        "experiments/create",
        json!({"name": "appears-later"}),
    )
    .await;
    // Within the decision cache's lifetime: still checked, so refused.
    let (status, body) = call(&app, hank, Method::GET, "experiments/get-by-name", query).await;
    assert_eq!(
        (status, body["error_code"].as_str()),
        (403, Some("PERMISSION_DENIED")),
        "{body}"
    );
}
