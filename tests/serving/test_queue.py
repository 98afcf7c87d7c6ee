"""Back-pressure (a full queue answers 503 + Retry-After at once) and /metrics."""

from __future__ import annotations

import concurrent.futures as cf
import json
import threading
import time

import numpy as np
import pytest
import requests

import serving_models as sm
from serving_util import assert_close, has_metric, metric_value, oip_binary_body, parse_metrics, unique

SLOW_ROWS = 100_000
BURST = 6


@pytest.fixture(scope="module")
def slow_model(tracking_uri) -> sm.ModelCase:
    """A 100-tree random forest: 100k rows take about a second on one engine thread."""
    onx, X = sm.breast_cancer_forest(n_estimators=100, seed=1)
    return sm.log_onnx(onx, X, unique("slow-forest"))


def binary_infer_body(X: np.ndarray):
    header = {
        "inputs": [
            {"name": "input", "shape": list(X.shape), "datatype": "FP32",
             "parameters": {"binary_data_size": X.nbytes}}
        ],
        "outputs": [{"name": "label", "parameters": {"binary_data": True}}],
    }
    return oip_binary_body(header, X.astype("<f4").tobytes())


def decode_binary_label(resp: requests.Response) -> np.ndarray:
    n = int(resp.headers["Inference-Header-Content-Length"])
    header = json.loads(resp.content[:n])
    (out,) = header["outputs"]
    assert out["name"] == "label" and out["datatype"] == "INT64"
    return np.frombuffer(resp.content[n:], dtype="<i8").reshape(out["shape"])


