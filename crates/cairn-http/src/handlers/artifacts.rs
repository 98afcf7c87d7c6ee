//! MLflow's proxied artifact API (`/api/2.0/mlflow-artifacts/...`), the tracking API's
//! `artifacts/list`, and the UI's `/get-artifact`.
//!
//! Paths are taken from the raw, still percent-encoded URI and decoded exactly once by
//! [`ArtifactPath::parse`], so no encoding trick reaches the store undecoded or decoded
//! twice. Bodies stream both ways.

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderValue, Uri};
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::Engine;
use cairn_api::requests::{
    CreateMultipartUpload, FinishMultipartUpload, GetModelVersionArtifact, GetRunArtifact,
    ListArtifacts, ListProxiedArtifacts,
};
use cairn_artifacts::{content_type, proxied_path, ArtifactPath, Entry};
use serde_json::{json, Value};

use crate::error::{required_str, ApiError, ApiResult};
use crate::extract::Mlflow;
use crate::AppState;

/// Where the proxied artifact API is mounted.
pub(crate) const ARTIFACT_PREFIXES: [&str; 2] = [
    "/api/2.0/mlflow-artifacts",
    "/ajax-api/2.0/mlflow-artifacts",
];

/// The artifact path of a proxied-API request: the raw URI path after
/// `/mlflow-artifacts/<section>/`.
fn path_after(uri: &Uri, section: &str) -> ApiResult<ArtifactPath> {
    let marker = format!("/mlflow-artifacts/{section}/");
    let raw = uri
        .path()
        .split_once(&marker)
        .map(|(_, rest)| rest)
        .unwrap_or("");
    Ok(ArtifactPath::parse(raw)?)
}

/// A path from a query string (decoded once already by the query parser; decoding it
/// once more exposes double-encoded traversal).
fn query_path(value: Option<&str>) -> ApiResult<ArtifactPath> {
    Ok(ArtifactPath::parse(value.unwrap_or(""))?)
}

fn file_info(path: String, e: &Entry) -> Value {
    match e.size {
        Some(size) if !e.is_dir => json!({ "path": path, "is_dir": false, "file_size": size }),
        _ => json!({ "path": path, "is_dir": e.is_dir }),
    }
}

/// `PUT .../artifacts/<path>`: streams the body into the store.
pub(crate) async fn upload(
    State(s): State<AppState>,
    uri: Uri,
    body: Body,
) -> ApiResult<Json<Value>> {
    let path = path_after(&uri, "artifacts")?;
    let file = s.artifacts().upload(&path, body.into_data_stream()).await?;
    Ok(Json(json!({
        "path": file.path,
        "file_size": file.size,
        "sha256": file.sha256,
    })))
}

/// `GET .../artifacts/<path>`: streams a file out.
pub(crate) async fn download(State(s): State<AppState>, uri: Uri) -> ApiResult<Response> {
    let path = path_after(&uri, "artifacts")?;
    file_response(&s, &path).await
}

/// `DELETE .../artifacts/<path>`: a file, or a directory with everything under it.
pub(crate) async fn delete(State(s): State<AppState>, uri: Uri) -> ApiResult<Json<Value>> {
    let path = path_after(&uri, "artifacts")?;
    s.artifacts().delete(&path).await?;
    Ok(Json(json!({})))
}

/// `GET .../artifacts?path=<dir>`: the directory's direct children, by name.
pub(crate) async fn list(
    State(s): State<AppState>,
    Mlflow(req): Mlflow<ListProxiedArtifacts>,
) -> ApiResult<Json<Value>> {
    let dir = query_path(req.path.as_deref())?;
    let entries = s.artifacts().list(&dir).await?;
    let files: Vec<Value> = entries
        .iter()
        .map(|e| file_info(e.name.clone(), e))
        .collect();
    Ok(Json(json!({ "files": files })))
}

/// `POST .../mpu/create/<dir>`: starts a presigned multipart upload (S3 with
/// `--artifacts-presigned`; otherwise 501 with the message that makes the client fall back
/// to one streamed PUT).
pub(crate) async fn mpu_create(
    State(s): State<AppState>,
    uri: Uri,
    Mlflow(req): Mlflow<CreateMultipartUpload>,
) -> ApiResult<Json<Value>> {
    let dir = path_after(&uri, "mpu/create")?;
    let local_file = required_str(req.path, "path")?;
    let (_, plan) = s
        .artifacts()
        .create_multipart(&dir, &local_file, req.num_parts.unwrap_or(1))
        .await?;
    let credentials: Vec<Value> = plan
        .parts
        .iter()
        .map(|(n, url)| json!({ "part_number": n, "url": url, "headers": {} }))
        .collect();
    Ok(Json(
        json!({ "upload_id": plan.upload_id, "credentials": credentials }),
    ))
}

/// `POST .../mpu/complete/<dir>`: assembles the parts and records the file's digest.
pub(crate) async fn mpu_complete(
    State(s): State<AppState>,
    uri: Uri,
    Mlflow(req): Mlflow<FinishMultipartUpload>,
) -> ApiResult<Json<Value>> {
    let dir = path_after(&uri, "mpu/complete")?;
    let local_file = required_str(req.path, "path")?;
    let upload_id = required_str(req.upload_id, "upload_id")?;
    let parts = req
        .parts
        .into_iter()
        .map(|p| {
            Ok((
                p.part_number
                    .ok_or_else(|| ApiError::missing("part_number"))?,
                required_str(p.etag, "etag")?,
            ))
        })
        .collect::<ApiResult<Vec<_>>>()?;
    s.artifacts()
        .complete_multipart(&dir, &local_file, &upload_id, parts)
        .await?;
    Ok(Json(json!({})))
}

