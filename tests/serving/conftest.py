"""Fixtures for the `cairn serve` black-box suite.

A session-wide `cairn server` (the MLflow-compatible tracking server, on a temporary
SQLite file and artifact directory) stores the models; they are logged and registered with
the real `mlflow` client. Each test (or test module) starts its own `cairn serve` on port 0
through `serve`/`launcher`, reading the bound port from the process log.

Env: CAIRN_BIN (default <repo>/target/release/cairn).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DO_NOT_TRACK", "true")
os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "60")
os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")

import mlflow  # noqa: E402
import pytest  # noqa: E402

import serving_models as sm  # noqa: E402
from serving_util import Served, cairn_bin, start_serve, start_tracking_server, unique  # noqa: E402


def pytest_sessionstart(session):
    if not Path(cairn_bin()).exists():
        pytest.exit(
            f"Cairn binary not found at {cairn_bin()}; run `cargo build --release -p cairn` "
            "or set CAIRN_BIN",
            returncode=2,
        )


@pytest.fixture(scope="session")
def workdir():
    path = Path(tempfile.mkdtemp(prefix="cairn-serving-suite-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def tracking_uri(workdir):
    """URL of the session's Cairn tracking server; also made the mlflow client's target."""
    tdir = workdir / "tracking"
    tdir.mkdir()
    server = start_tracking_server(tdir)
    old = os.environ.get("MLFLOW_TRACKING_URI")
    os.environ["MLFLOW_TRACKING_URI"] = server.url
    mlflow.set_tracking_uri(server.url)
    mlflow.set_experiment(unique("serving-suite"))
    try:
        yield server.url
    finally:
        server.stop()
        if old is None:
            os.environ.pop("MLFLOW_TRACKING_URI", None)
        else:
            os.environ["MLFLOW_TRACKING_URI"] = old


class Launcher:
    """Starts `cairn serve` processes and stops every one it started."""

    def __init__(self, tracking_uri: str, root: Path):
        self.tracking_uri = tracking_uri
        self.root = root
        self.started: list[Served] = []

    def start(self, models: dict[str, str], *extra: str, **kw) -> Served:
        kw.setdefault("tracking_uri", self.tracking_uri)
        kw.setdefault("workdir", Path(tempfile.mkdtemp(prefix="serve-", dir=self.root)))
        served = start_serve(models, *extra, **kw)
        self.started.append(served)
        return served

    def stop_all(self) -> None:
        for s in self.started:
            s.stop()
        self.started.clear()


@pytest.fixture(scope="session")
def session_launcher(tracking_uri, workdir):
    launcher = Launcher(tracking_uri, workdir)
    try:
        yield launcher
    finally:
        launcher.stop_all()


@pytest.fixture
def serve(tracking_uri, workdir):
    """Factory: `serve({"name": uri}, *flags, wait_ready=True)` → Served; every server it
    started is stopped when the test ends."""
    launcher = Launcher(tracking_uri, workdir)
    try:
        yield launcher.start
    finally:
        launcher.stop_all()


# ---------------------------------------------------------------------------------------
# Registered models, logged once per session (read-only for tests)


@pytest.fixture(scope="session")
def iris_model(tracking_uri) -> sm.ModelCase:
    onx, X = sm.iris_classifier()
    return sm.log_onnx(onx, X, unique("iris"))


@pytest.fixture(scope="session")
def diabetes_model(tracking_uri) -> sm.ModelCase:
    onx, X = sm.diabetes_regressor()
    return sm.log_onnx(onx, X, unique("diabetes"))


@pytest.fixture(scope="session")
def double_model(tracking_uri) -> sm.ModelCase:
    onx, X = sm.diabetes_double()
    return sm.log_onnx(onx, X, unique("diabetes64"))


@pytest.fixture(scope="session")
def int64_model(tracking_uri) -> sm.ModelCase:
    onx, X = sm.int64_affine()
    return sm.log_onnx(onx, X, unique("int64-affine"))


@pytest.fixture(scope="session")
def forest_model(tracking_uri) -> sm.ModelCase:
    onx, X = sm.breast_cancer_forest(n_estimators=30)
    return sm.log_onnx(onx, X, unique("cancer-forest"))


@pytest.fixture(scope="session")
def sigmoid_model(tracking_uri) -> sm.ModelCase:
    """The sigmoid.onnx shipped with onnxruntime, logged without signature or example."""
    onx, X = sm.packaged_sigmoid()
    return sm.log_onnx(onx, X, unique("sigmoid"), signature=False, input_example=False)


@pytest.fixture(scope="session")
def sigmoid_dir(workdir) -> tuple[Path, sm.ModelCase]:
    """The same packaged sigmoid.onnx saved as a local MLflow model directory."""
    onx, X = sm.packaged_sigmoid()
    path = workdir / "local-sigmoid"
    mlflow.onnx.save_model(onx, str(path), pip_requirements=sm.ONNX_REQUIREMENTS)
    case = sm.ModelCase(
        name="local-sigmoid", version="1", uri=str(path), onnx_bytes=onx.SerializeToString(), X=X
    )
    return path, case
