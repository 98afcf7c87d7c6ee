"""Models stored in an object store, outside the tracking server's artifact proxy: a
direct `s3://` model URI, and a registered version whose source is an `s3://` directory.
The store is moto's S3 server on loopback, started here; the server reads it with the
standard AWS environment variables, as the `mlflow` client would."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import boto3
import mlflow
import mlflow.onnx
import numpy as np
import pytest
import requests
from mlflow import MlflowClient

import serving_models as sm
from serving_util import assert_close, poll_until, stop_process, unique

BUCKET = "cairn-models"
AWS_ENV = {
    "AWS_ALLOW_HTTP": "true",
    "AWS_REGION": "us-east-1",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_ACCESS_KEY_ID": "cairn-test",
    "AWS_SECRET_ACCESS_KEY": "cairn-test",
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    """moto's S3 on a free port, with one bucket; AWS_* set for the servers started here."""
    port = free_port()
    moto = Path(sys.executable).parent / "moto_server"
    log = tmp_path_factory.mktemp("moto") / "moto.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [str(moto), "-H", "127.0.0.1", "-p", str(port)],
            stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )
    endpoint = f"http://127.0.0.1:{port}"
    saved = {k: os.environ.get(k) for k in [*AWS_ENV, "AWS_ENDPOINT"]}
    os.environ.update(AWS_ENV, AWS_ENDPOINT=endpoint)
    try:
        client = boto3.client("s3", endpoint_url=endpoint)
        poll_until(lambda: client.create_bucket(Bucket=BUCKET), timeout=30, what="moto S3")
        yield client
    finally:
        stop_process(proc)
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def upload_model(client, workdir: Path, key: str) -> sm.ModelCase:
    """Saves the iris ONNX model as an MLflow model directory and uploads it under `key`."""
    onx, X = sm.iris_classifier()
    local = workdir / key.replace("/", "_")
    mlflow.onnx.save_model(onx, str(local), pip_requirements=sm.ONNX_REQUIREMENTS)
    for f in local.rglob("*"):
        if f.is_file():
            client.upload_file(str(f), BUCKET, f"{key}/{f.relative_to(local).as_posix()}")
    uri = f"s3://{BUCKET}/{key}"
    return sm.ModelCase(name=key, version="1", uri=uri, onnx_bytes=onx.SerializeToString(), X=X)


def check_predictions(url: str, case: sm.ModelCase) -> None:
    X = case.X[:4]
    body = {"inputs": [{"name": "input", "shape": list(X.shape), "datatype": "FP32",
                        "data": X.ravel().tolist()}]}
    r = requests.post(f"{url}/v2/models/m/infer", json=body, timeout=30)
    assert r.status_code == 200, r.text
    out = {o["name"]: np.array(o["data"]).reshape(o["shape"]) for o in r.json()["outputs"]}
    want = case.predict(X)
    for name in want:
        assert_close(out[name], want[name], what=name)


def test_a_direct_s3_model_uri(serve, s3, tmp_path):
    case = upload_model(s3, tmp_path, "direct/iris")
    served = serve({"m": case.uri}, tracking_uri=None)
    check_predictions(served.url, case)
    cache = Path(served.cmd[served.cmd.index("--cache-dir") + 1])
    cached = list(cache.iterdir())
    assert any((d / "MLmodel").exists() for d in cached), cached


def test_a_registered_version_stored_in_s3(serve, s3, tmp_path, tracking_uri):
    case = upload_model(s3, tmp_path, "registry/iris")
    name = unique("s3-sourced")
    client = MlflowClient()
    client.create_registered_model(name)
    mv = client.create_model_version(name, source=case.uri)
    served = serve({"m": f"models:/{name}/{mv.version}"})
    check_predictions(served.url, case)
    meta = requests.get(f"{served.url}/v2/models/m", timeout=10).json()
    assert meta["versions"] == [str(mv.version)]


def test_a_missing_s3_model_is_not_ready_and_says_why(serve, s3):
    served = serve({"m": f"s3://{BUCKET}/nothing/here"}, "--poll-interval", "1s",
                   tracking_uri=None, wait_ready=False)

    error = served.load_error()
    assert f"s3://{BUCKET}/nothing/here" in error and "no files" in error, error
