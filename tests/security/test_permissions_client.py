"""Accounts, per-resource permissions and personal access tokens, through the unmodified
`mlflow` client (3.17.2) against `cairn server --auth --default-permission NO_PERMISSIONS`.

Each user is a separate fresh interpreter whose environment holds only that user's
credentials (see cairn_util.Actor): `admin`, `alice` (creates an experiment, a run with an
artifact and a registered model, and so holds MANAGE on them) and `bob` (no grant, so no
access, until alice grants him one with the client's grant API). The admin side uses
`mlflow.server.get_app_client("basic-auth")`.

Env: CAIRN_BIN (default <repo>/target/debug/cairn).
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest

from cairn_util import PASSWORD, Actor, Api, basic, server_env, start, stop

ALICE_PW = "alice-password-1"
BOB_PW = "bob-password-22"

PRELUDE = """
import mlflow.server
auth = mlflow.server.get_app_client("basic-auth", tracking_uri=os.environ["MLFLOW_TRACKING_URI"])
c = MlflowClient()
"""


@pytest.fixture(scope="module")
def env():
    tmp = Path(tempfile.mkdtemp(prefix="cairn-perms-"))
    proc, url = start(tmp, "--auth", "--default-permission", "NO_PERMISSIONS", env=server_env())
    # Start the interpreters together: importing mlflow is most of their cost.
    actors = {
        "admin": Actor(url, "admin", PRELUDE, **basic("admin", PASSWORD)),
        "alice": Actor(url, "alice", PRELUDE, **basic("alice", ALICE_PW)),
        "bob": Actor(url, "bob", PRELUDE, **basic("bob", BOB_PW)),
    }
    try:
        created = actors["admin"].ok(f"""
a = auth.create_user("alice", {ALICE_PW!r})
b = auth.create_user("bob", {BOB_PW!r})
result = [[u.id, u.username, u.is_admin] for u in (a, b)]
""")
        assert [row[1:] for row in created] == [["alice", False], ["bob", False]]
        assert created[0][0] != created[1][0]
        yield url, actors, tmp
    finally:
        for a in actors.values():
            a.close()
        stop(proc)
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture(scope="module")
def url(env):
    return env[0]


@pytest.fixture(scope="module")
def admin(env):
    return env[1]["admin"]


@pytest.fixture(scope="module")
def alice(env):
    return env[1]["alice"]


@pytest.fixture(scope="module")
def bob(env):
    return env[1]["bob"]


@pytest.fixture(scope="module")
def owned(alice):
    """What alice creates: an experiment with one run (a param, a metric, an artifact) and
    a registered model with one version."""
    exp_id, run_id, version = alice.ok("""
exp_id = mlflow.create_experiment("alice-private")
with mlflow.start_run(experiment_id=exp_id) as run:
    mlflow.log_param("lr", "0.1")
    mlflow.log_metric("loss", 0.5)
    mlflow.log_text("top secret", "notes/secret.txt")
