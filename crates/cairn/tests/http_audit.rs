//! The audit log end to end: state changes and denials append hash-chained events with
//! who, how, from where and the request id; reads append nothing; only administrators
//! read the log; and `cairn audit verify` names an edited, deleted or swapped event in
//! the database file.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::process::Command;

use cairn::audit::{verify, Verdict};
use cairn::config::AdminAccount;
use cairn_core::audit::ChainBreak;
use cairn_core::auth::Permission;
use cairn_store_sqlite::{SqliteConfig, SqliteStore};
use common::{reply, spawn_app_with, TestApp};
use serde_json::{json, Value};

const ADMIN_PW: &str = "admin password 1";
const ALICE_PW: &str = "alice password 1";

async fn app() -> TestApp {
    spawn_app_with(|c| {
        c.auth = Some(AdminAccount {
            username: "admin".into(),
            password: ADMIN_PW.into(),
        });
        c.default_permission = Permission::NoPermissions;
    })
    .await
}

/// POSTs JSON as `user` (None: anonymous); returns status, body and the request id.
async fn post_as(
    app: &TestApp,
    user: Option<(&str, &str)>,
    endpoint: &str,
    body: Value,
) -> (u16, Value, String) {
    let mut req = app.client.post(app.api(endpoint)).json(&body);
    if let Some((u, p)) = user {
        req = req.basic_auth(u, Some(p));
    }
    let r = reply(req.send().await.unwrap()).await;
    let id = r.headers["x-request-id"].to_str().unwrap().to_string();
    (r.status, r.body, id)
}

async fn events(app: &TestApp, user: (&str, &str)) -> (u16, Value) {
    let r = reply(
        app.client
            .get(app.url("/api/2.0/cairn/audit/events"))
            .query(&[("max_results", "1000")])
            .basic_auth(user.0, Some(user.1))
            .send()
            .await
            .unwrap(),
    )
    .await;
    (r.status, r.body)
}

/// Writes a few events: 1 user created, 2 experiment created, 3 denied, 4 anonymous,
/// 5 failed write, 6 run created.
async fn populate(app: &TestApp) -> Vec<String> {
    let admin = Some(("admin", ADMIN_PW));
    let alice = Some(("alice", ALICE_PW));
    let mut ids = Vec::new();
    let (s, _, id) = post_as(
        app,
        admin,
        "users/create",
        json!({"username": "alice", "password": ALICE_PW}),
    )
    .await;
    assert_eq!(s, 200);
    ids.push(id);
    let (s, admin_exp, id) =
        post_as(app, admin, "experiments/create", json!({"name": "admins"})).await;
    assert_eq!(s, 200);
    ids.push(id);
    let exp = admin_exp["experiment_id"].as_str().unwrap().to_string();
    let (s, _, id) = post_as(app, alice, "runs/create", json!({"experiment_id": exp})).await;
    assert_eq!(s, 403);
    ids.push(id);
    let (s, _, id) = post_as(app, None, "experiments/create", json!({"name": "anon"})).await;
    assert_eq!(s, 401);
    ids.push(id);
    let (s, _, id) = post_as(app, admin, "experiments/create", json!({"name": "admins"})).await;
    assert_eq!(s, 400, "duplicate name");
    ids.push(id);
    let (s, _, id) = post_as(app, admin, "runs/create", json!({"experiment_id": exp})).await;
    assert_eq!(s, 200);
    ids.push(id);
    // Reads are not audited.
    let r = app
        .client
        .get(app.api("experiments/get"))
        .query(&[("experiment_id", exp.as_str())])
        .basic_auth("admin", Some(ADMIN_PW))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    ids
}

