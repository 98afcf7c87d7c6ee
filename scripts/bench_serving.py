#!/usr/bin/env python3
"""Serving benchmark: `cairn serve` vs `mlflow models serve` vs in-process onnxruntime.

One run, one machine, one model (scikit-learn's iris LogisticRegression converted to ONNX
with skl2onnx), one load generator (`cairn-load`, a closed-loop Rust client) for both
servers. Measures: start time (spawn -> ready), resident memory, 1-row latency p50/p99 at
concurrency 1, req/s at concurrency 8 and 64, rows/s for 1000-row requests (JSON, and the
OIP binary extension for Cairn). In-process onnxruntime gives the ceiling.

Usage: scripts/bench_serving.py [--duration 3s] [--out docs/serving-benchmarks.md]
(run from the repo with the venv python: .venv/bin/python scripts/bench_serving.py).
"""

from __future__ import annotations

import argparse
import json
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
from pathlib import Path

import numpy as np
import requests

REPO = Path(__file__).resolve().parents[1]
VENV = Path(sys.prefix)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_model(root: Path) -> Path:
    import mlflow.onnx
    from mlflow.models import infer_signature
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    x, y = load_iris(return_X_y=True)
    x = x.astype(np.float32)
    clf = LogisticRegression(max_iter=500).fit(x, y)
    onx = convert_sklearn(
        clf,
        initial_types=[("input", FloatTensorType([None, 4]))],
        options={id(clf): {"zipmap": False}},
    )
    path = root / "iris_onnx"
    import onnxruntime as ort

    out = ort.InferenceSession(onx.SerializeToString()).run(None, {"input": x[:2]})
    mlflow.onnx.save_model(
        onx,
        str(path),
        input_example=x[:2],
        signature=infer_signature(x[:2], {"label": out[0], "probabilities": out[1]}),
    )
    return path


def rows(n: int) -> np.ndarray:
    rng = np.random.default_rng(7)
    return (rng.random((n, 4), dtype=np.float32) * 6).astype(np.float32)


def write_bodies(tmp: Path) -> dict[str, tuple[Path, list[str]]]:
    """Request bodies (file, headers) by scenario name."""
    json_h = ["Content-Type: application/json"]
    bodies: dict[str, tuple[Path, list[str]]] = {}

    def put(name: str, data: bytes, headers: list[str]) -> None:
        p = tmp / f"{name}.body"
        p.write_bytes(data)
        bodies[name] = (p, headers)

    for n in (1, 1000):
        x = rows(n)
        oip = {"inputs": [{"name": "input", "shape": [n, 4], "datatype": "FP32", "data": x.ravel().tolist()}]}
        put(f"oip_json_{n}", json.dumps(oip).encode(), json_h)
        put(f"invocations_{n}", json.dumps({"inputs": x.tolist()}).encode(), json_h)
        raw = x.tobytes()
        header = {
            "inputs": [
                {"name": "input", "shape": [n, 4], "datatype": "FP32", "parameters": {"binary_data_size": len(raw)}}
            ],
            "parameters": {"binary_data_output": True},
        }
        hj = json.dumps(header).encode()
        put(
            f"oip_binary_{n}",
            hj + raw,
            ["Content-Type: application/octet-stream", f"Inference-Header-Content-Length: {len(hj)}"],
        )
    return bodies


REPEATS = 3


def load(url: str, body: tuple[Path, list[str]] | None, concurrency: int, duration: str, warmup: str) -> dict:
    """Closed-loop load, REPEATS times; each figure is the median over the repeats (this
    machine is noisy). POSTs `body` (file, headers), or GETs when it is None."""
    runs = [load_once(url, body, concurrency, duration, warmup) for _ in range(REPEATS)]
    out = dict(runs[0])
    for key in ("rps", "p50_us", "p90_us", "p99_us", "max_us", "requests"):
        out[key] = statistics.median(r[key] for r in runs)
    out["runs"] = [{k: r[k] for k in ("rps", "p50_us", "p99_us")} for r in runs]
    return out


def load_once(url: str, body: tuple[Path, list[str]] | None, concurrency: int, duration: str, warmup: str) -> dict:
    cmd = [str(REPO / "target/release/cairn-load"), "--url", url]
    if body is not None:
        cmd += ["--body", str(body[0])]
        for h in body[1]:
            cmd += ["--header", h]
    cmd += ["--concurrency", str(concurrency), "--duration", duration, "--warmup", warmup]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    result = json.loads(out)
    if result["errors"]:
        raise SystemExit(f"{url} c={concurrency}: {result['errors']} errors, first: {result['first_error']}")
    return result


