"""The fluent ``mlflow.*`` flows a user script runs (MLFLOW-COMPAT.md, "Client flows")."""

from __future__ import annotations

import math

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient
from mlflow.entities import LifecycleStage, RunStatus

from conformance_util import now_ms, unique_name


def test_start_run_records_name_tags_and_source(fluent_experiment, client):
    before = now_ms()
    run = mlflow.start_run(run_name="fluent-run", tags={"purpose": "conformance"})
    try:
        assert run.info.experiment_id == fluent_experiment.experiment_id
        assert run.info.run_name == "fluent-run"
        assert run.info.status == "RUNNING"
        assert mlflow.active_run().info.run_id == run.info.run_id
    finally:
        mlflow.end_run()
    after = now_ms()
    got = client.get_run(run.info.run_id)
    tags = got.data.tags
    assert tags["purpose"] == "conformance"
    assert tags["mlflow.runName"] == "fluent-run"
    for key in ("mlflow.user", "mlflow.source.name", "mlflow.source.type"):
        assert tags.get(key), f"missing context tag {key}: {tags}"
    assert got.info.user_id == tags["mlflow.user"]
    assert got.info.status == "FINISHED"
    assert before - 1000 <= got.info.start_time <= got.info.end_time <= after + 1000


def test_log_params_metrics_tags(fluent_experiment, client):
    with mlflow.start_run() as run:
        mlflow.log_param("p1", "a")
        mlflow.log_params({"p2": 2, "p3": 3.5})
        mlflow.log_metric("loss", 1.0)
        mlflow.log_metric("loss", 0.5, step=1)
        mlflow.log_metric("loss", 0.25, step=2, timestamp=now_ms())
        mlflow.log_metrics({"acc": 0.9, "f1": 0.8}, step=2)
        mlflow.set_tag("t1", "x")
        mlflow.set_tags({"t2": "y", "t3": "z"})
        mlflow.delete_tag("t3")
    data = client.get_run(run.info.run_id).data
    assert data.params == {"p1": "a", "p2": "2", "p3": "3.5"}
    assert data.metrics == {"loss": 0.25, "acc": 0.9, "f1": 0.8}
    assert data.tags["t1"] == "x" and data.tags["t2"] == "y"
    assert "t3" not in data.tags
    hist = client.get_metric_history(run.info.run_id, "loss")
    assert sorted((h.step, h.value) for h in hist) == [(0, 1.0), (1, 0.5), (2, 0.25)]


def test_explicit_metric_timestamp_and_non_finite(fluent_experiment, client):
    with mlflow.start_run() as run:
        mlflow.log_metric("m", 3.0, step=4, timestamp=1_234_567)
        mlflow.log_metric("nan", float("nan"))
        mlflow.log_metrics({"pinf": float("inf"), "ninf": float("-inf")})
    (h,) = client.get_metric_history(run.info.run_id, "m")
    assert (h.value, h.step, h.timestamp) == (3.0, 4, 1_234_567)
    m = client.get_run(run.info.run_id).data.metrics
    assert math.isnan(m["nan"])
    # Stock MLflow clamps +-Inf to +-DBL_MAX (see test_runs.test_infinity_round_trips_exactly).
    assert m["pinf"] in (math.inf, 1.7976931348623157e308)
    assert m["ninf"] in (-math.inf, -1.7976931348623157e308)


def test_end_run_sets_finished_and_end_time(fluent_experiment, client):
    run = mlflow.start_run()
    assert client.get_run(run.info.run_id).info.end_time is None
    mlflow.end_run()
    assert mlflow.active_run() is None
    info = client.get_run(run.info.run_id).info
    assert info.status == "FINISHED"
    assert info.end_time is not None and info.end_time >= info.start_time


@pytest.mark.parametrize("status", ["FAILED", "KILLED"])
def test_end_run_with_status(fluent_experiment, client, status):
    run = mlflow.start_run()
    mlflow.end_run(status=status)
    info = client.get_run(run.info.run_id).info
    assert info.status == status
    assert info.end_time is not None


def test_context_manager_exception_marks_failed(fluent_experiment, client):
    with pytest.raises(ZeroDivisionError):
        with mlflow.start_run() as run:
            mlflow.log_metric("before_crash", 1.0)
            1 / 0  # noqa: B018
    info = client.get_run(run.info.run_id).info
    assert info.status == RunStatus.to_string(RunStatus.FAILED)
    assert client.get_run(run.info.run_id).data.metrics == {"before_crash": 1.0}


