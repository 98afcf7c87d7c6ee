//! Authorization: the one table that says what every route requires, and the layer that
//! enforces it and opens the request's audit record.
//!
//! **Deny by default.** The layer looks the matched route up in [`RULES`]; a route with
//! no rule is refused with 403 for everyone, and a test walks every route the router
//! serves and fails if one has no rule. (MLflow's plugin maps routes to checks the other
//! way round, so routes added later shipped unprotected.)
//!
//! A rule names the resource the request acts on and where its id is (query string for
//! GET, JSON body otherwise, or the artifact path), and the capability needed on it. One
//! store query returns the caller's current admin flag, whether the resource exists and
//! their grant on it; without a grant the server's default permission applies. A missing
//! resource is left to the handler, which answers 404 as MLflow does.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use cairn_api::ErrorCode;
use cairn_artifacts::ArtifactPath;
use cairn_core::audit::AuditEvent;
use cairn_core::auth::{Access, AuthStore, GrantKind, Need, Target};
use cairn_core::context::{self, RequestContext, Viewer};
use serde::de::{DeserializeSeed, IgnoredAny, MapAccess, Visitor};

use crate::auth::Principal;
use crate::error::ApiError;
use crate::handlers::artifacts::ARTIFACT_PREFIXES;
use crate::routes::API_PREFIXES;
use crate::AccessControl;

