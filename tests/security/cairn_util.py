"""Shared helpers for the security suites: start and stop `cairn server`, run the real
`mlflow` client in a fresh interpreter (once, or as a long-lived per-user "actor" that
executes snippets on request), and call the REST API with `requests`.

The mlflow client is always driven from other interpreters, each started with only the
credentials of the user it acts as, so nothing the test process has imported or set can
leak into what the client sends.

Env: CAIRN_BIN (default <repo>/target/debug/cairn).
"""

from __future__ import annotations

import json
import os
import select
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import requests

REPO = Path(__file__).resolve().parents[2]
PASSWORD = "correct horse battery"
CLIENT_ENV_PREFIX = "MLFLOW_TRACKING_"


def cairn_bin() -> str:
    return os.environ.get("CAIRN_BIN", str(REPO / "target" / "debug" / "cairn"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def server_env(**extra: str) -> dict[str, str]:
    """The environment for `cairn server --auth`: the admin password, no client creds."""
    env = dict(os.environ, CAIRN_ADMIN_PASSWORD=PASSWORD, NO_COLOR="1")
    for k in list(env):
        if k.startswith(CLIENT_ENV_PREFIX) or k in ("CAIRN_AUTH", "CAIRN_DEFAULT_PERMISSION"):
            env.pop(k)
    env.update(extra)
    return env


def start(
    tmp: Path, *args: str, env: dict[str, str], data_dir: Path | None = None
) -> tuple[subprocess.Popen, str]:
    port = free_port()
    log = open(tmp / f"cairn-{port}.log", "wb")
    proc = subprocess.Popen(
        [cairn_bin(), "server", "--port", str(port),
         "--data-dir", str(data_dir or tmp / "data"), *args],
        stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError((tmp / f"cairn-{port}.log").read_text())
        try:
            if requests.get(f"{url}/health", timeout=1).status_code == 200:
                return proc, url
        except requests.RequestException:
            pass
        time.sleep(0.05)
    raise RuntimeError("cairn server did not become healthy")


def stop(proc: subprocess.Popen) -> None:
    """SIGTERM the server's process group and wait for it to exit."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=15)


def client_env(url: str, **creds: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(CLIENT_ENV_PREFIX)}
    env.update(
        MLFLOW_TRACKING_URI=url,
        MLFLOW_HTTP_REQUEST_MAX_RETRIES="0",
        PYTHONWARNINGS="ignore",
        **creds,
    )
    return env


def run_client(url: str, code: str, **creds: str) -> subprocess.CompletedProcess:
    """Runs `code` with the mlflow client in a fresh interpreter, with only `creds` set."""
    return subprocess.run(
        [sys.executable, "-c", code],
        env=client_env(url, **creds), capture_output=True, text=True, timeout=120,
    )


def basic(username: str, password: str) -> dict[str, str]:
    return {"MLFLOW_TRACKING_USERNAME": username, "MLFLOW_TRACKING_PASSWORD": password}


# --- long-lived client interpreters ------------------------------------------------------

# Runs in the child: reads one JSON request per line from stdin ({"code": ...}), executes
# the code in a namespace that persists between requests, and answers on the original
# stdout with one JSON line: {"ok": true, "result": <the code's `result` variable>} or
# {"ok": false, "type", "error_code", "status", "message"} for an exception (for a
# requests HTTPError, status and error_code come from its response). Everything
# the code (or mlflow) prints goes to stderr.
_ACTOR_MAIN = r"""
import json, os, sys
proto = os.fdopen(os.dup(1), "w")
os.dup2(2, 1)
sys.stdout = sys.stderr
ns = {"__name__": "__actor__"}
exec(
    "import os, json\n"
    "import mlflow\n"
    "from mlflow import MlflowClient\n"
    "from mlflow.exceptions import MlflowException, RestException\n"
    + os.environ.get("ACTOR_PRELUDE", ""),
    ns,
)
proto.write(json.dumps({"ready": True}) + "\n")
proto.flush()
for line in sys.stdin:
    ns.pop("result", None)
    try:
        exec(json.loads(line)["code"], ns)
        out = {"ok": True, "result": ns.get("result")}
    except BaseException as e:
        status, error_code = None, getattr(e, "error_code", None)
        if hasattr(e, "get_http_status_code"):
            status = e.get_http_status_code()
        response = getattr(e, "response", None)  # requests' HTTPError (artifact uploads)
        if response is not None and hasattr(response, "status_code"):
            status = response.status_code
            try:
                error_code = response.json().get("error_code")
            except Exception:
                pass
        out = {
            "ok": False,
            "type": type(e).__name__,
            "error_code": error_code,
            "status": status,
            "message": str(e)[:4000],
        }
    proto.write(json.dumps(out, default=str) + "\n")
    proto.flush()
"""


class ActorError(AssertionError):
    pass


class Actor:
    """One fresh interpreter running the mlflow client as one user (its env holds only
    that user's credentials), kept alive so that a test pays for importing mlflow once.

    `run(code)` executes `code` there and returns the answer dict; `ok(code)` asserts it
    succeeded and returns the value the code left in `result`; `fails(code)` asserts it
    raised and returns the answer (with "error_code" and "status")."""

    def __init__(self, url: str, name: str, prelude: str = "", **creds: str):
        self.name = name
        self._stderr = tempfile.TemporaryFile()
        env = client_env(url, **creds)
        env["ACTOR_PRELUDE"] = prelude
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _ACTOR_MAIN],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._stderr,
            env=env, text=True, bufsize=1,
        )
        self._ready = False

    def stderr_tail(self, n: int = 3000) -> str:
        self._stderr.seek(0)
        return self._stderr.read().decode(errors="replace")[-n:]

    def _read(self, timeout: float) -> dict[str, Any]:
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        line = self.proc.stdout.readline() if ready else ""
        if not line:
            raise ActorError(
                f"actor {self.name} gave no answer within {timeout}s "
                f"(exit {self.proc.poll()}):\n{self.stderr_tail()}"
            )
        return json.loads(line)

    def run(self, code: str, timeout: float = 60) -> dict[str, Any]:
        if not self._ready:
            assert self._read(120).get("ready"), self.stderr_tail()
            self._ready = True
        self.proc.stdin.write(json.dumps({"code": code}) + "\n")
        self.proc.stdin.flush()
        return self._read(timeout)

    def ok(self, code: str) -> Any:
        out = self.run(code)
        if not out["ok"]:
            raise ActorError(
                f"{self.name}: {out['type']} {out['error_code']}: {out['message']}\n"
                f"--- code ---\n{code}\n--- stderr ---\n{self.stderr_tail()}"
            )
        return out["result"]

    def fails(self, code: str, error_code: str | None = None) -> dict[str, Any]:
        out = self.run(code)
        if out["ok"]:
            raise ActorError(f"{self.name}: expected an error, got {out['result']!r}\n{code}")
        if error_code is not None and out["error_code"] != error_code:
            raise ActorError(
                f"{self.name}: expected {error_code}, got {out['type']} "
                f"{out['error_code']}: {out['message']}\n{code}"
            )
        return out

    def close(self) -> None:
        # Killed, not asked to exit: mlflow's exit handlers only cost time here.
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self.proc.stdin.close()
        self.proc.stdout.close()
        self._stderr.close()


# --- REST helpers ------------------------------------------------------------------------


class Api:
    """`requests` against one server as one principal (basic auth, a bearer token, or
    nobody)."""

    def __init__(self, url: str, username: str | None = None, password: str | None = None,
                 token: str | None = None):
        self.url = url
        self.session = requests.Session()
        if username is not None:
            self.session.auth = (username, password)
        if token is not None:
            self.session.headers["Authorization"] = f"Bearer {token}"

    def call(self, method: str, path: str, **kw: Any) -> requests.Response:
        if not path.startswith("/"):
            path = "/api/2.0/mlflow/" + path
        return self.session.request(method, self.url + path, timeout=30, **kw)

    def get(self, path: str, **params: Any) -> requests.Response:
        return self.call("GET", path, params=params)

    def post(self, path: str, body: dict | None = None) -> requests.Response:
        return self.call("POST", path, json=body or {})

    def patch(self, path: str, body: dict | None = None) -> requests.Response:
        return self.call("PATCH", path, json=body or {})

    def delete(self, path: str, body: dict | None = None) -> requests.Response:
        return self.call("DELETE", path, json=body or {})