def test_nested_runs(fluent_experiment, client):
    with mlflow.start_run(run_name="parent") as parent:
        with mlflow.start_run(run_name="child-1", nested=True) as child1:
            mlflow.log_metric("c", 1)
        with mlflow.start_run(run_name="child-2", nested=True) as child2:
            with mlflow.start_run(run_name="grandchild", nested=True) as grandchild:
                pass
        assert mlflow.active_run().info.run_id == parent.info.run_id
    pid = parent.info.run_id
    for child in (child1, child2):
        got = client.get_run(child.info.run_id)
        assert got.data.tags["mlflow.parentRunId"] == pid
        assert got.info.status == "FINISHED"
    assert client.get_run(grandchild.info.run_id).data.tags["mlflow.parentRunId"] == child2.info.run_id
    assert "mlflow.parentRunId" not in client.get_run(pid).data.tags
    assert mlflow.get_parent_run(child1.info.run_id).info.run_id == pid
    kids = mlflow.search_runs(
        experiment_ids=[fluent_experiment.experiment_id],
        filter_string=f"tags.mlflow.parentRunId = '{pid}'",
        output_format="list",
    )
    assert sorted(r.info.run_name for r in kids) == ["child-1", "child-2"]


def test_resume_run_by_id(fluent_experiment, client):
    with mlflow.start_run() as run:
        mlflow.log_param("a", "1")
    with mlflow.start_run(run_id=run.info.run_id):
        mlflow.log_param("b", "2")
        assert client.get_run(run.info.run_id).info.status == "RUNNING"
    got = client.get_run(run.info.run_id)
    assert got.data.params == {"a": "1", "b": "2"}
    assert got.info.status == "FINISHED"


def test_get_run_and_last_active_run(fluent_experiment):
    with mlflow.start_run(run_name="last-one") as run:
        mlflow.log_metric("m", 2.0)
    last = mlflow.last_active_run()
    assert last is not None
    assert last.info.run_id == run.info.run_id
    assert last.data.metrics == {"m": 2.0}
    got = mlflow.get_run(run.info.run_id)
    assert got.info.run_name == "last-one"
    assert got.info.status == "FINISHED"


def test_search_runs_dataframe_and_list(fluent_experiment):
    exp_id = fluent_experiment.experiment_id
    expected = {}
    for i in range(3):
        with mlflow.start_run(run_name=f"r{i}") as run:
            mlflow.log_metric("score", i * 1.5)
            mlflow.log_param("idx", i)
            mlflow.set_tag("parity", "even" if i % 2 == 0 else "odd")
        expected[run.info.run_id] = i

    df = mlflow.search_runs(experiment_ids=[exp_id])
    assert isinstance(df, pd.DataFrame)
    assert len(df) == 3
    for col in ("run_id", "experiment_id", "status", "start_time", "end_time", "artifact_uri",
                "metrics.score", "params.idx", "tags.parity", "tags.mlflow.runName"):
        assert col in df.columns, (col, list(df.columns))
    rows = {r["run_id"]: r for _, r in df.iterrows()}
    assert set(rows) == set(expected)
    for rid, i in expected.items():
        assert rows[rid]["metrics.score"] == i * 1.5
        assert rows[rid]["params.idx"] == str(i)
        assert rows[rid]["tags.parity"] == ("even" if i % 2 == 0 else "odd")
        assert rows[rid]["tags.mlflow.runName"] == f"r{i}"
        assert rows[rid]["status"] == "FINISHED"
        assert rows[rid]["experiment_id"] == exp_id
    # Default order: newest first.
    starts = list(df["start_time"])
    assert starts == sorted(starts, reverse=True)

    filtered = mlflow.search_runs(experiment_ids=[exp_id], filter_string="tags.parity = 'even'")
    assert sorted(filtered["params.idx"]) == ["0", "2"]

    runs = mlflow.search_runs(
        experiment_ids=[exp_id], output_format="list", order_by=["metrics.score DESC"]
    )
    assert [r.info.run_id for r in runs] == sorted(expected, key=lambda r: -expected[r])

    by_name = mlflow.search_runs(experiment_names=[fluent_experiment.name], output_format="list")
    assert {r.info.run_id for r in by_name} == set(expected)


def test_search_runs_empty_experiment_dataframe(fluent_experiment):
    df = mlflow.search_runs(experiment_ids=[fluent_experiment.experiment_id])
    assert isinstance(df, pd.DataFrame) and len(df) == 0


