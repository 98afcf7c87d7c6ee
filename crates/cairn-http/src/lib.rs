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
pub mod oidc;
pub mod permissions;
mod routes;
pub mod security;

use std::sync::Arc;

use cairn_artifacts::ArtifactService;
use cairn_core::auth::{AuthStore, Permission};
use cairn_core::service::{RegistryService, TrackingService};

pub use handlers::users::audit_json;
pub use routes::{router, router_with};
pub use security::SecurityConfig;

/// Who may do what: the account store, the authenticator (`None`: authentication is off,
/// every caller may do anything) and the permission of users without a grant.
#[derive(Clone)]
pub struct AccessControl {
    /// Accounts, grants, tokens and the audit log.
    pub store: Arc<dyn AuthStore>,
    /// Checks credentials; `None` when authentication is off.
    pub authenticator: Option<Arc<auth::Authenticator>>,
    /// What a user may do on a resource they hold no grant on (MLflow's
    /// `default_permission`).
    pub default_permission: Permission,
    /// Recent authorization lookups (one second).
    pub decisions: Arc<permissions::DecisionCache>,
}

impl AccessControl {
    /// Authentication off: requests are audited as `anonymous` and never refused.
    pub fn open(store: Arc<dyn AuthStore>) -> Self {
        Self {
            store,
            authenticator: None,
            default_permission: Permission::Read,
            decisions: Arc::default(),
        }
    }
}

/// Shared state handed to every handler.
#[derive(Clone)]
pub struct AppState {
    inner: Arc<StateInner>,
}

struct StateInner {
    tracking: TrackingService,
    registry: RegistryService,
    artifacts: ArtifactService,
    access: AccessControl,
}

impl AppState {
    /// Wraps the services.
    pub fn new(
        tracking: TrackingService,
        registry: RegistryService,
        artifacts: ArtifactService,
        access: AccessControl,
    ) -> Self {
        Self {
            inner: Arc::new(StateInner {
                tracking,
                registry,
                artifacts,
                access,
            }),
        }
    }

    /// Accounts and permissions.
    pub fn access(&self) -> &AccessControl {
        &self.inner.access
    }

    /// Drops what this replica remembers of `username`'s credentials and of every
    /// authorization decision, after a change to accounts, tokens or grants.
    pub(crate) fn access_changed(&self, username: &str) {
        if let Some(a) = &self.inner.access.authenticator {
            a.forget_user(username);
        }
        self.inner.access.decisions.clear();
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