/// `POST .../mpu/abort/<dir>`.
pub(crate) async fn mpu_abort(
    State(s): State<AppState>,
    uri: Uri,
    Mlflow(req): Mlflow<FinishMultipartUpload>,
) -> ApiResult<Json<Value>> {
    let dir = path_after(&uri, "mpu/abort")?;
    let local_file = required_str(req.path, "path")?;
    let upload_id = required_str(req.upload_id, "upload_id")?;
    s.artifacts()
        .abort_multipart(&dir, &local_file, &upload_id)
        .await?;
    Ok(Json(json!({})))
}

/// `GET .../presigned/<path>`: a URL to download the file straight from the store.
pub(crate) async fn presigned(State(s): State<AppState>, uri: Uri) -> ApiResult<Json<Value>> {
    let path = path_after(&uri, "presigned")?;
    let (url, size) = s.artifacts().presigned_download(&path).await?;
    Ok(Json(
        json!({ "url": url, "headers": {}, "file_size": size }),
    ))
}

/// The store path of a run's artifact root, which must be a proxied URI: runs whose
/// experiment points elsewhere (`file://`, `s3://`) are never read through this server.
async fn run_root(s: &AppState, run_id: Option<&str>) -> ApiResult<(String, ArtifactPath)> {
    let run_id = run_id.ok_or_else(|| ApiError::missing("run_id"))?;
    let run = s.tracking().get_run(run_id).await?;
    let uri = run.info.artifact_uri;
    let root = served_root(&uri, &format!("run {run_id}"))?;
    Ok((uri, root))
}

/// The store path behind `uri`, which must be a proxied location: artifacts elsewhere
/// (`file://`, `s3://`) are never read through this server. `owner` names whose they are.
fn served_root(uri: &str, owner: &str) -> ApiResult<ArtifactPath> {
    match proxied_path(uri) {
        Some(root) => Ok(root?),
        None => Err(ApiError::invalid(format!(
            "The artifacts of {owner} are at '{uri}', which this server does not serve; \
             only mlflow-artifacts: locations are proxied"
        ))),
    }
}

/// The file named by a `path` query parameter, which must not be empty.
fn required_file(path: Option<&str>) -> ApiResult<ArtifactPath> {
    let file = query_path(path)?;
    if file.is_root() {
        return Err(ApiError::missing("path"));
    }
    Ok(file)
}

/// `GET artifacts/list?run_id=&path=`: a run's artifact directory, paths relative to the
/// run's artifact root.
pub(crate) async fn list_run_artifacts(
    State(s): State<AppState>,
    Mlflow(req): Mlflow<ListArtifacts>,
) -> ApiResult<Json<Value>> {
    let (root_uri, root) = run_root(&s, req.run.id()).await?;
    let sub = query_path(req.path.as_deref())?;
    let entries = s.artifacts().list(&root.join(&sub)).await?;
    let files: Vec<Value> = entries
        .iter()
        .map(|e| {
            let rel = if sub.is_root() {
                e.name.clone()
            } else {
                format!("{sub}/{}", e.name)
            };
            file_info(rel, e)
        })
        .collect();
    Ok(Json(json!({ "root_uri": root_uri, "files": files })))
}

/// `GET /get-artifact?run_uuid=&path=`: one file of a run (the UI's download link).
pub(crate) async fn get_run_artifact(
    State(s): State<AppState>,
    Mlflow(req): Mlflow<GetRunArtifact>,
) -> ApiResult<Response> {
    let (_, root) = run_root(&s, req.run.id()).await?;
    let sub = required_file(req.path.as_deref())?;
    file_response(&s, &root.join(&sub)).await
}

/// `GET /model-versions/get-artifact?name=&version=&path=`: one file of a registered model
/// version (the UI's download link), found through the version's download URI.
pub(crate) async fn get_model_version_artifact(
    State(s): State<AppState>,
    Mlflow(req): Mlflow<GetModelVersionArtifact>,
) -> ApiResult<Response> {
    let name = required_str(req.name, "name")?;
    let version = required_str(req.version, "version")?;
    let sub = required_file(req.path.as_deref())?;
    let uri = s
        .registry()
        .get_model_version_download_uri(&name, &version)
        .await?;
    let root = served_root(&uri, &format!("model '{name}' version {version}"))?;
    file_response(&s, &root.join(&sub)).await
}

/// A file as a streamed response with its length, a safe content type, `nosniff`, and
/// its recorded digest as `Repr-Digest` (RFC 9530).
async fn file_response(s: &AppState, path: &ArtifactPath) -> ApiResult<Response> {
    let (download, sha256) = s.artifacts().download(path).await?;
    let mut response = Body::from_stream(download.body).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(download.size));
    if let Ok(v) = HeaderValue::from_str(&content_type(path)) {
        headers.insert(header::CONTENT_TYPE, v);
    }
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    if let Some(digest) = sha256.as_deref().and_then(repr_digest) {
        headers.insert("repr-digest", digest);
    }
    Ok(response)
}

/// `sha-256=:<base64>:` from a lowercase hex digest.
fn repr_digest(hex: &str) -> Option<HeaderValue> {
    let bytes: Option<Vec<u8>> = (0..hex.len())
        .step_by(2)
        .map(|i| {
            hex.get(i..i + 2)
                .and_then(|b| u8::from_str_radix(b, 16).ok())
        })
        .collect();
    let b64 = base64::engine::general_purpose::STANDARD.encode(bytes?);
    HeaderValue::from_str(&format!("sha-256=:{b64}:")).ok()
}
