//! Where artifact bytes live: one `object_store` chosen by the destination URI.
//!
//! Uploads and downloads stream: an upload goes through `object_store`'s buffered writer
//! (one PUT for small files, a multipart upload past the buffer on cloud stores, a staging
//! file renamed into place on disk), hashing as it goes, so memory stays flat whatever the
//! size and a failed upload leaves nothing visible.

use std::path::{Path as FsPath, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::stream::BoxStream;
use futures_util::{Stream, StreamExt, TryStreamExt};
use object_store::local::LocalFileSystem;
use object_store::multipart::{MultipartStore, PartId};
use object_store::path::Path;
use object_store::prefix::PrefixStore;
use object_store::signer::{SignedUrlOptions, Signer};
use object_store::{
    GetResultPayload, ObjectStore, ObjectStoreExt, ObjectStoreScheme, PutPayloadMut, PutResult,
    WriteMultipart,
};
use sha2::{Digest, Sha256};
use tokio_util::io::ReaderStream;
use url::Url;

use crate::path::ArtifactPath;
use crate::ArtifactError;

/// Upload buffer: files up to this size are one PUT; larger ones stream as multipart
/// parts of this size (S3's minimum part is 5 MiB).
const UPLOAD_BUFFER_BYTES: usize = 8 * 1024 * 1024;
/// Parts of one multipart upload in flight at once.
const UPLOAD_CONCURRENCY: usize = 8;
/// Chunks queued for the hashing thread before an upload waits for it.
const HASH_QUEUE_CHUNKS: usize = 64;
/// Read size when streaming a local file out.
const DOWNLOAD_CHUNK_BYTES: usize = 1024 * 1024;

/// The kind of storage behind the repository.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StorageKind {
    /// A directory on local disk.
    Local,
    /// Amazon S3 or an S3-compatible server.
    S3,
    /// Google Cloud Storage.
    Gcs,
    /// Azure Blob Storage.
    Azure,
}

/// One entry of a directory listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The entry's name within the listed directory.
    pub name: String,
    /// Whether it is a directory.
    pub is_dir: bool,
    /// Size in bytes (files only).
    pub size: Option<u64>,
}

/// A download in progress.
pub struct Download {
    /// Total size in bytes.
    pub size: u64,
    /// The store's ETag of what is being read.
    pub etag: Option<String>,
    /// The content, chunk by chunk.
    pub body: BoxStream<'static, Result<Bytes, object_store::Error>>,
}

/// What an upload stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    /// Bytes written.
    pub size: u64,
    /// SHA-256 of the content, lowercase hex.
    pub sha256: String,
    /// The store's ETag for exactly these bytes, when it gives one.
    pub etag: Option<String>,
}

/// Artifact bytes on one object store.
#[derive(Debug, Clone)]
pub struct ArtifactRepo {
    store: Arc<dyn ObjectStore>,
    kind: StorageKind,
    /// For local storage: the canonical root, to refuse paths through symlinks.
    local_root: Option<PathBuf>,
    /// The destination as configured, without credentials (they come from env vars).
    display: String,
    /// For S3: the bucket client itself (with the destination's prefix), for presigned
    /// multipart uploads and downloads, which `PrefixStore` does not pass through.
    direct: Option<DirectS3>,
}

#[derive(Debug, Clone)]
struct DirectS3 {
    s3: Arc<object_store::aws::AmazonS3>,
    prefix: Path,
}

/// A presigned multipart upload: where each part goes.
#[derive(Debug, Clone)]
pub struct MultipartPlan {
    /// The store's upload id.
    pub upload_id: String,
    /// `(part number from 1, presigned PUT URL)`.
    pub parts: Vec<(u32, String)>,
}