run_id = run.info.run_id
c.create_registered_model("alice-model")
mv = c.create_model_version("alice-model", run.info.artifact_uri + "/notes", run_id=run_id)
result = [exp_id, run_id, mv.version]
""")
    return {"exp": exp_id, "run": run_id, "model": "alice-model", "version": str(version)}


def perm(actor: Actor, username: str, resource_type: str, resource_id: str) -> list:
    return actor.ok(
        f"r = auth.get_user_permission({username!r}, {resource_type!r}, {resource_id!r})\n"
        "result = [r.permission, r.allowed]"
    )


# --- accounts ----------------------------------------------------------------------------


def test_admin_reads_users_and_gets_mlflow_errors(admin):
    got = admin.ok("u = auth.get_user('alice'); result = [u.username, u.is_admin, u.id]")
    assert got[:2] == ["alice", False] and isinstance(got[2], int)
    admin.fails("auth.create_user('alice', 'another-password')", "RESOURCE_ALREADY_EXISTS")
    admin.fails("auth.create_user('shorty', 'short')", "INVALID_PARAMETER_VALUE")
    admin.fails("auth.get_user('nobody')", "RESOURCE_DOES_NOT_EXIST")
    admin.fails("auth.delete_user('nobody')", "RESOURCE_DOES_NOT_EXIST")
    admin.fails("auth.update_user_admin('nobody', True)", "RESOURCE_DOES_NOT_EXIST")
    admin.fails("auth.update_user_password('nobody', 'new-password-1')", "RESOURCE_DOES_NOT_EXIST")


def test_update_user_admin_reset_password_and_delete_user(url, admin):
    admin.ok("auth.create_user('carol', 'carol-password-1')")
    carol = Api(url, "carol", "carol-password-1")
    assert carol.get("users/list").status_code == 403
    admin.ok("auth.update_user_admin('carol', True)")
    assert admin.ok("result = auth.get_user('carol').is_admin") is True
    listed = carol.get("users/list")
    assert listed.status_code == 200, listed.text
    assert {"alice", "bob", "carol", "admin"} <= {u["username"] for u in listed.json()["users"]}
    admin.ok("auth.update_user_admin('carol', False)")
    assert admin.ok("result = auth.get_user('carol').is_admin") is False
    assert carol.get("users/list").status_code == 403  # demotion takes effect at once
    # An administrator resets someone else's password without the current one.
    admin.ok("auth.update_user_password('carol', 'carol-password-2')")
    assert carol.get("users/current").status_code == 401
    carol = Api(url, "carol", "carol-password-2")
    assert carol.get("users/current").json()["user"]["username"] == "carol"
    admin.ok("auth.delete_user('carol')")
    admin.fails("auth.get_user('carol')", "RESOURCE_DOES_NOT_EXIST")
    r = carol.get("users/current")
    assert r.status_code == 401 and r.json()["error_code"] == "UNAUTHENTICATED"
    admin.fails("auth.delete_user('carol')", "RESOURCE_DOES_NOT_EXIST")
    admin.fails("auth.delete_user('admin')", "INVALID_PARAMETER_VALUE")


def test_non_admins_cannot_manage_accounts(alice, admin):
    assert alice.ok("u = auth.get_user('alice'); result = [u.username, u.is_admin]") == [
        "alice", False]
    for code in [
        "auth.create_user('mallory', 'mallory-password')",
        "auth.get_user('bob')",
        "auth.update_user_admin('alice', True)",
        "auth.update_user_password('bob', 'hijacked-password')",
        "auth.delete_user('bob')",
    ]:
        out = alice.fails(code, "PERMISSION_DENIED")
        assert out["status"] == 403
    assert admin.ok("result = auth.get_user('alice').is_admin") is False
    assert admin.ok("result = auth.get_user('bob').username") == "bob"


def test_self_service_password_change_needs_the_current_password(url, alice):
    new = "alice-password-2"
    alice.fails(f"auth.update_user_password('alice', {new!r})", "INVALID_PARAMETER_VALUE")
    alice.fails(
        f"auth.update_user_password('alice', {new!r}, current_password='wrong-password')",
        "INVALID_PARAMETER_VALUE",
    )
    alice.fails(
        f"auth.update_user_password('alice', 'short', current_password={ALICE_PW!r})",
        "INVALID_PARAMETER_VALUE",
    )
    assert Api(url, "alice", ALICE_PW).get("users/current").status_code == 200
    alice.ok(f"auth.update_user_password('alice', {new!r}, current_password={ALICE_PW!r})")
    try:
        r = Api(url, "alice", ALICE_PW).get("users/current")
        assert r.status_code == 401 and r.json()["error_code"] == "UNAUTHENTICATED"
        assert Api(url, "alice", new).get("users/current").status_code == 200
    finally:
        # Back to the password the rest of the module uses.
        alice.ok(f"""
