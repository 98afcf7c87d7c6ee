//! Server configuration, layered as: embedded defaults, then a TOML file (`--config` /
//! `CAIRN_CONFIG`), then `CAIRN_*` environment variables, then command-line flags. clap
//! resolves the last two into [`ServerArgs`]; [`ServerArgs::resolve`] fills the gaps from
//! the file and the defaults. MLflow's flag names are accepted where they mean the same.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context};
use cairn_core::auth::Permission;
use cairn_core::hosts::is_loopback;
use clap::Args;
use serde::Deserialize;

/// Default listen address: loopback only.
pub const DEFAULT_HOST: &str = "127.0.0.1";
/// Default port, as `mlflow server`.
pub const DEFAULT_PORT: u16 = 5000;
/// Default data directory.
pub const DEFAULT_DATA_DIR: &str = "./cairn-data";
/// Default time limit of an API request.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(120);
/// Default PostgreSQL pool size per process.
pub const DEFAULT_DB_MAX_CONNECTIONS: u32 = 16;

/// `cairn server` options as given on the command line or in the environment.
#[derive(Clone, Default, Args)]
pub struct ServerArgs {
    /// TOML file with any of the options below (snake_case keys); flags and env win.
    #[arg(long, env = "CAIRN_CONFIG")]
    pub config: Option<PathBuf>,
    /// Address to listen on [default: 127.0.0.1].
    #[arg(long, env = "CAIRN_HOST")]
    pub host: Option<String>,
    /// Port to listen on; 0 picks a free port [default: 5000].
    #[arg(long, env = "CAIRN_PORT")]
    pub port: Option<u16>,
    /// Directory for the embedded database and local artifacts [default: ./cairn-data].
    #[arg(long, env = "CAIRN_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Tracking database: `sqlite:///path/to/cairn.db` or
    /// `postgresql://user:password@host:port/database` [default: <data-dir>/cairn.db].
    #[arg(long, env = "CAIRN_BACKEND_STORE_URI")]
    pub backend_store_uri: Option<String>,
    /// PostgreSQL connections per server process [default: 16]. N replicas need
    /// N × this within the database's `max_connections`.
    #[arg(long, env = "CAIRN_DB_MAX_CONNECTIONS")]
    pub db_max_connections: Option<u32>,
    /// Root URI for new experiments' artifacts [default: mlflow-artifacts:/].
    #[arg(long, env = "CAIRN_DEFAULT_ARTIFACT_ROOT")]
    pub default_artifact_root: Option<String>,
    /// Where proxied artifacts are stored [default: <data-dir>/artifacts].
    #[arg(long, env = "CAIRN_ARTIFACTS_DESTINATION")]
    pub artifacts_destination: Option<String>,
    /// Let clients move large artifacts straight to and from the object store with
    /// presigned URLs (MLflow's multipart protocol; S3 destinations only). Off by default:
    /// every byte then passes through the server, which checks and records its digest.
    #[arg(long, env = "CAIRN_ARTIFACTS_PRESIGNED")]
    pub artifacts_presigned: bool,
    /// Accepted for `mlflow server` compatibility; Cairn always proxies artifacts.
    #[arg(long, hide = true)]
    pub serve_artifacts: bool,
    /// `Host` header values accepted, comma-separated, `*` wildcards (DNS-rebinding
    /// protection, as `mlflow server --allowed-hosts`) [default: loopback and private
    /// addresses with any port, plus --host].
    #[arg(long, env = "CAIRN_ALLOWED_HOSTS", value_delimiter = ',')]
    pub allowed_hosts: Option<Vec<String>>,
    /// Origins allowed to call the API from a browser (CORS), comma-separated, `*`
    /// wildcards [default: none; cross-origin state changes are refused].
    #[arg(long, env = "CAIRN_CORS_ALLOWED_ORIGINS", value_delimiter = ',')]
    pub cors_allowed_origins: Option<Vec<String>>,
    /// Longest an API request may run before it gets 504 (artifact transfers are
    /// exempt) [default: 120s].
    #[arg(long, env = "CAIRN_REQUEST_TIMEOUT", value_parser = humantime::parse_duration)]
    pub request_timeout: Option<Duration>,
    /// Listen on a non-loopback address although no authentication is configured: anyone
    /// who can reach the port can read and change everything.
    #[arg(long, env = "CAIRN_INSECURE_NO_AUTH")]
    pub insecure_no_auth: bool,
    /// Require HTTP Basic credentials on every request but the health checks (what the
    /// `mlflow` client sends from MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD).
    /// The administrator's password comes from CAIRN_ADMIN_PASSWORD.
    #[arg(long, env = "CAIRN_AUTH")]
    pub auth: bool,
    /// The administrator account's name [default: admin].
    #[arg(long, env = "CAIRN_ADMIN_USERNAME")]
    pub admin_username: Option<String>,
    /// The administrator's password: from the environment or the config file only, so it
    /// never shows in a process listing.
    #[arg(skip)]
    pub admin_password: Option<String>,
    /// What users may do on experiments and registered models they hold no grant on:
    /// READ, USE, EDIT, MANAGE or NO_PERMISSIONS [default: READ, as MLflow].
    #[arg(long, env = "CAIRN_DEFAULT_PERMISSION")]
    pub default_permission: Option<String>,
    /// Single sign-on: accept bearer JWTs from this OpenID Connect issuer (its `iss`;
    /// keys from `<issuer>/.well-known/openid-configuration`). Needs --auth and
    /// --oidc-audience.
    #[arg(long, env = "CAIRN_OIDC_ISSUER")]
    pub oidc_issuer: Option<String>,
    /// The audience (`aud`) tokens must be issued for: Cairn's client id at the provider.
    #[arg(long, env = "CAIRN_OIDC_AUDIENCE")]
    pub oidc_audience: Option<String>,
    /// The provider's JWKS URL, when it publishes no discovery document.
    #[arg(long, env = "CAIRN_OIDC_JWKS_URI")]
    pub oidc_jwks_uri: Option<String>,
    /// The token claim that holds the username [default: preferred_username].
    #[arg(long, env = "CAIRN_OIDC_USERNAME_CLAIM")]
    pub oidc_username_claim: Option<String>,
    /// The token claim that lists the caller's groups [default: groups].
    #[arg(long, env = "CAIRN_OIDC_GROUPS_CLAIM")]
    pub oidc_groups_claim: Option<String>,
    /// Callers whose token lists this group are administrators (for as long as their
    /// token says so; their account is not changed).
    #[arg(long, env = "CAIRN_OIDC_ADMIN_GROUP")]
    pub oidc_admin_group: Option<String>,
}

