//! Accounts, grants, access checks, access tokens, the audit chain, and what a request
//! context makes the tracking and registry writes and searches do (append the request's
//! audit event with its first change, grant the creator MANAGE, restrict searches).

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;

use cairn_core::audit::{AuditEvent, StoredAuditEvent, Verifier, GENESIS};
use cairn_core::auth::{
    Access, AccessToken, Grant, GrantKind, GrantMode, Permission, Target, User,
};
use cairn_core::context::{self, RequestContext, Viewer};
use cairn_core::model::{ArtifactFile, LifecycleStage, ViewType};
use cairn_core::registry::{NewModelVersion, NewRegisteredModel, RegistrySearch};
use cairn_core::store::{ExperimentSearch, NewLoggedModel};
use cairn_core::CoreError;

use crate::support::*;
use crate::{Auth, Registry, Store};

use GrantKind::{Experiment as Exp, RegisteredModel as Model};

fn event(n: i64, action: &str) -> AuditEvent {
    AuditEvent {
        time_ms: T0 + n,
        actor: format!("actor-{n}"),
        auth_method: "basic".into(),
        source_ip: format!("10.0.0.{n}"),
        action: action.into(),
        resource: format!("conformance:{n}"),
        outcome: "ok".into(),
        request_id: format!("req-{n}"),
    }
}

fn viewer(username: &str, is_admin: bool, default_read: bool) -> Viewer {
    Viewer {
        username: username.into(),
        is_admin,
        default_read,
    }
}

fn request(viewer: Option<Viewer>, audit: Option<AuditEvent>) -> Arc<RequestContext> {
    Arc::new(RequestContext::new(viewer, audit))
}

/// Runs `fut` inside `ctx` when there is one.
async fn within<F: Future>(ctx: Option<Arc<RequestContext>>, fut: F) -> F::Output {
    match ctx {
        Some(c) => context::scope(c, fut).await,
        None => fut.await,
    }
}

fn hash_of(name: &str) -> String {
    format!("$argon2id$conformance${name}")
}

async fn user(auth: &Auth, name: &str) -> User {
    auth.create_user(name, &hash_of(name), false)
        .await
        .must(format_args!("create_user({name:?})"))
}

async fn registered_model(reg: &Registry, name: &str) {
    reg.create_registered_model(NewRegisteredModel {
        name: name.into(),
        description: None,
        tags: Vec::new(),
        now: T0,
    })
    .await
    .must(format_args!("create_registered_model({name:?})"));
}

async fn model_version(reg: &Registry, name: &str) {
    reg.create_model_version(NewModelVersion {
        name: name.into(),
        source: format!("s3://bucket/{name}"),
        storage_location: None,
        run_id: None,
        run_link: None,
        description: None,
        model_id: None,
        tags: Vec::new(),
        now: T0,
    })
    .await
    .must(format_args!("create_model_version({name:?})"));
}

async fn put(
    auth: &Auth,
    kind: GrantKind,
    resource: &str,
    username: &str,
    p: Permission,
    mode: GrantMode,
) -> Grant {
    auth.put_grant(kind, resource, username, p, mode)
        .await
        .must(format_args!(
            "put_grant({kind:?}, {resource:?}, {username:?}, {p:?}, {mode:?})"
        ))
}

/// The user's grant on a resource, `None` when the store reports none.
async fn grant_of(auth: &Auth, kind: GrantKind, resource: &str, username: &str) -> Option<Grant> {
    match auth.get_grant(kind, resource, username).await {
        Ok(g) => Some(g),
        Err(CoreError::NotFound(_)) => None,
        Err(e) => panic!("get_grant({kind:?}, {resource:?}, {username:?}): {e:?}"),
    }
}

async fn all_events(auth: &Auth) -> Vec<StoredAuditEvent> {
    auth.audit_events(0, 1_000_000)
        .await
        .must("audit_events(0, 1000000)")
}

/// Asserts that the events form an intact chain from the start.
#[track_caller]
fn assert_chain(events: &[StoredAuditEvent]) {
    let mut v = Verifier::new();
    for e in events {
        if let Err(b) = v.push(e) {
            panic!("the stored audit chain does not verify: {b} ({events:#?})");
        }
    }
    assert_eq!(v.checked(), events.len() as u64);
}

/// A missing experiment id, checked to be missing.
async fn missing_experiment(store: &Store, existing: &[i64]) -> i64 {
    let id = existing.iter().copied().max().unwrap_or(0) + 1_000_000;
    assert_err!(
        store.get_experiment(id).await,
        CoreError::NotFound(_),
        "experiment {id} should not exist"
    );
    id
}