os.environ["MLFLOW_TRACKING_PASSWORD"] = {new!r}
auth.update_user_password('alice', {ALICE_PW!r}, current_password={new!r})
os.environ["MLFLOW_TRACKING_PASSWORD"] = {ALICE_PW!r}
""")
    assert alice.ok("result = auth.get_user('alice').username") == "alice"


# --- the grant API -----------------------------------------------------------------------


def test_grant_get_revoke_as_admin(admin, owned):
    exp, model = owned["exp"], owned["model"]
    for rtype, rid in (("experiment", exp), ("registered_model", model)):
        assert perm(admin, "bob", rtype, rid) == ["NO_PERMISSIONS", False]
        assert perm(admin, "alice", rtype, rid) == ["MANAGE", True]  # the creator
        assert perm(admin, "admin", rtype, rid) == ["MANAGE", True]
        admin.ok(f"auth.grant_user_permission('bob', {rtype!r}, {rid!r}, 'READ')")
        assert perm(admin, "bob", rtype, rid) == ["READ", False]
        admin.ok(f"auth.grant_user_permission('bob', {rtype!r}, {rid!r}, 'USE')")  # replaces
        assert perm(admin, "bob", rtype, rid) == ["USE", True]
        admin.ok(f"auth.revoke_user_permission('bob', {rtype!r}, {rid!r})")
        assert perm(admin, "bob", rtype, rid) == ["NO_PERMISSIONS", False]
        admin.fails(f"auth.revoke_user_permission('bob', {rtype!r}, {rid!r})",
                    "RESOURCE_DOES_NOT_EXIST")
        admin.fails(f"auth.grant_user_permission('nobody', {rtype!r}, {rid!r}, 'READ')",
                    "RESOURCE_DOES_NOT_EXIST")
        admin.fails(f"auth.grant_user_permission('bob', {rtype!r}, {rid!r}, 'SUPERUSER')",
                    "INVALID_PARAMETER_VALUE")
        admin.fails(f"auth.get_user_permission('nobody', {rtype!r}, {rid!r})",
                    "RESOURCE_DOES_NOT_EXIST")
    admin.fails("auth.grant_user_permission('bob', 'experiment', '987654', 'READ')",
                "RESOURCE_DOES_NOT_EXIST")
    admin.fails("auth.grant_user_permission('bob', 'registered_model', 'no-such-model', 'READ')",
                "RESOURCE_DOES_NOT_EXIST")
    admin.fails("auth.grant_user_permission('bob', 'dataset', 'x', 'READ')",
                "INVALID_PARAMETER_VALUE")


# --- what bob may do on alice's experiment -----------------------------------------------


def test_without_a_grant_bob_sees_nothing_of_alices(bob, owned):
    exp, run, model = owned["exp"], owned["run"], owned["model"]
    for code in [
        f"c.get_experiment({exp!r})",
        "c.get_experiment_by_name('alice-private')",
        f"c.get_run({run!r})",
        f"c.search_runs([{exp!r}])",
        f"c.log_metric({run!r}, 'loss', 0.1)",
        f"mlflow.artifacts.load_text('runs:/{run}/notes/secret.txt')",
        f"c.get_registered_model({model!r})",
        f"c.get_model_version({model!r}, {owned['version']!r})",
        f"auth.grant_user_permission('bob', 'experiment', {exp!r}, 'MANAGE')",
        f"auth.grant_user_permission('bob', 'registered_model', {model!r}, 'MANAGE')",
    ]:
        out = bob.fails(code, "PERMISSION_DENIED")
        assert out["status"] == 403, code
    assert "alice-private" not in bob.ok("result = [e.name for e in c.search_experiments()]")
    assert bob.ok("result = [m.name for m in c.search_registered_models()]") == []
    assert bob.ok("result = [m.name for m in c.search_model_versions()]") == []


def test_alice_grants_bob_read_then_edit_then_revokes(alice, bob, owned, tmp_path):
    exp, run = owned["exp"], owned["run"]
    alice.ok(f"auth.grant_user_permission('bob', 'experiment', {exp!r}, 'READ')")
    assert perm(alice, "bob", "experiment", exp) == ["READ", False]

    # READ: bob reads the experiment, the run and its artifact ...
    assert bob.ok(f"result = c.get_experiment({exp!r}).name") == "alice-private"
    assert "alice-private" in bob.ok("result = [e.name for e in c.search_experiments()]")
    got = bob.ok(f"r = c.get_run({run!r}); result = [r.data.params, r.data.metrics]")
    assert got == [{"lr": "0.1"}, {"loss": 0.5}]
    assert bob.ok(f"result = [r.info.run_id for r in c.search_runs([{exp!r}])]") == [run]
    assert bob.ok(
        f"result = mlflow.artifacts.load_text('runs:/{run}/notes/secret.txt')") == "top secret"
    dest = tmp_path / "dl"
    local = bob.ok(
        f"result = mlflow.artifacts.download_artifacts(run_id={run!r}, artifact_path='notes', "
        f"dst_path={str(dest)!r})")
    assert (Path(local) / "secret.txt").read_text() == "top secret"
    # ... but changes nothing and cannot grant himself more.
    for code in [
        f"c.log_metric({run!r}, 'loss', 0.1)",
        f"c.set_tag({run!r}, 'by', 'bob')",
        f"c.create_run({exp!r})",
        f"c.log_text({run!r}, 'bob was here', 'notes/bob.txt')",
        f"c.set_experiment_tag({exp!r}, 'by', 'bob')",
        f"auth.grant_user_permission('bob', 'experiment', {exp!r}, 'EDIT')",
    ]:
        out = bob.fails(code, "PERMISSION_DENIED")
        assert out["status"] == 403, code

    # EDIT: bob logs; deleting (MANAGE) and granting are still alice's.
    alice.ok(f"auth.grant_user_permission('bob', 'experiment', {exp!r}, 'EDIT')")
    assert perm(alice, "bob", "experiment", exp) == ["EDIT", True]
    bob.ok(f"c.log_metric({run!r}, 'loss', 0.125, step=1)")
    bob.ok(f"c.log_text({run!r}, 'bob was here', 'notes/bob.txt')")
    bob_run = bob.ok(f"result = c.create_run({exp!r}).info.run_id")
    history = alice.ok(
        f"result = sorted((m.step, m.value) for m in c.get_metric_history({run!r}, 'loss'))")
    assert history == [[0, 0.5], [1, 0.125]]
    assert alice.ok(
        f"result = mlflow.artifacts.load_text('runs:/{run}/notes/bob.txt')") == "bob was here"
    assert alice.ok(f"result = c.get_run({bob_run!r}).info.experiment_id") == exp
    for code in [
        f"c.delete_experiment({exp!r})",
        f"auth.grant_user_permission('bob', 'experiment', {exp!r}, 'MANAGE')",
    ]:
        bob.fails(code, "PERMISSION_DENIED")

    # Revoked: back to nothing.
    alice.ok(f"auth.revoke_user_permission('bob', 'experiment', {exp!r})")
    assert perm(alice, "bob", "experiment", exp) == ["NO_PERMISSIONS", False]
    bob.fails(f"c.get_experiment({exp!r})", "PERMISSION_DENIED")
    bob.fails(f"c.log_metric({run!r}, 'loss', 0.1)", "PERMISSION_DENIED")
    assert "alice-private" not in bob.ok("result = [e.name for e in c.search_experiments()]")


def test_registered_model_grants(alice, bob, owned):
    model, version = owned["model"], owned["version"]
    alice.ok(f"auth.grant_user_permission('bob', 'registered_model', {model!r}, 'READ')")
    assert bob.ok(f"result = c.get_registered_model({model!r}).name") == model
    assert bob.ok(f"result = c.get_model_version({model!r}, {version!r}).version") == version
    assert bob.ok("result = [m.name for m in c.search_registered_models()]") == [model]
    bob.fails(f"c.update_registered_model({model!r}, description='bob')", "PERMISSION_DENIED")
    bob.fails(f"c.set_registered_model_alias({model!r}, 'prod', {version!r})",
              "PERMISSION_DENIED")
    alice.ok(f"auth.grant_user_permission('bob', 'registered_model', {model!r}, 'EDIT')")
    bob.ok(f"c.update_registered_model({model!r}, description='by bob')")
    assert alice.ok(f"result = c.get_registered_model({model!r}).description") == "by bob"
    bob.fails(f"c.delete_registered_model({model!r})", "PERMISSION_DENIED")
    alice.ok(f"auth.revoke_user_permission('bob', 'registered_model', {model!r})")
    bob.fails(f"c.get_registered_model({model!r})", "PERMISSION_DENIED")
    assert bob.ok("result = [m.name for m in c.search_registered_models()]") == []


# --- personal access tokens --------------------------------------------------------------


def test_a_token_works_as_mlflow_tracking_token_until_revoked(url, admin, alice, bob):
    # (Few failed sign-ins in this module: from one address, the fourth and later ones
    # are held back 0.25 s, 0.5 s, 1 s, ... by the brute-force slow-down.)
    alice_api = Api(url, "alice", ALICE_PW)
    for bad in (0, 366):
        r = alice_api.post("users/access-tokens/create", {"name": "bad", "expires_in_days": bad})
        assert r.status_code == 400, (bad, r.text)
    r = alice_api.post("users/access-tokens/create", {"name": "ci", "expires_in_days": 7})
    assert r.status_code == 200, r.text
    token, token_id = r.json()["token"], r.json()["access_token"]["id"]
    assert token.startswith("cairn_pat_")
    me = Api(url, token=token).get("users/current")
    assert me.status_code == 200 and me.json()["user"]["username"] == "alice", me.text

    client = Actor(url, "alice-token", "c = MlflowClient()", MLFLOW_TRACKING_TOKEN=token)
    try:
        exp, run = client.ok("""
