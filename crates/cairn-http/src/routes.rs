//! The route table. Every MLflow route is served under `/api/2.0/mlflow` and
//! `/ajax-api/2.0/mlflow` (and the 3.0 prefixes, which newer clients use for some calls).

use axum::extract::{DefaultBodyLimit, Request};
use axum::http::Method;
use axum::routing::{get, patch, post, put, MethodRouter};
use axum::Router;
use cairn_api::ErrorCode;
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::{DefaultOnResponse, TraceLayer};
use tower_http::LatencyUnit;

use crate::error::ApiError;
use crate::handlers::artifacts::{self, ARTIFACT_PREFIXES};
use crate::handlers::{experiments, logged_models, meta, registry, runs, users};
use crate::middleware::{drop_unusable_request_id, panic_response, server_timing};
use crate::permissions::authorize;
use crate::security::{harden, SecurityConfig};
use crate::AppState;
use std::sync::Arc;
use tower_http::cors::{AllowHeaders, AllowOrigin, CorsLayer};

/// Largest request body accepted by any endpoint (log-batch has its own 1 MB limit).
pub(crate) const MAX_BODY_BYTES: usize = 16 * 1024 * 1024;

/// Prefixes under which the MLflow API is mounted.
pub const API_PREFIXES: [&str; 4] = [
    "/api/2.0/mlflow",
    "/ajax-api/2.0/mlflow",
    "/api/3.0/mlflow",
    "/ajax-api/3.0/mlflow",
];

/// `(path, handler)` for every MLflow tracking route, relative to a prefix.
fn mlflow_routes() -> Vec<(&'static str, MethodRouter<AppState>)> {
    vec![
        ("/experiments/create", post(experiments::create)),
        ("/experiments/get", get(experiments::get)),
        ("/experiments/get-by-name", get(experiments::get_by_name)),
        (
            "/experiments/search",
            post(experiments::search).get(experiments::search),
        ),
        ("/experiments/delete", post(experiments::delete)),
        ("/experiments/restore", post(experiments::restore)),
        ("/experiments/update", post(experiments::update)),
        (
            "/experiments/set-experiment-tag",
            post(experiments::set_tag),
        ),
        (
            "/experiments/delete-experiment-tag",
            post(experiments::delete_tag),
        ),
        ("/runs/create", post(runs::create)),
        ("/runs/get", get(runs::get)),
        ("/runs/update", post(runs::update)),
        ("/runs/delete", post(runs::delete)),
        ("/runs/restore", post(runs::restore)),
        ("/runs/log-metric", post(runs::log_metric)),
        ("/runs/log-parameter", post(runs::log_param)),
        ("/runs/set-tag", post(runs::set_tag)),
        ("/runs/delete-tag", post(runs::delete_tag)),
        ("/runs/log-batch", post(runs::log_batch)),
        ("/runs/log-model", post(runs::log_model)),
        ("/runs/log-inputs", post(runs::log_inputs)),
        ("/runs/outputs", post(runs::log_outputs)),
        ("/runs/search", post(runs::search).get(runs::search)),
        ("/metrics/get-history", get(runs::get_history)),
        (
            "/metrics/get-history-bulk-interval",
            get(runs::get_history_bulk_interval),
        ),
        ("/metrics/get-history-bulk", get(runs::get_history_bulk)),
        ("/artifacts/list", get(artifacts::list_run_artifacts)),
        ("/logged-models", post(logged_models::create)),
        ("/logged-models/search", post(logged_models::search)),
        (
            "/logged-models/{model_id}",
            get(logged_models::get)
                .patch(logged_models::finalize)
                .delete(logged_models::delete),
        ),
        (
            "/logged-models/{model_id}/tags",
            patch(logged_models::set_tags),
        ),
        (
            "/logged-models/{model_id}/tags/{tag_key}",
            axum::routing::delete(logged_models::delete_tag),
        ),
        (
            "/logged-models/{model_id}/params",
            post(logged_models::log_params),
        ),
        ("/server-info", get(meta::server_info)),
    ]
}

/// `(path, handler)` for accounts, grants and tokens (MLflow's basic-auth API and
/// Cairn's tokens), relative to a prefix.
fn account_routes() -> Vec<(&'static str, MethodRouter<AppState>)> {
    use axum::routing::delete;
    vec![
        ("/users/create", post(users::create_user)),
        ("/users/get", get(users::get_user)),
        ("/users/current", get(users::current_user)),
        ("/users/list", get(users::list_users)),
        ("/users/update-password", patch(users::update_password)),
        ("/users/update-admin", patch(users::update_admin)),
        ("/users/delete", delete(users::delete_user)),
        ("/users/current/permissions", get(users::list_permissions)),
        ("/users/permissions/list", get(users::list_permissions)),
        ("/users/permissions/grant", post(users::grant)),
        ("/users/permissions/revoke", post(users::revoke)),
        ("/users/permissions/get", get(users::effective)),
        (
            "/experiments/permissions/create",
            post(users::create_experiment_grant),
        ),
        (
            "/experiments/permissions/get",
            get(users::get_experiment_grant),
        ),
        (
            "/experiments/permissions/update",
            patch(users::update_experiment_grant),
        ),
        (
            "/experiments/permissions/delete",
            delete(users::delete_experiment_grant),
        ),
        (
            "/registered-models/permissions/create",
            post(users::create_model_grant),
        ),
        (
            "/registered-models/permissions/get",
            get(users::get_model_grant),
        ),
        (
            "/registered-models/permissions/update",
            patch(users::update_model_grant),
        ),
        (
            "/registered-models/permissions/delete",
            delete(users::delete_model_grant),
        ),
        ("/users/access-tokens/create", post(users::create_token)),
        ("/users/access-tokens/list", get(users::list_tokens)),
        ("/users/access-tokens/revoke", post(users::revoke_token)),
    ]
}

