"""`cairn serve --auth tracking`: inbound authentication delegated to the tracking server.

The module runs its own `cairn server --auth --default-permission NO_PERMISSIONS` (not the
session's tracking server), logs and registers an iris ONNX model there with the real
`mlflow` client as the administrator, and starts `cairn serve --auth tracking
--auth-cache-ttl 1s`, which downloads the model with the administrator's credentials
(MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD). Callers are plain `requests` (REST)
and `tritonclient.grpc` (gRPC, credentials in the `authorization` metadata key), each with
its own user so that cached decisions of one test never answer another's:

| user  | grant                                   | used by                                |
|-------|-----------------------------------------|----------------------------------------|
| alice | READ on the registered model            | allowed callers                        |
| bob   | none (default NO_PERMISSIONS)           | denied callers, local-directory models |
| carol | READ on the registered model            | a personal access token, revoked       |
| dave  | READ, revoked, then granted again       | grant revocation                       |
| erin  | READ on the registered model            | first call once the tracking server is down (503) |
| gina  | READ on the run's experiment only       | runs:/ and models:/m-... models        |

Failed sign-ins are slowed down by the tracking server per client address (a few free,
then a doubling hold up to 8 s, remembered for 5 minutes), and every check `cairn serve`
forwards comes from 127.0.0.1. So the tests of wrong credentials run against a second
tracking server ("guard": same users, no grants) and a `cairn serve` of a local model
directory on it with the default cache TTL, keeping the main one's failures to the revoked
token of test 5.

The last test stops the main tracking server: it must stay last in the file.
"""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import mlflow
import mlflow.onnx
import numpy as np
import pytest
import requests
import tritonclient.grpc as grpcclient
from mlflow import MlflowClient
from mlflow.models import infer_signature
from mlflow.tracking._tracking_service import utils as tracking_utils
from tritonclient.utils import InferenceServerException

import serving_models as sm
from serving_util import (
    assert_close,
    cairn_bin,
    start_serve,
    start_tracking_server,
    unique,
    with_env,
)

ADMIN = "admin"
ADMIN_PW = "serve-auth-admin-password"
PASSWORDS = {
    "alice": "alice-password-1",
    "bob": "bob-password-22",
    "carol": "carol-password-333",
    "dave": "dave-password-4444",
    "erin": "erin-password-55555",
    "gina": "gina-password-666666",
}
READERS = ("alice", "carol", "dave", "erin")  # READ on the registered model

TTL_S = 1.0
# How long a revocation may take to reach `cairn serve`: the cache TTL plus generous slack
# for a loaded CI machine (a cache that never expires still fails).
REVOCATION_DEADLINE_S = TTL_S + 5.0

REALM = 'Basic realm="cairn serve"'

# The tracking server's environment: the administrator's password, and nothing that would
# configure it (or a client) differently.
TRACKING_ENV = {
    "CAIRN_ADMIN_PASSWORD": ADMIN_PW,
    "CAIRN_ADMIN_USERNAME": None,
    "CAIRN_AUTH": None,
    "CAIRN_DEFAULT_PERMISSION": None,
    "MLFLOW_TRACKING_USERNAME": None,
    "MLFLOW_TRACKING_PASSWORD": None,
    "MLFLOW_TRACKING_TOKEN": None,
}
# `cairn serve` downloads models as the administrator.
SERVE_ENV = {
    "MLFLOW_TRACKING_URI": None,
    "MLFLOW_TRACKING_USERNAME": ADMIN,
    "MLFLOW_TRACKING_PASSWORD": ADMIN_PW,
    "MLFLOW_TRACKING_TOKEN": None,
    "CAIRN_SERVE_HOST": None,
    "CAIRN_INSECURE_NO_AUTH": None,
    "CAIRN_SERVE_AUTH": None,
    "CAIRN_SERVE_AUTH_CACHE_TTL": None,
}


def basic(user: str, password: str | None = None) -> dict[str, str]:
    password = PASSWORDS[user] if password is None else password
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def grpc_headers(headers: dict[str, str]) -> dict[str, str]:
    """gRPC metadata keys are lower case."""
    return {k.lower(): v for k, v in headers.items()}


# ---------------------------------------------------------------------------------------
# The tracking server and its REST API


