-- Accounts, permissions, personal access tokens and the audit log: the same tables and
-- keys as the SQLite store. Grants reference the experiment or registered model they are
-- on, so renaming a model keeps its grants and deleting (purging) one drops them; a new
-- model that reuses a name starts with none.

CREATE TABLE users (
    user_id       BIGINT  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    username      TEXT    COLLATE "C" NOT NULL UNIQUE,
    password_hash TEXT    COLLATE "C" NOT NULL,
    is_admin      BOOLEAN NOT NULL DEFAULT false
);

CREATE TABLE experiment_permissions (
    experiment_id BIGINT NOT NULL REFERENCES experiments (experiment_id) ON DELETE CASCADE,
    user_id       BIGINT NOT NULL REFERENCES users (user_id) ON DELETE CASCADE,
    permission    TEXT   COLLATE "C" NOT NULL,
    PRIMARY KEY (experiment_id, user_id)
);
CREATE INDEX experiment_permissions_user ON experiment_permissions (user_id);

CREATE TABLE registered_model_permissions (
    model_pk   BIGINT NOT NULL REFERENCES registered_models (model_pk) ON DELETE CASCADE,
    user_id    BIGINT NOT NULL REFERENCES users (user_id) ON DELETE CASCADE,
    permission TEXT   COLLATE "C" NOT NULL,
    PRIMARY KEY (model_pk, user_id)
);
CREATE INDEX registered_model_permissions_user ON registered_model_permissions (user_id);

-- Only the SHA-256 of a token's secret is kept; the secret is shown once, at creation.
CREATE TABLE access_tokens (
    token_id      BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id       BIGINT NOT NULL REFERENCES users (user_id) ON DELETE CASCADE,
    name          TEXT   COLLATE "C" NOT NULL,
    secret_sha256 TEXT   COLLATE "C" NOT NULL UNIQUE,
    created_ms    BIGINT NOT NULL,
    expires_ms    BIGINT,
    revoked_ms    BIGINT
);
CREATE INDEX access_tokens_user ON access_tokens (user_id);

-- The audit log. A change's event is inserted in the change's own transaction, without a
-- chain position; a sealer (every replica runs one, serialised by an advisory lock)
-- gives committed events the next positions in `event_id` order and hashes each with the
-- previous event's hash: hash = SHA-256(seq, fields, prev_hash). Appending takes no
-- global lock, so replicas' writes never wait for each other's commits.
CREATE TABLE audit_events (
    event_id    BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    seq         BIGINT UNIQUE,
    time_ms     BIGINT NOT NULL,
    actor       TEXT   COLLATE "C" NOT NULL,
    auth_method TEXT   COLLATE "C" NOT NULL,
    source_ip   TEXT   COLLATE "C" NOT NULL,
    action      TEXT   COLLATE "C" NOT NULL,
    resource    TEXT   COLLATE "C" NOT NULL,
    outcome     TEXT   COLLATE "C" NOT NULL,
    request_id  TEXT   COLLATE "C" NOT NULL,
    prev_hash   TEXT   COLLATE "C",
    hash        TEXT   COLLATE "C"
);
CREATE INDEX audit_events_unsealed ON audit_events (event_id) WHERE seq IS NULL;
