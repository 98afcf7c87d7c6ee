//! Artifact storage for Cairn: bytes on `object_store` (local disk by default; S3, GCS and
//! Azure by URI), paths that cannot leave the store ([`ArtifactPath`]), and a SHA-256 of
//! every file recorded in the tracking database at upload.
//!
//! The HTTP layer speaks MLflow's proxied-artifact protocol on top of [`ArtifactService`];
//! this crate knows nothing of HTTP.

#![forbid(unsafe_code)]

pub mod gc;
pub mod path;
mod repo;

use std::sync::Arc;

use bytes::Bytes;
use cairn_core::model::ArtifactFile;
use cairn_core::store::TrackingStore;
use cairn_core::CoreError;
use futures_util::Stream;

pub use path::{ArtifactPath, PathError};
pub use repo::{ArtifactRepo, Download, Entry, MultipartPlan, StorageKind, Stored};

/// Errors of artifact operations.
#[derive(Debug, thiserror::Error)]
pub enum ArtifactError {
    /// The path is unsafe or malformed (400).
    #[error("{0}")]
    InvalidPath(String),
    /// Nothing is stored at the path (404).
    #[error("No artifact found at '{0}'")]
    NotFound(String),
    /// Reading the request body failed (client gone, or over the size limit).
    #[error("reading the upload failed: {0}")]
    Body(String),
    /// The storage backend failed; logged, never sent to the client.
    #[error("artifact storage failed: {0}")]
    Storage(String),
    /// The destination URI or directory is unusable (start-up only).
    #[error("{0}")]
    Config(String),
    /// The storage backend cannot do this (presigned transfers off S3).
    #[error("Multipart upload is not supported for the current artifact repository")]
    Unsupported,
    /// The digest index in the tracking database failed.
    #[error(transparent)]
    Index(#[from] CoreError),
}

impl From<PathError> for ArtifactError {
    fn from(e: PathError) -> Self {
        Self::InvalidPath(e.to_string())
    }
}

/// Artifact operations: the bytes in the repository, their digests in the database.
#[derive(Clone)]
pub struct ArtifactService {
    repo: ArtifactRepo,
    index: Arc<dyn TrackingStore>,
    presigned: bool,
}

impl ArtifactService {
    /// Artifacts in `repo`, digests recorded through `index`.
    pub fn new(repo: ArtifactRepo, index: Arc<dyn TrackingStore>) -> Self {
        Self {
            repo,
            index,
            presigned: false,
        }
    }

    /// Offers presigned multipart transfers when the store can do them.
    pub fn with_presigned(mut self, enabled: bool) -> Self {
        self.presigned = enabled;
        self
    }

    /// The repository.
    pub fn repo(&self) -> &ArtifactRepo {
        &self.repo
    }

    /// Stores `body` at `path` and records its digest. The digest is recorded only after
    /// the bytes are in place, so a recorded digest always names a complete file.
    pub async fn upload<S, E>(
        &self,
        path: &ArtifactPath,
        body: S,
    ) -> Result<ArtifactFile, ArtifactError>
    where
        S: Stream<Item = Result<Bytes, E>> + Send,
        E: std::fmt::Display,
    {
        if path.is_root() {
            return Err(ArtifactError::InvalidPath(
                "Invalid path '': an upload needs a file name".into(),
            ));
        }
        let stored = self.repo.put(path, body).await?;
        let file = ArtifactFile {
            path: path.to_string(),
            size: i64::try_from(stored.size).unwrap_or(i64::MAX),
            sha256: stored.sha256,
            etag: stored.etag,
            uploaded_at: now_ms(),
        };
        self.index.record_artifact(&file).await?;
        Ok(file)
    }

    /// Opens the file at `path`, with its recorded SHA-256 when that digest is known to
    /// describe these very bytes: recorded for the ETag the file still has (or, on a store
    /// without ETags, for its size). Files put into the store behind Cairn's back, or
    /// overwritten by a racing upload whose digest was recorded first, get none.
    pub async fn download(
        &self,
        path: &ArtifactPath,
    ) -> Result<(Download, Option<String>), ArtifactError> {
        let download = self.repo.get(path).await?;
        let digest = self
            .index
            .artifact_files(path.as_str())
            .await?
            .into_iter()
            .find(|f| {
                f.path == path.as_str()
                    && f.size as u64 == download.size
                    && (f.etag.is_none() || f.etag == download.etag)
            })
            .map(|f| f.sha256);
        Ok((download, digest))
    }

