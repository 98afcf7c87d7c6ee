"""The Python engine: models without an ONNX flavor (scikit-learn, custom pyfunc code) are
served from mlflow.pyfunc worker processes, behind the same protocols."""

from __future__ import annotations

import time

import mlflow
import mlflow.pyfunc
import mlflow.sklearn
import numpy as np
import pandas as pd
import pytest
import requests
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from mlflow.models import infer_signature
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression

from serving_util import assert_close, unique


@pytest.fixture(scope="module")
def sklearn_model(tracking_uri):
    """An iris LogisticRegression logged with mlflow.sklearn (skops file, column signature)."""
    X, y = load_iris(return_X_y=True, as_frame=True)
    clf = LogisticRegression(max_iter=1000).fit(X, y)
    name = unique("sk-iris")
    with mlflow.start_run():
        info = mlflow.sklearn.log_model(
            clf,
            name="model",
            registered_model_name=name,
            signature=infer_signature(X, clf.predict(X)),
        )
    return name, clf, X, info


# Custom pyfunc code, logged as "model from code" (a file, not a pickle): twice each
# input, as a dataframe with a named column.
DOUBLER = """
import mlflow.pyfunc
import pandas as pd


class Doubler(mlflow.pyfunc.PythonModel):
    def predict(self, context, model_input, params=None):
        scale = (params or {}).get("scale", 2.0)
        return pd.DataFrame({"doubled": model_input["x"].to_numpy() * scale})


mlflow.models.set_model(Doubler())
"""


@pytest.fixture(scope="module")
def custom_model(tracking_uri, tmp_path_factory):
    name = unique("doubler")
    code = tmp_path_factory.mktemp("doubler") / "doubler.py"
    code.write_text(DOUBLER)
    X = pd.DataFrame({"x": [1.0, 2.5, -3.0]})
    with mlflow.start_run():
        mlflow.pyfunc.log_model(
            name="model",
            python_model=str(code),
            registered_model_name=name,
            signature=infer_signature(
                X, pd.DataFrame({"doubled": X["x"] * 2}), params={"scale": 2.0}
            ),
        )
    return name, X


def test_sklearn_model_over_invocations_and_oip(serve, sklearn_model):
    name, clf, X, _ = sklearn_model
    served = serve({"sk": f"models:/{name}/1"}, "--instances", "1")
    meta = requests.get(f"{served.url}/v2/models/sk", timeout=10).json()
    assert meta["platform"] == "mlflow_pyfunc"
    assert [i["name"] for i in meta["inputs"]] == list(X.columns)
    assert {i["datatype"] for i in meta["inputs"]} == {"FP64"}

    rows = X.iloc[[0, 60, 120]]
    want = clf.predict(rows)
    body = {"dataframe_split": {"columns": list(rows.columns), "data": rows.to_numpy().tolist()}}
    r = requests.post(f"{served.url}/invocations", json=body, timeout=30)
    assert r.status_code == 200, r.text
    # MLflow answers a bare array for an sklearn prediction.
    assert r.json() == {"predictions": want.tolist()}

    inputs = [
        {"name": c, "shape": [len(rows)], "datatype": "FP64", "data": rows[c].tolist()}
        for c in rows.columns
    ]
    r = requests.post(f"{served.url}/v2/models/sk/infer", json={"inputs": inputs}, timeout=30)
    assert r.status_code == 200, r.text
    out = r.json()["outputs"]
    assert [o["name"] for o in out] == ["predictions"]
    assert out[0]["data"] == want.tolist()

    # The engine's signature check applies before Python sees anything.
    bad = [dict(i, datatype="FP32") for i in inputs]
    r = requests.post(f"{served.url}/v2/models/sk/infer", json={"inputs": bad}, timeout=30)
    assert r.status_code == 400
    assert "the model expects FP64" in r.json()["error"]


