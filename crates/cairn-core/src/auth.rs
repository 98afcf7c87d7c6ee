//! Accounts, permissions and access tokens: the entities behind authentication and
//! authorization, and the [`AuthStore`] trait every database backend implements.
//!
//! Permissions follow MLflow's basic-auth plugin: a user holds at most one permission per
//! experiment and per registered model; runs, logged models and artifacts inherit their
//! experiment's, model versions their registered model's. A user without a grant gets the
//! server's default permission; administrators may do anything.

use async_trait::async_trait;

use crate::audit::{AuditEvent, StoredAuditEvent};
use crate::error::{CoreError, CoreResult};

/// A permission level, weakest first (the derived order is the capability order).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Permission {
    /// Nothing, not even reading.
    NoPermissions,
    /// Read the resource and everything in it.
    Read,
    /// Read, and use it (e.g. serve a model).
    Use,
    /// Read, use and change it (log to runs, add versions).
    Edit,
    /// Everything, including deleting it and granting permissions on it.
    Manage,
}

/// What an operation needs, in MLflow's terms (`can_read`, `can_use`, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Need {
    /// `can_read`.
    Read,
    /// `can_use`.
    Use,
    /// `can_update`.
    Update,
    /// `can_delete`.
    Delete,
    /// `can_manage`.
    Manage,
}

impl Permission {
    /// Every level, in the order MLflow lists them.
    pub const ALL: [Permission; 5] = [
        Permission::Read,
        Permission::Use,
        Permission::Edit,
        Permission::Manage,
        Permission::NoPermissions,
    ];

    /// The wire name (`READ`, ..., `NO_PERMISSIONS`).
    pub fn name(self) -> &'static str {
        match self {
            Permission::NoPermissions => "NO_PERMISSIONS",
            Permission::Read => "READ",
            Permission::Use => "USE",
            Permission::Edit => "EDIT",
            Permission::Manage => "MANAGE",
        }
    }

    /// Parses a wire name, with MLflow's message for anything else.
    pub fn parse(s: &str) -> CoreResult<Permission> {
        Permission::ALL
            .into_iter()
            .find(|p| p.name() == s)
            .ok_or_else(|| {
                CoreError::invalid(format!(
                    "Invalid permission '{s}'. Valid permissions are: ('READ', 'USE', 'EDIT', \
                     'MANAGE', 'NO_PERMISSIONS')"
                ))
            })
    }

    /// Whether this level grants `need`.
    pub fn allows(self, need: Need) -> bool {
        let least = match need {
            Need::Read => Permission::Read,
            Need::Use => Permission::Use,
            Need::Update => Permission::Edit,
            Need::Delete | Need::Manage => Permission::Manage,
        };
        self >= least
    }
}

/// A user account (never carries the password hash).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// Database key.
    pub id: i64,
    /// Unique name.
    pub username: String,
    /// Administrators pass every permission check.
    pub is_admin: bool,
}

/// A user with the stored password hash, for verification only.
#[derive(Clone)]
pub struct Credential {
    /// The account.
    pub user: User,
    /// argon2id PHC string.
    pub password_hash: String,
}

/// The two kinds of resource permissions are granted on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GrantKind {
    /// Keyed by experiment id.
    Experiment,
    /// Keyed by registered-model name.
    RegisteredModel,
}

impl GrantKind {
    /// MLflow's `resource_type` name.
    pub fn name(self) -> &'static str {
        match self {
            GrantKind::Experiment => "experiment",
            GrantKind::RegisteredModel => "registered_model",
        }
    }

    /// Parses MLflow's `resource_type`.
    pub fn parse(s: &str) -> CoreResult<GrantKind> {
        match s {
            "experiment" => Ok(GrantKind::Experiment),
            "registered_model" => Ok(GrantKind::RegisteredModel),
            other => Err(CoreError::invalid(format!(
                "Unsupported resource_type '{other}'. Supported: 'experiment', 'registered_model'"
            ))),
        }
    }
}

/// One user's permission on one resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// Experiment id (decimal) or registered-model name.
    pub resource_id: String,
    /// The user's id.
    pub user_id: i64,
    /// The level.
    pub permission: Permission,
}

