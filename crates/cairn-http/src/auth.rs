//! Authentication: who is calling. With authentication on, every request except the
//! health checks must carry credentials the `mlflow` client sends: HTTP Basic
//! (`MLFLOW_TRACKING_USERNAME` / `MLFLOW_TRACKING_PASSWORD`) or a bearer personal access
//! token (`MLFLOW_TRACKING_TOKEN`).
//!
//! Accounts live in the database ([`AuthStore`]), so every replica sees the same users.
//! Passwords are stored and checked as argon2id hashes. Checking one costs tens of
//! milliseconds by design, so a successful check is remembered for a minute under a
//! keyed SHA-256 of the credentials (the key is random per process, so the cache holds
//! nothing that could be replayed elsewhere or reversed offline); MLflow's basic auth,
//! which hashes on every request, was 40–90× slower than without it (mlflow#9684).
//! Failed checks are never cached, and each costs the full hash. The cache only saves
//! the hash: the permission layer reads the account fresh on every request, so a deleted
//! user or a revoked admin flag takes effect at once on every replica.
//!
//! Tokens are 32 random bytes; only their SHA-256 is stored, which is enough for a
//! secret of that strength (no slow hash needed), so a token costs one indexed lookup.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderValue};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use cairn_api::ErrorCode;
use cairn_core::auth::AuthStore;
use cairn_core::CoreError;
use rand_core::{OsRng, RngCore};
use sha2::{Digest, Sha256};

use crate::error::ApiError;

/// How long a verified credential is trusted without hashing again.
const CACHE_TTL: Duration = Duration::from_secs(60);
/// Most credentials remembered at once (beyond it the cache is cleared).
const CACHE_CAPACITY: usize = 10_000;
/// Failed sign-ins per username or client address answered at once, within
/// `FAILURE_WINDOW`.
const FREE_FAILURES: u32 = 3;
/// The hold on the first failure past the free ones; it doubles with each further one.
const FIRST_FAILURE_DELAY: Duration = Duration::from_millis(250);
/// The longest hold.
const MAX_FAILURE_DELAY: Duration = Duration::from_secs(8);
/// How long failures are remembered.
const FAILURE_WINDOW: Duration = Duration::from_secs(300);
/// Paths answered without credentials (load-balancer health checks).
const OPEN_PATHS: &[&str] = &["/health", "/version"];
/// Every personal access token starts with this, so secret scanners can find leaked ones.
pub const TOKEN_PREFIX: &str = "cairn_pat_";
/// Shortest password accepted for a new account or a password change.
pub const MIN_PASSWORD_LEN: usize = 8;

/// Who made a request and how they proved it; put in the request's extensions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Principal {
    pub username: String,
    /// As of sign-in; permission checks read it fresh from the store.
    pub is_admin: bool,
    /// An administrator by the identity provider's group (`--oidc-admin-group`), for
    /// this token only: never stored on the account.
    pub admin_by_group: bool,
    /// `basic` (username and password) or `token` (personal access token).
    pub method: &'static str,
}

/// An argon2id hash of `password` in PHC string form.
pub fn hash_password(password: &str) -> Result<String, String> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| format!("cannot hash the password: {e}"))
}

/// Whether `password` matches the PHC hash (blocking: tens of milliseconds).
pub fn password_matches(password: &str, phc: &str) -> bool {
    PasswordHash::new(phc).is_ok_and(|parsed| {
        Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok()
    })
}

