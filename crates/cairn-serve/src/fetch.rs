//! Copying a model directory into the local cache: staged in a temporary sibling and
//! renamed into place when complete, so a half-finished copy is never loaded.
//!
//! Two sources: the tracking server's artifact proxy (`mlflow-artifacts:`, see
//! `resolve.rs`) and object stores read directly with the machine's cloud credentials
//! (`s3://`, `gs://`, `az://`/`abfss://`), as the `mlflow` client reads a model version
//! whose source is a bucket.

use std::path::{Path, PathBuf};

use cairn_artifacts::{ArtifactPath, ArtifactRepo};
use futures_util::StreamExt;
use tokio::io::AsyncWriteExt;

use crate::resolve::ResolveError;

/// URI schemes read directly from an object store (those `object_store` parses).
pub const STORE_SCHEMES: &[&str] = &["s3", "s3a", "gs", "az", "adl", "azure", "abfs", "abfss"];

/// Whether `uri` names an object-store location this server reads directly.
pub fn is_store_uri(uri: &str) -> bool {
    uri.split_once("://")
        .is_some_and(|(scheme, _)| STORE_SCHEMES.contains(&scheme.to_ascii_lowercase().as_str()))
}

fn io(what: &str, p: &Path, e: std::io::Error) -> ResolveError {
    ResolveError::Io(format!("cannot {what} {}: {e}", p.display()))
}

/// A fresh, empty staging directory beside `dest`.
pub async fn stage(dest: &Path) -> Result<PathBuf, ResolveError> {
    let partial = dest.with_extension(format!("partial-{}", std::process::id()));
    let _ = tokio::fs::remove_dir_all(&partial).await;
    tokio::fs::create_dir_all(&partial)
        .await
        .map_err(|e| io("create", &partial, e))?;
    Ok(partial)
}

/// Moves a completed staging directory to `dest`; on a failed copy, removes it.
pub async fn finish(
    partial: PathBuf,
    dest: &Path,
    copied: Result<usize, ResolveError>,
    source: &str,
) -> Result<(), ResolveError> {
    let files = match copied {
        Ok(0) => Err(ResolveError::Server(format!("no files under {source}"))),
        other => other,
    };
    if let Err(e) = files {
        let _ = tokio::fs::remove_dir_all(&partial).await;
        return Err(e);
    }
    if let Some(parent) = dest.parent() {
        tokio::fs::create_dir_all(parent)
            .await
            .map_err(|e| io("create", parent, e))?;
    }
    tokio::fs::rename(&partial, dest)
        .await
        .map_err(|e| io("move into place", dest, e))
}

/// Copies everything under the object-store URI `uri` into `dest` (which must not exist).
/// Credentials and endpoints come from the provider's environment variables (`AWS_*`,
/// `GOOGLE_*`, `AZURE_*`), as for the tracking server's artifact store.
pub async fn download_store(uri: &str, dest: &Path) -> Result<(), ResolveError> {
    let repo = ArtifactRepo::open(uri).map_err(|e| ResolveError::Unsupported(e.to_string()))?;
    let partial = stage(dest).await?;
    let copied = copy_tree(&repo, &partial, uri).await;
    finish(partial, dest, copied, uri).await
}

async fn copy_tree(repo: &ArtifactRepo, root: &Path, uri: &str) -> Result<usize, ResolveError> {
    let failed = |e: cairn_artifacts::ArtifactError| ResolveError::Server(format!("{uri}: {e}"));
    let mut pending = vec![ArtifactPath::root()];
    let mut files = 0;
    while let Some(dir) = pending.pop() {
        for entry in repo.list(&dir).await.map_err(failed)? {
            // Entry names are single segments; anything else is refused, never trusted
            // as a path on this machine.
            let child = ArtifactPath::parse_decoded(&entry.name)
                .ok()
                .filter(|p| p.segments().count() == 1)
                .ok_or_else(|| {
                    ResolveError::Server(format!("{uri}: unsafe entry name {:?}", entry.name))
                })?;
            let path = dir.join(&child);
            let local = root.join(path.as_str());
            if entry.is_dir {
                tokio::fs::create_dir_all(&local)
                    .await
                    .map_err(|e| io("create", &local, e))?;
                pending.push(path);
                continue;
            }
            let mut download = repo.get(&path).await.map_err(failed)?;
            let mut file = tokio::fs::File::create(&local)
                .await
                .map_err(|e| io("create", &local, e))?;
            while let Some(chunk) = download.body.next().await {
                let chunk = chunk.map_err(|e| ResolveError::Server(format!("{uri}: {e}")))?;
                file.write_all(&chunk)
                    .await
                    .map_err(|e| io("write", &local, e))?;
            }
            file.flush().await.map_err(|e| io("write", &local, e))?;
            files += 1;
        }
    }
    Ok(files)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn store_schemes() {
        assert!(is_store_uri("s3://bucket/models/m"));
        assert!(is_store_uri("GS://bucket/m"));
        assert!(is_store_uri("abfss://c@acct.dfs.core.windows.net/m"));
        assert!(!is_store_uri("mlflow-artifacts:/1/m"));
        assert!(!is_store_uri("https://example.com/m"));
        assert!(!is_store_uri("/tmp/m"));
    }

    #[tokio::test]
    async fn copies_a_tree_and_refuses_an_empty_one() {
        let src = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(src.path().join("model/sub")).unwrap();
        std::fs::write(src.path().join("model/MLmodel"), "flavors: {}\n").unwrap();
        std::fs::write(src.path().join("model/sub/w.bin"), vec![7u8; 3 << 20]).unwrap();
        let cache = tempfile::tempdir().unwrap();
        let dest = cache.path().join("m");
        let uri = format!("file://{}", src.path().join("model").display());
        download_store(&uri, &dest).await.unwrap();
        assert_eq!(
            std::fs::read(dest.join("sub/w.bin")).unwrap(),
            vec![7u8; 3 << 20]
        );
        assert!(dest.join("MLmodel").exists());

        std::fs::create_dir_all(src.path().join("empty")).unwrap();
        let empty = format!("file://{}", src.path().join("empty").display());
        let err = download_store(&empty, &cache.path().join("e"))
            .await
            .unwrap_err();
        assert!(err.to_string().contains("no files under"), "{err}");
        // Nothing is left behind: neither the destination nor the staging directory.
        let left: Vec<_> = std::fs::read_dir(cache.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(left, vec![std::ffi::OsString::from("m")]);
    }
}
