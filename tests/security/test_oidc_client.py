"""Single sign-on with the unmodified `mlflow` client: the test is its own OpenID Connect
issuer (an RSA key made here, a discovery document and a JWKS served on loopback), and
`cairn server --auth --oidc-issuer ... --oidc-audience ...` accepts the tokens it signs
when they arrive as `MLFLOW_TRACKING_TOKEN`. Expired, wrong-audience and wrong-signature
tokens are refused with MLflow's 401.
"""

from __future__ import annotations

import base64
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from cairn_util import PASSWORD, run_client, server_env, start, stop

AUDIENCE = "cairn-sso-test"


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def int_bytes(n: int) -> bytes:
    return n.to_bytes((n.bit_length() + 7) // 8, "big")


class Issuer:
    """An RS256 issuer: one published key, one the JWKS never shows."""

    def __init__(self) -> None:
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.rogue = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        numbers = self.key.public_key().public_numbers()
        self.jwks = {"keys": [{
            "kty": "RSA", "use": "sig", "alg": "RS256", "kid": "main",
            "n": b64url(int_bytes(numbers.n)), "e": b64url(int_bytes(numbers.e)),
        }]}
        issuer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (http.server's naming)
                if self.path == "/.well-known/openid-configuration":
                    body = {"issuer": issuer.url, "jwks_uri": f"{issuer.url}/jwks"}
                elif self.path == "/jwks":
                    body = issuer.jwks
                else:
                    self.send_response(404)
                    self.end_headers()
                    return
                data = json.dumps(body).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def token(self, user: str, *, key=None, **overrides) -> str:
        now = int(time.time())
        claims = {"iss": self.url, "aud": AUDIENCE, "sub": f"id-{user}",
                  "preferred_username": user, "iat": now, "exp": now + 600}
        claims.update(overrides)
        header = {"alg": "RS256", "typ": "JWT", "kid": "main"}
        signing_input = (b64url(json.dumps(header).encode()) + "."
                         + b64url(json.dumps(claims).encode())).encode()
        signature = (key or self.key).sign(signing_input, padding.PKCS1v15(), hashes.SHA256())
        return signing_input.decode() + "." + b64url(signature)


@pytest.fixture(scope="module")
def sso(tmp_path_factory):
    issuer = Issuer()
    tmp = tmp_path_factory.mktemp("oidc")
    proc, url = start(tmp, "--auth", "--oidc-issuer", issuer.url,
                      "--oidc-audience", AUDIENCE, "--oidc-admin-group", "ml-platform-admins",
                      env=server_env())
    yield issuer, url
    stop(proc)
    issuer.server.shutdown()


LOG_AND_READ = """
import mlflow
from mlflow import MlflowClient
mlflow.set_experiment("sso-exp")
with mlflow.start_run() as run:
    mlflow.log_param("p", "1")
    mlflow.log_metric("m", 2.5)
got = MlflowClient().get_run(run.info.run_id)
assert got.data.params == {"p": "1"}, got.data.params
assert got.data.metrics == {"m": 2.5}, got.data.metrics
print("user", got.info.user_id)
"""


def test_the_mlflow_client_signs_in_with_a_provider_token(sso):
    issuer, url = sso
    token = issuer.token("sso-alice")
    out = run_client(url, LOG_AND_READ, MLFLOW_TRACKING_TOKEN=token)
    assert out.returncode == 0, out.stderr[-3000:]
    # The account was created on first sign-in, without admin rights; the audit log
    # names it and how it signed in.
    me = requests.get(f"{url}/api/2.0/mlflow/users/current",
                      headers={"Authorization": f"Bearer {token}"}, timeout=10).json()
    assert me["user"]["username"] == "sso-alice" and me["user"]["is_admin"] is False
    events = requests.get(f"{url}/api/2.0/cairn/audit/events",
                          auth=("admin", PASSWORD), timeout=10).json()["events"]
    mine = [e for e in events if e["actor"] == "sso-alice"]
    assert mine and all(e["auth_method"] == "oidc" for e in mine), mine
    assert {e["outcome"] for e in mine} == {"ok"}


@pytest.mark.parametrize("case", ["expired", "wrong audience", "wrong signature", "wrong issuer"])
def test_bad_provider_tokens_are_refused(sso, case):
    issuer, url = sso
    now = int(time.time())
    token = {
        "expired": lambda: issuer.token("sso-bob", exp=now - 3600, iat=now - 7200),
        "wrong audience": lambda: issuer.token("sso-bob", aud="someone-else"),
        "wrong signature": lambda: issuer.token("sso-bob", key=issuer.rogue),
        "wrong issuer": lambda: issuer.token("sso-bob", iss="https://login.example"),
    }[case]()
    code = """
import mlflow
from mlflow.exceptions import MlflowException
try:
    mlflow.search_experiments()
except MlflowException as e:
    print("ERROR", e.error_code)
else:
    print("NO ERROR")
"""
    out = run_client(url, code, MLFLOW_TRACKING_TOKEN=token)
    assert "ERROR UNAUTHENTICATED" in out.stdout, (out.stdout, out.stderr[-2000:])
    # Nothing was created for the refused identity.
    users = requests.get(f"{url}/api/2.0/mlflow/users/list",
                         auth=("admin", PASSWORD), timeout=10).json()["users"]
    assert "sso-bob" not in {u["username"] for u in users}


ADMIN_ONLY = """
from mlflow.server.auth.client import AuthServiceClient
import mlflow
client = AuthServiceClient(mlflow.get_tracking_uri())
try:
    client.create_user("made-by-sso", "a-password-123")
except Exception as e:
    print("ERROR", getattr(e, "error_code", type(e).__name__))
else:
    print("CREATED")
"""


def test_members_of_the_admin_group_administer_while_their_token_says_so(sso):
    issuer, url = sso
    # The real mlflow auth client, signed in with a token that lists the admin group.
    out = run_client(url, ADMIN_ONLY,
                     MLFLOW_TRACKING_TOKEN=issuer.token("sso-ops", groups=["staff", "ml-platform-admins"]))
    assert "CREATED" in out.stdout, (out.stdout, out.stderr[-2000:])
    # The same person, with a token that no longer lists it: an ordinary user.
    out = run_client(url, ADMIN_ONLY.replace("made-by-sso", "made-by-sso-2"),
                     MLFLOW_TRACKING_TOKEN=issuer.token("sso-ops", groups=["staff"]))
    assert "ERROR PERMISSION_DENIED" in out.stdout, (out.stdout, out.stderr[-2000:])
    users = requests.get(f"{url}/api/2.0/mlflow/users/list",
                         auth=("admin", PASSWORD), timeout=10).json()["users"]
    by_name = {u["username"]: u for u in users}
    assert "made-by-sso" in by_name and "made-by-sso-2" not in by_name
    # Group membership was never written to the account.
    assert by_name["sso-ops"]["is_admin"] is False