/// The same options as read from a config file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    host: Option<String>,
    port: Option<u16>,
    data_dir: Option<PathBuf>,
    backend_store_uri: Option<String>,
    db_max_connections: Option<u32>,
    default_artifact_root: Option<String>,
    artifacts_destination: Option<String>,
    artifacts_presigned: Option<bool>,
    allowed_hosts: Option<Vec<String>>,
    cors_allowed_origins: Option<Vec<String>>,
    request_timeout: Option<String>,
    insecure_no_auth: Option<bool>,
    auth: Option<bool>,
    admin_username: Option<String>,
    admin_password: Option<String>,
    default_permission: Option<String>,
    oidc_issuer: Option<String>,
    oidc_audience: Option<String>,
    oidc_jwks_uri: Option<String>,
    oidc_username_claim: Option<String>,
    oidc_groups_claim: Option<String>,
    oidc_admin_group: Option<String>,
}

fn read_file(path: &Path) -> anyhow::Result<FileConfig> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading config file {}", path.display()))?;
    toml::from_str(&text).with_context(|| format!("parsing config file {}", path.display()))
}

impl ServerArgs {
    /// Applies the config file and the embedded defaults under the given flags/env.
    pub fn resolve(self) -> anyhow::Result<ServerConfig> {
        self.resolve_with(true)
    }

    /// Resolves only what opening the store needs (for offline commands such as
    /// `cairn audit`): no administrator password, no listening checks.
    pub fn resolve_store_only(self) -> anyhow::Result<ServerConfig> {
        self.resolve_with(false)
    }

