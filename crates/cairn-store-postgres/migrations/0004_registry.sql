-- Model registry: the same tables and keys as the SQLite store. Registered models carry
-- an integer key (model_pk) that versions, tags and aliases use, so a rename touches one
-- row. `last_version` is the per-model counter create_model_version bumps with an
-- UPDATE ... RETURNING: the row lock makes concurrent creations (from any replica) take
-- numbers one after another, and numbers are never reused after a delete.
-- (0003 is reserved for the artifact tables.)

CREATE TABLE registered_models (
    model_pk               BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name                   TEXT   COLLATE "C" NOT NULL UNIQUE,
    creation_timestamp     BIGINT NOT NULL,
    last_updated_timestamp BIGINT NOT NULL,
    description            TEXT   COLLATE "C",
    last_version           BIGINT NOT NULL DEFAULT 0
);

CREATE TABLE registered_model_tags (
    model_pk BIGINT NOT NULL REFERENCES registered_models (model_pk) ON DELETE CASCADE,
    key      TEXT   COLLATE "C" NOT NULL,
    value    TEXT   COLLATE "C" NOT NULL,
    PRIMARY KEY (model_pk, key)
);

CREATE TABLE model_versions (
    mv_pk                  BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    model_pk               BIGINT NOT NULL REFERENCES registered_models (model_pk) ON DELETE CASCADE,
    version                BIGINT NOT NULL,
    creation_timestamp     BIGINT NOT NULL,
    last_updated_timestamp BIGINT NOT NULL,
    description            TEXT   COLLATE "C",
    user_id                TEXT   COLLATE "C",
    current_stage          TEXT   COLLATE "C" NOT NULL DEFAULT 'None',
    source                 TEXT   COLLATE "C" NOT NULL,
    run_id                 TEXT   COLLATE "C",
    run_link               TEXT   COLLATE "C",
    status                 TEXT   COLLATE "C" NOT NULL DEFAULT 'READY',
    status_message         TEXT   COLLATE "C",
    storage_location       TEXT   COLLATE "C",
    model_id               TEXT   COLLATE "C",
    UNIQUE (model_pk, version)
);
CREATE INDEX model_versions_by_stage ON model_versions (model_pk, current_stage, version);
CREATE INDEX model_versions_by_run ON model_versions (run_id);

CREATE TABLE model_version_tags (
    mv_pk BIGINT NOT NULL REFERENCES model_versions (mv_pk) ON DELETE CASCADE,
    key   TEXT   COLLATE "C" NOT NULL,
    value TEXT   COLLATE "C" NOT NULL,
    PRIMARY KEY (mv_pk, key)
);

-- An alias points at a version row, so deleting the version deletes its aliases.
CREATE TABLE registered_model_aliases (
    model_pk BIGINT NOT NULL REFERENCES registered_models (model_pk) ON DELETE CASCADE,
    alias    TEXT   COLLATE "C" NOT NULL,
    mv_pk    BIGINT NOT NULL REFERENCES model_versions (mv_pk) ON DELETE CASCADE,
    PRIMARY KEY (model_pk, alias)
);
CREATE INDEX registered_model_aliases_by_version ON registered_model_aliases (mv_pk);

-- Prompts (tagged mlflow.prompt.is_prompt = 'true'), which searches exclude: found without
-- scanning the tag tables.
CREATE INDEX registered_model_tags_prompts ON registered_model_tags (model_pk)
    WHERE key = 'mlflow.prompt.is_prompt' AND value = 'true';
CREATE INDEX model_version_tags_prompts ON model_version_tags (mv_pk)
    WHERE key = 'mlflow.prompt.is_prompt' AND value = 'true';
