//! The core error type. The API layer maps each variant to an MLflow error code once.

/// Errors raised by services and stores.
#[derive(Debug, thiserror::Error)]
pub enum CoreError {
    /// The caller sent a value that breaks a rule (MLflow `INVALID_PARAMETER_VALUE`).
    #[error("{0}")]
    InvalidParameter(String),
    /// The named entity does not exist (MLflow `RESOURCE_DOES_NOT_EXIST`).
    #[error("{0}")]
    NotFound(String),
    /// The entity already exists (MLflow `RESOURCE_ALREADY_EXISTS`).
    #[error("{0}")]
    AlreadyExists(String),
    /// The operation is not allowed in the entity's current state (MLflow `INVALID_STATE`).
    #[error("{0}")]
    InvalidState(String),
    /// The feature is not implemented by this server or backend.
    #[error("{0}")]
    NotImplemented(String),
    /// The store is overloaded or unavailable; the client may retry.
    #[error("{0}")]
    Unavailable(String),
    /// Anything else: a bug or a storage failure. The message is logged, never sent.
    #[error("internal error: {0}")]
    Internal(String),
}

/// Result alias for core operations.
pub type CoreResult<T> = Result<T, CoreError>;

impl CoreError {
    /// Shorthand for [`CoreError::InvalidParameter`].
    pub fn invalid(msg: impl Into<String>) -> Self {
        Self::InvalidParameter(msg.into())
    }
    /// Shorthand for [`CoreError::NotFound`].
    pub fn not_found(msg: impl Into<String>) -> Self {
        Self::NotFound(msg.into())
    }
}