    fn resolve_with(self, serving: bool) -> anyhow::Result<ServerConfig> {
        let file = match &self.config {
            Some(path) => read_file(path)?,
            None => FileConfig::default(),
        };
        let request_timeout = match (self.request_timeout, &file.request_timeout) {
            (Some(t), _) => t,
            (None, Some(text)) => humantime::parse_duration(text)
                .with_context(|| format!("request_timeout = {text:?} in the config file"))?,
            (None, None) => DEFAULT_REQUEST_TIMEOUT,
        };
        if request_timeout.is_zero() {
            bail!("--request-timeout must be more than 0");
        }
        let config = ServerConfig {
            host: self
                .host
                .or(file.host)
                .unwrap_or_else(|| DEFAULT_HOST.to_string()),
            port: self.port.or(file.port).unwrap_or(DEFAULT_PORT),
            data_dir: self
                .data_dir
                .or(file.data_dir)
                .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR)),
            backend_store_uri: self.backend_store_uri.or(file.backend_store_uri),
            db_max_connections: self
                .db_max_connections
                .or(file.db_max_connections)
                .unwrap_or(DEFAULT_DB_MAX_CONNECTIONS),
            default_artifact_root: self.default_artifact_root.or(file.default_artifact_root),
            artifacts_destination: self.artifacts_destination.or(file.artifacts_destination),
            artifacts_presigned: self.artifacts_presigned
                || file.artifacts_presigned.unwrap_or(false),
            allowed_hosts: self.allowed_hosts.or(file.allowed_hosts),
            cors_allowed_origins: self
                .cors_allowed_origins
                .or(file.cors_allowed_origins)
                .unwrap_or_default(),
            request_timeout,
            insecure_no_auth: self.insecure_no_auth || file.insecure_no_auth.unwrap_or(false),
            oidc: match (
                self.oidc_issuer.or(file.oidc_issuer),
                self.oidc_audience.or(file.oidc_audience),
            ) {
                (None, None) => None,
                (Some(issuer), Some(audience)) => Some(cairn_http::oidc::OidcConfig {
                    issuer,
                    audience,
                    jwks_uri: self.oidc_jwks_uri.or(file.oidc_jwks_uri),
                    username_claim: self
                        .oidc_username_claim
                        .or(file.oidc_username_claim)
                        .unwrap_or_else(|| "preferred_username".into()),
                    groups_claim: self
                        .oidc_groups_claim
                        .or(file.oidc_groups_claim)
                        .unwrap_or_else(|| "groups".into()),
                    admin_group: self
                        .oidc_admin_group
                        .or(file.oidc_admin_group)
                        .filter(|g| !g.is_empty()),
                }),
                _ => bail!("single sign-on needs both --oidc-issuer and --oidc-audience"),
            },
            default_permission: match self.default_permission.or(file.default_permission) {
                None => Permission::Read,
                Some(name) => Permission::parse(&name.to_ascii_uppercase())
                    .map_err(|e| anyhow::anyhow!("--default-permission: {e}"))?,
            },
            auth: match serving && (self.auth || file.auth.unwrap_or(false)) {
                false => None,
                true => {
                    let password = self
                        .admin_password
                        .or_else(|| std::env::var("CAIRN_ADMIN_PASSWORD").ok())
                        .or(file.admin_password)
                        .filter(|p| !p.is_empty())
                        .context(
                            "--auth needs the administrator's password: set CAIRN_ADMIN_PASSWORD \
                             (or admin_password in the config file)",
                        )?;
                    Some(AdminAccount {
                        username: self
                            .admin_username
                            .or(file.admin_username)
                            .unwrap_or_else(|| "admin".to_string()),
                        password,
                    })
                }
            },
        };
        if serving {
            config.check_exposure()?;
            if config.oidc.is_some() && config.auth.is_none() {
                bail!("single sign-on (--oidc-issuer) needs --auth");
            }
        }
        Ok(config)
    }
}