    /// The direct children of the directory `path`.
    pub async fn list(&self, path: &ArtifactPath) -> Result<Vec<Entry>, ArtifactError> {
        self.repo.list(path).await
    }

    /// Deletes the file or directory at `path` and forgets its digests; returns how many
    /// files were deleted.
    pub async fn delete(&self, path: &ArtifactPath) -> Result<u64, ArtifactError> {
        let deleted = self.repo.delete(path).await?;
        self.index.forget_artifacts(path.as_str()).await?;
        Ok(deleted)
    }
}

/// How long presigned URLs stay valid.
const PRESIGNED_URL_TTL: std::time::Duration = std::time::Duration::from_secs(3600);
/// S3's limit on parts per upload.
const MAX_PARTS: i64 = 10_000;

impl ArtifactService {
    /// Whether presigned multipart uploads and downloads are offered: enabled by the
    /// operator and possible on the store (see [`ArtifactRepo::supports_presigned`]).
    pub fn supports_presigned(&self) -> bool {
        self.presigned && self.repo.supports_presigned()
    }

    fn require_presigned(&self) -> Result<(), ArtifactError> {
        if self.supports_presigned() {
            Ok(())
        } else {
            Err(ArtifactError::Unsupported)
        }
    }

    /// Starts a presigned multipart upload of the client's `local_file` (only its file
    /// name is used, as MLflow does) into the directory `dir`.
    pub async fn create_multipart(
        &self,
        dir: &ArtifactPath,
        local_file: &str,
        num_parts: i64,
    ) -> Result<(ArtifactPath, MultipartPlan), ArtifactError> {
        self.require_presigned()?;
        if !(1..=MAX_PARTS).contains(&num_parts) {
            return Err(ArtifactError::InvalidPath(format!(
                "num_parts must be between 1 and {MAX_PARTS}, got {num_parts}"
            )));
        }
        let path = multipart_target(dir, local_file)?;
        let plan = self
            .repo
            .create_multipart(&path, num_parts as u32, PRESIGNED_URL_TTL)
            .await?;
        Ok((path, plan))
    }

    /// Completes a multipart upload, then reads the object back once to record its
    /// SHA-256: the bytes went straight to the store, never through this server.
    pub async fn complete_multipart(
        &self,
        dir: &ArtifactPath,
        local_file: &str,
        upload_id: &str,
        mut parts: Vec<(i64, String)>,
    ) -> Result<ArtifactFile, ArtifactError> {
        self.require_presigned()?;
        let path = multipart_target(dir, local_file)?;
        parts.sort_by_key(|(n, _)| *n);
        let numbered = parts
            .iter()
            .enumerate()
            .all(|(i, (n, _))| *n == i as i64 + 1);
        if parts.is_empty() || !numbered {
            return Err(ArtifactError::InvalidPath(
                "parts must be numbered 1..N without gaps".into(),
            ));
        }
        let etags = parts.into_iter().map(|(_, etag)| etag).collect();
        self.repo
            .complete_multipart(&path, upload_id, etags)
            .await?;
        let stored = self.repo.digest(&path).await?;
        let file = ArtifactFile {
            path: path.to_string(),
            size: i64::try_from(stored.size).unwrap_or(i64::MAX),
            sha256: stored.sha256,
            etag: stored.etag,
            uploaded_at: now_ms(),
        };
        self.index.record_artifact(&file).await?;
        Ok(file)
    }

    /// Abandons a multipart upload.
    pub async fn abort_multipart(
        &self,
        dir: &ArtifactPath,
        local_file: &str,
        upload_id: &str,
    ) -> Result<(), ArtifactError> {
        self.require_presigned()?;
        let path = multipart_target(dir, local_file)?;
        self.repo.abort_multipart(&path, upload_id).await
    }