class Tracking:
    def __init__(self, server):
        self.server = server
        self.url = server.url

    def call(self, method: str, path: str, headers: dict[str, str], body: dict | None = None):
        return requests.request(
            method, f"{self.url}/api/2.0/mlflow/{path}", headers=headers, json=body, timeout=30
        )

    def admin(self, method: str, path: str, body: dict | None = None) -> dict:
        r = self.call(method, path, basic(ADMIN, ADMIN_PW), body)
        assert r.status_code == 200, f"{method} {path} {body}: {r.status_code} {r.text}"
        return r.json()

    def grant_model(self, name: str, user: str, permission: str = "READ") -> None:
        self.admin(
            "POST",
            "registered-models/permissions/create",
            {"name": name, "username": user, "permission": permission},
        )

    def revoke_model(self, name: str, user: str) -> None:
        self.admin("DELETE", "registered-models/permissions/delete", {"name": name, "username": user})

    def grant_experiment(self, experiment_id: str, user: str, permission: str = "READ") -> None:
        self.admin(
            "POST",
            "experiments/permissions/create",
            {"experiment_id": experiment_id, "username": user, "permission": permission},
        )


@contextmanager
def mlflow_client_as(url: str, username: str, password: str):
    """The process-wide mlflow client pointed at `url` with `username`'s credentials;
    restores the tracking URI and the credential variables afterwards (the session's
    tracking server of the other modules may be in use)."""
    keys = [
        "MLFLOW_TRACKING_URI",
        "MLFLOW_TRACKING_USERNAME",
        "MLFLOW_TRACKING_PASSWORD",
        "MLFLOW_TRACKING_TOKEN",
    ]
    saved_env = {k: os.environ.get(k) for k in keys}
    saved_uri = tracking_utils._tracking_uri
    try:
        os.environ.pop("MLFLOW_TRACKING_TOKEN", None)
        os.environ["MLFLOW_TRACKING_USERNAME"] = username
        os.environ["MLFLOW_TRACKING_PASSWORD"] = password
        mlflow.set_tracking_uri(url)
        yield MlflowClient(tracking_uri=url)
    finally:
        tracking_utils.set_tracking_uri(saved_uri)
        for k, v in saved_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@pytest.fixture(scope="module")
