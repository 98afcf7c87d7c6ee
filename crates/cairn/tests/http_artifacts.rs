//! The proxied artifact API over HTTP: streamed uploads and downloads with digests,
//! listings, deletion, the run-level endpoints, and every path-traversal class refused
//! with a 400 and no file touched.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::PathBuf;

use common::{files_under, spawn_app, Reply, TestApp};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const ARTIFACTS: &str = "/api/2.0/mlflow-artifacts/artifacts";

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Deterministic, incompressible-looking bytes.
fn payload(len: usize) -> Vec<u8> {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

async fn put(app: &TestApp, path: &str, body: Vec<u8>) -> Reply {
    let res = app
        .client
        .put(app.url(&format!("{ARTIFACTS}/{path}")))
        .body(body)
        .send()
        .await
        .unwrap();
    common::reply(res).await
}

async fn get_bytes(app: &TestApp, url_path: &str) -> (u16, reqwest::header::HeaderMap, Vec<u8>) {
    let res = app.client.get(app.url(url_path)).send().await.unwrap();
    let status = res.status().as_u16();
    let headers = res.headers().clone();
    (status, headers, res.bytes().await.unwrap().to_vec())
}

async fn delete(app: &TestApp, path: &str) -> Reply {
    let res = app
        .client
        .delete(app.url(&format!("{ARTIFACTS}/{path}")))
        .send()
        .await
        .unwrap();
    common::reply(res).await
}

fn artifact_root(app: &TestApp) -> PathBuf {
    app._dir.path().join("artifacts")
}

#[tokio::test]
async fn upload_download_round_trips_with_digest_and_safe_headers() {
    let app = spawn_app().await;
    let data = payload(3 * 1024 * 1024 + 17);
    let up = put(&app, "1/r1/artifacts/model/weights.bin", data.clone()).await;
    assert_eq!(up.status, 200, "{}", up.body);
    assert_eq!(up.body["sha256"], sha256_hex(&data));
    assert_eq!(up.body["file_size"], data.len() as u64);

    let (status, headers, body) = get_bytes(
        &app,
        &format!("{ARTIFACTS}/1/r1/artifacts/model/weights.bin"),
    )
    .await;
    assert_eq!(status, 200);
    assert!(body == data, "downloaded bytes differ from the upload");
    assert_eq!(headers["content-length"], data.len().to_string().as_str());
    assert_eq!(headers["content-type"], "application/octet-stream");
    assert_eq!(headers["x-content-type-options"], "nosniff");
    let b64 = {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(Sha256::digest(&data))
    };
    assert_eq!(headers["repr-digest"], format!("sha-256=:{b64}:").as_str());

    // Overwriting replaces bytes and digest; an empty file is a file too.
    let up = put(&app, "1/r1/artifacts/model/weights.bin", b"v2".to_vec()).await;
    assert_eq!(up.body["sha256"], sha256_hex(b"v2"));
    let (_, _, body) = get_bytes(
        &app,
        &format!("{ARTIFACTS}/1/r1/artifacts/model/weights.bin"),
    )
    .await;
    assert_eq!(body, b"v2");
    let up = put(&app, "1/r1/artifacts/empty", Vec::new()).await;
    assert_eq!(up.status, 200);
    assert_eq!(up.body["sha256"], sha256_hex(b""));
    let (status, headers, body) =
        get_bytes(&app, &format!("{ARTIFACTS}/1/r1/artifacts/empty")).await;
    assert_eq!((status, body.len()), (200, 0));
    assert_eq!(headers["content-length"], "0");
}

#[tokio::test]
async fn active_content_types_are_served_as_plain_text() {
    let app = spawn_app().await;
    let html = b"<script>alert(document.cookie)</script>".to_vec();
    for name in ["page.html", "image.svg", "code.js"] {
        put(&app, &format!("1/r/artifacts/{name}"), html.clone()).await;
        let (status, headers, _) =
            get_bytes(&app, &format!("{ARTIFACTS}/1/r/artifacts/{name}")).await;
        assert_eq!(status, 200);
        assert_eq!(
            headers["content-type"], "text/plain; charset=utf-8",
            "{name}"
        );
        assert_eq!(headers["x-content-type-options"], "nosniff");
    }
    put(&app, "1/r/artifacts/d.json", b"{}".to_vec()).await;
    let (_, headers, _) = get_bytes(&app, &format!("{ARTIFACTS}/1/r/artifacts/d.json")).await;
    assert_eq!(headers["content-type"], "application/json; charset=utf-8");
}

#[tokio::test]
async fn listing_names_direct_children() {
    let app = spawn_app().await;
    for (p, n) in [
        ("1/r/artifacts/a.txt", 3),
        ("1/r/artifacts/dir/b.txt", 5),
        ("1/r/artifacts/dir/sub/c.txt", 7),
        ("1/r/artifacts/dir0/d", 1),
    ] {
        assert_eq!(put(&app, p, vec![b'x'; n]).await.status, 200);
    }
    let list = |q: &str| {
        let app = &app;
        let q = q.to_string();
        async move {
            let r = app
                .get_path(&format!("/api/2.0/mlflow-artifacts/artifacts?path={q}"))
                .await;
            assert_eq!(r.status, 200, "{}", r.body);
            r.body
        }
    };
    assert_eq!(
        list("1/r/artifacts").await,
        json!({"files": [
            {"path": "a.txt", "is_dir": false, "file_size": 3},
            {"path": "dir", "is_dir": true},
            {"path": "dir0", "is_dir": true},
        ]})
    );
    assert_eq!(
        list("1/r/artifacts/dir").await,
        json!({"files": [
            {"path": "b.txt", "is_dir": false, "file_size": 5},
            {"path": "sub", "is_dir": true},
        ]})
    );
    // A file, a missing directory: nothing to list (as MLflow's local repository).
    assert_eq!(list("1/r/artifacts/a.txt").await, json!({"files": []}));
    assert_eq!(list("1/nope").await, json!({"files": []}));
    let root = app.get_path("/api/2.0/mlflow-artifacts/artifacts").await;
    assert_eq!(root.body, json!({"files": [{"path": "1", "is_dir": true}]}));
}

#[tokio::test]
async fn delete_removes_a_file_or_a_tree_and_forgets_digests() {
    let app = spawn_app().await;
    for p in [
        "1/r/artifacts/keep.txt",
        "1/r/artifacts/dir/a",
        "1/r/artifacts/dir/sub/b",
        "1/r/artifacts/dir0/c",
    ] {
        put(&app, p, b"data".to_vec()).await;
    }
    assert_eq!(delete(&app, "1/r/artifacts/dir").await.status, 200);
    assert_eq!(
        files_under(&artifact_root(&app)),
        vec!["1/r/artifacts/dir0/c", "1/r/artifacts/keep.txt"]
    );
    assert_eq!(delete(&app, "1/r/artifacts/keep.txt").await.status, 200);
    let (status, _, _) = get_bytes(&app, &format!("{ARTIFACTS}/1/r/artifacts/keep.txt")).await;
    assert_eq!(status, 404);
    // Deleting what is not there is not an error (as MLflow).
    assert_eq!(delete(&app, "1/r/artifacts/never").await.status, 200);
    let missing = app
        .get_path(&format!("{ARTIFACTS}/1/r/artifacts/keep.txt"))
        .await;
    assert_eq!(missing.body["error_code"], "RESOURCE_DOES_NOT_EXIST");
}

#[tokio::test]
async fn run_artifacts_are_listed_and_downloaded_through_the_tracking_api() {
    let app = spawn_app().await;
    let run_id = app.create_run().await;
    let run = app.get_ok("runs/get", &[("run_id", &run_id)]).await;
    let uri = run["run"]["info"]["artifact_uri"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(uri, format!("mlflow-artifacts:/0/{run_id}/artifacts"));
    let root = format!("0/{run_id}/artifacts");
    put(
        &app,
        &format!("{root}/model/MLmodel"),
        b"flavors: {}".to_vec(),
    )
    .await;
    put(&app, &format!("{root}/metrics.csv"), b"1,2".to_vec()).await;

    let top = app.get_ok("artifacts/list", &[("run_id", &run_id)]).await;
    assert_eq!(
        top,
        json!({"root_uri": uri, "files": [
            {"path": "metrics.csv", "is_dir": false, "file_size": 3},
            {"path": "model", "is_dir": true},
        ]})
    );
    let sub = app
        .get_ok("artifacts/list", &[("run_id", &run_id), ("path", "model")])
        .await;
    assert_eq!(
        sub["files"],
        json!([{"path": "model/MLmodel", "is_dir": false, "file_size": 11}])
    );
    let (status, headers, body) = get_bytes(
        &app,
        &format!("/get-artifact?run_uuid={run_id}&path=model/MLmodel"),
    )
    .await;
    assert_eq!((status, body.as_slice()), (200, b"flavors: {}".as_slice()));
    assert_eq!(headers["x-content-type-options"], "nosniff");

    let missing_run = app
        .get(
            "artifacts/list",
            &[("run_id", "0123456789abcdef0123456789abcdef")],
        )
        .await;
    assert_eq!(missing_run.0, 404);
}

#[tokio::test]
async fn multipart_and_presigned_are_declined_as_mlflow_does() {
    let app = spawn_app().await;
    // Local disk has no presigned uploads: the client is told to fall back to one PUT.
    let bodies = [
        (
            "create",
            json!({"path": "/home/me/big.bin", "num_parts": 3}),
        ),
        (
            "complete",
            json!({"path": "/home/me/big.bin", "upload_id": "u1",
                            "parts": [{"part_number": 1, "etag": "e1"}]}),
        ),
        (
            "abort",
            json!({"path": "/home/me/big.bin", "upload_id": "u1"}),
        ),
    ];
    for (op, body) in bodies {
        let r = app
            .post_path(
                &format!("/api/2.0/mlflow-artifacts/mpu/{op}/1/r/artifacts"),
                &body,
            )
            .await;
        assert_eq!(r.status, 501, "{op}");
        assert_eq!(
            r.body,
            json!({"error_code": "NOT_IMPLEMENTED",
                   "message": "Multipart upload is not supported for the current artifact repository"})
        );
    }
    // Malformed requests are 400s before that.
    let r = app
        .post_path(
            "/api/2.0/mlflow-artifacts/mpu/complete/1/r/artifacts",
            &json!({"path": "big.bin"}),
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(
        r.body["message"],
        "Missing value for required parameter 'upload_id'."
    );
    let r = app
        .get_path("/api/2.0/mlflow-artifacts/presigned/1/r/artifacts/big.bin")
        .await;
    assert_eq!(
        (r.status, &r.body["error_code"]),
        (501, &json!("NOT_IMPLEMENTED"))
    );
    let info = app.get_path("/api/3.0/mlflow/server-info").await;
    assert_eq!(info.body["multipart_uploads_enabled"], false);
    assert_eq!(info.body["multipart_downloads_enabled"], false);
}

/// Sends one request with the path exactly as given (no client-side normalisation of
/// `..`), returning status and body.
async fn raw_request(app: &TestApp, method: &str, path: &str) -> (u16, Value) {
    let addr = app.base_url.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 5\r\nConnection: close\r\n\r\npwned"
    );
    stream.write_all(req.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.unwrap();
    let text = String::from_utf8_lossy(&raw);
    let status: u16 = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = text.split("\r\n\r\n").nth(1).unwrap_or("");
    (
        status,
        serde_json::from_str(body).unwrap_or(Value::String(body.into())),
    )
}

#[tokio::test]
async fn every_traversal_class_is_refused_and_touches_nothing() {
    let app = spawn_app().await;
    put(&app, "1/r/artifacts/ok.txt", b"ok".to_vec()).await;
    // A directory beside the artifact root that a traversal would reach.
    let outside = app._dir.path().join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(outside.join("secret.txt"), "secret").unwrap();
    let before = files_under(app._dir.path());

    // (class, path as sent on the wire after /artifacts/)
    let cases = [
        ("dot-dot", "1/r/artifacts/../../../outside/secret.txt"),
        ("dot-dot at start", "../outside/secret.txt"),
        ("single dot", "1/./r/artifacts/x"),
        ("percent-encoded dots", "%2e%2e/outside/secret.txt"),
        (
            "percent-encoded dots and slash",
            "%2E%2E%2Foutside%2Fsecret.txt",
        ),
        ("double-encoded dots", "%252e%252e/outside/secret.txt"),
        ("double-encoded slash", "1%252f..%252foutside"),
        ("absolute", "/etc/passwd"),
        ("encoded absolute", "%2Fetc%2Fpasswd"),
        ("file URI", "file:%2F%2F%2Fetc%2Fpasswd"),
        ("backslashes", "..%5C..%5Coutside%5Csecret.txt"),
        ("fragment", "1/r/artifacts/x%23/../../outside"),
        ("NUL byte", "1/r/artifacts/x%00.txt"),
        ("control character", "1/r/artifacts/x%0A.txt"),
        ("windows drive", "C:%5CWindows%5Cwin.ini"),
        ("invalid UTF-8", "%ff%fe"),
    ];
    for (class, path) in cases {
        for method in ["GET", "PUT", "DELETE"] {
            let (status, body) = raw_request(&app, method, &format!("{ARTIFACTS}/{path}")).await;
            assert_eq!(status, 400, "{class}: {method} {path} -> {body}");
            assert_eq!(
                body["error_code"], "INVALID_PARAMETER_VALUE",
                "{class}: {body}"
            );
            let msg = body["message"].as_str().unwrap();
            assert!(msg.starts_with("Invalid path"), "{class}: {msg}");
            assert!(!msg.contains("secret\n"), "{class}: {msg}");
        }
    }
    // Listing and the run-level endpoints take paths in the query string.
    let run_id = app.create_run().await;
    for q in [
        "..",
        "../..",
        "%2e%2e",
        "%252e%252e",
        "/etc",
        "a%5Cb",
        "file:///etc",
    ] {
        let r = app
            .get_path(&format!("/api/2.0/mlflow-artifacts/artifacts?path={q}"))
            .await;
        assert_eq!(r.status, 400, "list ?path={q}: {}", r.body);
        let (status, body) = app
            .get(
                "artifacts/list",
                &[("run_id", &run_id), ("path", &percent_decoded(q))],
            )
            .await;
        assert_eq!(status, 400, "artifacts/list path={q}: {body}");
        let r = app
            .get_path(&format!(
                "/get-artifact?run_uuid={run_id}&path={q}/secret.txt"
            ))
            .await;
        assert_eq!(r.status, 400, "get-artifact path={q}: {}", r.body);
    }
    assert_eq!(files_under(app._dir.path()), before, "no file was touched");
    assert_eq!(
        std::fs::read_to_string(outside.join("secret.txt")).unwrap(),
        "secret"
    );
}

fn percent_decoded(q: &str) -> String {
    percent_encoding::percent_decode_str(q)
        .decode_utf8_lossy()
        .into_owned()
}

#[tokio::test]
async fn symlinks_inside_the_store_are_never_followed() {
    let app = spawn_app().await;
    put(&app, "1/r/artifacts/ok.txt", b"ok".to_vec()).await;
    let outside = app._dir.path().join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(outside.join("secret.txt"), "secret").unwrap();
    let run_dir = artifact_root(&app).join("1/r/artifacts");
    std::os::unix::fs::symlink(&outside, run_dir.join("link")).unwrap();
    std::os::unix::fs::symlink(outside.join("secret.txt"), run_dir.join("file-link")).unwrap();

    for path in ["1/r/artifacts/link/secret.txt", "1/r/artifacts/file-link"] {
        let r = app.get_path(&format!("{ARTIFACTS}/{path}")).await;
        assert_eq!(r.status, 400, "GET {path}: {}", r.body);
        assert!(
            r.body["message"]
                .as_str()
                .unwrap()
                .contains("symbolic link"),
            "{}",
            r.body
        );
        assert_eq!(
            put(&app, path, b"pwned".to_vec()).await.status,
            400,
            "PUT {path}"
        );
        assert_eq!(delete(&app, path).await.status, 400, "DELETE {path}");
    }
    let r = app
        .get_path("/api/2.0/mlflow-artifacts/artifacts?path=1/r/artifacts/link")
        .await;
    assert_eq!(r.status, 400, "listing through a link: {}", r.body);
    let listing = app
        .get_path("/api/2.0/mlflow-artifacts/artifacts?path=1/r/artifacts")
        .await;
    assert_eq!(
        listing.body,
        json!({"files": [{"path": "ok.txt", "is_dir": false, "file_size": 2}]}),
        "links are not listed"
    );
    assert_eq!(files_under(&outside), vec!["secret.txt"]);
    assert_eq!(
        std::fs::read_to_string(outside.join("secret.txt")).unwrap(),
        "secret"
    );
}

#[tokio::test]
async fn runs_outside_the_proxied_store_are_not_served() {
    let app = spawn_app().await;
    let exp = app
        .post_ok(
            "experiments/create",
            json!({"name": "elsewhere", "artifact_location": "file:///etc"}),
        )
        .await;
    let exp_id = exp["experiment_id"].as_str().unwrap();
    let run_id = app.create_run_in(exp_id).await;
    let (status, body) = app.get("artifacts/list", &[("run_id", &run_id)]).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error_code"], "INVALID_PARAMETER_VALUE");
    assert!(
        body["message"].as_str().unwrap().contains("file:///etc"),
        "{body}"
    );
    let r = app
        .get_path(&format!("/get-artifact?run_uuid={run_id}&path=passwd"))
        .await;
    assert_eq!(r.status, 400, "{}", r.body);
}

#[tokio::test]
async fn file_and_directory_clashes_are_client_errors() {
    let app = spawn_app().await;
    assert_eq!(
        put(&app, "1/r/artifacts/dir/f.txt", b"x".to_vec())
            .await
            .status,
        200
    );
    let before = files_under(&artifact_root(&app));

    // A file where a directory is, and below a file.
    let over_dir = put(&app, "1/r/artifacts/dir", b"y".to_vec()).await;
    assert_eq!(over_dir.status, 400, "{}", over_dir.body);
    assert_eq!(
        over_dir.body,
        json!({"error_code": "INVALID_PARAMETER_VALUE",
               "message": "Invalid path '1/r/artifacts/dir': a directory of that name exists"})
    );
    let under_file = put(&app, "1/r/artifacts/dir/f.txt/sub", b"y".to_vec()).await;
    assert_eq!(under_file.status, 400, "{}", under_file.body);
    assert_eq!(
        under_file.body["message"],
        "Invalid path '1/r/artifacts/dir/f.txt/sub': a parent of it is a file"
    );
    // Reading a directory or below a file is simply not found; listing below a file is empty.
    for path in ["1/r/artifacts/dir", "1/r/artifacts/dir/f.txt/sub"] {
        let r = app.get_path(&format!("{ARTIFACTS}/{path}")).await;
        assert_eq!(r.status, 404, "{path}: {}", r.body);
        assert_eq!(r.body["error_code"], "RESOURCE_DOES_NOT_EXIST");
    }
    let r = app
        .get_path("/api/2.0/mlflow-artifacts/artifacts?path=1/r/artifacts/dir/f.txt/sub")
        .await;
    assert_eq!((r.status, r.body), (200, json!({"files": []})));
    assert_eq!(
        delete(&app, "1/r/artifacts/dir/f.txt/sub").await.status,
        200
    );
    assert_eq!(files_under(&artifact_root(&app)), before, "nothing changed");
}

#[tokio::test]
async fn model_version_artifacts_are_downloaded_through_the_registry() {
    let app = spawn_app().await;
    let run_id = app.create_run().await;
    let root = format!("0/{run_id}/artifacts");
    put(
        &app,
        &format!("{root}/model/MLmodel"),
        b"flavors: {}".to_vec(),
    )
    .await;
    put(
        &app,
        &format!("{root}/secret.txt"),
        b"not the model".to_vec(),
    )
    .await;
    app.post_ok("registered-models/create", json!({"name": "churn"}))
        .await;
    app.post_ok(
        "model-versions/create",
        json!({"name": "churn", "run_id": run_id,
               "source": format!("mlflow-artifacts:/{root}/model")}),
    )
    .await;

    let (status, headers, body) = get_bytes(
        &app,
        "/model-versions/get-artifact?name=churn&version=1&path=MLmodel",
    )
    .await;
    assert_eq!((status, body.as_slice()), (200, b"flavors: {}".as_slice()));
    assert_eq!(headers["x-content-type-options"], "nosniff");

    // Out of the version's directory, into the run's other files: refused.
    for path in ["../secret.txt", "%2e%2e/secret.txt", "/etc/passwd"] {
        let r = app
            .get_path(&format!(
                "/model-versions/get-artifact?name=churn&version=1&path={path}"
            ))
            .await;
        assert_eq!(r.status, 400, "{path}: {}", r.body);
    }
    let r = app
        .get_path("/model-versions/get-artifact?name=nope&version=1&path=MLmodel")
        .await;
    assert_eq!(r.status, 404, "{}", r.body);
    assert_eq!(r.body["error_code"], "RESOURCE_DOES_NOT_EXIST");
    let r = app
        .get_path("/model-versions/get-artifact?name=churn&version=1")
        .await;
    assert_eq!(r.status, 400, "{}", r.body);
}

#[tokio::test]
async fn model_version_sources_outside_the_store_are_refused() {
    let app = spawn_app().await;
    let run_id = app.create_run().await;
    app.post_ok("registered-models/create", json!({"name": "m"}))
        .await;
    let root = format!("mlflow-artifacts:/0/{run_id}/artifacts");
    let before = files_under(app._dir.path());
    // (class, source, with the run id)
    let cases = [
        ("file URI", "file:///etc/passwd".to_string(), false),
        (
            "file URI with a run",
            "file:///etc/passwd".to_string(),
            true,
        ),
        ("absolute local path", "/etc/passwd".to_string(), true),
        ("relative local path", "../../etc/passwd".to_string(), true),
        (
            "dot-dot inside the run",
            format!("{root}/../../../etc"),
            true,
        ),
        (
            "encoded dot-dot inside the run",
            format!("{root}/%2e%2e/%2e%2e/x"),
            true,
        ),
        (
            "double-encoded dot-dot",
            format!("{root}/%252e%252e/x"),
            true,
        ),
        (
            "another run's artifacts",
            "mlflow-artifacts:/0/0123456789abcdef0123456789abcdef/artifacts/model".to_string(),
            true,
        ),
        (
            "runs URI escaping the run",
            format!("runs:/{run_id}/../../x"),
            false,
        ),
        (
            "object store URI with dot-dot",
            "s3://bucket/a/../../b".to_string(),
            false,
        ),
    ];
    for (class, source, with_run) in cases {
        let mut body = json!({"name": "m", "source": source});
        if with_run {
            body["run_id"] = json!(run_id);
        }
        let (status, reply) = app.post("model-versions/create", body).await;
        assert_eq!(status, 400, "{class}: {source} -> {reply}");
        assert_eq!(
            reply["error_code"], "INVALID_PARAMETER_VALUE",
            "{class}: {reply}"
        );
    }
    let versions = app
        .get_ok("model-versions/search", &[("filter", "name = 'm'")])
        .await;
    assert_eq!(versions, json!({}), "no version was created");
    assert_eq!(files_under(app._dir.path()), before, "no file was touched");
}

#[tokio::test]
async fn an_interrupted_upload_leaves_nothing_behind() {
    let app = spawn_app().await;
    put(&app, "1/r/artifacts/keep.txt", b"keep".to_vec()).await;
    let before = files_under(&artifact_root(&app));
    // Announce 20 MiB (past the upload buffer, so a multipart upload is under way), send
    // 10 MiB, then hang up.
    let addr = app.base_url.trim_start_matches("http://").to_string();
    let mut stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let head = format!(
        "PUT {ARTIFACTS}/1/r/artifacts/big.bin HTTP/1.1\r\nHost: {addr}\r\nContent-Length: {}\r\n\r\n",
        20 << 20
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(&payload(10 << 20)).await.unwrap();
    // Closing our sending half truncates the body; the server answers once its handler
    // has given up on the upload (and cleaned up after it).
    stream.shutdown().await.unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await.unwrap();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(answer.contains("BAD_REQUEST"), "{answer}");
    let r = app
        .get_path(&format!("{ARTIFACTS}/1/r/artifacts/big.bin"))
        .await;
    assert_eq!(
        r.status, 404,
        "a partial upload must never be visible: {}",
        r.body
    );
    assert_eq!(
        files_under(&artifact_root(&app)),
        before,
        "no staging file left behind"
    );
    let listing = app
        .get_path("/api/2.0/mlflow-artifacts/artifacts?path=1/r/artifacts")
        .await;
    assert_eq!(
        listing.body,
        json!({"files": [{"path": "keep.txt", "is_dir": false, "file_size": 4}]})
    );
}

#[tokio::test]
async fn a_digest_is_served_only_for_the_bytes_it_was_recorded_for() {
    let app = spawn_app().await;
    let up = put(&app, "1/r/artifacts/model.bin", b"original".to_vec()).await;
    assert_eq!(up.status, 200);
    let url = format!("{ARTIFACTS}/1/r/artifacts/model.bin");
    let (_, headers, _) = get_bytes(&app, &url).await;
    assert!(headers.contains_key("repr-digest"));

    // Same size, other bytes, written behind the server's back (as a racing writer or a
    // tampering one would): the recorded digest no longer describes the file.
    let file = artifact_root(&app).join("1/r/artifacts/model.bin");
    let swap = file.with_extension("swap");
    std::fs::write(&swap, b"tampered").unwrap();
    std::fs::rename(&swap, &file).unwrap();
    let (status, headers, body) = get_bytes(&app, &url).await;
    assert_eq!((status, body.as_slice()), (200, b"tampered".as_slice()));
    assert!(
        !headers.contains_key("repr-digest"),
        "a stale digest was served: {:?}",
        headers.get("repr-digest")
    );

    // Uploading again records the digest of what is there now.
    put(&app, "1/r/artifacts/model.bin", b"tampered".to_vec()).await;
    let (_, headers, _) = get_bytes(&app, &url).await;
    let want = {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(Sha256::digest(b"tampered"))
    };
    assert_eq!(headers["repr-digest"], format!("sha-256=:{want}:").as_str());
}
