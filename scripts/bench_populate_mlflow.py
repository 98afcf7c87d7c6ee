#!/usr/bin/env python3
"""Bulk-load the search data set straight into a stock MLflow server's tables.

Populating 100k runs through MLflow's REST API takes well over an hour on a small
machine (~55 ms per runs/create, plus a runs/log-batch per run), so `cairn-bench`
calls this script instead (`--search-populate-cmd`) once the server has created its
schema and the benchmark experiment. It writes exactly the rows that

    POST runs/create    {experiment_id, start_time, run_name: "search-<i>",
                         tags: [family=f<i%7>, bench.idx=<i>]}
    POST runs/log-batch {metrics: [loss, acc at step 0], params: [lr, batch_size, optimizer]}

would have written (checked row for row against the REST path in MLflow 3.17.2):
`runs` (status RUNNING, source_type UNKNOWN, user_id "", artifact_uri under the
experiment's artifact location), `tags` (incl. the `mlflow.runName` tag the server
adds), `params`, `metrics` and `latest_metrics`. The values are the same
deterministic function of the run index as `populate_one` in
crates/cairn-bench/src/workloads.rs, so Cairn and MLflow search identical data.

Run it with the bench venv's python (it imports mlflow's own table definitions):

    .venv-bench/bin/python scripts/bench_populate_mlflow.py \
        --db-uri sqlite:////tmp/x/mlflow.db --experiment-id 1 --start 0 --end 100000
"""

from __future__ import annotations

import argparse
import sys
import time
import uuid

MASK64 = (1 << 64) - 1


def unit_rand(seed: int) -> float:
    """splitmix64 -> [0, 1); bit-identical to `unit_rand` in workloads.rs."""
    z = (seed + 0x9E3779B97F4A7C15) & MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
    z ^= z >> 31
    return (z >> 11) / float(1 << 53)


def run_rows(i: int, experiment_id: int, artifact_root: str, now_ms: int, append_uri):
    """The rows MLflow stores for run `i` of the search data set."""
    run_id = uuid.uuid4().hex
    name = f"search-{i}"
    run = {
        "run_uuid": run_id,
        "name": name,
        "source_type": "UNKNOWN",
        "source_name": "",
        "entry_point_name": "",
        "user_id": "",
        "status": "RUNNING",
        "start_time": now_ms,
        "end_time": None,
        "deleted_time": None,
        "source_version": "",
        "lifecycle_stage": "active",
        "artifact_uri": append_uri(artifact_root, run_id, "artifacts"),
        "experiment_id": experiment_id,
    }
    tags = [
        {"key": "family", "value": f"f{i % 7}", "run_uuid": run_id},
        {"key": "bench.idx", "value": str(i), "run_uuid": run_id},
        {"key": "mlflow.runName", "value": name, "run_uuid": run_id},
    ]
    params = [
        {"key": "lr", "value": f"{0.001 * (1 + i % 10):.4f}", "run_uuid": run_id},
        {"key": "batch_size", "value": str(16 << (i % 4)), "run_uuid": run_id},
        {"key": "optimizer", "value": ["adam", "sgd", "adamw"][i % 3], "run_uuid": run_id},
    ]
    metrics = [
        {
            "key": key,
            "value": value,
            "timestamp": now_ms,
            "step": 0,
            "is_nan": False,
            "run_uuid": run_id,
        }
        for key, value in (("loss", unit_rand(2 * i)), ("acc", unit_rand(2 * i + 1)))
    ]
    return run, tags, params, metrics


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--db-uri", required=True, help="MLflow's --backend-store-uri")
    ap.add_argument("--experiment-id", required=True, type=int)
    ap.add_argument("--start", required=True, type=int, help="first run index")
    ap.add_argument("--end", required=True, type=int, help="one past the last run index")
    ap.add_argument("--chunk", type=int, default=5000, help="runs per transaction")
    args = ap.parse_args()

    import sqlalchemy as sa
    from mlflow.store.tracking.dbmodels.models import (
        SqlExperiment,
        SqlLatestMetric,
        SqlMetric,
        SqlParam,
        SqlRun,
        SqlTag,
    )
    from mlflow.utils.uri import append_to_uri_path

    engine = sa.create_engine(args.db_uri)
    started = time.monotonic()
    with engine.connect() as conn:
        exp = conn.execute(
            sa.select(
                SqlExperiment.__table__.c.artifact_location,
                SqlExperiment.__table__.c.lifecycle_stage,
            ).where(SqlExperiment.__table__.c.experiment_id == args.experiment_id)
        ).one_or_none()
    if exp is None or exp.lifecycle_stage != "active":
        print(f"bench_populate_mlflow: no active experiment {args.experiment_id}", file=sys.stderr)
        return 1

    tables = (SqlRun, SqlTag, SqlParam, SqlMetric, SqlLatestMetric)
    for lo in range(args.start, args.end, args.chunk):
        hi = min(lo + args.chunk, args.end)
        now_ms = int(time.time() * 1000)
        runs, tags, params, metrics = [], [], [], []
        for i in range(lo, hi):
            r, t, p, m = run_rows(i, args.experiment_id, exp.artifact_location, now_ms, append_to_uri_path)
            runs.append(r)
            tags += t
            params += p
            metrics += m
        # One transaction per chunk; latest_metrics equals metrics (one step each).
        with engine.begin() as conn:
            for model, rows in zip(tables, (runs, tags, params, metrics, metrics)):
                conn.execute(sa.insert(model.__table__), rows)
    engine.dispose()
    elapsed = time.monotonic() - started
    n = args.end - args.start
    print(
        f"bench_populate_mlflow: inserted runs {args.start}..{args.end} ({n} runs) "
        f"in {elapsed:.1f} s",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
