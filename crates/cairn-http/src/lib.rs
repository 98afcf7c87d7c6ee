//! Cairn's HTTP layer: MLflow-compatible routes over the core services.
//!
//! Handlers are thin (extract, one service call, map to a view). Every error leaves
//! through [`error::ApiError`], so clients always get MLflow's JSON error body.

#![forbid(unsafe_code)]

pub mod auth;
pub mod error;
pub mod extract;
mod handlers;
mod middleware;
mod routes;
pub mod security;

use std::sync::Arc;

use cairn_artifacts::ArtifactService;
use cairn_core::service::{RegistryService, TrackingService};

pub use routes::{router, router_with};
pub use security::SecurityConfig;

/// Shared state handed to every handler.
#[derive(Clone)]
pub struct AppState {
    inner: Arc<StateInner>,
}

struct StateInner {
    tracking: TrackingService,
    registry: RegistryService,
    artifacts: ArtifactService,
}

impl AppState {
    /// Wraps the services.
    pub fn new(
        tracking: TrackingService,
        registry: RegistryService,
        artifacts: ArtifactService,
    ) -> Self {
        Self {
            inner: Arc::new(StateInner {
                tracking,
                registry,
                artifacts,
            }),
        }
    }

    /// The tracking service.
    pub fn tracking(&self) -> &TrackingService {
        &self.inner.tracking
    }

    /// The model-registry service.
    pub fn registry(&self) -> &RegistryService {
        &self.inner.registry
    }

    /// The artifact service.
    pub fn artifacts(&self) -> &ArtifactService {
        &self.inner.artifacts
    }
}

/// The MLflow version Cairn is compatible with, reported by `/version`. The client only
/// uses traces over OTLP when this is at least 3.4.
pub const MLFLOW_COMPAT_VERSION: &str = "3.17.2";