/// A new token secret: the prefix and 32 random bytes, base64url.
pub fn new_token_secret() -> String {
    let mut bytes = [0u8; 32];
    OsRng.fill_bytes(&mut bytes);
    format!(
        "{TOKEN_PREFIX}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    )
}

/// The SHA-256 (hex) a token is stored and looked up under.
pub fn token_digest(secret: &str) -> String {
    Sha256::digest(secret.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator").finish_non_exhaustive()
    }
}

/// Checks credentials against the accounts and tokens in the store.
pub struct Authenticator {
    store: Arc<dyn AuthStore>,
    cache_key: [u8; 32],
    /// Verified credentials and until when they are trusted without checking again.
    cache: Mutex<HashMap<[u8; 32], (Principal, Instant)>>,
    /// How many full argon2 verifications ran (for tests and metrics).
    verifications: std::sync::atomic::AtomicU64,
    /// Recent failed sign-ins per username and per client address: (count, first
    /// failure of the window).
    failures: Mutex<HashMap<String, (u32, Instant)>>,
    /// Single sign-on, when configured.
    oidc: Option<crate::oidc::OidcVerifier>,
}

/// The password hash of accounts created by single sign-on: not a PHC string, so no
/// password ever matches it, and the mark that lets a provider's token sign in as the
/// account (a provider can never take over a local account of the same name).
pub const SSO_ACCOUNT_MARK: &str = "!sso";

impl Authenticator {
    /// An authenticator over the accounts in `store`.
    pub fn new(store: Arc<dyn AuthStore>) -> Authenticator {
        let mut cache_key = [0u8; 32];
        OsRng.fill_bytes(&mut cache_key);
        Authenticator {
            store,
            cache_key,
            cache: Mutex::new(HashMap::new()),
            verifications: std::sync::atomic::AtomicU64::new(0),
            failures: Mutex::new(HashMap::new()),
            oidc: None,
        }
    }

    /// Also accepts bearer JWTs from an OpenID Connect provider.
    pub fn with_oidc(mut self, verifier: crate::oidc::OidcVerifier) -> Authenticator {
        self.oidc = Some(verifier);
        self
    }

    /// The store behind it.
    pub fn store(&self) -> &Arc<dyn AuthStore> {
        &self.store
    }

    /// Creates the administrator account on first start. Once it exists the configured
    /// password is not applied again (rotate it with `users/update-password`), but the
    /// account is made an administrator again if someone cleared the flag.
    pub async fn ensure_admin(&self, username: &str, password: &str) -> Result<(), String> {
        if username.is_empty() || username.contains(':') {
            return Err("the admin username must be non-empty and contain no ':'".into());
        }
        if password.len() < MIN_PASSWORD_LEN {
            return Err(format!(
                "the admin password must be at least {MIN_PASSWORD_LEN} characters"
            ));
        }
        match self.store.get_user(username).await {
            Ok(user) if user.is_admin => Ok(()),
            Ok(_) => self
                .store
                .set_admin(username, true)
                .await
                .map_err(|e| e.to_string()),
            Err(CoreError::NotFound(_)) => {
                let owned = password.to_string();
                let phc = tokio::task::spawn_blocking(move || hash_password(&owned))
                    .await
                    .map_err(|e| e.to_string())??;
                match self.store.create_user(username, &phc, true).await {
                    // Another replica created it first.
                    Ok(_) | Err(CoreError::AlreadyExists(_)) => Ok(()),
                    Err(e) => Err(e.to_string()),
                }
            }
            Err(e) => Err(e.to_string()),
        }
    }

    /// Records a failed sign-in under `key` (a username or a client address) and returns
    /// how long to hold the 401: free for the first few, then doubling up to
    /// `MAX_FAILURE_DELAY`, within a window of `FAILURE_WINDOW`. Only failures wait, so a
    /// user who knows the password is never locked out by someone guessing it.
    pub fn failure_delay(&self, key: &str) -> Duration {
        let Ok(mut failures) = self.failures.lock() else {
            return MAX_FAILURE_DELAY;
        };
        if failures.len() >= CACHE_CAPACITY {
            failures.retain(|_, (_, since)| since.elapsed() < FAILURE_WINDOW);
        }
        let entry = failures
            .entry(key.to_string())
            .or_insert((0, Instant::now()));
        if entry.1.elapsed() >= FAILURE_WINDOW {
            *entry = (0, Instant::now());
        }
        entry.0 = entry.0.saturating_add(1);
        match entry.0.checked_sub(FREE_FAILURES) {
            None | Some(0) => Duration::ZERO,
            Some(extra) => {
                (FIRST_FAILURE_DELAY * 2u32.saturating_pow(extra - 1)).min(MAX_FAILURE_DELAY)
            }
        }
    }

    /// Forgets the failed sign-ins under `key` (after a successful one).
    pub fn clear_failures(&self, key: &str) {
        if let Ok(mut failures) = self.failures.lock() {
            failures.remove(key);
        }
    }

    /// Drops every cached credential of `username` (after a password change, a flag
    /// change, a token revocation or a deletion), so this replica asks the store again.
    pub fn forget_user(&self, username: &str) {
        if let Ok(mut cache) = self.cache.lock() {
            cache.retain(|_, (p, _)| p.username != username);
        }
    }

    /// Full argon2 verifications so far.
    pub fn verifications(&self) -> u64 {
        self.verifications
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    fn fingerprint(&self, kind: &str, username: &str, secret: &str) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(self.cache_key);
        h.update(kind.as_bytes());
        h.update((username.len() as u64).to_le_bytes());
        h.update(username.as_bytes());
        h.update(secret.as_bytes());
        h.finalize().into()
    }

    fn cached(&self, key: &[u8; 32]) -> Option<Principal> {
        let cache = self.cache.lock().ok()?;
        let (principal, until) = cache.get(key)?;
        (Instant::now() < *until).then(|| principal.clone())
    }

    fn remember(&self, key: [u8; 32], principal: &Principal, ttl: Duration) {
        if let Ok(mut cache) = self.cache.lock() {
            if cache.len() >= CACHE_CAPACITY {
                cache.clear();
            }
            cache.insert(key, (principal.clone(), Instant::now() + ttl));
        }
    }

    /// The principal for a username and password, or `None`. Hashes (on a blocking
    /// thread) unless the credentials were verified within the last minute.
    pub async fn verify_basic(
        &self,
        username: &str,
        password: &str,
    ) -> Result<Option<Principal>, CoreError> {
        let key = self.fingerprint("basic", username, password);
        if let Some(p) = self.cached(&key) {
            return Ok(Some(p));
        }
        let credential = self.store.credential(username).await?;
        self.verifications
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        // An unknown user costs a hash too, so timing does not tell which names exist.
        let phc = credential
            .as_ref()
            .map_or_else(|| DUMMY_PHC.clone(), |c| c.password_hash.clone());
        let owned = password.to_string();
        let ok = tokio::task::spawn_blocking(move || password_matches(&owned, &phc))
            .await
            .map_err(|e| CoreError::Internal(format!("credential check failed: {e}")))?;
        let Some(credential) = credential.filter(|_| ok) else {
            return Ok(None);
        };
        let principal = Principal {
            username: credential.user.username,
            is_admin: credential.user.is_admin,
            admin_by_group: false,
            method: "basic",
        };
        self.remember(key, &principal, CACHE_TTL);
        Ok(Some(principal))
    }

    /// The principal for a bearer token: a personal access token (unknown, expired or
    /// revoked: `None`), or, with single sign-on configured, a provider-issued JWT.
    pub async fn verify_token(&self, secret: &str) -> Result<Option<Principal>, CoreError> {
        let key = self.fingerprint("token", "", secret);
        if let Some(p) = self.cached(&key) {
            return Ok(Some(p));
        }
        if !secret.starts_with(TOKEN_PREFIX) {
            return match &self.oidc {
                Some(oidc) if crate::oidc::looks_like_jwt(secret) => {
                    self.verify_oidc(oidc, key, secret).await
                }
                _ => Ok(None),
            };
        }
        let Some(user) = self
            .store
            .token_owner(&token_digest(secret), crate::permissions::now_ms())
            .await?
        else {
            return Ok(None);
        };
        let principal = Principal {
            username: user.username,
            is_admin: user.is_admin,
            admin_by_group: false,
            method: "token",
        };
        self.remember(key, &principal, CACHE_TTL);
        Ok(Some(principal))
    }

    /// A provider-issued token: verified against the provider's keys, its user created on
    /// first sign-in (with no password and no administrator rights), and trusted until
    /// it expires or for `CACHE_TTL`, whichever is sooner.
    async fn verify_oidc(
        &self,
        oidc: &crate::oidc::OidcVerifier,
        key: [u8; 32],
        token: &str,
    ) -> Result<Option<Principal>, CoreError> {
        let Some(identity) = oidc.verify(token).await? else {
            return Ok(None);
        };
        let user = match self.store.credential(&identity.username).await? {
            Some(c) if c.password_hash == SSO_ACCOUNT_MARK => c.user,
            Some(_) => {
                tracing::warn!(user = %identity.username, "an identity provider token names a local account; refused");
                return Ok(None);
            }
            None => match self
                .store
                .create_user(&identity.username, SSO_ACCOUNT_MARK, false)
                .await
            {
                Ok(user) => user,
                // Another request or replica created it first.
                Err(CoreError::AlreadyExists(_)) => {
                    return match self.store.credential(&identity.username).await? {
                        Some(c) if c.password_hash == SSO_ACCOUNT_MARK => {
                            Ok(Some(self.oidc_principal(key, c.user, &identity)))
                        }
                        _ => Ok(None),
                    };
                }
                Err(e) => return Err(e),
            },
        };
        Ok(Some(self.oidc_principal(key, user, &identity)))
    }

    fn oidc_principal(
        &self,
        key: [u8; 32],
        user: cairn_core::auth::User,
        identity: &crate::oidc::Identity,
    ) -> Principal {
        let exp = identity.expires_at;
        let principal = Principal {
            username: user.username,
            is_admin: user.is_admin,
            // The provider's group makes an administrator for as long as its token says
            // so; the stored account keeps its own flag (false unless set by an admin).
            admin_by_group: identity.admin,
            method: "oidc",
        };
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let left = Duration::from_secs(exp.saturating_sub(now));
        self.remember(key, &principal, left.min(CACHE_TTL));
        principal
    }
}

/// A hash of a random password, checked against when the username is unknown.
static DUMMY_PHC: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    let mut pw = [0u8; 16];
    OsRng.fill_bytes(&mut pw);
    hash_password(&base64::engine::general_purpose::STANDARD.encode(pw)).unwrap_or_default()
});

