//! Who may call the served models (`cairn serve --auth tracking`).
//!
//! The inference server keeps no users of its own: a caller's `Authorization` header
//! (Basic password, personal access token or OIDC bearer token — whatever the tracking
//! server accepts) is replayed to the tracking server against the resource the served
//! model comes from. A model route needs READ there: on the registered model for
//! `models:/name...`, on the run's experiment for `runs:/...` and `models:/m-...`.
//! Server-wide routes, and models from local or object-store paths, need only a caller
//! the tracking server recognises. Health probes are public.
//!
//! Answers (allow, unauthenticated, denied) are cached per credential and model for a
//! short time (`--auth-cache-ttl`), so a revoked token or grant stops working within it
//! and the hot path costs one hash and one map lookup. An unreachable tracking server
//! fails closed (503) and is never cached.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use crate::resolve::{ModelUri, TrackingClient};

/// Most cached answers kept; past this, expired ones go, then all of them.
const CACHE_LIMIT: usize = 50_000;

/// What a request needs from its caller.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Need<'a> {
    /// Health probes: no credentials.
    Public,
    /// Any caller the tracking server recognises.
    SignedIn,
    /// READ on the source of the served model of this name (an unknown name needs only
    /// a recognised caller; the route then answers 404).
    Model(&'a str),
}

/// Why a request was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("{0}")]
    Unauthenticated(String),
    #[error("{0}")]
    Denied(String),
    #[error("{0}")]
    Unavailable(String),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Verdict {
    Allow,
    Unauthenticated,
    Denied,
}

/// The tracking-server call that answers "may this caller read that?".
#[derive(Clone, Debug, PartialEq, Eq)]
enum Probe {
    CurrentUser,
    RegisteredModel(String),
    Run(String),
    LoggedModel(String),
}

impl Probe {
    fn for_uri(uri: &ModelUri) -> Probe {
        match uri {
            ModelUri::Alias { name, .. }
            | ModelUri::Version { name, .. }
            | ModelUri::Latest { name, .. } => Probe::RegisteredModel(name.clone()),
            ModelUri::LoggedModel { id } => Probe::LoggedModel(id.clone()),
            ModelUri::Run { run_id, .. } => Probe::Run(run_id.clone()),
            ModelUri::Local(_) | ModelUri::Store(_) => Probe::CurrentUser,
        }
    }