#[tokio::test]
async fn changes_and_denials_are_recorded_with_who_how_and_which_request() {
    let app = app().await;
    let ids = populate(&app).await;
    let (status, body) = events(&app, ("alice", ALICE_PW)).await;
    assert_eq!(
        (status, body["error_code"].as_str()),
        (403, Some("PERMISSION_DENIED"))
    );
    let (status, body) = events(&app, ("admin", ADMIN_PW)).await;
    assert_eq!(status, 200, "{body}");
    let got: Vec<(String, String, String, String)> = body["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let f = |k: &str| e[k].as_str().unwrap().to_string();
            (f("actor"), f("auth_method"), f("outcome"), f("action"))
        })
        .collect();
    let t = |a: &str, m: &str, o: &str, route: &str| {
        (
            a.to_string(),
            m.to_string(),
            o.to_string(),
            route.to_string(),
        )
    };
    assert_eq!(
        got[..6],
        [
            t("admin", "basic", "ok", "POST /api/2.0/mlflow/users/create"),
            t(
                "admin",
                "basic",
                "ok",
                "POST /api/2.0/mlflow/experiments/create"
            ),
            t(
                "alice",
                "basic",
                "denied",
                "POST /api/2.0/mlflow/runs/create"
            ),
            t(
                "anonymous",
                "none",
                "unauthenticated",
                "POST /api/2.0/mlflow/experiments/create"
            ),
            t(
                "admin",
                "basic",
                "error:400",
                "POST /api/2.0/mlflow/experiments/create"
            ),
            t("admin", "basic", "ok", "POST /api/2.0/mlflow/runs/create"),
        ]
    );
    // The denial of alice's audit read came after these and is recorded too.
    assert_eq!(got.len(), 7, "{got:?}");
    assert_eq!(got[6].2, "denied");
    let evs = body["events"].as_array().unwrap();
    for (i, id) in ids.iter().enumerate() {
        assert_eq!(evs[i]["request_id"], id.as_str(), "event {}", i + 1);
        assert_eq!(evs[i]["seq"], i as i64 + 1);
        assert_eq!(evs[i]["source_ip"], "127.0.0.1");
    }
    assert!(evs[2]["resource"]
        .as_str()
        .unwrap()
        .starts_with("experiment:"));
    for pair in evs.windows(2) {
        assert_eq!(pair[1]["prev_hash"], pair[0]["hash"]);
    }
}

async fn store_at(dir: &Path) -> SqliteStore {
    SqliteStore::open(&SqliteConfig::new(dir.join("cairn.db")))
        .await
        .unwrap()
}

/// A copy of the stopped server's database with `sql` applied to it.
async fn tampered(original: &Path, sql: &[&str]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(original.join("cairn.db"), dir.path().join("cairn.db")).unwrap();
    let url = format!("sqlite://{}", dir.path().join("cairn.db").display());
    let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
    for statement in sql {
        sqlx::query(statement).execute(&pool).await.unwrap();
    }
    pool.close().await;
    dir
}

async fn verdict(dir: &Path) -> Verdict {
    let store = store_at(dir).await;
    let v = verify(&store, &[]).await.unwrap();
    cairn_core::store::TrackingStore::close(&store).await;
    v
}