def root():
    path = Path(tempfile.mkdtemp(prefix="cairn-serve-auth-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def tracking(root):
    tdir = root / "tracking"
    tdir.mkdir()
    server = start_tracking_server(
        tdir, "--auth", "--default-permission", "NO_PERMISSIONS", env=TRACKING_ENV
    )
    try:
        yield Tracking(server)
    finally:
        server.stop()


@pytest.fixture(scope="module")
def iris(tracking) -> sm.ModelCase:
    """The iris classifier, logged in a new experiment and registered by the administrator
    with the real mlflow client; READ on the registered model for READERS and, on the
    experiment only, for gina."""
    onx, X = sm.iris_classifier()
    name = unique("iris-auth")
    sig = infer_signature(X, sm._outputs_for_signature(onx, X))
    with mlflow_client_as(tracking.url, ADMIN, ADMIN_PW) as client:
        exp_id = client.create_experiment(unique("serve-auth"))
        with mlflow.start_run(experiment_id=exp_id) as run:
            info = mlflow.onnx.log_model(
                onx,
                name="model",
                registered_model_name=name,
                signature=sig,
                input_example=X[:2],
                pip_requirements=sm.ONNX_REQUIREMENTS,
            )
    case = sm.ModelCase(
        name=name,
        version=str(info.registered_model_version),
        uri=f"models:/{name}/{info.registered_model_version}",
        onnx_bytes=onx.SerializeToString(),
        X=X,
        model_id=getattr(info, "model_id", None),
        run_id=run.info.run_id,
    )
    for user, password in PASSWORDS.items():
        tracking.admin("POST", "users/create", {"username": user, "password": password})
    for user in READERS:
        tracking.grant_model(name, user)
    tracking.grant_experiment(exp_id, "gina")
    return case


@pytest.fixture(scope="module")
def local_iris(root, iris) -> Path:
    """The same graph as a local MLflow model directory."""
    import onnx

    path = root / "local-iris"
    mlflow.onnx.save_model(onnx.load_from_string(iris.onnx_bytes), str(path), pip_requirements=sm.ONNX_REQUIREMENTS)
    return path


@pytest.fixture(scope="module")
def guard_tracking(root):
    """A second auth-enabled tracking server with alice and bob (no grants), for the tests
    that send wrong credentials."""
    tdir = root / "guard-tracking"
    tdir.mkdir()
    server = start_tracking_server(tdir, "--auth", "--default-permission", "NO_PERMISSIONS", env=TRACKING_ENV)
    try:
        t = Tracking(server)
        for user in ("alice", "bob"):
            t.admin("POST", "users/create", {"username": user, "password": PASSWORDS[user]})
        yield t
    finally:
        server.stop()


@pytest.fixture(scope="module")
def guard_served(root, guard_tracking, local_iris):
    """`cairn serve --auth tracking` (default TTL) of the local iris directory as `iris`."""
    s = start_serve(
        {"iris": str(local_iris)},
        "--auth",
        "tracking",
        tracking_uri=guard_tracking.url,
        workdir=root / "guard-serve",
        env=SERVE_ENV,
    )
    try:
        yield s
    finally:
        s.stop()


@pytest.fixture(scope="module")
def guard_grpc(guard_served):
    c = grpcclient.InferenceServerClient(url=guard_served.grpc_target)
    try:
        yield c
    finally:
        c.close()


@pytest.fixture(scope="module")
def served(root, tracking, iris):
    """`cairn serve --auth tracking --auth-cache-ttl 1s` serving exactly one model."""
    s = start_serve(
        {"iris": iris.uri},
        "--auth",
        "tracking",
        "--auth-cache-ttl",
        f"{TTL_S:g}s",
        tracking_uri=tracking.url,
        workdir=root / "serve",
        env=SERVE_ENV,
    )
    try:
        yield s
    finally:
        s.stop()


@pytest.fixture(scope="module")
def grpc_client(served):
    assert served.grpc_target, "the listening line names no gRPC address"
    c = grpcclient.InferenceServerClient(url=served.grpc_target)
    try:
        yield c
    finally:
        c.close()


# ---------------------------------------------------------------------------------------
# Requests and checks


def rows(case: sm.ModelCase) -> np.ndarray:
    return case.X[45:60]  # spans two iris classes


def oip_body(X: np.ndarray) -> dict:
    return {
        "inputs": [
            {"name": "input", "shape": list(X.shape), "datatype": "FP32", "data": X.ravel().tolist()}
        ]
    }


def model_routes(version: str) -> list[tuple[str, str, str]]:
    """(method, path, body kind) of every model route of the served model `iris`."""
    return [
        ("POST", "/v2/models/iris/infer", "oip"),
        ("POST", f"/v2/models/iris/versions/{version}/infer", "oip"),
        ("GET", "/v2/models/iris", ""),
        ("GET", f"/v2/models/iris/versions/{version}", ""),
        ("GET", "/v2/models/iris/ready", ""),
        ("GET", f"/v2/models/iris/versions/{version}/ready", ""),
        ("POST", "/invocations", "invocations"),
        ("POST", "/models/iris/invocations", "invocations"),
    ]


SERVER_ROUTES = [("GET", "/v2", ""), ("GET", "/version", ""), ("GET", "/metrics", "")]
PUBLIC_ROUTES = ["/v2/health/live", "/v2/health/ready", "/ping", "/health"]


def send(served, case, method: str, path: str, kind: str, headers: dict[str, str] | None = None):
    X = rows(case)[:3]
    body = {"oip": oip_body(X), "invocations": {"inputs": X.tolist()}}.get(kind)
    return requests.request(method, f"{served.url}{path}", json=body, headers=headers or {}, timeout=30)


def describe(r: requests.Response) -> str:
    return f"{r.request.method} {r.request.path_url} -> {r.status_code} {dict(r.headers)} {r.text[:400]!r}"


def assert_refused(r: requests.Response, status: int, error_code: str) -> dict:
    assert r.status_code == status, f"expected {status} {error_code}: {describe(r)}"
    try:
        body = r.json()
    except ValueError:
        pytest.fail(f"the {status} body is not JSON: {describe(r)}")
    assert body.get("error_code") == error_code, describe(r)
    for key in ("message", "error"):
        assert isinstance(body.get(key), str) and body[key].strip(), f"no {key!r}: {describe(r)}"
    if status == 401:
        assert r.headers.get("WWW-Authenticate") == REALM, describe(r)
    return body


def assert_oip_answer(r: requests.Response, case: sm.ModelCase, X: np.ndarray) -> None:
    assert r.status_code == 200, describe(r)
    body = r.json()
    assert body["model_name"] == "iris"
    outputs = {o["name"]: o for o in body["outputs"]}
    want = case.predict(X)
    assert set(outputs) == set(want), body
    for name, expected in want.items():
        got = np.array(outputs[name]["data"]).reshape(outputs[name]["shape"])
        assert_close(got, expected, name)


def assert_invocations_answer(r: requests.Response, case: sm.ModelCase, X: np.ndarray) -> None:
    assert r.status_code == 200, describe(r)
    preds = r.json()["predictions"]
    want = case.predict(X)
    assert set(preds) == set(want), preds
    for name, expected in want.items():
        assert_close(np.array(preds[name]), expected, name)


def grpc_infer(client, X: np.ndarray, headers: dict[str, str] | None, model: str = "iris"):
    inp = grpcclient.InferInput("input", list(X.shape), "FP32")
    inp.set_data_from_numpy(X)
    return client.infer(model, [inp], headers=grpc_headers(headers) if headers else None)


def grpc_status(call) -> str:
    """The gRPC status code of a refused call, e.g. "StatusCode.UNAUTHENTICATED"."""
    with pytest.raises(InferenceServerException) as e:
        call()
    return e.value.status()


def poll_status(send_request, want: int, deadline_s: float) -> tuple[requests.Response, float]:
    """Sends until the answer has status `want`; returns it and the seconds that took."""
    start = time.monotonic()
    while True:
        r = send_request()
        if r.status_code == want:
            return r, time.monotonic() - start
        if time.monotonic() - start > deadline_s:
            pytest.fail(f"still not {want} after {deadline_s:.1f}s: {describe(r)}")
        time.sleep(0.1)


# ---------------------------------------------------------------------------------------
# 1. Health probes are public


@pytest.mark.parametrize("path", PUBLIC_ROUTES)
def test_health_endpoints_need_no_credentials(served, path):
    r = requests.get(f"{served.url}{path}", timeout=10)
    assert r.status_code == 200, describe(r)
    assert "WWW-Authenticate" not in r.headers


def test_grpc_live_and_ready_need_no_credentials(grpc_client):
    assert grpc_client.is_server_live() is True
    assert grpc_client.is_server_ready() is True


# ---------------------------------------------------------------------------------------
# 2. No or bad credentials: 401


@pytest.mark.parametrize("route", [*model_routes("1"), *SERVER_ROUTES], ids=lambda r: f"{r[0]} {r[1]}")
def test_no_credentials_is_401(served, iris, route):
    method, path, kind = route
    assert iris.version == "1"
    assert_refused(send(served, iris, method, path, kind), 401, "UNAUTHENTICATED")


def test_no_credentials_on_an_unknown_model_is_401_not_404(served, iris):
    r = send(served, iris, "POST", "/v2/models/no-such-model/infer", "oip")
    assert_refused(r, 401, "UNAUTHENTICATED")


def test_grpc_without_credentials_is_unauthenticated(grpc_client, iris):
    X = rows(iris)[:2]
    assert grpc_status(lambda: grpc_infer(grpc_client, X, None)) == "StatusCode.UNAUTHENTICATED"
    assert grpc_status(lambda: grpc_client.get_model_metadata("iris")) == "StatusCode.UNAUTHENTICATED"
    assert grpc_status(lambda: grpc_client.is_model_ready("iris")) == "StatusCode.UNAUTHENTICATED"
    assert grpc_status(lambda: grpc_client.get_server_metadata()) == "StatusCode.UNAUTHENTICATED"


WRONG_PASSWORD = basic("alice", "not-alice-password")


@pytest.mark.parametrize("route", [*model_routes("1"), *SERVER_ROUTES], ids=lambda r: f"{r[0]} {r[1]}")
def test_wrong_password_is_401(guard_served, iris, route):
    method, path, kind = route
    r = send(guard_served, iris, method, path, kind, WRONG_PASSWORD)
    assert_refused(r, 401, "UNAUTHENTICATED")


@pytest.mark.parametrize(
    "headers",
    [bearer("cairn_pat_not-a-real-token"), {"Authorization": "Basic !!!not-base64!!!"}],
    ids=["unknown-token", "malformed-basic"],
)
def test_other_bad_credentials_are_401(guard_served, iris, headers):
    assert_refused(send(guard_served, iris, "POST", "/v2/models/iris/infer", "oip", headers), 401, "UNAUTHENTICATED")


def test_grpc_wrong_password_is_unauthenticated(guard_grpc, iris):
    h = grpc_headers(WRONG_PASSWORD)
    assert grpc_status(lambda: grpc_infer(guard_grpc, rows(iris)[:2], WRONG_PASSWORD)) == "StatusCode.UNAUTHENTICATED"
    assert grpc_status(lambda: guard_grpc.get_model_metadata("iris", headers=h)) == "StatusCode.UNAUTHENTICATED"
    assert grpc_status(lambda: guard_grpc.get_server_metadata(headers=h)) == "StatusCode.UNAUTHENTICATED"
    # The right password answers (a local directory needs only a known caller).
    result = grpc_infer(guard_grpc, rows(iris), basic("alice"))
    assert_close(result.as_numpy("probabilities"), iris.predict(rows(iris))["probabilities"], "probabilities")


# ---------------------------------------------------------------------------------------
# 3. READ on the registered model: every route answers, and correctly


def test_reader_infers_over_oip_rest(served, iris):
    X = rows(iris)
    r = requests.post(f"{served.url}/v2/models/iris/infer", json=oip_body(X), headers=basic("alice"), timeout=30)
    assert_oip_answer(r, iris, X)
    assert r.json()["model_version"] == iris.version
    r = requests.post(
        f"{served.url}/v2/models/iris/versions/{iris.version}/infer",
        json=oip_body(X),
        headers=basic("alice"),
        timeout=30,
    )
    assert_oip_answer(r, iris, X)


def test_reader_reads_metadata_and_readiness(served, iris):
    r = requests.get(f"{served.url}/v2/models/iris", headers=basic("alice"), timeout=30)
    assert r.status_code == 200, describe(r)
    assert r.json()["name"] == "iris" and r.json()["versions"] == [iris.version]
    r = requests.get(f"{served.url}/v2/models/iris/ready", headers=basic("alice"), timeout=30)
    assert r.status_code == 200, describe(r)
    for method, path, kind in SERVER_ROUTES:
        r = send(served, iris, method, path, kind, basic("alice"))
        assert r.status_code == 200, describe(r)


@pytest.mark.parametrize("path", ["/invocations", "/models/iris/invocations"])
def test_reader_infers_over_invocations(served, iris, path):
    X = rows(iris)
    r = requests.post(f"{served.url}{path}", json={"inputs": X.tolist()}, headers=basic("alice"), timeout=30)
    assert_invocations_answer(r, iris, X)


def test_reader_infers_over_grpc(grpc_client, iris):
    X = rows(iris)
    result = grpc_infer(grpc_client, X, basic("alice"))
    assert result.get_response().model_version == iris.version
    for name, want in iris.predict(X).items():
        assert_close(result.as_numpy(name), want, name)
    h = grpc_headers(basic("alice"))
    assert grpc_client.get_model_metadata("iris", headers=h, as_json=True)["name"] == "iris"
    assert grpc_client.is_model_ready("iris", headers=h) is True
    assert grpc_client.get_server_metadata(headers=h, as_json=True)["name"] == "cairn"


# ---------------------------------------------------------------------------------------
# 4. No permission on the model: 403 on model routes, server routes answer


@pytest.mark.parametrize("route", model_routes("1"), ids=lambda r: f"{r[0]} {r[1]}")
def test_user_without_read_is_403_on_model_routes(served, iris, route):
    method, path, kind = route
    assert_refused(send(served, iris, method, path, kind, basic("bob")), 403, "PERMISSION_DENIED")


def test_user_without_read_reaches_server_routes(served, iris):
    for method, path, kind in SERVER_ROUTES:
        r = send(served, iris, method, path, kind, basic("bob"))
        assert r.status_code == 200, describe(r)
    assert requests.get(f"{served.url}/v2", headers=basic("bob"), timeout=30).json()["name"] == "cairn"


def test_user_without_read_is_permission_denied_over_grpc(grpc_client, iris):
    h = grpc_headers(basic("bob"))
    assert grpc_status(lambda: grpc_infer(grpc_client, rows(iris)[:2], basic("bob"))) == "StatusCode.PERMISSION_DENIED"
    assert grpc_status(lambda: grpc_client.get_model_metadata("iris", headers=h)) == "StatusCode.PERMISSION_DENIED"
    assert grpc_client.get_server_metadata(headers=h, as_json=True)["name"] == "cairn"


# ---------------------------------------------------------------------------------------
# 5. Personal access tokens, and their revocation


def test_access_token_works_until_revoked(served, grpc_client, tracking, iris):
    created = tracking.call(
        "POST", "users/access-tokens/create", basic("carol"), {"name": "serve-auth", "expires_in_days": 1}
    )
    assert created.status_code == 200, created.text
    token, token_id = created.json()["token"], created.json()["access_token"]["id"]
    X = rows(iris)

    def infer():
        return requests.post(f"{served.url}/v2/models/iris/infer", json=oip_body(X), headers=bearer(token), timeout=30)

    assert_oip_answer(infer(), iris, X)
    assert_invocations_answer(
        requests.post(f"{served.url}/invocations", json={"inputs": X.tolist()}, headers=bearer(token), timeout=30),
        iris,
        X,
    )
    result = grpc_infer(grpc_client, X, bearer(token))
    assert_close(result.as_numpy("label"), iris.predict(X)["label"], "label")

    revoked = tracking.call("POST", "users/access-tokens/revoke", basic("carol"), {"id": token_id})
    assert revoked.status_code == 200, revoked.text

    r, _ = poll_status(infer, 401, REVOCATION_DEADLINE_S)
    assert_refused(r, 401, "UNAUTHENTICATED")
    assert grpc_status(lambda: grpc_infer(grpc_client, X[:2], bearer(token))) == "StatusCode.UNAUTHENTICATED"
    # carol's password still works: only the token was revoked.
    assert_oip_answer(infer_as(served, X, basic("carol")), iris, X)


def infer_as(served, X, headers):
    return requests.post(f"{served.url}/v2/models/iris/infer", json=oip_body(X), headers=headers, timeout=30)


# ---------------------------------------------------------------------------------------
# 6. Revoking (and restoring) a READ grant


def test_revoked_grant_is_403_within_the_ttl_and_a_new_grant_answers_again(served, grpc_client, tracking, iris):
    X = rows(iris)
    assert_oip_answer(infer_as(served, X, basic("dave")), iris, X)

    tracking.revoke_model(iris.name, "dave")
    r, _ = poll_status(lambda: infer_as(served, X, basic("dave")), 403, REVOCATION_DEADLINE_S)
    assert_refused(r, 403, "PERMISSION_DENIED")
    assert grpc_status(lambda: grpc_infer(grpc_client, X[:2], basic("dave"))) == "StatusCode.PERMISSION_DENIED"
    # Server routes still answer: dave is still a user.
    assert requests.get(f"{served.url}/v2", headers=basic("dave"), timeout=30).status_code == 200

    # The denial is cached no longer than the TTL either.
    tracking.grant_model(iris.name, "dave")
    r, _ = poll_status(lambda: infer_as(served, X, basic("dave")), 200, REVOCATION_DEADLINE_S)
    assert_oip_answer(r, iris, X)


# ---------------------------------------------------------------------------------------
# Host header validation (DNS rebinding), with and without --auth


def test_a_foreign_host_header_is_refused_but_probes_answer(root, local_iris, iris):
    """A page on evil.example whose DNS now points at 127.0.0.1 must not reach the models:
    cairn serve (no --auth, loopback) answers only the hosts --allowed-hosts names."""
    X = rows(iris)
    s = start_serve({"iris": str(local_iris)}, tracking_uri=None, workdir=root / "serve-hosts", grpc=False)
    try:
        port = s.url.rsplit(":", 1)[1]
        infer = f"{s.url}/v2/models/iris/infer"
        for host in ["evil.example", f"evil.example:{port}", "127.0.0.1.evil.example", "8.8.8.8"]:
            r = requests.post(infer, json=oip_body(X), headers={"Host": host}, timeout=30)
            body = assert_refused(r, 403, "PERMISSION_DENIED")
            assert "DNS rebinding" in body["message"], describe(r)
            assert_refused(requests.get(f"{s.url}/v2", headers={"Host": host}, timeout=30), 403, "PERMISSION_DENIED")
            assert_refused(
                requests.post(f"{s.url}/invocations", json={"inputs": X.tolist()}, headers={"Host": host}, timeout=30),
                403,
                "PERMISSION_DENIED",
            )
            # Probes answer whatever the name (a kubelet sends the pod's address).
            for probe in PUBLIC_ROUTES:
                assert requests.get(f"{s.url}{probe}", headers={"Host": host}, timeout=30).status_code == 200
        for host in [f"localhost:{port}", f"127.0.0.1:{port}", "10.0.0.7:8080"]:
            r = requests.post(infer, json=oip_body(X), headers={"Host": host}, timeout=30)
            assert_oip_answer(r, iris, X)
    finally:
        s.stop()
    # --allowed-hosts replaces the defaults.
    s = start_serve(
        {"iris": str(local_iris)}, "--allowed-hosts", "models.internal:*,127.0.0.1:*",
        tracking_uri=None, workdir=root / "serve-hosts-2", grpc=False,
    )
    try:
        ok = requests.post(f"{s.url}/v2/models/iris/infer", json=oip_body(X), headers={"Host": "models.internal:443"}, timeout=30)
        assert_oip_answer(ok, iris, X)
        r = requests.post(f"{s.url}/v2/models/iris/infer", json=oip_body(X), headers={"Host": "localhost"}, timeout=30)
        assert_refused(r, 403, "PERMISSION_DENIED")
    finally:
        s.stop()


# ---------------------------------------------------------------------------------------
# 7. Flags


def run_serve_cli(root: Path, *args: str) -> subprocess.CompletedProcess:
    """`cairn serve ARGS` expected to exit on its own (killed after 30 s: it started)."""
    cmd = [cairn_bin(), "serve", "--port", "0", "--no-grpc", "--cache-dir", str(root / "cli-cache"), *args]
    env = with_env(SERVE_ENV)
    try:
        return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=30, cwd=root)
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"{cmd} did not exit within 30 s (it started serving):\n{e.stdout}\n{e.stderr}")