    /// Path and query of the call.
    fn request(&self) -> (String, Vec<(&'static str, &str)>) {
        const API: &str = "/api/2.0/mlflow";
        match self {
            Probe::CurrentUser => (format!("{API}/users/current"), vec![]),
            Probe::RegisteredModel(name) => (
                format!("{API}/registered-models/get"),
                vec![("name", name.as_str())],
            ),
            Probe::Run(id) => (format!("{API}/runs/get"), vec![("run_id", id.as_str())]),
            // The id is a single path segment of MLflow's own alphabet (m-<hex>); anything
            // else was refused when the URI was parsed, but encode it regardless.
            Probe::LoggedModel(id) => (
                format!("{API}/logged-models/{}", encode_segment(id)),
                vec![],
            ),
        }
    }
}

fn encode_segment(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.' {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// The authentication layer's state: the served models' probes and the answer cache.
pub struct Gate {
    tracking: TrackingClient,
    probes: HashMap<String, Probe>,
    /// The served model `/invocations` (without a name) reaches, when there is one.
    only: Option<String>,
    ttl: Duration,
    cache: Mutex<HashMap<[u8; 32], (Instant, Verdict)>>,
}

impl Gate {
    pub fn new(tracking: TrackingClient, models: &[(String, ModelUri)], ttl: Duration) -> Gate {
        let probes = models
            .iter()
            .map(|(name, uri)| (name.clone(), Probe::for_uri(uri)))
            .collect();
        let only = match models {
            [(name, _)] => Some(name.clone()),
            _ => None,
        };
        Gate {
            tracking,
            probes,
            only,
            ttl,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// What `/invocations` without a model name needs.
    pub fn unnamed_model(&self) -> Need<'_> {
        match &self.only {
            Some(name) => Need::Model(name),
            None => Need::SignedIn,
        }
    }

    /// Refuses to start in front of a tracking server that lets anonymous callers in:
    /// every check would then pass. An unreachable one is only logged (requests fail
    /// closed until it answers).
    pub async fn check_tracking_enforces_auth(&self) -> anyhow::Result<()> {
        let (path, _) = Probe::CurrentUser.request();
        match self.tracking.probe(&path, &[], None).await {
            Ok(401) => Ok(()),
            Ok(status) => anyhow::bail!(
                "--auth tracking: the tracking server answered {path} without credentials \
                 with HTTP {status}, not 401; it does not authenticate callers (start it with \
                 --auth), so it cannot vouch for the callers of this server"
            ),
            Err(e) => {
                tracing::warn!(error = %e, "cannot reach the tracking server to check that it authenticates callers; requests will be refused (503) until it answers");
                Ok(())
            }
        }
    }

    /// Lets the request through, or says why not.
    pub async fn check(&self, authorization: Option<&[u8]>, need: Need<'_>) -> Result<(), Refusal> {
        let probe = match need {
            Need::Public => return Ok(()),
            Need::SignedIn => &Probe::CurrentUser,
            Need::Model(name) => self.probes.get(name).unwrap_or(&Probe::CurrentUser),
        };
        let Some(authorization) = authorization.filter(|a| !a.is_empty()) else {
            return Err(Refusal::Unauthenticated(
                "authentication required: send the credentials of the tracking server \
                 (HTTP Basic or a bearer token) in the Authorization header"
                    .into(),
            ));
        };
        if reqwest::header::HeaderValue::from_bytes(authorization).is_err() {
            return Err(Refusal::Unauthenticated(
                "malformed Authorization header".into(),
            ));
        }
        let key = cache_key(authorization, need);
        let verdict = match self.cached(&key) {
            Some(v) => v,
            None => {
                let v = self.ask(authorization, probe).await?;
                self.remember(key, v);
                v
            }
        };
        match verdict {
            Verdict::Allow => Ok(()),
            Verdict::Unauthenticated => Err(Refusal::Unauthenticated(
                "the tracking server did not accept these credentials".into(),
            )),
            Verdict::Denied => Err(Refusal::Denied(match need {
                Need::Model(name) => format!("permission denied: READ on model '{name}' is needed"),
                _ => "permission denied".into(),
            })),
        }
    }

    async fn ask(&self, authorization: &[u8], probe: &Probe) -> Result<Verdict, Refusal> {
        let (path, query) = probe.request();
        let status = self
            .tracking
            .probe(&path, &query, Some(authorization))
            .await
            .map_err(|e| {
                Refusal::Unavailable(format!(
                    "cannot check the caller's credentials with the tracking server: {e}"
                ))
            })?;
        match status {
            200..=299 => Ok(Verdict::Allow),
            401 => Ok(Verdict::Unauthenticated),
            // Not found is a denial too: whether a resource exists is not told to a
            // caller who may not read it.
            403 | 404 => Ok(Verdict::Denied),
            other => Err(Refusal::Unavailable(format!(
                "the tracking server answered the credential check with HTTP {other}"
            ))),
        }
    }

    fn cached(&self, key: &[u8; 32]) -> Option<Verdict> {
        let cache = self.cache.lock().ok()?;
        let (at, verdict) = cache.get(key)?;
        (at.elapsed() < self.ttl).then_some(*verdict)
    }

    fn remember(&self, key: [u8; 32], verdict: Verdict) {
        if self.ttl.is_zero() {
            return;
        }
        let Ok(mut cache) = self.cache.lock() else {
            return;
        };
        if cache.len() >= CACHE_LIMIT {
            let ttl = self.ttl;
            cache.retain(|_, (at, _)| at.elapsed() < ttl);
            if cache.len() >= CACHE_LIMIT {
                cache.clear();
            }
        }
        cache.insert(key, (Instant::now(), verdict));
    }
}

/// The cache key: a digest, so the map never holds a credential.
fn cache_key(authorization: &[u8], need: Need<'_>) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(authorization);
    h.update([0]);
    match need {
        Need::Model(name) => {
            h.update(b"m");
            h.update(name.as_bytes());
        }
        Need::SignedIn | Need::Public => h.update(b"s"),
    }
    h.finalize().into()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn probes_follow_the_model_uri() {
        let p = |s: &str| Probe::for_uri(&ModelUri::parse(s).unwrap());
        assert_eq!(
            p("models:/iris@prod"),
            Probe::RegisteredModel("iris".into())
        );
        assert_eq!(p("models:/iris/3"), Probe::RegisteredModel("iris".into()));
        assert_eq!(
            p("models:/iris/latest"),
            Probe::RegisteredModel("iris".into())
        );
        assert_eq!(p("runs:/abc/model"), Probe::Run("abc".into()));
        assert_eq!(
            p("models:/m-0123abcd"),
            Probe::LoggedModel("m-0123abcd".into())
        );
        assert_eq!(p("/tmp/model"), Probe::CurrentUser);
        assert_eq!(p("s3://b/model"), Probe::CurrentUser);
        let probe = Probe::RegisteredModel("a b".into());
        let (path, query) = probe.request();
        assert_eq!(path, "/api/2.0/mlflow/registered-models/get");
        assert_eq!(query, vec![("name", "a b")]);
        assert_eq!(encode_segment("m-1/../x"), "m-1%2F..%2Fx");
    }

    #[test]
    fn cache_keys_separate_credentials_and_models() {
        let m = Need::Model("a");
        assert_ne!(cache_key(b"Basic x", m), cache_key(b"Basic y", m));
        assert_ne!(
            cache_key(b"Basic x", m),
            cache_key(b"Basic x", Need::SignedIn)
        );
        assert_ne!(
            cache_key(b"Basic x", m),
            cache_key(b"Basic x", Need::Model("b"))
        );
        assert_eq!(cache_key(b"Basic x", m), cache_key(b"Basic x", m));
    }

    fn gate(ttl: Duration) -> Gate {
        // Nothing listens on port 1: every uncached check is "unavailable".
        let tracking = TrackingClient::new("http://127.0.0.1:1", Default::default()).unwrap();
        let models = vec![(
            "iris".to_string(),
            ModelUri::parse("models:/iris/1").unwrap(),
        )];
        Gate::new(tracking, &models, ttl)
    }

    #[tokio::test]
    async fn public_needs_nothing_and_the_rest_need_credentials() {
        let g = gate(Duration::from_secs(60));
        assert_eq!(g.check(None, Need::Public).await, Ok(()));
        for need in [Need::SignedIn, Need::Model("iris")] {
            assert!(matches!(
                g.check(None, need).await,
                Err(Refusal::Unauthenticated(_))
            ));
            assert!(matches!(
                g.check(Some(b""), need).await,
                Err(Refusal::Unauthenticated(_))
            ));
        }
        assert_eq!(g.unnamed_model(), Need::Model("iris"));
    }

    #[tokio::test]
    async fn an_unreachable_tracking_server_fails_closed_and_is_not_cached() {
        let g = gate(Duration::from_secs(60));
        let need = Need::Model("iris");
        for _ in 0..2 {
            assert!(matches!(
                g.check(Some(b"Basic eDp5"), need).await,
                Err(Refusal::Unavailable(_))
            ));
        }
        assert!(g.cache.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn cached_answers_expire() {
        let g = gate(Duration::from_millis(50));
        let need = Need::Model("iris");
        let key = cache_key(b"Basic eDp5", need);
        g.remember(key, Verdict::Denied);
        assert!(matches!(
            g.check(Some(b"Basic eDp5"), need).await,
            Err(Refusal::Denied(_))
        ));
        tokio::time::sleep(Duration::from_millis(80)).await;
        // Expired: asked again (and the tracking server is unreachable).
        assert!(matches!(
            g.check(Some(b"Basic eDp5"), need).await,
            Err(Refusal::Unavailable(_))
        ));
        g.remember(key, Verdict::Allow);
        assert_eq!(g.check(Some(b"Basic eDp5"), need).await, Ok(()));
    }
}