/// Fully resolved server configuration.
#[derive(Clone)]
pub struct ServerConfig {
    /// Address to listen on.
    pub host: String,
    /// Port (0 = any free port).
    pub port: u16,
    /// Data directory.
    pub data_dir: PathBuf,
    /// Tracking database URI; `None` means SQLite in the data dir.
    pub backend_store_uri: Option<String>,
    /// PostgreSQL pool size.
    pub db_max_connections: u32,
    /// Root URI for new experiments' artifacts.
    pub default_artifact_root: Option<String>,
    /// Where proxied artifacts are stored.
    pub artifacts_destination: Option<String>,
    /// Presigned multipart uploads and downloads (S3 only).
    pub artifacts_presigned: bool,
    /// `Host` patterns accepted; `None` means the defaults plus the listen host.
    pub allowed_hosts: Option<Vec<String>>,
    /// Origins given CORS access.
    pub cors_allowed_origins: Vec<String>,
    /// API request time limit.
    pub request_timeout: Duration,
    /// Listening beyond loopback without authentication was asked for explicitly.
    pub insecure_no_auth: bool,
    /// The administrator account, when authentication is on.
    pub auth: Option<AdminAccount>,
    /// The permission of users without a grant.
    pub default_permission: Permission,
    /// Single sign-on, when configured.
    pub oidc: Option<cairn_http::oidc::OidcConfig>,
}

/// The bootstrap administrator (its password is never printed).
#[derive(Clone, PartialEq, Eq)]
pub struct AdminAccount {
    pub username: String,
    pub password: String,
}

impl fmt::Debug for AdminAccount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdminAccount")
            .field("username", &self.username)
            .field("password", &"***")
            .finish()
    }
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
            .field("db_max_connections", &self.db_max_connections)
            .field("default_artifact_root", &self.default_artifact_root)
            .field("artifacts_destination", &self.artifacts_destination)
            .field("artifacts_presigned", &self.artifacts_presigned)
            .field("allowed_hosts", &self.allowed_hosts)
            .field("cors_allowed_origins", &self.cors_allowed_origins)
            .field("request_timeout", &self.request_timeout)
            .field("insecure_no_auth", &self.insecure_no_auth)
            .field("auth", &self.auth)
            .finish()
    }
}

/// Replaces the password of a `user:password@` part of a URI with `***`.
pub fn redact_uri(uri: &str) -> String {
    let Some((scheme, rest)) = uri.split_once("://") else {
        return uri.to_string();
    };
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    match authority.rsplit_once('@') {
        // Only a password is secret; a bare user name is shown as given.
        Some((userinfo, host)) if userinfo.contains(':') => {
            let user = userinfo.split(':').next().unwrap_or("");
            format!("{scheme}://{user}:***@{host}{path}")
        }
        _ => uri.to_string(),
    }
}

/// A parsed backend store URI.
#[derive(Clone, PartialEq, Eq)]
pub enum BackendUri {
    /// An SQLite file.
    Sqlite(PathBuf),
    /// A PostgreSQL connection URL (may carry a password: never print it).
    Postgres(String),
}

impl fmt::Debug for BackendUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Sqlite(p) => f.debug_tuple("Sqlite").field(p).finish(),
            Self::Postgres(url) => f.debug_tuple("Postgres").field(&redact_uri(url)).finish(),
        }
    }
}

