"""Open Inference Protocol v2 over REST: tritonclient.http for the happy paths, raw
`requests` for malformed requests. Predictions are compared with onnxruntime run in this
process on the same ONNX graph."""

from __future__ import annotations

import concurrent.futures as cf
import json

import numpy as np
import pytest
import requests
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from serving_util import assert_close, oip_binary_body

# Served names → fixture names. One server (per module) serves them all.
SERVED = {
    "iris": "iris_model",
    "diabetes": "diabetes_model",
    "diabetes64": "double_model",
    "affine": "int64_model",
    "sigmoid": "sigmoid_model",
}

ORT_TO_OIP = {
    "tensor(float)": "FP32",
    "tensor(double)": "FP64",
    "tensor(int64)": "INT64",
    "tensor(int32)": "INT32",
    "tensor(bool)": "BOOL",
    "tensor(string)": "BYTES",
}


@pytest.fixture(scope="module")
def cases(request):
    return {served: request.getfixturevalue(fx) for served, fx in SERVED.items()}


@pytest.fixture(scope="module")
def local_case(sigmoid_dir):
    return sigmoid_dir[1]


@pytest.fixture(scope="module")
def server(session_launcher, cases, local_case):
    models = {name: case.uri for name, case in cases.items()}
    models["local"] = local_case.uri
    served = session_launcher.start(models, "--max-queue-delay", "1ms")
    try:
        yield served
    finally:
        served.stop()


@pytest.fixture(scope="module")
def client(server):
    c = httpclient.InferenceServerClient(url=server.url.removeprefix("http://"), concurrency=4)
    try:
        yield c
    finally:
        c.close()


def infer_url(server, name, version=None):
    if version is None:
        return f"{server.url}/v2/models/{name}/infer"
    return f"{server.url}/v2/models/{name}/versions/{version}/infer"


def oip_dims(shape) -> list[int]:
    return [d if isinstance(d, int) and d >= 0 else -1 for d in shape]


def assert_oip_error(resp: requests.Response, status: int, *needles: str) -> str:
    assert resp.status_code == status, (
        f"expected {status}, got {resp.status_code}: {resp.text[:500]}"
    )
    body = resp.json()
    assert isinstance(body.get("error"), str) and body["error"].strip(), body
    for needle in needles:
        assert needle.lower() in body["error"].lower(), f"{needle!r} not in {body['error']!r}"
    return body["error"]


# ---------------------------------------------------------------------------------------
# Server and model metadata


def test_server_live_ready_and_metadata(server, client):
    assert client.is_server_live()
    assert client.is_server_ready()
    meta = client.get_server_metadata()
    assert meta["name"] == "cairn"
    assert isinstance(meta["version"], str) and meta["version"]
    assert "binary_tensor_data" in meta["extensions"]

    live = requests.get(f"{server.url}/v2/health/live", timeout=10)
    assert live.status_code == 200
    ready = requests.get(f"{server.url}/v2/health/ready", timeout=10)
    assert ready.status_code == 200 and ready.json() == {"ready": True}


@pytest.mark.parametrize("name", list(SERVED))
def test_model_metadata_matches_the_onnx_graph(client, cases, name):
    case = cases[name]
    meta = client.get_model_metadata(name)
    assert meta["name"] == name
    assert meta["versions"] == [case.version]
    assert meta["platform"] == "onnxruntime_onnx"
    want_inputs = [
        {"name": i.name, "datatype": ORT_TO_OIP[i.type], "shape": oip_dims(i.shape)}
        for i in case.session.get_inputs()
    ]
    want_outputs = [
        {"name": o.name, "datatype": ORT_TO_OIP[o.type], "shape": oip_dims(o.shape)}
        for o in case.session.get_outputs()
    ]
    assert [{k: i[k] for k in ("name", "datatype", "shape")} for i in meta["inputs"]] == want_inputs
    assert [{k: o[k] for k in ("name", "datatype", "shape")} for o in meta["outputs"]] == want_outputs
    # The versioned path answers the same document.
    assert client.get_model_metadata(name, model_version=case.version) == meta


def test_known_shapes_are_reported(client):
    iris = client.get_model_metadata("iris")
    assert {o["name"]: (o["datatype"], o["shape"]) for o in iris["outputs"]} == {
        "label": ("INT64", [-1]),
        "probabilities": ("FP32", [-1, 3]),
    }
    assert iris["inputs"] == [{"name": "input", "datatype": "FP32", "shape": [-1, 4]}]
    sig = client.get_model_metadata("sigmoid")
    assert sig["inputs"] == [{"name": "x", "datatype": "FP32", "shape": [3, 4, 5]}]


