#!/usr/bin/env python3
"""Authentication and authorization overhead: the same request against `cairn server`
without and with `--auth`, one load generator (`cairn-load`, closed loop, keep-alive),
interleaved runs, medians. With auth, requests come from a non-administrator holding an
EDIT grant on the experiment, so every one pays for credential verification (HTTP Basic
through the argon2id verification cache, or a personal access token) and the permission
lookup; writes are audited on both servers (the audit log is always on).

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
USER, USER_PASSWORD = "bench", "bench-user-password-1"
# (row name, path or None for the run's, credentials kind on the auth server, POST body)
REQUESTS = [
    ("experiments/search", "/api/2.0/mlflow/experiments/search?max_results=10", "basic", None),
    ("runs/get", None, "basic", None),
    ("runs/get (token)", None, "token", None),
    ("runs/log-metric", "/api/2.0/mlflow/runs/log-metric", "basic", "metric"),
]


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


def load(url: str, headers: list[str], concurrency: int, duration: str, body: Path | None = None) -> dict:
    cmd = [str(REPO / "target/release/cairn-load"), "--url", url, "--concurrency", str(concurrency),
           "--duration", duration, "--warmup", "1s"]
    if body is not None:
        cmd += ["--body", str(body)]
        headers = [*headers, "Content-Type: application/json"]
    for h in headers:
        cmd += ["--header", h]
    out = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)
    if out["errors"]:
        raise SystemExit(f"{url}: {out['errors']} errors, first: {out['first_error']}")
    return out


def ratio_table(rows: list[tuple[str, int, dict]]) -> list[str]:
    """Markdown rows comparing medians without and with auth: (request, clients,
    {"plain"|"auth": {"p50_us", "rps"}})."""
    lines = [
        "| request | clients | p50 without auth | p50 with auth | ratio | req/s without | req/s with | ratio |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, conc, med in rows:
        p, a = med["plain"], med["auth"]
        lines.append(
            f"| {name} | {conc} | {p['p50_us']:,.0f} µs | {a['p50_us']:,.0f} µs | {a['p50_us'] / p['p50_us']:.2f}× | "
            f"{p['rps']:,.0f} | {a['rps']:,.0f} | {p['rps'] / a['rps']:.2f}× |"
        )
    return lines


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--duration", default="3s")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--out", default=str(REPO / "docs/auth-benchmarks.md"))
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="cairn-bench-auth-"))
    admin = ("admin", PASSWORD)
    basic = "Authorization: Basic " + base64.b64encode(f"{USER}:{USER_PASSWORD}".encode()).decode()
    servers = []
    try:
        plain = start(tmp, "plain", auth=False)
        authed = start(tmp, "auth", auth=True)
        servers = [plain[0], authed[0]]
        # A non-administrator with EDIT on the Default experiment, and a token of theirs.
        api = f"{authed[1]}/api/2.0/mlflow"
        requests.post(f"{api}/users/create", json={"username": USER, "password": USER_PASSWORD},
                      auth=admin, timeout=10).raise_for_status()
        requests.post(f"{api}/experiments/permissions/create", auth=admin, timeout=10,
                      json={"experiment_id": "0", "username": USER, "permission": "EDIT"}).raise_for_status()
        t = requests.post(f"{api}/users/access-tokens/create", json={"name": "bench"},
                          auth=(USER, USER_PASSWORD), timeout=10)
        t.raise_for_status()
        bearer = f"Authorization: Bearer {t.json()['token']}"
        # One run on each, so runs/get reads a real row and log-metric writes to one.
        run_ids = []
        for (_, url), creds in ((plain, None), (authed, (USER, USER_PASSWORD))):
            r = requests.post(f"{url}/api/2.0/mlflow/runs/create", json={"experiment_id": "0"},
                              auth=creds, timeout=10)
            r.raise_for_status()
            run_ids.append(r.json()["run"]["info"]["run_id"])
        bodies = []
        for i, run_id in enumerate(run_ids):
            f = tmp / f"metric-{i}.json"
            f.write_text(json.dumps({"run_id": run_id, "key": "loss", "value": 0.5,
                                     "timestamp": 1700000000000, "step": 1}))
            bodies.append(f)
        rows = []
        for name, path, kind, body in REQUESTS:
            for conc in (1, 8):
                runs = {"plain": [], "auth": []}
                for _ in range(args.repeats):  # interleaved: the machine's noise hits both
                    creds = basic if kind == "basic" else bearer
                    for label, (_, url), hdrs, idx in (("plain", plain, [], 0), ("auth", authed, [creds], 1)):
                        target = path or f"/api/2.0/mlflow/runs/get?run_id={run_ids[idx]}"
                        runs[label].append(load(url + target, hdrs, conc, args.duration,
                                                bodies[idx] if body else None))
                med = {k: {"p50_us": statistics.median(r["p50_us"] for r in v),
                           "rps": statistics.median(r["rps"] for r in v)} for k, v in runs.items()}
                rows.append((name, conc, med))
    finally:
        for p in servers:
            os.killpg(p.pid, signal.SIGTERM)
        shutil.rmtree(tmp, ignore_errors=True)

    lines = [
        "# Authentication and authorization overhead",
        "",
        f"Produced by `.venv/bin/python scripts/bench_auth.py` ({args.repeats} interleaved runs of {args.duration} "
        f"each, medians; {os.cpu_count()} CPUs shared by servers and load generator; Python {platform.python_version()}). "
        "Both servers are the same release binary on SQLite; one runs with `--auth`, and every request to it "
        "comes from a non-administrator with an EDIT grant (HTTP Basic through the argon2id verification cache, "
        "or a personal access token), so it pays for credential checking and the permission lookup. Writes are "
        "audited on both. Target (issue 6): auth costs ≤ 1.2× an unauthenticated request.",
        "",
        *ratio_table(rows),
        "",
    ]
    Path(args.out).write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
