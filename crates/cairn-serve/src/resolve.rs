//! Model URIs, and fetching a model's files through an MLflow-compatible tracking server.
//!
//! A registry or run URI is resolved with the tracking server's REST API to an artifact
//! URI, then the model directory is downloaded through the server's artifact proxy
//! (`mlflow-artifacts:`) into the local cache. Local directories are used in place.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

/// Where a served model comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelUri {
    /// `models:/name@alias`
    Alias { name: String, alias: String },
    /// `models:/name/3`
    Version { name: String, version: String },
    /// `models:/name/latest` or `models:/name/<stage>`
    Latest { name: String, stage: Option<String> },
    /// `models:/m-<id>` (a logged model)
    LoggedModel { id: String },
    /// `runs:/<run_id>/<path>`
    Run { run_id: String, path: String },
    /// A directory holding an `MLmodel` file (`file://...` or a plain path).
    Local(PathBuf),
    /// A model directory in an object store (`s3://`, `gs://`, `az://`, `abfss://`...),
    /// read directly with the machine's cloud credentials.
    Store(String),
}

impl ModelUri {
    /// Parses the forms the `mlflow` client accepts for model URIs.
    pub fn parse(uri: &str) -> Result<ModelUri, String> {
        let bad = |why: &str| format!("invalid model URI '{uri}': {why}");
        if let Some(rest) = uri.strip_prefix("models:/") {
            let rest = rest.trim_matches('/');
            if let Some((name, alias)) = rest.split_once('@') {
                if name.is_empty() || alias.is_empty() || alias.contains('/') {
                    return Err(bad("expected models:/<name>@<alias>"));
                }
                return Ok(ModelUri::Alias {
                    name: name.to_string(),
                    alias: alias.to_string(),
                });
            }
            return match rest.rsplit_once('/') {
                Some(("", _)) => Err(bad("the model name is empty")),
                Some((name, v)) if v.parse::<u64>().is_ok() => Ok(ModelUri::Version {
                    name: name.to_string(),
                    version: v.to_string(),
                }),
                Some((name, v)) if v.eq_ignore_ascii_case("latest") => Ok(ModelUri::Latest {
                    name: name.to_string(),
                    stage: None,
                }),
                Some((name, stage)) => Ok(ModelUri::Latest {
                    name: name.to_string(),
                    stage: Some(stage.to_string()),
                }),
                None if rest.is_empty() => Err(bad("nothing after models:/")),
                None => Ok(ModelUri::LoggedModel {
                    id: rest.to_string(),
                }),
            };
        }
        if let Some(rest) = uri.strip_prefix("runs:/") {
            let rest = rest.trim_start_matches('/');
            let (run_id, path) = rest.split_once('/').unwrap_or((rest, ""));
            if run_id.is_empty() {
                return Err(bad("expected runs:/<run_id>/<path>"));
            }
            return Ok(ModelUri::Run {
                run_id: run_id.to_string(),
                path: path.trim_matches('/').to_string(),
            });
        }
        if let Some(path) = uri.strip_prefix("file://") {
            return Ok(ModelUri::Local(PathBuf::from(path)));
        }
        if crate::fetch::is_store_uri(uri) {
            return Ok(ModelUri::Store(uri.trim_end_matches('/').to_string()));
        }
        if uri.contains("://") || uri.is_empty() {
            return Err(bad(
                "expected models:/, runs:/, file://, s3://, gs://, az://, abfss:// or a local \
                 directory",
            ));
        }
        Ok(ModelUri::Local(PathBuf::from(uri)))
    }

    /// Whether the version behind this URI can change (aliases, latest, stages), so the
    /// server polls it.
    pub fn follows(&self) -> bool {
        matches!(self, ModelUri::Alias { .. } | ModelUri::Latest { .. })
    }

    /// Whether resolving this URI needs a tracking server.
    pub fn needs_tracking(&self) -> bool {
        !matches!(self, ModelUri::Local(_) | ModelUri::Store(_))
    }

    /// Where the files of a URI that needs no tracking server are.
    pub fn fixed_location(&self) -> Option<Location> {
        match self {
            ModelUri::Local(dir) => Some(Location::Local(dir.clone())),
            ModelUri::Store(uri) => Some(Location::Store(uri.clone())),
            _ => None,
        }
    }
}

/// A model version pinned down: its label and where its files are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    /// The registry version, or `1` for models outside the registry.
    pub version: String,
    pub location: Location,
}

