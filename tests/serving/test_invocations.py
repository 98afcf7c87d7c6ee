"""MLflow's scoring protocol (/invocations, /ping, /health, /version) with raw `requests`.

Answers are compared with onnxruntime run in this process and with MLflow's own scoring
code (`mlflow.pyfunc.scoring_server.invocations`) run in-process on the same registered
model loaded with `mlflow.pyfunc.load_model`."""

from __future__ import annotations

import io
import json
import math

import mlflow.pyfunc
import numpy as np
import pytest
import requests
from mlflow.exceptions import MlflowException
from mlflow.pyfunc import scoring_server

import serving_models as sm
from serving_util import unique

JSON = "application/json"
IRIS_COLUMNS = ["sepal_length", "sepal_width", "petal_length", "petal_width"]


@pytest.fixture(scope="module")
def single(session_launcher, iris_model):
    """A server with exactly one model: answers on /invocations."""
    served = session_launcher.start({"iris": iris_model.uri})
    try:
        yield served
    finally:
        served.stop()


@pytest.fixture(scope="module")
def multi(session_launcher, iris_model, diabetes_model):
    served = session_launcher.start({"iris": iris_model.uri, "diabetes": diabetes_model.uri})
    try:
        yield served
    finally:
        served.stop()


@pytest.fixture(scope="module")
def nosig_model(tracking_uri):
    """Diabetes regression logged without signature or input example: MLflow then answers
    dataframe input with one record per row."""
    onx, X = sm.diabetes_regressor()
    return sm.log_onnx(onx, X, unique("nosig"), signature=False, input_example=False)


@pytest.fixture(scope="module")
def nosig(session_launcher, nosig_model):
    served = session_launcher.start({"nosig": nosig_model.uri})
    try:
        yield served
    finally:
        served.stop()


@pytest.fixture(scope="module")
def mlflow_iris(iris_model):
    return mlflow.pyfunc.load_model(iris_model.uri)


@pytest.fixture(scope="module")
def mlflow_diabetes(diabetes_model):
    return mlflow.pyfunc.load_model(diabetes_model.uri)


def mlflow_score(model, body: bytes | str, content_type: str = JSON):
    """What MLflow's scoring server answers: (status, parsed JSON body or text, error_code)."""
    try:
        r = scoring_server.invocations(body, content_type, model, model.metadata.get_input_schema())
    except MlflowException as e:
        return e.get_http_status_code(), e.message, e.error_code
    try:
        return r.status, json.loads(r.response), None
    except ValueError:
        return r.status, r.response, None


def assert_json_close(actual, expected, path="$", rel=1e-5, abs_=1e-5):
    """Same JSON structure; numbers equal within tolerance (integers exactly)."""
    if isinstance(expected, dict):
        assert isinstance(actual, dict), f"{path}: {type(actual).__name__} is not an object"
        assert set(actual) == set(expected), f"{path}: keys {sorted(actual)} != {sorted(expected)}"
        for k in expected:
            assert_json_close(actual[k], expected[k], f"{path}.{k}", rel, abs_)
    elif isinstance(expected, list):
        assert isinstance(actual, list), f"{path}: {type(actual).__name__} is not a list"
        assert len(actual) == len(expected), f"{path}: length {len(actual)} != {len(expected)}"
        for i, (a, e) in enumerate(zip(actual, expected)):
            assert_json_close(a, e, f"{path}[{i}]", rel, abs_)
    elif isinstance(expected, bool) or expected is None or isinstance(expected, str):
        assert actual == expected, f"{path}: {actual!r} != {expected!r}"
    elif isinstance(expected, int):
        assert isinstance(actual, int) and not isinstance(actual, bool), f"{path}: {actual!r} is not an integer"
        assert actual == expected, f"{path}: {actual} != {expected}"
    else:
        assert isinstance(actual, (int, float)) and not isinstance(actual, bool), f"{path}: {actual!r}"
        assert math.isclose(actual, expected, rel_tol=rel, abs_tol=abs_), f"{path}: {actual} != {expected}"


