-- The digest of every artifact file, recorded when its upload finished, with the storage's
-- ETag of those bytes (a digest is served only while the file still has that ETag). Paths are relative
-- to the artifact store's root; a directory's files are the range [dir || '/', dir || '0'),
-- since '0' is the byte after '/' (the "C" collation compares bytes).
CREATE TABLE artifact_files (
    path        TEXT   COLLATE "C" PRIMARY KEY,
    size        BIGINT NOT NULL,
    sha256      TEXT   COLLATE "C" NOT NULL,
    etag        TEXT   COLLATE "C",
    uploaded_at BIGINT NOT NULL
);
