//! Cross-cutting layers: request ids on every log line, a `Server-Timing` header so
//! benchmarks can separate server time from client time, and panic containment.

use std::any::Any;
use std::time::Instant;

use axum::extract::Request;
use axum::http::{HeaderValue, Response};
use axum::middleware::Next;
use axum::response::IntoResponse;
use cairn_api::ErrorCode;

use crate::error::ApiError;

/// Adds `Server-Timing: app;dur=<ms>` measured from routing to the response head.
pub(crate) async fn server_timing(req: Request, next: Next) -> axum::response::Response {
    let start = Instant::now();
    let mut res = next.run(req).await;
    let ms = start.elapsed().as_secs_f64() * 1000.0;
    if let Ok(v) = HeaderValue::from_str(&format!("app;dur={ms:.3}")) {
        res.headers_mut().insert("server-timing", v);
    }
    res
}

/// Turns a handler panic into MLflow's INTERNAL_ERROR body; the panic is logged.
pub(crate) fn panic_response(err: Box<dyn Any + Send + 'static>) -> Response<axum::body::Body> {
    let detail = err
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| err.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "unknown panic".into());
    tracing::error!(panic = %detail, "handler panicked");
    ApiError::new(
        ErrorCode::InternalError,
        "An internal error occurred; see the server log for this request id.",
    )
    .into_response()
}