def test_model_readiness(server, client, cases):
    for name, case in cases.items():
        assert client.is_model_ready(name), name
        assert client.is_model_ready(name, model_version=case.version), name
    assert not client.is_model_ready("no-such-model")

    r = requests.get(f"{server.url}/v2/models/iris/ready", timeout=10)
    assert r.status_code == 200 and r.json().get("ready") is True
    r = requests.get(f"{server.url}/v2/models/no-such-model/ready", timeout=10)
    assert r.status_code == 404
    r = requests.get(f"{server.url}/v2/models/iris/versions/999/ready", timeout=10)
    assert r.status_code == 404


def test_metadata_of_unknown_model_and_version_is_404(server, client):
    r = requests.get(f"{server.url}/v2/models/no-such-model", timeout=10)
    assert_oip_error(r, 404, "no-such-model")
    r = requests.get(f"{server.url}/v2/models/iris/versions/999", timeout=10)
    assert_oip_error(r, 404, "999")
    with pytest.raises(InferenceServerException) as e:
        client.get_model_metadata("no-such-model")
    assert e.value.status() == "404"


# ---------------------------------------------------------------------------------------
# Inference through tritonclient


def triton_infer(client, name, X, datatype, *, binary_in, binary_out, outputs=None, **kw):
    inp = httpclient.InferInput(kw.pop("input_name", "input"), list(X.shape), datatype)
    inp.set_data_from_numpy(X, binary_data=binary_in)
    requested = None
    if outputs is not None:
        requested = [httpclient.InferRequestedOutput(o, binary_data=binary_out) for o in outputs]
    return client.infer(name, [inp], outputs=requested, **kw)


@pytest.mark.parametrize("binary_in", [False, True], ids=["json_in", "binary_in"])
@pytest.mark.parametrize("binary_out", [False, True], ids=["json_out", "binary_out"])
@pytest.mark.parametrize(
    "name,datatype", [("iris", "FP32"), ("diabetes", "FP32"), ("diabetes64", "FP64"), ("affine", "INT64")]
)
def test_infer_matches_onnxruntime(client, cases, name, datatype, binary_in, binary_out):
    case = cases[name]
    X = case.X[:17]
    result = triton_infer(
        client,
        name,
        X,
        datatype,
        input_name=case.input_name,
        binary_in=binary_in,
        binary_out=binary_out,
        outputs=case.output_names,
    )
    expected = case.predict(X)
    response = result.get_response()
    assert response["model_name"] == name
    assert response["model_version"] == case.version
    assert [o["name"] for o in response["outputs"]] == case.output_names
    for out in response["outputs"]:
        assert list(out["shape"]) == list(expected[out["name"]].shape)
        if binary_out:
            assert "data" not in out
            assert out["parameters"]["binary_data_size"] == expected[out["name"]].nbytes
        else:
            assert "data" in out
    for out_name, want in expected.items():
        got = result.as_numpy(out_name)
        assert got.dtype == want.dtype, (out_name, got.dtype, want.dtype)
        assert_close(got, want, f"{name}/{out_name}")


def test_int64_values_survive_json_exactly(client, cases):
    case = cases["affine"]
    # 2**55 + 1 is not representable as a float64; a server that parses JSON numbers as
    # doubles would change it.
    X = np.array([[2**55 + 1, -(2**55) - 3, 0], [1, -1, 2**40 + 7]], dtype=np.int64)
    for binary in (False, True):
        result = triton_infer(
            client, "affine", X, "INT64", input_name="x", binary_in=binary, binary_out=binary, outputs=["y"]
        )
        np.testing.assert_array_equal(result.as_numpy("y"), case.predict(X)["y"])


def test_infer_without_requested_outputs_returns_all_as_binary(client, cases):
    # tritonclient then sets parameters.binary_data_output = true.
    case = cases["iris"]
    X = case.X[::10]
    result = triton_infer(client, "iris", X, "FP32", binary_in=True, binary_out=True, outputs=None)
    outs = result.get_response()["outputs"]
    assert sorted(o["name"] for o in outs) == sorted(case.output_names)
    assert all("binary_data_size" in o["parameters"] and "data" not in o for o in outs)
    for out_name, want in case.predict(X).items():
        assert_close(result.as_numpy(out_name), want, out_name)