assert "MLFLOW_TRACKING_USERNAME" not in os.environ
assert "MLFLOW_TRACKING_PASSWORD" not in os.environ
mlflow.set_experiment("alice-token-exp")
with mlflow.start_run() as run:
    mlflow.log_param("via", "token")
    mlflow.log_metric("acc", 0.75)
    mlflow.log_text("from a token", "t.txt")
got = c.get_run(run.info.run_id)
assert got.data.params == {"via": "token"}, got.data.params
assert got.data.metrics == {"acc": 0.75}, got.data.metrics
assert mlflow.artifacts.load_text(f"runs:/{run.info.run_id}/t.txt") == "from a token"
result = [run.info.experiment_id, run.info.run_id]
""")
        # It acted as alice: she created (and so manages) the experiment, bob sees nothing.
        assert perm(admin, "alice", "experiment", exp) == ["MANAGE", True]
        assert alice.ok(f"result = c.get_run({run!r}).data.params") == {"via": "token"}
        bob.fails(f"c.get_run({run!r})", "PERMISSION_DENIED")
        # A token cannot be revoked by someone else.
        r = Api(url, "bob", BOB_PW).post("users/access-tokens/revoke", {"id": token_id})
        assert r.status_code in (403, 404), r.text
        assert client.ok(f"result = c.get_run({run!r}).info.run_id") == run

        r = alice_api.post("users/access-tokens/revoke", {"id": token_id})
        assert r.status_code == 200, r.text
        listed = alice_api.get("users/access-tokens/list").json()["access_tokens"]
        assert [t["revoked_ms"] is not None for t in listed if t["id"] == token_id] == [True]
        # The same interpreter, the same token: refused from now on.
        out = client.fails(f"c.get_run({run!r})", "UNAUTHENTICATED")
        assert out["status"] == 401
    finally:
        client.close()
    r = Api(url, token="cairn_pat_not-a-real-token").get("experiments/search", max_results=1)
    assert r.status_code == 401 and r.json()["error_code"] == "UNAUTHENTICATED"