def test_auth_tracking_without_tracking_uri_is_refused(root, local_iris):
    p = run_serve_cli(root, "--model", f"m={local_iris}", "--auth", "tracking")
    out = p.stdout + p.stderr
    assert p.returncode != 0, out
    assert "--tracking-uri" in out, out
    assert "auth" in out.lower(), out


def test_unknown_auth_mode_is_refused(root, local_iris, tracking):
    p = run_serve_cli(root, "--model", f"m={local_iris}", "--auth", "bogus", "--tracking-uri", tracking.url)
    out = p.stdout + p.stderr
    assert p.returncode != 0, out
    assert "--auth" in out and "bogus" in out, out


def test_auth_tracking_in_front_of_a_tracking_server_without_auth_is_refused(root, local_iris, tracking_uri):
    """The session's tracking server runs without --auth: it would vouch for anyone."""
    p = run_serve_cli(root, "--model", f"m={local_iris}", "--auth", "tracking", "--tracking-uri", tracking_uri)
    out = p.stdout + p.stderr
    assert p.returncode != 0, out
    assert "does not authenticate callers" in out, out


def test_non_loopback_host_without_auth_is_still_refused(root, local_iris, tracking):
    p = run_serve_cli(root, "--model", f"m={local_iris}", "--host", "0.0.0.0", "--tracking-uri", tracking.url)
    out = p.stdout + p.stderr
    assert p.returncode != 0, out
    assert "--insecure-no-auth" in out, out


