//! Bad input of every class comes back as MLflow's `{"error_code", "message"}` body with
//! the right status, never as a plain-text rejection or a 500.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{assert_error, assert_invalid, assert_invalid_where, spawn_app, API};
use serde_json::{json, Value};

fn tuple(r: common::Reply) -> (u16, Value) {
    (r.status, r.body)
}

fn metric(key: &str, value: f64, timestamp: i64, step: i64) -> Value {
    json!({ "key": key, "value": value, "timestamp": timestamp, "step": step })
}

// ---- malformed bodies ----------------------------------------------------------------

#[tokio::test]
async fn malformed_json_body_is_invalid_parameter_value() {
    let app = spawn_app().await;
    let got = tuple(
        app.post_raw(&format!("{API}/experiments/create"), "{bad")
            .await,
    );
    assert_invalid(
        &got,
        "Malformed JSON in request body: key must be a string at line 1 column 2",
    );
}

#[tokio::test]
async fn truncated_json_body_is_invalid_parameter_value() {
    let app = spawn_app().await;
    let got = tuple(
        app.post_raw(&format!("{API}/runs/log-batch"), r#"{"run_id": "abc""#)
            .await,
    );
    assert_invalid(
        &got,
        "Malformed JSON in request body: EOF while parsing an object at line 1 column 16",
    );
}

#[tokio::test]
async fn non_object_json_bodies_are_rejected() {
    let app = spawn_app().await;
    for body in ["[1]", "1", "\"name\"", "null", "true"] {
        let got = tuple(
            app.post_raw(&format!("{API}/experiments/create"), body)
                .await,
        );
        assert_invalid(&got, "Malformed request body: expected a JSON object");
    }
}

#[tokio::test]
async fn empty_body_on_post_with_required_fields_reports_the_missing_field() {
    let app = spawn_app().await;
    for body in ["", "  \n"] {
        let got = tuple(
            app.post_raw(&format!("{API}/experiments/create"), body)
                .await,
        );
        assert_invalid(&got, "Missing value for required parameter 'name'.");
    }
    let got = tuple(app.post_raw(&format!("{API}/runs/log-batch"), "").await);
    assert_invalid(&got, "Missing value for required parameter 'run_id'.");
}

#[tokio::test]
async fn post_without_content_type_is_still_parsed_as_json() {
    // The Python client always sends JSON; a missing header must not turn into a
    // plain-text 415 from the framework.
    let app = spawn_app().await;
    let res = app
        .client
        .post(app.api("experiments/create"))
        .body(r#"{"name": "no-content-type"}"#)
        .send()
        .await
        .unwrap();
    let r = common::reply(res).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body["experiment_id"].is_string(), "{}", r.body);
}

// ---- wrong types -----------------------------------------------------------------------

#[tokio::test]
async fn experiment_name_of_the_wrong_type() {
    let app = spawn_app().await;
    let got = app.post("experiments/create", json!({ "name": 123 })).await;
    assert_invalid(
        &got,
        "Invalid value for parameter 'name' supplied: invalid type: integer `123`, expected a \
         string",
    );
}

#[tokio::test]
async fn max_results_that_is_not_a_number() {
    let app = spawn_app().await;
    let got = app
        .post(
            "runs/search",
            json!({ "experiment_ids": ["0"], "max_results": "abc" }),
        )
        .await;
    assert_invalid(
        &got,
        "Invalid value for parameter 'max_results' supplied: expected an integer, got \"abc\"",
    );
    // The same through a query string.
    let got = app
        .get(
            "runs/search",
            &[("experiment_ids", "0"), ("max_results", "abc")],
        )
        .await;
    assert_invalid(
        &got,
        "Invalid value for parameter 'max_results' supplied: expected an integer, got \"abc\"",
    );
}

#[tokio::test]
async fn metric_value_that_is_not_a_number() {
    let app = spawn_app().await;
    let run = app.create_run().await;
    let got = app
        .post(
            "runs/log-batch",
            json!({ "run_id": run, "metrics": [
                { "key": "m", "value": "abc", "timestamp": 1, "step": 0 }
            ]}),
        )
        .await;
    assert_invalid(
        &got,
        "Invalid value for parameter 'metrics[0].value' supplied: expected a number, got \"abc\"",
    );
}

#[tokio::test]
async fn fractional_timestamp() {
    let app = spawn_app().await;
    let run = app.create_run().await;
    let got = app
        .post(
            "runs/log-batch",
            json!({ "run_id": run, "metrics": [
                metric("ok", 1.0, 1, 0),
                { "key": "m", "value": 1.0, "timestamp": 1.5, "step": 0 }
            ]}),
        )
        .await;
    assert_invalid(
        &got,
        "Invalid value for parameter 'metrics[1].timestamp' supplied: expected an integer, got \
         1.5",
    );
}

#[tokio::test]
async fn type_errors_name_the_field_and_leak_no_internals() {
    // A Rust type name ("untagged enum NumOrStr") means nothing to an MLflow user; the
    // message must name the field and say what was expected, as the other type errors do.
    let app = spawn_app().await;
    let run = app.create_run().await;
    let mut cases = Vec::new();
    for (field, bad) in [
        ("step", json!(true)),
        ("value", json!(true)),
        ("timestamp", json!([1])),
        ("step", json!({ "a": 1 })),
    ] {
        let mut m = json!({ "key": "m", "value": 1.0, "timestamp": 1, "step": 0 });
        m[field] = bad;
        cases.push((
            "runs/log-batch",
            json!({ "run_id": run, "metrics": [m] }),
            format!("metrics[0].{field}"),
        ));
    }
    cases.push((
        "runs/search",
        json!({ "experiment_ids": ["0"], "max_results": true }),
        "max_results".to_string(),
    ));
    cases.push((
        "runs/search",
        json!({ "experiment_ids": { "a": 1 } }),
        "experiment_ids".to_string(),
    ));
    cases.push((
        "runs/search",
        json!({ "experiment_ids": ["0"], "order_by": { "a": 1 } }),
        "order_by".to_string(),
    ));
    let mut leaks = Vec::new();
    for (endpoint, body, path) in cases {
        let got = app.post(endpoint, body).await;
        let message = assert_invalid_where(&got, |m| {
            m.starts_with(&format!("Invalid value for parameter '{path}' supplied: "))
        });
        if message.contains("untagged enum") || message.contains("NumOrStr") {
            leaks.push(message);
        }
    }
    assert!(leaks.is_empty(), "messages leak internals: {leaks:#?}");
}

#[tokio::test]
async fn wrong_container_types() {
    let app = spawn_app().await;
    let run = app.create_run().await;
    let got = app
        .post("runs/log-batch", json!({ "run_id": run, "metrics": {} }))
        .await;
    assert_invalid(
        &got,
        "Invalid value for parameter 'metrics' supplied: invalid type: map, expected a sequence",
    );
    let got = app
        .post(
            "runs/log-batch",
            json!({ "run_id": run, "params": [{ "key": "p", "value": 5 }] }),
        )
        .await;
    assert_invalid(
        &got,
        "Invalid value for parameter 'params[0].value' supplied: invalid type: integer `5`, \
         expected a string",
    );
}

// ---- missing required fields -------------------------------------------------------------

#[tokio::test]
async fn experiments_create_without_name() {
    let app = spawn_app().await;
    let got = app.post("experiments/create", json!({})).await;
    assert_invalid(&got, "Missing value for required parameter 'name'.");
    // proto3 has no unset strings: "" is missing too.
    let got = app.post("experiments/create", json!({ "name": "" })).await;
    assert_invalid(&got, "Missing value for required parameter 'name'.");
}

#[tokio::test]
async fn runs_get_without_run_id() {
    let app = spawn_app().await;
    let got = app.get("runs/get", &[]).await;
    assert_invalid(&got, "Missing value for required parameter 'run_id'.");
    let got = app.get("runs/get", &[("run_id", "")]).await;
    assert_invalid(&got, "Missing value for required parameter 'run_id'.");
}

#[tokio::test]
async fn log_batch_metric_without_key_value_or_timestamp() {
    let app = spawn_app().await;
    let run = app.create_run().await;
    let cases = [
        (
            json!({ "value": 1.0, "timestamp": 1 }),
            "Missing value for required parameter 'metrics[0].key'.",
        ),
        (
            json!({ "key": "m", "timestamp": 1 }),
            "Missing value for required parameter 'metrics[0].value'.",
        ),
        (
            json!({ "key": "m", "value": 1.0 }),
            "Missing value for required parameter 'metrics[0].timestamp'.",
        ),
    ];
    for (m, message) in cases {
        let got = app
            .post("runs/log-batch", json!({ "run_id": run, "metrics": [m] }))
            .await;
        assert_invalid(&got, message);
    }
    // A missing step defaults to 0 rather than failing.
    app.post_ok(
        "runs/log-batch",
        json!({ "run_id": run, "metrics": [{ "key": "m", "value": 1.0, "timestamp": 1 }] }),
    )
    .await;
    let history = app.history(&run, "m").await;
    assert_eq!(history["metrics"][0]["step"], 0, "{history}");
}

#[tokio::test]
async fn log_batch_param_and_tag_without_key() {
    let app = spawn_app().await;
    let run = app.create_run().await;
    let got = app
        .post(
            "runs/log-batch",
            json!({ "run_id": run, "params": [{ "key": "a", "value": "1" }, { "value": "1" }] }),
        )
        .await;
    assert_invalid(
        &got,
        "Missing value for required parameter 'params[1].key'.",
    );
    let got = app
        .post(
            "runs/log-batch",
            json!({ "run_id": run, "tags": [{ "value": "1" }] }),
        )
        .await;
    assert_invalid(&got, "Missing value for required parameter 'tags[0].key'.");
}

#[tokio::test]
async fn get_history_without_metric_key() {
    let app = spawn_app().await;
    let run = app.create_run().await;
    let got = app.get("metrics/get-history", &[("run_id", &run)]).await;
    assert_invalid(&got, "Missing value for required parameter 'metric_key'.");
    let got = app
        .get("metrics/get-history", &[("metric_key", "loss")])
        .await;
    assert_invalid(&got, "Missing value for required parameter 'run_id'.");
}

#[tokio::test]
async fn other_required_fields() {
    let app = spawn_app().await;
    let got = app.get("experiments/get", &[]).await;
    assert_invalid(
        &got,
        "Missing value for required parameter 'experiment_id'.",
    );
    let got = app.get("experiments/get-by-name", &[]).await;
    assert_invalid(
        &got,
        "Missing value for required parameter 'experiment_name'.",
    );
    let got = app
        .post("experiments/update", json!({ "experiment_id": "0" }))
        .await;
    assert_invalid(&got, "Missing value for required parameter 'new_name'.");
    let run = app.create_run().await;
    let got = app
        .post("runs/log-parameter", json!({ "run_id": run, "value": "v" }))
        .await;
    assert_invalid(&got, "Missing value for required parameter 'key'.");
    let got = app
        .get("metrics/get-history-bulk-interval", &[("metric_key", "m")])
        .await;
    assert_invalid(&got, "Missing value for required parameter 'run_ids'.");
}

// ---- oversized batches -----------------------------------------------------------------

fn metrics(n: usize) -> Vec<Value> {
    (0..n).map(|i| metric("m", 1.0, 1, i as i64)).collect()
}

fn key_values(prefix: &str, n: usize) -> Vec<Value> {
    (0..n)
        .map(|i| json!({ "key": format!("{prefix}{i}"), "value": "v" }))
        .collect()
}

#[tokio::test]
async fn too_many_metrics() {
    let app = spawn_app().await;
    let run = app.create_run().await;
    let got = app
        .post(
            "runs/log-batch",
            json!({ "run_id": run, "metrics": metrics(1001) }),
        )
        .await;
    assert_invalid(
        &got,
        "A batch logging request can contain at most 1000 metrics. Got 1001 metrics. Please \
         split up metrics across multiple requests and try again.",
    );
    // Nothing of the rejected batch was written; exactly 1000 is fine.
    assert_eq!(app.history(&run, "m").await, json!({}));
    app.post_ok(
        "runs/log-batch",
        json!({ "run_id": run, "metrics": metrics(1000) }),
    )
    .await;
}

#[tokio::test]
async fn too_many_params() {
    let app = spawn_app().await;
    let run = app.create_run().await;
    let got = app
        .post(
            "runs/log-batch",
            json!({ "run_id": run, "params": key_values("p", 101) }),
        )
        .await;
    assert_invalid(
        &got,
        "A batch logging request can contain at most 100 params. Got 101 params. Please split \
         up params across multiple requests and try again.",
    );
    app.post_ok(
        "runs/log-batch",
        json!({ "run_id": run, "params": key_values("p", 100) }),
    )
    .await;
}

#[tokio::test]
async fn too_many_tags() {
    let app = spawn_app().await;
    let run = app.create_run().await;
    let got = app
        .post(
            "runs/log-batch",
            json!({ "run_id": run, "tags": key_values("t", 101) }),
        )
        .await;
    assert_invalid(
        &got,
        "A batch logging request can contain at most 100 tags. Got 101 tags. Please split up \
         tags across multiple requests and try again.",
    );
}

#[tokio::test]
async fn too_many_entities_in_total() {
    // MLflow checks each kind, then the total, naming all three kinds in the message.
    let app = spawn_app().await;
    let run = app.create_run().await;
    let got = app
        .post(
            "runs/log-batch",
            json!({ "run_id": run, "metrics": metrics(1000), "params": key_values("p", 1) }),
        )
        .await;
    assert_invalid(
        &got,
        "A batch logging request can contain at most 1000 metrics, params, and tags. Got 1001 \
         metrics, params, and tags. Please split up metrics, params, and tags across multiple \
         requests and try again.",
    );
    let got = app
        .post(
            "runs/log-batch",
            json!({
                "run_id": run,
                "metrics": metrics(900),
                "params": key_values("p", 100),
                "tags": key_values("t", 1),
            }),
        )
        .await;
    assert_invalid(
        &got,
        "A batch logging request can contain at most 1000 metrics, params, and tags. Got 1001 \
         metrics, params, and tags. Please split up metrics, params, and tags across multiple \
         requests and try again.",
    );
}

#[tokio::test]
async fn batch_body_over_one_million_bytes() {
    let app = spawn_app().await;
    let run = app.create_run().await;
    let body = json!({
        "run_id": run,
        "tags": [{ "key": "big", "value": "x".repeat(1_000_000) }],
    })
    .to_string();
    let size = body.len();
    assert!(size > 1_000_000);
    let got = tuple(app.post_raw(&format!("{API}/runs/log-batch"), body).await);
    assert_invalid(
        &got,
        &format!(
            "Batched logging API requests must be at most 1000000 bytes, got a request of size \
             {size}."
        ),
    );
}

#[tokio::test]
async fn batch_body_of_exactly_one_million_bytes_passes_the_size_check() {
    let app = spawn_app().await;
    let run = app.create_run().await;
    let prefix = format!("{{\"run_id\": \"{run}\"}}");
    // Trailing whitespace is valid JSON and pads the body to the limit exactly.
    let body = format!("{prefix}{}", " ".repeat(1_000_000 - prefix.len()));
    assert_eq!(body.len(), 1_000_000);
    let got = tuple(app.post_raw(&format!("{API}/runs/log-batch"), body).await);
    assert_eq!(got, (200, json!({})));
}

#[tokio::test]
async fn batch_body_far_over_the_limit_gets_the_same_message() {
    // Bodies over the general 16 MiB limit are still "over 1,000,000 bytes" for log-batch:
    // the client should see MLflow's batch-size message, not a framework buffering error.
    let app = spawn_app().await;
    let run = app.create_run().await;
    let body = json!({
        "run_id": run,
        "tags": [{ "key": "big", "value": "x".repeat(17 * 1024 * 1024) }],
    })
    .to_string();
    let size = body.len();
    let got = tuple(app.post_raw(&format!("{API}/runs/log-batch"), body).await);
    assert_invalid(
        &got,
        &format!(
            "Batched logging API requests must be at most 1000000 bytes, got a request of size \
             {size}."
        ),
    );
}

#[tokio::test]
async fn chunked_batch_body_over_the_limit_is_measured_too() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    // No Content-Length: the limit must hold for the bytes actually received.
    let app = spawn_app().await;
    let run = app.create_run().await;
    let body = json!({
        "run_id": run,
        "tags": [{ "key": "big", "value": "x".repeat(1_500_000) }],
    })
    .to_string();
    let mut request = format!(
        "POST {API}/runs/log-batch HTTP/1.1\r\nHost: localhost\r\nContent-Type: \
         application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    )
    .into_bytes();
    for chunk in body.as_bytes().chunks(64 * 1024) {
        request.extend(format!("{:x}\r\n", chunk.len()).into_bytes());
        request.extend(chunk);
        request.extend(b"\r\n");
    }
    request.extend(b"0\r\n\r\n");
    let addr = app.base_url.trim_start_matches("http://");
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    tcp.write_all(&request).await.unwrap();
    let mut response = String::new();
    tcp.read_to_string(&mut response).await.unwrap();
    let (head, payload) = response.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 400 "), "{head}");
    // The payload may itself be chunked; the JSON object is between the outer braces.
    let json_text = &payload[payload.find('{').unwrap()..=payload.rfind('}').unwrap()];
    let got: Value = serde_json::from_str(json_text).unwrap();
    assert_eq!(
        got,
        common::error(
            "INVALID_PARAMETER_VALUE",
            // A chunked body has no declared size; the server stops reading at the limit
            // rather than buffering the whole body to measure it.
            "Batched logging API requests must be at most 1000000 bytes, got a request of \
             size over 1000000."
        )
    );
    assert!(body.len() > 1_000_000);
}

// ---- bad ids -------------------------------------------------------------------------------

#[tokio::test]
async fn malformed_run_ids() {
    let app = spawn_app().await;
    for bad in ["abc/def", "_abc", "-abc", "a b", "../etc"] {
        let message = format!("Invalid value \"{bad}\" for parameter 'run_id' supplied.");
        let got = app.get("runs/get", &[("run_id", bad)]).await;
        assert_invalid(&got, &message);
        let got = app
            .post(
                "runs/update",
                json!({ "run_id": bad, "status": "FINISHED" }),
            )
            .await;
        assert_invalid(&got, &message);
        let got = app.post("runs/log-batch", json!({ "run_id": bad })).await;
        assert_invalid(&got, &message);
    }
    let long = "a".repeat(257);
    let got = app.get("runs/get", &[("run_id", &long)]).await;
    assert_invalid(
        &got,
        &format!("Invalid value \"{long}\" for parameter 'run_id' supplied."),
    );
}

#[tokio::test]
async fn unknown_run_id() {
    let app = spawn_app().await;
    let id = "0123456789abcdef0123456789abcdef";
    let message = format!("Run with id={id} not found");
    let got = app.get("runs/get", &[("run_id", id)]).await;
    assert_error(&got, 404, "RESOURCE_DOES_NOT_EXIST", &message);
    let got = app
        .post(
            "runs/log-batch",
            json!({ "run_id": id, "metrics": [metric("m", 1.0, 1, 0)] }),
        )
        .await;
    assert_error(&got, 404, "RESOURCE_DOES_NOT_EXIST", &message);
    // An empty batch still reports the missing run.
    let got = app.post("runs/log-batch", json!({ "run_id": id })).await;
    assert_error(&got, 404, "RESOURCE_DOES_NOT_EXIST", &message);
    let got = app
        .post("runs/update", json!({ "run_id": id, "status": "FINISHED" }))
        .await;
    assert_error(&got, 404, "RESOURCE_DOES_NOT_EXIST", &message);
    let got = app.post("runs/delete", json!({ "run_id": id })).await;
    assert_error(&got, 404, "RESOURCE_DOES_NOT_EXIST", &message);
    let got = app
        .get(
            "metrics/get-history-bulk-interval",
            &[("run_ids", id), ("metric_key", "m")],
        )
        .await;
    assert_error(&got, 404, "RESOURCE_DOES_NOT_EXIST", &message);
}

#[tokio::test]
async fn non_numeric_experiment_id() {
    let app = spawn_app().await;
    let message = "Invalid experiment ID 'abc'. Experiment ID must be a valid integer.";
    let got = app
        .get("experiments/get", &[("experiment_id", "abc")])
        .await;
    assert_invalid(&got, message);
    let got = app
        .post("runs/create", json!({ "experiment_id": "abc" }))
        .await;
    assert_invalid(&got, message);
    let got = app
        .post("runs/search", json!({ "experiment_ids": ["0", "abc"] }))
        .await;
    assert_invalid(&got, message);
}

#[tokio::test]
async fn unknown_experiment_id() {
    let app = spawn_app().await;
    let message = "No Experiment with id=999 exists";
    let got = app
        .get("experiments/get", &[("experiment_id", "999")])
        .await;
    assert_error(&got, 404, "RESOURCE_DOES_NOT_EXIST", message);
    let got = app
        .post("runs/create", json!({ "experiment_id": "999" }))
        .await;
    assert_error(&got, 404, "RESOURCE_DOES_NOT_EXIST", message);
    let got = app
        .post("experiments/delete", json!({ "experiment_id": "999" }))
        .await;
    assert_error(&got, 404, "RESOURCE_DOES_NOT_EXIST", message);
}

#[tokio::test]
async fn unknown_experiment_name() {
    let app = spawn_app().await;
    let got = app
        .get("experiments/get-by-name", &[("experiment_name", "nope")])
        .await;
    assert_error(
        &got,
        404,
        "RESOURCE_DOES_NOT_EXIST",
        "Could not find experiment with name 'nope'",
    );
}

// ---- bad filters, order_by, page tokens ---------------------------------------------------

async fn search_error(app: &common::TestApp, body: Value) -> (u16, Value) {
    let mut body = body;
    body["experiment_ids"] = json!(["0"]);
    app.post("runs/search", body).await
}

#[tokio::test]
async fn bad_filters_report_a_position() {
    let app = spawn_app().await;
    app.create_run().await;
    let cases = [
        (
            "metrics.x >> 1",
            "unexpected '>' at position 11. Expected a numeric value for metric 'x'",
        ),
        (
            "params.a = 1",
            "expected a quoted string value for parameter 'a', found '1' at position 11. Quote \
             string values with single or double quotes, e.g. 'my-value'",
        ),
        (
            "foo.bar = 'x'",
            "invalid entity type 'foo' at position 0. Valid values are 'metric', 'parameter', \
             'tag', 'attribute', 'dataset'",
        ),
        (
            "(metrics.x > 1",
            "unclosed '(' (missing ')' before the end of input) at position 0",
        ),
        ("metrics.x > 1)", "unmatched ')' at position 13"),
        (
            "params.a = 'x",
            "unterminated single quote string at position 11",
        ),
        (
            "tags.`a = 'x'",
            "unterminated backtick string at position 5",
        ),
        (
            "metrics.x > 1 AND",
            "expected a comparison, found end of input at position 17",
        ),
        (
            "AND metrics.x > 1",
            "expected an identifier, found 'AND' at position 0. Comparisons look like \
             metrics.loss < 0.5 or tags.team = 'ml'",
        ),
        (
            "metrics.x > 1 metrics.y > 2",
            "unexpected 'metrics.y', expected AND, OR or end of filter at position 14",
        ),
        (
            "metrics.x = 'a'",
            "expected a numeric value for metric 'x', found ''a'' at position 12",
        ),
        (
            "params.a > 'x'",
            "invalid comparator '>' for parameter 'a' at position 9. Valid comparators are '=', \
             '!=', 'LIKE', 'ILIKE', 'IS NULL', 'IS NOT NULL'",
        ),
        ("metrics.", "expected a name after '.' at position 8"),
        (
            "status IN 'x'",
            "expected '(' to start a list, found ''x'' at position 10. Write lists as ('a', 'b')",
        ),
    ];
    for (filter, detail) in cases {
        let got = search_error(&app, json!({ "filter": filter })).await;
        assert_invalid(&got, &format!("Invalid filter '{filter}': {detail}"));
    }
    // The same parser serves GET and experiments/search.
    let got = app
        .get(
            "runs/search",
            &[("experiment_ids", "0"), ("filter", "metrics.x >> 1")],
        )
        .await;
    assert_invalid(
        &got,
        "Invalid filter 'metrics.x >> 1': unexpected '>' at position 11. Expected a numeric \
         value for metric 'x'",
    );
    let got = app
        .post("experiments/search", json!({ "filter": "name = " }))
        .await;
    assert_invalid(
        &got,
        "Invalid filter 'name = ': expected a quoted string value for attribute 'name', found \
         end of input at position 7",
    );
}

#[tokio::test]
async fn bad_order_by() {
    let app = spawn_app().await;
    let cases = [
        (
            "metrics.x SIDEWAYS",
            "invalid ordering key 'SIDEWAYS' at position 10. Expected ASC or DESC",
        ),
        (
            "metrics.x ASC DESC",
            "unexpected 'DESC' after the sort direction at position 14",
        ),
        (
            "foo.bar",
            "invalid entity type 'foo' at position 0. Valid values are 'metric', 'parameter', \
             'tag', 'attribute'",
        ),
        ("", "empty order_by clause at position 0"),
    ];
    for (order, detail) in cases {
        let got = search_error(&app, json!({ "order_by": [order] })).await;
        assert_invalid(
            &got,
            &format!("Invalid order_by clause '{order}': {detail}"),
        );
    }
}

#[tokio::test]
async fn bad_page_tokens() {
    let app = spawn_app().await;
    for token in ["garbage!", "eyJvZmZzZXQiOiAzfQ", "Y2Fpcm4xOi0x"] {
        let got = search_error(&app, json!({ "page_token": token })).await;
        assert_invalid(&got, &format!("Invalid page token '{token}'"));
    }
    let run = app.create_run().await;
    let got = app
        .get(
            "metrics/get-history",
            &[
                ("run_id", &run),
                ("metric_key", "m"),
                ("page_token", "nope"),
            ],
        )
        .await;
    assert_invalid(&got, "Invalid page token 'nope'");
}

// ---- bad keys and values ---------------------------------------------------------------

const BAD_CHARACTER: &str = "Names may only contain alphanumerics, underscores (_), dashes (-), \
periods (.), spaces ( ), colon(:) and slashes (/).";

fn bad_path(resolves_to: &str) -> String {
    format!(
        "Names may be treated as files in certain cases, and must not resolve to other names \
         when treated as such. This name would resolve to '{resolves_to}'"
    )
}

#[tokio::test]
async fn metric_keys_with_path_tricks_or_bad_characters() {
    let app = spawn_app().await;
    let run = app.create_run().await;
    let cases = [
        ("../x", bad_path("../x")),
        ("a//b", bad_path("a/b")),
        ("a/./b", bad_path("a/b")),
        ("/abs", bad_path("/abs")),
        ("bad$char", BAD_CHARACTER.to_string()),
    ];
    for (key, detail) in &cases {
        let got = app
            .post(
                "runs/log-batch",
                json!({ "run_id": run, "metrics": [metric("ok", 1.0, 1, 0), metric(key, 1.0, 1, 0)] }),
            )
            .await;
        assert_invalid(
            &got,
            &format!("Invalid value \"{key}\" for parameter 'metrics[1].name' supplied: {detail}"),
        );
        // The single-metric endpoint names the bare field.
        let got = app
            .post(
                "runs/log-metric",
                json!({ "run_id": run, "key": key, "value": 1.0, "timestamp": 1 }),
            )
            .await;
        assert_invalid(
            &got,
            &format!("Invalid value \"{key}\" for parameter 'name' supplied: {detail}"),
        );
    }
    // None of the rejected batches wrote the valid metric beside the bad one.
    assert_eq!(app.history(&run, "ok").await, json!({}));
}

#[tokio::test]
async fn param_and_tag_keys_with_bad_characters() {
    let app = spawn_app().await;
    let run = app.create_run().await;
    let got = app
        .post(
            "runs/log-batch",
            json!({ "run_id": run, "params": [{ "key": "p$", "value": "1" }] }),
        )
        .await;
    assert_invalid(
        &got,
        &format!("Invalid value \"p$\" for parameter 'params[0].key' supplied: {BAD_CHARACTER}"),
    );
    let got = app
        .post(
            "runs/set-tag",
            json!({ "run_id": run, "key": "x/../y", "value": "1" }),
        )
        .await;
    assert_invalid(
        &got,
        &format!(
            "Invalid value \"x/../y\" for parameter 'key' supplied: {}",
            bad_path("y")
        ),
    );
}

#[tokio::test]
async fn key_longer_than_250_characters() {
    let app = spawn_app().await;
    let run = app.create_run().await;
    let key = "k".repeat(251);
    let got = app
        .post(
            "runs/log-batch",
            json!({ "run_id": run, "metrics": [metric(&key, 1.0, 1, 0)] }),
        )
        .await;
    assert_invalid(
        &got,
        "'Metric name' exceeds the maximum length of 250 characters",
    );
    let got = app
        .post(
            "runs/log-batch",
            json!({ "run_id": run, "params": [{ "key": key, "value": "v" }] }),
        )
        .await;
    assert_invalid(
        &got,
        "'Param key' exceeds the maximum length of 250 characters",
    );
    // 250 is fine.
    app.post_ok(
        "runs/log-batch",
        json!({ "run_id": run, "metrics": [metric(&"k".repeat(250), 1.0, 1, 0)] }),
    )
    .await;
}

/// The stored value of param or tag `key` on `run`.
async fn run_value(app: &common::TestApp, run: &str, kind: &str, key: &str) -> String {
    let body = app.get_ok("runs/get", &[("run_id", run)]).await;
    body["run"]["data"][kind]
        .as_array()
        .into_iter()
        .flatten()
        .find(|kv| kv["key"] == key)
        .and_then(|kv| kv["value"].as_str())
        .unwrap_or_else(|| panic!("no {kind} {key}: {body}"))
        .to_string()
}

#[tokio::test]
async fn param_value_longer_than_6000_characters_is_truncated() {
    // MLflow truncates over-long param values (MLFLOW_TRUNCATE_LONG_VALUES, on by
    // default) instead of failing the run; keys are never truncated.
    let app = spawn_app().await;
    let run = app.create_run().await;
    let got = app
        .post(
            "runs/log-batch",
            json!({ "run_id": run, "params": [{ "key": "p", "value": "v".repeat(6001) }] }),
        )
        .await;
    assert_eq!(got, (200, json!({})));
    assert_eq!(run_value(&app, &run, "params", "p").await, "v".repeat(6000));
    // Retrying the same over-long value is the same (truncated) value, so no conflict.
    let got = app
        .post(
            "runs/log-parameter",
            json!({ "run_id": run, "key": "p", "value": "v".repeat(7000) }),
        )
        .await;
    assert_eq!(got, (200, json!({})));
    // Limits count characters, not bytes.
    let got = app
        .post(
            "runs/log-parameter",
            json!({ "run_id": run, "key": "q", "value": "é".repeat(6001) }),
        )
        .await;
    assert_eq!(got, (200, json!({})));
    assert_eq!(run_value(&app, &run, "params", "q").await, "é".repeat(6000));
}

#[tokio::test]
async fn tag_value_longer_than_8000_characters_is_truncated() {
    let app = spawn_app().await;
    let run = app.create_run().await;
    let got = app
        .post(
            "runs/log-batch",
            json!({ "run_id": run, "tags": [{ "key": "t", "value": "v".repeat(8001) }] }),
        )
        .await;
    assert_eq!(got, (200, json!({})));
    assert_eq!(run_value(&app, &run, "tags", "t").await, "v".repeat(8000));
    let got = app
        .post(
            "runs/set-tag",
            json!({ "run_id": run, "key": "u", "value": "w".repeat(9000) }),
        )
        .await;
    assert_eq!(got, (200, json!({})));
    assert_eq!(run_value(&app, &run, "tags", "u").await, "w".repeat(8000));
}

#[tokio::test]
async fn tag_key_longer_than_250_characters() {
    let app = spawn_app().await;
    let run = app.create_run().await;
    let got = app
        .post(
            "runs/log-batch",
            json!({ "run_id": run, "tags": [{ "key": "k".repeat(251), "value": "v" }] }),
        )
        .await;
    assert_invalid(
        &got,
        "'tags[0].key' exceeds the maximum length of 250 characters",
    );
}

#[tokio::test]
async fn experiment_tag_limits() {
    let app = spawn_app().await;
    let exp = app.create_experiment("tagged").await;
    let got = app
        .post(
            "experiments/set-experiment-tag",
            json!({ "experiment_id": exp, "key": "t", "value": "v".repeat(20_001) }),
        )
        .await;
    assert_invalid(
        &got,
        "'value' exceeds the maximum length of 20000 characters",
    );
    let got = app
        .post(
            "experiments/set-experiment-tag",
            json!({ "experiment_id": exp, "key": "a//b", "value": "v" }),
        )
        .await;
    assert_invalid(
        &got,
        &format!(
            "Invalid value \"a//b\" for parameter 'key' supplied: {}",
            bad_path("a/b")
        ),
    );
    app.post_ok(
        "experiments/set-experiment-tag",
        json!({ "experiment_id": exp, "key": "t", "value": "v".repeat(20_000) }),
    )
    .await;
}

#[tokio::test]
async fn experiment_name_longer_than_500_characters() {
    let app = spawn_app().await;
    let got = app
        .post("experiments/create", json!({ "name": "n".repeat(501) }))
        .await;
    assert_invalid(&got, "'name' exceeds the maximum length of 500 characters");
    app.create_experiment(&"n".repeat(500)).await;
}

#[tokio::test]
async fn duplicate_experiment_name() {
    let app = spawn_app().await;
    app.create_experiment("dup").await;
    let got = app
        .post("experiments/create", json!({ "name": "dup" }))
        .await;
    assert_error(
        &got,
        400,
        "RESOURCE_ALREADY_EXISTS",
        "Experiment(name=dup) already exists.",
    );
    let got = app
        .post("experiments/create", json!({ "name": "Default" }))
        .await;
    assert_error(
        &got,
        400,
        "RESOURCE_ALREADY_EXISTS",
        "Experiment(name=Default) already exists.",
    );
}

#[tokio::test]
async fn negative_metric_timestamp() {
    let app = spawn_app().await;
    let run = app.create_run().await;
    let got = app
        .post(
            "runs/log-batch",
            json!({ "run_id": run, "metrics": [metric("m", 2.5, -1, 0)] }),
        )
        .await;
    assert_invalid(
        &got,
        "Invalid value \"-1\" for parameter 'metrics[0].timestamp' supplied: metric 'm' \
         (value=2.5). Timestamp must be a nonnegative long (64-bit integer) ",
    );
}

// ---- unknown endpoints and methods ------------------------------------------------------

#[tokio::test]
async fn unknown_endpoints_are_endpoint_not_found() {
    let app = spawn_app().await;
    for path in [
        "/api/2.0/mlflow/nope",
        "/nope",
        "/api/2.0/mlflow/runs/create/extra",
        "/api/9.9/mlflow/runs/get",
        "/api/2.0/mlflow/",
    ] {
        let got = tuple(app.get_path(path).await);
        assert_error(
            &got,
            404,
            "ENDPOINT_NOT_FOUND",
            &format!("No API endpoint found for {path}"),
        );
        let got = tuple(app.post_path(path, &json!({})).await);
        assert_error(
            &got,
            404,
            "ENDPOINT_NOT_FOUND",
            &format!("No API endpoint found for {path}"),
        );
    }
}

#[tokio::test]
async fn wrong_method_is_a_json_error() {
    // The stock server answers 405 from Flask; Cairn answers in MLflow's JSON format.
    let app = spawn_app().await;
    let r = app.get_path(&format!("{API}/runs/create")).await;
    assert_eq!(
        r.headers["content-type"], "application/json",
        "{:?}",
        r.headers
    );
    assert_error(
        &(r.status, r.body),
        400,
        "BAD_REQUEST",
        "Method GET is not allowed for /api/2.0/mlflow/runs/create",
    );
    let got = tuple(app.post_path(&format!("{API}/runs/get"), &json!({})).await);
    assert_error(
        &got,
        400,
        "BAD_REQUEST",
        "Method POST is not allowed for /api/2.0/mlflow/runs/get",
    );
    let res = app
        .client
        .delete(app.api("experiments/create"))
        .send()
        .await
        .unwrap();
    let got = tuple(common::reply(res).await);
    assert_error(
        &got,
        400,
        "BAD_REQUEST",
        "Method DELETE is not allowed for /api/2.0/mlflow/experiments/create",
    );
}

// ---- param immutability and atomicity --------------------------------------------------

#[tokio::test]
async fn params_are_immutable_and_a_failing_batch_writes_nothing() {
    let app = spawn_app().await;
    let run = app.create_run().await;
    let log = |metrics: Value, params: Value| {
        app.post(
            "runs/log-batch",
            json!({ "run_id": run, "metrics": metrics, "params": params }),
        )
    };
    let got = log(json!([]), json!([{ "key": "lr", "value": "0.1" }])).await;
    assert_eq!(got, (200, json!({})));
    // The same value again is accepted (clients retry).
    let got = log(json!([]), json!([{ "key": "lr", "value": "0.1" }])).await;
    assert_eq!(got, (200, json!({})));
    let got = app
        .post(
            "runs/log-parameter",
            json!({ "run_id": run, "key": "lr", "value": "0.1" }),
        )
        .await;
    assert_eq!(got, (200, json!({})));

    let conflict = format!(
        "Changing param values is not allowed. Params were already logged='[{{'key': 'lr', \
         'old_value': '0.1', 'new_value': '0.2'}}]' for run ID='{run}'."
    );
    let got = log(
        json!([metric("loss", 1.0, 5, 0)]),
        json!([{ "key": "other", "value": "x" }, { "key": "lr", "value": "0.2" }]),
    )
    .await;
    assert_invalid(&got, &conflict);
    let got = app
        .post(
            "runs/log-parameter",
            json!({ "run_id": run, "key": "lr", "value": "0.2" }),
        )
        .await;
    assert_invalid(&got, &conflict);

    // Atomicity: neither the metric nor the other param of the failed batch is there.
    assert_eq!(app.history(&run, "loss").await, json!({}));
    let body = app.get_ok("runs/get", &[("run_id", &run)]).await;
    let data = &body["run"]["data"];
    assert!(data.get("metrics").is_none(), "{data}");
    assert_eq!(data["params"], json!([{ "key": "lr", "value": "0.1" }]));
}

#[tokio::test]
async fn conflicting_duplicate_params_within_one_batch() {
    let app = spawn_app().await;
    let run = app.create_run().await;
    let got = app
        .post(
            "runs/log-batch",
            json!({ "run_id": run, "params": [
                { "key": "a", "value": "1" }, { "key": "a", "value": "2" }
            ]}),
        )
        .await;
    assert_invalid(
        &got,
        "Duplicate parameter keys have been submitted: [\"a\"]. Please ensure the request \
         contains only one param value per param key.",
    );
}

// ---- enums and ranges ------------------------------------------------------------------

#[tokio::test]
async fn invalid_run_view_type() {
    let app = spawn_app().await;
    let got = app
        .post(
            "runs/search",
            json!({ "experiment_ids": ["0"], "run_view_type": "SOMETIMES" }),
        )
        .await;
    assert_invalid(
        &got,
        "Invalid value \"SOMETIMES\" for parameter 'run_view_type' supplied: expected \
         ACTIVE_ONLY, DELETED_ONLY or ALL",
    );
    let got = app
        .post(
            "runs/search",
            json!({ "experiment_ids": ["0"], "run_view_type": 7 }),
        )
        .await;
    assert_invalid(
        &got,
        "Invalid value 7 for parameter 'run_view_type' supplied: expected ACTIVE_ONLY, \
         DELETED_ONLY or ALL",
    );
    // Names and proto numbers are both fine.
    for ok in [json!("ALL"), json!(3), json!("DELETED_ONLY")] {
        app.post_ok(
            "runs/search",
            json!({ "experiment_ids": ["0"], "run_view_type": ok }),
        )
        .await;
    }
}

#[tokio::test]
async fn invalid_run_status() {
    let app = spawn_app().await;
    let run = app.create_run().await;
    let got = app
        .post("runs/update", json!({ "run_id": run, "status": "DONE" }))
        .await;
    assert_invalid(&got, "Invalid run status: 'DONE'");
    let body = app.get_ok("runs/get", &[("run_id", &run)]).await;
    assert_eq!(body["run"]["info"]["status"], "RUNNING");
}

#[tokio::test]
async fn runs_search_max_results_out_of_range() {
    let app = spawn_app().await;
    for n in [0, -1, 50_001] {
        let got = app
            .post(
                "runs/search",
                json!({ "experiment_ids": ["0"], "max_results": n }),
            )
            .await;
        assert_invalid(
            &got,
            &format!(
                "Invalid value {n} for parameter 'max_results' supplied. It must be a positive \
                 integer at most 50000"
            ),
        );
    }
    app.post_ok(
        "runs/search",
        json!({ "experiment_ids": ["0"], "max_results": 50_000 }),
    )
    .await;
}

#[tokio::test]
async fn metric_history_limits() {
    let app = spawn_app().await;
    let run = app.create_run().await;
    let got = app
        .get(
            "metrics/get-history",
            &[
                ("run_id", &run),
                ("metric_key", "m"),
                ("max_results", "25001"),
            ],
        )
        .await;
    assert_invalid(
        &got,
        "Invalid value 25001 for parameter 'max_results' supplied. It must be a positive \
         integer at most 25000",
    );
    let mut query: Vec<(&str, &str)> = (0..101).map(|_| ("run_ids", run.as_str())).collect();
    query.push(("metric_key", "m"));
    let got = app.get("metrics/get-history-bulk-interval", &query).await;
    assert_invalid(
        &got,
        "GetMetricHistoryBulkInterval request must specify at most 100 run_ids. Received 101 \
         run_ids.",
    );
    let one = [("run_ids", run.as_str()), ("metric_key", "m")];
    let with = |extra: (&'static str, &'static str)| {
        let mut q = one.to_vec();
        q.push(extra);
        q
    };
    let got = app
        .get(
            "metrics/get-history-bulk-interval",
            &with(("max_results", "0")),
        )
        .await;
    assert_invalid(&got, "max_results must be between 1 and 2500.");
    let got = app
        .get(
            "metrics/get-history-bulk-interval",
            &with(("start_step", "5")),
        )
        .await;
    assert_invalid(
        &got,
        "If either start step or end step are specified, both must be specified.",
    );
    let mut q = with(("start_step", "5"));
    q.push(("end_step", "2"));
    let got = app.get("metrics/get-history-bulk-interval", &q).await;
    assert_invalid(
        &got,
        "end_step must be greater than start_step. Found start_step=5 and end_step=2.",
    );
}

#[tokio::test]
async fn deleting_a_missing_tag() {
    let app = spawn_app().await;
    let run = app.create_run().await;
    let got = app
        .post("runs/delete-tag", json!({ "run_id": run, "key": "nope" }))
        .await;
    assert_error(
        &got,
        404,
        "RESOURCE_DOES_NOT_EXIST",
        &format!("No tag with name: nope in run with id {run}"),
    );
}

#[tokio::test]
async fn deleting_the_default_experiment_is_refused() {
    let app = spawn_app().await;
    let got = app
        .post("experiments/delete", json!({ "experiment_id": "0" }))
        .await;
    assert_invalid(
        &got,
        "Cannot delete the default experiment '0'. This is an internal experiment.",
    );
}

#[tokio::test]
async fn writes_to_a_deleted_run_are_refused() {
    let app = spawn_app().await;
    let run = app.create_run().await;
    app.post_ok("runs/delete", json!({ "run_id": run })).await;
    let got = app
        .post(
            "runs/log-batch",
            json!({ "run_id": run, "metrics": [metric("m", 1.0, 1, 0)] }),
        )
        .await;
    assert_invalid(
        &got,
        &format!("The run {run} must be in the 'active' state. Current state is deleted."),
    );
}

#[tokio::test]
async fn lifecycle_conflicts() {
    let app = spawn_app().await;
    let a = app.create_experiment("a").await;
    let b = app.create_experiment("b").await;
    let got = app
        .post(
            "experiments/update",
            json!({ "experiment_id": b, "new_name": "a" }),
        )
        .await;
    assert_error(
        &got,
        400,
        "RESOURCE_ALREADY_EXISTS",
        "Experiment(name=a) already exists.",
    );
    app.post_ok("experiments/delete", json!({ "experiment_id": a }))
        .await;
    let got = app.post("runs/create", json!({ "experiment_id": a })).await;
    assert_invalid(
        &got,
        &format!("The experiment {a} must be in the 'active' state. Current state is deleted."),
    );
    // A deleted experiment still holds its name.
    let got = app.post("experiments/create", json!({ "name": "a" })).await;
    assert_error(
        &got,
        400,
        "RESOURCE_ALREADY_EXISTS",
        "Experiment(name=a) already exists.",
    );
    let got = app
        .post(
            "runs/create",
            json!({
                "experiment_id": "0",
                "run_name": "x",
                "tags": [{ "key": "mlflow.runName", "value": "y" }],
            }),
        )
        .await;
    assert_invalid(
        &got,
        "Both 'run_name' argument and 'mlflow.runName' tag are specified, but with different \
         values (run_name='x', mlflow.runName='y').",
    );
}
