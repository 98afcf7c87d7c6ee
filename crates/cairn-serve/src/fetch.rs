//! Copying a model directory into the local cache: staged in a temporary sibling and
//! renamed into place when complete, so a half-finished copy is never loaded.
//!
//! Two sources: the tracking server's artifact proxy (`mlflow-artifacts:`, see
//! `resolve.rs`) and object stores read directly with the machine's cloud credentials
//! (`s3://`, `gs://`, `az://`/`abfss://`), as the `mlflow` client reads a model version
//! whose source is a bucket.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex};

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

static STAGE_SEQ: AtomicU64 = AtomicU64::new(0);

/// A fresh, empty staging directory beside `dest`, private to this download: two
/// downloads of the same directory (in this process or another) never share one.
pub async fn stage(dest: &Path) -> Result<PathBuf, ResolveError> {
    let partial = dest.with_extension(format!(
        "partial-{}-{}",
        std::process::id(),
        STAGE_SEQ.fetch_add(1, Ordering::Relaxed)
    ));
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
    match tokio::fs::rename(&partial, dest).await {
        Ok(()) => Ok(()),
        // Another download (another process sharing the cache) finished first: its copy,
        // complete because it too arrived by rename, is the one used.
        Err(_) if tokio::fs::try_exists(dest).await.unwrap_or(false) => {
            let _ = tokio::fs::remove_dir_all(&partial).await;
            Ok(())
        }
        Err(e) => {
            let _ = tokio::fs::remove_dir_all(&partial).await;
            Err(io("move into place", dest, e))
        }
    }
}

/// Per cache directory, the lock a download into it holds, so that two models of this
/// process that resolve to the same files (an alias and a pinned version, say) download
/// them once: the second waits and then finds the finished copy.
static DOWNLOADS: LazyLock<Mutex<HashMap<PathBuf, Arc<tokio::sync::Mutex<()>>>>> =
    LazyLock::new(Default::default);