/// Where a request names the resource it acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Locate {
    /// An experiment id in this field.
    Experiment(&'static str),
    /// An experiment name in this field.
    ExperimentName(&'static str),
    /// A run id in `run_id` (or the legacy `run_uuid`; both are checked when both are sent).
    Run,
    /// Run ids in this (repeated) field; every one is checked.
    Runs(&'static str),
    /// Experiment ids in this (repeated) field; every one is checked.
    Experiments(&'static str),
    /// A logged model id in the `{model_id}` path segment.
    LoggedModel,
    /// A registered-model name in this field.
    Model(&'static str),
    /// An artifact path after `/mlflow-artifacts/<section>/` (its first segment is the
    /// experiment id); for the listing, the `path` query field.
    Artifact(&'static str),
    /// MLflow 3's unified permission API: `resource_type` and `resource_id` fields.
    Typed,
}

/// What a route requires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Rule {
    /// Nothing (health checks).
    Public,
    /// Any signed-in user. Searches under this rule restrict their SQL to what the
    /// caller may read; creations grant the creator MANAGE.
    SignedIn,
    /// A user acting on their own account (the `username` field, defaulting to the
    /// caller), or an administrator.
    SelfOrAdmin,
    /// Administrators only.
    Admin,
    /// `Need` on the resource found by `Locate`.
    On(Locate, Need),
}

/// One route: method, path (relative to the API prefixes for MLflow routes, absolute for
/// the others), the rule, and whether it changes state (and so is audited). Searches
/// sent as POST change nothing.
pub(crate) type RouteRule = (&'static str, &'static str, Rule, bool);

const R: Need = Need::Read;
const U: Need = Need::Update;
const D: Need = Need::Delete;
const M: Need = Need::Manage;

use Locate::*;
use Rule::*;

/// Every route's rule. The route-coverage test fails if a route the router serves is
/// missing here.
pub(crate) const RULES: &[RouteRule] = &[
    // Root routes.
    ("GET", "/health", Public, false),
    ("GET", "/version", Public, false),
    ("GET", "/get-artifact", On(Run, R), false),
    (
        "GET",
        "/model-versions/get-artifact",
        On(Model("name"), R),
        false,
    ),
    ("GET", "/api/2.0/cairn/audit/events", Admin, false),
    // Experiments.
    ("POST", "/experiments/create", SignedIn, true),
    (
        "GET",
        "/experiments/get",
        On(Experiment("experiment_id"), R),
        false,
    ),
    (
        "GET",
        "/experiments/get-by-name",
        On(ExperimentName("experiment_name"), R),
        false,
    ),
    ("GET", "/experiments/search", SignedIn, false),
    ("POST", "/experiments/search", SignedIn, false),
    (
        "POST",
        "/experiments/delete",
        On(Experiment("experiment_id"), D),
        true,
    ),
    (
        "POST",
        "/experiments/restore",
        On(Experiment("experiment_id"), D),
        true,
    ),
    (
        "POST",
        "/experiments/update",
        On(Experiment("experiment_id"), U),
        true,
    ),
    (
        "POST",
        "/experiments/set-experiment-tag",
        On(Experiment("experiment_id"), U),
        true,
    ),
    (
        "POST",
        "/experiments/delete-experiment-tag",
        On(Experiment("experiment_id"), U),
        true,
    ),
    // Runs.
    (
        "POST",
        "/runs/create",
        On(Experiment("experiment_id"), U),
        true,
    ),
    ("GET", "/runs/get", On(Run, R), false),
    ("POST", "/runs/update", On(Run, U), true),
    ("POST", "/runs/delete", On(Run, D), true),
    ("POST", "/runs/restore", On(Run, D), true),
    ("POST", "/runs/log-metric", On(Run, U), true),
    ("POST", "/runs/log-parameter", On(Run, U), true),
    ("POST", "/runs/set-tag", On(Run, U), true),
    ("POST", "/runs/delete-tag", On(Run, U), true),
    ("POST", "/runs/log-batch", On(Run, U), true),
    ("POST", "/runs/log-model", On(Run, U), true),
    ("POST", "/runs/log-inputs", On(Run, U), true),
    ("POST", "/runs/outputs", On(Run, U), true),
    (
        "GET",
        "/runs/search",
        On(Experiments("experiment_ids"), R),
        false,
    ),
    (
        "POST",
        "/runs/search",
        On(Experiments("experiment_ids"), R),
        false,
    ),
    ("GET", "/metrics/get-history", On(Run, R), false),
    (
        "GET",
        "/metrics/get-history-bulk-interval",
        On(Runs("run_ids"), R),
        false,
    ),
    (
        "GET",
        "/metrics/get-history-bulk",
        On(Runs("run_id"), R),
        false,
    ),
    ("GET", "/artifacts/list", On(Run, R), false),
    // Logged models.
    (
        "POST",
        "/logged-models",
        On(Experiment("experiment_id"), U),
        true,
    ),
    (
        "POST",
        "/logged-models/search",
        On(Experiments("experiment_ids"), R),
        false,
    ),
    (
        "GET",
        "/logged-models/{model_id}",
        On(LoggedModel, R),
        false,
    ),
    (
        "PATCH",
        "/logged-models/{model_id}",
        On(LoggedModel, U),
        true,
    ),
    (
        "DELETE",
        "/logged-models/{model_id}",
        On(LoggedModel, D),
        true,
    ),
    (
        "PATCH",
        "/logged-models/{model_id}/tags",
        On(LoggedModel, U),
        true,
    ),
    (
        "DELETE",
        "/logged-models/{model_id}/tags/{tag_key}",
        On(LoggedModel, U),
        true,
    ),
    (
        "POST",
        "/logged-models/{model_id}/params",
        On(LoggedModel, U),
        true,
    ),
    ("GET", "/server-info", SignedIn, false),
    // Registered models.
    ("POST", "/registered-models/create", SignedIn, true),
    (
        "POST",
        "/registered-models/rename",
        On(Model("name"), U),
        true,
    ),
    (
        "PATCH",
        "/registered-models/update",
        On(Model("name"), U),
        true,
    ),
    (
        "DELETE",
        "/registered-models/delete",
        On(Model("name"), D),
        true,
    ),
    ("GET", "/registered-models/get", On(Model("name"), R), false),
    ("GET", "/registered-models/search", SignedIn, false),
    ("POST", "/registered-models/search", SignedIn, false),
    (
        "GET",
        "/registered-models/get-latest-versions",
        On(Model("name"), R),
        false,
    ),
    (
        "POST",
        "/registered-models/get-latest-versions",
        On(Model("name"), R),
        false,
    ),
    (
        "POST",
        "/registered-models/set-tag",
        On(Model("name"), U),
        true,
    ),
    (
        "DELETE",
        "/registered-models/delete-tag",
        On(Model("name"), U),
        true,
    ),
    (
        "POST",
        "/registered-models/alias",
        On(Model("name"), U),
        true,
    ),
    (
        "DELETE",
        "/registered-models/alias",
        On(Model("name"), U),
        true,
    ),
    (
        "GET",
        "/registered-models/alias",
        On(Model("name"), R),
        false,
    ),
    // Model versions (their registered model's permission).
    ("POST", "/model-versions/create", On(Model("name"), U), true),
    (
        "PATCH",
        "/model-versions/update",
        On(Model("name"), U),
        true,
    ),
    (
        "POST",
        "/model-versions/transition-stage",
        On(Model("name"), U),
        true,
    ),
    (
        "DELETE",
        "/model-versions/delete",
        On(Model("name"), D),
        true,
    ),
    ("GET", "/model-versions/get", On(Model("name"), R), false),
    ("GET", "/model-versions/search", SignedIn, false),
    ("POST", "/model-versions/search", SignedIn, false),
    (
        "GET",
        "/model-versions/get-download-uri",
        On(Model("name"), R),
        false,
    ),
    (
        "POST",
        "/model-versions/set-tag",
        On(Model("name"), U),
        true,
    ),
    (
        "DELETE",
        "/model-versions/delete-tag",
        On(Model("name"), U),
        true,
    ),
    // Proxied artifacts (relative to the artifact prefixes).
    ("GET", "/artifacts", On(Artifact("path"), R), false),
    (
        "GET",
        "/artifacts/{*path}",
        On(Artifact("artifacts"), R),
        false,
    ),
    (
        "PUT",
        "/artifacts/{*path}",
        On(Artifact("artifacts"), U),
        true,
    ),
    (
        "DELETE",
        "/artifacts/{*path}",
        On(Artifact("artifacts"), D),
        true,
    ),
    (
        "POST",
        "/mpu/create/{*path}",
        On(Artifact("mpu/create"), U),
        true,
    ),
    (
        "POST",
        "/mpu/complete/{*path}",
        On(Artifact("mpu/complete"), U),
        true,
    ),
    (
        "POST",
        "/mpu/abort/{*path}",
        On(Artifact("mpu/abort"), U),
        true,
    ),
    (
        "GET",
        "/presigned/{*path}",
        On(Artifact("presigned"), R),
        false,
    ),
    // Accounts (MLflow's basic-auth API).
    ("POST", "/users/create", Admin, true),
    ("GET", "/users/get", SelfOrAdmin, false),
    ("GET", "/users/current", SignedIn, false),
    ("GET", "/users/list", Admin, false),
    ("PATCH", "/users/update-password", SelfOrAdmin, true),
    ("PATCH", "/users/update-admin", Admin, true),
    ("DELETE", "/users/delete", Admin, true),
    ("GET", "/users/current/permissions", SignedIn, false),
    ("GET", "/users/permissions/list", SelfOrAdmin, false),
    // Grants: managing who may do what needs MANAGE on the resource.
    (
        "POST",
        "/experiments/permissions/create",
        On(Experiment("experiment_id"), M),
        true,
    ),
    (
        "GET",
        "/experiments/permissions/get",
        On(Experiment("experiment_id"), M),
        false,
    ),
    (
        "PATCH",
        "/experiments/permissions/update",
        On(Experiment("experiment_id"), M),
        true,
    ),
    (
        "DELETE",
        "/experiments/permissions/delete",
        On(Experiment("experiment_id"), M),
        true,
    ),
    (
        "POST",
        "/registered-models/permissions/create",
        On(Model("name"), M),
        true,
    ),
    (
        "GET",
        "/registered-models/permissions/get",
        On(Model("name"), M),
        false,
    ),
    (
        "PATCH",
        "/registered-models/permissions/update",
        On(Model("name"), M),
        true,
    ),
    (
        "DELETE",
        "/registered-models/permissions/delete",
        On(Model("name"), M),
        true,
    ),
    ("POST", "/users/permissions/grant", On(Typed, M), true),
    ("POST", "/users/permissions/revoke", On(Typed, M), true),
    ("GET", "/users/permissions/get", On(Typed, M), false),
    // Personal access tokens (one's own; an administrator may name another user).
    ("POST", "/users/access-tokens/create", SelfOrAdmin, true),
    ("GET", "/users/access-tokens/list", SelfOrAdmin, false),
    ("POST", "/users/access-tokens/revoke", SelfOrAdmin, true),
];

/// The rule for `method` on a matched route path (with or without an API prefix).
pub(crate) fn rule_for(method: &Method, matched: &str) -> Option<(Rule, bool)> {
    let relative = API_PREFIXES
        .iter()
        .chain(ARTIFACT_PREFIXES.iter())
        .find_map(|p| matched.strip_prefix(p).filter(|rest| rest.starts_with('/')))
        .unwrap_or(matched);
    RULES
        .iter()
        .find(|(m, p, _, _)| *m == method.as_str() && (*p == relative || *p == matched))
        .map(|(_, _, rule, changes)| (*rule, *changes))
}

/// How long an authorization lookup (an account's admin flag, a user's grant on a
/// resource) is reused on this replica. Changes made through this replica clear it at
/// once; changes made elsewhere apply here within this time.
const DECISION_TTL: Duration = Duration::from_secs(1);
/// Most lookups remembered at once (beyond it the cache is cleared).
const DECISION_CAPACITY: usize = 10_000;

/// Remembered lookups: the value and when it was read.
type Remembered<K, V> = Mutex<HashMap<K, (V, Instant)>>;

/// Recent authorization lookups, so a busy client costs one store query per second
/// rather than one per request.
#[derive(Debug, Default)]
pub struct DecisionCache {
    users: Remembered<String, Option<bool>>,
    access: Remembered<(String, Target), Option<Access>>,
}

impl DecisionCache {
    /// Forgets everything (after a change to accounts or grants).
    pub fn clear(&self) {
        if let Ok(mut m) = self.users.lock() {
            m.clear();
        }
        if let Ok(mut m) = self.access.lock() {
            m.clear();
        }
    }

    fn get<K: Eq + std::hash::Hash, V: Clone>(map: &Remembered<K, V>, key: &K) -> Option<V> {
        let m = map.lock().ok()?;
        let (v, at) = m.get(key)?;
        (at.elapsed() < DECISION_TTL).then(|| v.clone())
    }

    fn put<K: Eq + std::hash::Hash, V>(map: &Remembered<K, V>, key: K, v: V) {
        if let Ok(mut m) = map.lock() {
            if m.len() >= DECISION_CAPACITY {
                m.clear();
            }
            m.insert(key, (v, Instant::now()));
        }
    }
}

/// The resources a request acts on.
enum Scope {
    /// Each must allow the need.
    Resources(Vec<Target>),
    /// Nothing a grant can cover (an artifact path outside any experiment's directory):
    /// administrators only.
    AdminOnly,
}

/// What the layer knows about the request while deciding.
struct Decision {
    resource: String,
    outcome: Result<(), Response>,
}

pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// The audit event for a request, before its outcome is known.
pub(crate) fn audit_event(
    req: &Request,
    principal: Option<&Principal>,
    action: &str,
) -> AuditEvent {
    let source_ip = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip().to_string())
        .unwrap_or_else(|| "unknown".into());
    let request_id = req
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    AuditEvent {
        time_ms: now_ms(),
        actor: principal.map_or_else(|| "anonymous".into(), |p| p.username.clone()),
        auth_method: principal.map_or("none", |p| p.method).to_string(),
        source_ip,
        action: action.to_string(),
        resource: String::new(),
        outcome: "ok".into(),
        request_id,
    }
}

/// Appends a record of something that changed nothing (a denial, a failed request).
pub(crate) async fn append_detached(store: &Arc<dyn AuthStore>, event: AuditEvent) {
    if let Err(e) = store.append_audit(&event).await {
        tracing::error!(error = %e, action = %event.action, "cannot append to the audit log");
    }
}

fn denied(message: String) -> Response {
    ApiError::new(ErrorCode::PermissionDenied, message).into_response()
}

/// The route layer: finds the rule, checks it, runs the handler inside the request
/// context and records the outcome in the audit log.
pub(crate) async fn authorize(
    State(gate): State<Arc<AccessControl>>,
    req: Request,
    next: Next,
) -> Response {
    let matched = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_string())
        .unwrap_or_default();
    let method = req.method().clone();
    let principal = req.extensions().get::<Principal>().cloned();
    let action = format!("{method} {matched}");
    let mut event = audit_event(&req, principal.as_ref(), &action);
    let Some((rule, changes)) = rule_for(&method, &matched) else {
        // Deny by default: a route nobody wrote a rule for is closed to everyone.
        tracing::error!(route = %action, "route has no permission rule; refused");
        event.outcome = "denied".into();
        append_detached(&gate.store, event).await;
        return denied(format!("Permission denied: no access rule for {action}"));
    };
    if rule == Public {
        return next.run(req).await;
    }
    let (req, decision) = decide(&gate, rule, principal.as_ref(), req).await;
    event.resource = decision.resource;
    if let Err(response) = decision.outcome {
        if response.status().as_u16() == 403 {
            event.outcome = "denied".into();
            append_detached(&gate.store, event).await;
        }
        return response;
    }
    let viewer = match (&principal, gate.authenticator.is_some()) {
        (Some(p), true) => Some(Viewer {
            username: p.username.clone(),
            is_admin: p.is_admin || p.admin_by_group,
            default_read: gate.default_permission.allows(Need::Read),
        }),
        _ => None,
    };
    let ctx = Arc::new(RequestContext::new(viewer, changes.then_some(event)));
    let response = context::scope(ctx.clone(), next.run(req)).await;
    let changes_access = matches!(
        rule,
        On(_, Need::Delete) | On(_, Need::Manage) | Admin | SelfOrAdmin
    );
    if changes && changes_access && response.status().is_success() {
        // Accounts or grants changed, or a delete freed a name that may be reused at
        // once: nothing remembered may outlive it on this replica.
        gate.decisions.clear();
    }
    // A change records itself in its own transaction; a request that changed nothing in
    // the database (it failed, or only touched artifact bytes) is recorded now.
    if let Some(mut pending) = ctx.take_audit() {
        let status = response.status();
        pending.outcome = if status.is_success() {
            "ok".into()
        } else {
            format!("error:{}", status.as_u16())
        };
        append_detached(&gate.store, pending).await;
    }
    response
}

/// Checks `rule` for the caller; gives the request back (its body re-attached if it had
/// to be read) with the decision.
async fn decide(
    gate: &AccessControl,
    rule: Rule,
    principal: Option<&Principal>,
    req: Request,
) -> (Request, Decision) {
    let Some(principal) = principal.filter(|_| gate.authenticator.is_some()) else {
        // Authentication is off: nothing to check, but name the resource for the audit.
        let (req, fields) = match rule {
            On(locate, _) => read_fields(req, locate).await,
            _ => (req, Ok(Fields::default())),
        };
        let resource = match (rule, fields) {
            (On(locate, _), Ok(f)) => targets(locate, &f)
                .map(|scope| describe(&scope))
                .unwrap_or_default(),
            _ => String::new(),
        };
        return (
            req,
            Decision {
                resource,
                outcome: Ok(()),
            },
        );
    };
    match rule {
        Public => (
            req,
            Decision {
                resource: String::new(),
                outcome: Ok(()),
            },
        ),
        SignedIn => {
            let req = sniff_artifact_location(req).await;
            let sets_location = req.extensions().get::<ArtifactLocationSent>().is_some();
            let outcome = signed_in(gate, principal, sets_location).await;
            (
                req,
                Decision {
                    resource: String::new(),
                    outcome,
                },
            )
        }
        Admin => {
            let outcome = match fresh_admin(gate, principal).await {
                Ok(true) => Ok(()),
                Ok(false) => Err(denied(format!(
                    "Permission denied: only administrators may call {} {}",
                    req.method(),
                    req.uri().path()
                ))),
                Err(r) => Err(r),
            };
            (
                req,
                Decision {
                    resource: String::new(),
                    outcome,
                },
            )
        }
        SelfOrAdmin => {
            let (req, fields) = read_fields(req, Locate::Typed).await;
            let outcome = match fields {
                Err(e) => Err(e.into_response()),
                Ok(f) => {
                    let named = f.first("username");
                    match named {
                        Some(name) if name != principal.username => {
                            match fresh_admin(gate, principal).await {
                                Ok(true) => Ok(()),
                                Ok(false) => Err(denied(format!(
                                    "Permission denied: only administrators may act on \
                                     another user's account ({name})"
                                ))),
                                Err(r) => Err(r),
                            }
                        }
                        _ => fresh_admin(gate, principal).await.map(|_| ()),
                    }
                }
            };
            (
                req,
                Decision {
                    resource: String::new(),
                    outcome,
                },
            )
        }
        On(locate, need) => {
            let (req, fields) = read_fields(req, locate).await;
            let scope = match fields.and_then(|f| targets(locate, &f)) {
                Ok(t) => t,
                Err(e) => {
                    return (
                        req,
                        Decision {
                            resource: String::new(),
                            outcome: Err(e.into_response()),
                        },
                    )
                }
            };
            let resource = describe(&scope);
            let mut outcome = Ok(());
            match &scope {
                Scope::Resources(targets) => {
                    for target in targets {
                        if let Err(r) = check(gate, principal, target, need).await {
                            outcome = Err(r);
                            break;
                        }
                    }
                }
                Scope::AdminOnly => {
                    outcome = match fresh_admin(gate, principal).await {
                        Ok(true) => Ok(()),
                        Ok(false) => Err(denied(
                            "Permission denied: this artifact path belongs to no experiment; \
                             only administrators may use it"
                                .into(),
                        )),
                        Err(r) => Err(r),
                    };
                }
            }
            (req, Decision { resource, outcome })
        }
    }
}

fn describe(scope: &Scope) -> String {
    match scope {
        Scope::Resources(targets) => targets
            .iter()
            .map(|t| t.to_string())
            .collect::<Vec<_>>()
            .join(","),
        Scope::AdminOnly => "artifacts:outside-experiments".into(),
    }
}

/// The caller's current admin flag; 401 if the account is gone.
async fn fresh_admin(gate: &AccessControl, principal: &Principal) -> Result<bool, Response> {
    let key = principal.username.clone();
    let found = match DecisionCache::get(&gate.decisions.users, &key) {
        Some(found) => found,
        None => {
            let found = match gate.store.get_user(&principal.username).await {
                Ok(u) => Some(u.is_admin),
                Err(cairn_core::CoreError::NotFound(_)) => None,
                Err(e) => return Err(ApiError::from(e).into_response()),
            };
            DecisionCache::put(&gate.decisions.users, key, found);
            found
        }
    };
    found
        .map(|stored| stored || principal.admin_by_group)
        .ok_or_else(|| crate::auth::unauthenticated("The account no longer exists"))
}

/// Any signed-in user, with one restriction: only administrators choose where an
/// experiment's artifacts go (a chosen location could point into another experiment's
/// artifacts and read them through a run of one's own).
async fn signed_in(
    gate: &AccessControl,
    principal: &Principal,
    sets_location: bool,
) -> Result<(), Response> {
    let is_admin = fresh_admin(gate, principal).await?;
    if !is_admin && sets_location {
        return Err(denied(
            "Permission denied: only administrators may set an experiment's \
             artifact_location"
                .into(),
        ));
    }
    Ok(())
}

/// Marker: an `experiments/create` body names an `artifact_location`.
#[derive(Clone, Copy)]
pub(crate) struct ArtifactLocationSent;

async fn check(
    gate: &AccessControl,
    principal: &Principal,
    target: &Target,
    need: Need,
) -> Result<(), Response> {
    let key = (principal.username.clone(), target.clone());
    let access = match DecisionCache::get(&gate.decisions.access, &key) {
        Some(access) => access,
        None => {
            let access = gate
                .store
                .access(&principal.username, target)
                .await
                .map_err(|e| ApiError::from(e).into_response())?;
            // A missing resource is never remembered: once it exists it must be checked.
            if access.as_ref().is_some_and(|a| a.exists) {
                DecisionCache::put(&gate.decisions.access, key, access.clone());
            }
            access
        }
    };
    let Some(Access {
        is_admin,
        exists,
        grant,
    }) = access
    else {
        return Err(crate::auth::unauthenticated("The account no longer exists"));
    };
    if is_admin || principal.admin_by_group || !exists {
        // Administrators pass; a missing resource gets the handler's 404.
        return Ok(());
    }
    let level = grant.unwrap_or(gate.default_permission);
    if level.allows(need) {
        return Ok(());
    }
    Err(denied(format!(
        "Permission denied: {} on {target} requires {}, user '{}' has {}",
        "this request",
        need_name(need),
        principal.username,
        level.name()
    )))
}

fn need_name(need: Need) -> &'static str {
    match need {
        Need::Read => "READ",
        Need::Use => "USE",
        Need::Update => "EDIT",
        Need::Delete | Need::Manage => "MANAGE",
    }
}

/// Field values of a request: query pairs for GET and DELETE-with-query, JSON top-level
/// fields for bodies, the raw URI for artifact paths.
#[derive(Debug, Default)]
struct Fields {
    pairs: Vec<(String, String)>,
    uri_path: String,
}

impl Fields {
    fn first(&self, name: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    fn all(&self, name: &str) -> Vec<&str> {
        self.pairs
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

/// The field names `locate` reads.
fn wanted(locate: Locate) -> Vec<&'static str> {
    match locate {
        Experiment(f) | ExperimentName(f) | Runs(f) | Experiments(f) | Model(f) => vec![f],
        Run => vec!["run_id", "run_uuid", "runId", "runUuid"],
        LoggedModel => vec![],
        Artifact(_) => vec!["path"],
        Typed => vec!["resource_type", "resource_id", "username"],
    }
}

/// Reads the fields `locate` needs: from the query string for GET, from the JSON body
/// otherwise (the body is buffered, which the route's handler reads from memory next).
/// Artifact PUTs stream and are never buffered: their resource is in the path.
async fn read_fields(req: Request, locate: Locate) -> (Request, Result<Fields, ApiError>) {
    let names = wanted(locate);
    let mut fields = Fields {
        uri_path: req.uri().path().to_string(),
        ..Fields::default()
    };
    if let Some(q) = req.uri().query() {
        match serde_urlencoded::from_str::<Vec<(String, String)>>(q) {
            Ok(pairs) => fields.pairs.extend(
                pairs
                    .into_iter()
                    .filter(|(k, _)| names.contains(&k.as_str())),
            ),
            Err(_) => return (req, Err(ApiError::invalid("The query string is not valid"))),
        }
    }
    let reads_body = !matches!(locate, Artifact(_) | LoggedModel)
        && req.method() != Method::GET
        && !names.is_empty();
    if !reads_body {
        return (req, Ok(fields));
    }
    let (parts, body) = req.into_parts();
    let bytes: Bytes = match axum::body::to_bytes(body, crate::routes::MAX_BODY_BYTES).await {
        Ok(b) => b,
        Err(_) => {
            let req = Request::from_parts(parts, Body::empty());
            return (
                req,
                Err(ApiError::new(
                    ErrorCode::InvalidParameterValue,
                    "The request body is too large or could not be read",
                )),
            );
        }
    };
    let req = Request::from_parts(parts, Body::from(bytes.clone()));
    fields.pairs.extend(json_fields(&bytes, &names));
    (req, Ok(fields))
}

/// Marks an `experiments/create` whose body names an `artifact_location` (the body is
/// buffered for the handler; an unreadable one is left for the handler to refuse).
async fn sniff_artifact_location(req: Request) -> Request {
    if !req.uri().path().ends_with("/experiments/create") {
        return req;
    }
    let (parts, body) = req.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, crate::routes::MAX_BODY_BYTES).await else {
        return Request::from_parts(parts, Body::empty());
    };
    let sent = json_fields(&bytes, &["artifact_location"])
        .iter()
        .any(|(_, v)| !v.is_empty());
    let mut req = Request::from_parts(parts, Body::from(bytes));
    if sent {
        req.extensions_mut().insert(ArtifactLocationSent);
    }
    req
}

/// The resources a request names, or a 400 when a required id is missing.
fn targets(locate: Locate, f: &Fields) -> Result<Scope, ApiError> {
    let missing = |name: &str| ApiError::missing(name);
    let experiment = |v: &str| -> Result<Target, ApiError> {
        v.trim()
            .parse::<i64>()
            .map(Target::Experiment)
            .map_err(|_| ApiError::invalid(format!("Invalid experiment id '{v}'")))
    };
    let one = |t: Target| Ok(Scope::Resources(vec![t]));
    match locate {
        Experiment(name) => {
            let v = f.first(name).ok_or_else(|| missing(name))?;
            one(experiment(v)?)
        }
        ExperimentName(name) => {
            let v = f.first(name).ok_or_else(|| missing(name))?;
            one(Target::ExperimentName(v.to_string()))
        }
        Run => {
            let mut ids: Vec<Target> = ["run_id", "runId", "run_uuid", "runUuid"]
                .iter()
                .flat_map(|n| f.all(n))
                .filter(|v| !v.is_empty())
                .map(|v| Target::Run(v.to_string()))
                .collect();
            ids.dedup();
            if ids.is_empty() {
                return Err(missing("run_id"));
            }
            Ok(Scope::Resources(ids))
        }
        Runs(name) => {
            let ids: Vec<Target> = f
                .all(name)
                .into_iter()
                .map(|v| Target::Run(v.to_string()))
                .collect();
            if ids.is_empty() {
                return Err(missing(name));
            }
            Ok(Scope::Resources(ids))
        }
        Experiments(name) => Ok(Scope::Resources(
            f.all(name)
                .into_iter()
                .map(experiment)
                .collect::<Result<_, _>>()?,
        )),
        LoggedModel => {
            let id = logged_model_id(&f.uri_path).ok_or_else(|| missing("model_id"))?;
            one(Target::LoggedModel(id))
        }
        Model(name) => {
            let v = f.first(name).ok_or_else(|| missing(name))?;
            one(Target::RegisteredModel(v.to_string()))
        }
        Artifact(section) => {
            let path = if section == "path" {
                ArtifactPath::parse(f.first("path").unwrap_or(""))
            } else {
                let marker = format!("/mlflow-artifacts/{section}/");
                let raw = f
                    .uri_path
                    .split_once(&marker)
                    .map(|(_, rest)| rest)
                    .unwrap_or("");
                ArtifactPath::parse(raw)
            }
            .map_err(ApiError::from)?;
            // Artifacts live under `<experiment id>/...`; anything else (the root, a
            // location an administrator chose) is for administrators.
            let experiment_id = path.segments().next().and_then(|s| s.parse::<i64>().ok());
            match experiment_id {
                Some(id) => one(Target::Experiment(id)),
                None => Ok(Scope::AdminOnly),
            }
        }
        Typed => {
            let kind = f
                .first("resource_type")
                .ok_or_else(|| missing("resource_type"))?;
            let id = f
                .first("resource_id")
                .ok_or_else(|| missing("resource_id"))?;
            match GrantKind::parse(kind).map_err(ApiError::from)? {
                GrantKind::Experiment => one(experiment(id)?),
                GrantKind::RegisteredModel => one(Target::RegisteredModel(id.to_string())),
            }
        }
    }
}

/// The `{model_id}` segment of a logged-model route.
fn logged_model_id(path: &str) -> Option<String> {
    let rest = path.split_once("/logged-models/")?.1;
    let id = rest.split('/').next()?;
    (!id.is_empty()).then(|| id.to_string())
}

/// Top-level JSON fields named in `names`, as strings (numbers and booleans in their
/// text form, each element of an array separately); everything else is skipped without
/// being built, so a 1 MB log-batch costs one scan.
fn json_fields(body: &[u8], names: &[&str]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut de = serde_json::Deserializer::from_slice(body);
    let _ = serde::Deserializer::deserialize_map(
        &mut de,
        TopLevel {
            names,
            out: &mut out,
        },
    );
    out
}

struct TopLevel<'a> {
    names: &'a [&'a str],
    out: &'a mut Vec<(String, String)>,
}