/// Accounts: creation, unique names, lookups, the name-ordered listing, password and
/// admin changes, and deletion taking the user's grants and tokens with it.
pub async fn auth_users(store: Store, registry: Registry, auth: Auth) {
    prepare(&*store).await;
    let names = ["carol", "alice", "bob"];
    let mut created = Vec::new();
    for (i, name) in names.iter().enumerate() {
        let admin = i == 1;
        let u = auth
            .create_user(name, &hash_of(name), admin)
            .await
            .must(format_args!("create_user({name:?})"));
        assert_eq!((u.username.as_str(), u.is_admin), (*name, admin));
        created.push(u);
    }
    let mut ids: Vec<i64> = created.iter().map(|u| u.id).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(
        ids.len(),
        created.len(),
        "every user gets its own id: {created:?}"
    );
    let bob = created[2].clone();

    assert_err!(
        auth.create_user("bob", "another-hash", true).await,
        CoreError::AlreadyExists(_),
        "a second user named bob"
    );
    assert_eq!(auth.get_user("bob").await.must("get_user(bob)"), bob);
    let cred = auth
        .credential("bob")
        .await
        .must("credential(bob)")
        .expect("bob has a credential");
    assert_eq!(cred.user, bob, "the refused duplicate changed nothing");
    assert_eq!(cred.password_hash, hash_of("bob"));
    assert_err!(
        auth.get_user("nobody").await,
        CoreError::NotFound(_),
        "get_user(nobody)"
    );
    assert!(auth
        .credential("nobody")
        .await
        .must("credential(nobody)")
        .is_none());

    let mut by_name = created.clone();
    by_name.sort_by(|a, b| a.username.cmp(&b.username));
    assert_eq!(auth.list_users().await.must("list_users"), by_name);

    auth.set_password("bob", "new-hash")
        .await
        .must("set_password(bob)");
    let cred = auth
        .credential("bob")
        .await
        .must("credential")
        .expect("bob");
    assert_eq!(
        (cred.user, cred.password_hash),
        (bob.clone(), "new-hash".into())
    );
    assert_err!(
        auth.set_password("nobody", "x").await,
        CoreError::NotFound(_),
        "set_password(nobody)"
    );

    for flag in [true, false] {
        auth.set_admin("bob", flag).await.must("set_admin(bob)");
        assert_eq!(auth.get_user("bob").await.must("get_user").is_admin, flag);
        let cred = auth
            .credential("bob")
            .await
            .must("credential")
            .expect("bob");
        assert_eq!(cred.user.is_admin, flag);
    }
    assert_err!(
        auth.set_admin("nobody", true).await,
        CoreError::NotFound(_),
        "set_admin(nobody)"
    );

    // Deleting a user takes their grants and tokens along.
    let exp = new_experiment(store.as_ref(), "users-exp")
        .await
        .to_string();
    registered_model(&registry, "users-model").await;
    put(&auth, Exp, &exp, "bob", Permission::Edit, GrantMode::Create).await;
    put(
        &auth,
        Model,
        "users-model",
        "bob",
        Permission::Read,
        GrantMode::Create,
    )
    .await;
    auth.create_token("bob", "laptop", "sha-of-bob-token", T0, None)
        .await
        .must("create_token(bob)");
    assert_eq!(
        auth.token_owner("sha-of-bob-token", T0)
            .await
            .must("token_owner"),
        Some(bob.clone())
    );
    auth.delete_user("bob").await.must("delete_user(bob)");
    assert_err!(
        auth.get_user("bob").await,
        CoreError::NotFound(_),
        "get_user after delete"
    );
    assert!(auth.credential("bob").await.must("credential").is_none());
    assert_err!(
        auth.delete_user("bob").await,
        CoreError::NotFound(_),
        "delete_user twice"
    );
    assert_err!(
        auth.list_grants("bob").await,
        CoreError::NotFound(_),
        "list_grants of a deleted user"
    );
    assert_err!(
        auth.list_tokens("bob").await,
        CoreError::NotFound(_),
        "list_tokens of a deleted user"
    );
    assert_eq!(
        auth.token_owner("sha-of-bob-token", T0)
            .await
            .must("token_owner"),
        None,
        "a deleted user's token no longer authenticates"
    );
    let exp_id: i64 = exp.parse().expect("numeric id");
    assert_eq!(
        auth.access("bob", &Target::Experiment(exp_id))
            .await
            .must("access"),
        None
    );
    by_name.retain(|u| u.username != "bob");
    assert_eq!(auth.list_users().await.must("list_users"), by_name);

    // A new account under the old name starts with nothing.
    let again = user(&auth, "bob").await;
    assert!(auth.list_grants("bob").await.must("list_grants").is_empty());
    assert!(auth.list_tokens("bob").await.must("list_tokens").is_empty());
    assert_eq!(grant_of(&auth, Exp, &exp, "bob").await, None);
    assert_eq!(grant_of(&auth, Model, "users-model", "bob").await, None);
    // The old token's row is gone, so its secret can be stored again.
    let t = auth
        .create_token("bob", "laptop", "sha-of-bob-token", T0 + 1, None)
        .await
        .must("create_token with the deleted token's secret");
    assert_eq!(t.user_id, again.id);
}