/// `(path, handler)` for MLflow's proxied artifact API, relative to a prefix. Bodies
/// stream, so these routes take no body limit.
fn artifact_routes() -> Vec<(&'static str, MethodRouter<AppState>)> {
    vec![
        ("/artifacts", get(artifacts::list)),
        (
            "/artifacts/{*path}",
            put(artifacts::upload)
                .get(artifacts::download)
                .delete(artifacts::delete),
        ),
        ("/mpu/create/{*path}", post(artifacts::mpu_create)),
        ("/mpu/complete/{*path}", post(artifacts::mpu_complete)),
        ("/mpu/abort/{*path}", post(artifacts::mpu_abort)),
        ("/presigned/{*path}", get(artifacts::presigned)),
    ]
}

/// `(path, handler)` for every MLflow model-registry route, relative to a prefix. Methods
/// follow MLflow's proto; the two searches also take POST, like the tracking searches.
fn registry_routes() -> Vec<(&'static str, MethodRouter<AppState>)> {
    use axum::routing::delete;
    vec![
        ("/registered-models/create", post(registry::create_model)),
        ("/registered-models/rename", post(registry::rename_model)),
        ("/registered-models/update", patch(registry::update_model)),
        ("/registered-models/delete", delete(registry::delete_model)),
        ("/registered-models/get", get(registry::get_model)),
        (
            "/registered-models/search",
            get(registry::search_models).post(registry::search_models),
        ),
        (
            "/registered-models/get-latest-versions",
            post(registry::get_latest_versions).get(registry::get_latest_versions),
        ),
        ("/registered-models/set-tag", post(registry::set_model_tag)),
        (
            "/registered-models/delete-tag",
            delete(registry::delete_model_tag),
        ),
        (
            "/registered-models/alias",
            post(registry::set_alias)
                .delete(registry::delete_alias)
                .get(registry::get_by_alias),
        ),
        ("/model-versions/create", post(registry::create_version)),
        ("/model-versions/update", patch(registry::update_version)),
        (
            "/model-versions/transition-stage",
            post(registry::transition_stage),
        ),
        ("/model-versions/delete", delete(registry::delete_version)),
        ("/model-versions/get", get(registry::get_version)),
        (
            "/model-versions/search",
            get(registry::search_versions).post(registry::search_versions),
        ),
        (
            "/model-versions/get-download-uri",
            get(registry::download_uri),
        ),
        ("/model-versions/set-tag", post(registry::set_version_tag)),
        (
            "/model-versions/delete-tag",
            delete(registry::delete_version_tag),
        ),
    ]
}

/// Every route the router serves, with its full path.
fn all_routes() -> Vec<(String, MethodRouter<AppState>)> {
    let mut routes: Vec<(String, MethodRouter<AppState>)> = vec![
        ("/health".into(), get(meta::health)),
        ("/version".into(), get(meta::version)),
        ("/get-artifact".into(), get(artifacts::get_run_artifact)),
        (
            "/model-versions/get-artifact".into(),
            get(artifacts::get_model_version_artifact),
        ),
        (
            "/api/2.0/cairn/audit/events".into(),
            get(users::audit_events),
        ),
    ];
    for prefix in API_PREFIXES {
        for (path, handler) in mlflow_routes()
            .into_iter()
            .chain(registry_routes())
            .chain(account_routes())
        {
            routes.push((format!("{prefix}{path}"), handler));
        }
    }
    for prefix in ARTIFACT_PREFIXES {
        for (path, handler) in artifact_routes() {
            routes.push((format!("{prefix}{path}"), handler));
        }
    }
    routes
}

async fn method_not_allowed(method: Method, req: Request) -> ApiError {
    ApiError::new(
        ErrorCode::BadRequest,
        format!("Method {method} is not allowed for {}", req.uri().path()),
    )
}

/// Builds the whole application router with the default hardening (loopback and private
/// hosts, no cross-origin access, 120 s API time limit).
pub fn router(state: AppState) -> Router {
    router_with(state, SecurityConfig::default())
}

