//! The artifact digest index.

use cairn_core::model::ArtifactFile;
use cairn_core::store::artifact_path_range;
use cairn_core::CoreResult;
use sqlx::SqlitePool;

use crate::{db_err, SqliteStore};

pub(crate) async fn record(store: &SqliteStore, f: &ArtifactFile) -> CoreResult<()> {
    let mut tx = store.writer.begin().await.map_err(db_err)?;
    sqlx::query(
        "INSERT INTO artifact_files (path, size, sha256, etag, uploaded_at) VALUES (?, ?, ?, ?, ?) \
         ON CONFLICT (path) DO UPDATE SET size = excluded.size, sha256 = excluded.sha256, \
         etag = excluded.etag, uploaded_at = excluded.uploaded_at",
    )
    .bind(&f.path)
    .bind(f.size)
    .bind(&f.sha256)
    .bind(&f.etag)
    .bind(f.uploaded_at)
    .execute(&mut *tx)
    .await
    .map_err(db_err)?;
    crate::auth::commit(tx).await
}

pub(crate) async fn files(pool: &SqlitePool, path: &str) -> CoreResult<Vec<ArtifactFile>> {
    let (lo, hi) = artifact_path_range(path);
    let rows: Vec<(String, i64, String, Option<String>, i64)> = sqlx::query_as(
        "SELECT path, size, sha256, etag, uploaded_at FROM artifact_files \
         WHERE path = ? OR (path >= ? AND path < ?) ORDER BY path",
    )
    .bind(path)
    .bind(&lo)
    .bind(&hi)
    .fetch_all(pool)
    .await
    .map_err(db_err)?;
    Ok(rows
        .into_iter()
        .map(|(path, size, sha256, etag, uploaded_at)| ArtifactFile {
            path,
            size,
            sha256,
            etag,
            uploaded_at,
        })
        .collect())
}

pub(crate) async fn forget(store: &SqliteStore, path: &str) -> CoreResult<u64> {
    let (lo, hi) = artifact_path_range(path);
    let mut tx = store.writer.begin().await.map_err(db_err)?;
    let done = sqlx::query("DELETE FROM artifact_files WHERE path = ? OR (path >= ? AND path < ?)")
        .bind(path)
        .bind(&lo)
        .bind(&hi)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
    crate::auth::commit(tx).await?;
    Ok(done.rows_affected())
}