/// put_grant's three modes, its NotFound cases, get/delete/list.
pub async fn auth_grants(store: Store, registry: Registry, auth: Auth) {
    prepare(&*store).await;
    let e1 = new_experiment(store.as_ref(), "grants-a").await;
    let e2 = new_experiment(store.as_ref(), "grants-b").await;
    let (e1s, e2s) = (e1.to_string(), e2.to_string());
    registered_model(&registry, "grants-m1").await;
    registered_model(&registry, "grants-m2").await;
    let dana = user(&auth, "dana").await;
    let grant = |resource: &str, permission| Grant {
        resource_id: resource.to_string(),
        user_id: dana.id,
        permission,
    };

    let g = put(
        &auth,
        Exp,
        &e1s,
        "dana",
        Permission::Read,
        GrantMode::Create,
    )
    .await;
    assert_eq!(g, grant(&e1s, Permission::Read));
    assert_err!(
        auth.put_grant(Exp, &e1s, "dana", Permission::Manage, GrantMode::Create)
            .await,
        CoreError::AlreadyExists(_),
        "Create over an existing grant"
    );
    assert_eq!(
        grant_of(&auth, Exp, &e1s, "dana").await,
        Some(grant(&e1s, Permission::Read)),
        "a refused Create changes nothing"
    );
    let g = put(
        &auth,
        Exp,
        &e1s,
        "dana",
        Permission::Edit,
        GrantMode::Update,
    )
    .await;
    assert_eq!(g, grant(&e1s, Permission::Edit));
    assert_eq!(grant_of(&auth, Exp, &e1s, "dana").await, Some(g));
    put(
        &auth,
        Exp,
        &e1s,
        "dana",
        Permission::Manage,
        GrantMode::Upsert,
    )
    .await;
    assert_eq!(
        grant_of(&auth, Exp, &e1s, "dana").await,
        Some(grant(&e1s, Permission::Manage))
    );

    assert_err!(
        auth.put_grant(
            Model,
            "grants-m1",
            "dana",
            Permission::Read,
            GrantMode::Update
        )
        .await,
        CoreError::NotFound(_),
        "Update of a grant the user does not have"
    );
    assert_eq!(
        grant_of(&auth, Model, "grants-m1", "dana").await,
        None,
        "a refused Update creates nothing"
    );
    put(
        &auth,
        Model,
        "grants-m1",
        "dana",
        Permission::Use,
        GrantMode::Upsert,
    )
    .await;
    assert_eq!(
        grant_of(&auth, Model, "grants-m1", "dana").await,
        Some(grant("grants-m1", Permission::Use))
    );
    put(
        &auth,
        Model,
        "grants-m2",
        "dana",
        Permission::NoPermissions,
        GrantMode::Create,
    )
    .await;
    put(
        &auth,
        Exp,
        &e2s,
        "dana",
        Permission::Read,
        GrantMode::Upsert,
    )
    .await;

    // Unknown users and resources.
    let missing = missing_experiment(&store, &[e1, e2]).await.to_string();
    for mode in [GrantMode::Create, GrantMode::Update, GrantMode::Upsert] {
        assert_err!(
            auth.put_grant(Exp, &e1s, "nobody", Permission::Read, mode)
                .await,
            CoreError::NotFound(_),
            "{mode:?} for an unknown user"
        );
        for id in [missing.as_str(), "not-a-number"] {
            assert_err!(
                auth.put_grant(Exp, id, "dana", Permission::Read, mode)
                    .await,
                CoreError::NotFound(_),
                "{mode:?} on unknown experiment {id:?}"
            );
        }
        assert_err!(
            auth.put_grant(Model, "no-such-model", "dana", Permission::Read, mode)
                .await,
            CoreError::NotFound(_),
            "{mode:?} on an unknown registered model"
        );
    }
    for (kind, id, name) in [
        (Exp, missing.as_str(), "dana"),
        (Exp, "not-a-number", "dana"),
        (Exp, e1s.as_str(), "nobody"),
        (Model, "no-such-model", "dana"),
        (Model, "grants-m1", "nobody"),
    ] {
        assert_err!(
            auth.get_grant(kind, id, name).await,
            CoreError::NotFound(_),
            "get_grant({kind:?}, {id:?}, {name:?})"
        );
    }

    // Experiments first, then by resource id (as text).
    let mut want = vec![
        (Exp, grant(&e1s, Permission::Manage)),
        (Exp, grant(&e2s, Permission::Read)),
        (Model, grant("grants-m1", Permission::Use)),
        (Model, grant("grants-m2", Permission::NoPermissions)),
    ];
    let order = |(kind, g): &(GrantKind, Grant)| (*kind == Model, g.resource_id.clone());
    want.sort_by_key(order);
    assert_eq!(auth.list_grants("dana").await.must("list_grants"), want);
    user(&auth, "erin").await;
    assert!(auth
        .list_grants("erin")
        .await
        .must("list_grants")
        .is_empty());
    assert_eq!(grant_of(&auth, Exp, &e1s, "erin").await, None);
    assert_err!(
        auth.list_grants("nobody").await,
        CoreError::NotFound(_),
        "list_grants(nobody)"
    );

    auth.delete_grant(Exp, &e1s, "dana")
        .await
        .must("delete_grant");
    assert_eq!(grant_of(&auth, Exp, &e1s, "dana").await, None);
    for (kind, id, name) in [
        (Exp, e1s.as_str(), "dana"),
        (Exp, "not-a-number", "dana"),
        (Exp, e2s.as_str(), "nobody"),
        (Model, "no-such-model", "dana"),
        (Model, "grants-m1", "erin"),
    ] {
        assert_err!(
            auth.delete_grant(kind, id, name).await,
            CoreError::NotFound(_),
            "delete_grant({kind:?}, {id:?}, {name:?})"
        );
    }
    want.retain(|(kind, g)| !(*kind == Exp && g.resource_id == e1s));
    assert_eq!(auth.list_grants("dana").await.must("list_grants"), want);
    // Create works again once the grant is gone.
    put(
        &auth,
        Exp,
        &e1s,
        "dana",
        Permission::Read,
        GrantMode::Create,
    )
    .await;
}

