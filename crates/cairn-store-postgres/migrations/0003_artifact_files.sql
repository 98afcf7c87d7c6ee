-- The digest of every artifact file, recorded when its upload finished. Paths are relative
-- to the artifact store's root; a directory's files are the range [dir || '/', dir || '0'),
-- since '0' is the byte after '/' (the "C" collation compares bytes).
CREATE TABLE artifact_files (
    path        TEXT   COLLATE "C" PRIMARY KEY,
    size        BIGINT NOT NULL,
    sha256      TEXT   COLLATE "C" NOT NULL,
    uploaded_at BIGINT NOT NULL
);
