//! Cairn's domain: entities, validation, the search-filter language, the tracking
//! service and the store trait every database backend implements.
//!
//! This crate deliberately knows nothing of HTTP, SQL, JSON wire formats or disks.

pub mod audit;
pub mod auth;
pub mod context;
pub mod error;
pub mod history;
pub mod hosts;
pub mod model;
pub mod page;
pub mod registry;
pub mod search;
pub mod service;
pub mod store;
pub mod validation;

pub use error::{CoreError, CoreResult};
