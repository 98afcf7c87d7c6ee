//! Authentication on: HTTP Basic credentials (what the `mlflow` client sends) are required
//! on every route but the health checks; missing or wrong ones get 401 UNAUTHENTICATED
//! with a `WWW-Authenticate` challenge, and a refused write leaves nothing behind.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use cairn::config::AdminAccount;
use common::{reply, spawn_app_with, API};
use serde_json::json;

const PASSWORD: &str = "correct horse battery";

async fn app() -> common::TestApp {
    spawn_app_with(|c| {
        c.auth = Some(AdminAccount {
            username: "admin".into(),
            password: PASSWORD.into(),
        })
    })
    .await
}

#[tokio::test]
async fn requests_need_valid_basic_credentials() {
    let app = app().await;
    let search = format!("{}{API}/experiments/search?max_results=5", app.base_url);
    let anonymous = reply(app.client.get(&search).send().await.unwrap()).await;
    assert_eq!(anonymous.status, 401, "{:?}", anonymous.body);
    assert_eq!(anonymous.body["error_code"], "UNAUTHENTICATED");
    assert!(anonymous.headers["www-authenticate"]
        .to_str()
        .unwrap()
        .starts_with("Basic realm="));
    for (user, password) in [("admin", "wrong password"), ("nobody", PASSWORD), ("", "")] {
        let r = reply(
            app.client
                .get(&search)
                .basic_auth(user, Some(password))
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(r.status, 401, "{user}: {:?}", r.body);
        assert_eq!(r.body["message"], "Incorrect username or password");
    }
    let bearer = reply(
        app.client
            .get(&search)
            .bearer_auth("abc")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(bearer.status, 401);
    assert_eq!(
        bearer.body["message"],
        "The access token is invalid, expired or revoked"
    );
    let digest = reply(
        app.client
            .get(&search)
            .header("authorization", "Digest username=admin")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(digest.status, 401);
    assert!(digest.body["message"]
        .as_str()
        .unwrap()
        .contains("HTTP Basic"));

    let ok = app
        .client
        .get(&search)
        .basic_auth("admin", Some(PASSWORD))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);

    // Health checks stay open for load balancers.
    for path in ["/health", "/version"] {
        let r = app
            .client
            .get(format!("{}{path}", app.base_url))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{path}");
    }
}

#[tokio::test]
async fn a_refused_write_changes_nothing() {
    let app = app().await;
    let create = format!("{}{API}/experiments/create", app.base_url);
    let r = app
        .client
        .post(&create)
        .json(&json!({ "name": "sneaky" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = app
        .client
        .post(&create)
        .basic_auth("admin", Some("guess"))
        .json(&json!({ "name": "sneaky" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    // Artifact uploads are guarded too.
    let put = app
        .client
        .put(format!(
            "{}/api/2.0/mlflow-artifacts/artifacts/0/x.txt",
            app.base_url
        ))
        .body("payload")
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 401);

    let found = app
        .client
        .get(format!(
            "{}{API}/experiments/get-by-name?experiment_name=sneaky",
            app.base_url
        ))
        .basic_auth("admin", Some(PASSWORD))
        .send()
        .await
        .unwrap();
    assert_eq!(
        found.status(),
        404,
        "a refused create left an experiment behind"
    );
    let listing = reply(
        app.client
            .get(format!(
                "{}/api/2.0/mlflow-artifacts/artifacts?path=0",
                app.base_url
            ))
            .basic_auth("admin", Some(PASSWORD))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(listing.status, 200);
    assert!(
        listing.body.get("files").is_none() || listing.body["files"] == json!([]),
        "a refused upload left a file: {:?}",
        listing.body
    );
}

#[tokio::test]
async fn repeated_failures_are_slowed_down_but_the_right_password_is_not() {
    let app = app().await;
    let search = format!("{}{API}/experiments/search?max_results=1", app.base_url);
    let attempt = |password: &'static str| {
        let req = app.client.get(&search).basic_auth("admin", Some(password));
        async move {
            let started = std::time::Instant::now();
            let status = req.send().await.unwrap().status().as_u16();
            (status, started.elapsed())
        }
    };
    for _ in 0..3 {
        assert_eq!(attempt("guess").await.0, 401);
    }
    // Past the free failures each answer is held back, longer each time.
    let (status, took) = attempt("guess").await;
    assert_eq!(status, 401);
    assert!(
        took >= std::time::Duration::from_millis(250),
        "held only {took:?}"
    );
    let (status, took) = attempt("guess").await;
    assert_eq!(status, 401);
    assert!(
        took >= std::time::Duration::from_millis(500),
        "held only {took:?}"
    );
    // The owner of the account is not locked out, and success resets the count.
    assert_eq!(attempt(PASSWORD).await.0, 200);
    let (status, took) = attempt("guess").await;
    assert_eq!(status, 401);
    assert!(
        took < std::time::Duration::from_secs(5),
        "still held {took:?} after a success"
    );
}
