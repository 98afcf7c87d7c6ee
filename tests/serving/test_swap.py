"""Following aliases: hot swaps under continuous load, broken versions that must not
replace a serving one, and the model URI forms `cairn serve` resolves."""

from __future__ import annotations

import threading
import time

import mlflow
from pathlib import Path

import numpy as np
import pytest
import requests

import serving_models as sm
from serving_util import assert_close, metric_value, poll_until, unique, LoadGenerator

POLL = "500ms"
# Rows spanning the three iris classes, so relabelled versions answer differently.
ROWS = [0, 25, 50, 75, 100, 125]


def iris_versions(name: str, count: int = 2) -> list[sm.ModelCase]:
    """Registers `count` versions of `name` alternating two iris models whose predictions
    differ on ROWS."""
    builders = [sm.iris_classifier, sm.iris_classifier_relabelled]
    out = []
    for i in range(count):
        onx, X = builders[i % 2]()
        out.append(sm.log_onnx(onx, X, name))
    assert [c.version for c in out] == [str(i + 1) for i in range(count)]
    X = out[0].X[ROWS]
    if count > 1:
        assert not np.array_equal(out[0].predict(X)["label"], out[1].predict(X)["label"])
    return out


class OipChecker:
    """A request maker for LoadGenerator: one OIP JSON infer, checked against the expected
    outputs of whichever version answered."""

    def __init__(self, url: str, model: str, versions: dict[str, sm.ModelCase]):
        self.url = f"{url}/v2/models/{model}/infer"
        self.X = next(iter(versions.values())).X[ROWS]
        self.expected = {v: case.predict(self.X) for v, case in versions.items()}
        self.body = {
            "inputs": [{"name": "input", "shape": list(self.X.shape), "datatype": "FP32",
                        "data": self.X.ravel().tolist()}]
        }

    def __call__(self, session: requests.Session):
        thread = threading.current_thread().name
        r = session.post(self.url, json=self.body, timeout=30)
        if r.status_code != 200:
            return False, (thread, None, f"{r.status_code} {r.text[:300]}")
        doc = r.json()
        version = doc.get("model_version")
        want = self.expected.get(version)
        if want is None:
            return False, (thread, version, "unexpected version")
        outs = {o["name"]: o for o in doc["outputs"]}
        labels = np.array(outs["label"]["data"], dtype=np.int64)
        probs = np.array(outs["probabilities"]["data"], dtype=np.float32).reshape(want["probabilities"].shape)
        if not np.array_equal(labels, want["label"]) or not np.allclose(probs, want["probabilities"], atol=1e-5):
            return False, (thread, version, f"outputs do not match version {version}")
        return True, (thread, version, None)


def failures(results):
    return [info for _, ok, info in results if not ok]


def versions_seen(results):
    return {info[1] for _, ok, info in results if ok}


def assert_versions_monotonic(results, order: list[str]):
    """Per thread (requests in a thread are sequential), once a newer version answered no
    older version answers again."""
    rank = {v: i for i, v in enumerate(order)}
    last: dict[str, int] = {}
    for _, ok, (thread, version, _) in results:
        if not ok:
            continue
        r = rank[version]
        assert r >= last.get(thread, -1), f"{thread} got version {version} after a newer one"
        last[thread] = r


def keep_loading(load: LoadGenerator, seconds: float, min_new: int = 20, timeout: float = 30.0):
    """Lets the load run for at least `seconds` and at least `min_new` more requests."""
    start_n = len(load.snapshot())
    start = time.monotonic()
    poll_until(
        lambda: time.monotonic() - start >= seconds and len(load.snapshot()) - start_n >= min_new,
        timeout=timeout,
        interval=0.05,
        what=f"{min_new} more requests over {seconds}s",
    )


def served_version(url: str, model: str) -> str:
    return requests.get(f"{url}/v2/models/{model}", timeout=10).json()["versions"][0]


