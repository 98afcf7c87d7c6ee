//! Server configuration: embedded defaults, then `CAIRN_*` environment variables, then
//! command-line flags (clap resolves the last two). MLflow's flag names are accepted
//! where they mean the same thing.

use std::fmt;
use std::path::PathBuf;

use anyhow::bail;
use clap::Args;

/// `cairn server` options.
#[derive(Clone, Args)]
pub struct ServerConfig {
    /// Address to listen on.
    #[arg(long, env = "CAIRN_HOST", default_value = "127.0.0.1")]
    pub host: String,
    /// Port to listen on (0 picks a free port).
    #[arg(long, env = "CAIRN_PORT", default_value_t = 5000)]
    pub port: u16,
    /// Directory for the embedded database and local artifacts.
    #[arg(long, env = "CAIRN_DATA_DIR", default_value = "./cairn-data")]
    pub data_dir: PathBuf,
    /// Tracking database, e.g. `sqlite:///path/to/cairn.db` (default: `<data-dir>/cairn.db`).
    #[arg(long, env = "CAIRN_BACKEND_STORE_URI")]
    pub backend_store_uri: Option<String>,
    /// Root URI for new experiments' artifacts (default: `mlflow-artifacts:/`, served by Cairn).
    #[arg(long, env = "CAIRN_DEFAULT_ARTIFACT_ROOT")]
    pub default_artifact_root: Option<String>,
    /// Where proxied artifacts are stored (default: `<data-dir>/artifacts`).
    #[arg(long, env = "CAIRN_ARTIFACTS_DESTINATION")]
    pub artifacts_destination: Option<String>,
    /// Accepted for `mlflow server` compatibility; Cairn always proxies artifacts.
    #[arg(long, hide = true)]
    pub serve_artifacts: bool,
}

impl fmt::Debug for ServerConfig {
    // The backend URI may carry a password (PostgreSQL), so Debug redacts it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerConfig")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("data_dir", &self.data_dir)
            .field(
                "backend_store_uri",
                &self.backend_store_uri.as_deref().map(redact_uri),
            )
            .field("default_artifact_root", &self.default_artifact_root)
            .field("artifacts_destination", &self.artifacts_destination)
            .finish()
    }
}

/// Replaces a `user:password@` part of a URI with `user:***@`.
pub fn redact_uri(uri: &str) -> String {
    let Some((scheme, rest)) = uri.split_once("://") else {
        return uri.to_string();
    };
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split(':').next().unwrap_or("");
            format!("{scheme}://{user}:***@{host}{path}")
        }
        None => uri.to_string(),
    }
}

/// A parsed backend store URI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BackendUri {
    /// An SQLite file.
    Sqlite(PathBuf),
}

impl ServerConfig {
    /// Defaults with the given data dir, for tests and embedding.
    pub fn with_data_dir(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            host: "127.0.0.1".into(),
            port: 0,
            data_dir: data_dir.into(),
            backend_store_uri: None,
            default_artifact_root: None,
            artifacts_destination: None,
            serve_artifacts: false,
        }
    }

    /// The artifact root new experiments are placed under.
    pub fn default_artifact_root(&self) -> String {
        self.default_artifact_root
            .clone()
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "mlflow-artifacts:/".to_string())
    }

    /// Parses the backend URI (MLflow's `sqlite:///relative` and `sqlite:////absolute`).
    pub fn backend(&self) -> anyhow::Result<BackendUri> {
        let Some(uri) = self.backend_store_uri.as_deref().filter(|s| !s.is_empty()) else {
            return Ok(BackendUri::Sqlite(self.data_dir.join("cairn.db")));
        };
        if let Some(path) = uri.strip_prefix("sqlite:///") {
            if path.is_empty() || path == ":memory:" {
                bail!("sqlite backend needs a file path (in-memory databases are not supported): {uri}");
            }
            return Ok(BackendUri::Sqlite(PathBuf::from(path)));
        }
        let scheme = uri.split(':').next().unwrap_or("");
        match scheme {
            "postgresql" | "postgres" => bail!(
                "PostgreSQL backends are not available in this build yet (got {})",
                redact_uri(uri)
            ),
            _ => bail!(
                "unsupported --backend-store-uri {}: expected sqlite:///<path>",
                redact_uri(uri)
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_uris_follow_mlflow() {
        let mut c = ServerConfig::with_data_dir("/data");
        assert_eq!(
            c.backend().ok(),
            Some(BackendUri::Sqlite(PathBuf::from("/data/cairn.db")))
        );
        c.backend_store_uri = Some("sqlite:///rel/x.db".into());
        assert_eq!(
            c.backend().ok(),
            Some(BackendUri::Sqlite(PathBuf::from("rel/x.db")))
        );
        c.backend_store_uri = Some("sqlite:////abs/x.db".into());
        assert_eq!(
            c.backend().ok(),
            Some(BackendUri::Sqlite(PathBuf::from("/abs/x.db")))
        );
        c.backend_store_uri = Some("mysql://u:p@h/db".into());
        assert!(c.backend().is_err());
    }

    #[test]
    fn secrets_are_redacted() {
        assert_eq!(
            redact_uri("postgresql://bob:s3cret@db:5432/x"),
            "postgresql://bob:***@db:5432/x"
        );
        assert_eq!(redact_uri("sqlite:///a.db"), "sqlite:///a.db");
        let mut c = ServerConfig::with_data_dir("/d");
        c.backend_store_uri = Some("postgresql://bob:s3cret@db/x".into());
        assert!(!format!("{c:?}").contains("s3cret"));
    }
}