/// Builds the whole application router with the given hardening.
pub fn router_with(state: AppState, security: SecurityConfig) -> Router {
    let cors = cors_layer(&security.cors_allowed_origins);
    let access = state.access().clone();
    let auth = access
        .authenticator
        .clone()
        .map(|a| axum::middleware::from_fn_with_state(a, crate::auth::authenticate));
    // Authentication off (no authenticator): every request may do anything, but is still
    // audited as `anonymous`.
    let gate = Arc::new(access);
    let security = Arc::new(security);
    let mut app: Router<AppState> = Router::new();
    for (path, handler) in all_routes() {
        app = app.route(&path, handler);
    }
    let layers = ServiceBuilder::new()
        .layer(axum::middleware::map_request(drop_unusable_request_id))
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
        .layer(
            TraceLayer::new_for_http().make_span_with(|req: &Request| {
                let id = req
                    .headers()
                    .get("x-request-id")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("");
                tracing::info_span!("request", request_id = %id, method = %req.method(), path = %req.uri().path())
            })
            // One access-log line per request, carrying the request id from the span.
            .on_response(
                DefaultOnResponse::new()
                    .level(tracing::Level::INFO)
                    .latency_unit(LatencyUnit::Micros),
            ),
        )
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(CatchPanicLayer::custom(panic_response))
        .layer(axum::middleware::from_fn(server_timing))
        .layer(axum::middleware::from_fn_with_state(security, harden))
        .option_layer(cors)
        .option_layer(auth)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES));
    // Authorization runs on matched routes only (so unknown paths still get 404), with
    // the route's pattern at hand to look its rule up.
    app.route_layer(axum::middleware::from_fn_with_state(gate, authorize))
        .fallback(meta::not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(layers)
        .with_state(state)
}

/// CORS headers for the configured origins only; none at all by default.
fn cors_layer(origins: &[String]) -> Option<CorsLayer> {
    if origins.is_empty() {
        return None;
    }
    let any = origins.iter().any(|o| o == "*");
    let allowed = origins.to_vec();
    let layer = CorsLayer::new()
        .allow_origin(AllowOrigin::predicate(move |origin, _| {
            origin
                .to_str()
                .is_ok_and(|o| crate::security::origin_allowed(&allowed, o))
        }))
        .allow_methods([
            Method::GET,
            Method::POST,
            Method::PUT,
            Method::PATCH,
            Method::DELETE,
            Method::OPTIONS,
        ])
        .allow_headers(AllowHeaders::mirror_request())
        // Credentials with a wildcard origin would let any site act as the user.
        .allow_credentials(!any);
    Some(layer)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::permissions::rule_for;
    use axum::body::Body;
    use cairn_artifacts::ArtifactRepo;
    use cairn_core::service::{TrackingConfig, TrackingService};
    use cairn_store_sqlite::{SqliteConfig, SqliteStore};
    use tower::ServiceExt;

    /// Deny by default, checked from the router's side: every (method, path) the router
    /// answers with anything but 405 must have a rule in `permissions::RULES`. A route
    /// added without one fails here (and is refused with 403 at run time).
    #[tokio::test]
    async fn every_route_the_router_serves_has_a_permission_rule() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(
            SqliteStore::open(&SqliteConfig::new(dir.path().join("db.sqlite")))
                .await
                .unwrap(),
        );
        let tracking = TrackingService::new(
            store.clone(),
            TrackingConfig {
                default_artifact_root: "mlflow-artifacts:/".into(),
            },
        );
        let repo = ArtifactRepo::open(&dir.path().join("artifacts").display().to_string()).unwrap();
        let artifacts = cairn_artifacts::ArtifactService::new(repo, store.clone());
        let registry = cairn_core::service::RegistryService::new(store.clone(), store.clone());
        let state = AppState::new(
            tracking,
            registry,
            artifacts,
            crate::AccessControl::open(store.clone()),
        );
        let app = router(state);
        let methods = [
            Method::GET,
            Method::POST,
            Method::PUT,
            Method::PATCH,
            Method::DELETE,
        ];
        let mut served = 0;
        let mut missing = Vec::new();
        for (pattern, _) in all_routes() {
            let concrete = pattern
                .replace("{model_id}", "m-1")
                .replace("{tag_key}", "k")
                .replace("{*path}", "1/x");
            for method in &methods {
                let req = Request::builder()
                    .method(method.clone())
                    .uri(&concrete)
                    .header("host", "localhost")
                    .body(Body::empty())
                    .unwrap();
                let response = app.clone().oneshot(req).await.unwrap();
                let body = axum::body::to_bytes(response.into_body(), usize::MAX)
                    .await
                    .unwrap();
                // The router's answer for a path it knows under another method.
                if String::from_utf8_lossy(&body).contains("is not allowed for") {
                    continue;
                }
                served += 1;
                if rule_for(method, &pattern).is_none() {
                    missing.push(format!("{method} {pattern}"));
                }
            }
        }
        assert!(
            missing.is_empty(),
            "routes without a permission rule: {missing:#?}"
        );
        // The walk really reached the routes (4 API prefixes x ~90 routes, and more).
        assert!(served > 300, "only {served} routes answered");
    }
}