def test_search_runs_across_experiments(tracking_uri):
    ids = {}
    names = []
    for k in range(3):
        exp = mlflow.set_experiment(unique_name(f"multi{k}"))
        names.append(exp.name)
        for j in range(2):
            with mlflow.start_run() as run:
                mlflow.log_metric("k", k)
            ids[run.info.run_id] = exp.experiment_id
    exp_ids = sorted(set(ids.values()))
    runs = mlflow.search_runs(experiment_ids=exp_ids, output_format="list")
    assert {r.info.run_id: r.info.experiment_id for r in runs} == ids
    runs = mlflow.search_runs(experiment_names=names[:2], output_format="list", filter_string="metrics.k >= 1")
    assert {r.info.run_id for r in runs} == {rid for rid, e in ids.items() if e == exp_ids[1]}
    df = mlflow.search_runs(experiment_ids=exp_ids, order_by=["metrics.k DESC"])
    assert list(df["metrics.k"]) == [2.0, 2.0, 1.0, 1.0, 0.0, 0.0]


def test_delete_and_restore_run_fluent(fluent_experiment, client):
    with mlflow.start_run() as run:
        pass
    rid = run.info.run_id
    mlflow.delete_run(rid)
    assert mlflow.get_run(rid).info.lifecycle_stage == LifecycleStage.DELETED
    assert mlflow.search_runs(experiment_ids=[fluent_experiment.experiment_id], output_format="list") == []
    mlflow.restore_run(rid)
    assert mlflow.get_run(rid).info.lifecycle_stage == LifecycleStage.ACTIVE


def test_delete_and_restore_experiment_fluent(tracking_uri, client):
    exp_id = mlflow.create_experiment(unique_name("fluentdel"))
    mlflow.delete_experiment(exp_id)
    assert mlflow.get_experiment(exp_id).lifecycle_stage == LifecycleStage.DELETED
    mlflow.restore_experiment(exp_id)
    assert mlflow.get_experiment(exp_id).lifecycle_stage == LifecycleStage.ACTIVE


def test_log_metrics_more_than_1000(fluent_experiment, client):
    metrics = {f"metric_{i:04d}": float(i) for i in range(2345)}
    with mlflow.start_run() as run:
        mlflow.log_metrics(metrics, step=3)
    got = client.get_run(run.info.run_id).data.metrics
    assert got == metrics
    (h,) = client.get_metric_history(run.info.run_id, "metric_2344")
    assert h.step == 3


def test_log_params_more_than_100(fluent_experiment, client):
    params = {f"param_{i:03d}": f"value-{i}" for i in range(345)}
    tags = {f"tag_{i:03d}": f"t-{i}" for i in range(234)}
    with mlflow.start_run() as run:
        mlflow.log_params(params)
        mlflow.set_tags(tags)
    data = client.get_run(run.info.run_id).data
    assert data.params == params
    assert {k: v for k, v in data.tags.items() if k.startswith("tag_")} == tags


def test_log_input_pandas_dataset(fluent_experiment, client):
    df = pd.DataFrame({"x": [1.0, 2.0, 3.0], "y": [0, 1, 0]})
    dataset = mlflow.data.from_pandas(df, name="tiny-frame", targets="y")
    with mlflow.start_run() as run:
        mlflow.log_input(dataset, context="training", tags={"split": "train"})
    (di,) = client.get_run(run.info.run_id).inputs.dataset_inputs
    assert di.dataset.name == "tiny-frame"
    assert di.dataset.digest == dataset.digest
    entity = dataset._to_mlflow_entity()
    assert di.dataset.source_type == entity.source_type
    assert di.dataset.source == entity.source
    assert di.dataset.schema == entity.schema
    assert di.dataset.profile == entity.profile
    tags = {t.key: t.value for t in di.tags}
    assert tags["mlflow.data.context"] == "training"
    assert tags["split"] == "train"
    # The dataset can be rebuilt from what the server returned.
    source = mlflow.data.get_source(di)
    assert source is not None


def test_log_input_numpy_dataset(fluent_experiment, client):
    arr = np.arange(12, dtype=np.float64).reshape(4, 3)
    dataset = mlflow.data.from_numpy(arr, name="np-data", source="/tmp/np-data.npy")
    with mlflow.start_run() as run:
        mlflow.log_input(dataset, context="eval")
    (di,) = client.get_run(run.info.run_id).inputs.dataset_inputs
    entity = dataset._to_mlflow_entity()
    assert (di.dataset.name, di.dataset.digest, di.dataset.source_type) == (
        entity.name,
        entity.digest,
        entity.source_type,
    )
    assert {t.key: t.value for t in di.tags} == {"mlflow.data.context": "eval"}
    found = mlflow.search_runs(
        experiment_ids=[fluent_experiment.experiment_id],
        filter_string="datasets.name = 'np-data' AND datasets.context = 'eval'",
        output_format="list",
    )
    assert [r.info.run_id for r in found] == [run.info.run_id]


def test_client_and_fluent_agree(fluent_experiment):
    with mlflow.start_run() as run:
        mlflow.log_metric("z", 1.0)
    c = MlflowClient()
    assert c.get_run(run.info.run_id).data.metrics == {"z": 1.0}