impl ServerConfig {
    /// Defaults with the given data dir, for tests and embedding.
    pub fn with_data_dir(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            host: "127.0.0.1".into(),
            port: 0,
            data_dir: data_dir.into(),
            backend_store_uri: None,
            db_max_connections: DEFAULT_DB_MAX_CONNECTIONS,
            default_artifact_root: None,
            artifacts_destination: None,
            artifacts_presigned: false,
            allowed_hosts: None,
            cors_allowed_origins: Vec::new(),
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            insecure_no_auth: false,
            auth: None,
            default_permission: Permission::Read,
            oidc: None,
        }
    }

    /// Refuses to listen beyond loopback with no authentication, unless told to.
    pub fn check_exposure(&self) -> anyhow::Result<()> {
        if is_loopback(&self.host) || self.insecure_no_auth || self.auth.is_some() {
            return Ok(());
        }
        bail!(
            "refusing to listen on {} with no authentication configured: anyone who can reach \
             the port could read and change every experiment, run and model. Listen on \
             127.0.0.1 (the default) behind an authenticating proxy, or pass \
             --insecure-no-auth to accept the risk",
            self.host
        )
    }

    /// The hardening settings for the HTTP layer (hashes the admin password when
    /// authentication is on).
    pub fn security(&self) -> anyhow::Result<cairn_http::SecurityConfig> {
        let allowed_hosts = self
            .allowed_hosts
            .clone()
            .unwrap_or_else(|| cairn_core::hosts::allowed_hosts_for(&self.host));
        Ok(cairn_http::SecurityConfig {
            allowed_hosts,
            cors_allowed_origins: self.cors_allowed_origins.clone(),
            request_timeout: self.request_timeout,
        })
    }

    /// Where proxied artifacts are stored: a directory or an object-store URI.
    pub fn artifacts_destination(&self) -> String {
        self.artifacts_destination
            .clone()
            .filter(|d| !d.is_empty())
            .unwrap_or_else(|| self.data_dir.join("artifacts").display().to_string())
    }

    /// The artifact root new experiments are placed under.
    pub fn default_artifact_root(&self) -> String {
        self.default_artifact_root
            .clone()
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "mlflow-artifacts:/".to_string())
    }

    /// Parses the backend URI: MLflow's `sqlite:///relative` and `sqlite:////absolute`,
    /// and `postgresql://` / `postgres://` URLs (MLflow's `postgresql+psycopg2://` driver
    /// suffix is accepted and dropped).
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
        let (scheme, rest) = uri.split_once("://").unwrap_or((uri, ""));
        let base = scheme.split('+').next().unwrap_or("");
        match base {
            "postgresql" | "postgres" if !rest.is_empty() => {
                Ok(BackendUri::Postgres(format!("postgresql://{rest}")))
            }
            _ => bail!(
                "unsupported --backend-store-uri {}: expected sqlite:///<path> or \
                 postgresql://user:password@host:port/database",
                redact_uri(uri)
            ),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
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
    fn postgres_uris() {
        let mut c = ServerConfig::with_data_dir("/data");
        for (given, want) in [
            ("postgresql://u:p@h:5432/db", "postgresql://u:p@h:5432/db"),
            (
                "postgres://u@h/db?sslmode=require",
                "postgresql://u@h/db?sslmode=require",
            ),
            ("postgresql+psycopg2://u:p@h/db", "postgresql://u:p@h/db"),
        ] {
            c.backend_store_uri = Some(given.into());
            assert_eq!(
                c.backend().ok(),
                Some(BackendUri::Postgres(want.into())),
                "{given}"
            );
        }
        c.backend_store_uri = Some("postgresql://".into());
        assert!(c.backend().is_err());
        c.backend_store_uri = Some("postgresql://bob:s3cret@h/db".into());
        let parsed = c.backend().unwrap_or_else(|e| panic!("{e}"));
        assert!(!format!("{parsed:?}").contains("s3cret"), "{parsed:?}");
        c.backend_store_uri = Some("oracle://bob:s3cret@h/db".into());
        let err = c.backend().err().map(|e| e.to_string()).unwrap_or_default();
        assert!(
            err.contains("unsupported") && !err.contains("s3cret"),
            "{err}"
        );
    }

    #[test]
    fn layers_flags_over_file_over_defaults() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = dir.path().join("cairn.toml");
        std::fs::write(
            &path,
            "port = 6000\nhost = \"0.0.0.0\"\ndata_dir = \"/srv/c\"\n",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let args = ServerArgs {
            config: Some(path.clone()),
            host: Some("127.0.0.2".into()),
            ..ServerArgs::default()
        };
        let c = args.resolve().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.host, "127.0.0.2", "flag beats file");
        assert_eq!(c.port, 6000, "file beats default");
        assert_eq!(c.data_dir, PathBuf::from("/srv/c"));
        let c = ServerArgs::default()
            .resolve()
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((c.host.as_str(), c.port), (DEFAULT_HOST, DEFAULT_PORT));
        std::fs::write(&path, "prot = 1\n").unwrap_or_else(|e| panic!("{e}"));
        let bad = ServerArgs {
            config: Some(path),
            ..ServerArgs::default()
        };
        assert!(
            bad.resolve().is_err(),
            "unknown keys are refused, not ignored"
        );
    }

    #[test]
    fn secrets_are_redacted() {
        assert_eq!(
            redact_uri("postgresql://bob:s3cret@db:5432/x"),
            "postgresql://bob:***@db:5432/x"
        );
        assert_eq!(redact_uri("sqlite:///a.db"), "sqlite:///a.db");
        assert_eq!(
            redact_uri("postgres://postgres@127.0.0.1/db"),
            "postgres://postgres@127.0.0.1/db",
            "no password, nothing to hide"
        );
        assert_eq!(
            redact_uri("postgresql://bob:@h/x"),
            "postgresql://bob:***@h/x"
        );
        let mut c = ServerConfig::with_data_dir("/d");
        c.backend_store_uri = Some("postgresql://bob:s3cret@db/x".into());
        assert!(!format!("{c:?}").contains("s3cret"));
    }

    #[test]
    fn non_loopback_listening_needs_insecure_no_auth() {
        let mut c = ServerConfig::with_data_dir("/data");
        for host in ["127.0.0.1", "localhost", "::1", "[::1]", "127.0.0.2"] {
            c.host = host.into();
            assert!(c.check_exposure().is_ok(), "{host}");
        }
        for host in ["0.0.0.0", "::", "10.0.0.5", "mlflow.internal"] {
            c.host = host.into();
            let err = c
                .check_exposure()
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(err.contains("--insecure-no-auth"), "{host}: {err}");
        }
        c.insecure_no_auth = true;
        assert!(c.check_exposure().is_ok());
        // The flag reaches resolve() from the command line or the file.
        let args = ServerArgs {
            host: Some("0.0.0.0".into()),
            ..ServerArgs::default()
        };
        assert!(args.clone().resolve().is_err());
        let args = ServerArgs {
            insecure_no_auth: true,
            ..args
        };
        assert!(args.resolve().is_ok());
    }

    #[test]
    fn the_listen_host_joins_the_default_allowed_hosts() {
        let mut c = ServerConfig::with_data_dir("/data");
        c.host = "10.1.2.3".into();
        c.insecure_no_auth = true;
        let hosts = c.security().unwrap().allowed_hosts;
        assert!(hosts.contains(&"10.1.2.3:*".to_string()));
        c.host = "mlflow.internal".into();
        assert!(c
            .security()
            .unwrap()
            .allowed_hosts
            .contains(&"mlflow.internal:*".to_string()));
        c.host = "0.0.0.0".into();
        assert_eq!(
            c.security().unwrap().allowed_hosts,
            cairn_http::security::default_allowed_hosts()
        );
        c.allowed_hosts = Some(vec!["only.this".into()]);
        assert_eq!(
            c.security().unwrap().allowed_hosts,
            vec!["only.this".to_string()]
        );
    }

    #[test]
    fn the_default_permission_is_read_unless_set() {
        assert_eq!(
            ServerArgs::default().resolve().unwrap().default_permission,
            Permission::Read
        );
        let set = ServerArgs {
            default_permission: Some("no_permissions".into()),
            ..ServerArgs::default()
        };
        assert_eq!(
            set.resolve().unwrap().default_permission,
            Permission::NoPermissions
        );
        let bad = ServerArgs {
            default_permission: Some("OWNER".into()),
            ..ServerArgs::default()
        };
        assert!(bad.resolve().is_err());
    }

    #[test]
    fn auth_needs_a_password_and_allows_exposure() {
        let args = ServerArgs {
            auth: true,
            host: Some("0.0.0.0".into()),
            admin_password: Some("long enough pw".into()),
            ..ServerArgs::default()
        };
        let c = args.clone().resolve().unwrap();
        let admin = c.auth.clone().unwrap();
        assert_eq!(admin.username, "admin");
        assert!(!format!("{c:?}").contains("long enough pw"), "{c:?}");
        // Offline commands open the store without the password.
        let offline = ServerArgs {
            admin_password: None,
            ..args.clone()
        };
        assert_eq!(offline.resolve_store_only().unwrap().auth, None);
        if std::env::var_os("CAIRN_ADMIN_PASSWORD").is_none() {
            let missing = ServerArgs {
                admin_password: None,
                ..args
            };
            let err = missing
                .resolve()
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(err.contains("CAIRN_ADMIN_PASSWORD"), "{err}");
        }
    }
}
