"""The unmodified `mlflow` client against `cairn server --auth`: with
MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD it logs and reads as usual; without
them, or with a wrong password, it gets MLflow's 401 error. Also: the server refuses to
listen beyond loopback without authentication, and accepts it with.

Env: CAIRN_BIN (default <repo>/target/debug/cairn).
"""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
from pathlib import Path

import pytest
import requests

from cairn_util import PASSWORD, cairn_bin, run_client, server_env, start, stop


@pytest.fixture(scope="module")
def server():
    tmp = Path(tempfile.mkdtemp(prefix="cairn-auth-"))
    proc, url = start(tmp, "--auth", env=server_env())
    try:
        yield url
    finally:
        stop(proc)


CLIENT_CODE = """
import mlflow
from mlflow import MlflowClient
mlflow.set_experiment("auth-suite")
with mlflow.start_run() as run:
    mlflow.log_param("lr", "0.1")
    mlflow.log_metric("loss", 0.25)
    mlflow.log_text("hello", "notes/hello.txt")
got = MlflowClient().get_run(run.info.run_id)
assert got.data.params == {"lr": "0.1"}, got.data.params
assert got.data.metrics == {"loss": 0.25}, got.data.metrics
assert mlflow.artifacts.load_text(f"runs:/{run.info.run_id}/notes/hello.txt") == "hello"
print("OK", run.info.run_id)
"""


def test_the_mlflow_client_with_username_and_password(server):
    out = run_client(
        server, CLIENT_CODE, MLFLOW_TRACKING_USERNAME="admin", MLFLOW_TRACKING_PASSWORD=PASSWORD
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert "\nOK " in "\n" + out.stdout, out.stdout


@pytest.mark.parametrize(
    "creds",
    [{}, {"MLFLOW_TRACKING_USERNAME": "admin", "MLFLOW_TRACKING_PASSWORD": "wrong"}],
    ids=["anonymous", "wrong-password"],
)
def test_the_mlflow_client_without_valid_credentials_gets_401(server, creds):
    code = "import mlflow; mlflow.search_experiments()"
    out = run_client(server, code, **creds)
    assert out.returncode != 0
    assert "UNAUTHENTICATED" in out.stderr or "401" in out.stderr, out.stderr[-2000:]


def test_non_loopback_listening_needs_auth_or_an_explicit_flag(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("CAIRN_ADMIN_PASSWORD", "CAIRN_AUTH")}
    refused = subprocess.run(
        [cairn_bin(), "server", "--host", "0.0.0.0", "--port", "0", "--data-dir", str(tmp_path)],
        capture_output=True, text=True, env=env, timeout=60,
    )
    assert refused.returncode != 0
    assert "--insecure-no-auth" in refused.stdout + refused.stderr
    # With authentication on, listening on every interface is allowed.
    proc, url = start(tmp_path, "--host", "0.0.0.0", "--auth",
                      env=dict(env, CAIRN_ADMIN_PASSWORD=PASSWORD))
    try:
        r = requests.get(f"{url}/api/2.0/mlflow/experiments/search", timeout=10)
        assert r.status_code == 401 and r.json()["error_code"] == "UNAUTHENTICATED"
    finally:
        stop(proc)


def test_auth_without_an_admin_password_is_refused(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "CAIRN_ADMIN_PASSWORD"}
    out = subprocess.run(
        [cairn_bin(), "server", "--auth", "--port", "0", "--data-dir", str(tmp_path)],
        capture_output=True, text=True, env=env, timeout=60,
    )
    assert out.returncode != 0
    assert re.search(r"CAIRN_ADMIN_PASSWORD", out.stdout + out.stderr)
