//! Logged models (MLflow 3) and the legacy `runs/log-model` endpoint over HTTP.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{assert_error, spawn_app};
use serde_json::{json, Value};

#[tokio::test]
async fn logged_model_lifecycle_over_http() {
    let app = spawn_app().await;
    let exp = app.create_experiment("models").await;
    let run_id = app.create_run().await;
    let created = app
        .post_ok(
            "logged-models",
            json!({
                "experiment_id": exp,
                "name": "clf",
                "model_type": "sklearn",
                "source_run_id": run_id,
                "params": [{"key": "alpha", "value": "0.1"}],
                "tags": [{"key": "team", "value": "a"}],
            }),
        )
        .await;
    let info = &created["model"]["info"];
    let model_id = info["model_id"].as_str().unwrap().to_string();
    assert!(
        model_id.starts_with("m-") && model_id.len() == 34,
        "{model_id}"
    );
    assert_eq!(info["status"], "LOGGED_MODEL_PENDING");
    assert_eq!(
        info["artifact_uri"],
        format!("mlflow-artifacts:/{exp}/models/{model_id}/artifacts")
    );
    assert_eq!(created["model"]["data"]["params"][0]["key"], "alpha");

    // A metric logged against the model shows up on the model and on the run.
    app.post_ok(
        "runs/log-metric",
        json!({"run_id": run_id, "key": "acc", "value": 0.9, "timestamp": 1, "model_id": model_id}),
    )
    .await;
    let got = app
        .get_path(&format!("/api/2.0/mlflow/logged-models/{model_id}"))
        .await;
    assert_eq!(got.status, 200);
    assert_eq!(got.body["model"]["data"]["metrics"][0]["key"], "acc");
    assert_eq!(got.body["model"]["data"]["metrics"][0]["run_id"], run_id);
    let run = app.get_ok("runs/get", &[("run_id", &run_id)]).await;
    assert_eq!(run["run"]["data"]["metrics"][0]["key"], "acc");

    // Finalize, then search by the user-facing status name.
    let done = app
        .client
        .patch(app.api(&format!("logged-models/{model_id}")))
        .json(&json!({"model_id": model_id, "status": "LOGGED_MODEL_READY"}))
        .send()
        .await
        .unwrap();
    assert_eq!(done.status(), 200);
    let found = app
        .post_ok(
            "logged-models/search",
            json!({"experiment_ids": [exp], "filter": "status = 'READY' AND metrics.acc > 0.5"}),
        )
        .await;
    assert_eq!(found["models"].as_array().unwrap().len(), 1);

    // Delete: gone unless explicitly asked for.
    let del = app
        .client
        .delete(app.api(&format!("logged-models/{model_id}")))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(del.status(), 200);
    let gone = app
        .get_path(&format!("/api/2.0/mlflow/logged-models/{model_id}"))
        .await;
    assert_eq!(gone.status, 404);
    let kept = app
        .get_path(&format!(
            "/api/2.0/mlflow/logged-models/{model_id}?allow_deleted=true"
        ))
        .await;
    assert_eq!(kept.status, 200);
}

#[tokio::test]
async fn metric_for_an_unknown_logged_model_is_404_and_writes_nothing() {
    let app = spawn_app().await;
    let run_id = app.create_run().await;
    let got = app
        .post(
            "runs/log-batch",
            json!({"run_id": run_id, "metrics": [
                {"key": "plain", "value": 1, "timestamp": 1},
                {"key": "acc", "value": 1, "timestamp": 1, "model_id": "m-00000000000000000000000000000000"},
            ]}),
        )
        .await;
    assert_error(
        &got,
        404,
        "RESOURCE_DOES_NOT_EXIST",
        "Logged model with ID 'm-00000000000000000000000000000000' not found.",
    );
    let run = app.get_ok("runs/get", &[("run_id", &run_id)]).await;
    assert!(
        run["run"]["data"].get("metrics").is_none(),
        "the batch must be all or nothing: {run}"
    );
}

#[tokio::test]
async fn legacy_log_model_appends_to_the_history_tag() {
    let app = spawn_app().await;
    let run_id = app.create_run().await;
    for flavor in ["sklearn", "onnx"] {
        let model_json = json!({"artifact_path": "model", "flavors": {flavor: {}}}).to_string();
        app.post_ok(
            "runs/log-model",
            json!({"run_id": run_id, "model_json": model_json}),
        )
        .await;
    }
    let run = app.get_ok("runs/get", &[("run_id", &run_id)]).await;
    let tags = run["run"]["data"]["tags"].as_array().unwrap();
    let history = tags
        .iter()
        .find(|t| t["key"] == "mlflow.log-model.history")
        .expect("history tag");
    let parsed: Value = serde_json::from_str(history["value"].as_str().unwrap()).unwrap();
    let flavors: Vec<&str> = parsed
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            m["flavors"]
                .as_object()
                .unwrap()
                .keys()
                .next()
                .unwrap()
                .as_str()
        })
        .collect();
    assert_eq!(flavors, vec!["sklearn", "onnx"]);

    for not_an_object in ["not json", "{\"unterminated\": ", "[1, 2]"] {
        let bad = app
            .post(
                "runs/log-model",
                json!({"run_id": run_id, "model_json": not_an_object}),
            )
            .await;
        assert_error(
            &bad,
            400,
            "INVALID_PARAMETER_VALUE",
            "Invalid value for parameter 'model_json' supplied: must be a JSON object",
        );
    }
}
