"""Artifacts through the real client: log_artifact(s), log_text, log_dict, list, download,
delete, and the server's digest and path-safety guarantees.

``scripts/test.sh`` runs this module against local disk (the SQLite session) and against
an S3-compatible server (the PostgreSQL session), with the same tests."""

from __future__ import annotations

import base64
import filecmp
import hashlib
import os
import subprocess
from pathlib import Path

import mlflow
import pytest
import requests
import yaml
from mlflow.exceptions import MlflowException
from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

ARTIFACTS = "/api/2.0/mlflow-artifacts/artifacts"


def _tree(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def _payload(n: int, seed: int = 7) -> bytes:
    """Deterministic bytes that do not compress."""
    out = bytearray()
    block = hashlib.sha256(str(seed).encode()).digest()
    while len(out) < n:
        block = hashlib.sha256(block).digest()
        out += block
    return bytes(out[:n])


@pytest.fixture
def run(client, experiment_id):
    r = client.create_run(experiment_id)
    yield r
    client.set_terminated(r.info.run_id)


def _store_path(run) -> str:
    """The run's artifact root inside the proxied store (``<exp>/<run>/artifacts``)."""
    uri = run.info.artifact_uri
    assert uri.startswith("mlflow-artifacts:/"), uri
    return uri[len("mlflow-artifacts:") :].lstrip("/")


def test_log_artifact_and_download_round_trip(client, run, tmp_path):
    src = tmp_path / "weights.bin"
    # Past the 8 MiB upload buffer: on S3 this goes up as a multipart upload.
    src.write_bytes(_payload(20 * 1024 * 1024 + 11))
    client.log_artifact(run.info.run_id, str(src))
    client.log_artifact(run.info.run_id, str(src), artifact_path="nested/dir")

    top = client.list_artifacts(run.info.run_id)
    assert [(f.path, f.is_dir) for f in top] == [("nested", True), ("weights.bin", False)]
    assert top[1].file_size == src.stat().st_size
    inner = client.list_artifacts(run.info.run_id, "nested/dir")
    assert [(f.path, f.file_size) for f in inner] == [("nested/dir/weights.bin", src.stat().st_size)]

    out = tmp_path / "out"
    out.mkdir()
    local = client.download_artifacts(run.info.run_id, "weights.bin", str(out))
    assert filecmp.cmp(local, src, shallow=False)
    whole = tmp_path / "whole"
    whole.mkdir()
    client.download_artifacts(run.info.run_id, "", str(whole))
    assert _tree(whole) == {
        "weights.bin": src.read_bytes(),
        "nested/dir/weights.bin": src.read_bytes(),
    }


def test_log_artifacts_nested_directories(client, run, tmp_path):
    src = tmp_path / "src"
    files = {
        "a.txt": b"alpha",
        "sub/b.json": b'{"b": 1}',
        "sub/deeper/c.csv": b"1,2,3\n",
        "sub/deeper/spaces and ünïcode ✓.txt": "ünïcode".encode(),
        "empty.bin": b"",
    }
    for rel, data in files.items():
        p = src / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    client.log_artifacts(run.info.run_id, str(src), artifact_path="bundle")

    listed = client.list_artifacts(run.info.run_id, "bundle/sub")
    assert [(f.path, f.is_dir) for f in listed] == [
        ("bundle/sub/b.json", False),
        ("bundle/sub/deeper", True),
    ]
    dest = tmp_path / "dest"
    dest.mkdir()
    client.download_artifacts(run.info.run_id, "bundle", str(dest))
    assert _tree(dest / "bundle") == files


def test_log_text_and_log_dict_load_back(tracking_uri, fluent_experiment):
    with mlflow.start_run() as active:
        mlflow.log_text("hello, artifacts\n", "notes/readme.txt")
        mlflow.log_dict({"lr": 0.1, "layers": [1, 2]}, "config/params.json")
        mlflow.log_dict({"name": "x", "values": [1, 2]}, "config/params.yaml")
        root = active.info.artifact_uri
    assert mlflow.artifacts.load_text(f"{root}/notes/readme.txt") == "hello, artifacts\n"
    assert mlflow.artifacts.load_dict(f"{root}/config/params.json") == {"lr": 0.1, "layers": [1, 2]}
    # load_dict reads JSON only (as in MLflow); YAML comes back as text.
    assert yaml.safe_load(mlflow.artifacts.load_text(f"{root}/config/params.yaml")) == {
        "name": "x",
        "values": [1, 2],
    }
    names = [f.path for f in mlflow.artifacts.list_artifacts(run_id=active.info.run_id, artifact_path="config")]
    assert names == ["config/params.json", "config/params.yaml"]


def test_tracking_api_lists_run_artifacts(client, run, base_url, tmp_path):
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "MLmodel").write_text("flavors: {}\n")
    (tmp_path / "metrics.csv").write_text("1,2\n")
    client.log_artifacts(run.info.run_id, str(tmp_path / "m"), "model")
    client.log_artifact(run.info.run_id, str(tmp_path / "metrics.csv"))
    resp = requests.get(
        f"{base_url}/api/2.0/mlflow/artifacts/list", params={"run_id": run.info.run_id}, timeout=60
    )
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["root_uri"] == run.info.artifact_uri
    assert sorted((f["path"], f["is_dir"]) for f in body["files"]) == [
        ("metrics.csv", False),
        ("model", True),
    ]
    sub = requests.get(
        f"{base_url}/api/2.0/mlflow/artifacts/list",
        params={"run_id": run.info.run_id, "path": "model"},
        timeout=60,
    ).json()
    assert sub["files"] == [{"path": "model/MLmodel", "is_dir": False, "file_size": 12}]