def test_alias_move_swaps_under_load_without_failed_requests(serve):
    name = unique("swap")
    v1, v2 = iris_versions(name, 2)
    sm.set_alias(name, "champion", "1")
    served = serve({"m": f"models:/{name}@champion"}, "--poll-interval", POLL, "--max-queue-delay", "1ms")
    assert served_version(served.url, "m") == "1"

    load = LoadGenerator(OipChecker(served.url, "m", {"1": v1, "2": v2}), threads=4).start()
    try:
        keep_loading(load, 0.5)
        assert versions_seen(load.snapshot()) == {"1"}, failures(load.snapshot())[:5]

        sm.set_alias(name, "champion", "2")
        poll_until(lambda: "2" in versions_seen(load.snapshot()), timeout=60, what="an answer from version 2")
        keep_loading(load, 1.0)
    finally:
        results = load.stop()

    failed = failures(results)
    assert not failed, f"{len(failed)} of {len(results)} requests failed during the swap: {failed[:5]}"
    assert versions_seen(results) == {"1", "2"}
    assert_versions_monotonic(results, ["1", "2"])
    # The last answers of every thread come from version 2.
    tail = [info[1] for _, _, info in results[-8:]]
    assert set(tail) == {"2"}, tail

    assert served_version(served.url, "m") == "2"
    text = served.metrics()
    assert metric_value(text, "cairn_model_ready", model="m", version="2") == 1
    assert metric_value(text, "cairn_model_ready", model="m", version="1") == 0
    assert metric_value(text, "cairn_model_loads_total", model="m", outcome="success") >= 2
    assert metric_value(text, "cairn_model_loads_total", model="m", outcome="error") == 0
    assert metric_value(text, "cairn_inference_requests_total", model="m", version="1", protocol="v2", outcome="success") > 0
    assert metric_value(text, "cairn_inference_requests_total", model="m", version="2", protocol="v2", outcome="success") > 0
    assert any("swapped model version" in line and "from=1" in line and "to=2" in line
               for line in served.log().splitlines()), served.tail(20)

    # The download cache keeps only what serves: version 1's copy goes after the swap.
    cache = Path(served.cmd[served.cmd.index("--cache-dir") + 1])

    def cached_models():
        return sorted(d.name for d in cache.iterdir() if (d / "MLmodel").exists())

    poll_until(lambda: len(cached_models()) == 1, timeout=30, what="one cached model copy")
    assert "retired model copy removed from the cache" in served.log(), served.tail(20)


def test_broken_versions_never_replace_the_serving_one(serve, workdir):
    name = unique("broken")
    (v1,) = iris_versions(name, 1)
    sm.set_alias(name, "champion", "1")
    served = serve({"m": f"models:/{name}@champion"}, "--poll-interval", POLL)

    v2 = sm.register_unservable_version(name, workdir / unique("keras"))  # no engine for it
    v3 = sm.register_corrupt_onnx_version(name, workdir / unique("corrupt"))  # garbage model.onnx
    assert (v2, v3) == ("2", "3")

    def load_errors():
        return metric_value(served.metrics(), "cairn_model_loads_total", model="m", outcome="error")

    load = LoadGenerator(OipChecker(served.url, "m", {"1": v1}), threads=3).start()
    try:
        keep_loading(load, 0.3)
        for broken in (v2, v3):
            before = load_errors()
            sm.set_alias(name, "champion", broken)
            # Failed loads are retried at every poll: wait for two more failures.
            poll_until(lambda: load_errors() >= before + 2, timeout=60, what=f"load failures of version {broken}")
            ready = requests.get(f"{served.url}/v2/health/ready", timeout=10)
            assert ready.status_code == 200, ready.text
            assert requests.get(f"{served.url}/v2/models/m/ready", timeout=10).status_code == 200
            assert served_version(served.url, "m") == "1"
            r = requests.get(f"{served.url}/v2/models/m/versions/{broken}", timeout=10)
            assert r.status_code == 404, r.text
            keep_loading(load, 0.3)
        # Back to a good version: the server follows again after the failures.
        v4 = sm.log_onnx(*sm.iris_classifier_relabelled(), name)
        assert v4.version == "4"
        checker_v4 = OipChecker(served.url, "m", {"4": v4})
        sm.set_alias(name, "champion", "4")
        poll_until(lambda: served_version(served.url, "m") == "4", timeout=60, what="version 4 serving")
    finally:
        results = load.stop()

    # Answers from version 4 at the very end are not failures of the old version.
    failed = [f for f in failures(results) if not (isinstance(f, tuple) and f[1] == "4")]
    assert not failed, f"{len(failed)} of {len(results)} requests failed: {failed[:5]}"
    assert len(results) > 20
    with requests.Session() as s:
        ok, info = checker_v4(s)
    assert ok, info
    log = served.log()
    assert "load failed" in log, log[-3000:]
    text = served.metrics()
    assert metric_value(text, "cairn_model_ready", model="m", version="4") == 1
    assert metric_value(text, "cairn_inference_requests_total", model="m", outcome="error") == 0