/// 401 with MLflow's code and the Basic challenge.
pub(crate) fn unauthenticated(message: &str) -> Response {
    let mut response = ApiError::new(ErrorCode::Unauthenticated, message).into_response();
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Basic realm=\"cairn\", charset=\"UTF-8\""),
    );
    response
}

/// Credentials from an `Authorization` header value.
#[derive(Debug, PartialEq, Eq)]
enum Credentials {
    Basic(String, String),
    Bearer(String),
}

fn parse_authorization(value: &str) -> Option<Credentials> {
    let (scheme, rest) = value.trim().split_once(' ')?;
    if scheme.eq_ignore_ascii_case("bearer") {
        let token = rest.trim();
        return (!token.is_empty()).then(|| Credentials::Bearer(token.to_string()));
    }
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(rest.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, password) = text.split_once(':')?;
    Some(Credentials::Basic(user.to_string(), password.to_string()))
}

fn client_ip(req: &Request) -> Option<IpAddr> {
    req.extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip())
}

/// Requires valid credentials on every path but the health checks.
pub(crate) async fn authenticate(
    State(auth): State<Arc<Authenticator>>,
    mut req: Request,
    next: Next,
) -> Response {
    if OPEN_PATHS.contains(&req.uri().path()) {
        return next.run(req).await;
    }
    let Some(value) = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    else {
        return refuse(
            &auth,
            &req,
            None,
            "You are not authenticated. Please see the documentation for details: set \
             MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD, or MLFLOW_TRACKING_TOKEN",
        )
        .await;
    };
    let Some(credentials) = parse_authorization(value) else {
        return refuse(
            &auth,
            &req,
            None,
            "Unsupported Authorization header: this server takes HTTP Basic credentials \
             (MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD) or a bearer token \
             (MLFLOW_TRACKING_TOKEN)",
        )
        .await;
    };
    let (verified, name) = match &credentials {
        Credentials::Basic(user, password) => {
            (auth.verify_basic(user, password).await, Some(user.clone()))
        }
        Credentials::Bearer(token) => (auth.verify_token(token).await, None),
    };
    let ip_key = client_ip(&req).map(|ip| format!("ip:{ip}"));
    match verified {
        Ok(Some(principal)) => {
            if principal.method == "basic" {
                auth.clear_failures(&format!("user:{}", principal.username));
            }
            req.extensions_mut().insert(principal);
            next.run(req).await
        }
        Ok(None) => {
            // Brute-force slow-down: repeated failures for one name or from one address
            // are answered later and later (the hold is not on a worker thread).
            let mut hold = Duration::ZERO;
            if let Some(user) = &name {
                hold = hold.max(auth.failure_delay(&format!("user:{user}")));
            }
            if let Some(ip) = &ip_key {
                hold = hold.max(auth.failure_delay(ip));
            }
            if !hold.is_zero() {
                tracing::warn!(user = ?name, client = ?ip_key, hold_ms = hold.as_millis() as u64, "repeated failed sign-ins");
                tokio::time::sleep(hold).await;
            }
            let message = match credentials {
                Credentials::Basic(..) => "Incorrect username or password",
                Credentials::Bearer(_) => "The access token is invalid, expired or revoked",
            };
            // (A provider-issued token that does not verify lands here too.)
            refuse(&auth, &req, name, message).await
        }
        Err(e) => {
            tracing::error!(error = %e, "credential check failed");
            ApiError::from(e).into_response()
        }
    }
}

