//! Health, version and server capabilities.

use axum::extract::State;
use axum::http::{StatusCode, Uri};
use axum::response::IntoResponse;
use axum::Json;
use cairn_api::ErrorCode;
use serde_json::{json, Value};

use crate::error::ApiError;
use crate::{AppState, MLFLOW_COMPAT_VERSION};

/// Liveness plus a database ping: a server whose store is gone is not healthy.
pub(crate) async fn health(State(s): State<AppState>) -> impl IntoResponse {
    match s.tracking().store().ping().await {
        Ok(()) => (StatusCode::OK, "OK"),
        Err(_) => (StatusCode::SERVICE_UNAVAILABLE, "database unavailable"),
    }
}

pub(crate) async fn version() -> &'static str {
    MLFLOW_COMPAT_VERSION
}

/// What the client asks before choosing upload strategies. Presigned multipart transfers
/// are claimed only when they work (S3 with `--artifacts-presigned`); otherwise the client
/// streams everything through the server.
pub(crate) async fn server_info(State(s): State<AppState>) -> Json<Value> {
    let presigned = s.artifacts().supports_presigned();
    Json(json!({
        "store_type": "SqlStore",
        "workspaces_enabled": false,
        "trace_archival_enabled": false,
        "multipart_uploads_enabled": presigned,
        "multipart_downloads_enabled": presigned,
        "presigned_upload_run_id_supported": false,
        "presigned_upload_model_id_supported": false,
        "features_enabled": { "gateway": false },
    }))
}

/// Unknown paths: the registry client falls back to the next endpoint only on this code.
pub(crate) async fn not_found(uri: Uri) -> ApiError {
    ApiError::new(
        ErrorCode::EndpointNotFound,
        format!("No API endpoint found for {}", uri.path()),
    )
}