def test_non_loopback_host_with_auth_tracking_starts(root, guard_tracking, iris, local_iris):
    """Also: a model from a local directory needs only a caller the tracking server
    recognises (bob holds no grant at all)."""
    s = start_serve(
        {"local": str(local_iris)},
        "--auth",
        "tracking",
        tracking_uri=guard_tracking.url,
        workdir=root / "serve-any-host",
        env=SERVE_ENV,
        grpc=False,
        host="0.0.0.0",
    )
    try:
        assert "0.0.0.0" in s.log() or "[::]" in s.log()
        X = rows(iris)
        url = f"{s.url}/v2/models/local/infer"
        assert_refused(requests.post(url, json=oip_body(X), timeout=30), 401, "UNAUTHENTICATED")
        assert_refused(
            requests.post(url, json=oip_body(X), headers=basic("bob", "wrong-password-1"), timeout=30),
            401,
            "UNAUTHENTICATED",
        )
        r = requests.post(url, json=oip_body(X), headers=basic("bob"), timeout=30)
        assert r.status_code == 200, describe(r)
        want = iris.predict(X)
        got = {o["name"]: np.array(o["data"]).reshape(o["shape"]) for o in r.json()["outputs"]}
        for name, expected in want.items():
            assert_close(got[name], expected, name)
        r = requests.post(f"{s.url}/invocations", json={"inputs": X.tolist()}, headers=basic("bob"), timeout=30)
        assert_invocations_answer(r, iris, X)
    finally:
        s.stop()


