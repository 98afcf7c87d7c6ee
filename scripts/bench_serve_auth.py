#!/usr/bin/env python3
"""Authentication overhead of `cairn serve --auth tracking`: the same inference request
against two `cairn serve` processes serving the same registered model, one without and
one with `--auth tracking`, one load generator (`cairn-load`, closed loop, keep-alive),
interleaved runs, medians. Requests to the authenticated one come from a
non-administrator with a READ grant on the registered model (HTTP Basic, or a personal
access token), so each pays for the credential digest and the cached answer of the
tracking server (`--auth-cache-ttl`, default 10s: a long run also re-asks the tracking
server every 10 s).

Usage (after `cargo build --release -p cairn -p cairn-bench`):
    .venv/bin/python scripts/bench_serve_auth.py [--duration 3s] [--repeats 5] [--out docs/serve-auth-benchmarks.md]
"""

from __future__ import annotations

import argparse
import base64
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_serving as bs  # noqa: E402  (model and request bodies)
from bench_auth import ratio_table  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
ADMIN_PASSWORD = "bench-admin-password-1"
USER, USER_PASSWORD = "reader", "reader-password-1"
MODEL = "bench-iris"


def wait_http(url: str, proc: subprocess.Popen, log: Path, what: str) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{what} exited: {log.read_text()[-2000:]}")
        try:
            if requests.get(url, timeout=1).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.1)
    raise SystemExit(f"{what} not ready: {log.read_text()[-2000:]}")


def spawn(tmp: Path, name: str, args: list[str], env: dict[str, str]) -> subprocess.Popen:
    log = tmp / f"{name}.log"
    return subprocess.Popen(args, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT,
                            start_new_session=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--duration", default="3s")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--out", default=str(REPO / "docs/serve-auth-benchmarks.md"))
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="cairn-bench-serve-auth-"))
    cairn = str(REPO / "target/release/cairn")
    base_env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_TRACKING_")}
    base_env.update(NO_COLOR="1", CAIRN_LOG="warn")
    procs: list[subprocess.Popen] = []
    try:
        port = bs.free_port()
        tracking = f"http://127.0.0.1:{port}"
        procs.append(spawn(tmp, "tracking", [cairn, "server", "--port", str(port), "--auth",
                                             "--data-dir", str(tmp / "data")],
                           dict(base_env, CAIRN_ADMIN_PASSWORD=ADMIN_PASSWORD)))
        wait_http(f"{tracking}/health", procs[-1], tmp / "tracking.log", "cairn server")
        admin = ("admin", ADMIN_PASSWORD)
        api = f"{tracking}/api/2.0/mlflow"

        # Register the model with the real mlflow client, as the administrator.
        os.environ.update(MLFLOW_TRACKING_URI=tracking, MLFLOW_TRACKING_USERNAME="admin",
                          MLFLOW_TRACKING_PASSWORD=ADMIN_PASSWORD)
        import mlflow

        model_dir = bs.make_model(tmp)
        with mlflow.start_run() as run:
            mlflow.log_artifacts(str(model_dir), "model")
        mlflow.register_model(f"runs:/{run.info.run_id}/model", MODEL)

        requests.post(f"{api}/users/create", json={"username": USER, "password": USER_PASSWORD},
                      auth=admin, timeout=10).raise_for_status()
        requests.post(f"{api}/registered-models/permissions/create", auth=admin, timeout=10,
                      json={"name": MODEL, "username": USER, "permission": "READ"}).raise_for_status()
        t = requests.post(f"{api}/users/access-tokens/create", json={"name": "bench"},
                          auth=(USER, USER_PASSWORD), timeout=10)
        t.raise_for_status()
        basic = "Authorization: Basic " + base64.b64encode(f"{USER}:{USER_PASSWORD}".encode()).decode()
        bearer = f"Authorization: Bearer {t.json()['token']}"

        serve_env = dict(base_env, MLFLOW_TRACKING_USERNAME="admin", MLFLOW_TRACKING_PASSWORD=ADMIN_PASSWORD)
        urls = {}
        for label, extra in (("plain", []), ("auth", ["--auth", "tracking"])):
            p = bs.free_port()
            procs.append(spawn(tmp, label, [cairn, "serve", "--tracking-uri", tracking,
                                            "--model", f"m=models:/{MODEL}/1", "--port", str(p), "--no-grpc",
                                            "--cache-dir", str(tmp / f"cache-{label}"), *extra], serve_env))
            urls[label] = f"http://127.0.0.1:{p}"
            wait_http(f"{urls[label]}/v2/health/ready", procs[-1], tmp / f"{label}.log", f"cairn serve ({label})")

        bodies = bs.write_bodies(tmp)
        scenarios = [
            ("OIP JSON, 1 row", "/v2/models/m/infer", "oip_json_1", basic),
            ("OIP JSON, 1 row (token)", "/v2/models/m/infer", "oip_json_1", bearer),
            ("/invocations, 1 row", "/invocations", "invocations_1", basic),
        ]
        rows = []
        for name, path, body, creds in scenarios:
            for conc in (1, 8):
                runs: dict[str, list[dict]] = {"plain": [], "auth": []}
                for _ in range(args.repeats):  # interleaved: the machine's noise hits both
                    for label in ("plain", "auth"):
                        file, headers = bodies[body]
                        if label == "auth":
                            headers = [*headers, creds]
                        runs[label].append(bs.load_once(urls[label] + path, (file, headers), conc,
                                                        args.duration, "1s"))
                med = {k: {"p50_us": statistics.median(r["p50_us"] for r in v),
                           "rps": statistics.median(r["rps"] for r in v)} for k, v in runs.items()}
                rows.append((name, conc, med))
    finally:
        for p in procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
        shutil.rmtree(tmp, ignore_errors=True)

    lines = [
        "# `cairn serve --auth tracking` overhead",
        "",
        f"Produced by `.venv/bin/python scripts/bench_serve_auth.py` ({args.repeats} interleaved runs of "
        f"{args.duration} each, medians; {os.cpu_count()} CPUs shared by the tracking server, both inference "
        f"servers and the load generator; Python {platform.python_version()}). Both inference servers are the "
        "same release binary serving the same registered ONNX model (iris LogisticRegression) on onnxruntime; "
        "one runs with `--auth tracking`, and every request to it comes from a non-administrator with READ on "
        "the registered model (HTTP Basic or a personal access token). The answer of the tracking server is "
        "cached for `--auth-cache-ttl` (10 s), so the steady state measured here is one SHA-256 of the header "
        "and one map lookup per request, plus a call to the tracking server every 10 s per credential.",
        "",
        *ratio_table(rows),
        "",
    ]
    Path(args.out).write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