/// Grants hang off the resource, not its name: a renamed model keeps them under its new
/// name, a new model reusing the old name starts with none, and deleting a model or
/// purging an experiment removes its grants.
pub async fn auth_grants_follow_their_resources(store: Store, registry: Registry, auth: Auth) {
    prepare(&*store).await;
    let frank = user(&auth, "frank").await;
    registered_model(&registry, "follow-old").await;
    put(
        &auth,
        Model,
        "follow-old",
        "frank",
        Permission::Edit,
        GrantMode::Create,
    )
    .await;
    registry
        .rename_registered_model("follow-old", "follow-new", T0 + 1)
        .await
        .must("rename_registered_model");
    let moved = Grant {
        resource_id: "follow-new".into(),
        user_id: frank.id,
        permission: Permission::Edit,
    };
    assert_eq!(
        grant_of(&auth, Model, "follow-new", "frank").await,
        Some(moved.clone())
    );
    assert_eq!(grant_of(&auth, Model, "follow-old", "frank").await, None);
    assert_eq!(
        auth.list_grants("frank").await.must("list_grants"),
        vec![(Model, moved)]
    );
    let access = |name: &str| Target::RegisteredModel(name.into());
    assert_eq!(
        auth.access("frank", &access("follow-new"))
            .await
            .must("access"),
        Some(Access {
            is_admin: false,
            exists: true,
            grant: Some(Permission::Edit)
        })
    );
    registered_model(&registry, "follow-old").await;
    assert_eq!(
        grant_of(&auth, Model, "follow-old", "frank").await,
        None,
        "a new model under a renamed model's old name starts without grants"
    );

    registry
        .delete_registered_model("follow-new")
        .await
        .must("delete_registered_model");
    assert_eq!(grant_of(&auth, Model, "follow-new", "frank").await, None);
    assert!(auth
        .list_grants("frank")
        .await
        .must("list_grants")
        .is_empty());
    registered_model(&registry, "follow-new").await;
    assert_eq!(
        grant_of(&auth, Model, "follow-new", "frank").await,
        None,
        "a deleted model's grants do not come back with its name"
    );

    let e = new_experiment(store.as_ref(), "follow-exp").await;
    let es = e.to_string();
    put(
        &auth,
        Exp,
        &es,
        "frank",
        Permission::Read,
        GrantMode::Create,
    )
    .await;
    store
        .set_experiment_lifecycle(e, LifecycleStage::Deleted, T0 + 2)
        .await
        .must("delete experiment");
    assert_eq!(
        grant_of(&auth, Exp, &es, "frank")
            .await
            .map(|g| g.permission),
        Some(Permission::Read),
        "a deleted (not yet purged) experiment keeps its grants"
    );
    assert!(store.purge_experiment(e).await.must("purge_experiment"));
    assert_eq!(grant_of(&auth, Exp, &es, "frank").await, None);
    assert!(auth
        .list_grants("frank")
        .await
        .must("list_grants")
        .is_empty());
    assert_eq!(
        auth.access("frank", &Target::Experiment(e))
            .await
            .must("access"),
        Some(Access {
            is_admin: false,
            exists: false,
            grant: None
        })
    );
}

/// One lookup per target: whether it exists, the user's grant on it (or on its experiment
/// or model), and the user's current admin flag.
pub async fn auth_access(store: Store, registry: Registry, auth: Auth) {
    prepare(&*store).await;
    user(&auth, "gina").await;
    user(&auth, "hank").await;
    let name = "access-exp";
    let e = new_experiment(store.as_ref(), name).await;
    let run = create_run(store.as_ref(), e, "r").await.info.run_id;
    let lm = format!("m-{}", fresh_id());
    store
        .create_logged_model(NewLoggedModel {
            model_id: lm.clone(),
            experiment_id: e,
            name: "lm".into(),
            model_type: None,
            source_run_id: Some(run.clone()),
            tags: Vec::new(),
            params: Vec::new(),
            now: T0,
        })
        .await
        .must("create_logged_model");
    registered_model(&registry, "access-model").await;
    let of_experiment = [
        Target::Experiment(e),
        Target::ExperimentName(name.into()),
        Target::Run(run),
        Target::LoggedModel(lm),
    ];
    let of_model = Target::RegisteredModel("access-model".into());
    let missing = [
        Target::Experiment(missing_experiment(&store, &[e]).await),
        Target::ExperimentName("no-such-experiment".into()),
        Target::Run(fresh_id()),
        Target::LoggedModel(format!("m-{}", fresh_id())),
        Target::RegisteredModel("no-such-model".into()),
    ];

    let check = |who: &'static str, want_admin: bool, exp: Option<Permission>, model| {
        let auth = auth.clone();
        let of_experiment = of_experiment.clone();
        let of_model = of_model.clone();
        let missing = missing.clone();
        async move {
            let access = |exists, grant| {
                Some(Access {
                    is_admin: want_admin,
                    exists,
                    grant,
                })
            };
            for t in &of_experiment {
                let got = auth.access(who, t).await.must(format_args!("access {t}"));
                assert_eq!(got, access(true, exp), "access({who}, {t})");
            }
            let got = auth.access(who, &of_model).await.must("access model");
            assert_eq!(got, access(true, model), "access({who}, {of_model})");
            for t in &missing {
                let got = auth.access(who, t).await.must(format_args!("access {t}"));
                assert_eq!(got, access(false, None), "access({who}, missing {t})");
            }
        }
    };

    check("gina", false, None, None).await;
    let es = e.to_string();
    put(&auth, Exp, &es, "gina", Permission::Use, GrantMode::Create).await;
    put(
        &auth,
        Model,
        "access-model",
        "gina",
        Permission::Read,
        GrantMode::Create,
    )
    .await;
    put(
        &auth,
        Exp,
        &es,
        "hank",
        Permission::NoPermissions,
        GrantMode::Create,
    )
    .await;
    check("gina", false, Some(Permission::Use), Some(Permission::Read)).await;
    check("hank", false, Some(Permission::NoPermissions), None).await;
    auth.set_admin("gina", true).await.must("set_admin");
    check("gina", true, Some(Permission::Use), Some(Permission::Read)).await;
    auth.set_admin("gina", false).await.must("set_admin");
    check("gina", false, Some(Permission::Use), Some(Permission::Read)).await;
    for t in of_experiment.iter().chain([&of_model]).chain(&missing) {
        assert_eq!(
            auth.access("nobody", t).await.must("access"),
            None,
            "access(nobody, {t})"
        );
    }
}

