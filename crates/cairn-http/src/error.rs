//! The one error type handlers return, rendered as MLflow's JSON error body.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use cairn_api::{ErrorBody, ErrorCode};
use cairn_artifacts::{ArtifactError, PathError};
use cairn_core::CoreError;

/// An error on its way to the client.
#[derive(Debug)]
pub struct ApiError {
    code: ErrorCode,
    message: String,
}

impl ApiError {
    /// An error with an explicit code.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }

    /// `INVALID_PARAMETER_VALUE`.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidParameterValue, message)
    }

    /// MLflow's message for a missing required field.
    pub fn missing(field: &str) -> Self {
        Self::invalid(format!("Missing value for required parameter '{field}'."))
    }

    /// The error code.
    pub fn code(&self) -> ErrorCode {
        self.code
    }
}

impl From<CoreError> for ApiError {
    fn from(e: CoreError) -> Self {
        let code = ErrorCode::from(&e);
        let message = match &e {
            // Internals are logged (with the request id from the span), never sent.
            CoreError::Internal(detail) => {
                tracing::error!(error = %detail, "internal error");
                "An internal error occurred; see the server log for this request id.".to_string()
            }
            other => other.to_string(),
        };
        Self { code, message }
    }
}

impl From<ArtifactError> for ApiError {
    fn from(e: ArtifactError) -> Self {
        match e {
            ArtifactError::InvalidPath(m) => Self::invalid(m),
            ArtifactError::NotFound(_) => Self::new(ErrorCode::ResourceDoesNotExist, e.to_string()),
            ArtifactError::Body(_) => Self::new(ErrorCode::BadRequest, e.to_string()),
            ArtifactError::Index(core) => core.into(),
            ArtifactError::Unsupported => Self::new(ErrorCode::NotImplemented, e.to_string()),
            ArtifactError::Storage(_) | ArtifactError::Config(_) => {
                tracing::error!(error = %e, "artifact storage error");
                Self::new(
                    ErrorCode::InternalError,
                    "An internal error occurred; see the server log for this request id.",
                )
            }
        }
    }
}

impl From<PathError> for ApiError {
    fn from(e: PathError) -> Self {
        Self::invalid(e.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status =
            StatusCode::from_u16(self.code.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        (status, Json(ErrorBody::new(self.code, self.message))).into_response()
    }
}

/// Result alias for handlers.
pub type ApiResult<T> = Result<T, ApiError>;

/// Unwraps a required field or fails with MLflow's "Missing value" message.
pub fn required<T>(value: Option<T>, field: &str) -> ApiResult<T> {
    value.ok_or_else(|| ApiError::missing(field))
}

/// Like [`required`] for strings, treating "" as missing (proto3 has no unset strings).
pub fn required_str(value: Option<String>, field: &str) -> ApiResult<String> {
    value
        .filter(|s| !s.is_empty())
        .ok_or_else(|| ApiError::missing(field))
}
