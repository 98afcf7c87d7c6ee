"""The tract engine: ONNX graphs run by the pure-Rust engine, chosen by flag or, when no
onnxruntime library can be loaded, automatically; graphs it cannot run fail loudly."""

from __future__ import annotations

import mlflow
import numpy as np
import pytest
import requests
import tritonclient.grpc as grpcclient
from skl2onnx import convert_sklearn
from skl2onnx.common.data_types import FloatTensorType
from sklearn.datasets import load_diabetes, load_iris
from sklearn.linear_model import LinearRegression
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import serving_models as sm
from serving_util import assert_close, unique

MISSING_ORT = "/nonexistent/libonnxruntime.so"


@pytest.fixture(scope="module")
def mlp_model(tracking_uri) -> sm.ModelCase:
    """An MLP on iris: MatMul/Add/Relu/Softmax/ArgMax, the kind of graph tract is for."""
    X, y = load_iris(return_X_y=True)
    clf = MLPClassifier(hidden_layer_sizes=(16,), max_iter=2000, random_state=0).fit(X, y)
    onx = sm._classifier_onnx(clf, X.shape[1])
    return sm.log_onnx(onx, X.astype(np.float32), unique("iris-mlp"))


@pytest.fixture(scope="module")
def scaled_regressor(tracking_uri) -> sm.ModelCase:
    """StandardScaler + LinearRegression: the ONNX `Scaler` op, which tract 0.23 lacks."""
    X, y = load_diabetes(return_X_y=True)
    pipe = make_pipeline(StandardScaler(), LinearRegression()).fit(X, y)
    onx = convert_sklearn(
        pipe,
        initial_types=[("input", FloatTensorType([None, X.shape[1]]))],
        target_opset={"": 17, "ai.onnx.ml": 3},
    )
    return sm.log_onnx(onx, X.astype(np.float32), unique("scaled-diabetes"))


DATATYPES = {np.dtype(np.float32): "FP32", np.dtype(np.float64): "FP64", np.dtype(np.int64): "INT64"}


def infer(url: str, name: str, X: np.ndarray, input_name: str = "input") -> dict[str, np.ndarray]:
    body = {
        "inputs": [
            {
                "name": input_name,
                "shape": list(X.shape),
                "datatype": DATATYPES[X.dtype],
                "data": X.ravel().tolist(),
            }
        ]
    }
    r = requests.post(f"{url}/v2/models/{name}/infer", json=body, timeout=30)
    assert r.status_code == 200, r.text
    return {o["name"]: np.array(o["data"]).reshape(o["shape"]) for o in r.json()["outputs"]}


@pytest.mark.parametrize("fixture", ["iris_model", "mlp_model", "diabetes_model", "double_model", "int64_model"])
def test_tract_predictions_match_onnxruntime(serve, request, fixture):
    case: sm.ModelCase = request.getfixturevalue(fixture)
    served = serve({"m": case.uri}, "--engine", "tract", "--instances", "2")
    meta = requests.get(f"{served.url}/v2/models/m", timeout=10).json()
    assert meta["platform"] == "tract_onnx", meta
    assert [o["name"] for o in meta["outputs"]] == case.output_names
    X = case.X[:25]
    got = infer(served.url, "m", X, case.input_name)
    want = case.predict(X)
    assert set(got) == set(want)
    for name in want:
        assert_close(got[name], want[name], what=f"{fixture} {name}")
    # One row at a time too (the symbolic batch dimension at 1), over gRPC.
    client = grpcclient.InferenceServerClient(served.grpc_target)
    inp = grpcclient.InferInput(case.input_name, [1, X.shape[1]], DATATYPES[X.dtype])
    inp.set_data_from_numpy(X[:1])
    res = client.infer("m", [inp])
    for name in want:
        assert_close(res.as_numpy(name), want[name][:1], what=f"{fixture} {name} over gRPC")


def test_auto_uses_tract_when_onnxruntime_is_missing(serve, iris_model):
    served = serve({"m": iris_model.uri}, "--ort-library", MISSING_ORT)
    meta = requests.get(f"{served.url}/v2/models/m", timeout=10).json()
    assert meta["platform"] == "tract_onnx", meta
    got = infer(served.url, "m", iris_model.X[:5])
    assert_close(got["probabilities"], iris_model.predict(iris_model.X[:5])["probabilities"])
    assert "serving ONNX with tract" in served.log()


def test_auto_prefers_onnxruntime(serve, iris_model):
    served = serve({"m": iris_model.uri})
    meta = requests.get(f"{served.url}/v2/models/m", timeout=10).json()
    assert meta["platform"] == "onnxruntime_onnx", meta


@pytest.mark.parametrize("how", [("--engine", "tract"), ("--ort-library", MISSING_ORT)])
def test_a_graph_tract_cannot_run_is_never_ready(serve, scaled_regressor, how):
    served = serve({"m": scaled_regressor.uri}, *how, "--poll-interval", "1s", wait_ready=False)

    error = served.load_error()
    assert "tract cannot load" in error and "Scaler" in error, error
    if how[0] == "--ort-library":
        assert "onnxruntime is not available" in error, error
    body = {"inputs": [{"name": "input", "shape": [1, 10], "datatype": "FP32", "data": [0.0] * 10}]}
    r = requests.post(f"{served.url}/v2/models/m/infer", json=body, timeout=5)
    assert r.status_code == 503, r.text
    assert served.proc.poll() is None, "a model that cannot load must not stop the server"


def test_engine_onnxruntime_with_a_missing_library_says_how_to_install(serve, iris_model):
    served = serve(
        {"m": iris_model.uri}, "--engine", "onnxruntime", "--ort-library", MISSING_ORT,
        "--poll-interval", "1s", wait_ready=False,
    )

    error = served.load_error()
    assert MISSING_ORT in error and "pip install onnxruntime" in error, error


def test_tract_refuses_tree_ensembles(serve, forest_model):
    """tract's TreeEnsembleClassifier labels binary forests unlike onnxruntime (and is far
    slower): `--engine tract` refuses such a graph with the reason, rather than serve it."""
    served = serve({"m": forest_model.uri}, "--engine", "tract", "--poll-interval", "1s", wait_ready=False)

    error = served.load_error()
    assert "TreeEnsembleClassifier" in error and "--engine onnxruntime" in error, error