def test_custom_pyfunc_code_with_params(serve, custom_model):
    name, X = custom_model
    served = serve({"dbl": f"models:/{name}/latest"}, "--instances", "1")
    body = {"dataframe_records": X.to_dict(orient="records")}
    r = requests.post(f"{served.url}/invocations", json=body, timeout=30)
    assert r.status_code == 200, r.text
    got = [row["doubled"] for row in r.json()["predictions"]]
    assert_close(np.array(got), X["x"].to_numpy() * 2)

    # params reach predict (the signature declares `scale`), as with mlflow models serve.
    body["params"] = {"scale": 3.0}
    r = requests.post(f"{served.url}/invocations", json=body, timeout=30)
    assert r.status_code == 200, r.text
    got = [row["doubled"] for row in r.json()["predictions"]]
    assert_close(np.array(got), X["x"].to_numpy() * 3)

    # OIP request parameters are the model's params too (the protocol's own keys, such
    # as binary_data_output, are not), over REST and gRPC, with the real clients.
    x = X["x"].to_numpy()
    http = httpclient.InferenceServerClient(served.url.removeprefix("http://"))
    inp = httpclient.InferInput("x", [len(x)], "FP64")
    inp.set_data_from_numpy(x, binary_data=True)
    out = [httpclient.InferRequestedOutput("doubled", binary_data=True)]
    res = http.infer("dbl", [inp], outputs=out, parameters={"scale": 5.0})
    assert_close(res.as_numpy("doubled"), x * 5)
    res = http.infer("dbl", [inp], outputs=out)
    assert_close(res.as_numpy("doubled"), x * 2)
    grpc = grpcclient.InferenceServerClient(served.grpc_target)
    ginp = grpcclient.InferInput("x", [len(x)], "FP64")
    ginp.set_data_from_numpy(x)
    res = grpc.infer("dbl", [ginp], parameters={"scale": 0.5})
    assert_close(res.as_numpy("doubled"), x * 0.5)


SLEEPER = """
import time

import mlflow.pyfunc
import pandas as pd


class Sleeper(mlflow.pyfunc.PythonModel):
    def predict(self, context, model_input, params=None):
        time.sleep((params or {}).get("sleep", 0.0))
        return pd.DataFrame({"y": model_input["x"].to_numpy() + 1})


mlflow.models.set_model(Sleeper())
"""


@pytest.fixture(scope="module")
def sleeper_model(tracking_uri, tmp_path_factory):
    name = unique("sleeper")
    code = tmp_path_factory.mktemp("sleeper") / "sleeper.py"
    code.write_text(SLEEPER)
    X = pd.DataFrame({"x": [1.0, 2.0]})
    with mlflow.start_run():
        mlflow.pyfunc.log_model(
            name="model",
            python_model=str(code),
            registered_model_name=name,
            signature=infer_signature(X, pd.DataFrame({"y": X["x"] + 1}), params={"sleep": 0.0}),
        )
    return name, X


def test_a_hung_predict_times_out_and_the_worker_restarts(serve, sleeper_model):
    name, X = sleeper_model
    served = serve({"s": f"models:/{name}/1"}, "--instances", "1", "--predict-timeout", "1s")
    body = {"dataframe_split": {"columns": ["x"], "data": [[1.0]]}, "params": {"sleep": 120.0}}
    started = time.monotonic()
    r = requests.post(f"{served.url}/invocations", json=body, timeout=60)
    took = time.monotonic() - started
    assert r.status_code == 504, r.text
    assert r.json()["error_code"] == "DEADLINE_EXCEEDED", r.text
    assert "--predict-timeout" in r.json()["message"]
    assert took < 30, f"the timeout took {took:.1f}s"
    # OIP: the same limit, a 504 with the OIP error body.
    oip = {
        "inputs": [{"name": "x", "shape": [1], "datatype": "FP64", "data": [1.0]}],
        "parameters": {"sleep": 120.0},
    }
    r = requests.post(f"{served.url}/v2/models/s/infer", json=oip, timeout=60)
    assert r.status_code == 504, r.text
    assert "did not finish" in r.json()["error"]
    # A fresh worker serves the next request.
    body["params"] = {"sleep": 0.0}
    r = requests.post(f"{served.url}/invocations", json=body, timeout=60)
    assert r.status_code == 200, r.text
    assert r.json() == {"predictions": [{"y": 2.0}]}


