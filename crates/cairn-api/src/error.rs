//! MLflow error codes and the single mapping from core errors to code and status.

use cairn_core::CoreError;
use serde::Serialize;

/// MLflow's `databricks_pb2.ErrorCode` values that Cairn emits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    /// Bad input value.
    InvalidParameterValue,
    /// Malformed request.
    BadRequest,
    /// Entity exists.
    ResourceAlreadyExists,
    /// Authentication missing or invalid.
    Unauthenticated,
    /// Authenticated but not allowed.
    PermissionDenied,
    /// Entity missing.
    ResourceDoesNotExist,
    /// No such endpoint.
    EndpointNotFound,
    /// Request conflicts with current state.
    ResourceConflict,
    /// Too many requests.
    RequestLimitExceeded,
    /// Out of capacity.
    ResourceExhausted,
    /// Server fault.
    InternalError,
    /// Invalid state for the operation.
    InvalidState,
    /// Not implemented.
    NotImplemented,
    /// Try again later.
    TemporarilyUnavailable,
    /// The request ran past its time limit.
    DeadlineExceeded,
}

impl ErrorCode {
    /// The wire name and HTTP status, in one exhaustive table.
    pub fn parts(self) -> (&'static str, u16) {
        match self {
            Self::InvalidParameterValue => ("INVALID_PARAMETER_VALUE", 400),
            Self::BadRequest => ("BAD_REQUEST", 400),
            Self::ResourceAlreadyExists => ("RESOURCE_ALREADY_EXISTS", 400),
            Self::Unauthenticated => ("UNAUTHENTICATED", 401),
            Self::PermissionDenied => ("PERMISSION_DENIED", 403),
            Self::ResourceDoesNotExist => ("RESOURCE_DOES_NOT_EXIST", 404),
            Self::EndpointNotFound => ("ENDPOINT_NOT_FOUND", 404),
            Self::ResourceConflict => ("RESOURCE_CONFLICT", 409),
            Self::RequestLimitExceeded => ("REQUEST_LIMIT_EXCEEDED", 429),
            Self::ResourceExhausted => ("RESOURCE_EXHAUSTED", 429),
            Self::InternalError => ("INTERNAL_ERROR", 500),
            Self::InvalidState => ("INVALID_STATE", 500),
            Self::NotImplemented => ("NOT_IMPLEMENTED", 501),
            Self::TemporarilyUnavailable => ("TEMPORARILY_UNAVAILABLE", 503),
            Self::DeadlineExceeded => ("DEADLINE_EXCEEDED", 504),
        }
    }

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        self.parts().0
    }

    /// The HTTP status.
    pub fn status(self) -> u16 {
        self.parts().1
    }
}

impl From<&CoreError> for ErrorCode {
    fn from(e: &CoreError) -> Self {
        match e {
            CoreError::InvalidParameter(_) => Self::InvalidParameterValue,
            CoreError::NotFound(_) => Self::ResourceDoesNotExist,
            CoreError::AlreadyExists(_) => Self::ResourceAlreadyExists,
            CoreError::InvalidState(_) => Self::InvalidState,
            CoreError::NotImplemented(_) => Self::NotImplemented,
            CoreError::Unavailable(_) => Self::TemporarilyUnavailable,
            CoreError::Internal(_) => Self::InternalError,
        }
    }
}

/// MLflow's error body: `{"error_code": "...", "message": "..."}`.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ErrorBody {
    /// The code's wire name.
    pub error_code: &'static str,
    /// Human-readable detail.
    pub message: String,
}

impl ErrorBody {
    /// Builds a body.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            error_code: code.as_str(),
            message: message.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_matches_mlflow() {
        assert_eq!(
            ErrorCode::InvalidParameterValue.parts(),
            ("INVALID_PARAMETER_VALUE", 400)
        );
        assert_eq!(ErrorCode::ResourceAlreadyExists.status(), 400);
        assert_eq!(ErrorCode::ResourceDoesNotExist.status(), 404);
        assert_eq!(ErrorCode::EndpointNotFound.status(), 404);
        assert_eq!(ErrorCode::InvalidState.status(), 500);
        assert_eq!(ErrorCode::TemporarilyUnavailable.status(), 503);
        let e = CoreError::NotFound("x".into());
        assert_eq!(ErrorCode::from(&e), ErrorCode::ResourceDoesNotExist);
    }
}
