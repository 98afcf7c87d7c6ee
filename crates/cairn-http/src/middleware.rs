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

/// Longest client-supplied `x-request-id` kept.
const MAX_REQUEST_ID: usize = 128;

/// Whether a client-supplied request id is kept: it reaches log lines and the audit log,
/// so only short ids of letters, digits and `-_.:` (UUIDs, trace ids, ULIDs) are.
fn usable_request_id(id: &[u8]) -> bool {
    !id.is_empty()
        && id.len() <= MAX_REQUEST_ID
        && id
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
}

/// Drops an unusable client `x-request-id`, so the request-id layer after this one gives
/// the request a fresh UUID instead.
pub(crate) async fn drop_unusable_request_id(mut req: Request) -> Request {
    let unusable = req
        .headers()
        .get_all("x-request-id")
        .iter()
        .enumerate()
        .any(|(i, v)| i > 0 || !usable_request_id(v.as_bytes()));
    if unusable {
        req.headers_mut().remove("x-request-id");
    }
    req
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

#[cfg(test)]
mod tests {
    use super::usable_request_id;

    #[test]
    fn request_ids_are_short_and_plain() {
        assert!(usable_request_id(b"0f8e9b7c-1d2e-4f3a-9b8c-7d6e5f4a3b2c"));
        assert!(usable_request_id(b"01HZX3K2V8:span.7_a"));
        assert!(!usable_request_id(b""));
        assert!(!usable_request_id(&[b'a'; 129]));
        assert!(usable_request_id(&[b'a'; 128]));
        for bad in [
            &b"id with space"[..],
            b"a\"b",
            b"{\"x\":1}",
            b"a/b",
            b"a\tb",
        ] {
            assert!(
                !usable_request_id(bad),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }
}