def test_model_uri_forms(serve, workdir):
    """Every URI form the brief promises resolves to the right files and version."""
    name = unique("uris")
    v1, v2 = iris_versions(name, 2)
    sm.set_alias(name, "champion", "1")
    # A model directory logged as plain run artifacts (runs:/<run_id>/<path>).
    onx, X = sm.diabetes_regressor()
    local = workdir / unique("runs-artifacts")
    mlflow.onnx.save_model(onx, str(local), pip_requirements=sm.ONNX_REQUIREMENTS)
    with mlflow.start_run() as run:
        mlflow.log_artifacts(str(local), "packaged")
    diabetes = sm.ModelCase(name="d", version="1", uri="", onnx_bytes=onx.SerializeToString(), X=X)

    models = {
        "alias": f"models:/{name}@champion",
        "pinned": f"models:/{name}/1",
        "latest": f"models:/{name}/latest",
        "by_id": f"models:/{v2.model_id}",
        "run_artifacts": f"runs:/{run.info.run_id}/packaged",
    }
    served = serve(models, "--poll-interval", POLL)
    want = {"alias": ("1", v1), "pinned": ("1", v1), "latest": ("2", v2), "by_id": ("1", v2),
            "run_artifacts": ("1", diabetes)}
    for served_name, (version, case) in want.items():
        Xs = case.X[ROWS]
        body = {"inputs": [{"name": "input", "shape": list(Xs.shape), "datatype": "FP32", "data": Xs.ravel().tolist()}]}
        r = requests.post(f"{served.url}/v2/models/{served_name}/infer", json=body, timeout=30)
        assert r.status_code == 200, (served_name, r.text)
        doc = r.json()
        assert doc["model_version"] == version, (served_name, doc["model_version"])
        first = case.output_names[0]
        got = next(o for o in doc["outputs"] if o["name"] == first)
        assert_close(np.array(got["data"]).reshape(case.predict(Xs)[first].shape), case.predict(Xs)[first], served_name)

    # Moving the alias moves "alias" only; a new version moves "latest" only.
    sm.set_alias(name, "champion", "2")
    v3 = sm.log_onnx(*sm.iris_classifier(), name)
    poll_until(lambda: served_version(served.url, "alias") == "2", timeout=60, what="alias to follow")
    poll_until(lambda: served_version(served.url, "latest") == v3.version, timeout=60, what="latest to follow")
    assert served_version(served.url, "pinned") == "1"


def test_runs_uri_of_a_logged_model(serve):
    """MLflow 3 stores `log_model` artifacts under the logged model (models/<model_id>/
    artifacts), not under the run; the client resolves runs:/<run_id>/<name> by finding the
    logged model named <name> whose source run is <run_id> (RunsArtifactRepository), so the
    URI MLflow prints after `log_model` loads."""
    name = unique("runuri")
    (v1,) = iris_versions(name, 1)
    uri = f"runs:/{v1.run_id}/model"
    # The real client resolves it (precondition for the expectation).
    pyfunc = mlflow.pyfunc.load_model(uri)
    assert pyfunc is not None
    served = serve({"m": uri}, "--poll-interval", POLL, wait_ready=False)
    served.wait_ready(timeout=15)
    Xs = v1.X[ROWS]
    body = {"inputs": [{"name": "input", "shape": list(Xs.shape), "datatype": "FP32", "data": Xs.ravel().tolist()}]}
    r = requests.post(f"{served.url}/v2/models/m/infer", json=body, timeout=30)
    assert r.status_code == 200, r.text
    labels = next(o for o in r.json()["outputs"] if o["name"] == "label")["data"]
    assert_close(np.array(labels), v1.predict(Xs)["label"])


def test_readiness_is_503_until_the_model_loads(serve):
    """A server whose only model cannot be resolved stays live but not ready; requests get
    503 with Retry-After, and it becomes ready once the alias exists."""
    name = unique("late")
    served = serve({"m": f"models:/{name}@champion"}, "--poll-interval", POLL, wait_ready=False)
    poll_until(lambda: requests.get(f"{served.url}/v2/health/live", timeout=5).status_code == 200,
               timeout=30, what="live")
    r = requests.get(f"{served.url}/v2/health/ready", timeout=5)
    assert r.status_code == 503 and r.json() == {"ready": False}
    assert requests.get(f"{served.url}/v2/models/m/ready", timeout=5).status_code == 503
    assert requests.get(f"{served.url}/ping", timeout=5).status_code == 503
    body = {"inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}]}
    oip = requests.post(f"{served.url}/v2/models/m/infer", json=body, timeout=5)
    assert oip.status_code == 503, oip.text
    assert "not ready" in oip.json()["error"]
    inv = requests.post(f"{served.url}/invocations", json={"inputs": [[1, 2, 3, 4]]}, timeout=5)
    assert inv.status_code == 503 and inv.json()["error_code"] == "TEMPORARILY_UNAVAILABLE", inv.text
    assert inv.headers.get("Retry-After"), dict(inv.headers)

    (v1,) = iris_versions(name, 1)
    sm.set_alias(name, "champion", "1")
    served.wait_ready(timeout=60)
    assert served_version(served.url, "m") == "1"
    assert requests.get(f"{served.url}/ping", timeout=5).status_code == 200
    r = requests.post(f"{served.url}/v2/models/m/infer", json=body, timeout=5)
    assert r.status_code == 200, r.text
    # Last, so the checks above run either way: a not-ready 503 tells clients when to retry.
    assert oip.headers.get("Retry-After"), f"OIP 503 (model not ready) without Retry-After: {dict(oip.headers)}"