/// Where the files of a resolved model are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// Through the tracking server's artifact proxy, relative to its root.
    Proxied(String),
    Local(PathBuf),
    /// An object-store URI, read directly.
    Store(String),
}

/// Why a model could not be resolved or fetched.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    #[error("{0} needs a tracking server: pass --tracking-uri or set MLFLOW_TRACKING_URI")]
    NoTrackingServer(String),
    #[error("tracking server: {0}")]
    Server(String),
    #[error("{0}")]
    Unsupported(String),
    #[error("{0}")]
    Io(String),
}

/// Credentials sent to the tracking server, read as the `mlflow` client reads them.
#[derive(Clone, Default)]
pub struct Credentials {
    pub username: Option<String>,
    pub password: Option<String>,
    pub token: Option<String>,
    pub insecure_tls: bool,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("insecure_tls", &self.insecure_tls)
            .finish()
    }
}

impl Credentials {
    /// `MLFLOW_TRACKING_USERNAME`/`PASSWORD`, `MLFLOW_TRACKING_TOKEN`,
    /// `MLFLOW_TRACKING_INSECURE_TLS`.
    pub fn from_env() -> Credentials {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        Credentials {
            username: var("MLFLOW_TRACKING_USERNAME"),
            password: var("MLFLOW_TRACKING_PASSWORD"),
            token: var("MLFLOW_TRACKING_TOKEN"),
            insecure_tls: var("MLFLOW_TRACKING_INSECURE_TLS")
                .is_some_and(|v| v.eq_ignore_ascii_case("true")),
        }
    }
}

/// A client of the tracking server's REST API, used only to find and fetch models.
#[derive(Clone)]
pub struct TrackingClient {
    base: String,
    http: reqwest::Client,
    credentials: Credentials,
}