def post(served, body, content_type=JSON, path="/invocations"):
    data = body if isinstance(body, (bytes, str)) else json.dumps(body)
    return requests.post(f"{served.url}{path}", data=data, headers={"Content-Type": content_type}, timeout=60)


def iris_expected(iris_model, X) -> dict:
    pred = iris_model.predict(X)
    return {"predictions": {"label": pred["label"].tolist(), "probabilities": pred["probabilities"].tolist()}}


def csv_body(columns, X) -> str:
    out = io.StringIO()
    out.write(",".join(columns) + "\n")
    for row in X:
        out.write(",".join(repr(float(v)) for v in row) + "\n")
    return out.getvalue()


ROWS = slice(45, 60)  # rows spanning two iris classes


def formats(X):
    rows = X.tolist()
    return {
        "dataframe_split": {"dataframe_split": {"columns": IRIS_COLUMNS, "data": rows}},
        "dataframe_split_with_index": {
            "dataframe_split": {"index": list(range(len(rows))), "columns": IRIS_COLUMNS, "data": rows}
        },
        "dataframe_records": {"dataframe_records": [dict(zip(IRIS_COLUMNS, r)) for r in rows]},
        "instances": {"instances": rows},
        "inputs_list": {"inputs": rows},
        "inputs_with_params": {"inputs": rows, "params": {"temperature": 0.5}},
        "split_with_params": {"dataframe_split": {"columns": IRIS_COLUMNS, "data": rows}, "params": {}},
    }


@pytest.mark.parametrize("fmt", list(formats(np.zeros((1, 4)))))
def test_every_json_format_matches_onnxruntime_and_mlflow(single, iris_model, mlflow_iris, fmt):
    X = iris_model.X[ROWS]
    body = json.dumps(formats(X)[fmt])
    r = post(single, body)
    assert r.status_code == 200, r.text
    assert r.headers["Content-Type"].startswith("application/json")
    got = r.json()
    assert_json_close(got, iris_expected(iris_model, X))

    status, want, code = mlflow_score(mlflow_iris, body)
    assert status == 200, f"MLflow itself refused {fmt}: {want}"
    assert_json_close(got, want)


def test_fp32_outputs_are_written_as_mlflow_writes_them(single, iris_model, mlflow_iris):
    """MLflow widens float32 to float64 when it writes JSON (0.9815572500228882, not
    0.98155725); the same values should come out digit for digit."""
    body = json.dumps({"inputs": iris_model.X[:5].tolist()})
    got = post(single, body).json()
    status, want, _ = mlflow_score(mlflow_iris, body)
    assert status == 200
    assert got["predictions"]["probabilities"] == want["predictions"]["probabilities"]
    assert got["predictions"]["label"] == want["predictions"]["label"]


def test_inputs_by_name(single, iris_model):
    """{"inputs": {"<input name>": ...}} and instances as records of input names. (MLflow
    refuses these for a model whose signature input is unnamed; Cairn maps them by the
    ONNX input name.)"""
    X = iris_model.X[ROWS]
    for body in (
        {"inputs": {"input": X.tolist()}},
        {"instances": [{"input": row} for row in X.tolist()]},
    ):
        r = post(single, body)
        assert r.status_code == 200, (body, r.text)
        assert_json_close(r.json(), iris_expected(iris_model, X))


def test_csv_with_header(single, iris_model):
    X = iris_model.X[ROWS]
    r = post(single, csv_body(IRIS_COLUMNS, X), "text/csv")
    assert r.status_code == 200, r.text
    assert_json_close(r.json(), iris_expected(iris_model, X))
    # charset parameter allowed
    r = post(single, csv_body(IRIS_COLUMNS, X), "text/csv; charset=utf-8")
    assert r.status_code == 200, r.text