/// How [`AuthStore::put_grant`] treats an existing grant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GrantMode {
    /// Fail with `RESOURCE_ALREADY_EXISTS` if the user already has one.
    Create,
    /// Fail with `RESOURCE_DOES_NOT_EXIST` if the user has none.
    Update,
    /// Create or replace.
    Upsert,
}

/// The resource a request acts on, as the permission check finds it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Target {
    /// An experiment by id.
    Experiment(i64),
    /// An experiment by name.
    ExperimentName(String),
    /// A run (its experiment's permission applies).
    Run(String),
    /// A logged model (its experiment's permission applies).
    LoggedModel(String),
    /// A registered model by name (its versions share its permission).
    RegisteredModel(String),
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Experiment(id) => write!(f, "experiment:{id}"),
            Target::ExperimentName(n) => write!(f, "experiment-name:{n}"),
            Target::Run(id) => write!(f, "run:{id}"),
            Target::LoggedModel(id) => write!(f, "logged-model:{id}"),
            Target::RegisteredModel(n) => write!(f, "registered-model:{n}"),
        }
    }
}

/// What one lookup tells the permission check about a user and a target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Access {
    /// The user's current admin flag (read fresh, not from a credential cache).
    pub is_admin: bool,
    /// Whether the target exists (a missing one is left to the handler's 404).
    pub exists: bool,
    /// The user's explicit grant on it (or on the experiment/model it belongs to).
    pub grant: Option<Permission>,
}

/// A personal access token's record (the secret itself is never stored).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessToken {
    /// Database key, shown to the owner to revoke it.
    pub id: i64,
    /// Owner.
    pub user_id: i64,
    /// The owner's label.
    pub name: String,
    /// Creation time, ms.
    pub created_ms: i64,
    /// Expiry, ms; `None` never expires.
    pub expires_ms: Option<i64>,
    /// Revocation time, ms.
    pub revoked_ms: Option<i64>,
}

/// The columns of a user row: id, username, is_admin.
pub type UserRow = (i64, String, bool);

impl From<UserRow> for User {
    fn from((id, username, is_admin): UserRow) -> Self {
        User {
            id,
            username,
            is_admin,
        }
    }
}

/// The columns of a token row: id, user id, name, created, expires, revoked.
pub type TokenRow = (i64, i64, String, i64, Option<i64>, Option<i64>);

impl From<TokenRow> for AccessToken {
    fn from((id, user_id, name, created_ms, expires_ms, revoked_ms): TokenRow) -> Self {
        AccessToken {
            id,
            user_id,
            name,
            created_ms,
            expires_ms,
            revoked_ms,
        }
    }
}

/// A stored permission name back to the level; anything else is a corrupt row.
pub fn stored_permission(s: &str) -> CoreResult<Permission> {
    Permission::parse(s).map_err(|_| CoreError::Internal(format!("corrupt permission {s:?}")))
}

/// MLflow's message for an unknown user.
pub fn user_not_found(username: &str) -> CoreError {
    CoreError::not_found(format!("User with username={username} not found"))
}

/// MLflow's message for a grant on a resource that does not exist.
pub fn resource_not_found(kind: GrantKind, resource_id: &str) -> CoreError {
    match kind {
        GrantKind::Experiment => {
            CoreError::not_found(format!("No Experiment with id={resource_id} exists"))
        }
        GrantKind::RegisteredModel => CoreError::not_found(format!(
            "Registered Model with name={resource_id} not found"
        )),
    }
}

/// MLflow's message for a grant a user does not hold.
pub fn grant_not_found(kind: GrantKind, resource_id: &str, username: &str) -> CoreError {
    let what = match kind {
        GrantKind::Experiment => "Experiment permission with experiment_id",
        GrantKind::RegisteredModel => "Registered model permission with name",
    };
    CoreError::not_found(format!(
        "{what}={resource_id} and username={username} not found"
    ))
}