/// Tokens: stored by digest, live until they expire or are revoked, listed newest first,
/// revocable only by their owner.
pub async fn auth_tokens(store: Store, _registry: Registry, auth: Auth) {
    prepare(&*store).await;
    let ivy = user(&auth, "ivy").await;
    let jack = user(&auth, "jack").await;
    let specs = [
        ("forever", "sha-1", T0, None),
        ("day", "sha-2", T0 + 1, Some(T0 + 100)),
        ("hour", "sha-3", T0 + 2, Some(T0 + 50)),
    ];
    let mut made: Vec<AccessToken> = Vec::new();
    for (name, sha, created, expires) in specs {
        let t = auth
            .create_token("ivy", name, sha, created, expires)
            .await
            .must(format_args!("create_token({name})"));
        assert_eq!(
            (
                t.user_id,
                t.name.as_str(),
                t.created_ms,
                t.expires_ms,
                t.revoked_ms
            ),
            (ivy.id, name, created, expires, None)
        );
        made.push(t);
    }
    let other = auth
        .create_token("jack", "jacks", "sha-jack", T0, None)
        .await
        .must("create_token(jack)");
    assert_err!(
        auth.create_token("nobody", "x", "sha-x", T0, None).await,
        CoreError::NotFound(_),
        "create_token for an unknown user"
    );

    let owner = |sha: &'static str, now: i64| {
        let auth = auth.clone();
        async move { auth.token_owner(sha, now).await.must("token_owner") }
    };
    assert_eq!(owner("sha-1", T0 + 1_000_000).await, Some(ivy.clone()));
    assert_eq!(owner("sha-jack", T0).await, Some(jack.clone()));
    for (_, sha, _, expires) in specs {
        if let Some(exp) = expires {
            assert_eq!(
                owner(sha, exp - 1).await,
                Some(ivy.clone()),
                "{sha} before expiry"
            );
            assert_eq!(owner(sha, exp).await, None, "{sha} at its expiry");
            assert_eq!(owner(sha, exp + 1).await, None, "{sha} after expiry");
        }
    }
    assert_eq!(owner("sha-unknown", T0).await, None);

    let newest_first: Vec<AccessToken> = made.iter().rev().cloned().collect();
    assert_eq!(
        auth.list_tokens("ivy").await.must("list_tokens"),
        newest_first
    );
    assert_eq!(
        auth.list_tokens("jack").await.must("list_tokens"),
        vec![other.clone()]
    );
    assert_err!(
        auth.list_tokens("nobody").await,
        CoreError::NotFound(_),
        "list_tokens(nobody)"
    );

    let first = made[0].id;
    assert_err!(
        auth.revoke_token("jack", first, T0 + 5).await,
        CoreError::NotFound(_),
        "revoking another user's token"
    );
    assert_eq!(
        owner("sha-1", T0 + 6).await,
        Some(ivy.clone()),
        "still live"
    );
    let unknown = made.iter().chain([&other]).map(|t| t.id).max().unwrap_or(0) + 1000;
    assert_err!(
        auth.revoke_token("ivy", unknown, T0 + 5).await,
        CoreError::NotFound(_),
        "revoking an unknown token"
    );
    auth.revoke_token("ivy", first, T0 + 5)
        .await
        .must("revoke_token");
    assert_eq!(
        owner("sha-1", T0 + 6).await,
        None,
        "a revoked token is dead"
    );
    auth.revoke_token("ivy", first, T0 + 9)
        .await
        .must("revoking again");
    let mut want = newest_first;
    if let Some(t) = want.iter_mut().find(|t| t.id == first) {
        t.revoked_ms = Some(T0 + 5);
    }
    assert_eq!(
        auth.list_tokens("ivy").await.must("list_tokens"),
        want,
        "the first revocation time is kept"
    );
    assert_eq!(owner("sha-jack", T0).await, Some(jack));
}