impl ArtifactRepo {
    /// Opens the destination: a local directory (plain path or `file://`, created if
    /// missing), `s3://bucket/prefix`, `gs://bucket/prefix`, or
    /// `az://container/prefix` / `abfss://container@account.dfs.core.windows.net/prefix`.
    /// Cloud credentials and endpoints come from the provider's usual environment
    /// variables (`AWS_*`, `GOOGLE_*`, `AZURE_*`).
    pub fn open(destination: &str) -> Result<Self, ArtifactError> {
        let url = match Url::parse(destination) {
            // A one-letter "scheme" is a Windows drive; no scheme at all is a plain path.
            Ok(url) if url.scheme().len() > 1 => url,
            _ => return Self::open_local(FsPath::new(destination)),
        };
        let bad = |e: &dyn std::fmt::Display| {
            ArtifactError::Config(format!("artifact destination {destination}: {e}"))
        };
        let (scheme, prefix) = ObjectStoreScheme::parse(&url).map_err(|e| bad(&e))?;
        let mut direct = None;
        let (store, kind): (Arc<dyn ObjectStore>, StorageKind) = match scheme {
            ObjectStoreScheme::Local => {
                let path = url
                    .to_file_path()
                    .map_err(|()| bad(&"not a local file URI"))?;
                return Self::open_local(&path);
            }
            ObjectStoreScheme::AmazonS3 => {
                install_crypto_provider();
                let s3 = object_store::aws::AmazonS3Builder::from_env()
                    .with_url(url.as_str())
                    .build()
                    .map_err(|e| bad(&e))?;
                let s3 = Arc::new(s3);
                direct = Some(DirectS3 {
                    s3: s3.clone(),
                    prefix: prefix.clone(),
                });
                (s3, StorageKind::S3)
            }
            ObjectStoreScheme::GoogleCloudStorage => {
                install_crypto_provider();
                let gcs = object_store::gcp::GoogleCloudStorageBuilder::from_env()
                    .with_url(url.as_str())
                    .build()
                    .map_err(|e| bad(&e))?;
                (Arc::new(gcs), StorageKind::Gcs)
            }
            ObjectStoreScheme::MicrosoftAzure => {
                install_crypto_provider();
                let az = object_store::azure::MicrosoftAzureBuilder::from_env()
                    .with_url(url.as_str())
                    .build()
                    .map_err(|e| bad(&e))?;
                (Arc::new(az), StorageKind::Azure)
            }
            other => return Err(bad(&format!("unsupported storage scheme {other:?}"))),
        };
        let store: Arc<dyn ObjectStore> = if prefix.as_ref().is_empty() {
            store
        } else {
            Arc::new(PrefixStore::new(store, prefix))
        };
        Ok(Self {
            store,
            kind,
            local_root: None,
            display: redact_url(&url),
            direct,
        })
    }

    fn open_local(dir: &FsPath) -> Result<Self, ArtifactError> {
        let config = |e: std::io::Error| {
            ArtifactError::Config(format!("artifact directory {}: {e}", dir.display()))
        };
        std::fs::create_dir_all(dir).map_err(config)?;
        let root = std::fs::canonicalize(dir).map_err(config)?;
        let store = LocalFileSystem::new_with_prefix(&root)
            .map_err(|e| ArtifactError::Config(format!("{}: {e}", root.display())))?
            // Deleting a directory's last file removes the emptied directories too.
            .with_automatic_cleanup(true);
        Ok(Self {
            store: Arc::new(store),
            kind: StorageKind::Local,
            display: root.display().to_string(),
            local_root: Some(root),
            direct: None,
        })
    }

    /// The kind of storage.
    pub fn kind(&self) -> StorageKind {
        self.kind
    }

    /// The destination, for logs (never carries credentials).
    pub fn describe(&self) -> &str {
        &self.display
    }

    /// Streams `body` to `path`, replacing any file there, and returns its size and
    /// SHA-256. On any error the upload is aborted and nothing is left at `path`.
    pub async fn put<S, E>(&self, path: &ArtifactPath, body: S) -> Result<Stored, ArtifactError>
    where
        S: Stream<Item = Result<Bytes, E>> + Send,
        E: std::fmt::Display,
    {
        let (location, shape) = self.location(path).await?;
        match shape {
            Shape::Dir => {
                return Err(ArtifactError::InvalidPath(format!(
                    "Invalid path '{path}': a directory of that name exists"
                )))
            }
            Shape::UnderFile => {
                return Err(ArtifactError::InvalidPath(format!(
                    "Invalid path '{path}': a parent of it is a file"
                )))
            }
            Shape::Unknown | Shape::Missing | Shape::File => {}
        }
        let mut writer = Writer::Buffer(location, PutPayloadMut::new());
        // Hashing runs on a blocking thread beside the writes (SHA-256 of a large upload
        // costs as much CPU as moving it), fed the same reference-counted chunks.
        let (to_hasher, mut chunks) = tokio::sync::mpsc::channel::<Bytes>(HASH_QUEUE_CHUNKS);
        let hasher = tokio::task::spawn_blocking(move || {
            let mut hasher = Sha256::new();
            while let Some(chunk) = chunks.blocking_recv() {
                hasher.update(&chunk);
            }
            hex(&hasher.finalize())
        });
        let mut size: u64 = 0;
        let mut body = std::pin::pin!(body);
        while let Some(chunk) = body.next().await {
            let written = match chunk {
                Ok(chunk) => {
                    size += chunk.len() as u64;
                    match to_hasher.send(chunk.clone()).await {
                        Ok(()) => writer.put(&self.store, chunk).await,
                        Err(_) => Err(ArtifactError::Storage("the hashing thread stopped".into())),
                    }
                }
                Err(e) => Err(ArtifactError::Body(e.to_string())),
            };
            if let Err(e) = written {
                writer.abort(path).await;
                return Err(e);
            }
        }
        drop(to_hasher);
        let etag = writer.finish(&self.store).await?.e_tag;
        let sha256 = hasher
            .await
            .map_err(|e| ArtifactError::Storage(format!("hashing failed: {e}")))?;
        Ok(Stored { size, sha256, etag })
    }

