-- Accounts, permissions, personal access tokens and the audit log. Grants reference the
-- experiment or registered model they are on, so renaming a model keeps its grants and
-- deleting (purging) one drops them; a new model that reuses a name starts with none.

CREATE TABLE users (
    user_id       INTEGER PRIMARY KEY,
    username      TEXT    NOT NULL UNIQUE,
    password_hash TEXT    NOT NULL,
    is_admin      INTEGER NOT NULL DEFAULT 0
);

CREATE TABLE experiment_permissions (
    experiment_id INTEGER NOT NULL REFERENCES experiments (experiment_id) ON DELETE CASCADE,
    user_id       INTEGER NOT NULL REFERENCES users (user_id) ON DELETE CASCADE,
    permission    TEXT    NOT NULL,
    PRIMARY KEY (experiment_id, user_id)
) WITHOUT ROWID;
CREATE INDEX experiment_permissions_user ON experiment_permissions (user_id);

CREATE TABLE registered_model_permissions (
    model_pk   INTEGER NOT NULL REFERENCES registered_models (model_pk) ON DELETE CASCADE,
    user_id    INTEGER NOT NULL REFERENCES users (user_id) ON DELETE CASCADE,
    permission TEXT    NOT NULL,
    PRIMARY KEY (model_pk, user_id)
) WITHOUT ROWID;
CREATE INDEX registered_model_permissions_user ON registered_model_permissions (user_id);

-- Only the SHA-256 of a token's secret is kept; the secret is shown once, at creation.
CREATE TABLE access_tokens (
    token_id      INTEGER PRIMARY KEY,
    user_id       INTEGER NOT NULL REFERENCES users (user_id) ON DELETE CASCADE,
    name          TEXT    NOT NULL,
    secret_sha256 TEXT    NOT NULL UNIQUE,
    created_ms    INTEGER NOT NULL,
    expires_ms    INTEGER,
    revoked_ms    INTEGER
);
CREATE INDEX access_tokens_user ON access_tokens (user_id);

-- The audit log. A change's event is inserted in the change's own transaction, without a
-- chain position; the sealer then gives committed events the next positions in
-- `event_id` order and hashes each with the previous event's hash:
-- hash = SHA-256(seq, fields, prev_hash). `cairn audit verify` recomputes the chain. No
-- foreign keys: events outlive the users and resources they name.
CREATE TABLE audit_events (
    event_id    INTEGER PRIMARY KEY,
    seq         INTEGER UNIQUE,
    time_ms     INTEGER NOT NULL,
    actor       TEXT    NOT NULL,
    auth_method TEXT    NOT NULL,
    source_ip   TEXT    NOT NULL,
    action      TEXT    NOT NULL,
    resource    TEXT    NOT NULL,
    outcome     TEXT    NOT NULL,
    request_id  TEXT    NOT NULL,
    prev_hash   TEXT,
    hash        TEXT
);
CREATE INDEX audit_events_unsealed ON audit_events (event_id) WHERE seq IS NULL;
