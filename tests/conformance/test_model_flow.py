"""A data scientist's whole loop with the real client: log a model, register it, alias and
stage it, load it back by every kind of URI, and get the same predictions.

Models are trained here on scikit-learn's bundled datasets (no download)."""

from __future__ import annotations

from pathlib import Path

import mlflow
import numpy as np
import pytest
from mlflow import MlflowClient
from sklearn.datasets import load_breast_cancer, load_iris
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression

from conformance_util import unique_name


@pytest.fixture(scope="module")
def iris():
    X, y = load_iris(return_X_y=True, as_frame=True)
    return X, y


def _uris(name: str, version: str, alias: str, model_id: str) -> list[str]:
    return [
        f"models:/{name}@{alias}",
        f"models:/{name}/{version}",
        f"models:/{name}/Production",
        f"models:/{model_id}",
    ]


def test_sklearn_log_register_alias_load(client: MlflowClient, fluent_experiment, iris):
    X, y = iris
    model = LogisticRegression(max_iter=500).fit(X, y)
    name = unique_name("iris")
    with mlflow.start_run():
        info = mlflow.sklearn.log_model(
            model, name="model", registered_model_name=name, input_example=X.head(3)
        )
    assert str(info.registered_model_version) == "1"
    mv = client.get_model_version(name, "1")
    assert mv.status == "READY"
    # (the client's ModelVersion does not parse model_id; the source names the model)
    assert mv.source == f"models:/{info.model_id}"
    client.set_registered_model_alias(name, "champion", "1")
    client.transition_model_version_stage(name, "1", "Production")

    expected = model.predict(X)
    for uri in _uris(name, "1", "champion", info.model_id):
        loaded = mlflow.pyfunc.load_model(uri)
        np.testing.assert_array_equal(loaded.predict(X), expected, err_msg=uri)
    # The flavor's own loader gives back a working estimator too.
    sk = mlflow.sklearn.load_model(f"models:/{name}@champion")
    np.testing.assert_allclose(sk.predict_proba(X), model.predict_proba(X), rtol=0, atol=0)

    local = Path(mlflow.artifacts.download_artifacts(f"models:/{name}/1"))
    assert (local / "MLmodel").is_file()
    assert (local / "model.pkl").is_file() or any(local.glob("*.pkl")) or any(local.glob("*.skops"))


def test_new_version_and_alias_move_switch_what_loads(client: MlflowClient, fluent_experiment):
    X, y = load_breast_cancer(return_X_y=True, as_frame=True)
    name = unique_name("cancer")
    small = RandomForestClassifier(n_estimators=3, max_depth=2, random_state=0).fit(X, y)
    big = RandomForestClassifier(n_estimators=20, random_state=1).fit(X, y)
    infos = []
    for m in (small, big):
        with mlflow.start_run():
            infos.append(
                mlflow.sklearn.log_model(
                    m,
                    name="model",
                    registered_model_name=name,
                    # skops refuses tree internals unless the author vouches for them.
                    skops_trusted_types=["sklearn.tree._tree.Tree"],
                )
            )
    assert [str(i.registered_model_version) for i in infos] == ["1", "2"]
    client.set_registered_model_alias(name, "champion", "1")
    first = mlflow.pyfunc.load_model(f"models:/{name}@champion").predict(X)
    np.testing.assert_array_equal(first, small.predict(X))
    client.set_registered_model_alias(name, "champion", "2")
    second = mlflow.pyfunc.load_model(f"models:/{name}@champion").predict(X)
    np.testing.assert_array_equal(second, big.predict(X))
    assert client.get_model_version_by_alias(name, "champion").version == "2"
    latest = {mv.version for mv in client.get_latest_versions(name)}
    assert latest == {"2"}


def test_onnx_model_round_trips_with_onnxruntime(client: MlflowClient, fluent_experiment, iris):
    import onnxruntime
    from skl2onnx import to_onnx

    X, y = iris
    Xf = X.to_numpy(dtype=np.float32)
    model = LogisticRegression(max_iter=500).fit(Xf, y)
    onx = to_onnx(model, Xf[:1], options={"zipmap": False}, target_opset=17)
    name = unique_name("iris-onnx")
    with mlflow.start_run():
        info = mlflow.onnx.log_model(onx, name="onnx", registered_model_name=name)
    client.set_registered_model_alias(name, "champion", str(info.registered_model_version))

    session = onnxruntime.InferenceSession(onx.SerializeToString(), providers=["CPUExecutionProvider"])
    input_name = session.get_inputs()[0].name
    names = [o.name for o in session.get_outputs()]
    want = dict(zip(names, session.run(None, {input_name: Xf})))
    np.testing.assert_array_equal(want[names[0]], model.predict(Xf))

    for uri in (f"models:/{name}@champion", f"models:/{name}/1", f"models:/{info.model_id}"):
        got = mlflow.pyfunc.load_model(uri).predict({input_name: Xf})
        assert set(got) == set(want), (uri, list(got))
        for key, value in want.items():
            np.testing.assert_allclose(np.asarray(got[key]), value, rtol=0, atol=1e-5, err_msg=f"{uri} {key}")
    onnx_model = mlflow.onnx.load_model(f"models:/{name}@champion")
    assert onnx_model.SerializeToString() == onx.SerializeToString()
