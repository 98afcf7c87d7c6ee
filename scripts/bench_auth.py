#!/usr/bin/env python3
"""Authentication overhead: the same request against `cairn server` without and with
`--auth` (HTTP Basic, argon2id with the verification cache), one load generator
(`cairn-load`, closed loop, keep-alive), interleaved runs, medians.

Usage (after `cargo build --release -p cairn -p cairn-bench`):
    .venv/bin/python scripts/bench_auth.py [--duration 3s] [--repeats 5] [--out docs/auth-benchmarks.md]
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import requests

REPO = Path(__file__).resolve().parents[1]
PASSWORD = "bench-password-123"
PATHS = {
    "experiments/search": "/api/2.0/mlflow/experiments/search?max_results=10",
    "runs/get": None,  # filled in with a real run id
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(tmp: Path, name: str, auth: bool) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = dict(os.environ, NO_COLOR="1", CAIRN_LOG="warn")
    args = [str(REPO / "target/release/cairn"), "server", "--port", str(port), "--data-dir", str(tmp / name)]
    if auth:
        args.append("--auth")
        env["CAIRN_ADMIN_PASSWORD"] = PASSWORD
    proc = subprocess.Popen(args, env=env, stdout=(tmp / f"{name}.log").open("wb"),
                            stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if requests.get(f"{url}/health", timeout=1).status_code == 200:
                return proc, url
        except requests.RequestException:
            pass
        time.sleep(0.05)
    raise SystemExit(f"{name} did not start: {(tmp / f'{name}.log').read_text()[-2000:]}")


def load(url: str, headers: list[str], concurrency: int, duration: str) -> dict:
    cmd = [str(REPO / "target/release/cairn-load"), "--url", url, "--concurrency", str(concurrency),
           "--duration", duration, "--warmup", "1s"]
    for h in headers:
        cmd += ["--header", h]
    out = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)
    if out["errors"]:
        raise SystemExit(f"{url}: {out['errors']} errors, first: {out['first_error']}")
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--duration", default="3s")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--out", default=str(REPO / "docs/auth-benchmarks.md"))
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="cairn-bench-auth-"))
    basic = "Authorization: Basic " + base64.b64encode(f"admin:{PASSWORD}".encode()).decode()
    servers = []
    try:
        plain = start(tmp, "plain", auth=False)
        authed = start(tmp, "auth", auth=True)
        servers = [plain[0], authed[0]]
        # One experiment with one run on each, so runs/get reads a real row.
        run_paths = []
        for (_, url), hdr in ((plain, {}), (authed, {"Authorization": basic.split(": ", 1)[1]})):
            r = requests.post(f"{url}/api/2.0/mlflow/runs/create", json={"experiment_id": "0"},
                              headers=hdr, timeout=10)
            r.raise_for_status()
            run_paths.append(f"/api/2.0/mlflow/runs/get?run_id={r.json()['run']['info']['run_id']}")
        rows = []
        for name in PATHS:
            for conc in (1, 8):
                runs = {"plain": [], "auth": []}
                for _ in range(args.repeats):  # interleaved: the machine's noise hits both
                    for label, (_, url), hdrs, idx in (("plain", plain, [], 0), ("auth", authed, [basic], 1)):
                        path = PATHS[name] or run_paths[idx]
                        runs[label].append(load(url + path, hdrs, conc, args.duration))
                med = {k: {"p50_us": statistics.median(r["p50_us"] for r in v),
                           "rps": statistics.median(r["rps"] for r in v)} for k, v in runs.items()}
                rows.append((name, conc, med))
    finally:
        for p in servers:
            os.killpg(p.pid, signal.SIGTERM)
        shutil.rmtree(tmp, ignore_errors=True)

    lines = [
        "# Authentication overhead",
        "",
        f"Produced by `.venv/bin/python scripts/bench_auth.py` ({args.repeats} interleaved runs of {args.duration} "
        f"each, medians; {os.cpu_count()} CPUs shared by servers and load generator; Python {platform.python_version()}). "
        "Both servers are the same release binary on SQLite; one runs with `--auth` (HTTP Basic, argon2id, "
        "verification cache), and every request to it carries the credentials. Target (issue 6): auth costs "
        "≤ 1.2× an unauthenticated request.",
        "",
        "| request | clients | p50 without auth | p50 with auth | ratio | req/s without | req/s with | ratio |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, conc, med in rows:
        p, a = med["plain"], med["auth"]
        lines.append(
            f"| {name} | {conc} | {p['p50_us']:,.0f} µs | {a['p50_us']:,.0f} µs | {a['p50_us'] / p['p50_us']:.2f}× | "
            f"{p['rps']:,.0f} | {a['rps']:,.0f} | {p['rps'] / a['rps']:.2f}× |"
        )
    lines.append("")
    Path(args.out).write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
