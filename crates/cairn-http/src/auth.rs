//! Authentication: who is calling. With authentication on, every request except the
//! health checks must carry credentials the `mlflow` client sends: HTTP Basic
//! (`MLFLOW_TRACKING_USERNAME` / `MLFLOW_TRACKING_PASSWORD`).
//!
//! Passwords are stored and checked as argon2id hashes. Checking one costs tens of
//! milliseconds by design, so a successful check is remembered for a short time under a
//! keyed SHA-256 of the credentials (the key is random per process, so the cache holds
//! nothing that could be replayed elsewhere or reversed offline); MLflow's basic auth,
//! which hashes on every request, was 40–90× slower than without it (mlflow#9684).
//! Failed checks are never cached, and each costs the full hash.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use cairn_api::ErrorCode;
use rand_core::{OsRng, RngCore};
use sha2::{Digest, Sha256};

use crate::error::ApiError;

/// How long a verified credential is trusted without hashing again.
const CACHE_TTL: Duration = Duration::from_secs(300);
/// Most credentials remembered at once (beyond it the cache is cleared).
const CACHE_CAPACITY: usize = 10_000;
/// Failed sign-ins per username answered at once, within `FAILURE_WINDOW`.
const FREE_FAILURES: u32 = 3;
/// The hold on the first failure past the free ones; it doubles with each further one.
const FIRST_FAILURE_DELAY: Duration = Duration::from_millis(250);
/// The longest hold.
const MAX_FAILURE_DELAY: Duration = Duration::from_secs(8);
/// How long failures are remembered.
const FAILURE_WINDOW: Duration = Duration::from_secs(300);
/// Paths answered without credentials (load-balancer health checks).
const OPEN_PATHS: &[&str] = &["/health", "/version"];

/// Who made a request and how they proved it; put in the request's extensions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Principal {
    pub username: String,
    pub is_admin: bool,
    /// `basic` (username and password).
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

struct Account {
    username: String,
    phc: String,
    is_admin: bool,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let users: Vec<&str> = self.accounts.iter().map(|a| a.username.as_str()).collect();
        f.debug_struct("Authenticator")
            .field("users", &users)
            .finish()
    }
}

/// Checks credentials against the configured accounts.
pub struct Authenticator {
    accounts: Vec<Account>,
    cache_key: [u8; 32],
    cache: Mutex<HashMap<[u8; 32], (usize, Instant)>>,
    /// How many full argon2 verifications ran (for tests and metrics).
    verifications: std::sync::atomic::AtomicU64,
    /// Recent failed sign-ins per username: (count, first failure of the window).
    failures: Mutex<HashMap<String, (u32, Instant)>>,
}

impl Authenticator {
    /// An authenticator with one administrator account.
    pub fn with_admin(username: &str, password: &str) -> Result<Authenticator, String> {
        if username.is_empty() || username.contains(':') {
            return Err("the admin username must be non-empty and contain no ':'".into());
        }
        if password.len() < 8 {
            return Err("the admin password must be at least 8 characters".into());
        }
        let mut cache_key = [0u8; 32];
        OsRng.fill_bytes(&mut cache_key);
        Ok(Authenticator {
            accounts: vec![Account {
                username: username.to_string(),
                phc: hash_password(password)?,
                is_admin: true,
            }],
            cache_key,
            cache: Mutex::new(HashMap::new()),
            verifications: std::sync::atomic::AtomicU64::new(0),
            failures: Mutex::new(HashMap::new()),
        })
    }

    /// Records a failed sign-in for `username` and returns how long to hold the 401: free
    /// for the first few, then doubling up to `MAX_FAILURE_DELAY`, within a window of
    /// `FAILURE_WINDOW`. Only failures wait, so a user who knows the password is never
    /// locked out by someone guessing it.
    pub fn failure_delay(&self, username: &str) -> Duration {
        let Ok(mut failures) = self.failures.lock() else {
            return MAX_FAILURE_DELAY;
        };
        if failures.len() >= CACHE_CAPACITY {
            failures.retain(|_, (_, since)| since.elapsed() < FAILURE_WINDOW);
        }
        let entry = failures
            .entry(username.to_string())
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

    /// Forgets the failed sign-ins of `username` (after a successful one).
    pub fn clear_failures(&self, username: &str) {
        if let Ok(mut failures) = self.failures.lock() {
            failures.remove(username);
        }
    }

    /// Full argon2 verifications so far.
    pub fn verifications(&self) -> u64 {
        self.verifications
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    fn fingerprint(&self, username: &str, password: &str) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(self.cache_key);
        h.update((username.len() as u64).to_le_bytes());
        h.update(username.as_bytes());
        h.update(password.as_bytes());
        h.finalize().into()
    }

    /// The principal for credentials verified recently, without hashing: cheap enough to
    /// run on an async worker.
    pub fn cached_basic(&self, username: &str, password: &str) -> Option<Principal> {
        self.cached(&self.fingerprint(username, password))
    }

    fn cached(&self, key: &[u8; 32]) -> Option<Principal> {
        let cache = self.cache.lock().ok()?;
        let (index, at) = cache.get(key)?;
        if at.elapsed() >= CACHE_TTL {
            return None;
        }
        self.accounts.get(*index).map(|a| principal(a, "basic"))
    }

    /// The principal for a username and password, or `None`. Blocking (argon2) unless the
    /// credentials are cached: call it off the async workers.
    pub fn verify_basic(&self, username: &str, password: &str) -> Option<Principal> {
        let key = self.fingerprint(username, password);
        if let Some(p) = self.cached(&key) {
            return Some(p);
        }
        self.verifications
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let found = self.accounts.iter().position(|a| a.username == username);
        // An unknown user costs a hash too, so timing does not tell which names exist.
        let phc = found.map_or(DUMMY_PHC.as_str(), |i| self.accounts[i].phc.as_str());
        let ok = PasswordHash::new(phc).is_ok_and(|parsed| {
            Argon2::default()
                .verify_password(password.as_bytes(), &parsed)
                .is_ok()
        });
        let index = found.filter(|_| ok)?;
        if let Ok(mut cache) = self.cache.lock() {
            if cache.len() >= CACHE_CAPACITY {
                cache.clear();
            }
            cache.insert(key, (index, Instant::now()));
        }
        Some(principal(&self.accounts[index], "basic"))
    }
}

fn principal(a: &Account, method: &'static str) -> Principal {
    Principal {
        username: a.username.clone(),
        is_admin: a.is_admin,
        method,
    }
}

/// A hash of a random password, checked against when the username is unknown.
static DUMMY_PHC: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    let mut pw = [0u8; 16];
    OsRng.fill_bytes(&mut pw);
    hash_password(&base64::engine::general_purpose::STANDARD.encode(pw)).unwrap_or_default()
});

