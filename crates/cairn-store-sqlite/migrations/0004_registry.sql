-- Model registry. Registered models carry an integer key (model_pk) that versions, tags
-- and aliases use, so a rename touches one row. `last_version` is the per-model counter
-- from which create_model_version allocates numbers inside its transaction: numbers are
-- never reused, even after a version is deleted.
-- (0003 is reserved for the artifact tables.)

CREATE TABLE registered_models (
    model_pk               INTEGER PRIMARY KEY,
    name                   TEXT    NOT NULL UNIQUE,
    creation_timestamp     INTEGER NOT NULL,
    last_updated_timestamp INTEGER NOT NULL,
    description            TEXT,
    last_version           INTEGER NOT NULL DEFAULT 0
);

CREATE TABLE registered_model_tags (
    model_pk INTEGER NOT NULL REFERENCES registered_models (model_pk) ON DELETE CASCADE,
    key      TEXT    NOT NULL,
    value    TEXT    NOT NULL,
    PRIMARY KEY (model_pk, key)
) WITHOUT ROWID;

CREATE TABLE model_versions (
    mv_pk                  INTEGER PRIMARY KEY,
    model_pk               INTEGER NOT NULL REFERENCES registered_models (model_pk) ON DELETE CASCADE,
    version                INTEGER NOT NULL,
    creation_timestamp     INTEGER NOT NULL,
    last_updated_timestamp INTEGER NOT NULL,
    description            TEXT,
    user_id                TEXT,
    current_stage          TEXT    NOT NULL DEFAULT 'None',
    source                 TEXT    NOT NULL,
    run_id                 TEXT,
    run_link               TEXT,
    status                 TEXT    NOT NULL DEFAULT 'READY',
    status_message         TEXT,
    storage_location       TEXT,
    model_id               TEXT,
    UNIQUE (model_pk, version)
);
CREATE INDEX model_versions_by_stage ON model_versions (model_pk, current_stage, version);
CREATE INDEX model_versions_by_run ON model_versions (run_id);

CREATE TABLE model_version_tags (
    mv_pk INTEGER NOT NULL REFERENCES model_versions (mv_pk) ON DELETE CASCADE,
    key   TEXT    NOT NULL,
    value TEXT    NOT NULL,
    PRIMARY KEY (mv_pk, key)
) WITHOUT ROWID;

-- An alias points at a version row, so deleting the version deletes its aliases.
CREATE TABLE registered_model_aliases (
    model_pk INTEGER NOT NULL REFERENCES registered_models (model_pk) ON DELETE CASCADE,
    alias    TEXT    NOT NULL,
    mv_pk    INTEGER NOT NULL REFERENCES model_versions (mv_pk) ON DELETE CASCADE,
    PRIMARY KEY (model_pk, alias)
) WITHOUT ROWID;
CREATE INDEX registered_model_aliases_by_version ON registered_model_aliases (mv_pk);

-- Prompts (tagged mlflow.prompt.is_prompt = 'true'), which searches exclude: found without
-- scanning the tag tables.
CREATE INDEX registered_model_tags_prompts ON registered_model_tags (model_pk)
    WHERE key = 'mlflow.prompt.is_prompt' AND value = 'true';
CREATE INDEX model_version_tags_prompts ON model_version_tags (mv_pk)
    WHERE key = 'mlflow.prompt.is_prompt' AND value = 'true';
