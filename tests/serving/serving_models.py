"""Models for the serving suite: trained on scikit-learn's bundled data sets, converted to
ONNX with skl2onnx, logged and registered with the real `mlflow` client; plus ONNX files
that ship inside installed packages and a tiny hand-built INT64 graph."""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path

import mlflow
import numpy as np
import onnx
import onnxruntime as ort
from mlflow import MlflowClient
from mlflow.models import infer_signature
from onnx import TensorProto, helper
from skl2onnx import convert_sklearn
from skl2onnx.common.data_types import DoubleTensorType, FloatTensorType
from sklearn.datasets import load_breast_cancer, load_diabetes, load_iris
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LinearRegression, LogisticRegression


@dataclass
class ModelCase:
    """A model the suite serves, with what is needed to predict it in-process."""

    name: str  # registered model name (or a label for local models)
    version: str  # registered version ("1" for models outside the registry)
    uri: str  # URI given to `cairn serve`
    onnx_bytes: bytes
    X: np.ndarray  # sample rows of the right dtype
    model_id: str | None = None
    run_id: str | None = None
    _session: ort.InferenceSession | None = field(default=None, repr=False)

    @property
    def session(self) -> ort.InferenceSession:
        if self._session is None:
            self._session = ort.InferenceSession(
                self.onnx_bytes, providers=["CPUExecutionProvider"]
            )
        return self._session

    @property
    def input_name(self) -> str:
        return self.session.get_inputs()[0].name

    @property
    def output_names(self) -> list[str]:
        return [o.name for o in self.session.get_outputs()]

    def predict(self, X: np.ndarray) -> dict[str, np.ndarray]:
        """onnxruntime in this process, on the same ONNX graph the server loads."""
        outs = self.session.run(None, {self.input_name: X})
        return dict(zip(self.output_names, outs))


# ---------------------------------------------------------------------------------------
# ONNX graphs


def _classifier_onnx(clf, n_features: int) -> onnx.ModelProto:
    return convert_sklearn(
        clf,
        initial_types=[("input", FloatTensorType([None, n_features]))],
        options={id(clf): {"zipmap": False}},
        target_opset={"": 17, "ai.onnx.ml": 3},
    )


def iris_classifier() -> tuple[onnx.ModelProto, np.ndarray]:
    """LogisticRegression on iris: FP32 [-1, 4] in; label INT64 [-1], probabilities FP32 [-1, 3]."""
    X, y = load_iris(return_X_y=True)
    clf = LogisticRegression(max_iter=1000).fit(X, y)
    return _classifier_onnx(clf, X.shape[1]), X.astype(np.float32)


def iris_classifier_relabelled() -> tuple[onnx.ModelProto, np.ndarray]:
    """Same inputs as `iris_classifier`, trained on permuted labels: predicts differently."""
    X, y = load_iris(return_X_y=True)
    clf = LogisticRegression(max_iter=1000).fit(X, (y + 1) % 3)
    return _classifier_onnx(clf, X.shape[1]), X.astype(np.float32)


def diabetes_regressor(scale: float = 1.0) -> tuple[onnx.ModelProto, np.ndarray]:
    """LinearRegression on diabetes (FP32 [-1, 10] in, FP32 [-1, 1] out); `scale` multiplies
    the target so versions differ."""
    X, y = load_diabetes(return_X_y=True)
    reg = LinearRegression().fit(X, y * scale)
    onx = convert_sklearn(
        reg,
        initial_types=[("input", FloatTensorType([None, X.shape[1]]))],
        target_opset={"": 17, "ai.onnx.ml": 3},
    )
    return onx, X.astype(np.float32)


def diabetes_double() -> tuple[onnx.ModelProto, np.ndarray]:
    """LinearRegression taking and returning float64 (FP64 end to end)."""
    X, y = load_diabetes(return_X_y=True)
    reg = LinearRegression().fit(X, y)
    onx = convert_sklearn(
        reg,
        initial_types=[("input", DoubleTensorType([None, X.shape[1]]))],
        target_opset={"": 17, "ai.onnx.ml": 3},
    )
    return onx, X.astype(np.float64)


def breast_cancer_forest(n_estimators: int = 50, seed: int = 0) -> tuple[onnx.ModelProto, np.ndarray]:
    """RandomForestClassifier on breast_cancer: FP32 [-1, 30] in; a deliberately heavy model
    with many trees is slow enough per row for queueing tests."""
    X, y = load_breast_cancer(return_X_y=True)
    clf = RandomForestClassifier(n_estimators=n_estimators, random_state=seed, n_jobs=1).fit(X, y)
    return _classifier_onnx(clf, X.shape[1]), X.astype(np.float32)