def test_delete_artifacts_through_the_repository(client, run, tmp_path):
    for rel in ["keep.txt", "drop/a.txt", "drop/sub/b.txt"]:
        p = tmp_path / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(rel)
    client.log_artifacts(run.info.run_id, str(tmp_path))
    repo = get_artifact_repository(run.info.artifact_uri)
    repo.delete_artifacts("drop")
    assert [f.path for f in client.list_artifacts(run.info.run_id)] == ["keep.txt"]
    repo.delete_artifacts("keep.txt")
    assert client.list_artifacts(run.info.run_id) == []


@pytest.mark.cairn_only
def test_uploads_record_a_sha256_served_with_downloads(client, run, base_url, tmp_path):
    data = _payload(1_000_003, seed=3)
    src = tmp_path / "blob.bin"
    src.write_bytes(data)
    client.log_artifact(run.info.run_id, str(src))
    url = f"{base_url}{ARTIFACTS}/{_store_path(run)}/blob.bin"
    resp = requests.get(url, timeout=60)
    assert resp.status_code == 200
    assert resp.content == data
    assert resp.headers["Content-Length"] == str(len(data))
    assert resp.headers["X-Content-Type-Options"] == "nosniff"
    digest = base64.b64encode(hashlib.sha256(data).digest()).decode()
    assert resp.headers["Repr-Digest"] == f"sha-256=:{digest}:"
    put = requests.put(url, data=b"replaced", timeout=60)
    assert put.json()["sha256"] == hashlib.sha256(b"replaced").hexdigest()


@pytest.mark.cairn_only
@pytest.mark.parametrize(
    "path",
    [
        "%2e%2e/%2e%2e/etc/passwd",
        "%252e%252e/%252e%252e/etc/passwd",
        "%2Fetc%2Fpasswd",
        "..%5C..%5Cwin.ini",
        "x%23/..%2F..%2Fsecret",
        "file:%2F%2F%2Fetc%2Fpasswd",
    ],
)
def test_traversal_is_refused(base_url, path):
    for method in ("GET", "PUT", "DELETE"):
        resp = requests.request(method, f"{base_url}{ARTIFACTS}/{path}", data=b"x", timeout=60)
        assert resp.status_code == 400, (method, path, resp.text)
        assert resp.json()["error_code"] == "INVALID_PARAMETER_VALUE"
    listing = requests.get(f"{base_url}{ARTIFACTS}", params={"path": "../.."}, timeout=60)
    assert listing.status_code == 400, listing.text


def test_download_of_missing_artifact_is_404(base_url, run):
    resp = requests.get(f"{base_url}{ARTIFACTS}/{_store_path(run)}/nope.txt", timeout=60)
    assert resp.status_code == 404
    assert resp.json()["error_code"] == "RESOURCE_DOES_NOT_EXIST"