impl<'de> Visitor<'de> for TopLevel<'_> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(key) = map.next_key::<String>()? {
            if let Some(name) = self.names.iter().find(|n| **n == key) {
                let value: serde_json::Value = map.next_value()?;
                let mut push = |v: &serde_json::Value| match v {
                    serde_json::Value::String(s) => self.out.push((name.to_string(), s.clone())),
                    serde_json::Value::Number(n) => {
                        self.out.push((name.to_string(), n.to_string()))
                    }
                    serde_json::Value::Bool(b) => self.out.push((name.to_string(), b.to_string())),
                    _ => {}
                };
                match &value {
                    serde_json::Value::Array(items) => items.iter().for_each(&mut push),
                    other => push(other),
                }
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(())
    }
}

impl<'de> DeserializeSeed<'de> for TopLevel<'_> {
    type Value = ();
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn json_fields_reads_only_the_named_top_level_fields() {
        let body = br#"{"run_id":"abc","metrics":[{"run_id":"nested"}],"experiment_ids":["1",2],"x":{"run_id":"deep"}}"#;
        assert_eq!(
            json_fields(body, &["run_id"]),
            vec![("run_id".to_string(), "abc".to_string())]
        );
        assert_eq!(
            json_fields(body, &["experiment_ids"]),
            vec![
                ("experiment_ids".to_string(), "1".to_string()),
                ("experiment_ids".to_string(), "2".to_string())
            ]
        );
        assert!(json_fields(b"not json", &["run_id"]).is_empty());
    }

    #[test]
    fn rules_are_found_under_every_prefix() {
        let post = Method::POST;
        for prefix in API_PREFIXES {
            let path = format!("{prefix}/runs/log-batch");
            assert_eq!(rule_for(&post, &path), Some((On(Run, U), true)));
        }
        assert_eq!(
            rule_for(&Method::PUT, "/api/2.0/mlflow-artifacts/artifacts/{*path}"),
            Some((On(Artifact("artifacts"), U), true))
        );
        assert_eq!(rule_for(&Method::GET, "/health"), Some((Public, false)));
        assert_eq!(
            rule_for(&Method::GET, "/api/2.0/mlflow/runs/log-batch"),
            None
        );
    }

    #[test]
    fn logged_model_ids_come_from_the_path() {
        assert_eq!(
            logged_model_id("/api/2.0/mlflow/logged-models/m-1/tags/k").as_deref(),
            Some("m-1")
        );
        assert_eq!(logged_model_id("/api/2.0/mlflow/logged-models/"), None);
    }
}