fn unauthenticated(message: &str) -> Response {
    let mut response = ApiError::new(ErrorCode::Unauthenticated, message).into_response();
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Basic realm=\"cairn\", charset=\"UTF-8\""),
    );
    response
}

/// `username:password` from an `Authorization: Basic ...` value.
fn basic_credentials(value: &str) -> Option<(String, String)> {
    let (scheme, rest) = value.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(rest.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, password) = text.split_once(':')?;
    Some((user.to_string(), password.to_string()))
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
        return unauthenticated(
            "You are not authenticated. Please see the documentation for details: set \
             MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD",
        );
    };
    let Some((user, password)) = basic_credentials(value) else {
        // (Malformed headers are refused below without touching the failure counts.)
        return unauthenticated(
            "Unsupported Authorization header: this server takes HTTP Basic credentials \
             (MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD)",
        );
    };
    // The common case, a client seen recently, needs no thread hop.
    if let Some(principal) = auth.cached_basic(&user, &password) {
        req.extensions_mut().insert(principal);
        return next.run(req).await;
    }
    let checker = auth.clone();
    let name = user.clone();
    let verified =
        tokio::task::spawn_blocking(move || checker.verify_basic(&name, &password)).await;
    match verified {
        Ok(Some(principal)) => {
            auth.clear_failures(&user);
            req.extensions_mut().insert(principal);
            next.run(req).await
        }
        Ok(None) => {
            // Brute-force slow-down: repeated failures for one name are answered later
            // and later (the hold is not on a worker thread).
            let hold = auth.failure_delay(&user);
            if !hold.is_zero() {
                tracing::warn!(user = %user, hold_ms = hold.as_millis() as u64, "repeated failed sign-ins");
                tokio::time::sleep(hold).await;
            }
            unauthenticated("Incorrect username or password")
        }
        Err(e) => {
            tracing::error!(error = %e, "credential check failed");
            ApiError::new(ErrorCode::InternalError, "credential check failed").into_response()
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn verifies_and_caches_only_successes() {
        let auth = Authenticator::with_admin("admin", "correct horse").unwrap();
        assert_eq!(auth.verify_basic("admin", "wrong password"), None);
        assert_eq!(auth.verify_basic("nobody", "correct horse"), None);
        assert_eq!(auth.verifications(), 2);
        let p = auth.verify_basic("admin", "correct horse").unwrap();
        assert_eq!(
            (p.username.as_str(), p.is_admin, p.method),
            ("admin", true, "basic")
        );
        assert_eq!(auth.verifications(), 3);
        // Cached: no new argon2 run.
        assert!(auth.verify_basic("admin", "correct horse").is_some());
        assert_eq!(auth.verifications(), 3);
        // Failures are never cached.
        assert_eq!(auth.verify_basic("admin", "wrong password"), None);
        assert_eq!(auth.verifications(), 4);
    }

    #[test]
    fn failures_are_held_longer_and_longer_per_name() {
        let auth = Authenticator::with_admin("admin", "correct horse").unwrap();
        let holds: Vec<Duration> = (0..9).map(|_| auth.failure_delay("admin")).collect();
        assert_eq!(&holds[..3], &[Duration::ZERO; 3]);
        assert_eq!(holds[3], Duration::from_millis(250));
        assert_eq!(holds[4], Duration::from_millis(500));
        assert_eq!(holds[5], Duration::from_secs(1));
        assert_eq!(holds[8], MAX_FAILURE_DELAY);
        // Another name has its own count.
        assert_eq!(auth.failure_delay("alice"), Duration::ZERO);
    }

    #[test]
    fn refuses_weak_bootstrap_settings_and_parses_basic() {
        assert!(Authenticator::with_admin("admin", "short").is_err());
        assert!(Authenticator::with_admin("a:b", "long enough").is_err());
        assert!(hash_password("x").unwrap().starts_with("$argon2id$"));
        let header = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode("alice:pa:ss")
        );
        assert_eq!(
            basic_credentials(&header),
            Some(("alice".into(), "pa:ss".into()))
        );
        assert_eq!(basic_credentials("Bearer abc"), None);
        assert_eq!(basic_credentials("Basic !!!"), None);
    }
}