/// A 401, recorded in the audit log (with the name that was tried, if any).
fn refuse(
    auth: &Authenticator,
    req: &Request,
    tried: Option<String>,
    message: &'static str,
) -> impl std::future::Future<Output = Response> + Send + 'static {
    let action = format!("{} {}", req.method(), req.uri().path());
    let mut event = crate::permissions::audit_event(req, None, &action);
    if let Some(name) = tried {
        event.actor = name;
        event.auth_method = "basic".into();
    }
    event.outcome = "unauthenticated".into();
    let store = auth.store.clone();
    async move {
        crate::permissions::append_detached(&store, event).await;
        unauthenticated(message)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use cairn_store_sqlite::{SqliteConfig, SqliteStore};

    async fn authenticator() -> (Authenticator, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&SqliteConfig::new(dir.path().join("db.sqlite")))
            .await
            .unwrap();
        (Authenticator::new(Arc::new(store)), dir)
    }

    #[tokio::test]
    async fn verifies_and_caches_only_successes() {
        let (auth, _dir) = authenticator().await;
        auth.ensure_admin("admin", "correct horse").await.unwrap();
        let check = |u: &'static str, p: &'static str| {
            let auth = &auth;
            async move { auth.verify_basic(u, p).await.unwrap() }
        };
        assert_eq!(check("admin", "wrong password").await, None);
        assert_eq!(check("nobody", "correct horse").await, None);
        assert_eq!(auth.verifications(), 2);
        let p = check("admin", "correct horse").await.unwrap();
        assert_eq!(
            (p.username.as_str(), p.is_admin, p.method),
            ("admin", true, "basic")
        );
        assert_eq!(auth.verifications(), 3);
        // Cached: no new argon2 run.
        assert!(check("admin", "correct horse").await.is_some());
        assert_eq!(auth.verifications(), 3);
        // Failures are never cached.
        assert_eq!(check("admin", "wrong password").await, None);
        assert_eq!(auth.verifications(), 4);
        // Forgetting the user makes the next check hash again.
        auth.forget_user("admin");
        assert!(check("admin", "correct horse").await.is_some());
        assert_eq!(auth.verifications(), 5);
    }

    #[tokio::test]
    async fn the_bootstrap_admin_is_created_once() {
        let (auth, _dir) = authenticator().await;
        assert!(auth.ensure_admin("admin", "short").await.is_err());
        assert!(auth.ensure_admin("a:b", "long enough").await.is_err());
        auth.ensure_admin("admin", "first password").await.unwrap();
        // A later start with another password leaves the stored one alone.
        auth.ensure_admin("admin", "second password").await.unwrap();
        assert!(auth
            .verify_basic("admin", "first password")
            .await
            .unwrap()
            .is_some());
        assert!(auth
            .verify_basic("admin", "second password")
            .await
            .unwrap()
            .is_none());
        // The flag is restored if someone cleared it.
        auth.store().set_admin("admin", false).await.unwrap();
        auth.ensure_admin("admin", "first password").await.unwrap();
        assert!(auth.store().get_user("admin").await.unwrap().is_admin);
    }

    #[tokio::test]
    async fn tokens_are_found_by_digest_until_revoked() {
        let (auth, _dir) = authenticator().await;
        auth.ensure_admin("admin", "correct horse").await.unwrap();
        let secret = new_token_secret();
        assert!(secret.starts_with(TOKEN_PREFIX) && secret.len() > 40);
        let t = auth
            .store()
            .create_token("admin", "ci", &token_digest(&secret), 1, None)
            .await
            .unwrap();
        let p = auth.verify_token(&secret).await.unwrap().unwrap();
        assert_eq!((p.username.as_str(), p.method), ("admin", "token"));
        assert_eq!(auth.verify_token("cairn_pat_unknown").await.unwrap(), None);
        auth.store().revoke_token("admin", t.id, 2).await.unwrap();
        auth.forget_user("admin");
        assert_eq!(auth.verify_token(&secret).await.unwrap(), None);
    }

    #[tokio::test]
    async fn failures_are_held_longer_and_longer_per_key() {
        let (auth, _dir) = authenticator().await;
        let holds: Vec<Duration> = (0..9).map(|_| auth.failure_delay("user:admin")).collect();
        assert_eq!(&holds[..3], &[Duration::ZERO; 3]);
        assert_eq!(holds[3], Duration::from_millis(250));
        assert_eq!(holds[4], Duration::from_millis(500));
        assert_eq!(holds[5], Duration::from_secs(1));
        assert_eq!(holds[8], MAX_FAILURE_DELAY);
        // Another key has its own count.
        assert_eq!(auth.failure_delay("ip:10.0.0.1"), Duration::ZERO);
    }

    #[test]
    fn authorization_headers_parse() {
        assert!(hash_password("x").unwrap().starts_with("$argon2id$"));
        let header = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode("alice:pa:ss")
        );
        assert_eq!(
            parse_authorization(&header),
            Some(Credentials::Basic("alice".into(), "pa:ss".into()))
        );
        assert_eq!(
            parse_authorization("Bearer abc"),
            Some(Credentials::Bearer("abc".into()))
        );
        assert_eq!(parse_authorization("Bearer "), None);
        assert_eq!(parse_authorization("Basic !!!"), None);
        assert_eq!(parse_authorization("Digest x"), None);
    }
}
