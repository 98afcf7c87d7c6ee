//! MLflow's wire format: request and response DTOs, lenient JSON decoding of the
//! protobuf-JSON conventions the client uses, and the one table mapping errors to
//! MLflow error codes and HTTP statuses.

#![forbid(unsafe_code)]

pub mod de;
pub mod error;
pub mod registry;
pub mod requests;
pub mod responses;

pub use error::{ErrorBody, ErrorCode};
