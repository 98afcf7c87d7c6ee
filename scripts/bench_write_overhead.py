#!/usr/bin/env python3
"""What the security layer costs writes: the same `cairn-bench` log-batch and run-creation
workloads against two `cairn` binaries (e.g. the commit before issue 6's permission and
audit work, and now), interleaved, on SQLite and PostgreSQL, medians. Both run without
`--auth` (the default), so the difference is the always-on parts: the permission layer
and the audit event every write appends.

Usage (after `cargo build --release -p cairn -p cairn-bench`, and a release build of the
other commit, e.g. in a `git worktree` with its own CARGO_TARGET_DIR):
    python3 scripts/bench_write_overhead.py --before /tmp/old/release/cairn \
        [--before-label efd62d6] [--repeats 3] [--out docs/audit-benchmarks.md]
PostgreSQL must be up at 127.0.0.1:5432 (trust auth, user postgres); one database per
server run is created and dropped.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BENCH = REPO / "target/release/cairn-bench"
WORKLOADS = [("log_batch_1c", "p50"), ("log_batch_16c", "rps"), ("run_create_1c", "p50"),
             ("run_create_16c", "rps")]


def psql(sql: str) -> None:
    subprocess.run(["psql", "-h", "127.0.0.1", "-U", "postgres", "-qc", sql], check=True)


def run_once(binary: str, backend: str, tag: str) -> dict:
    uri, db = "", None
    if backend == "postgres":
        db = f"cairn_overhead_{os.getpid()}_{tag}"
        psql(f"CREATE DATABASE {db}")
        uri = f"--backend-store-uri postgresql://postgres@127.0.0.1:5432/{db}"
    out = Path(tempfile.mkdtemp(prefix="cairn-overhead-")) / "result.json"
    cmd = f"{binary} server --host 127.0.0.1 --port {{port}} --data-dir {{data}} {uri}"
    try:
        subprocess.run([str(BENCH), "--server-cmd", cmd, "--workloads", "log-batch,create",
                        "--label", tag, "--json", str(out)], check=True, capture_output=True)
        return json.loads(out.read_text())
    finally:
        if db:
            psql(f"DROP DATABASE IF EXISTS {db}")


def figure(run: dict, name: str, kind: str) -> float:
    w = next(w for w in run["workloads"] if w["name"] == name)
    return w["latency_ms"]["p50"] if kind == "p50" else w["req_per_s"]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--before", required=True, help="the cairn binary to compare against")
    ap.add_argument("--before-label", default="before")
    ap.add_argument("--after", default=str(REPO / "target/release/cairn"))
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", default=str(REPO / "docs/audit-benchmarks.md"))
    args = ap.parse_args()
    bins = {args.before_label: args.before, "now": args.after}
    runs: dict[tuple[str, str], list[dict]] = {}
    for backend in ("sqlite", "postgres"):
        for rep in range(args.repeats):  # interleaved: the machine's noise hits both
            for label, binary in bins.items():
                tag = f"{'b' if label != 'now' else 'a'}{rep}"
                runs.setdefault((backend, label), []).append(run_once(binary, backend, tag))
    lines = [
        "# What permissions and the audit log cost writes",
        "",
        f"Produced by `python3 scripts/bench_write_overhead.py --before-label {args.before_label}` "
        f"({args.repeats} interleaved runs per binary and backend, medians; {os.cpu_count()} CPUs shared "
        f"by server, database and load generator; Python {platform.python_version()}). The same "
        "`cairn-bench` log-batch (1000 metrics per request) and run-creation workloads against the "
        f"release binary of `{args.before_label}` and of now, both without `--auth`: the difference is "
        "what every deployment pays, the permission layer and one audit event per write (inserted in "
        "the write's transaction, chained by the sealer). Ratios above 1 are slower for latency rows, "
        "below 1 slower for throughput rows.",
        "",
        f"| backend | workload | {args.before_label} | now | now / {args.before_label} |",
        "|---|---|---|---|---|",
    ]
    for backend in ("sqlite", "postgres"):
        for name, kind in WORKLOADS:
            med = {label: statistics.median(figure(r, name, kind) for r in runs[(backend, label)])
                   for label in bins}
            b, a = med[args.before_label], med["now"]
            fmt = (lambda v: f"{v:.2f} ms p50") if kind == "p50" else (lambda v: f"{v:,.0f} req/s")
            lines.append(f"| {backend} | {name} | {fmt(b)} | {fmt(a)} | {a / b:.2f}× |")
    lines.append("")
    Path(args.out).write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
