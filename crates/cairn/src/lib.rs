//! Wiring: configuration, store selection and the server lifecycle. `main.rs` only
//! parses the command line; tests build an [`Application`] on port 0 directly.

#![forbid(unsafe_code)]

pub mod audit;
pub mod config;
pub mod gc;
pub mod serve;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use axum::serve::ListenerExt;
use cairn_artifacts::{ArtifactRepo, ArtifactService};
use cairn_core::auth::AuthStore;
use cairn_core::registry::RegistryStore;
use cairn_core::service::{RegistryService, TrackingConfig, TrackingService};
use cairn_core::store::TrackingStore;
use cairn_http::auth::Authenticator;
use cairn_http::AccessControl;
use cairn_http::AppState;
use cairn_store_postgres::{PgConfig, PgStore};
use cairn_store_sqlite::{SqliteConfig, SqliteStore};
use tokio::net::TcpListener;

pub use config::{BackendUri, ServerArgs, ServerConfig};

/// A bound, ready-to-run server.
pub struct Application {
    listener: TcpListener,
    addr: SocketAddr,
    router: axum::Router,
    store: Arc<dyn TrackingStore>,
}

/// One store seen through each of its traits.
type Stores = (
    Arc<dyn TrackingStore>,
    Arc<dyn RegistryStore>,
    Arc<dyn AuthStore>,
);

/// Opens the store named by the backend URI.
pub(crate) async fn open_store(config: &ServerConfig) -> anyhow::Result<Stores> {
    match config.backend()? {
        BackendUri::Sqlite(path) => {
            let store = SqliteStore::open(&SqliteConfig::new(&path))
                .await
                .with_context(|| format!("opening SQLite store at {}", path.display()))?;
            let store = Arc::new(store);
            Ok((store.clone(), store.clone(), store))
        }
        BackendUri::Postgres(url) => {
            let mut pg = PgConfig::new(url);
            pg.max_connections = config.db_max_connections;
            // OpenError names host and database only, never the password.
            let store = PgStore::open(&pg)
                .await
                .context("opening the PostgreSQL store")?;
            let store = Arc::new(store);
            Ok((store.clone(), store.clone(), store))
        }
    }
}

impl Application {
    /// Opens the store, runs migrations and binds the listener (port 0 picks a free port).
    pub async fn build(config: &ServerConfig) -> anyhow::Result<Self> {
        let (store, registry_store, auth_store) = open_store(config).await?;
        let tracking = TrackingService::new(
            store.clone(),
            TrackingConfig {
                default_artifact_root: config.default_artifact_root(),
            },
        );
        tracking
            .init()
            .await
            .context("creating the Default experiment")?;
        let repo = ArtifactRepo::open(&config.artifacts_destination())
            .context("opening the artifact store")?;
        tracing::info!(destination = %repo.describe(), "artifact store");
        let artifacts =
            ArtifactService::new(repo, store.clone()).with_presigned(config.artifacts_presigned);
        let registry = RegistryService::new(registry_store, store.clone());
        let authenticator = match &config.auth {
            Some(admin) => {
                let mut a = Authenticator::new(auth_store.clone());
                if let Some(oidc) = &config.oidc {
                    a = a.with_oidc(
                        cairn_http::oidc::OidcVerifier::new(oidc.clone())
                            .map_err(anyhow::Error::msg)?,
                    );
                }
                a.ensure_admin(&admin.username, &admin.password)
                    .await
                    .map_err(anyhow::Error::msg)
                    .context("setting up the administrator account")?;
                Some(Arc::new(a))
            }
            None => None,
        };
        let access = AccessControl {
            store: auth_store,
            authenticator,
            default_permission: config.default_permission,
            decisions: Default::default(),
        };
        let router = cairn_http::router_with(
            AppState::new(tracking, registry, artifacts, access),
            config.security()?,
        );
        let listener = TcpListener::bind((config.host.as_str(), config.port))
            .await
            .with_context(|| format!("binding {}:{}", config.host, config.port))?;
        let addr = listener.local_addr()?;
        Ok(Self {
            listener,
            addr,
            router,
            store,
        })
    }

    /// The bound port.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Serves until `shutdown` resolves, lets in-flight requests finish, then closes the
    /// store cleanly.
    pub async fn run_until(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        // Small responses must not wait for Nagle's algorithm and delayed ACKs.
        let listener = self.listener.tap_io(|tcp| {
            if let Err(e) = tcp.set_nodelay(true) {
                tracing::warn!(error = %e, "could not set TCP_NODELAY");
            }
        });
        // The peer address goes in each request's extensions (audit log, sign-in limits).
        let service = self
            .router
            .into_make_service_with_connect_info::<SocketAddr>();
        let result = axum::serve(listener, service)
            .with_graceful_shutdown(shutdown)
            .await;
        self.store.close().await;
        result.context("serving HTTP")
    }
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "cannot listen for SIGINT");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("shutdown signal received; finishing in-flight requests");
}