/// Accounts, grants, tokens and the audit log, in the same database as the tracking data
/// (so a grant and the resource it names change in one transaction, and so audit events
/// share the transaction of the change they record).
#[async_trait]
pub trait AuthStore: Send + Sync + 'static {
    /// Creates a user; `RESOURCE_ALREADY_EXISTS` if the name is taken.
    async fn create_user(
        &self,
        username: &str,
        password_hash: &str,
        is_admin: bool,
    ) -> CoreResult<User>;
    /// The user and password hash, if the name exists.
    async fn credential(&self, username: &str) -> CoreResult<Option<Credential>>;
    /// A user by name; `RESOURCE_DOES_NOT_EXIST` if there is none.
    async fn get_user(&self, username: &str) -> CoreResult<User>;
    /// Every user, by name.
    async fn list_users(&self) -> CoreResult<Vec<User>>;
    /// Replaces a user's password hash.
    async fn set_password(&self, username: &str, password_hash: &str) -> CoreResult<()>;
    /// Sets or clears a user's admin flag.
    async fn set_admin(&self, username: &str, is_admin: bool) -> CoreResult<()>;
    /// Deletes a user with their grants and tokens.
    async fn delete_user(&self, username: &str) -> CoreResult<()>;

    /// Creates, updates or replaces a grant. `RESOURCE_DOES_NOT_EXIST` if the user or the
    /// resource does not exist.
    async fn put_grant(
        &self,
        kind: GrantKind,
        resource_id: &str,
        username: &str,
        permission: Permission,
        mode: GrantMode,
    ) -> CoreResult<Grant>;
    /// A user's grant on a resource; `RESOURCE_DOES_NOT_EXIST` if there is none.
    async fn get_grant(
        &self,
        kind: GrantKind,
        resource_id: &str,
        username: &str,
    ) -> CoreResult<Grant>;
    /// Removes a grant; `RESOURCE_DOES_NOT_EXIST` if there is none.
    async fn delete_grant(
        &self,
        kind: GrantKind,
        resource_id: &str,
        username: &str,
    ) -> CoreResult<()>;
    /// Every grant a user holds, experiments first.
    async fn list_grants(&self, username: &str) -> CoreResult<Vec<(GrantKind, Grant)>>;
    /// The user's admin flag and grant for a target, in one query; `None` if the user
    /// does not exist (any more).
    async fn access(&self, username: &str, target: &Target) -> CoreResult<Option<Access>>;

    /// Stores a new token for `username` (only the SHA-256 of its secret).
    async fn create_token(
        &self,
        username: &str,
        name: &str,
        secret_sha256: &str,
        created_ms: i64,
        expires_ms: Option<i64>,
    ) -> CoreResult<AccessToken>;
    /// The owner of a live (unrevoked, unexpired at `now_ms`) token.
    async fn token_owner(&self, secret_sha256: &str, now_ms: i64) -> CoreResult<Option<User>>;
    /// A user's tokens, newest first.
    async fn list_tokens(&self, username: &str) -> CoreResult<Vec<AccessToken>>;
    /// Revokes one of `username`'s tokens; `RESOURCE_DOES_NOT_EXIST` if it has no such one.
    async fn revoke_token(&self, username: &str, id: i64, now_ms: i64) -> CoreResult<()>;

    /// Appends an event that records no change (a denial, a failed request) as the next
    /// link of the chain, in its own transaction.
    async fn append_audit(&self, event: &AuditEvent) -> CoreResult<()>;
    /// Events with `seq > after`, in order, at most `limit`.
    async fn audit_events(&self, after: i64, limit: i64) -> CoreResult<Vec<StoredAuditEvent>>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_grant_what_mlflow_grants() {
        let table = [
            (
                Permission::NoPermissions,
                [false, false, false, false, false],
            ),
            (Permission::Read, [true, false, false, false, false]),
            (Permission::Use, [true, true, false, false, false]),
            (Permission::Edit, [true, true, true, false, false]),
            (Permission::Manage, [true, true, true, true, true]),
        ];
        let needs = [
            Need::Read,
            Need::Use,
            Need::Update,
            Need::Delete,
            Need::Manage,
        ];
        for (level, expected) in table {
            let got = needs.map(|n| level.allows(n));
            assert_eq!(got, expected, "{level:?}");
            assert_eq!(Permission::parse(level.name()).ok(), Some(level));
        }
        assert!(Permission::parse("read").is_err());
        assert!(GrantKind::parse("prompt").is_err());
    }
}
