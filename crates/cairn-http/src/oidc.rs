//! Single sign-on: bearer JWTs issued by an OpenID Connect provider, validated against
//! the provider's published keys (JWKS).
//!
//! A token is accepted when its signature verifies with a key from the issuer's JWKS
//! (asymmetric algorithms only: an `HS256` token could be forged by anyone who knows a
//! shared secret, and `none` is never accepted), `iss` is the configured issuer, `aud`
//! contains the configured audience, and `exp`/`nbf` hold (60 s leeway). Keys are fetched
//! from the issuer's discovery document on first use, again when a token names a key id
//! not seen yet (at most every 30 s, so junk tokens cannot make the server hammer the
//! provider), and every 10 minutes.

use std::time::{Duration, Instant};

use cairn_core::CoreError;
use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{decode, decode_header, Algorithm, DecodingKey, Validation};
use serde_json::{Map, Value};
use tokio::sync::RwLock;

/// Keys are re-read this often even when every token's key id is known.
const KEYS_MAX_AGE: Duration = Duration::from_secs(600);
/// An unknown key id triggers a re-read at most this often.
const MIN_REFETCH_INTERVAL: Duration = Duration::from_secs(30);
/// Clock skew tolerated on `exp` and `nbf`.
const LEEWAY_SECS: u64 = 60;

/// Where the provider is and what its tokens must say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OidcConfig {
    /// The `iss` every token must carry; discovery is at
    /// `<issuer>/.well-known/openid-configuration`.
    pub issuer: String,
    /// A value `aud` must contain (the client id registered for Cairn).
    pub audience: String,
    /// The JWKS URL, when discovery is not used.
    pub jwks_uri: Option<String>,
    /// The claim whose value is the Cairn username.
    pub username_claim: String,
    /// The claim listing the caller's groups (an array of strings, or one string).
    pub groups_claim: String,
    /// Members of this group (per `groups_claim`) are administrators while their token
    /// says so; the account itself is never made an administrator.
    pub admin_group: Option<String>,
}

/// A verified token: who it names and until when it is valid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The username claim's value.
    pub username: String,
    /// `exp`, seconds since the epoch.
    pub expires_at: u64,
    /// Whether the token puts the caller in the administrators' group.
    pub admin: bool,
}

struct Keys {
    set: JwkSet,
    fetched: Instant,
}

/// Whether a groups claim (an array of names, or one name) contains `group`.
fn in_group(claim: Option<&Value>, group: &str) -> bool {
    match claim {
        Some(Value::Array(items)) => items.iter().any(|g| g.as_str() == Some(group)),
        Some(Value::String(one)) => one == group,
        _ => false,
    }
}

/// Validates provider-issued tokens.
pub struct OidcVerifier {
    config: OidcConfig,
    client: reqwest::Client,
    keys: RwLock<Option<Keys>>,
    last_attempt: tokio::sync::Mutex<Option<Instant>>,
}

impl std::fmt::Debug for OidcVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OidcVerifier")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// Whether a string has the shape of a JWS compact token (three dot-separated parts).
pub fn looks_like_jwt(token: &str) -> bool {
    token.split('.').count() == 3
}

fn allowed(alg: Algorithm) -> bool {
    matches!(
        alg,
        Algorithm::RS256
            | Algorithm::RS384
            | Algorithm::RS512
            | Algorithm::PS256
            | Algorithm::PS384
            | Algorithm::PS512
            | Algorithm::ES256
            | Algorithm::ES384
            | Algorithm::EdDSA
    )
}

