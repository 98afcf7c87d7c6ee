//! Single sign-on against a local OpenID Connect issuer the test creates: RSA keys, a
//! discovery document and a JWKS endpoint on loopback. Valid tokens sign in (and create
//! the user); expired, wrong-audience, wrong-issuer, wrong-signature, unknown-key and
//! HMAC tokens are refused, and a provider cannot sign in as a local account.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{SystemTime, UNIX_EPOCH};

use axum::routing::get;
use axum::{Json, Router};
use base64::Engine;
use cairn::config::AdminAccount;
use cairn_http::oidc::OidcConfig;
use common::{reply, spawn_app_with, TestApp};
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use rsa::pkcs1::EncodeRsaPrivateKey;
use rsa::traits::PublicKeyParts;
use rsa::RsaPrivateKey;
use serde_json::{json, Value};

const AUDIENCE: &str = "cairn-test";

struct Issuer {
    url: String,
    signing: EncodingKey,
    /// A key the issuer never published.
    rogue: EncodingKey,
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// Starts the issuer: one published RSA key (`kid` "k1").
async fn issuer() -> Issuer {
    let mut rng = rand_core::OsRng;
    let key = RsaPrivateKey::new(&mut rng, 2048).unwrap();
    let rogue = RsaPrivateKey::new(&mut rng, 2048).unwrap();
    let public = key.to_public_key();
    let jwks = json!({"keys": [{
        "kty": "RSA", "use": "sig", "alg": "RS256", "kid": "k1",
        "n": b64(&public.n().to_bytes_be()), "e": b64(&public.e().to_bytes_be()),
    }]});
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let discovery = json!({"issuer": url, "jwks_uri": format!("{url}/keys")});
    let app = Router::new()
        .route(
            "/.well-known/openid-configuration",
            get(move || async move { Json(discovery) }),
        )
        .route("/keys", get(move || async move { Json(jwks) }));
    tokio::spawn(async move { axum::serve(listener, app).await });
    let der = |k: &RsaPrivateKey| EncodingKey::from_rsa_der(k.to_pkcs1_der().unwrap().as_bytes());
    Issuer {
        url,
        signing: der(&key),
        rogue: der(&rogue),
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

impl Issuer {
    fn claims(&self, user: &str) -> Value {
        json!({"iss": self.url, "aud": AUDIENCE, "sub": format!("id-{user}"),
               "preferred_username": user, "iat": now(), "exp": now() + 600})
    }

    fn sign(&self, claims: &Value, key: &EncodingKey, kid: &str) -> String {
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some(kid.into());
        encode(&header, claims, key).unwrap()
    }

    fn token(&self, user: &str) -> String {
        self.sign(&self.claims(user), &self.signing, "k1")
    }
}

async fn app(issuer: &Issuer) -> TestApp {
    let url = issuer.url.clone();
    spawn_app_with(move |c| {
        c.auth = Some(AdminAccount {
            username: "admin".into(),
            password: "admin password 1".into(),
        });
        c.oidc = Some(OidcConfig {
            issuer: url,
            audience: AUDIENCE.into(),
            jwks_uri: None,
            username_claim: "preferred_username".into(),
            groups_claim: "groups".into(),
            admin_group: Some("cairn-admins".into()),
        });
    })
    .await
}

async fn whoami(app: &TestApp, token: &str) -> (u16, Value) {
    whoami_from(app, &app.client, token).await
}

async fn whoami_from(app: &TestApp, client: &reqwest::Client, token: &str) -> (u16, Value) {
    let r = reply(
        client
            .get(app.api("users/current"))
            .bearer_auth(token)
            .send()
            .await
            .unwrap(),
    )
    .await;
    (r.status, r.body)
}

#[tokio::test]
async fn provider_tokens_sign_in_and_bad_ones_are_refused() {
    let issuer = issuer().await;
    let app = app(&issuer).await;

    // A valid token signs in and creates the account on first use.
    let (status, body) = whoami(&app, &issuer.token("sso-user")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["user"]["username"], "sso-user");
    assert_eq!(body["user"]["is_admin"], false);
    // The account has no password: Basic sign-in with anything fails.
    let r = app
        .client
        .get(app.api("users/current"))
        .basic_auth("sso-user", Some("!sso"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);

    let mut bad: Vec<(&str, String)> = Vec::new();
    let mut expired = issuer.claims("sso-user");
    expired["exp"] = json!(now() - 3600);
    bad.push(("expired", issuer.sign(&expired, &issuer.signing, "k1")));
    let mut not_yet = issuer.claims("sso-user");
    not_yet["nbf"] = json!(now() + 3600);
    bad.push((
        "not yet valid",
        issuer.sign(&not_yet, &issuer.signing, "k1"),
    ));
    let mut audience = issuer.claims("sso-user");
    audience["aud"] = json!("another-app");
    bad.push((
        "wrong audience",
        issuer.sign(&audience, &issuer.signing, "k1"),
    ));
    let mut other_issuer = issuer.claims("sso-user");
    other_issuer["iss"] = json!("https://evil.example");
    bad.push((
        "wrong issuer",
        issuer.sign(&other_issuer, &issuer.signing, "k1"),
    ));
    bad.push((
        "wrong signature",
        issuer.sign(&issuer.claims("sso-user"), &issuer.rogue, "k1"),
    ));
    bad.push((
        "unknown key",
        issuer.sign(&issuer.claims("sso-user"), &issuer.rogue, "k2"),
    ));
    let mut hs = Header::new(Algorithm::HS256);
    hs.kid = Some("k1".into());
    bad.push((
        "HMAC",
        encode(
            &hs,
            &issuer.claims("sso-user"),
            &EncodingKey::from_secret(b"guess").unwrap(),
        )
        .unwrap(),
    ));
    let mut no_name = issuer.claims("sso-user");
    no_name
        .as_object_mut()
        .unwrap()
        .remove("preferred_username");
    bad.push(("no username", issuer.sign(&no_name, &issuer.signing, "k1")));
    // A provider must not be able to take over a local account of the same name.
    bad.push(("local account", issuer.token("admin")));
    let mut tampered = issuer.token("sso-user");
    tampered.push('x');
    bad.push(("tampered", tampered));
    for (i, (what, token)) in bad.iter().enumerate() {
        // Each from its own loopback address, so the per-address sign-in slow-down (which
        // would hold these for seconds) stays out of the way.
        let client = reqwest::Client::builder()
            .no_proxy()
            .local_address(std::net::IpAddr::from([127, 0, 0, 10 + i as u8]))
            .build()
            .unwrap();
        let (status, body) = whoami_from(&app, &client, token).await;
        assert_eq!(
            (status, body["error_code"].as_str()),
            (401, Some("UNAUTHENTICATED")),
            "{what}: {body}"
        );
    }
}

#[tokio::test]
async fn provider_users_get_permissions_and_audit_like_everyone_else() {
    let issuer = issuer().await;
    let app = app(&issuer).await;
    let token = issuer.token("dana");
    let created = reply(
        app.client
            .post(app.api("experiments/create"))
            .bearer_auth(&token)
            .json(&json!({"name": "from-sso"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(created.status, 200, "{:?}", created.body);
    let id = created.body["experiment_id"].as_str().unwrap();
    // The creator holds MANAGE.
    let grant = reply(
        app.client
            .get(app.api("experiments/permissions/get"))
            .query(&[("experiment_id", id), ("username", "dana")])
            .bearer_auth(&token)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(grant.body["experiment_permission"]["permission"], "MANAGE");
    // Administrator-only routes stay closed.
    let users = reply(
        app.client
            .get(app.api("users/list"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(users.status, 403);
    let events = reply(
        app.client
            .get(app.url("/api/2.0/cairn/audit/events"))
            .basic_auth("admin", Some("admin password 1"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    let first = &events.body["events"][0];
    assert_eq!(
        (&first["actor"], &first["auth_method"], &first["outcome"]),
        (&json!("dana"), &json!("oidc"), &json!("ok"))
    );
}

#[tokio::test]
async fn the_providers_admin_group_makes_administrators_while_the_token_says_so() {
    let issuer = issuer().await;
    let app = app(&issuer).await;
    let with_groups = |user: &str, groups: Value| {
        let mut claims = issuer.claims(user);
        claims["groups"] = groups;
        issuer.sign(&claims, &issuer.signing, "k1")
    };
    let users_list = |token: String| {
        let req = app.client.get(app.api("users/list")).bearer_auth(token);
        async move { reply(req.send().await.unwrap()).await.status }
    };
    // In the group (as a list, or as the one string a provider may send): administrator.
    let admin = with_groups("erin", json!(["staff", "cairn-admins"]));
    assert_eq!(users_list(admin.clone()).await, 200);
    let (_, me) = whoami(&app, &admin).await;
    assert_eq!(me["user"]["is_admin"], true, "{me}");
    assert_eq!(
        users_list(with_groups("fay", json!("cairn-admins"))).await,
        200
    );
    // Not in it (other groups, a look-alike, no claim): not one.
    for groups in [json!(["staff"]), json!(["cairn-admins-old"]), json!(null)] {
        assert_eq!(users_list(with_groups("gus", groups)).await, 403);
    }
    // The account was not made an administrator: a later token without the group is
    // an ordinary user again.
    let later = with_groups("erin", json!(["staff"]));
    assert_eq!(users_list(later.clone()).await, 403);
    let (_, me) = whoami(&app, &later).await;
    assert_eq!(me["user"]["is_admin"], false, "{me}");
}