    /// Reads the file at `path` once and returns its size and SHA-256 (for bytes that
    /// reached the store without passing through [`ArtifactRepo::put`]).
    pub async fn digest(&self, path: &ArtifactPath) -> Result<Stored, ArtifactError> {
        let download = self.get(path).await?;
        let etag = download.etag;
        let mut body = download.body;
        let mut hasher = Sha256::new();
        let mut size: u64 = 0;
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(storage)?;
            hasher.update(&chunk);
            size += chunk.len() as u64;
        }
        Ok(Stored {
            size,
            sha256: hex(&hasher.finalize()),
            etag,
        })
    }

    /// Whether clients may upload parts and download ranges directly from the store with
    /// presigned URLs (S3 only: its presigned `UploadPart` is what MLflow's client speaks).
    pub fn supports_presigned(&self) -> bool {
        self.direct.is_some()
    }

    fn direct(&self, path: &ArtifactPath) -> Result<(&DirectS3, Path), ArtifactError> {
        let direct = self.direct.as_ref().ok_or(ArtifactError::Unsupported)?;
        let full = if direct.prefix.as_ref().is_empty() {
            path.as_str().to_string()
        } else {
            format!("{}/{}", direct.prefix.as_ref(), path)
        };
        let location = Path::parse(full)
            .map_err(|e| ArtifactError::InvalidPath(format!("Invalid path '{path}': {e}")))?;
        Ok((direct, location))
    }

    /// Starts a multipart upload to `path` and presigns one `UploadPart` URL per part.
    pub async fn create_multipart(
        &self,
        path: &ArtifactPath,
        num_parts: u32,
        expires_in: Duration,
    ) -> Result<MultipartPlan, ArtifactError> {
        let (direct, location) = self.direct(path)?;
        let upload_id = direct
            .s3
            .create_multipart(&location)
            .await
            .map_err(storage)?;
        let mut parts = Vec::with_capacity(num_parts as usize);
        for part in 1..=num_parts {
            let options = SignedUrlOptions::new().with_query([
                ("partNumber", part.to_string()),
                ("uploadId", upload_id.clone()),
            ]);
            let url = direct
                .s3
                .signed_url_opts(http::Method::PUT, &location, expires_in, &options)
                .await
                .map_err(storage)?;
            parts.push((part, url.to_string()));
        }
        Ok(MultipartPlan { upload_id, parts })
    }

    /// Completes a multipart upload from the parts' ETags, in part order.
    pub async fn complete_multipart(
        &self,
        path: &ArtifactPath,
        upload_id: &str,
        etags: Vec<String>,
    ) -> Result<(), ArtifactError> {
        let (direct, location) = self.direct(path)?;
        let parts = etags
            .into_iter()
            .map(|content_id| PartId { content_id })
            .collect();
        direct
            .s3
            .complete_multipart(&location, &upload_id.to_string(), parts)
            .await
            .map_err(|e| match e {
                object_store::Error::NotFound { .. } => ArtifactError::InvalidPath(format!(
                    "No multipart upload {upload_id} at '{path}'"
                )),
                other => storage(other),
            })?;
        Ok(())
    }

    /// Abandons a multipart upload.
    pub async fn abort_multipart(
        &self,
        path: &ArtifactPath,
        upload_id: &str,
    ) -> Result<(), ArtifactError> {
        let (direct, location) = self.direct(path)?;
        direct
            .s3
            .abort_multipart(&location, &upload_id.to_string())
            .await
            .map_err(storage)
    }

    /// A presigned GET URL for the file at `path`, with its size.
    pub async fn presigned_get(
        &self,
        path: &ArtifactPath,
        expires_in: Duration,
    ) -> Result<(String, u64), ArtifactError> {
        let (direct, location) = self.direct(path)?;
        let meta = direct.s3.head(&location).await.map_err(|e| match e {
            object_store::Error::NotFound { .. } => ArtifactError::NotFound(path.to_string()),
            other => storage(other),
        })?;
        let url = direct
            .s3
            .signed_url(http::Method::GET, &location, expires_in)
            .await
            .map_err(storage)?;
        Ok((url.to_string(), meta.size))
    }

    /// Opens the file at `path` for streaming.
    pub async fn get(&self, path: &ArtifactPath) -> Result<Download, ArtifactError> {
        if path.is_root() {
            return Err(ArtifactError::NotFound(String::new()));
        }
        let (location, shape) = self.location(path).await?;
        if matches!(shape, Shape::Dir | Shape::Missing | Shape::UnderFile) {
            return Err(ArtifactError::NotFound(path.to_string()));
        }
        let result = self.store.get(&location).await.map_err(|e| match e {
            object_store::Error::NotFound { .. } => ArtifactError::NotFound(path.to_string()),
            other => storage(other),
        })?;
        let size = result.meta.size;
        let etag = result.meta.e_tag.clone();
        let body = match result.payload {
            // object_store streams local files in 8 KiB blocking reads (a third of disk
            // speed, measured); read them in 1 MiB chunks instead.
            GetResultPayload::File(file, _) => {
                ReaderStream::with_capacity(tokio::fs::File::from_std(file), DOWNLOAD_CHUNK_BYTES)
                    .map_err(|source| object_store::Error::Generic {
                        store: "LocalFileSystem",
                        source: Box::new(source),
                    })
                    .boxed()
            }
            GetResultPayload::Stream(stream) => stream,
        };
        Ok(Download { size, etag, body })
    }

    /// The direct children of the directory `path`, sorted by name; empty when `path` is
    /// a file or does not exist.
    pub async fn list(&self, path: &ArtifactPath) -> Result<Vec<Entry>, ArtifactError> {
        let (location, shape) = self.location(path).await?;
        if matches!(shape, Shape::Missing | Shape::File | Shape::UnderFile) {
            return Ok(Vec::new());
        }
        let prefix = (!path.is_root()).then_some(&location);
        let listing = self
            .store
            .list_with_delimiter(prefix)
            .await
            .map_err(storage)?;
        let mut entries = Vec::with_capacity(listing.common_prefixes.len() + listing.objects.len());
        for dir in listing.common_prefixes {
            if let Some(name) = dir.filename() {
                entries.push(Entry {
                    name: name.to_string(),
                    is_dir: true,
                    size: None,
                });
            }
        }
        for object in listing.objects {
            if let Some(name) = object.location.filename() {
                entries.push(Entry {
                    name: name.to_string(),
                    is_dir: false,
                    size: Some(object.size),
                });
            }
        }
        if let Some(root) = &self.local_root {
            // A symlink inside the root is never served; don't advertise it either. The
            // checks stat the disk, so they run off the async workers, all in one go.
            let dir = local_file(root, path);
            entries = tokio::task::spawn_blocking(move || {
                entries.retain(|e| !is_symlink(&dir.join(&e.name)));
                entries
            })
            .await
            .map_err(|e| ArtifactError::Storage(format!("listing failed: {e}")))?;
        }
        entries.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(entries)
    }

    /// Deletes the file at `path`, or everything under the directory `path`; returns the
    /// number of files deleted (0 when nothing was there).
    pub async fn delete(&self, path: &ArtifactPath) -> Result<u64, ArtifactError> {
        if path.is_root() {
            return Err(ArtifactError::InvalidPath(
                "refusing to delete the whole artifact store".into(),
            ));
        }
        let (location, shape) = self.location(path).await?;
        if matches!(shape, Shape::Missing | Shape::UnderFile) {
            return Ok(0);
        }
        // A directory: every file under it (listing is recursive and by whole segments,
        // so `dir` never catches `dir2`).
        let under = self.delete_tree(&location).await?;
        if under > 0 {
            return Ok(under);
        }
        match self.store.head(&location).await {
            Ok(_) => {
                self.store.delete(&location).await.map_err(storage)?;
                Ok(1)
            }
            Err(object_store::Error::NotFound { .. }) => Ok(0),
            Err(e) => Err(storage(e)),
        }
    }

    async fn delete_tree(&self, location: &Path) -> Result<u64, ArtifactError> {
        let files = self
            .store
            .list(Some(location))
            .map_ok(|m| m.location)
            .boxed();
        let deleted: Vec<Path> = self
            .store
            .delete_stream(files)
            .try_collect()
            .await
            .map_err(storage)?;
        Ok(deleted.len() as u64)
    }

    /// The object-store location of `path`, refusing local paths that pass through a
    /// symlink (which `object_store` would follow out of the root), with what the disk
    /// holds there (always [`Shape::Unknown`] on object stores, which have no directories).
    async fn location(&self, path: &ArtifactPath) -> Result<(Path, Shape), ArtifactError> {
        let mut shape = Shape::Unknown;
        if let Some(root) = &self.local_root {
            shape = Shape::Missing;
            let mut current = root.clone();
            for segment in path.segments() {
                if shape == Shape::File {
                    // A file where a directory is needed: nothing can exist below it.
                    shape = Shape::UnderFile;
                    break;
                }
                current.push(segment);
                match tokio::fs::symlink_metadata(&current).await {
                    Ok(meta) if meta.file_type().is_symlink() => {
                        return Err(ArtifactError::InvalidPath(format!(
                            "Invalid path '{path}': it passes through a symbolic link"
                        )))
                    }
                    Ok(meta) if meta.is_dir() => shape = Shape::Dir,
                    Ok(_) => shape = Shape::File,
                    // Nothing deeper exists either.
                    Err(_) => {
                        shape = Shape::Missing;
                        break;
                    }
                }
            }
            if path.is_root() {
                shape = Shape::Dir;
            }
        }
        let location = Path::parse(path.as_str())
            .map_err(|e| ArtifactError::InvalidPath(format!("Invalid path '{path}': {e}")))?;
        Ok((location, shape))
    }
}

