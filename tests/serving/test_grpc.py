"""Open Inference Protocol over gRPC (inference.GRPCInferenceService) with
tritonclient.grpc, plus one request with typed contents through the raw stub."""

from __future__ import annotations

import grpc
import numpy as np
import pytest
import requests
import tritonclient.grpc as grpcclient
from tritonclient.grpc import service_pb2, service_pb2_grpc
from tritonclient.utils import InferenceServerException

from serving_util import assert_close, metric_value

SERVED = {"iris": "iris_model", "affine": "int64_model", "diabetes64": "double_model"}


@pytest.fixture(scope="module")
def cases(request):
    return {served: request.getfixturevalue(fx) for served, fx in SERVED.items()}


@pytest.fixture(scope="module")
def server(session_launcher, cases):
    served = session_launcher.start({name: case.uri for name, case in cases.items()}, grpc=True)
    try:
        yield served
    finally:
        served.stop()


@pytest.fixture(scope="module")
def client(server):
    assert server.grpc_target, "the listening line names no gRPC address"
    c = grpcclient.InferenceServerClient(url=server.grpc_target)
    try:
        yield c
    finally:
        c.close()


def infer(client, name, X, datatype, input_name="input", outputs=None, **kw):
    inp = grpcclient.InferInput(input_name, list(X.shape), datatype)
    inp.set_data_from_numpy(X)  # raw_input_contents
    requested = [grpcclient.InferRequestedOutput(o) for o in outputs] if outputs else None
    return client.infer(name, [inp], outputs=requested, **kw)


def test_server_live_ready_and_metadata(server, client):
    assert client.is_server_live()
    assert client.is_server_ready()
    meta = client.get_server_metadata(as_json=True)
    assert meta["name"] == "cairn"
    assert meta["version"] == requests.get(f"{server.url}/v2", timeout=10).json()["version"]


def test_model_metadata(client, cases):
    case = cases["iris"]
    meta = client.get_model_metadata("iris", as_json=True)
    assert meta["name"] == "iris"
    assert meta["versions"] == [case.version]
    assert meta["platform"] == "onnxruntime_onnx"
    # int64 fields come back as strings in protobuf's JSON form.
    shapes = lambda specs: {t["name"]: (t["datatype"], [int(d) for d in t["shape"]]) for t in specs}  # noqa: E731
    assert shapes(meta["inputs"]) == {"input": ("FP32", [-1, 4])}
    assert shapes(meta["outputs"]) == {"label": ("INT64", [-1]), "probabilities": ("FP32", [-1, 3])}
    assert client.get_model_metadata("iris", model_version=case.version, as_json=True) == meta


def test_model_readiness(client, cases):
    assert client.is_model_ready("iris")
    assert client.is_model_ready("iris", model_version=cases["iris"].version)
    try:
        ready = client.is_model_ready("no-such-model")
    except InferenceServerException as e:
        assert e.status() == "StatusCode.NOT_FOUND", e
    else:
        assert ready is False


@pytest.mark.parametrize(
    "name,datatype,input_name", [("iris", "FP32", "input"), ("affine", "INT64", "x"), ("diabetes64", "FP64", "input")]
)
def test_infer_matches_onnxruntime(client, cases, name, datatype, input_name):
    case = cases[name]
    X = case.X[:9]
    result = infer(client, name, X, datatype, input_name=input_name, outputs=case.output_names)
    response = result.get_response(as_json=True)
    assert response["model_name"] == name
    assert response["model_version"] == case.version
    for out_name, want in case.predict(X).items():
        got = result.as_numpy(out_name)
        assert got is not None, out_name
        assert got.dtype == want.dtype, (out_name, got.dtype, want.dtype)
        assert_close(got, want, f"{name}/{out_name}")


def test_infer_all_outputs_when_none_requested(client, cases):
    case = cases["iris"]
    X = case.X[::15]
    result = infer(client, "iris", X, "FP32")
    for out_name, want in case.predict(X).items():
        assert_close(result.as_numpy(out_name), want, out_name)