impl TrackingClient {
    /// A client for `base` (`http://host:port`, optionally with a path prefix).
    pub fn new(base: &str, credentials: Credentials) -> Result<TrackingClient, ResolveError> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .danger_accept_invalid_certs(credentials.insecure_tls)
            .build()
            .map_err(|e| ResolveError::Io(format!("cannot build HTTP client: {e}")))?;
        Ok(TrackingClient {
            base: base.trim_end_matches('/').to_string(),
            http,
            credentials,
        })
    }

    fn request(&self, url: &str) -> reqwest::RequestBuilder {
        self.authed(self.http.get(url))
    }

    /// Adds the credentials the `mlflow` client would send: a token wins over a password.
    fn authed(&self, req: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        if let Some(token) = &self.credentials.token {
            req.bearer_auth(token)
        } else if let Some(user) = &self.credentials.username {
            req.basic_auth(user, self.credentials.password.as_ref())
        } else {
            req
        }
    }

    async fn get_json(&self, path: &str, query: &[(&str, &str)]) -> Result<Value, ResolveError> {
        let url = format!("{}{path}", self.base);
        let req = self.request(&url).query(query);
        Self::send_json("GET", path, req).await
    }

    /// The status of `GET path` sent with `authorization` as the caller's credentials
    /// (none when `None`) instead of this server's own: how `cairn serve --auth tracking`
    /// asks whether a caller may read a model.
    pub async fn probe(
        &self,
        path: &str,
        query: &[(&str, &str)],
        authorization: Option<&[u8]>,
    ) -> Result<u16, ResolveError> {
        let url = format!("{}{path}", self.base);
        let mut req = self.http.get(&url).query(query);
        if let Some(value) = authorization {
            let value = reqwest::header::HeaderValue::from_bytes(value)
                .map_err(|_| ResolveError::Unsupported("malformed Authorization header".into()))?;
            req = req.header(reqwest::header::AUTHORIZATION, value);
        }
        let resp = req
            .timeout(Duration::from_secs(10))
            .send()
            .await
            .map_err(|e| ResolveError::Server(format!("GET {path}: {e}")))?;
        Ok(resp.status().as_u16())
    }

    /// Sends an API call and returns its JSON body, or the server's error message.
    async fn send_json(
        method: &str,
        path: &str,
        req: reqwest::RequestBuilder,
    ) -> Result<Value, ResolveError> {
        let resp = req
            .timeout(Duration::from_secs(30))
            .send()
            .await
            .map_err(|e| ResolveError::Server(format!("{method} {path}: {e}")))?;
        let status = resp.status();
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            let message = body
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or("no message");
            return Err(ResolveError::Server(format!(
                "{method} {path}: {status}: {message}"
            )));
        }
        Ok(body)
    }

    /// Finds the version and artifact location a URI currently points at.
    pub async fn resolve(&self, uri: &ModelUri) -> Result<Resolved, ResolveError> {
        const API: &str = "/api/2.0/mlflow";
        if let Some(location) = uri.fixed_location() {
            return Ok(Resolved {
                version: "1".into(),
                location,
            });
        }
        let (version, artifact_uri) = match uri {
            ModelUri::Local(_) | ModelUri::Store(_) => {
                return Err(ResolveError::Unsupported(format!(
                    "{uri:?} needs no tracking server"
                )))
            }
            ModelUri::Alias { name, alias } => {
                let v = self
                    .get_json(
                        &format!("{API}/registered-models/alias"),
                        &[("name", name), ("alias", alias)],
                    )
                    .await?;
                let version = str_at(&v, &["model_version", "version"])?;
                (version.clone(), self.download_uri(name, &version).await?)
            }
            ModelUri::Version { name, version } => {
                (version.clone(), self.download_uri(name, version).await?)
            }
            ModelUri::Latest { name, stage } => {
                let mut query = vec![("name", name.as_str())];
                if let Some(stage) = stage {
                    query.push(("stages", stage.as_str()));
                }
                let v = self
                    .get_json(
                        &format!("{API}/registered-models/get-latest-versions"),
                        &query,
                    )
                    .await?;
                let versions = v.get("model_versions").and_then(Value::as_array);
                let newest = versions
                    .into_iter()
                    .flatten()
                    .filter_map(|mv| mv.get("version").and_then(Value::as_str))
                    .max_by_key(|s| s.parse::<u64>().unwrap_or(0))
                    .ok_or_else(|| {
                        ResolveError::Server(format!(
                            "registered model '{name}' has no version{}",
                            stage
                                .as_ref()
                                .map(|s| format!(" in stage '{s}'"))
                                .unwrap_or_default()
                        ))
                    })?
                    .to_string();
                (newest.clone(), self.download_uri(name, &newest).await?)
            }
            ModelUri::LoggedModel { id } => {
                let v = self
                    .get_json(&format!("{API}/logged-models/{id}"), &[])
                    .await?;
                (
                    "1".to_string(),
                    str_at(&v, &["model", "info", "artifact_uri"])?,
                )
            }
            ModelUri::Run { run_id, path } => {
                ("1".to_string(), self.run_model_uri(run_id, path).await?)
            }
        };
        Ok(Resolved {
            version,
            location: location_of(&artifact_uri)?,
        })
    }

    /// `runs:/<run>/<path>`: the run's own artifact directory when it holds a model (files
    /// logged with `log_artifacts`), else the logged model of that name the run produced
    /// (where MLflow 3's `log_model` puts the files), as the `mlflow` client resolves it.
    async fn run_model_uri(&self, run_id: &str, path: &str) -> Result<String, ResolveError> {
        const API: &str = "/api/2.0/mlflow";
        let v = self
            .get_json(&format!("{API}/runs/get"), &[("run_id", run_id)])
            .await?;
        let root = str_at(&v, &["run", "info", "artifact_uri"])?;
        let experiment = str_at(&v, &["run", "info", "experiment_id"])?;
        let in_run = if path.is_empty() {
            root
        } else {
            format!("{}/{path}", root.trim_end_matches('/'))
        };
        if let Ok(Location::Proxied(dir)) = location_of(&in_run) {
            let listing = self
                .get_json("/api/2.0/mlflow-artifacts/artifacts", &[("path", &dir)])
                .await;
            let has_mlmodel = listing
                .ok()
                .and_then(|l| l.get("files").cloned())
                .is_some_and(|f| {
                    f.as_array().into_iter().flatten().any(|e| {
                        e.get("path")
                            .and_then(Value::as_str)
                            .is_some_and(|p| p.rsplit('/').next() == Some("MLmodel"))
                    })
                });
            if has_mlmodel || path.is_empty() {
                return Ok(in_run);
            }
        } else {
            return Ok(in_run);
        }
        let mut page_token: Option<String> = None;
        loop {
            let mut body = serde_json::json!({
                "experiment_ids": [experiment],
                "filter": format!("name = '{}'", path.replace('\'', "\\'")),
                "max_results": 100,
            });
            if let Some(token) = &page_token {
                body["page_token"] = Value::String(token.clone());
            }
            let page = self
                .post_json(&format!("{API}/logged-models/search"), &body)
                .await?;
            let models = page
                .get("models")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            let found = models
                .iter()
                .find(|m| m.pointer("/info/source_run_id").and_then(Value::as_str) == Some(run_id));
            if let Some(model) = found {
                return model
                    .pointer("/info/artifact_uri")
                    .and_then(Value::as_str)
                    .map(str::to_string)
                    .ok_or_else(|| {
                        ResolveError::Server("logged model has no artifact_uri".into())
                    });
            }
            match page.get("next_page_token").and_then(Value::as_str) {
                Some(t) if !t.is_empty() => page_token = Some(t.to_string()),
                _ => {
                    return Err(ResolveError::Server(format!(
                        "run {run_id} has no model at '{path}': neither a directory with an \
                         MLmodel file nor a logged model of that name"
                    )))
                }
            }
        }
    }

    async fn post_json(&self, path: &str, body: &Value) -> Result<Value, ResolveError> {
        let url = format!("{}{path}", self.base);
        Self::send_json("POST", path, self.authed(self.http.post(&url).json(body))).await
    }

    async fn download_uri(&self, name: &str, version: &str) -> Result<String, ResolveError> {
        let v = self
            .get_json(
                "/api/2.0/mlflow/model-versions/get-download-uri",
                &[("name", name), ("version", version)],
            )
            .await?;
        str_at(&v, &["artifact_uri"])
    }

    /// Downloads every file under `remote` (a proxied artifact directory) into `dest`,
    /// which must not exist yet. Files land in a sibling temporary directory that is
    /// renamed into place at the end, so a half-finished download is never used.
    pub async fn download(&self, remote: &str, dest: &Path) -> Result<(), ResolveError> {
        let partial = crate::fetch::stage(dest).await?;
        let copied = self.copy_tree(remote, &partial).await;
        crate::fetch::finish(
            partial,
            dest,
            copied,
            &format!("mlflow-artifacts:/{remote}"),
        )
        .await
    }

    /// Copies the proxied directory `remote` into `root`; returns the number of files.
    async fn copy_tree(&self, remote: &str, root: &Path) -> Result<usize, ResolveError> {
        let mut pending = vec![String::new()];
        let mut files = 0usize;
        while let Some(rel) = pending.pop() {
            let dir = join(remote, &rel);
            let listing = self
                .get_json("/api/2.0/mlflow-artifacts/artifacts", &[("path", &dir)])
                .await?;
            let entries = listing
                .get("files")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            for entry in entries {
                let Some(name) = entry.get("path").and_then(Value::as_str) else {
                    continue;
                };
                // Listings name direct children; anything else is refused rather than
                // trusted as a path on this machine.
                let child = name.rsplit('/').next().unwrap_or(name);
                if child.is_empty() || child == "." || child == ".." {
                    continue;
                }
                let child_rel = join(&rel, child);
                if entry
                    .get("is_dir")
                    .and_then(Value::as_bool)
                    .unwrap_or(false)
                {
                    let local = root.join(&child_rel);
                    tokio::fs::create_dir_all(&local).await.map_err(|e| {
                        ResolveError::Io(format!("cannot create {}: {e}", local.display()))
                    })?;
                    pending.push(child_rel);
                } else {
                    self.fetch(&join(remote, &child_rel), &root.join(&child_rel))
                        .await?;
                    files += 1;
                }
            }
        }
        Ok(files)
    }

    async fn fetch(&self, remote: &str, local: &Path) -> Result<(), ResolveError> {
        use tokio::io::AsyncWriteExt;
        let url = format!("{}/api/2.0/mlflow-artifacts/artifacts/{remote}", self.base);
        let mut resp = self
            .request(&url)
            .send()
            .await
            .map_err(|e| ResolveError::Server(format!("GET {url}: {e}")))?;
        if !resp.status().is_success() {
            return Err(ResolveError::Server(format!(
                "GET {url}: {}",
                resp.status()
            )));
        }
        let mut file = tokio::fs::File::create(local)
            .await
            .map_err(|e| ResolveError::Io(format!("cannot create {}: {e}", local.display())))?;
        while let Some(chunk) = resp
            .chunk()
            .await
            .map_err(|e| ResolveError::Server(format!("GET {url}: {e}")))?
        {
            file.write_all(&chunk)
                .await
                .map_err(|e| ResolveError::Io(format!("cannot write {}: {e}", local.display())))?;
        }
        file.flush()
            .await
            .map_err(|e| ResolveError::Io(format!("cannot write {}: {e}", local.display())))
    }
}