/// What a local path is on disk, as far as the artifact API cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    /// An object store: no directories to clash with.
    Unknown,
    /// Nothing there yet.
    Missing,
    /// A regular file.
    File,
    /// A directory.
    Dir,
    /// Below a regular file (`a.txt/b`), which cannot exist.
    UnderFile,
}

/// An upload in progress: bytes are buffered until the buffer is full, then the upload
/// becomes a multipart one with parts of the buffer's size. Unlike `object_store`'s
/// `BufWriter`, finishing hands back the store's [`PutResult`], whose ETag identifies
/// exactly these bytes.
enum Writer {
    Buffer(Path, PutPayloadMut),
    Multipart(WriteMultipart),
}

impl Writer {
    async fn put(
        &mut self,
        store: &Arc<dyn ObjectStore>,
        chunk: Bytes,
    ) -> Result<(), ArtifactError> {
        match self {
            Self::Multipart(upload) => {
                upload
                    .wait_for_capacity(UPLOAD_CONCURRENCY)
                    .await
                    .map_err(storage)?;
                upload.put(chunk);
            }
            Self::Buffer(location, buffer) => {
                if buffer.content_length() + chunk.len() < UPLOAD_BUFFER_BYTES {
                    buffer.push(chunk);
                    return Ok(());
                }
                let started = store.put_multipart(location).await.map_err(storage)?;
                let mut upload = WriteMultipart::new_with_chunk_size(started, UPLOAD_BUFFER_BYTES);
                for buffered in std::mem::take(buffer).freeze() {
                    upload.put(buffered);
                }
                upload.put(chunk);
                *self = Self::Multipart(upload);
            }
        }
        Ok(())
    }