def test_explicit_version(client, cases):
    case = cases["iris"]
    result = infer(client, "iris", case.X[:3], "FP32", model_version=case.version)
    assert result.get_response().model_version == case.version
    with pytest.raises(InferenceServerException) as e:
        infer(client, "iris", case.X[:3], "FP32", model_version="999")
    assert e.value.status() == "StatusCode.NOT_FOUND"


def test_typed_contents_through_the_raw_stub(server, cases):
    case = cases["iris"]
    X = case.X[:4]
    tensor = service_pb2.ModelInferRequest().InferInputTensor(
        name="input", datatype="FP32", shape=list(X.shape),
        contents=service_pb2.InferTensorContents(fp32_contents=X.ravel().tolist()),
    )
    request = service_pb2.ModelInferRequest(model_name="iris", inputs=[tensor])
    with grpc.insecure_channel(server.grpc_target) as channel:
        response = service_pb2_grpc.GRPCInferenceServiceStub(channel).ModelInfer(request, timeout=30)
    want = case.predict(X)
    outputs = {o.name: (o, i) for i, o in enumerate(response.outputs)}
    assert set(outputs) == set(want)
    for name, expected in want.items():
        meta, i = outputs[name]
        assert list(meta.shape) == list(expected.shape)
        if response.raw_output_contents:
            dtype = {"FP32": "<f4", "INT64": "<i8"}[meta.datatype]
            got = np.frombuffer(response.raw_output_contents[i], dtype=dtype).reshape(expected.shape)
        else:
            field = {"FP32": "fp32_contents", "INT64": "int64_contents"}[meta.datatype]
            got = np.array(getattr(meta.contents, field)).reshape(expected.shape)
        assert_close(got, expected, name)


def test_unknown_model_is_not_found(client, cases):
    with pytest.raises(InferenceServerException) as e:
        infer(client, "no-such-model", cases["iris"].X[:2], "FP32")
    assert e.value.status() == "StatusCode.NOT_FOUND"
    assert "no-such-model" in e.value.message()
    with pytest.raises(InferenceServerException) as e:
        client.get_model_metadata("no-such-model")
    assert e.value.status() == "StatusCode.NOT_FOUND"


def test_wrong_shape_is_invalid_argument(client, cases):
    X = cases["iris"].X[:2, :3].copy()
    with pytest.raises(InferenceServerException) as e:
        infer(client, "iris", X, "FP32")
    assert e.value.status() == "StatusCode.INVALID_ARGUMENT"
    assert "shape" in e.value.message()


def test_wrong_datatype_is_invalid_argument(client, cases):
    X = cases["iris"].X[:2].astype(np.float64)
    with pytest.raises(InferenceServerException) as e:
        infer(client, "iris", X, "FP64")
    assert e.value.status() == "StatusCode.INVALID_ARGUMENT"
    assert "datatype" in e.value.message()


def test_raw_contents_of_the_wrong_size_is_invalid_argument(server):
    tensor = service_pb2.ModelInferRequest().InferInputTensor(name="input", datatype="FP32", shape=[2, 4])
    request = service_pb2.ModelInferRequest(
        model_name="iris", inputs=[tensor], raw_input_contents=[np.zeros(7, dtype="<f4").tobytes()]
    )
    with grpc.insecure_channel(server.grpc_target) as channel:
        with pytest.raises(grpc.RpcError) as e:
            service_pb2_grpc.GRPCInferenceServiceStub(channel).ModelInfer(request, timeout=30)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_grpc_requests_are_counted(server, client, cases):
    case = cases["affine"]
    labels = dict(model="affine", version=case.version, protocol="grpc", outcome="success")
    before = metric_value(requests.get(f"{server.url}/metrics", timeout=10).text, "cairn_inference_requests_total", **labels)
    for _ in range(3):
        infer(client, "affine", case.X[:2], "INT64", input_name="x")
    after = metric_value(requests.get(f"{server.url}/metrics", timeout=10).text, "cairn_inference_requests_total", **labels)
    assert after == before + 3