def test_requested_output_subset_and_request_id(client, cases):
    case = cases["iris"]
    X = case.X[40:60]
    result = triton_infer(
        client, "iris", X, "FP32", binary_in=False, binary_out=False, outputs=["probabilities"], request_id="req-42"
    )
    response = result.get_response()
    assert response["id"] == "req-42"
    assert [o["name"] for o in response["outputs"]] == ["probabilities"]
    assert result.as_numpy("label") is None
    assert_close(result.as_numpy("probabilities"), case.predict(X)["probabilities"])


def test_explicit_version_path(server, client, cases):
    case = cases["diabetes"]
    X = case.X[:5]
    result = triton_infer(
        client, "diabetes", X, "FP32", binary_in=True, binary_out=False, outputs=case.output_names,
        model_version=case.version,
    )
    assert result.get_response()["model_version"] == case.version
    assert_close(result.as_numpy("variable"), case.predict(X)["variable"])

    with pytest.raises(InferenceServerException) as e:
        triton_infer(
            client, "diabetes", X, "FP32", binary_in=True, binary_out=False, outputs=None,
            model_version="999",
        )
    assert e.value.status() == "404"

    # And over raw HTTP.
    body = {"inputs": [{"name": "input", "shape": [1, 10], "datatype": "FP32", "data": X[0].tolist()}]}
    r = requests.post(infer_url(server, "diabetes", case.version), json=body, timeout=30)
    assert r.status_code == 200, r.text
    assert r.json()["model_version"] == case.version
    assert_close(np.array(r.json()["outputs"][0]["data"], dtype=np.float32).reshape(1, 1),
                 case.predict(X[:1])["variable"])


def test_several_models_in_one_server_answer_separately(client, cases):
    a, b = cases["iris"], cases["diabetes"]
    ra = triton_infer(client, "iris", a.X[:3], "FP32", binary_in=True, binary_out=True, outputs=None)
    rb = triton_infer(client, "diabetes", b.X[:3], "FP32", binary_in=True, binary_out=True, outputs=None)
    assert ra.get_response()["model_name"] == "iris"
    assert rb.get_response()["model_name"] == "diabetes"
    assert_close(ra.as_numpy("label"), a.predict(a.X[:3])["label"])
    assert_close(rb.as_numpy("variable"), b.predict(b.X[:3])["variable"])
    # An iris-shaped request to the diabetes model is refused, not silently served.
    with pytest.raises(InferenceServerException) as e:
        triton_infer(client, "diabetes", a.X[:3], "FP32", binary_in=True, binary_out=True, outputs=None)
    assert e.value.status() == "400"


def test_fixed_shape_packaged_model(client, cases):
    """sigmoid.onnx from the onnxruntime wheel: FP32 [3, 4, 5], no MLflow signature."""
    case = cases["sigmoid"]
    for binary in (False, True):
        result = triton_infer(client, "sigmoid", case.X, "FP32", input_name="x", binary_in=binary,
                              binary_out=binary, outputs=["y"])
        assert_close(result.as_numpy("y"), case.predict(case.X)["y"])
    # A different first dimension does not fit the fixed shape.
    with pytest.raises(InferenceServerException) as e:
        triton_infer(client, "sigmoid", case.X[:1], "FP32", input_name="x", binary_in=True,
                     binary_out=True, outputs=["y"])
    assert e.value.status() == "400"


def test_fixed_shape_model_under_concurrency(server, cases):
    """Requests to a model that cannot be batched (fixed first dimension) are served one by
    one, each with its own answer."""
    case = cases["sigmoid"]
    rng = np.random.default_rng(11)
    inputs = [rng.normal(size=(3, 4, 5)).astype(np.float32) for _ in range(24)]

    def one(x):
        body = {"inputs": [{"name": "x", "shape": [3, 4, 5], "datatype": "FP32", "data": x.ravel().tolist()}]}
        r = requests.post(infer_url(server, "sigmoid"), json=body, timeout=60)
        return x, r

    with cf.ThreadPoolExecutor(8) as pool:
        for x, r in pool.map(one, inputs):
            assert r.status_code == 200, r.text
            got = np.array(r.json()["outputs"][0]["data"], dtype=np.float32).reshape(3, 4, 5)
            assert_close(got, case.predict(x)["y"])


