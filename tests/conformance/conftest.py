"""Session fixtures for the Cairn conformance suite.

The same tests run against either the stock MLflow tracking server (to prove that every
expectation is MLflow's real behaviour) or against Cairn. The target is chosen by env:

* ``CONFORMANCE_URL``: use an already running server; nothing is started.
* ``CONFORMANCE_TARGET=mlflow``: start ``mlflow server`` on a SQLite file in a temp dir.
* ``CONFORMANCE_TARGET=cairn`` (default): start ``$CAIRN_BIN server`` (default
  ``<repo>/target/release/cairn``) on a SQLite file in a temp dir, or on
  ``$CONFORMANCE_BACKEND_STORE_URI`` when that is set (e.g.
  ``postgresql://postgres@127.0.0.1:5432/cairn_conformance_1``, a fresh database the
  caller creates and drops; ``scripts/test.sh`` does). It is a separate name from the
  server's own ``CAIRN_BACKEND_STORE_URI`` so a developer's setting never leaks into the
  suite.

The pytest header names the backend the session runs on.

Tests marked ``cairn_only`` exercise Cairn extensions (``OR``/parentheses in filters, JSON
404 bodies) and are skipped when the target is stock MLflow.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

# The client must never phone home, and must not hang on retries by default in this suite.
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DO_NOT_TRACK", "true")
os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "60")
# A few retries (short backoff) keep the suite robust against a transient 5xx, but never
# long enough to hide a server that answers errors where it should not.
os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")

import mlflow  # noqa: E402
import pytest  # noqa: E402
import requests  # noqa: E402
from mlflow import MlflowClient  # noqa: E402

from conformance_util import unique_name  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[2]
STARTUP_TIMEOUT_S = 120.0


def target() -> str:
    """Which server implementation the suite is talking to: ``mlflow`` or ``cairn``."""
    return os.environ.get("CONFORMANCE_TARGET", "cairn").strip().lower()


def backend_store_uri() -> str | None:
    """The ``--backend-store-uri`` Cairn is started with, or None for a temp SQLite file."""
    return os.environ.get("CONFORMANCE_BACKEND_STORE_URI", "").strip() or None


def artifacts_destination() -> str | None:
    """The ``--artifacts-destination`` Cairn is started with (e.g. ``s3://bucket/prefix`` on
    the local S3 server ``scripts/test.sh`` starts), or None for a directory in the temp dir."""
    return os.environ.get("CONFORMANCE_ARTIFACTS_DESTINATION", "").strip() or None


def _redact(uri: str) -> str:
    """``uri`` with any password replaced by ``***``."""
    parts = urlsplit(uri)
    if parts.password is None:
        return uri
    netloc = parts.netloc.rsplit("@", 1)[1]
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc}"))


def _session_line() -> str:
    if os.environ.get("CONFORMANCE_URL"):
        return f"conformance target: already running server at {os.environ['CONFORMANCE_URL']}"
    kind = target()
    uri = backend_store_uri() if kind == "cairn" else None
    backend = _redact(uri) if uri else "SQLite file in a temp dir"
    dest = artifacts_destination() if kind == "cairn" else None
    artifacts = dest or "local directory in the temp dir"
    return f"conformance target: {kind}; backend store: {backend}; artifacts: {artifacts}"


def pytest_report_header(config):
    return _session_line()


def pytest_sessionstart(session):
    # -q hides the report header; name the backend all the same.
    if session.config.option.verbose < 0:
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_line(_session_line())


def pytest_configure(config):
    config.addinivalue_line(
        "markers",
        "cairn_only: exercises a Cairn extension over MLflow; skipped when "
        "CONFORMANCE_TARGET=mlflow",
    )


def pytest_collection_modifyitems(config, items):
    if target() != "mlflow":
        return
    skip = pytest.mark.skip(reason="Cairn-only extension; stock MLflow does not support it")
    for item in items:
        if "cairn_only" in item.keywords:
            item.add_marker(skip)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _tail(path: Path, n: int = 60) -> str:
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError as e:
        return f"<could not read {path}: {e}>"
    return "\n".join(lines[-n:])


def _server_command(kind: str, tmp: Path, port: int) -> list[str]:
    if kind == "mlflow":
        mlflow_bin = shutil.which("mlflow", path=str(Path(sys.executable).parent)) or shutil.which(
            "mlflow"
        )
        base = [mlflow_bin] if mlflow_bin else [sys.executable, "-m", "mlflow"]
        return base + [
            "server",
            "--backend-store-uri",
            f"sqlite:///{tmp}/mlflow.db",
            # Same artifact layout as Cairn's default: runs get mlflow-artifacts:/ URIs.
            "--default-artifact-root",
            "mlflow-artifacts:/",
            "--artifacts-destination",
            str(tmp / "mlartifacts"),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ]
    if kind == "cairn":
        cairn_bin = os.environ.get("CAIRN_BIN", str(REPO_ROOT / "target" / "release" / "cairn"))
        if not Path(cairn_bin).exists():
            pytest.exit(
                f"Cairn binary not found at {cairn_bin}; build it (cargo build --release) or set "
                "CAIRN_BIN, CONFORMANCE_URL or CONFORMANCE_TARGET=mlflow",
                returncode=2,
            )
        return [
            cairn_bin,
            "server",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--backend-store-uri",
            backend_store_uri() or f"sqlite:///{tmp}/cairn.db",
            "--artifacts-destination",
            artifacts_destination() or str(tmp / "artifacts"),
        ] + (["--artifacts-presigned"] if os.environ.get("CONFORMANCE_ARTIFACTS_PRESIGNED") else [])
    raise pytest.UsageError(f"unknown CONFORMANCE_TARGET={kind!r} (expected mlflow or cairn)")


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is not None:
        return
    # The server was started in its own session: signal its whole group (it may have
    # worker children), and nothing else.
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(timeout=10)


@pytest.fixture(scope="session")
def server_url():
    """Base URL (no trailing slash) of the server under test."""
    url = os.environ.get("CONFORMANCE_URL")
    if url:
        yield url.rstrip("/")
        return

    kind = target()
    tmp = Path(tempfile.mkdtemp(prefix=f"conformance-{kind}-"))
    port = _free_port()
    cmd = _server_command(kind, tmp, port)
    if kind == "cairn":
        # What `cairn gc` needs to reach the same store and artifacts as the server.
        _STORE_ARGS[:] = [cmd[0]] + [
            arg
            for flag in ("--backend-store-uri", "--artifacts-destination")
            for arg in (flag, cmd[cmd.index(flag) + 1])
        ]
    log_path = tmp / "server.log"
    env = dict(os.environ)
    env.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    log = open(log_path, "wb")
    proc = subprocess.Popen(
        cmd,
        cwd=tmp,
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        env=env,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    healthy = False
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            break
        try:
            if requests.get(f"{url}/health", timeout=2).status_code == 200:
                healthy = True
                break
        except requests.RequestException:
            pass
        time.sleep(0.25)
    if not healthy:
        _stop(proc)
        log.close()
        pytest.exit(
            f"{kind} server did not become healthy on {url} within {STARTUP_TIMEOUT_S:.0f}s "
            f"(exit code {proc.returncode}); command: {' '.join(cmd)}\n"
            f"--- tail of {log_path} ---\n{_tail(log_path)}",
            returncode=3,
        )
    try:
        yield url
    finally:
        _stop(proc)
        log.close()
        shutil.rmtree(tmp, ignore_errors=True)


_STORE_ARGS: list[str] = []


@pytest.fixture
def gc_command(server_url):
    """``cairn gc`` with the store and artifact flags of the Cairn server under test."""
    if not _STORE_ARGS:
        pytest.skip("needs a Cairn server started by this suite (not CONFORMANCE_URL or MLflow)")
    return [_STORE_ARGS[0], "gc", *_STORE_ARGS[1:]]


@pytest.fixture(scope="session", autouse=True)
def tracking_uri(server_url):
    mlflow.set_tracking_uri(server_url)
    os.environ["MLFLOW_TRACKING_URI"] = server_url
    yield server_url


@pytest.fixture(scope="session")
def base_url(server_url):
    return server_url


@pytest.fixture(scope="session")
def client(tracking_uri):
    return MlflowClient(tracking_uri)


@pytest.fixture
def no_retries(monkeypatch):
    """Error-code tests: an error must come back at once, not after retry backoff."""
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")


@pytest.fixture
def experiment_id(client):
    """A fresh experiment for one test (created through the client)."""
    return client.create_experiment(unique_name("conf"))


@pytest.fixture
def fluent_experiment(tracking_uri):
    """A fresh experiment made active with ``mlflow.set_experiment``; runs are ended after."""
    name = unique_name("fluent")
    exp = mlflow.set_experiment(name)
    try:
        yield exp
    finally:
        while mlflow.active_run() is not None:
            mlflow.end_run()