impl OidcVerifier {
    /// A verifier for `config`; nothing is fetched until the first token arrives.
    pub fn new(config: OidcConfig) -> Result<Self, String> {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| format!("building the OIDC HTTP client: {e}"))?;
        Ok(Self {
            config,
            client,
            keys: RwLock::new(None),
            last_attempt: tokio::sync::Mutex::new(None),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &OidcConfig {
        &self.config
    }

    /// The identity in a valid token, `None` for any token that does not verify (bad
    /// signature, wrong issuer or audience, expired, unknown key, malformed). Errors are
    /// reserved for the provider being unreachable.
    pub async fn verify(&self, token: &str) -> Result<Option<Identity>, CoreError> {
        let Ok(header) = decode_header(token) else {
            return Ok(None);
        };
        if !allowed(header.alg) {
            tracing::warn!(alg = ?header.alg, "OIDC token with a refused algorithm");
            return Ok(None);
        }
        let Some(jwk) = self.key_for(header.kid.as_deref()).await? else {
            return Ok(None);
        };
        let Ok(key) = DecodingKey::from_jwk(&jwk) else {
            return Ok(None);
        };
        let mut validation = Validation::new(header.alg);
        validation.set_issuer(&[self.config.issuer.as_str()]);
        validation.set_audience(&[self.config.audience.as_str()]);
        validation.set_required_spec_claims(&["exp", "iss", "aud"]);
        validation.validate_nbf = true;
        validation.leeway = LEEWAY_SECS;
        let claims = match decode::<Map<String, Value>>(token, &key, &validation) {
            Ok(data) => data.claims,
            Err(e) => {
                tracing::debug!(error = %e, "OIDC token refused");
                return Ok(None);
            }
        };
        let username = claims
            .get(&self.config.username_claim)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty() && !s.contains(':'));
        let Some(username) = username else {
            tracing::warn!(claim = %self.config.username_claim, "OIDC token without a usable username claim");
            return Ok(None);
        };
        let expires_at = claims.get("exp").and_then(Value::as_u64).unwrap_or(0);
        let admin = self
            .config
            .admin_group
            .as_deref()
            .is_some_and(|group| in_group(claims.get(&self.config.groups_claim), group));
        Ok(Some(Identity {
            username: username.to_string(),
            expires_at,
            admin,
        }))
    }

    /// The key a token names (or the only signing key, when the token names none).
    async fn key_for(&self, kid: Option<&str>) -> Result<Option<Jwk>, CoreError> {
        let fresh = {
            let keys = self.keys.read().await;
            match keys.as_ref() {
                Some(k) if k.fetched.elapsed() < KEYS_MAX_AGE => find(&k.set, kid),
                _ => None,
            }
        };
        if fresh.is_some() {
            return Ok(fresh);
        }
        self.refresh().await?;
        let keys = self.keys.read().await;
        Ok(keys.as_ref().and_then(|k| find(&k.set, kid)))
    }

    /// Re-reads the JWKS, at most once per `MIN_REFETCH_INTERVAL`.
    async fn refresh(&self) -> Result<(), CoreError> {
        let mut last = self.last_attempt.lock().await;
        let stale = self
            .keys
            .read()
            .await
            .as_ref()
            .is_none_or(|k| k.fetched.elapsed() >= KEYS_MAX_AGE);
        if !stale && last.is_some_and(|t| t.elapsed() < MIN_REFETCH_INTERVAL) {
            return Ok(());
        }
        *last = Some(Instant::now());
        let set = self.fetch_keys().await.map_err(|e| {
            tracing::error!(error = %e, issuer = %self.config.issuer, "cannot read the OIDC provider's keys");
            CoreError::Unavailable(format!("the identity provider is unreachable: {e}"))
        })?;
        *self.keys.write().await = Some(Keys {
            set,
            fetched: Instant::now(),
        });
        Ok(())
    }

    async fn fetch_keys(&self) -> Result<JwkSet, String> {
        let jwks_uri = match &self.config.jwks_uri {
            Some(uri) => uri.clone(),
            None => {
                let url = format!(
                    "{}/.well-known/openid-configuration",
                    self.config.issuer.trim_end_matches('/')
                );
                let doc: Value = self.get_json(&url).await?;
                doc.get("jwks_uri")
                    .and_then(Value::as_str)
                    .ok_or_else(|| format!("{url} has no jwks_uri"))?
                    .to_string()
            }
        };
        let set: Value = self.get_json(&jwks_uri).await?;
        serde_json::from_value(set).map_err(|e| format!("{jwks_uri} is not a JWKS: {e}"))
    }

    async fn get_json(&self, url: &str) -> Result<Value, String> {
        let response = self
            .client
            .get(url)
            .send()
            .await
            .map_err(|e| format!("GET {url}: {e}"))?;
        if !response.status().is_success() {
            return Err(format!("GET {url}: HTTP {}", response.status()));
        }
        response
            .json::<Value>()
            .await
            .map_err(|e| format!("GET {url}: {e}"))
    }
}

fn find(set: &JwkSet, kid: Option<&str>) -> Option<Jwk> {
    match kid {
        Some(kid) => set.find(kid).cloned(),
        None if set.keys.len() == 1 => set.keys.first().cloned(),
        None => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_asymmetric_algorithms_are_accepted() {
        assert!(allowed(Algorithm::RS256));
        assert!(allowed(Algorithm::ES256));
        assert!(!allowed(Algorithm::HS256));
        assert!(!allowed(Algorithm::HS512));
        assert!(looks_like_jwt("a.b.c"));
        assert!(!looks_like_jwt("cairn_pat_abc"));
    }
}
