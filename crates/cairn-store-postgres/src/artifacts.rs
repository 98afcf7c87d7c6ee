//! The artifact digest index.

use cairn_core::model::ArtifactFile;
use cairn_core::store::artifact_path_range;
use cairn_core::CoreResult;
use sqlx::PgPool;

use crate::{db_err, PgStore};

pub(crate) async fn record(store: &PgStore, f: &ArtifactFile) -> CoreResult<()> {
    // One statement; a transaction only to carry the request's pending audit event.
    let upsert = || {
        sqlx::query(
            "INSERT INTO artifact_files (path, size, sha256, etag, uploaded_at) \
             VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (path) DO UPDATE SET size = excluded.size, sha256 = excluded.sha256, \
             etag = excluded.etag, uploaded_at = excluded.uploaded_at",
        )
        .bind(&f.path)
        .bind(f.size)
        .bind(&f.sha256)
        .bind(&f.etag)
        .bind(f.uploaded_at)
    };
    if !crate::auth::audit_pending() {
        upsert().execute(&store.pool).await.map_err(db_err)?;
        return Ok(());
    }
    let mut tx = store.pool.begin().await.map_err(db_err)?;
    upsert().execute(&mut *tx).await.map_err(db_err)?;
    crate::auth::commit(tx).await
}

pub(crate) async fn files(pool: &PgPool, path: &str) -> CoreResult<Vec<ArtifactFile>> {
    let (lo, hi) = artifact_path_range(path);
    let rows: Vec<(String, i64, String, Option<String>, i64)> = sqlx::query_as(
        "SELECT path, size, sha256, etag, uploaded_at FROM artifact_files \
         WHERE path = $1 OR (path >= $2 AND path < $3) ORDER BY path",
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

pub(crate) async fn forget(store: &PgStore, path: &str) -> CoreResult<u64> {
    let (lo, hi) = artifact_path_range(path);
    let delete = || {
        sqlx::query("DELETE FROM artifact_files WHERE path = $1 OR (path >= $2 AND path < $3)")
            .bind(path)
            .bind(&lo)
            .bind(&hi)
    };
    if !crate::auth::audit_pending() {
        let done = delete().execute(&store.pool).await.map_err(db_err)?;
        return Ok(done.rows_affected());
    }
    let mut tx = store.pool.begin().await.map_err(db_err)?;
    let done = delete().execute(&mut *tx).await.map_err(db_err)?;
    crate::auth::commit(tx).await?;
    Ok(done.rows_affected())
}
