"""Many writers at once: nothing lost, nothing duplicated, no errors.

Client retries are off here, so a 5xx under load (e.g. "database is locked") fails the test
instead of being hidden by the retry loop.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunTag

from conformance_util import search_all_runs, unique_name

THREADS = 32
RUNS_PER_THREAD = 5
METRICS_PER_BATCH = 100


def _expected(t: int, k: int):
    metrics = {f"m{j}": float(t * 1000 + k * 100 + j) for j in range(METRICS_PER_BATCH)}
    params = {"thread": str(t), "slot": str(k), "p.dotted": f"{t}-{k}"}
    tags = {"owner": f"thread-{t}", "slot": str(k)}
    return metrics, params, tags


def test_concurrent_writers(tracking_uri, no_retries):
    client = MlflowClient(tracking_uri)
    exp_id = client.create_experiment(unique_name("concurrency"))
    barrier = threading.Barrier(THREADS)

    def worker(t: int):
        c = MlflowClient(tracking_uri)
        barrier.wait(timeout=60)
        made = []
        for k in range(RUNS_PER_THREAD):
            run = c.create_run(exp_id, run_name=f"t{t}-r{k}")
            rid = run.info.run_id
            metrics, params, tags = _expected(t, k)
            c.log_batch(
                rid,
                metrics=[Metric(key, v, 1_000 + k, 0) for key, v in metrics.items()],
                params=[Param(key, v) for key, v in params.items()],
                tags=[RunTag(key, v) for key, v in tags.items()],
            )
            # A second history point for one key, and single-entity writes racing the batches.
            c.log_metric(rid, "m0", -1.0, timestamp=2_000 + k, step=1)
            c.set_tag(rid, "after", "yes")
            c.set_terminated(rid, "FINISHED")
            made.append((t, k, rid))
        return made

    with ThreadPoolExecutor(THREADS) as pool:
        results = [f.result() for f in [pool.submit(worker, t) for t in range(THREADS)]]

    created = [x for made in results for x in made]
    assert len(created) == THREADS * RUNS_PER_THREAD
    assert len({rid for _, _, rid in created}) == len(created)

    runs = {r.info.run_id: r for r in search_all_runs(client, [exp_id])}
    assert set(runs) == {rid for _, _, rid in created}
    for t, k, rid in created:
        run = runs[rid]
        metrics, params, tags = _expected(t, k)
        metrics["m0"] = -1.0  # step 1 beats step 0
        assert run.info.run_name == f"t{t}-r{k}"
        assert run.info.status == "FINISHED"
        assert run.data.metrics == metrics
        assert run.data.params == params
        for key, v in tags.items():
            assert run.data.tags[key] == v
        assert run.data.tags["after"] == "yes"
        assert run.data.tags["mlflow.runName"] == f"t{t}-r{k}"

    # Spot-check histories of a few runs (each key has exactly the points logged).
    for t, k, rid in created[:: max(1, len(created) // 8)]:
        hist = client.get_metric_history(rid, "m0")
        assert sorted((h.step, h.value) for h in hist) == [(0, float(t * 1000 + k * 100)), (1, -1.0)]
        hist = client.get_metric_history(rid, "m99")
        assert [(h.step, h.value) for h in hist] == [(0, float(t * 1000 + k * 100 + 99))]


def test_concurrent_experiment_creation_same_name(tracking_uri, no_retries):
    """Racing creates of one name: exactly one wins, the rest get RESOURCE_ALREADY_EXISTS."""
    from mlflow.exceptions import MlflowException

    name = unique_name("race")
    barrier = threading.Barrier(8)

    def worker(_):
        c = MlflowClient(tracking_uri)
        barrier.wait(timeout=60)
        try:
            return ("ok", c.create_experiment(name))
        except MlflowException as e:
            return ("err", e.error_code)

    with ThreadPoolExecutor(8) as pool:
        outcomes = list(pool.map(worker, range(8)))
    oks = [v for kind, v in outcomes if kind == "ok"]
    errs = [v for kind, v in outcomes if kind == "err"]
    assert len(oks) == 1, outcomes
    assert errs == ["RESOURCE_ALREADY_EXISTS"] * 7, outcomes
    assert MlflowClient(tracking_uri).get_experiment_by_name(name).experiment_id == oks[0]


def test_concurrent_params_same_key(tracking_uri, no_retries):
    """Racing writes of one param key with different values: exactly one value sticks and
    every other writer is told INVALID_PARAMETER_VALUE (identical values all succeed)."""
    from mlflow.exceptions import MlflowException

    client = MlflowClient(tracking_uri)
    exp_id = client.create_experiment(unique_name("param-race"))
    rid = client.create_run(exp_id).info.run_id
    barrier = threading.Barrier(8)

    def worker(i):
        c = MlflowClient(tracking_uri)
        barrier.wait(timeout=60)
        c.log_param(rid, "same", "identical")
        try:
            c.log_param(rid, "contested", f"value-{i}")
            return ("ok", i)
        except MlflowException as e:
            return ("err", e.error_code)

    with ThreadPoolExecutor(8) as pool:
        outcomes = list(pool.map(worker, range(8)))
    winners = [v for kind, v in outcomes if kind == "ok"]
    assert len(winners) == 1, outcomes
    assert sorted(v for kind, v in outcomes if kind == "err") == ["INVALID_PARAMETER_VALUE"] * 7
    params = client.get_run(rid).data.params
    assert params == {"same": "identical", "contested": f"value-{winners[0]}"}