/// append_audit builds one hash chain, read back in order and in windows.
pub async fn auth_audit_chain(store: Store, _registry: Registry, auth: Auth) {
    prepare(&*store).await;
    assert!(
        all_events(&auth).await.is_empty(),
        "a fresh store has no events"
    );
    let events: Vec<AuditEvent> = (1..=3)
        .map(|i| event(i, &format!("POST /api/2.0/mlflow/step-{i}")))
        .collect();
    for e in &events {
        auth.append_audit(e).await.must("append_audit");
    }
    let stored = all_events(&auth).await;
    let seqs: Vec<i64> = stored.iter().map(|e| e.seq).collect();
    let want_seqs: Vec<i64> = (1..=events.len() as i64).collect();
    assert_eq!(seqs, want_seqs);
    let got: Vec<AuditEvent> = stored.iter().map(|e| e.event.clone()).collect();
    assert_eq!(got, events, "events round-trip in order");
    assert_eq!(stored[0].prev_hash, GENESIS);
    for pair in stored.windows(2) {
        assert_eq!(pair[1].prev_hash, pair[0].hash, "link {}", pair[1].seq);
    }
    assert_chain(&stored);

    let window = auth.audit_events(1, 1).await.must("audit_events(1, 1)");
    assert_eq!(window, vec![stored[1].clone()]);
    let last = stored.last().map(|e| e.seq).unwrap_or(0);
    assert!(auth
        .audit_events(last, 10)
        .await
        .must("audit_events after the last")
        .is_empty());
    assert_eq!(
        auth.audit_events(0, 2).await.must("audit_events(0, 2)"),
        stored[..2].to_vec()
    );
}

/// Appends from many connections at once (plain events and events carried by audited
/// writes) still form one gap-free chain: the store serialises the links.
pub async fn auth_audit_chain_under_concurrency(store: Store, _registry: Registry, auth: Auth) {
    prepare(&*store).await;
    const TASKS: i64 = 8;
    const EACH: i64 = 6;
    let mut handles = Vec::new();
    for t in 0..TASKS {
        let (store, auth) = (store.clone(), auth.clone());
        handles.push(tokio::spawn(async move {
            let mut sent = Vec::new();
            for i in 0..EACH {
                let ev = event(t * 100 + i, &format!("POST /task-{t}/{i}"));
                if i % 2 == 0 {
                    auth.append_audit(&ev).await.must("append_audit");
                } else {
                    let ctx = request(None, Some(ev.clone()));
                    let name = format!("chain-{t}-{i}");
                    context::scope(ctx.clone(), new_experiment(store.as_ref(), &name)).await;
                    assert!(ctx.audit_recorded(), "{name} recorded its event");
                }
                sent.push(ev);
            }
            sent
        }));
    }
    let mut sent = Vec::new();
    for h in handles {
        sent.extend(h.await.expect("task"));
    }
    let stored = all_events(&auth).await;
    assert_eq!(stored.len(), sent.len());
    assert_chain(&stored);
    let mut got: Vec<String> = stored.iter().map(|e| e.event.request_id.clone()).collect();
    let mut want: Vec<String> = sent.iter().map(|e| e.request_id.clone()).collect();
    got.sort();
    want.sort();
    assert_eq!(got, want, "every event stored once");
}