#[tokio::test]
async fn verify_names_an_edited_a_deleted_and_a_swapped_event() {
    let app = app().await;
    populate(&app).await;
    let data = app.stop().await;
    match verdict(data.path()).await {
        Verdict::Intact { events, head } => {
            assert_eq!(events, 6);
            assert_eq!(head.map(|h| h.0), Some(6));
        }
        broken => panic!("{broken:?}"),
    }

    let edited = tampered(
        data.path(),
        &["UPDATE audit_events SET actor = 'mallory' WHERE seq = 3"],
    )
    .await;
    assert!(matches!(
        verdict(edited.path()).await,
        Verdict::Broken {
            checked: 2,
            at: ChainBreak::Edited { seq: 3 }
        }
    ));

    let deleted = tampered(data.path(), &["DELETE FROM audit_events WHERE seq = 4"]).await;
    assert!(matches!(
        verdict(deleted.path()).await,
        Verdict::Broken {
            checked: 3,
            at: ChainBreak::Missing { after: 3, next: 5 }
        }
    ));

    // Swap every column of rows 2 and 5 but their numbers.
    let cols = "time_ms, actor, auth_method, source_ip, action, resource, outcome, request_id, prev_hash, hash";
    let swapped = tampered(
        data.path(),
        &[
            &format!("CREATE TABLE t AS SELECT seq, {cols} FROM audit_events WHERE seq IN (2, 5)"),
            &format!(
                "UPDATE audit_events SET ({cols}) = (SELECT {cols} FROM t WHERE t.seq = \
                 CASE audit_events.seq WHEN 2 THEN 5 ELSE 2 END) WHERE seq IN (2, 5)"
            ),
            "DROP TABLE t",
        ],
    )
    .await;
    assert!(matches!(
        verdict(swapped.path()).await,
        Verdict::Broken {
            checked: 1,
            at: ChainBreak::Edited { seq: 2 }
        }
    ));

    // Someone with write access rewrites event 3 and re-hashes everything after it: the
    // chain is consistent again, but an anchor recorded earlier catches it.
    let intact_head = match verdict(data.path()).await {
        Verdict::Intact { head, .. } => head.unwrap(),
        other => panic!("{other:?}"),
    };
    let rewritten = tempfile::tempdir().unwrap();
    std::fs::copy(
        data.path().join("cairn.db"),
        rewritten.path().join("cairn.db"),
    )
    .unwrap();
    {
        let store = store_at(rewritten.path()).await;
        let events = cairn_core::auth::AuthStore::audit_events(&store, 0, 100)
            .await
            .unwrap();
        cairn_core::store::TrackingStore::close(&store).await;
        let url = format!("sqlite://{}", rewritten.path().join("cairn.db").display());
        let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
        let mut prev: Option<(i64, String)> = Some((events[1].seq, events[1].hash.clone()));
        for e in &events[2..] {
            let mut event = e.event.clone();
            if e.seq == 3 {
                event.actor = "mallory".into();
            }
            let link =
                cairn_core::audit::next_link(prev.as_ref().map(|(s, h)| (*s, h.as_str())), event);
            sqlx::query("UPDATE audit_events SET actor = ?, prev_hash = ?, hash = ? WHERE seq = ?")
                .bind(&link.event.actor)
                .bind(&link.prev_hash)
                .bind(&link.hash)
                .bind(e.seq)
                .execute(&pool)
                .await
                .unwrap();
            prev = Some((link.seq, link.hash));
        }
        pool.close().await;
    }
    let store = store_at(rewritten.path()).await;
    assert!(matches!(
        verify(&store, &[]).await.unwrap(),
        Verdict::Intact { .. }
    ));
    let anchor = [intact_head.clone()];
    assert!(matches!(
        verify(&store, &anchor).await.unwrap(),
        Verdict::Rewritten { seq: 6, .. }
    ));
    cairn_core::store::TrackingStore::close(&store).await;
    let out = Command::new(env!("CARGO_BIN_EXE_cairn"))
        .args(["audit", "verify", "--anchor"])
        .arg(format!("{}:{}", intact_head.0, intact_head.1))
        .arg("--data-dir")
        .arg(rewritten.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("event 6 was rewritten"));

    // The command says the same, with exit status 1; and 0 on the intact log.
    let run = |dir: &Path| {
        Command::new(env!("CARGO_BIN_EXE_cairn"))
            .args(["audit", "verify", "--data-dir"])
            .arg(dir)
            .output()
            .unwrap()
    };
    let out = run(edited.path());
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("event 3 was edited"), "{text}");
    let out = run(deleted.path());
    assert!(String::from_utf8_lossy(&out.stdout).contains("event 4 was deleted"));
    let out = run(data.path());
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );

    // Export: one JSON object per event, in order.
    let file = data.path().join("audit.jsonl");
    let out = Command::new(env!("CARGO_BIN_EXE_cairn"))
        .args(["audit", "export", "--data-dir"])
        .arg(data.path())
        .arg("-o")
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<Value> = std::fs::read_to_string(&file)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let seqs: Vec<i64> = lines.iter().map(|l| l["seq"].as_i64().unwrap()).collect();
    assert_eq!(seqs, (1..=6).collect::<Vec<_>>());
}

#[tokio::test]
async fn without_authentication_changes_are_still_audited_as_anonymous() {
    let app = common::spawn_app().await;
    app.create_experiment("open").await;
    let data = app.stop().await;
    let store = store_at(data.path()).await;
    let events = cairn_core::auth::AuthStore::audit_events(&store, 0, 10)
        .await
        .unwrap();
    assert_eq!(events.len(), 1);
    let e = &events[0].event;
    assert_eq!(
        (e.actor.as_str(), e.auth_method.as_str(), e.outcome.as_str()),
        ("anonymous", "none", "ok")
    );
    assert_eq!(e.resource, "");
}

#[tokio::test]
async fn gc_purges_are_audited_in_the_chain() {
    let app = common::spawn_app().await;
    let run_id = app.create_run().await;
    let (status, _) = app.post("runs/delete", json!({ "run_id": run_id })).await;
    assert_eq!(status, 200);
    let data = app.stop().await;
    let out = Command::new(env!("CARGO_BIN_EXE_cairn"))
        .args(["gc", "--data-dir"])
        .arg(data.path())
        .env("CAIRN_LOG", "warn")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let store = store_at(data.path()).await;
    let events = cairn_core::auth::AuthStore::audit_events(&store, 0, 100)
        .await
        .unwrap();
    let last = &events.last().unwrap().event;
    assert_eq!(
        (
            last.actor.as_str(),
            last.auth_method.as_str(),
            last.action.as_str()
        ),
        ("cairn-gc", "cli", "GC purge run")
    );
    assert_eq!(last.resource, format!("run:{run_id}"));
    // create, delete, purge: one chain.
    assert_eq!(events.len(), 3, "{events:?}");
    assert!(matches!(
        verify(&store, &[]).await.unwrap(),
        Verdict::Intact { events: 3, .. }
    ));
    cairn_core::store::TrackingStore::close(&store).await;
}
