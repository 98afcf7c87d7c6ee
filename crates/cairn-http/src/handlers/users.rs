//! Accounts, grants, personal access tokens and the audit log: MLflow's basic-auth API
//! (`users/*`, `experiments/permissions/*`, `registered-models/permissions/*`, and MLflow
//! 3's `users/permissions/*`) plus Cairn's token and audit endpoints. Who may call what
//! is decided by the permission layer before these run (`permissions::RULES`).

use axum::extract::State;
use axum::Extension;
use axum::Json;
use cairn_api::de::{opt_bool, opt_i64, opt_id};
use cairn_core::audit::StoredAuditEvent;
use cairn_core::auth::{AccessToken, Grant, GrantKind, GrantMode, Need, Permission, Target, User};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::auth::{
    hash_password, new_token_secret, password_matches, token_digest, Principal, MIN_PASSWORD_LEN,
};
use crate::error::{required_str, ApiError, ApiResult};
use crate::extract::Mlflow;
use crate::AppState;

/// The caller, or `None` when authentication is off.
type Caller = Option<Extension<Principal>>;

fn user_json(u: &User) -> Value {
    json!({ "id": u.id, "username": u.username, "is_admin": u.is_admin })
}

fn caller_name(caller: &Caller) -> Option<&str> {
    caller.as_ref().map(|Extension(p)| p.username.as_str())
}

/// The account a request names, defaulting to the caller's own.
fn subject(named: Option<String>, caller: &Caller) -> ApiResult<String> {
    named
        .filter(|s| !s.is_empty())
        .or_else(|| caller_name(caller).map(str::to_string))
        .ok_or_else(|| ApiError::missing("username"))
}

fn check_password(password: &str) -> ApiResult<()> {
    if password.chars().count() < MIN_PASSWORD_LEN {
        return Err(ApiError::invalid(format!(
            "The password must be at least {MIN_PASSWORD_LEN} characters long"
        )));
    }
    Ok(())
}