    /// Stores what was written; the file appears at its path only now.
    async fn finish(self, store: &Arc<dyn ObjectStore>) -> Result<PutResult, ArtifactError> {
        match self {
            Self::Buffer(location, buffer) => {
                store.put(&location, buffer.freeze()).await.map_err(storage)
            }
            Self::Multipart(upload) => upload.finish().await.map_err(storage),
        }
    }

    /// Gives up, removing any parts already stored.
    async fn abort(self, path: &ArtifactPath) {
        if let Self::Multipart(upload) = self {
            if let Err(e) = upload.abort().await {
                tracing::warn!(error = %e, %path, "aborting a failed upload");
            }
        }
    }
}

fn local_file(root: &FsPath, path: &ArtifactPath) -> PathBuf {
    let mut p = root.to_path_buf();
    p.extend(path.segments());
    p
}

fn is_symlink(p: &FsPath) -> bool {
    std::fs::symlink_metadata(p)
        .map(|m| m.file_type().is_symlink())
        .unwrap_or(false)
}

fn storage(e: object_store::Error) -> ArtifactError {
    ArtifactError::Storage(e.to_string())
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::with_capacity(64), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// The URL without user info or query (where SAS tokens and keys may be put).
fn redact_url(url: &Url) -> String {
    let mut shown = url.clone();
    let _ = shown.set_username("");
    let _ = shown.set_password(None);
    shown.set_query(None);
    shown.to_string()
}

/// reqwest's rustls is built without a bundled crypto provider (see Cargo.toml): install
/// ring's once, before the first cloud client is built. A provider someone else installed
/// first is kept.
fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