def test_json_with_charset(single, iris_model):
    X = iris_model.X[:3]
    r = post(single, {"inputs": X.tolist()}, "application/json; charset=UTF-8")
    assert r.status_code == 200, r.text
    assert_json_close(r.json(), iris_expected(iris_model, X))


def test_integer_cells_are_cast_to_the_model_type(single, iris_model):
    X = np.array([[5, 3, 1, 0], [7, 3, 6, 2]])
    r = post(single, {"dataframe_split": {"columns": IRIS_COLUMNS, "data": X.tolist()}})
    assert r.status_code == 200, r.text
    assert_json_close(r.json(), iris_expected(iris_model, X.astype(np.float32)))


def test_named_model_route_on_a_multi_model_server(multi, iris_model, diabetes_model, mlflow_diabetes):
    X = diabetes_model.X[:7]
    body = json.dumps({"dataframe_split": {"columns": [f"f{i}" for i in range(10)], "data": X.tolist()}})
    r = post(multi, body, path="/models/diabetes/invocations")
    assert r.status_code == 200, r.text
    got = r.json()
    assert_json_close(got, {"predictions": {"variable": diabetes_model.predict(X)["variable"].tolist()}})
    status, want, _ = mlflow_score(mlflow_diabetes, body)
    assert status == 200
    assert_json_close(got, want)

    Xi = iris_model.X[:3]
    r = post(multi, {"instances": Xi.tolist()}, path="/models/iris/invocations")
    assert r.status_code == 200, r.text
    assert_json_close(r.json(), iris_expected(iris_model, Xi))


@pytest.mark.parametrize("fmt", ["dataframe_split", "dataframe_records", "csv", "inputs", "instances"])
def test_model_without_signature_answers_like_mlflow(nosig, nosig_model, fmt):
    X = nosig_model.X[:6]
    columns = [f"c{i}" for i in range(X.shape[1])]
    if fmt == "csv":
        body, content_type = csv_body(columns, X), "text/csv"
    else:
        content_type = JSON
        body = json.dumps({
            "dataframe_split": {"dataframe_split": {"columns": columns, "data": X.tolist()}},
            "dataframe_records": {"dataframe_records": [dict(zip(columns, r)) for r in X.tolist()]},
            "inputs": {"inputs": X.tolist()},
            "instances": {"instances": X.tolist()},
        }[fmt])
    r = post(nosig, body, content_type)
    mlflow_model = mlflow.pyfunc.load_model(nosig_model.uri)
    status, want, code = mlflow_score(mlflow_model, body, content_type)
    assert status == 200, f"precondition: MLflow scores {fmt}: {want}"
    assert r.status_code == 200, r.text
    assert_json_close(r.json(), want)
    values = nosig_model.predict(X)["variable"].ravel()
    preds = r.json()["predictions"]
    flat = [p["variable"] for p in preds] if isinstance(preds, list) else np.ravel(preds["variable"]).tolist()
    np.testing.assert_allclose(flat, values, rtol=1e-5, atol=1e-5)


def test_bare_invocations_on_a_multi_model_server_is_refused(multi, iris_model):
    r = post(multi, {"inputs": iris_model.X[:2].tolist()})
    assert r.status_code == 400, r.text
    assert r.json()["error_code"] == "BAD_REQUEST"
    assert "/models/" in r.json()["message"]


def test_named_route_works_on_a_single_model_server(single, iris_model):
    X = iris_model.X[:2]
    r = post(single, {"inputs": X.tolist()}, path="/models/iris/invocations")
    assert r.status_code == 200, r.text
    assert_json_close(r.json(), iris_expected(iris_model, X))


def test_unknown_model_name_is_404(multi, iris_model):
    r = post(multi, {"inputs": iris_model.X[:2].tolist()}, path="/models/no-such-model/invocations")
    assert r.status_code == 404, r.text
    body = r.json()
    assert body["error_code"] == "RESOURCE_DOES_NOT_EXIST"
    assert "no-such-model" in body["message"]