def burst_while_busy(served, slow_model, small_request, max_seconds: float = 60.0):
    """Occupies the single engine with one large request and, until it finishes, fires
    bursts of BURST concurrent small requests. A burst may reach the queue before the large
    request does and fill it; the large request is then refused too and is sent again.
    Returns (large response, its expected labels, times it was refused, [(row, small
    response)])."""
    X = np.tile(slow_model.X, (SLOW_ROWS // len(slow_model.X) + 1, 1))[:SLOW_ROWS]
    body, headers = binary_infer_body(X)
    url = f"{served.url}/v2/models/slow/infer"
    rows = [slow_model.X[i % len(slow_model.X)][None, :] for i in range(BURST)]
    small, big_refused = [], 0
    deadline = time.monotonic() + max_seconds
    with cf.ThreadPoolExecutor(1 + BURST) as pool:
        big = pool.submit(requests.post, url, data=body, headers=headers, timeout=120)
        while time.monotonic() < deadline:
            if big.done():
                if big.result().status_code == 503 and big_refused < 5:
                    big_refused += 1
                    big = pool.submit(requests.post, url, data=body, headers=headers, timeout=120)
                    continue
                break
            small += zip(rows, pool.map(small_request, rows))
        big_response = big.result(timeout=120)
    return big_response, slow_model.predict(X)["label"], big_refused, small


def test_full_queue_answers_503_with_retry_after(serve, slow_model):
    served = serve(
        {"slow": slow_model.uri},
        "--queue-capacity", "1", "--instances", "1", "--max-batch-rows", "1", "--engine-threads", "1",
    )
    url = f"{served.url}/v2/models/slow/infer"

    def small_request(x):
        body = {"inputs": [{"name": "input", "shape": [1, 30], "datatype": "FP32", "data": x.ravel().tolist()}]}
        return requests.post(url, json=body, timeout=120)

    big, expected, big_refused, small = burst_while_busy(served, slow_model, small_request)
    assert big.status_code == 200, big.text[:300]
    np.testing.assert_array_equal(decode_binary_label(big), expected)

    statuses = [r.status_code for _, r in small]
    assert set(statuses) <= {200, 503}, f"statuses other than 200/503: {sorted(set(statuses))}"
    rejected = [r for _, r in small if r.status_code == 503]
    assert rejected, f"no request was refused while the engine was busy and the queue held 1: {statuses}"
    for r in rejected:
        assert r.headers.get("Retry-After", "").strip().isdigit(), dict(r.headers)
        err = r.json()["error"]
        assert "queue" in err.lower(), err
    for x, r in small:
        if r.status_code == 200:
            labels = next(o for o in r.json()["outputs"] if o["name"] == "label")["data"]
            np.testing.assert_array_equal(labels, slow_model.predict(x)["label"])

    # Refused requests are counted as errors of that model version; nothing else failed.
    text = served.metrics()
    labels = dict(model="slow", version=slow_model.version, protocol="v2")
    assert metric_value(text, "cairn_inference_requests_total", outcome="error", **labels) == (
        len(rejected) + big_refused
    )
    assert metric_value(text, "cairn_inference_requests_total", outcome="success", **labels) == (
        1 + len(small) - len(rejected)
    )

    # Once the burst is over, the server serves again.
    r = small_request(slow_model.X[:1])
    assert r.status_code == 200, r.text


def test_full_queue_on_invocations_is_503_temporarily_unavailable(serve, slow_model):
    served = serve({"slow": slow_model.uri}, "--queue-capacity", "1", "--instances", "1", "--max-batch-rows", "1")

    def small_request(x):
        return requests.post(f"{served.url}/invocations", json={"inputs": x.tolist()}, timeout=120)

    big, _, _, small = burst_while_busy(served, slow_model, small_request)
    assert big.status_code == 200, big.text[:300]
    statuses = [r.status_code for _, r in small]
    assert set(statuses) <= {200, 503}, statuses
    assert 503 in statuses, statuses
    for x, r in small:
        if r.status_code == 503:
            assert r.headers.get("Retry-After"), dict(r.headers)
            assert r.json()["error_code"] == "TEMPORARILY_UNAVAILABLE"
            assert "queue" in r.json()["message"].lower()
        else:
            assert r.json()["predictions"]["label"] == slow_model.predict(x)["label"].tolist()


def test_metrics_after_requests(serve, iris_model):
    served = serve({"iris": iris_model.uri})
    v = iris_model.version
    url = served.url

    ok_v2 = 0
    for n in (1, 3, 5):
        X = iris_model.X[:n]
        body = {"inputs": [{"name": "input", "shape": [n, 4], "datatype": "FP32", "data": X.ravel().tolist()}]}
        r = requests.post(f"{url}/v2/models/iris/infer", json=body, timeout=30)
        assert r.status_code == 200, r.text
        ok_v2 += 1
    ok_inv = 0
    for n in (2, 4):
        r = requests.post(f"{url}/invocations", json={"inputs": iris_model.X[:n].tolist()}, timeout=30)
        assert r.status_code == 200, r.text
        ok_inv += 1
    # Requests that reach the model but do not fit its signature count as errors.
    bad = {"inputs": [{"name": "input", "shape": [1, 3], "datatype": "FP32", "data": [1, 2, 3]}]}
    r = requests.post(f"{url}/v2/models/iris/infer", json=bad, timeout=30)
    assert r.status_code == 400
    r = requests.post(f"{url}/invocations", json={"inputs": [[1, 2, 3]]}, timeout=30)
    assert r.status_code == 400

    resp = requests.get(f"{url}/metrics", timeout=10)
    assert resp.status_code == 200
    assert resp.headers["Content-Type"].startswith("text/plain")
    text = resp.text
    samples = parse_metrics(text)
    assert samples, text

    def value(name, **labels):
        return metric_value(text, name, **labels)

    base = dict(model="iris", version=v)
    assert value("cairn_inference_requests_total", protocol="v2", outcome="success", **base) == ok_v2
    assert value("cairn_inference_requests_total", protocol="invocations", outcome="success", **base) == ok_inv
    assert value("cairn_inference_requests_total", protocol="v2", outcome="error", **base) == 1
    assert value("cairn_inference_requests_total", protocol="invocations", outcome="error", **base) == 1

    total = ok_v2 + ok_inv + 2
    for hist in ("cairn_inference_request_duration_seconds",):
        assert value(f"{hist}_count", **base) == total, hist
        assert value(f"{hist}_sum", **base) > 0, hist
        assert value(f"{hist}_bucket", le="+Inf", **base) == total, hist
    # Queue and compute time are recorded for requests that ran.
    assert value("cairn_inference_queue_duration_seconds_count", **base) == ok_v2 + ok_inv
    assert value("cairn_inference_compute_duration_seconds_count", **base) >= ok_v2 + ok_inv
    assert value("cairn_inference_batch_rows_sum", **base) >= 1 + 3 + 5 + 2 + 4
    assert has_metric(text, "cairn_inference_batch_rows_bucket", le="1.0", **base) or has_metric(
        text, "cairn_inference_batch_rows_bucket", le="1", **base
    )
    # Buckets are cumulative.
    buckets = sorted(
        (float(ls["le"]), val)
        for n, ls, val in samples
        if n == "cairn_inference_request_duration_seconds_bucket" and ls.get("model") == "iris"
    )
    assert [b[1] for b in buckets] == sorted(b[1] for b in buckets)

    assert value("cairn_model_ready", **base) == 1
    assert value("cairn_model_loads_total", model="iris", outcome="success") == 1
    assert value("cairn_model_loads_total", model="iris", outcome="error") == 0
    for family in (
        "cairn_inference_requests",
        "cairn_inference_request_duration_seconds",
        "cairn_inference_queue_duration_seconds",
        "cairn_inference_compute_duration_seconds",
        "cairn_inference_batch_rows",
        "cairn_model_ready",
        "cairn_model_loads",
    ):
        assert f"# TYPE {family} " in text, family


def test_batching_under_delay_combines_requests(serve, iris_model):
    """With --max-queue-delay, concurrent single-row requests share engine calls (fewer
    compute observations than requests) and each still gets its own row back."""
    served = serve({"iris": iris_model.uri}, "--instances", "1", "--max-queue-delay", "50ms",
                   "--max-batch-rows", "64")
    n = 32
    start = threading.Barrier(n)

    def one(i):
        x = iris_model.X[i * 4 % len(iris_model.X)][None, :]
        body = {"inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP32", "data": x.ravel().tolist()}]}
        with requests.Session() as s:
            start.wait(timeout=30)
            return x, s.post(f"{served.url}/v2/models/iris/infer", json=body, timeout=60)

    with cf.ThreadPoolExecutor(n) as pool:
        results = list(pool.map(one, range(n)))
    for x, r in results:
        assert r.status_code == 200, r.text
        outs = {o["name"]: o for o in r.json()["outputs"]}
        assert_close(np.array(outs["probabilities"]["data"], dtype=np.float32).reshape(1, 3),
                     iris_model.predict(x)["probabilities"])
    text = served.metrics()
    base = dict(model="iris", version=iris_model.version)
    calls = metric_value(text, "cairn_inference_compute_duration_seconds_count", **base)
    # One warm-up call plus fewer calls than requests.
    assert calls < n, f"{calls} engine calls for {n} concurrent requests: no batching"
    assert metric_value(text, "cairn_inference_batch_rows_sum", **base) == n + 1


def test_responses_carry_a_request_id(serve, iris_model):
    served = serve({"iris": iris_model.uri}, grpc=False)
    body = {"inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP32",
                        "data": iris_model.X[0].tolist()}]}
    r = requests.post(f"{served.url}/v2/models/iris/infer", json=body, timeout=30)
    assert r.status_code == 200, r.text
    first = r.headers.get("x-request-id")
    assert first and len(first) >= 32, r.headers
    r = requests.post(f"{served.url}/v2/models/iris/infer", json=body, timeout=30)
    assert r.headers.get("x-request-id") not in (None, first)
    # A caller's own id is kept and echoed, also on errors.
    r = requests.post(f"{served.url}/v2/models/nope/infer", json=body, timeout=30,
                      headers={"x-request-id": "trace-42"})
    assert r.status_code == 404
    assert r.headers.get("x-request-id") == "trace-42"
