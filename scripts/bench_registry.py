#!/usr/bin/env python3
"""Model-registry benchmark: search over 10,000 model versions, Cairn vs stock MLflow.

Usage: .venv/bin/python scripts/bench_registry.py [--models 100] [--versions 100]
                                                  [--requests 50] [--cairn-only] [--no-docs]

Both servers run on a fresh SQLite database in a temp dir (`cairn server` from the
release build, `mlflow server` from the same venv as this script, mlflow==3.17.2, 4
uvicorn workers). Each is loaded with the same registry through the REST API (8 client
threads): --models registered models with --versions versions each, every version with a
run id and tags, then the same searches are timed with the same client (`requests`, sequential GET
requests as the mlflow client sends them, a new connection each: on a kept-alive
connection stock MLflow pays ~40 ms of Nagle/delayed-ACK per request on this machine). Medians and the Cairn/MLflow ratio are printed
and written to docs/registry-benchmarks.md unless --no-docs.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "registry-benchmarks.md"
API = "/api/2.0/mlflow"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(kind: str, tmp: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    if kind == "cairn":
        target = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
        cmd = [
            str(target / "release" / "cairn"), "server", "--port", str(port),
            "--data-dir", str(tmp / "cairn"),
        ]
        env = {**os.environ, "CAIRN_LOG": "warn"}
    else:
        mlflow = shutil.which("mlflow", path=str(Path(sys.executable).parent)) or "mlflow"
        cmd = [
            mlflow, "server", "--backend-store-uri", f"sqlite:///{tmp}/mlflow.db",
            "--default-artifact-root", str(tmp / "mlartifacts"), "--host", "127.0.0.1",
            "--port", str(port), "--workers", "4",
        ]
        env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"}
    log = open(tmp / f"{kind}.log", "wb")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env,
                            start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if requests.get(f"{url}/health", timeout=2).status_code == 200:
                return proc, url
        except requests.RequestException:
            time.sleep(0.2)
    stop(proc)
    raise SystemExit(f"{kind} did not become healthy; see {tmp / f'{kind}.log'}")


def stop(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def post(session: requests.Session, url: str, path: str, body: dict, retries: int = 0) -> dict:
    for attempt in range(retries + 1):
        r = session.post(f"{url}{API}/{path}", json=body, timeout=120)
        if r.status_code == 200:
            return r.json()
        # Loading only: stock MLflow on SQLite answers concurrent writers with 500
        # "database is locked" (the write was rolled back, so a retry is safe).
        if r.status_code >= 500 and attempt < retries:
            time.sleep(0.05 * (attempt + 1))
            continue
        raise SystemExit(f"POST {path}: {r.status_code} {r.text[:500]}")
    raise AssertionError("unreachable")


def get(session: requests.Session, url: str, path: str, params: dict) -> dict:
    r = session.get(f"{url}{API}/{path}", params=params, timeout=120)
    if r.status_code != 200:
        raise SystemExit(f"GET {path}: {r.status_code} {r.text[:500]}")
    return r.json()


def populate(url: str, models: int, versions: int) -> float:
    """Creates the registry; returns seconds taken."""
    start_t = time.perf_counter()
    boot = requests.Session()
    exp = post(boot, url, "experiments/create", {"name": f"bench-{uuid.uuid4().hex}"})["experiment_id"]
    run_ids = [
        post(boot, url, "runs/create", {"experiment_id": exp, "start_time": 0})["run"]["info"]["run_id"]
        for _ in range(versions)
    ]
    local = __import__("threading").local()

    def one_model(m: int) -> None:
        s = getattr(local, "s", None) or requests.Session()
        local.s = s
        name = f"model-{m:04d}"
        post(s, url, "registered-models/create",
             {"name": name, "tags": [{"key": "team", "value": f"t{m % 10}"}]}, retries=20)
        for v in range(versions):
            post(s, url, "model-versions/create", {
                "name": name,
                "source": f"runs:/{run_ids[v]}/model",
                "run_id": run_ids[v],
                "tags": [{"key": "stage", "value": "prod" if v % 10 == 0 else "dev"}],
            }, retries=20)

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(one_model, range(models)))
    return time.perf_counter() - start_t


def workloads(models: int, versions: int, run_id: str) -> list[tuple[str, str, dict]]:
    mid = f"model-{models // 2:04d}"
    prompt = " AND tag.`mlflow.prompt.is_prompt` != 'true'"
    return [
        (f"search versions: name = one model ({versions} hits)",
         "model-versions/search", {"filter": f"name = '{mid}'", "max_results": 1000}),
        (f"search versions: run_id = one run ({models} hits)",
         "model-versions/search", {"filter": f"run_id = '{run_id}'", "max_results": 1000}),
        ("search versions: tags.stage = 'prod', order_by version_number DESC, 100 rows",
         "model-versions/search", {"filter": "tags.stage = 'prod'",
                                   "order_by": "version_number DESC", "max_results": 100}),
        ("search versions: no filter, 100 rows",
         "model-versions/search", {"max_results": 100}),
        ("search registered models: name LIKE + client's prompt clause, 100 rows",
         "registered-models/search", {"filter": "name LIKE 'model-00%'" + prompt,
                                      "max_results": 100}),
        ("get-latest-versions of one model",
         "registered-models/get-latest-versions", {"name": mid}),
    ]


def measure(url: str, work: list[tuple[str, str, dict]], n: int) -> dict[str, tuple[float, int]]:
    out = {}
    for label, path, body in work:
        get(requests.Session(), url, path, body)  # warm-up
        times, hits = [], 0
        for _ in range(n):
            # A new connection per request: on a kept-alive connection stock MLflow pays
            # ~40 ms of Nagle/delayed-ACK per request here, which would swamp the query.
            s = requests.Session()
            t = time.perf_counter()
            r = get(s, url, path, body)
            times.append(time.perf_counter() - t)
            hits = len(r.get("model_versions", r.get("registered_models", [])))
        out[label] = (statistics.median(times), hits)
    return out


def fmt_ms(s: float) -> str:
    return f"{s * 1000:.2f} ms" if s < 1 else f"{s:.2f} s"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", type=int, default=100)
    ap.add_argument("--versions", type=int, default=100)
    ap.add_argument("--requests", type=int, default=50)
    ap.add_argument("--cairn-only", action="store_true")
    ap.add_argument("--no-docs", action="store_true")
    args = ap.parse_args()
    subprocess.run(["cargo", "build", "--release", "-p", "cairn", "--bin", "cairn"], cwd=ROOT, check=True)
    kinds = ["cairn"] if args.cairn_only else ["cairn", "mlflow"]
    results, loads = {}, {}
    for kind in kinds:
        with tempfile.TemporaryDirectory(prefix=f"registry-bench-{kind}-") as tmp:
            proc, url = start(kind, Path(tmp))
            try:
                print(f"{kind}: loading {args.models} x {args.versions} versions ...", flush=True)
                loads[kind] = populate(url, args.models, args.versions)
                some_run = get(requests.Session(), url, "model-versions/search",
                               {"max_results": 1})["model_versions"][0]["run_id"]
                results[kind] = measure(url, workloads(args.models, args.versions, some_run), args.requests)
            finally:
                stop(proc)
        print(f"{kind}: loaded in {loads[kind]:.0f} s")
        for label, (t, hits) in results[kind].items():
            print(f"  {label}: {fmt_ms(t)} ({hits} rows)")
    total = args.models * args.versions
    lines = [
        "| workload | Cairn | MLflow | speed-up | same row count |",
        "|---|---|---|---|---|",
    ]
    for label, (t, hits) in results["cairn"].items():
        if "mlflow" in results:
            mt, mh = results["mlflow"][label]
            lines.append(f"| {label} | {fmt_ms(t)} | {fmt_ms(mt)} | {mt / t:.1f}× | {'yes' if mh == hits else f'no ({hits} vs {mh})'} |")
        else:
            lines.append(f"| {label} | {fmt_ms(t)} | | | |")
    load_line = ", ".join(f"{k}: {v:.0f} s ({total / v:.0f} versions/s)" for k, v in loads.items())
    print("\n".join(lines))
    if args.no_docs:
        return 0
    commit = subprocess.run(["git", "rev-parse", "--short=10", "HEAD"], cwd=ROOT,
                            capture_output=True, text=True).stdout.strip()
    import mlflow  # the version that ran

    cpu = next((l.split(":", 1)[1].strip() for l in Path("/proc/cpuinfo").read_text().splitlines()
                if l.startswith("model name")), "unknown CPU")
    DOC.write_text(
        "# Model-registry benchmark\n\n"
        "Produced by `.venv/bin/python scripts/bench_registry.py`; do not edit by hand.\n\n"
        f"- **Machine**: {cpu}, {os.cpu_count()} cores; {platform.platform()}. Shared with "
        "other work, so single figures are noisy.\n"
        f"- **Measured**: {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC; Cairn `{commit}` (release "
        f"build) vs MLflow {mlflow.__version__} (`mlflow server`, 4 uvicorn workers), both on a fresh "
        "SQLite database.\n"
        f"- **Data**: {args.models} registered models × {args.versions} versions = {total:,} versions, "
        "each with a run id and a tag; loaded through the REST API by 8 threads "
        f"({load_line}).\n"
        f"- **Timing**: median of {args.requests} sequential GET requests after one warm-up, "
        "the same Python `requests` client for both servers, a new connection per request "
        "(on a kept-alive connection stock MLflow pays ~40 ms of Nagle/delayed-ACK per "
        "request here, which would swamp the queries). Python's client adds about 1 ms to "
        "every figure.\n\n"
        + "\n".join(lines) + "\n"
    )
    print(f"wrote {DOC.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