# ---------------------------------------------------------------------------------------
# runs:/ and models:/m-... take the permission of the run's experiment


def test_run_and_logged_model_uris_need_read_on_the_experiment(root, tracking, iris):
    models = {"byrun": f"runs:/{iris.run_id}/model"}
    if iris.model_id:
        models["byid"] = f"models:/{iris.model_id}"
    s = start_serve(
        models,
        "--auth",
        "tracking",
        "--auth-cache-ttl",
        f"{TTL_S:g}s",
        tracking_uri=tracking.url,
        workdir=root / "serve-runs",
        env=SERVE_ENV,
        grpc=False,
    )
    try:
        X = rows(iris)[:4]
        for name in models:
            url = f"{s.url}/v2/models/{name}/infer"
            # gina: READ on the experiment only.
            r = requests.post(url, json=oip_body(X), headers=basic("gina"), timeout=30)
            assert r.status_code == 200, describe(r)
            got = {o["name"]: np.array(o["data"]).reshape(o["shape"]) for o in r.json()["outputs"]}
            assert_close(got["label"], iris.predict(X)["label"], f"{name}/label")
            # alice: READ on the registered model, nothing on the experiment.
            r = requests.post(url, json=oip_body(X), headers=basic("alice"), timeout=30)
            assert_refused(r, 403, "PERMISSION_DENIED")
            r = requests.post(url, json=oip_body(X), headers=basic("bob"), timeout=30)
            assert_refused(r, 403, "PERMISSION_DENIED")
            assert_refused(requests.post(url, json=oip_body(X), timeout=30), 401, "UNAUTHENTICATED")
    finally:
        s.stop()