def tree_rss_kib(pid: int) -> int:
    """Resident memory of a process and all its descendants."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            children.setdefault(int(fields[1]), []).append(int(entry.name))
        except (OSError, IndexError, ValueError):
            continue
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        todo.extend(children.get(p, []))
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total


class Server:
    def __init__(self, name: str, cmd: list[str], ready_url: str, env: dict[str, str], log: Path):
        self.name = name
        self.log = log
        started = time.perf_counter()
        self.proc = subprocess.Popen(
            cmd, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT, start_new_session=True
        )
        deadline = started + 180
        while True:
            if self.proc.poll() is not None:
                raise SystemExit(f"{name} exited early; log:\n{log.read_text()[-3000:]}")
            try:
                if requests.get(ready_url, timeout=1).status_code == 200:
                    break
            except requests.RequestException:
                pass
            if time.perf_counter() > deadline:
                raise SystemExit(f"{name} not ready after 180 s; log:\n{log.read_text()[-3000:]}")
            time.sleep(0.01)
        self.start_s = time.perf_counter() - started
        self.rss_idle_kib = tree_rss_kib(self.proc.pid)

    def rss_kib(self) -> int:
        return tree_rss_kib(self.proc.pid)

    def stop(self) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout=15)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


def in_process(model_dir: Path, duration_s: float) -> dict:
    """in_process_once REPEATS times; medians."""
    runs = [in_process_once(model_dir, duration_s) for _ in range(REPEATS)]
    out = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
    out["runs"] = runs
    return out


def in_process_once(model_dir: Path, duration_s: float) -> dict:
    """onnxruntime in this process: the same model file, default session options."""
    import onnxruntime as ort

    sess = ort.InferenceSession(str(model_dir / "model.onnx"), providers=["CPUExecutionProvider"])
    out: dict = {}
    one = rows(1)
    for _ in range(200):
        sess.run(None, {"input": one})
    lat = []
    end = time.perf_counter() + duration_s
    while time.perf_counter() < end:
        t = time.perf_counter()
        sess.run(None, {"input": one})
        lat.append((time.perf_counter() - t) * 1e6)
    lat.sort()
    out["p50_us_1row"] = lat[len(lat) // 2]
    out["p99_us_1row"] = lat[int(len(lat) * 0.99)]
    big = rows(1000)
    for _ in range(20):
        sess.run(None, {"input": big})
    n, end = 0, time.perf_counter() + duration_s
    t0 = time.perf_counter()
    while time.perf_counter() < end:
        sess.run(None, {"input": big})
        n += 1
    out["rows_per_s_1000"] = n * 1000 / (time.perf_counter() - t0)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--duration", default="3s")
    ap.add_argument("--warmup", default="1s")
    ap.add_argument("--out", default=str(REPO / "docs/serving-benchmarks.md"))
    ap.add_argument("--json", default=None)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    global REPEATS
    REPEATS = args.repeats
    duration_s = float(args.duration.rstrip("s"))

    for binary in ("cairn", "cairn-load"):
        if not (REPO / "target/release" / binary).exists():
            raise SystemExit(f"build first: cargo build --release -p cairn -p cairn-bench ({binary} missing)")
    tmp = Path(tempfile.mkdtemp(prefix="cairn-bench-serving-"))
    env = dict(os.environ, VIRTUAL_ENV=str(VENV), PATH=f"{VENV}/bin:{os.environ['PATH']}")
    env.pop("MLFLOW_TRACKING_URI", None)
    env.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    results: dict = {"host": {"cpus": os.cpu_count(), "python": platform.python_version()}}
    try:
        model = make_model(tmp)
        bodies = write_bodies(tmp)

        # --- Cairn ---
        port = free_port()
        cairn_cmd = [str(REPO / "target/release/cairn"), "serve", "--model", f"iris={model}", "--port", str(port)]
        help_text = subprocess.run(cairn_cmd[:2] + ["--help"], capture_output=True, text=True).stdout
        if "--grpc-port" in help_text:
            cairn_cmd += ["--grpc-port", str(free_port())]
        base = f"http://127.0.0.1:{port}"
        cairn = Server("cairn", cairn_cmd, f"{base}/v2/health/ready", env, tmp / "cairn.log")
        c: dict = {"start_s": cairn.start_s, "rss_idle_mib": cairn.rss_idle_kib / 1024}
        infer = f"{base}/v2/models/iris/infer"
        inv = f"{base}/invocations"
        c["floor_c1"] = load(f"{base}/v2/health/live", None, 1, args.duration, args.warmup)
        c["oip_json_c1"] = load(infer, bodies["oip_json_1"], 1, args.duration, args.warmup)
        c["oip_binary_c1"] = load(infer, bodies["oip_binary_1"], 1, args.duration, args.warmup)
        c["invocations_c1"] = load(inv, bodies["invocations_1"], 1, args.duration, args.warmup)
        for conc in (8, 64):
            c[f"oip_json_c{conc}"] = load(infer, bodies["oip_json_1"], conc, args.duration, args.warmup)
            c[f"invocations_c{conc}"] = load(inv, bodies["invocations_1"], conc, args.duration, args.warmup)
        for name in ("oip_json_1000", "oip_binary_1000", "invocations_1000"):
            url = inv if name.startswith("invocations") else infer
            c[f"{name}_c4"] = load(url, bodies[name], 4, args.duration, args.warmup)
        c["rss_after_mib"] = cairn.rss_kib() / 1024
        cairn.stop()
        results["cairn"] = c

        # --- Cairn on tract, the pure-Rust engine (same model) ---
        port = free_port()
        tract_cmd = cairn_cmd[:]
        tract_cmd[tract_cmd.index("--port") + 1] = str(port)
        if "--grpc-port" in tract_cmd:
            tract_cmd[tract_cmd.index("--grpc-port") + 1] = str(free_port())
        tract_cmd += ["--engine", "tract"]
        base = f"http://127.0.0.1:{port}"
        tract = Server("cairn-tract", tract_cmd, f"{base}/v2/health/ready", env, tmp / "tract.log")
        t: dict = {"start_s": tract.start_s}
        infer = f"{base}/v2/models/iris/infer"
        t["oip_binary_c1"] = load(infer, bodies["oip_binary_1"], 1, args.duration, args.warmup)
        t["oip_json_c8"] = load(infer, bodies["oip_json_1"], 8, args.duration, args.warmup)
        t["oip_binary_1000_c4"] = load(infer, bodies["oip_binary_1000"], 4, args.duration, args.warmup)
        tract.stop()
        results["cairn_tract"] = t

        # --- MLflow ---
        port = free_port()
        mlflow_cmd = [
            str(VENV / "bin/mlflow"), "models", "serve", "-m", str(model), "--env-manager", "local",
            "-h", "127.0.0.1", "-p", str(port),
        ]
        base = f"http://127.0.0.1:{port}"
        ml = Server("mlflow", mlflow_cmd, f"{base}/ping", env, tmp / "mlflow.log")
        m: dict = {"start_s": ml.start_s, "rss_idle_mib": ml.rss_idle_kib / 1024}
        inv = f"{base}/invocations"
        m["floor_c1"] = load(f"{base}/ping", None, 1, args.duration, args.warmup)
        m["invocations_c1"] = load(inv, bodies["invocations_1"], 1, args.duration, args.warmup)
        for conc in (8, 64):
            m[f"invocations_c{conc}"] = load(inv, bodies["invocations_1"], conc, args.duration, args.warmup)
        m["invocations_1000_c4"] = load(inv, bodies["invocations_1000"], 4, args.duration, args.warmup)
        m["rss_after_mib"] = ml.rss_kib() / 1024
        ml.stop()
        results["mlflow"] = m

        results["onnxruntime"] = in_process(model, duration_s)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    report = render(results, args)
    Path(args.out).write_text(report)
    print(report)


def render(r: dict, args: argparse.Namespace) -> str:
    c, m, o = r["cairn"], r["mlflow"], r["onnxruntime"]
    t = r.get("cairn_tract")
    us = lambda v: f"{v:,.0f} µs"  # noqa: E731
    rps = lambda v: f"{v:,.0f}"  # noqa: E731
    rows_s = lambda res: res["rps"] * 1000  # noqa: E731
    lines = [
        "# Serving benchmark: `cairn serve` vs `mlflow models serve` vs in-process onnxruntime",
        "",
        f"Produced by `.venv/bin/python scripts/bench_serving.py` (each cell the median of {REPEATS} runs of "
        f"{args.duration} after {args.warmup} warm-up; {r['host']['cpus']} CPUs shared by server and load generator). Model: "
        "scikit-learn iris LogisticRegression → ONNX (skl2onnx, zipmap off), input FP32 [N, 4], outputs "
        "label INT64 [N] and probabilities FP32 [N, 3]. Load: `cairn-load` (closed loop, one keep-alive "
        "connection per client) against both servers.",
        "",
        "| figure | Cairn OIP JSON | Cairn OIP binary | Cairn /invocations | MLflow /invocations | ratio (best Cairn / MLflow) |",
        "|---|---|---|---|---|---|",
        f"| 1-row p50, c=1 | {us(c['oip_json_c1']['p50_us'])} | {us(c['oip_binary_c1']['p50_us'])} | "
        f"{us(c['invocations_c1']['p50_us'])} | {us(m['invocations_c1']['p50_us'])} | "
        f"{m['invocations_c1']['p50_us'] / min(c['oip_json_c1']['p50_us'], c['invocations_c1']['p50_us']):.1f}× lower |",
        f"| HTTP floor p50, c=1 (no inference) | {us(c['floor_c1']['p50_us'])} | | | {us(m['floor_c1']['p50_us'])} | |",
        f"| 1-row p99, c=1 | {us(c['oip_json_c1']['p99_us'])} | {us(c['oip_binary_c1']['p99_us'])} | "
        f"{us(c['invocations_c1']['p99_us'])} | {us(m['invocations_c1']['p99_us'])} | |",
    ]
    for conc in (8, 64):
        best = max(c[f"oip_json_c{conc}"]["rps"], c[f"invocations_c{conc}"]["rps"])
        lines.append(
            f"| 1-row req/s, c={conc} | {rps(c[f'oip_json_c{conc}']['rps'])} | | "
            f"{rps(c[f'invocations_c{conc}']['rps'])} | {rps(m[f'invocations_c{conc}']['rps'])} | "
            f"{best / m[f'invocations_c{conc}']['rps']:.1f}× |"
        )
    lines += [
        f"| 1000-row rows/s, c=4 | {rps(rows_s(c['oip_json_1000_c4']))} | {rps(rows_s(c['oip_binary_1000_c4']))} | "
        f"{rps(rows_s(c['invocations_1000_c4']))} | {rps(rows_s(m['invocations_1000_c4']))} | "
        f"{rows_s(c['oip_binary_1000_c4']) / rows_s(m['invocations_1000_c4']):.1f}× |",
        f"| start (spawn → ready) | {c['start_s']:.2f} s | | | {m['start_s']:.2f} s | {m['start_s'] / c['start_s']:.0f}× faster |",
        f"| RSS idle / after load | {c['rss_idle_mib']:.0f} / {c['rss_after_mib']:.0f} MiB | | | "
        f"{m['rss_idle_mib']:.0f} / {m['rss_after_mib']:.0f} MiB | |",
        "",
        "In-process onnxruntime (same model file, default session options, Python loop): "
        f"1-row p50 {us(o['p50_us_1row'])}, p99 {us(o['p99_us_1row'])}; "
        f"1000-row batches {rps(o['rows_per_s_1000'])} rows/s. Cairn OIP binary 1000-row / in-process: "
        f"**{rows_s(c['oip_binary_1000_c4']) / o['rows_per_s_1000']:.2f}×**.",
        "",
        *(
            [
                "Cairn with `--engine tract` (the pure-Rust engine, same model and client): "
                f"1-row p50 {us(t['oip_binary_c1']['p50_us'])} (OIP binary, c=1); "
                f"{rps(t['oip_json_c8']['rps'])} req/s at c=8 (OIP JSON); "
                f"1000-row batches {rps(rows_s(t['oip_binary_1000_c4']))} rows/s (OIP binary, c=4), "
                f"{rows_s(t['oip_binary_1000_c4']) / o['rows_per_s_1000']:.2f}× in-process onnxruntime.",
                "",
            ]
            if t
            else []
        ),
        "The floor: an HTTP round trip that does no inference, from the same client at c=1 "
        f"(Cairn `GET /v2/health/live`, MLflow `GET /ping`): p50 {us(c['floor_c1']['p50_us'])} for Cairn, "
        f"{us(m['floor_c1']['p50_us'])} for MLflow. Cairn's 1-row inference p50 sits "
        f"{us(c['oip_json_c1']['p50_us'] - c['floor_c1']['p50_us'])} above its floor.",
        "",
        "Targets (issue 5): 1-row p50 ≤ 150 µs; ≥ 20× MLflow's req/s at concurrency 8; binary 1000-row "
        "batches ≥ 0.7× in-process onnxruntime.",
        "",
        "```json",
        json.dumps(r, indent=1),
        "```",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
