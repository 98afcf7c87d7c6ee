-- The digest of every artifact file, recorded when its upload finished, with the storage's
-- ETag of those bytes (a digest is served only while the file still has that ETag). Paths are relative
-- to the artifact store's root; a directory's files are the range [dir || '/', dir || '0'),
-- since '0' is the byte after '/'.
CREATE TABLE artifact_files (
    path        TEXT    NOT NULL PRIMARY KEY,
    size        INTEGER NOT NULL,
    sha256      TEXT    NOT NULL,
    etag        TEXT,
    uploaded_at INTEGER NOT NULL
) WITHOUT ROWID;