    /// A presigned URL to download `path` directly from the store, with its size.
    pub async fn presigned_download(
        &self,
        path: &ArtifactPath,
    ) -> Result<(String, u64), ArtifactError> {
        self.require_presigned()?;
        self.repo.presigned_get(path, PRESIGNED_URL_TTL).await
    }
}

/// `dir/<file name of local_file>`; the client sends its own local path, of which only the
/// last component (after `/` or `\\`) names the artifact.
fn multipart_target(dir: &ArtifactPath, local_file: &str) -> Result<ArtifactPath, ArtifactError> {
    let name = local_file
        .rsplit(['/', '\\'])
        .next()
        .filter(|n| !n.is_empty())
        .ok_or_else(|| {
            ArtifactError::InvalidPath(format!("Invalid path '{local_file}': no file name"))
        })?;
    let file = ArtifactPath::parse_decoded(name)?;
    Ok(dir.join(&file))
}

/// The store path behind a proxied artifact URI (`mlflow-artifacts:/1/abc/artifacts`,
/// also with `//host:port` or `///`): `None` when the URI is not a proxied one.
pub fn proxied_path(uri: &str) -> Option<Result<ArtifactPath, PathError>> {
    let rest = uri.strip_prefix("mlflow-artifacts:")?;
    let path = match rest.strip_prefix("//") {
        // `//host[:port]/path` or `///path`: the authority is dropped.
        Some(with_authority) => with_authority
            .find('/')
            .map_or("", |i| &with_authority[i..]),
        None => rest,
    };
    Some(ArtifactPath::parse_decoded(path.trim_start_matches('/')))
}

/// The Content-Type to serve a file with. Types a browser would execute (HTML, SVG,
/// JavaScript, XML) are served as plain text, so an uploaded file can never run script
/// in the server's origin.
pub fn content_type(path: &ArtifactPath) -> String {
    let Some(mime) = mime_guess::from_path(path.file_name()).first() else {
        return "application/octet-stream".into();
    };
    let active = matches!(
        (mime.type_().as_str(), mime.subtype().as_str()),
        ("text", "html" | "javascript" | "xml" | "css")
            | ("image", "svg")
            | (
                "application",
                "javascript" | "xhtml" | "xml" | "ecmascript" | "wasm"
            )
    ) || mime.suffix().is_some_and(|s| s == "xml");
    if active {
        "text/plain; charset=utf-8".into()
    } else if mime.type_() == "text" || mime.subtype() == "json" {
        format!("{}/{}; charset=utf-8", mime.type_(), mime.subtype())
    } else {
        mime.essence_str().to_string()
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn proxied_uris_map_to_store_paths() {
        for uri in [
            "mlflow-artifacts:/1/abc/artifacts",
            "mlflow-artifacts:///1/abc/artifacts",
            "mlflow-artifacts://host:5000/1/abc/artifacts",
        ] {
            let p = proxied_path(uri).unwrap().unwrap();
            assert_eq!(p.as_str(), "1/abc/artifacts", "{uri}");
        }
        assert!(proxied_path("s3://bucket/x").is_none());
        assert!(proxied_path("mlflow-artifacts:/1/../../etc")
            .unwrap()
            .is_err());
        assert!(proxied_path("mlflow-artifacts:/")
            .unwrap()
            .unwrap()
            .is_root());
    }

    #[test]
    fn active_content_is_served_as_text() {
        let ct = |p: &str| content_type(&ArtifactPath::parse(p).unwrap());
        assert_eq!(ct("a/page.html"), "text/plain; charset=utf-8");
        assert_eq!(ct("a/x.svg"), "text/plain; charset=utf-8");
        assert_eq!(ct("a/x.js"), "text/plain; charset=utf-8");
        assert_eq!(ct("a/x.xhtml"), "text/plain; charset=utf-8");
        assert_eq!(ct("notes.txt"), "text/plain; charset=utf-8");
        assert_eq!(ct("d.json"), "application/json; charset=utf-8");
        assert_eq!(ct("p.png"), "image/png");
        assert_eq!(ct("model/MLmodel"), "application/octet-stream");
    }
}