def test_large_files_use_presigned_multipart_exactly_when_offered(
    client, run, base_url, tmp_path, monkeypatch
):
    """With presigned transfers on (S3 and --artifacts-presigned, the PostgreSQL session of
    scripts/test.sh) the client uploads parts and downloads ranges straight from the store;
    otherwise server-info says so, mpu/create answers 501 and the bytes are proxied."""
    from mlflow.store.artifact.mlflow_artifacts_repo import MlflowArtifactsRepository

    info = requests.get(f"{base_url}/api/3.0/mlflow/server-info", timeout=60).json()
    offered = info.get("multipart_uploads_enabled")
    assert info.get("multipart_downloads_enabled") == offered
    chunk = 5 * 1024 * 1024  # S3's smallest part
    for var in (
        "MLFLOW_MULTIPART_UPLOAD_MINIMUM_FILE_SIZE",
        "MLFLOW_MULTIPART_UPLOAD_CHUNK_SIZE",
        "MLFLOW_MULTIPART_DOWNLOAD_MINIMUM_FILE_SIZE",
        "MLFLOW_MULTIPART_DOWNLOAD_CHUNK_SIZE",
    ):
        monkeypatch.setenv(var, str(chunk))
    calls = {"create": 0, "presigned": 0}
    real_create = MlflowArtifactsRepository.create_multipart_upload
    real_presigned = MlflowArtifactsRepository._get_presigned_download_url

    def counting_create(self, *a, **kw):
        calls["create"] += 1
        return real_create(self, *a, **kw)

    def counting_presigned(self, *a, **kw):
        calls["presigned"] += 1
        return real_presigned(self, *a, **kw)

    monkeypatch.setattr(MlflowArtifactsRepository, "create_multipart_upload", counting_create)
    monkeypatch.setattr(MlflowArtifactsRepository, "_get_presigned_download_url", counting_presigned)

    data = _payload(2 * chunk + 12345, seed=11)
    src = tmp_path / "big.bin"
    src.write_bytes(data)
    client.log_artifact(run.info.run_id, str(src), artifact_path="weights")
    out = tmp_path / "out"
    out.mkdir()
    local = client.download_artifacts(run.info.run_id, "weights/big.bin", str(out))
    assert Path(local).read_bytes() == data
    # Either way the server knows the file's digest.
    proxied = requests.get(f"{base_url}{ARTIFACTS}/{_store_path(run)}/weights/big.bin", timeout=60)
    assert proxied.content == data
    digest = base64.b64encode(hashlib.sha256(data).digest()).decode()
    if target_is_cairn():
        assert proxied.headers["Repr-Digest"] == f"sha-256=:{digest}:"
    if offered:
        assert calls == {"create": 1, "presigned": 1}, calls
    else:
        assert calls == {"create": 0, "presigned": 0}, calls
        resp = requests.post(
            f"{base_url}/api/2.0/mlflow-artifacts/mpu/create/{_store_path(run)}",
            json={"path": str(src), "num_parts": 3},
            timeout=60,
        )
        assert resp.status_code == 501
        assert resp.json()["message"].startswith(
            "Multipart upload is not supported for the current artifact repository"
        )


def target_is_cairn() -> bool:
    return os.environ.get("CONFORMANCE_TARGET", "cairn").strip().lower() == "cairn"


def _gc(cmd: list[str], *args: str) -> str:
    done = subprocess.run(
        [*cmd, *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "CAIRN_LOG": "warn"},
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.cairn_only
def test_gc_removes_a_deleted_run_and_its_artifacts(client, experiment_id, base_url, tmp_path, gc_command):
    keep = client.create_run(experiment_id)
    drop = client.create_run(experiment_id)
    src = tmp_path / "weights.bin"
    src.write_bytes(_payload(100_000))
    for r in (keep, drop):
        client.log_artifact(r.info.run_id, str(src), artifact_path="model")
        client.log_metric(r.info.run_id, "loss", 0.5)
        client.set_terminated(r.info.run_id)
    client.delete_run(drop.info.run_id)
    drop_url = f"{base_url}{ARTIFACTS}/{_store_path(drop)}/model/weights.bin"

    dry = _gc(gc_command, "--dry-run", "--run-ids", drop.info.run_id)
    assert "Would purge 0 experiments, 1 runs, 0 logged models; 1 artifact files (100000 bytes)" in dry
    assert client.get_run(drop.info.run_id).info.lifecycle_stage == "deleted"
    assert requests.get(drop_url, timeout=60).status_code == 200

    done = _gc(gc_command, "--run-ids", drop.info.run_id)
    assert "Purged 0 experiments, 1 runs, 0 logged models; 1 artifact files (100000 bytes)" in done
    with pytest.raises(MlflowException) as e:
        client.get_run(drop.info.run_id)
    assert e.value.error_code == "RESOURCE_DOES_NOT_EXIST"
    assert requests.get(drop_url, timeout=60).status_code == 404
    # The other run is whole.
    assert client.get_run(keep.info.run_id).data.metrics == {"loss": 0.5}
    assert [f.path for f in client.list_artifacts(keep.info.run_id, "model")] == ["model/weights.bin"]
    # A live run is never collected, even when named.
    again = _gc(gc_command, "--run-ids", keep.info.run_id)
    assert "Purged 0 experiments, 0 runs" in again
