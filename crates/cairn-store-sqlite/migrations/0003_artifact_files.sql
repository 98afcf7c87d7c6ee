-- The digest of every artifact file, recorded when its upload finished. Paths are relative
-- to the artifact store's root; a directory's files are the range [dir || '/', dir || '0'),
-- since '0' is the byte after '/'.
CREATE TABLE artifact_files (
    path        TEXT    NOT NULL PRIMARY KEY,
    size        INTEGER NOT NULL,
    sha256      TEXT    NOT NULL,
    uploaded_at INTEGER NOT NULL
) WITHOUT ROWID;