async fn hash(password: String) -> ApiResult<String> {
    tokio::task::spawn_blocking(move || hash_password(&password))
        .await
        .map_err(|e| ApiError::new(cairn_api::ErrorCode::InternalError, e.to_string()))?
        .map_err(|e| ApiError::new(cairn_api::ErrorCode::InternalError, e))
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct UserRequest {
    username: Option<String>,
    password: Option<String>,
    current_password: Option<String>,
    #[serde(deserialize_with = "opt_bool")]
    is_admin: Option<bool>,
}

/// `POST users/create`.
pub(crate) async fn create_user(
    State(s): State<AppState>,
    Mlflow(req): Mlflow<UserRequest>,
) -> ApiResult<Json<Value>> {
    let username = required_str(req.username, "username")?;
    let password = required_str(req.password, "password")?;
    if username.contains(':') {
        return Err(ApiError::invalid("The username may not contain ':'"));
    }
    check_password(&password)?;
    let phc = hash(password).await?;
    let user = s.access().store.create_user(&username, &phc, false).await?;
    s.access_changed(&username);
    Ok(Json(json!({ "user": user_json(&user) })))
}

/// `GET users/get`.
pub(crate) async fn get_user(
    State(s): State<AppState>,
    caller: Caller,
    Mlflow(req): Mlflow<UserRequest>,
) -> ApiResult<Json<Value>> {
    let username = subject(req.username, &caller)?;
    let user = s.access().store.get_user(&username).await?;
    Ok(Json(json!({ "user": user_json(&user) })))
}

/// `GET users/current`.
pub(crate) async fn current_user(
    State(s): State<AppState>,
    caller: Caller,
) -> ApiResult<Json<Value>> {
    let username = subject(None, &caller)?;
    let mut user = s.access().store.get_user(&username).await?;
    // An administrator by the identity provider's group is one for this request too.
    user.is_admin |= caller.as_ref().is_some_and(|Extension(p)| p.admin_by_group);
    Ok(Json(json!({ "user": user_json(&user) })))
}

/// `GET users/list`.
pub(crate) async fn list_users(State(s): State<AppState>) -> ApiResult<Json<Value>> {
    let users = s.access().store.list_users().await?;
    let users: Vec<Value> = users.iter().map(user_json).collect();
    Ok(Json(json!({ "users": users })))
}

/// `PATCH users/update-password`. Changing one's own password needs the current one
/// (so a stolen session or token cannot take the account over); administrators may
/// reset anyone else's.
pub(crate) async fn update_password(
    State(s): State<AppState>,
    caller: Caller,
    Mlflow(req): Mlflow<UserRequest>,
) -> ApiResult<Json<Value>> {
    let username = subject(req.username, &caller)?;
    let password = required_str(req.password, "password")?;
    check_password(&password)?;
    let store = &s.access().store;
    if caller_name(&caller) == Some(username.as_str()) {
        let current = required_str(req.current_password, "current_password")?;
        let credential = store
            .credential(&username)
            .await?
            .ok_or_else(|| ApiError::invalid("The account no longer exists"))?;
        let phc = credential.password_hash;
        let ok = tokio::task::spawn_blocking(move || password_matches(&current, &phc))
            .await
            .unwrap_or(false);
        if !ok {
            return Err(ApiError::invalid("current_password is incorrect"));
        }
    }
    let phc = hash(password).await?;
    store.set_password(&username, &phc).await?;
    s.access_changed(&username);
    Ok(Json(json!({})))
}

/// `PATCH users/update-admin`.
pub(crate) async fn update_admin(
    State(s): State<AppState>,
    Mlflow(req): Mlflow<UserRequest>,
) -> ApiResult<Json<Value>> {
    let username = required_str(req.username, "username")?;
    let is_admin = req.is_admin.ok_or_else(|| ApiError::missing("is_admin"))?;
    s.access().store.set_admin(&username, is_admin).await?;
    s.access_changed(&username);
    Ok(Json(json!({})))
}

/// `DELETE users/delete`.
pub(crate) async fn delete_user(
    State(s): State<AppState>,
    caller: Caller,
    Mlflow(req): Mlflow<UserRequest>,
) -> ApiResult<Json<Value>> {
    let username = required_str(req.username, "username")?;
    if caller_name(&caller) == Some(username.as_str()) {
        return Err(ApiError::invalid(
            "An administrator cannot delete their own account",
        ));
    }
    s.access().store.delete_user(&username).await?;
    s.access_changed(&username);
    Ok(Json(json!({})))
}

fn grants_json(is_admin: bool, grants: &[(GrantKind, Grant)]) -> Value {
    let permissions: Vec<Value> = grants
        .iter()
        .map(|(kind, g)| {
            json!({
                "resource_type": kind.name(),
                "resource_id": g.resource_id,
                "permission": g.permission.name(),
            })
        })
        .collect();
    json!({ "is_admin": is_admin, "permissions": permissions })
}

/// `GET users/current/permissions` and `GET users/permissions/list`.
pub(crate) async fn list_permissions(
    State(s): State<AppState>,
    caller: Caller,
    Mlflow(req): Mlflow<UserRequest>,
) -> ApiResult<Json<Value>> {
    let username = subject(req.username, &caller)?;
    let store = &s.access().store;
    let user = store.get_user(&username).await?;
    let grants = store.list_grants(&username).await?;
    Ok(Json(grants_json(user.is_admin, &grants)))
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct GrantRequest {
    #[serde(deserialize_with = "opt_id")]
    experiment_id: Option<String>,
    name: Option<String>,
    username: Option<String>,
    permission: Option<String>,
    resource_type: Option<String>,
    #[serde(deserialize_with = "opt_id")]
    resource_id: Option<String>,
}

impl GrantRequest {
    fn resource(&self, kind: GrantKind) -> ApiResult<String> {
        let (value, field) = match kind {
            GrantKind::Experiment => (&self.experiment_id, "experiment_id"),
            GrantKind::RegisteredModel => (&self.name, "name"),
        };
        value
            .clone()
            .filter(|s| !s.is_empty())
            .ok_or_else(|| ApiError::missing(field))
    }

    fn typed(&self) -> ApiResult<(GrantKind, String)> {
        let kind = GrantKind::parse(
            self.resource_type
                .as_deref()
                .ok_or_else(|| ApiError::missing("resource_type"))?,
        )?;
        let id = required_str(self.resource_id.clone(), "resource_id")?;
        Ok((kind, id))
    }

    fn username(&self) -> ApiResult<String> {
        required_str(self.username.clone(), "username")
    }

    fn permission(&self) -> ApiResult<Permission> {
        Ok(Permission::parse(
            self.permission
                .as_deref()
                .ok_or_else(|| ApiError::missing("permission"))?,
        )?)
    }
}

fn grant_json(kind: GrantKind, g: &Grant) -> Value {
    match kind {
        GrantKind::Experiment => json!({ "experiment_permission": {
            "experiment_id": g.resource_id,
            "user_id": g.user_id,
            "permission": g.permission.name(),
        }}),
        GrantKind::RegisteredModel => json!({ "registered_model_permission": {
            "name": g.resource_id,
            "user_id": g.user_id,
            "permission": g.permission.name(),
        }}),
    }
}

async fn put(
    s: &AppState,
    kind: GrantKind,
    req: GrantRequest,
    mode: GrantMode,
) -> ApiResult<Grant> {
    let resource = req.resource(kind)?;
    let username = req.username()?;
    let permission = req.permission()?;
    Ok(s.access()
        .store
        .put_grant(kind, &resource, &username, permission, mode)
        .await?)
}

/// `POST experiments/permissions/create`.
pub(crate) async fn create_experiment_grant(
    State(s): State<AppState>,
    Mlflow(req): Mlflow<GrantRequest>,
) -> ApiResult<Json<Value>> {
    let g = put(&s, GrantKind::Experiment, req, GrantMode::Create).await?;
    Ok(Json(grant_json(GrantKind::Experiment, &g)))
}

/// `POST registered-models/permissions/create`.
pub(crate) async fn create_model_grant(
    State(s): State<AppState>,
    Mlflow(req): Mlflow<GrantRequest>,
) -> ApiResult<Json<Value>> {
    let g = put(&s, GrantKind::RegisteredModel, req, GrantMode::Create).await?;
    Ok(Json(grant_json(GrantKind::RegisteredModel, &g)))
}

/// `PATCH experiments/permissions/update`.
pub(crate) async fn update_experiment_grant(
    State(s): State<AppState>,
    Mlflow(req): Mlflow<GrantRequest>,
) -> ApiResult<Json<Value>> {
    put(&s, GrantKind::Experiment, req, GrantMode::Update).await?;
    Ok(Json(json!({})))
}

/// `PATCH registered-models/permissions/update`.
pub(crate) async fn update_model_grant(
    State(s): State<AppState>,
    Mlflow(req): Mlflow<GrantRequest>,
) -> ApiResult<Json<Value>> {
    put(&s, GrantKind::RegisteredModel, req, GrantMode::Update).await?;
    Ok(Json(json!({})))
}

async fn get(s: &AppState, kind: GrantKind, req: GrantRequest) -> ApiResult<Json<Value>> {
    let g = s
        .access()
        .store
        .get_grant(kind, &req.resource(kind)?, &req.username()?)
        .await?;
    Ok(Json(grant_json(kind, &g)))
}

/// `GET experiments/permissions/get`.
pub(crate) async fn get_experiment_grant(
    State(s): State<AppState>,
    Mlflow(req): Mlflow<GrantRequest>,
) -> ApiResult<Json<Value>> {
    get(&s, GrantKind::Experiment, req).await
}

/// `GET registered-models/permissions/get`.
pub(crate) async fn get_model_grant(
    State(s): State<AppState>,
    Mlflow(req): Mlflow<GrantRequest>,
) -> ApiResult<Json<Value>> {
    get(&s, GrantKind::RegisteredModel, req).await
}

async fn delete(s: &AppState, kind: GrantKind, req: GrantRequest) -> ApiResult<Json<Value>> {
    let username = req.username()?;
    s.access()
        .store
        .delete_grant(kind, &req.resource(kind)?, &username)
        .await?;
    s.access_changed(&username);
    Ok(Json(json!({})))
}

/// `DELETE experiments/permissions/delete`.
pub(crate) async fn delete_experiment_grant(
    State(s): State<AppState>,
    Mlflow(req): Mlflow<GrantRequest>,
) -> ApiResult<Json<Value>> {
    delete(&s, GrantKind::Experiment, req).await
}

/// `DELETE registered-models/permissions/delete`.
pub(crate) async fn delete_model_grant(
    State(s): State<AppState>,
    Mlflow(req): Mlflow<GrantRequest>,
) -> ApiResult<Json<Value>> {
    delete(&s, GrantKind::RegisteredModel, req).await
}

/// `POST users/permissions/grant` (MLflow 3): create or replace.
pub(crate) async fn grant(
    State(s): State<AppState>,
    Mlflow(req): Mlflow<GrantRequest>,
) -> ApiResult<Json<Value>> {
    let (kind, id) = req.typed()?;
    s.access()
        .store
        .put_grant(
            kind,
            &id,
            &req.username()?,
            req.permission()?,
            GrantMode::Upsert,
        )
        .await?;
    Ok(Json(json!({})))
}

/// `POST users/permissions/revoke` (MLflow 3).
pub(crate) async fn revoke(
    State(s): State<AppState>,
    Mlflow(req): Mlflow<GrantRequest>,
) -> ApiResult<Json<Value>> {
    let (kind, id) = req.typed()?;
    let username = req.username()?;
    s.access().store.delete_grant(kind, &id, &username).await?;
    s.access_changed(&username);
    Ok(Json(json!({})))
}

/// `GET users/permissions/get` (MLflow 3): the user's effective permission (their grant,
/// else the default; MANAGE for administrators; nothing on a missing resource) and
/// whether it allows use.
pub(crate) async fn effective(
    State(s): State<AppState>,
    Mlflow(req): Mlflow<GrantRequest>,
) -> ApiResult<Json<Value>> {
    let (kind, id) = req.typed()?;
    let username = req.username()?;
    let target = match kind {
        GrantKind::Experiment => Target::Experiment(
            id.parse()
                .map_err(|_| ApiError::invalid(format!("Invalid experiment id '{id}'")))?,
        ),
        GrantKind::RegisteredModel => Target::RegisteredModel(id),
    };
    let access = s
        .access()
        .store
        .access(&username, &target)
        .await?
        .ok_or_else(|| {
            ApiError::from(cairn_core::CoreError::not_found(format!(
                "User with username={username} not found"
            )))
        })?;
    let level = if !access.exists {
        Permission::NoPermissions
    } else if access.is_admin {
        Permission::Manage
    } else {
        access.grant.unwrap_or(s.access().default_permission)
    };
    Ok(Json(json!({
        "allowed": level.allows(Need::Use),
        "permission": level.name(),
    })))
}

/// Longest token lifetime, and the lifetime of a token created without one.
const MAX_TOKEN_DAYS: i64 = 365;
const DEFAULT_TOKEN_DAYS: i64 = 90;

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct TokenRequest {
    username: Option<String>,
    name: Option<String>,
    #[serde(deserialize_with = "opt_i64")]
    expires_in_days: Option<i64>,
    #[serde(deserialize_with = "opt_i64")]
    id: Option<i64>,
}

fn token_json(t: &AccessToken) -> Value {
    json!({
        "id": t.id,
        "name": t.name,
        "created_ms": t.created_ms,
        "expires_ms": t.expires_ms,
        "revoked_ms": t.revoked_ms,
    })
}

/// `POST users/access-tokens/create`: the secret is in this response and nowhere else.
pub(crate) async fn create_token(
    State(s): State<AppState>,
    caller: Caller,
    Mlflow(req): Mlflow<TokenRequest>,
) -> ApiResult<Json<Value>> {
    let username = subject(req.username, &caller)?;
    let name = required_str(req.name, "name")?;
    if name.len() > 256 {
        return Err(ApiError::invalid(
            "The token name may be at most 256 characters",
        ));
    }
    let days = req.expires_in_days.unwrap_or(DEFAULT_TOKEN_DAYS);
    if !(1..=MAX_TOKEN_DAYS).contains(&days) {
        return Err(ApiError::invalid(format!(
            "expires_in_days must be between 1 and {MAX_TOKEN_DAYS}, got {days}"
        )));
    }
    let now = crate::permissions::now_ms();
    let secret = new_token_secret();
    let token = s
        .access()
        .store
        .create_token(
            &username,
            &name,
            &token_digest(&secret),
            now,
            Some(now + days * 86_400_000),
        )
        .await?;
    Ok(Json(
        json!({ "token": secret, "access_token": token_json(&token) }),
    ))
}

/// `GET users/access-tokens/list`.
pub(crate) async fn list_tokens(
    State(s): State<AppState>,
    caller: Caller,
    Mlflow(req): Mlflow<TokenRequest>,
) -> ApiResult<Json<Value>> {
    let username = subject(req.username, &caller)?;
    let tokens = s.access().store.list_tokens(&username).await?;
    let tokens: Vec<Value> = tokens.iter().map(token_json).collect();
    Ok(Json(json!({ "access_tokens": tokens })))
}

/// `POST users/access-tokens/revoke`.
pub(crate) async fn revoke_token(
    State(s): State<AppState>,
    caller: Caller,
    Mlflow(req): Mlflow<TokenRequest>,
) -> ApiResult<Json<Value>> {
    let username = subject(req.username, &caller)?;
    let id = req.id.ok_or_else(|| ApiError::missing("id"))?;
    s.access()
        .store
        .revoke_token(&username, id, crate::permissions::now_ms())
        .await?;
    s.access_changed(&username);
    Ok(Json(json!({})))
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct AuditRequest {
    #[serde(deserialize_with = "opt_i64")]
    after: Option<i64>,
    #[serde(deserialize_with = "opt_i64")]
    max_results: Option<i64>,
}

/// One stored event as JSON (also the `cairn audit export` line format).
pub fn audit_json(e: &StoredAuditEvent) -> Value {
    json!({
        "seq": e.seq,
        "time_ms": e.event.time_ms,
        "actor": e.event.actor,
        "auth_method": e.event.auth_method,
        "source_ip": e.event.source_ip,
        "action": e.event.action,
        "resource": e.event.resource,
        "outcome": e.event.outcome,
        "request_id": e.event.request_id,
        "prev_hash": e.prev_hash,
        "hash": e.hash,
    })
}

/// `GET /api/2.0/cairn/audit/events?after=&max_results=`: administrators only.
pub(crate) async fn audit_events(
    State(s): State<AppState>,
    Mlflow(req): Mlflow<AuditRequest>,
) -> ApiResult<Json<Value>> {
    let after = req.after.unwrap_or(0).max(0);
    let limit = req.max_results.unwrap_or(1000);
    if !(1..=10_000).contains(&limit) {
        return Err(ApiError::invalid(format!(
            "max_results must be between 1 and 10000, got {limit}"
        )));
    }
    let events = s.access().store.audit_events(after, limit).await?;
    let next = events.last().map(|e| e.seq);
    let events: Vec<Value> = events.iter().map(audit_json).collect();
    let mut body = json!({ "events": events });
    if let Some(next) = next.filter(|_| events.len() as i64 == limit) {
        body["next_after"] = json!(next);
    }
    Ok(Json(body))
}