fn join(a: &str, b: &str) -> String {
    match (a.is_empty(), b.is_empty()) {
        (true, _) => b.to_string(),
        (_, true) => a.to_string(),
        _ => format!("{}/{b}", a.trim_end_matches('/')),
    }
}

fn str_at(v: &Value, path: &[&str]) -> Result<String, ResolveError> {
    path.iter()
        .try_fold(v, |v, k| v.get(k))
        .and_then(Value::as_str)
        .map(str::to_string)
        .ok_or_else(|| ResolveError::Server(format!("response has no {}", path.join("."))))
}

/// Maps an artifact URI to where serving reads it from.
pub fn location_of(artifact_uri: &str) -> Result<Location, ResolveError> {
    if let Some(rest) = artifact_uri.strip_prefix("mlflow-artifacts:") {
        // mlflow-artifacts:/path or mlflow-artifacts://host:port/path
        let path = match rest.strip_prefix("//") {
            Some(with_host) => with_host.split_once('/').map_or("", |(_, p)| p),
            None => rest,
        };
        return Ok(Location::Proxied(path.trim_matches('/').to_string()));
    }
    if let Some(path) = artifact_uri.strip_prefix("file://") {
        return Ok(Location::Local(PathBuf::from(path)));
    }
    if artifact_uri.starts_with('/') {
        return Ok(Location::Local(PathBuf::from(artifact_uri)));
    }
    if crate::fetch::is_store_uri(artifact_uri) {
        return Ok(Location::Store(
            artifact_uri.trim_end_matches('/').to_string(),
        ));
    }
    Err(ResolveError::Unsupported(format!(
        "artifacts at '{artifact_uri}' cannot be fetched: cairn serve reads mlflow-artifacts:/ \
         (through the tracking server), s3://, gs://, az:// and abfss:// (directly, with the \
         provider's credentials) and local paths"
    )))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_model_uri_form() {
        let p = |s| ModelUri::parse(s).unwrap();
        assert_eq!(
            p("models:/churn@champion"),
            ModelUri::Alias {
                name: "churn".into(),
                alias: "champion".into()
            }
        );
        assert_eq!(
            p("models:/churn/3"),
            ModelUri::Version {
                name: "churn".into(),
                version: "3".into()
            }
        );
        assert_eq!(
            p("models:/churn/latest"),
            ModelUri::Latest {
                name: "churn".into(),
                stage: None
            }
        );
        assert_eq!(
            p("models:/churn/Production"),
            ModelUri::Latest {
                name: "churn".into(),
                stage: Some("Production".into())
            }
        );
        assert_eq!(
            p("models:/m-abc"),
            ModelUri::LoggedModel { id: "m-abc".into() }
        );
        assert_eq!(
            p("runs:/r1/model"),
            ModelUri::Run {
                run_id: "r1".into(),
                path: "model".into()
            }
        );
        assert_eq!(p("file:///tmp/m"), ModelUri::Local("/tmp/m".into()));
        assert_eq!(p("./m"), ModelUri::Local("./m".into()));
        assert_eq!(p("s3://b/k/"), ModelUri::Store("s3://b/k".into()));
        assert!(!p("gs://b/k").needs_tracking());
        assert!(p("models:/a/1").needs_tracking());
        assert!(p("models:/a@b").follows());
        assert!(!p("models:/a/1").follows());
        for bad in [
            "models:/",
            "models:/@x",
            "models:/a@",
            "runs:/",
            "ftp://b/k",
            "",
        ] {
            assert!(ModelUri::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn artifact_uris_map_to_locations() {
        assert_eq!(
            location_of("mlflow-artifacts:/1/models/m-1/artifacts").unwrap(),
            Location::Proxied("1/models/m-1/artifacts".into())
        );
        assert_eq!(
            location_of("mlflow-artifacts://h:5000/1/x/").unwrap(),
            Location::Proxied("1/x".into())
        );
        assert_eq!(
            location_of("file:///data/m").unwrap(),
            Location::Local("/data/m".into())
        );
        assert_eq!(
            location_of("s3://bucket/m/").unwrap(),
            Location::Store("s3://bucket/m".into())
        );
        assert!(location_of("hdfs://nn/m").is_err());
    }

    #[test]
    fn credentials_are_redacted() {
        let c = Credentials {
            password: Some("hunter2".into()),
            token: Some("tok".into()),
            ..Credentials::default()
        };
        let shown = format!("{c:?}");
        assert!(
            !shown.contains("hunter2") && !shown.contains("tok\""),
            "{shown}"
        );
    }
}