def int64_affine() -> tuple[onnx.ModelProto, np.ndarray]:
    """A hand-built graph y = 3 * x - 7 on INT64 [-1, 3] (INT64 in and out)."""
    x = helper.make_tensor_value_info("x", TensorProto.INT64, ["batch", 3])
    y = helper.make_tensor_value_info("y", TensorProto.INT64, ["batch", 3])
    three = helper.make_tensor("three", TensorProto.INT64, [], [3])
    seven = helper.make_tensor("seven", TensorProto.INT64, [], [7])
    graph = helper.make_graph(
        [
            helper.make_node("Mul", ["x", "three"], ["x3"]),
            helper.make_node("Sub", ["x3", "seven"], ["y"]),
        ],
        "int64_affine",
        [x],
        [y],
        initializer=[three, seven],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    rng = np.random.default_rng(7)
    return model, rng.integers(-(2**40), 2**40, size=(8, 3), dtype=np.int64)


@functools.cache
def packaged_onnx_file() -> Path:
    """`sigmoid.onnx`, shipped with the onnxruntime wheel: FP32 x [3, 4, 5] -> y [3, 4, 5]
    (fixed shape, rank 3)."""
    import onnxruntime.datasets

    path = Path(onnxruntime.datasets.get_example("sigmoid.onnx"))
    if not path.is_file():
        raise FileNotFoundError(path)
    return path


def packaged_sigmoid() -> tuple[onnx.ModelProto, np.ndarray]:
    model = onnx.load(str(packaged_onnx_file()))
    rng = np.random.default_rng(3)
    return model, rng.normal(size=(3, 4, 5)).astype(np.float32)


# ---------------------------------------------------------------------------------------
# Logging and registering


# Explicit requirements: letting MLflow infer them loads the model in a subprocess, which
# costs seconds per model and tells the server nothing.
ONNX_REQUIREMENTS = ["onnx", "onnxruntime"]


def _outputs_for_signature(onx: onnx.ModelProto, X: np.ndarray) -> dict[str, np.ndarray]:
    sess = ort.InferenceSession(onx.SerializeToString(), providers=["CPUExecutionProvider"])
    outs = sess.run(None, {sess.get_inputs()[0].name: X})
    return {o.name: v for o, v in zip(sess.get_outputs(), outs)}


def log_onnx(
    onx: onnx.ModelProto,
    X: np.ndarray,
    registered_name: str,
    *,
    signature: bool = True,
    input_example: bool = True,
) -> ModelCase:
    """Logs `onx` with `mlflow.onnx.log_model` in a new run and registers it."""
    sig = infer_signature(X, _outputs_for_signature(onx, X)) if signature else None
    with mlflow.start_run() as run:
        info = mlflow.onnx.log_model(
            onx,
            name="model",
            registered_model_name=registered_name,
            signature=sig,
            input_example=X[:2] if input_example else None,
            pip_requirements=ONNX_REQUIREMENTS,
        )
    version = str(info.registered_model_version)
    return ModelCase(
        name=registered_name,
        version=version,
        uri=f"models:/{registered_name}/{version}",
        onnx_bytes=onx.SerializeToString(),
        X=X,
        model_id=getattr(info, "model_id", None),
        run_id=run.info.run_id,
    )


def register_unservable_version(registered_name: str, workdir: Path) -> str:
    """Registers a new version whose MLmodel has only a flavor no engine of `cairn serve`
    runs (keras, without python_function). Returns its version."""
    local = workdir / "keras-only-model"
    local.mkdir(parents=True)
    (local / "MLmodel").write_text("artifact_path: model\nflavors:\n  keras:\n    keras_version: 3.0.0\n")
    (local / "model.keras").write_bytes(b"not used")
    with mlflow.start_run() as run:
        mlflow.log_artifacts(str(local), "model")
    mv = MlflowClient().create_model_version(
        registered_name, source=f"{run.info.artifact_uri}/model", run_id=run.info.run_id
    )
    return str(mv.version)


def register_corrupt_onnx_version(registered_name: str, workdir: Path) -> str:
    """Registers a new version whose MLmodel names an onnx flavor but whose model.onnx is
    garbage. Returns its version."""
    onx, X = diabetes_regressor()
    local = workdir / "corrupt-model"
    mlflow.onnx.save_model(onx, str(local), pip_requirements=ONNX_REQUIREMENTS)
    (local / "model.onnx").write_bytes(b"this is not an ONNX protobuf" * 10)
    client = MlflowClient()
    with mlflow.start_run() as run:
        mlflow.log_artifacts(str(local), "model")
    mv = client.create_model_version(
        registered_name, source=f"{run.info.artifact_uri}/model", run_id=run.info.run_id
    )
    return str(mv.version)


def set_alias(name: str, alias: str, version: str) -> None:
    MlflowClient().set_registered_model_alias(name, alias, version)