/// Waits for, then holds, the right to download into `dest`.
pub async fn download_lock(dest: &Path) -> tokio::sync::OwnedMutexGuard<()> {
    let lock = match DOWNLOADS.lock() {
        Ok(mut map) => map.entry(dest.to_path_buf()).or_default().clone(),
        // A poisoned map only loses the de-duplication; staging keeps downloads apart.
        Err(_) => Arc::default(),
    };
    lock.lock_owned().await
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

/// Per cache directory: how many loaded (or loading) versions of this process use it, and
/// whether it is to go when the count reaches zero.
static LEASES: LazyLock<Mutex<HashMap<PathBuf, (usize, bool)>>> = LazyLock::new(Default::default);
static TRASH_SEQ: AtomicU64 = AtomicU64::new(0);

/// A claim on a cached model directory. When the last lease on a directory goes after
/// `retire_when_released` (its version was swapped out), the directory is renamed aside
/// at once and deleted in the background, so the cache holds only what this process
/// serves. Directories of loads that failed stay, so the retry at the next poll needs no
/// new download; so do those of versions serving at shutdown, for the next start.
pub struct CacheLease {
    dir: PathBuf,
}

impl CacheLease {
    /// Claims `dir` (which may not exist yet); a new claim cancels an earlier retirement.
    pub fn acquire(dir: &Path) -> CacheLease {
        if let Ok(mut leases) = LEASES.lock() {
            let entry = leases.entry(dir.to_path_buf()).or_default();
            *entry = (entry.0 + 1, false);
        }
        CacheLease {
            dir: dir.to_path_buf(),
        }
    }

    /// Marks the directory for removal once no lease holds it any more.
    pub fn retire_when_released(&self) {
        if let Ok(mut leases) = LEASES.lock() {
            if let Some(entry) = leases.get_mut(&self.dir) {
                entry.1 = true;
            }
        }
    }
}

impl Drop for CacheLease {
    fn drop(&mut self) {
        let Ok(mut leases) = LEASES.lock() else {
            return;
        };
        let Some(entry) = leases.get_mut(&self.dir) else {
            return;
        };
        entry.0 = entry.0.saturating_sub(1);
        let (left, retire) = *entry;
        if left > 0 {
            return;
        }
        leases.remove(&self.dir);
        if !retire {
            return;
        }
        // Renamed while the lock is held: a lease on the same path taken after this finds
        // nothing there and downloads afresh.
        let trash = self.dir.with_extension(format!(
            "trash-{}-{}",
            std::process::id(),
            TRASH_SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        if std::fs::rename(&self.dir, &trash).is_ok() {
            drop(leases);
            tracing::info!(dir = %self.dir.display(), "retired model copy removed from the cache");
            let _ = std::thread::Builder::new()
                .name("cairn-cache-prune".into())
                .spawn(move || {
                    if let Err(e) = std::fs::remove_dir_all(&trash) {
                        tracing::warn!(dir = %trash.display(), error = %e, "cannot remove a retired model copy");
                    }
                });
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn leases_remove_a_retired_directory_when_the_last_one_goes() {
        let cache = tempfile::tempdir().unwrap();
        let dir = cache.path().join("m-1");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("MLmodel"), "x").unwrap();
        // A failed load (never retired) leaves the copy for the retry.
        drop(CacheLease::acquire(&dir));
        assert!(dir.exists());
        // Swapped out while another version (same files) still uses it: kept until both go.
        let old = CacheLease::acquire(&dir);
        let other = CacheLease::acquire(&dir);
        old.retire_when_released();
        drop(old);
        assert!(dir.exists(), "another lease still uses it");
        drop(other);
        assert!(
            !dir.exists(),
            "retired and released: moved out of the cache"
        );
        // A version loading the same files again cancels the retirement.
        std::fs::create_dir_all(&dir).unwrap();
        let old = CacheLease::acquire(&dir);
        old.retire_when_released();
        let again = CacheLease::acquire(&dir);
        drop(old);
        drop(again);
        assert!(dir.exists(), "re-acquired after retirement: kept");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_downloads_of_one_directory_both_end_with_a_complete_copy() {
        let src = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(src.path().join("model")).unwrap();
        std::fs::write(src.path().join("model/MLmodel"), "flavors: {}\n").unwrap();
        for i in 0..20 {
            std::fs::write(
                src.path().join(format!("model/w{i}.bin")),
                vec![i as u8; 1 << 16],
            )
            .unwrap();
        }
        let uri = format!("file://{}", src.path().join("model").display());
        let cache = tempfile::tempdir().unwrap();
        for round in 0..10 {
            let dest = cache.path().join(format!("m{round}"));
            // Without the lock, as two processes sharing a cache would: staging apart,
            // the later rename gives way to the finished copy.
            let (a, b) = tokio::join!(
                tokio::spawn(download_store_owned(uri.clone(), dest.clone())),
                tokio::spawn(download_store_owned(uri.clone(), dest.clone()))
            );
            a.unwrap().unwrap();
            b.unwrap().unwrap();
            for i in 0..20 {
                let got = std::fs::read(dest.join(format!("w{i}.bin"))).unwrap();
                assert_eq!(got, vec![i as u8; 1 << 16], "round {round} file {i}");
            }
        }
        let left = std::fs::read_dir(cache.path()).unwrap().count();
        assert_eq!(left, 10, "no staging directory left behind");
    }

    async fn download_store_owned(uri: String, dest: PathBuf) -> Result<(), ResolveError> {
        download_store(&uri, &dest).await
    }

    #[tokio::test]
    async fn the_download_lock_serialises_one_directory_only() {
        let cache = tempfile::tempdir().unwrap();
        let held = download_lock(&cache.path().join("a")).await;
        // Another directory is not blocked.
        let other = tokio::time::timeout(
            std::time::Duration::from_secs(5),
            download_lock(&cache.path().join("b")),
        )
        .await;
        assert!(other.is_ok());
        // The same one waits until the holder is done.
        let waiting = tokio::time::timeout(
            std::time::Duration::from_millis(100),
            download_lock(&cache.path().join("a")),
        )
        .await;
        assert!(waiting.is_err(), "a second download of one directory waits");
        drop(held);
        let again = tokio::time::timeout(
            std::time::Duration::from_secs(5),
            download_lock(&cache.path().join("a")),
        )
        .await;
        assert!(again.is_ok());
    }

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