@pytest.mark.parametrize("path", ["/ping", "/health"])
def test_ping_and_health(single, path):
    r = requests.get(f"{single.url}{path}", timeout=10)
    assert r.status_code == 200
    assert r.text == "\n"


def test_version(single):
    r = requests.get(f"{single.url}/version", timeout=10)
    assert r.status_code == 200
    assert r.text.strip()
    meta = requests.get(f"{single.url}/v2", timeout=10).json()
    assert r.text.strip() == meta["version"]


# ---------------------------------------------------------------------------------------
# Errors: the status and error_code MLflow's scoring server gives for the same body


@pytest.mark.parametrize(
    "content_type",
    ["text/plain", "application/xml", "application/json; charset=latin-1", "application/json; foo=bar", ""],
)
def test_unsupported_content_type_is_415(single, iris_model, mlflow_iris, content_type):
    body = json.dumps({"inputs": iris_model.X[:2].tolist()})
    status, _, _ = mlflow_score(mlflow_iris, body, content_type)
    assert status == 415, "precondition: MLflow answers 415"
    r = post(single, body, content_type)
    assert r.status_code == 415, r.text


ERROR_BODIES = {
    "malformed_json": b'{"inputs": [[1, 2, 3, 4]',
    "not_utf8_json": b'{"inputs": "\xff"}',
    "top_level_list": json.dumps([[1, 2, 3, 4]]),
    "top_level_number": b"3",
    "no_format_key": json.dumps({"data": [[1, 2, 3, 4]]}),
    "two_format_keys": json.dumps({"inputs": [[1, 2, 3, 4]], "instances": [[1, 2, 3, 4]]}),
    "non_rectangular": json.dumps({"inputs": [[1, 2, 3, 4], [1, 2]]}),
    "wrong_column_count": json.dumps({"dataframe_split": {"columns": ["a", "b", "c"], "data": [[1, 2, 3]]}}),
    "wrong_row_width": json.dumps({"inputs": [[1, 2, 3, 4, 5]]}),
    "strings_for_floats": json.dumps({"inputs": [["a", "b", "c", "d"]]}),
    "empty_dataframe": json.dumps({"dataframe_split": {"columns": IRIS_COLUMNS, "data": []}}),
}


@pytest.mark.parametrize("case", list(ERROR_BODIES))
def test_bad_bodies_are_answered_like_mlflow(single, mlflow_iris, case):
    body = ERROR_BODIES[case]
    r = post(single, body)
    want_status, want_message, want_code = mlflow_score(mlflow_iris, body)
    assert want_status == 400, f"precondition: MLflow answers {want_status} for {case}"
    assert r.status_code == want_status, f"{case}: {r.status_code} {r.text}"
    got = r.json()
    assert isinstance(got.get("message"), str) and got["message"].strip(), got
    assert got.get("error_code") == want_code, (
        f"{case}: error_code {got.get('error_code')} (MLflow: {want_code}); "
        f"Cairn: {got.get('message')!r}; MLflow: {str(want_message)[:200]!r}"
    )


def test_wrong_column_count_message_names_the_shape(single):
    r = post(single, ERROR_BODIES["wrong_column_count"])
    assert r.status_code == 400
    assert r.json()["error_code"] == "INVALID_PARAMETER_VALUE"
    assert "shape" in r.json()["message"]


def test_ragged_csv_is_400(single):
    r = post(single, "a,b,c,d\n1,2,3,4\n1,2\n", "text/csv")
    assert r.status_code == 400, r.text
    assert r.json()["error_code"] == "BAD_REQUEST"


def test_errors_are_counted_and_serving_continues(single, iris_model):
    post(single, ERROR_BODIES["wrong_column_count"])
    X = iris_model.X[:3]
    r = post(single, {"inputs": X.tolist()})
    assert r.status_code == 200
    assert_json_close(r.json(), iris_expected(iris_model, X))