def test_local_model_directory(client, local_case):
    meta = client.get_model_metadata("local")
    assert meta["versions"] == ["1"]
    result = triton_infer(client, "local", local_case.X, "FP32", input_name="x", binary_in=True,
                          binary_out=False, outputs=["y"])
    assert result.get_response()["model_version"] == "1"
    assert_close(result.as_numpy("y"), local_case.predict(local_case.X)["y"])


def test_large_binary_batch(client, cases):
    case = cases["iris"]
    X = np.tile(case.X, (40, 1))  # 6000 rows
    result = triton_infer(client, "iris", X, "FP32", binary_in=True, binary_out=True, outputs=None)
    for out_name, want in case.predict(X).items():
        assert_close(result.as_numpy(out_name), want, out_name)


def test_concurrent_requests_get_their_own_rows(server, cases):
    """With --max-queue-delay requests are stacked into one engine call; each caller must
    get back exactly its rows."""
    case = cases["iris"]
    rng = np.random.default_rng(5)
    batches = [case.X[rng.integers(0, len(case.X), size=int(n))] for n in rng.integers(1, 9, size=48)]

    def one(X):
        c = httpclient.InferenceServerClient(url=server.url.removeprefix("http://"))
        try:
            return X, triton_infer(c, "iris", X, "FP32", binary_in=True, binary_out=True, outputs=None)
        finally:
            c.close()

    with cf.ThreadPoolExecutor(12) as pool:
        for X, result in pool.map(one, batches):
            for out_name, want in case.predict(X).items():
                assert_close(result.as_numpy(out_name), want, out_name)


def test_nested_json_data_is_accepted(server, cases):
    case = cases["iris"]
    X = case.X[:3]
    body = {"inputs": [{"name": "input", "shape": [3, 4], "datatype": "FP32", "data": X.tolist()}]}
    r = requests.post(infer_url(server, "iris"), json=body, timeout=30)
    assert r.status_code == 200, r.text
    out = {o["name"]: o for o in r.json()["outputs"]}
    assert out["probabilities"]["shape"] == [3, 3]
    assert out["label"]["datatype"] == "INT64"
    assert_close(np.array(out["label"]["data"]), case.predict(X)["label"])
    assert_close(
        np.array(out["probabilities"]["data"], dtype=np.float32).reshape(3, 3),
        case.predict(X)["probabilities"],
    )


def test_json_input_with_binary_output_over_raw_http(server, cases):
    case = cases["diabetes64"]
    X = case.X[:4]
    body = {
        "inputs": [{"name": "input", "shape": [4, 10], "datatype": "FP64", "data": X.ravel().tolist()}],
        "outputs": [{"name": "variable", "parameters": {"binary_data": True}}],
    }
    r = requests.post(infer_url(server, "diabetes64"), json=body, timeout=30)
    assert r.status_code == 200, r.text
    header_len = int(r.headers["Inference-Header-Content-Length"])
    header = json.loads(r.content[:header_len])
    (out,) = header["outputs"]
    assert out["datatype"] == "FP64" and out["shape"] == [4, 1]
    assert out["parameters"]["binary_data_size"] == 4 * 8
    got = np.frombuffer(r.content[header_len:], dtype="<f8").reshape(4, 1)
    assert_close(got, case.predict(X)["variable"])


# ---------------------------------------------------------------------------------------
# Bad requests: each class gets the right status and a message naming the problem


def iris_input(**override):
    inp = {"name": "input", "shape": [2, 4], "datatype": "FP32", "data": [0.1] * 8}
    inp.update(override)
    return inp


def test_wrong_shape(server, client, cases):
    r = requests.post(infer_url(server, "iris"), json={"inputs": [iris_input(shape=[2, 5], data=[0.1] * 10)]}, timeout=30)
    assert_oip_error(r, 400, "input", "shape")
    # Rank differs.
    r = requests.post(infer_url(server, "iris"), json={"inputs": [iris_input(shape=[8], data=[0.1] * 8)]}, timeout=30)
    assert_oip_error(r, 400, "shape")
    # Through tritonclient too.
    with pytest.raises(InferenceServerException) as e:
        triton_infer(client, "iris", cases["iris"].X[:, :3].copy(), "FP32", binary_in=True, binary_out=True)
    assert e.value.status() == "400"
    assert "shape" in e.value.message()


def test_shape_and_data_disagree(server):
    r = requests.post(infer_url(server, "iris"), json={"inputs": [iris_input(data=[0.1] * 7)]}, timeout=30)
    assert_oip_error(r, 400, "input")
    r = requests.post(infer_url(server, "iris"), json={"inputs": [iris_input(shape=[-2, 4])]}, timeout=30)
    assert_oip_error(r, 400, "shape")


