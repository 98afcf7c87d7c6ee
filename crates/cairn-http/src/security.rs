//! Request hardening that applies before any handler: Host header validation against DNS
//! rebinding, refusal of cross-origin state changes, CORS only for configured origins,
//! `X-Content-Type-Options: nosniff`, and a time limit on API requests.
//!
//! The rules follow `mlflow server`'s security middleware (`--allowed-hosts`,
//! `--cors-allowed-origins`), so existing deployments keep their settings; errors leave in
//! MLflow's JSON error format.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use cairn_api::ErrorCode;

use crate::error::ApiError;

/// What the hardening layers allow.
#[derive(Clone, Debug)]
pub struct SecurityConfig {
    /// `Host` header patterns accepted (`*` wildcards; `*` alone accepts any host).
    pub allowed_hosts: Vec<String>,
    /// Origins allowed to make cross-origin requests (and given CORS headers); empty
    /// means none besides the server's own localhost origins.
    pub cors_allowed_origins: Vec<String>,
    /// Longest an API request may take (artifact transfers, which stream, are exempt).
    pub request_timeout: Duration,
}

/// Paths answered whatever the `Host` header (load-balancer health checks).
const HEALTH_PATHS: &[&str] = &["/health", "/version"];

impl Default for SecurityConfig {
    fn default() -> Self {
        SecurityConfig {
            allowed_hosts: default_allowed_hosts(),
            cors_allowed_origins: Vec::new(),
            request_timeout: Duration::from_secs(120),
        }
    }
}

use cairn_core::hosts::glob;
pub use cairn_core::hosts::{default_allowed_hosts, host_allowed};

fn is_localhost_origin(origin: &str) -> bool {
    let Some(rest) = origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"))
    else {
        return false;
    };
    let host = match rest.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => rest.split(':').next().unwrap_or(""),
    };
    matches!(host, "localhost" | "127.0.0.1" | "::1")
}

/// Whether `origin` may make cross-origin requests.
pub fn origin_allowed(allowed: &[String], origin: &str) -> bool {
    is_localhost_origin(origin) || allowed.iter().any(|p| p == "*" || glob(p, origin))
}

fn is_api_path(path: &str) -> bool {
    path.starts_with("/api/") || path.starts_with("/ajax-api/")
}

fn is_artifact_transfer(path: &str) -> bool {
    path.contains("/mlflow-artifacts/") || path.ends_with("get-artifact")
}

/// Host validation, cross-origin refusal, nosniff and the API time limit, in one layer.
pub(crate) async fn harden(
    State(config): State<Arc<SecurityConfig>>,
    req: Request,
    next: Next,
) -> Response {
    let mut response = checked(&config, req, next).await;
    response.headers_mut().insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}

async fn checked(config: &SecurityConfig, req: Request, next: Next) -> Response {
    let path = req.uri().path();
    // What the checks need from the path, taken before the request moves on.
    let (api, artifact_transfer) = (is_api_path(path), is_artifact_transfer(path));
    if !HEALTH_PATHS.contains(&path) {
        let host = req
            .headers()
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .or_else(|| req.uri().authority().map(|a| a.as_str()))
            .unwrap_or("");
        if !host_allowed(&config.allowed_hosts, host) {
            tracing::warn!(
                host,
                "refused a request with a Host header not in --allowed-hosts"
            );
            return ApiError::new(
                ErrorCode::PermissionDenied,
                "Invalid Host header - possible DNS rebinding attack detected; add the host \
                 to --allowed-hosts if it is legitimate",
            )
            .into_response();
        }
    }
    let state_changing = matches!(
        *req.method(),
        Method::POST | Method::PUT | Method::PATCH | Method::DELETE
    );
    if state_changing && api {
        if let Some(origin) = req
            .headers()
            .get(header::ORIGIN)
            .and_then(|o| o.to_str().ok())
        {
            if !origin_allowed(&config.cors_allowed_origins, origin) {
                tracing::warn!(origin, "refused a cross-origin state-changing request");
                return ApiError::new(
                    ErrorCode::PermissionDenied,
                    format!(
                        "Cross-origin request blocked: origin {origin} is not in \
                         --cors-allowed-origins"
                    ),
                )
                .into_response();
            }
        }
    }
    if artifact_transfer {
        next.run(req).await
    } else {
        match tokio::time::timeout(config.request_timeout, next.run(req)).await {
            Ok(response) => response,
            Err(_) => ApiError::new(
                ErrorCode::DeadlineExceeded,
                format!(
                    "the request took longer than {}s (--request-timeout)",
                    config.request_timeout.as_secs_f64()
                ),
            )
            .into_response(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins() {
        let origins = vec!["https://ui.corp.example".to_string()];
        assert!(origin_allowed(&origins, "https://ui.corp.example"));
        assert!(origin_allowed(&origins, "http://localhost:3000"));
        assert!(origin_allowed(&origins, "http://[::1]:3000"));
        assert!(!origin_allowed(&origins, "https://evil.example"));
        assert!(!origin_allowed(&[], "http://localhost.evil.example"));
    }
}