/// Inside a request context, the first write transaction appends the pending event (the
/// single-statement writes included) and later ones nothing; a failed write leaves it
/// pending; creating an experiment or a registered model grants its creator MANAGE.
/// Outside any context writes append nothing and grant nobody.
pub async fn auth_request_context_audits_and_grants(store: Store, registry: Registry, auth: Auth) {
    prepare(&*store).await;
    let alice = user(&auth, "alice").await;
    let alice_viewer = viewer("alice", false, false);
    let mut expected: Vec<AuditEvent> = Vec::new();
    assert!(all_events(&auth).await.is_empty());

    // Creation, then a second write in the same request.
    let ev = event(1, "POST /api/2.0/mlflow/experiments/create");
    let ctx = request(Some(alice_viewer.clone()), Some(ev.clone()));
    let exp = context::scope(ctx.clone(), async {
        let id = new_experiment(store.as_ref(), "ctx-created").await;
        store
            .set_experiment_tag(id, &tag("k", "v"))
            .await
            .must("second write");
        id
    })
    .await;
    expected.push(ev);
    assert!(ctx.audit_recorded() && !ctx.has_pending_audit());
    let stored = all_events(&auth).await;
    let got: Vec<AuditEvent> = stored.iter().map(|e| e.event.clone()).collect();
    assert_eq!(got, expected, "exactly the pending event, once");
    let exps = exp.to_string();
    assert_eq!(
        grant_of(&auth, Exp, &exps, "alice").await,
        Some(Grant {
            resource_id: exps.clone(),
            user_id: alice.id,
            permission: Permission::Manage,
        }),
        "the creator manages what they create"
    );

    let ev = event(2, "POST /api/2.0/mlflow/registered-models/create");
    let ctx = request(Some(alice_viewer.clone()), Some(ev.clone()));
    context::scope(ctx.clone(), async {
        registered_model(&registry, "ctx-model").await;
        registry
            .set_registered_model_tag("ctx-model", &tag("k", "v"))
            .await
            .must("second write");
    })
    .await;
    expected.push(ev);
    assert!(ctx.audit_recorded());
    assert_eq!(
        grant_of(&auth, Model, "ctx-model", "alice")
            .await
            .map(|g| g.permission),
        Some(Permission::Manage)
    );

    // A failed write appends nothing; the next successful one carries the event.
    let ev = event(3, "POST /api/2.0/mlflow/experiments/set-experiment-tag");
    let ctx = request(Some(alice_viewer.clone()), Some(ev.clone()));
    let failed = context::scope(ctx.clone(), async {
        store
            .create_experiment(cairn_core::store::NewExperiment {
                name: "ctx-created".into(),
                artifact_location: cairn_core::store::ArtifactLocation::UnderRoot(
                    ARTIFACT_ROOT.into(),
                ),
                tags: Vec::new(),
                now: T0,
            })
            .await
    })
    .await;
    assert_err!(failed, CoreError::AlreadyExists(_), "duplicate experiment");
    assert!(ctx.has_pending_audit() && !ctx.audit_recorded());
    assert_eq!(all_events(&auth).await.len(), expected.len());
    context::scope(ctx.clone(), async {
        store
            .set_experiment_tag(exp, &tag("k2", "v2"))
            .await
            .must("set_experiment_tag");
    })
    .await;
    expected.push(ev);
    assert!(ctx.audit_recorded());

    // Writes that may skip a transaction still carry the event: a batch of plain
    // metrics, a run's deletion, the artifact index.
    let run = create_run(store.as_ref(), exp, "ctx-run").await.info.run_id;
    let file = ArtifactFile {
        path: format!("{exp}/{run}/artifacts/model.bin"),
        size: 3,
        sha256: format!("{:064x}", 3),
        etag: None,
        uploaded_at: T0,
    };
    let writes = [
        "log-batch",
        "delete-run",
        "record-artifact",
        "forget-artifacts",
    ];
    for (i, what) in writes.iter().enumerate() {
        let ev = event(10 + i as i64, &format!("POST /{what}"));
        let ctx = request(Some(alice_viewer.clone()), Some(ev.clone()));
        context::scope(ctx.clone(), async {
            match *what {
                "log-batch" => {
                    let b = batch(vec![metric("loss", 0.5, T0, 0)], Vec::new(), Vec::new());
                    log(store.as_ref(), &run, b).await;
                }
                "delete-run" => store
                    .set_run_lifecycle(&run, LifecycleStage::Deleted, T0 + 1)
                    .await
                    .must("delete run"),
                "record-artifact" => store.record_artifact(&file).await.must("record"),
                _ => {
                    store.forget_artifacts(&file.path).await.must("forget");
                }
            }
        })
        .await;
        expected.push(ev);
        assert!(ctx.audit_recorded(), "{what} recorded the event");
        let got: Vec<AuditEvent> = all_events(&auth)
            .await
            .into_iter()
            .map(|e| e.event)
            .collect();
        assert_eq!(got, expected, "after {what}");
    }
    let logged = store.get_run(&run).await.must("get_run");
    assert_eq!(logged.data.metrics.len(), 1, "the audited batch landed");

    // Without a viewer (authentication off) the event is appended and nobody granted.
    let grants_before = auth.list_grants("alice").await.must("list_grants");
    let ev = event(20, "POST /api/2.0/mlflow/experiments/create");
    let ctx = request(None, Some(ev.clone()));
    let anonymous = context::scope(ctx, new_experiment(store.as_ref(), "ctx-anonymous")).await;
    expected.push(ev);
    assert_eq!(
        auth.list_grants("alice").await.must("list_grants"),
        grants_before
    );
    assert_eq!(
        grant_of(&auth, Exp, &anonymous.to_string(), "alice").await,
        None
    );

    // A viewer without an event: the creator is granted, nothing is appended.
    let ctx = request(Some(alice_viewer.clone()), None);
    let quiet = context::scope(ctx, new_experiment(store.as_ref(), "ctx-quiet")).await;
    assert_eq!(
        grant_of(&auth, Exp, &quiet.to_string(), "alice")
            .await
            .map(|g| g.permission),
        Some(Permission::Manage)
    );

    // Outside any request: nothing appended, nobody granted.
    let outside = new_experiment(store.as_ref(), "ctx-outside").await;
    store
        .set_experiment_tag(outside, &tag("k", "v"))
        .await
        .must("set_experiment_tag");
    registered_model(&registry, "ctx-outside-model").await;
    let run2 = create_run(store.as_ref(), outside, "outside-run")
        .await
        .info
        .run_id;
    log(
        store.as_ref(),
        &run2,
        batch(vec![metric("loss", 1.0, T0, 0)], Vec::new(), Vec::new()),
    )
    .await;
    store.record_artifact(&file).await.must("record_artifact");
    assert_eq!(
        grant_of(&auth, Exp, &outside.to_string(), "alice").await,
        None
    );
    assert_eq!(
        grant_of(&auth, Model, "ctx-outside-model", "alice").await,
        None
    );

    let stored = all_events(&auth).await;
    let got: Vec<AuditEvent> = stored.iter().map(|e| e.event.clone()).collect();
    assert_eq!(got, expected, "only the requests' events, in order");
    assert_chain(&stored);
}

async fn experiment_ids(store: &Store, ctx: Option<Arc<RequestContext>>) -> Vec<String> {
    let found = collect_pages("search_experiments", 2, |offset| {
        let store = store.clone();
        let ctx = ctx.clone();
        async move {
            let q = ExperimentSearch {
                filter: None,
                view: ViewType::All,
                max_results: 2,
                order_by: Vec::new(),
                offset,
            };
            within(ctx, store.search_experiments(&q))
                .await
                .must("search_experiments")
        }
    })
    .await;
    found.into_iter().map(|e| e.experiment_id).collect()
}

fn registry_query(offset: u64) -> RegistrySearch {
    RegistrySearch {
        filter: None,
        exclude_prompts: false,
        order_by: Vec::new(),
        max_results: 2,
        offset,
    }
}