def test_wrong_datatype(server, client, cases):
    r = requests.post(infer_url(server, "iris"), json={"inputs": [iris_input(datatype="FP64")]}, timeout=30)
    assert_oip_error(r, 400, "datatype", "FP32")
    r = requests.post(infer_url(server, "iris"), json={"inputs": [iris_input(datatype="INT64", data=[1] * 8)]}, timeout=30)
    assert_oip_error(r, 400, "datatype")
    with pytest.raises(InferenceServerException) as e:
        triton_infer(client, "iris", cases["iris"].X[:2].astype(np.float64), "FP64", binary_in=True, binary_out=True)
    assert e.value.status() == "400"


def test_values_not_fitting_the_datatype(server):
    r = requests.post(
        infer_url(server, "affine"),
        json={"inputs": [{"name": "x", "shape": [1, 3], "datatype": "INT64", "data": [1.5, 2, 3]}]},
        timeout=30,
    )
    assert_oip_error(r, 400, "x")
    r = requests.post(infer_url(server, "iris"), json={"inputs": [iris_input(data=["a"] * 8)]}, timeout=30)
    assert_oip_error(r, 400, "input")


def test_unknown_datatype(server):
    r = requests.post(infer_url(server, "iris"), json={"inputs": [iris_input(datatype="FLOAT32")]}, timeout=30)
    assert_oip_error(r, 400, "datatype", "FLOAT32")


def test_unknown_model_and_version(server, client, cases):
    r = requests.post(infer_url(server, "no-such-model"), json={"inputs": [iris_input()]}, timeout=30)
    assert_oip_error(r, 404, "no-such-model")
    r = requests.post(infer_url(server, "iris", "999"), json={"inputs": [iris_input()]}, timeout=30)
    assert_oip_error(r, 404, "999")
    with pytest.raises(InferenceServerException) as e:
        triton_infer(client, "no-such-model", cases["iris"].X[:2], "FP32", binary_in=True, binary_out=True)
    assert e.value.status() == "404"


def test_missing_input(server):
    r = requests.post(infer_url(server, "iris"), json={"inputs": []}, timeout=30)
    assert_oip_error(r, 400, "missing input", "input")


def test_unexpected_input(server):
    extra = {"name": "bogus", "shape": [2, 4], "datatype": "FP32", "data": [0.0] * 8}
    r = requests.post(infer_url(server, "iris"), json={"inputs": [iris_input(), extra]}, timeout=30)
    assert_oip_error(r, 400, "bogus")
    r = requests.post(infer_url(server, "iris"), json={"inputs": [iris_input(), iris_input()]}, timeout=30)
    assert_oip_error(r, 400, "input")


def test_unknown_requested_output(server):
    body = {"inputs": [iris_input()], "outputs": [{"name": "nope"}]}
    r = requests.post(infer_url(server, "iris"), json=body, timeout=30)
    assert_oip_error(r, 400, "nope")


@pytest.mark.parametrize(
    "body",
    [b"{not json", b"", b"[]", b'{"inputs": {"name": "input"}}', b'{"inputs": [{"name": "input"}]}',
     b'{"inputs": [{"name": "input", "shape": [2, 4], "datatype": "FP32", "data": [0.1, 0.2, 0.3'],
    ids=["garbage", "empty", "list", "inputs-object", "input-without-fields", "truncated"],
)
def test_malformed_json(server, body):
    r = requests.post(infer_url(server, "iris"), data=body, headers={"Content-Type": "application/json"}, timeout=30)
    assert_oip_error(r, 400)


def binary_request(X: np.ndarray, extra_tail: bytes = b"", size: int | None = None):
    header = {
        "inputs": [
            {
                "name": "input",
                "shape": list(X.shape),
                "datatype": "FP32",
                "parameters": {"binary_data_size": X.nbytes if size is None else size},
            }
        ]
    }
    return oip_binary_body(header, X.astype("<f4").tobytes() + extra_tail)


def test_binary_request_over_raw_http(server, cases):
    case = cases["iris"]
    X = case.X[:6]
    body, headers = binary_request(X)
    r = requests.post(infer_url(server, "iris"), data=body, headers=headers, timeout=30)
    assert r.status_code == 200, r.text
    out = {o["name"]: o for o in r.json()["outputs"]}
    assert_close(np.array(out["label"]["data"]), case.predict(X)["label"])


