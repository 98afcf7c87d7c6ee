-- Metric history moves from one row per observation to one row per (run, key, write),
-- as on PostgreSQL. A 1000-metric log-batch then writes about ten rows instead of a
-- thousand index entries. Readers merge a key's chunks, sort and de-duplicate them
-- (cairn_core::history), so a resent batch is still a no-op to every reader.
--
-- `points` is text: `timestamp,step,is_nan,value;...`, values written so that they parse
-- back to the same double (Rust's shortest round-trip form; `%!.17g` below), NaN stored
-- as 0 with is_nan = 1. Text keeps this migration in SQL and the rows readable with the
-- sqlite3 shell.
CREATE TABLE metric_chunks (
    chunk  INTEGER PRIMARY KEY,
    run_pk INTEGER NOT NULL REFERENCES runs (run_pk) ON DELETE CASCADE,
    key    TEXT    NOT NULL,
    points TEXT    NOT NULL
);
CREATE INDEX metric_chunks_by_key ON metric_chunks (run_pk, key);

-- The rare observations that carry a logged model or dataset, one row each (they are in
-- metric_chunks too). Readers attach these fields by the observation's identity.
CREATE TABLE metric_contexts (
    run_pk         INTEGER NOT NULL REFERENCES runs (run_pk) ON DELETE CASCADE,
    key            TEXT    NOT NULL,
    timestamp      INTEGER NOT NULL,
    step           INTEGER NOT NULL,
    is_nan         INTEGER NOT NULL,
    value          REAL    NOT NULL,
    model_id       TEXT,
    dataset_name   TEXT,
    dataset_digest TEXT,
    PRIMARY KEY (run_pk, key, timestamp, step, is_nan, value)
) WITHOUT ROWID;

INSERT INTO metric_contexts
SELECT run_pk, key, timestamp, step, is_nan, value, model_id, dataset_name, dataset_digest
FROM metrics
WHERE model_id IS NOT NULL OR dataset_name IS NOT NULL OR dataset_digest IS NOT NULL;

-- Existing history becomes one chunk per (run, key); the order inside a chunk does not
-- matter to readers.
INSERT INTO metric_chunks (run_pk, key, points)
SELECT run_pk, key,
       group_concat(timestamp || ',' || step || ',' || is_nan || ',' || printf('%!.17g', value), ';')
FROM metrics
GROUP BY run_pk, key;

DROP INDEX metrics_with_context;
DROP TABLE metrics;