def test_experiment_reader_is_denied_the_registered_model(served, iris):
    """READ on the experiment does not extend to the registered model's routes."""
    r = send(served, iris, "POST", "/v2/models/iris/infer", "oip", basic("gina"))
    assert_refused(r, 403, "PERMISSION_DENIED")


# ---------------------------------------------------------------------------------------
# 8. The tracking server is gone: fail closed. Stops the module's tracking server: LAST.


def test_unreachable_tracking_server_is_503_for_uncached_credentials(served, grpc_client, tracking, iris):
    X = rows(iris)
    # alice answered before (cached at most TTL); erin has never called.
    assert_oip_answer(infer_as(served, X, basic("alice")), iris, X)
    tracking.server.stop()
    time.sleep(TTL_S + 0.5)  # every cached decision has expired

    for who in ("erin", "alice"):
        r = infer_as(served, X, basic(who))
        assert_refused(r, 503, "TEMPORARILY_UNAVAILABLE")
    r = requests.get(f"{served.url}/v2", headers=basic("erin"), timeout=30)
    assert_refused(r, 503, "TEMPORARILY_UNAVAILABLE")
    r = requests.post(f"{served.url}/invocations", json={"inputs": X.tolist()}, headers=basic("erin"), timeout=30)
    assert_refused(r, 503, "TEMPORARILY_UNAVAILABLE")
    assert grpc_status(lambda: grpc_infer(grpc_client, X[:2], basic("erin"))) == "StatusCode.UNAVAILABLE"

    # Still 401 without credentials, and the probes still answer.
    assert_refused(infer_as(served, X, {}), 401, "UNAUTHENTICATED")
    for path in PUBLIC_ROUTES:
        r = requests.get(f"{served.url}{path}", timeout=10)
        assert r.status_code == 200, describe(r)
    assert grpc_client.is_server_live() is True