def test_binary_header_length_larger_than_body(server, cases):
    body, headers = binary_request(cases["iris"].X[:2])
    headers["Inference-Header-Content-Length"] = str(len(body) + 1)
    r = requests.post(infer_url(server, "iris"), data=body, headers=headers, timeout=30)
    assert_oip_error(r, 400, "Inference-Header-Content-Length")


@pytest.mark.parametrize("value", ["abc", "-5", "12.5", ""])
def test_binary_header_length_not_a_number(server, cases, value):
    body, headers = binary_request(cases["iris"].X[:2])
    headers["Inference-Header-Content-Length"] = value
    r = requests.post(infer_url(server, "iris"), data=body, headers=headers, timeout=30)
    assert_oip_error(r, 400, "Inference-Header-Content-Length")


def test_binary_header_length_cutting_the_json(server, cases):
    body, headers = binary_request(cases["iris"].X[:2])
    headers["Inference-Header-Content-Length"] = str(int(headers["Inference-Header-Content-Length"]) - 3)
    r = requests.post(infer_url(server, "iris"), data=body, headers=headers, timeout=30)
    assert_oip_error(r, 400)


def test_binary_data_size_larger_than_remaining_data(server, cases):
    X = cases["iris"].X[:2]
    body, headers = binary_request(X, size=X.nbytes + 4)
    r = requests.post(infer_url(server, "iris"), data=body, headers=headers, timeout=30)
    assert_oip_error(r, 400, "input", "binary")


def test_binary_data_size_not_matching_the_shape(server, cases):
    # Shape [2, 4] FP32 needs 32 bytes; binary_data_size says 24, and the body holds 24.
    tail = cases["iris"].X[:2, :3].astype("<f4").tobytes()
    header = {
        "inputs": [
            {"name": "input", "shape": [2, 4], "datatype": "FP32", "parameters": {"binary_data_size": len(tail)}}
        ]
    }
    body, headers = oip_binary_body(header, tail)
    r = requests.post(infer_url(server, "iris"), data=body, headers=headers, timeout=30)
    assert_oip_error(r, 400, "input")


def test_leftover_binary_bytes(server, cases):
    X = cases["iris"].X[:2]
    body, headers = binary_request(X, extra_tail=b"\x00" * 8)
    r = requests.post(infer_url(server, "iris"), data=body, headers=headers, timeout=30)
    assert_oip_error(r, 400, "8 bytes")


def test_binary_data_and_json_data_together(server, cases):
    X = cases["iris"].X[:2]
    header = {"inputs": [dict(iris_input(), parameters={"binary_data_size": X.nbytes})]}
    body, headers = oip_binary_body(header, X.astype("<f4").tobytes())
    r = requests.post(infer_url(server, "iris"), data=body, headers=headers, timeout=30)
    assert_oip_error(r, 400, "input")


def test_errors_do_not_disturb_serving(server, client, cases):
    """After the bad requests above (in any order), the same model still serves."""
    for _ in range(3):
        requests.post(infer_url(server, "iris"), data=b"{", timeout=30)
    case = cases["iris"]
    result = triton_infer(client, "iris", case.X[:4], "FP32", binary_in=True, binary_out=True)
    assert_close(result.as_numpy("label"), case.predict(case.X[:4])["label"])
    assert requests.get(f"{server.url}/v2/health/ready", timeout=10).status_code == 200


def test_unknown_route_is_json_404(server):
    r = requests.get(f"{server.url}/v2/nothing/here", timeout=10)
    assert r.status_code == 404
    assert "error" in r.json()


def test_body_over_the_size_limit_is_413_json(serve, local_case):
    """A body over --max-request-bytes is refused with 413, in the protocol's error format."""
    served = serve({"local": local_case.uri}, "--max-request-bytes", "100000")
    body = json.dumps({"inputs": [{"name": "x", "shape": [3, 4, 5], "datatype": "FP32", "data": [0.5] * 60}],
                       "id": "x" * 200_000})
    r = requests.post(infer_url(served, "local"), data=body, headers={"Content-Type": "application/json"}, timeout=30)
    assert r.status_code == 413, r.text[:300]
    assert r.headers.get("Content-Type", "").startswith("application/json"), (
        f"413 answered as {r.headers.get('Content-Type')!r}: {r.text[:200]!r}"
    )
    assert r.json().get("error"), r.text[:300]