def test_a_model_error_is_a_400_and_the_worker_survives(serve, custom_model):
    name, X = custom_model
    served = serve({"dbl": f"models:/{name}/1"}, "--instances", "1")
    # A column the signature declares but with strings: refused before Python.
    r = requests.post(
        f"{served.url}/invocations",
        json={"dataframe_split": {"columns": ["x"], "data": [["a"]]}},
        timeout=30,
    )
    assert r.status_code == 400
    assert r.json()["error_code"] == "BAD_REQUEST"
    r = requests.post(
        f"{served.url}/invocations",
        json={"dataframe_split": {"columns": ["x"], "data": [[4.0]]}},
        timeout=30,
    )
    assert r.status_code == 200, r.text
    assert r.json() == {"predictions": [{"doubled": 8.0}]}


def test_engine_flag_forces_python_for_an_onnx_model(serve, iris_model):
    served = serve({"iris": iris_model.uri}, "--engine", "python", "--instances", "1")
    meta = requests.get(f"{served.url}/v2/models/iris", timeout=10).json()
    assert meta["platform"] == "mlflow_pyfunc"
    X = iris_model.X[:3]
    r = requests.post(f"{served.url}/invocations", json={"inputs": X.tolist()}, timeout=30)
    assert r.status_code == 200, r.text
    want = iris_model.predict(X)
    got = r.json()["predictions"]
    assert got["label"] == want["label"].tolist()
    assert_close(np.array(got["probabilities"]), want["probabilities"])


@pytest.fixture(scope="module")
def unsigned_model(tracking_uri):
    """An iris LogisticRegression logged with no signature and no input example: the
    server learns nothing about its inputs and passes requests through as MLflow would."""
    X, y = load_iris(return_X_y=True)
    clf = LogisticRegression(max_iter=1000).fit(X, y)
    name = unique("unsigned")
    with mlflow.start_run():
        mlflow.sklearn.log_model(
            clf, name="model", registered_model_name=name, pip_requirements=["scikit-learn"]
        )
    return name, clf, X


def test_a_model_without_signature_takes_every_input_format(serve, unsigned_model):
    name, clf, X = unsigned_model
    served = serve({"u": f"models:/{name}/1"}, "--instances", "1")
    meta = requests.get(f"{served.url}/v2/models/u", timeout=10).json()
    assert meta["platform"] == "mlflow_pyfunc" and meta["inputs"] == [], meta
    rows = X[[0, 60, 120, 7]]
    want = {"predictions": clf.predict(rows).tolist()}
    columns = ["a", "b", "c", "d"]
    bodies = [
        {"dataframe_split": {"columns": columns, "data": rows.tolist()}},
        {"dataframe_records": [dict(zip(columns, r)) for r in rows.tolist()]},
        {"instances": rows.tolist()},
        {"inputs": rows.tolist()},
    ]
    for body in bodies:
        r = requests.post(f"{served.url}/invocations", json=body, timeout=30)
        assert r.status_code == 200, (body, r.text)
        assert r.json() == want, body
    csv = "a,b,c,d\n" + "\n".join(",".join(str(v) for v in r) for r in rows.tolist())
    r = requests.post(
        f"{served.url}/invocations", data=csv, headers={"Content-Type": "text/csv"}, timeout=30
    )
    assert r.status_code == 200, r.text
    assert r.json() == want

    # OIP with the real client: one [N, 4] FP64 input is the array predict gets.
    http = httpclient.InferenceServerClient(served.url.removeprefix("http://"))
    inp = httpclient.InferInput("features", list(rows.shape), "FP64")
    inp.set_data_from_numpy(rows, binary_data=True)
    res = http.infer("u", [inp])
    assert res.as_numpy("predictions").tolist() == want["predictions"]

    # Without a signature nothing converts values: a column mixing types is a 400.
    bad = {"dataframe_split": {"columns": ["a"], "data": [[1.0], ["x"]]}}
    r = requests.post(f"{served.url}/invocations", json=bad, timeout=30)
    assert r.status_code == 400 and "mixes value types" in r.json()["message"], r.text
    # What the model itself rejects (wrong feature count) is its 400, and it keeps serving.
    r = requests.post(f"{served.url}/invocations", json={"instances": [[1.0, 2.0]]}, timeout=30)
    assert r.status_code == 400 and r.json()["error_code"] == "BAD_REQUEST", r.text
    r = requests.post(f"{served.url}/invocations", json=bodies[2], timeout=30)
    assert r.status_code == 200 and r.json() == want