async fn model_names(reg: &Registry, ctx: Option<Arc<RequestContext>>) -> Vec<String> {
    let found = collect_pages("search_registered_models", 2, |offset| {
        let reg = reg.clone();
        let ctx = ctx.clone();
        async move {
            within(ctx, reg.search_registered_models(&registry_query(offset)))
                .await
                .must("search_registered_models")
        }
    })
    .await;
    found.into_iter().map(|m| m.name).collect()
}

async fn version_ids(reg: &Registry, ctx: Option<Arc<RequestContext>>) -> Vec<String> {
    let found = collect_pages("search_model_versions", 2, |offset| {
        let reg = reg.clone();
        let ctx = ctx.clone();
        async move {
            within(ctx, reg.search_model_versions(&registry_query(offset)))
                .await
                .must("search_model_versions")
        }
    })
    .await;
    found
        .into_iter()
        .map(|v| format!("{}/{}", v.name, v.version))
        .collect()
}

/// A non-admin viewer's searches list what they hold a grant other than NO_PERMISSIONS
/// on, plus, when the default permission reads, everything they hold no grant on; paged
/// in the query, so pages stay full. Administrators, requests without a viewer and calls
/// outside a request see everything.
pub async fn auth_searches_show_what_the_viewer_may_read(
    store: Store,
    registry: Registry,
    auth: Auth,
) {
    prepare(&*store).await;
    user(&auth, "alice").await;
    user(&auth, "bob").await;
    let alice_grants = [
        ("read", Some(Permission::Read)),
        ("none", Some(Permission::NoPermissions)),
        ("manage", Some(Permission::Manage)),
        ("use", Some(Permission::Use)),
        ("nogrant", None),
        ("nogrant2", None),
    ];
    // bob's grants must not leak into alice's view.
    let bob_grants = [
        ("nogrant", Permission::Read),
        ("read", Permission::NoPermissions),
    ];
    // resource id (experiment id or model name) -> alice's grant
    let mut exp_grants: BTreeMap<String, Permission> = BTreeMap::new();
    let mut model_grants: BTreeMap<String, Permission> = BTreeMap::new();
    let mut exp_of: BTreeMap<&str, String> = BTreeMap::new();
    for (suffix, grant) in alice_grants {
        let id = new_experiment(store.as_ref(), &format!("vis-{suffix}"))
            .await
            .to_string();
        let model = format!("vis-model-{suffix}");
        registered_model(&registry, &model).await;
        model_version(&registry, &model).await;
        model_version(&registry, &model).await;
        if let Some(p) = grant {
            put(&auth, Exp, &id, "alice", p, GrantMode::Create).await;
            put(&auth, Model, &model, "alice", p, GrantMode::Create).await;
            exp_grants.insert(id.clone(), p);
            model_grants.insert(model, p);
        }
        exp_of.insert(suffix, id);
    }
    for (suffix, p) in bob_grants {
        put(&auth, Exp, &exp_of[suffix], "bob", p, GrantMode::Create).await;
        let model = format!("vis-model-{suffix}");
        put(&auth, Model, &model, "bob", p, GrantMode::Create).await;
    }

    let all_exps = experiment_ids(&store, None).await;
    let all_models = model_names(&registry, None).await;
    let all_versions = version_ids(&registry, None).await;
    let visible = |grants: &BTreeMap<String, Permission>, key: &str, default_read: bool| {
        grants
            .get(key)
            .map_or(default_read, |p| *p != Permission::NoPermissions)
    };
    for default_read in [false, true] {
        let what = format!("default_read={default_read}");
        let ctx = || Some(request(Some(viewer("alice", false, default_read)), None));
        let want: Vec<String> = all_exps
            .iter()
            .filter(|id| visible(&exp_grants, id, default_read))
            .cloned()
            .collect();
        assert_ne!(want, all_exps, "the scenario hides something");
        assert_same_ids(
            "search_experiments as alice",
            &experiment_ids(&store, ctx()).await,
            &want,
            &what,
        );
        let want: Vec<String> = all_models
            .iter()
            .filter(|m| visible(&model_grants, m, default_read))
            .cloned()
            .collect();
        assert_ne!(want, all_models, "the scenario hides something");
        assert_same_ids(
            "search_registered_models as alice",
            &model_names(&registry, ctx()).await,
            &want,
            &what,
        );
        let want: Vec<String> = all_versions
            .iter()
            .filter(|v| {
                let model = v.rsplit_once('/').map_or(v.as_str(), |(m, _)| m);
                visible(&model_grants, model, default_read)
            })
            .cloned()
            .collect();
        assert_same_ids(
            "search_model_versions as alice",
            &version_ids(&registry, ctx()).await,
            &want,
            &what,
        );
    }
    // Unrestricted: an administrator, a request without a viewer.
    for ctx in [
        request(Some(viewer("alice", true, false)), None),
        request(None, None),
    ] {
        let what = format!("viewer {:?}", ctx.viewer());
        assert_same_ids(
            "search_experiments",
            &experiment_ids(&store, Some(ctx.clone())).await,
            &all_exps,
            &what,
        );
        assert_same_ids(
            "search_registered_models",
            &model_names(&registry, Some(ctx.clone())).await,
            &all_models,
            &what,
        );
        assert_same_ids(
            "search_model_versions",
            &version_ids(&registry, Some(ctx)).await,
            &all_versions,
            &what,
        );
    }
    // Outside any request every experiment is listed, Default included.
    assert!(all_exps.iter().any(|id| id == "0"));
    assert_eq!(all_exps.len(), alice_grants.len() + 1);
}
