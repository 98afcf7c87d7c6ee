"""Runs through MlflowClient, plus raw checks of the wire format of the run endpoints."""

from __future__ import annotations

import math

import pytest
from mlflow.entities import (
    Dataset,
    DatasetInput,
    InputTag,
    LifecycleStage,
    Metric,
    Param,
    RunStatus,
    RunTag,
    ViewType,
)
from mlflow.exceptions import MlflowException

from conformance_util import (
    AJAX,
    api_get,
    api_post,
    assert_mlflow_error,
    now_ms,
    ok_json,
    run_ids,
    same_float,
)

RUN_NAME_TAG = "mlflow.runName"
DBL_MAX = 1.7976931348623157e308


def test_create_and_get_run(client, experiment_id):
    start = now_ms() - 5000
    run = client.create_run(
        experiment_id, start_time=start, tags={"k1": "v1", "with space": "x y"}, run_name="my-run"
    )
    info = run.info
    assert len(info.run_id) == 32 and all(c in "0123456789abcdef" for c in info.run_id)
    assert info.experiment_id == experiment_id
    assert info.run_name == "my-run"
    assert info.status == "RUNNING"
    assert info.start_time == start
    assert info.end_time is None
    assert info.lifecycle_stage == LifecycleStage.ACTIVE
    assert info.artifact_uri == f"mlflow-artifacts:/{experiment_id}/{info.run_id}/artifacts"

    got = client.get_run(info.run_id)
    assert got.info.run_id == info.run_id
    assert got.info.run_name == "my-run"
    assert got.info.start_time == start
    assert got.data.tags["k1"] == "v1"
    assert got.data.tags["with space"] == "x y"
    assert got.data.tags[RUN_NAME_TAG] == "my-run"
    assert got.data.metrics == {} and got.data.params == {}


def test_create_run_without_name_gets_generated_name(client, experiment_id):
    run = client.create_run(experiment_id)
    assert run.info.run_name
    got = client.get_run(run.info.run_id)
    assert got.info.run_name == run.info.run_name
    assert got.data.tags[RUN_NAME_TAG] == run.info.run_name


def test_create_run_name_from_tag(client, experiment_id):
    run = client.create_run(experiment_id, tags={RUN_NAME_TAG: "from-tag"})
    assert client.get_run(run.info.run_id).info.run_name == "from-tag"


def test_raw_run_get_shape(client, experiment_id, base_url):
    run = client.create_run(experiment_id, run_name="raw-shape")
    rid = run.info.run_id
    t = now_ms()
    client.log_batch(
        rid,
        metrics=[
            Metric("m", 1.5, t, 3),
            Metric("nan", float("nan"), t, 0),
            Metric("pinf", float("inf"), t, 0),
            Metric("ninf", float("-inf"), t, 0),
        ],
        params=[Param("p", "pv")],
        tags=[RunTag("t", "tv")],
    )
    body = ok_json(api_get(base_url, "runs/get", {"run_id": rid}))
    info = body["run"]["info"]
    assert info["run_id"] == rid
    assert info["run_uuid"] == rid
    assert info["experiment_id"] == experiment_id
    assert info["run_name"] == "raw-shape"
    assert info["status"] == "RUNNING"
    assert info["lifecycle_stage"] == "active"
    assert isinstance(info["start_time"], int)
    data = body["run"]["data"]
    metrics = {m["key"]: m for m in data["metrics"]}
    assert metrics["m"] == {"key": "m", "value": 1.5, "timestamp": t, "step": 3}
    assert isinstance(metrics["m"]["timestamp"], int)
    # NaN travels as a string. (Stock MLflow stores +-Inf as +-DBL_MAX, a plain number;
    # Cairn keeps them, see test_infinity_round_trips_exactly.)
    assert metrics["nan"]["value"] == "NaN"
    assert metrics["pinf"]["value"] in ("Infinity", DBL_MAX)
    assert metrics["ninf"]["value"] in ("-Infinity", -DBL_MAX)
    assert {"key": "p", "value": "pv"} in data["params"]
    assert {"key": "t", "value": "tv"} in data["tags"]

    # The legacy run_uuid query field is accepted too.
    legacy = ok_json(api_get(base_url, "runs/get", {"run_uuid": rid}))
    assert legacy["run"]["info"]["run_id"] == rid
    # Every endpoint is also served under /ajax-api.
    ajax = ok_json(api_get(base_url, "runs/get", {"run_id": rid}, prefix=AJAX))
    assert ajax["run"]["info"]["run_id"] == rid


def test_non_finite_metric_round_trip(client, experiment_id):
    rid = client.create_run(experiment_id).info.run_id
    client.log_metric(rid, "nan", float("nan"), step=0)
    client.log_metric(rid, "pinf", float("inf"), step=0)
    client.log_metric(rid, "ninf", float("-inf"), step=0)
    client.log_metric(rid, "big", 1.7976931348623157e308, step=0)
    client.log_metric(rid, "tiny", 5e-324, step=0)
    m = client.get_run(rid).data.metrics
    assert math.isnan(m["nan"])
    # Stock MLflow's SQL store clamps +-Inf to +-DBL_MAX; either is accepted here, and the
    # exact round trip is asserted for Cairn in test_infinity_round_trips_exactly.
    assert m["pinf"] in (math.inf, DBL_MAX)
    assert m["ninf"] in (-math.inf, -DBL_MAX)
    assert m["big"] == DBL_MAX
    assert m["tiny"] == 5e-324
    hist = client.get_metric_history(rid, "nan")
    assert len(hist) == 1 and math.isnan(hist[0].value)
    (h,) = client.get_metric_history(rid, "ninf")
    assert h.value in (-math.inf, -DBL_MAX)


@pytest.mark.cairn_only
def test_infinity_round_trips_exactly(client, experiment_id, base_url):
    rid = client.create_run(experiment_id).info.run_id
    client.log_metric(rid, "pinf", float("inf"), step=0)
    client.log_metric(rid, "ninf", float("-inf"), step=0)
    m = client.get_run(rid).data.metrics
    assert m["pinf"] == math.inf
    assert m["ninf"] == -math.inf
    assert [h.value for h in client.get_metric_history(rid, "pinf")] == [math.inf]
    body = ok_json(api_get(base_url, "runs/get", {"run_id": rid}))
    raw = {x["key"]: x["value"] for x in body["run"]["data"]["metrics"]}
    assert raw == {"pinf": "Infinity", "ninf": "-Infinity"}


def test_update_run_status_end_time_and_name(client, experiment_id):
    run = client.create_run(experiment_id, run_name="before")
    rid = run.info.run_id
    end = run.info.start_time + 1234
    client.set_terminated(rid, status="FINISHED", end_time=end)
    got = client.get_run(rid)
    assert got.info.status == "FINISHED"
    assert got.info.end_time == end
    assert got.info.run_name == "before"

    client.update_run(rid, name="after")
    got = client.get_run(rid)
    assert got.info.run_name == "after"
    assert got.data.tags[RUN_NAME_TAG] == "after"
    assert got.info.status == "FINISHED"


@pytest.mark.parametrize("status", ["FAILED", "KILLED", "SCHEDULED", "FINISHED", "RUNNING"])
def test_update_run_every_status(client, experiment_id, status):
    rid = client.create_run(experiment_id).info.run_id
    client.set_terminated(rid, status=status)
    got = client.get_run(rid)
    assert got.info.status == status
    assert got.info.end_time is not None


def test_set_run_name_tag_renames_run(client, experiment_id):
    rid = client.create_run(experiment_id, run_name="original").info.run_id
    client.set_tag(rid, RUN_NAME_TAG, "renamed")
    got = client.get_run(rid)
    assert got.info.run_name == "renamed"
    assert got.data.tags[RUN_NAME_TAG] == "renamed"
    # Also via log_batch.
    client.log_batch(rid, tags=[RunTag(RUN_NAME_TAG, "renamed-again")])
    assert client.get_run(rid).info.run_name == "renamed-again"


def test_delete_and_restore_run(client, experiment_id):
    keep = client.create_run(experiment_id).info.run_id
    gone = client.create_run(experiment_id).info.run_id
    client.delete_run(gone)
    assert client.get_run(gone).info.lifecycle_stage == LifecycleStage.DELETED

    def ids(view):
        return set(run_ids(client.search_runs([experiment_id], run_view_type=view)))

    assert ids(ViewType.ACTIVE_ONLY) == {keep}
    assert ids(ViewType.DELETED_ONLY) == {gone}
    assert ids(ViewType.ALL) == {keep, gone}

    client.restore_run(gone)
    assert client.get_run(gone).info.lifecycle_stage == LifecycleStage.ACTIVE
    assert ids(ViewType.ACTIVE_ONLY) == {keep, gone}
    assert ids(ViewType.DELETED_ONLY) == set()


def test_log_param_metric_tag_and_delete_tag(client, experiment_id):
    rid = client.create_run(experiment_id).info.run_id
    client.log_param(rid, "alpha", 0.5)
    client.log_param(rid, "name with space", "x")
    client.log_metric(rid, "loss", 0.25, timestamp=1000, step=7)
    client.set_tag(rid, "stage", "dev")
    client.set_tag(rid, "drop-me", "soon")
    client.delete_tag(rid, "drop-me")
    data = client.get_run(rid).data
    assert data.params == {"alpha": "0.5", "name with space": "x"}
    assert data.metrics == {"loss": 0.25}
    assert data.tags["stage"] == "dev"
    assert "drop-me" not in data.tags
    hist = client.get_metric_history(rid, "loss")
    assert [(h.key, h.value, h.timestamp, h.step) for h in hist] == [("loss", 0.25, 1000, 7)]


def test_param_immutability(client, experiment_id, no_retries):
    rid = client.create_run(experiment_id).info.run_id
    client.log_param(rid, "lr", "0.1")
    client.log_param(rid, "lr", "0.1")  # same value: accepted
    client.log_batch(rid, params=[Param("lr", "0.1")])
    with pytest.raises(MlflowException) as ei:
        client.log_param(rid, "lr", "0.2")
    assert_mlflow_error(ei, "INVALID_PARAMETER_VALUE")
    with pytest.raises(MlflowException) as ei:
        client.log_batch(rid, params=[Param("lr", "0.3")])
    assert_mlflow_error(ei, "INVALID_PARAMETER_VALUE")
    assert client.get_run(rid).data.params == {"lr": "0.1"}


def test_log_batch_rejected_param_change_writes_nothing(client, experiment_id, no_retries):
    rid = client.create_run(experiment_id).info.run_id
    client.log_param(rid, "fixed", "a")
    with pytest.raises(MlflowException):
        client.log_batch(
            rid,
            metrics=[Metric("should-not-exist", 1.0, 1, 0)],
            params=[Param("fixed", "b"), Param("new-param", "n")],
            tags=[RunTag("new-tag", "t")],
        )
    data = client.get_run(rid).data
    assert data.params == {"fixed": "a"}
    assert "should-not-exist" not in data.metrics
    assert "new-tag" not in data.tags


def test_latest_metric_wins_by_step_then_timestamp_then_value(client, experiment_id):
    rid = client.create_run(experiment_id).info.run_id
    # Logged out of order; the run's summary value is the max of (step, timestamp, value).
    client.log_batch(
        rid,
        metrics=[
            Metric("by_step", 5.0, 100, 2),
            Metric("by_step", 9.0, 999, 1),
            Metric("by_step", 1.0, 50, 0),
            Metric("by_ts", 3.0, 200, 1),
            Metric("by_ts", 4.0, 100, 1),
            Metric("by_value", 2.0, 100, 1),
            Metric("by_value", 7.0, 100, 1),
            Metric("by_value", 3.0, 100, 1),
        ],
    )
    client.log_metric(rid, "later_lower_step", 10.0, timestamp=100, step=5)
    client.log_metric(rid, "later_lower_step", 20.0, timestamp=200, step=4)
    m = client.get_run(rid).data.metrics
    assert m["by_step"] == 5.0
    assert m["by_ts"] == 3.0
    assert m["by_value"] == 7.0
    assert m["later_lower_step"] == 10.0


def test_metric_history_ordering_and_all_points(client, experiment_id):
    rid = client.create_run(experiment_id).info.run_id
    points = [(0.1 * i, 10_000 - i, i % 7) for i in range(50)]
    client.log_batch(rid, metrics=[Metric("h", v, ts, st) for v, ts, st in points])
    hist = client.get_metric_history(rid, "h")
    got = [(h.value, h.timestamp, h.step) for h in hist]
    assert sorted(got) == sorted(points)
    # The server orders history by timestamp, then step, then value.
    assert [(t, s, v) for v, t, s in got] == sorted((t, s, v) for v, t, s in points)
    assert all(h.key == "h" for h in hist)
    assert client.get_metric_history(rid, "never-logged") == []


def test_log_batch_resent_does_not_duplicate(client, experiment_id):
    rid = client.create_run(experiment_id).info.run_id
    metrics = [Metric("dup", float(i), 1000 + i, i) for i in range(20)]
    params = [Param("p", "1")]
    tags = [RunTag("t", "1")]
    client.log_batch(rid, metrics=metrics, params=params, tags=tags)
    client.log_batch(rid, metrics=metrics, params=params, tags=tags)
    client.log_metric(rid, "dup", 0.0, timestamp=1000, step=0)
    hist = client.get_metric_history(rid, "dup")
    assert len(hist) == 20
    assert sorted(h.step for h in hist) == list(range(20))


def test_same_metric_point_with_new_value_is_kept(client, experiment_id):
    rid = client.create_run(experiment_id).info.run_id
    client.log_metric(rid, "x", 1.0, timestamp=5, step=1)
    client.log_metric(rid, "x", 2.0, timestamp=5, step=1)
    assert sorted(h.value for h in client.get_metric_history(rid, "x")) == [1.0, 2.0]


def test_log_batch_mixed_and_large(client, experiment_id):
    rid = client.create_run(experiment_id).info.run_id
    t = now_ms()
    metrics = [Metric(f"m{i}", i * 1.0, t, 0) for i in range(900)]
    params = [Param(f"p{i}", str(i)) for i in range(50)]
    tags = [RunTag(f"t{i}", str(i)) for i in range(50)]
    client.log_batch(rid, metrics=metrics, params=params, tags=tags)
    data = client.get_run(rid).data
    assert data.metrics == {f"m{i}": i * 1.0 for i in range(900)}
    assert data.params == {f"p{i}": str(i) for i in range(50)}
    assert {k: v for k, v in data.tags.items() if k.startswith("t") and k[1:].isdigit()} == {
        f"t{i}": str(i) for i in range(50)
    }


def test_client_splits_oversized_log_batch(client, experiment_id):
    rid = client.create_run(experiment_id).info.run_id
    metrics = [Metric(f"k{i % 3}", float(i), 1_000 + i, i) for i in range(2500)]
    params = [Param(f"p{i}", "v") for i in range(250)]
    client.log_batch(rid, metrics=metrics, params=params)
    data = client.get_run(rid).data
    assert len(data.params) == 250
    for k in range(3):
        hist = client.get_metric_history(rid, f"k{k}")
        assert len(hist) == len([i for i in range(2500) if i % 3 == k])


def test_writes_to_deleted_run_are_rejected(client, experiment_id, no_retries):
    rid = client.create_run(experiment_id).info.run_id
    client.delete_run(rid)
    with pytest.raises(MlflowException) as ei:
        client.log_metric(rid, "m", 1.0)
    assert_mlflow_error(ei, "INVALID_PARAMETER_VALUE")
    with pytest.raises(MlflowException) as ei:
        client.log_param(rid, "p", "v")
    assert_mlflow_error(ei, "INVALID_PARAMETER_VALUE")
    with pytest.raises(MlflowException) as ei:
        client.set_tag(rid, "t", "v")
    assert_mlflow_error(ei, "INVALID_PARAMETER_VALUE")


def test_log_inputs_datasets_round_trip(client, experiment_id):
    rid = client.create_run(experiment_id).info.run_id
    ds_train = Dataset(
        name="train-set",
        digest="abc123",
        source_type="local",
        source='{"uri": "/data/train.csv"}',
        schema='{"mlflow_colspec": [{"type": "double", "name": "x"}]}',
        profile='{"num_rows": 10}',
    )
    ds_eval = Dataset(name="eval-set", digest="def456", source_type="http", source='{"url": "http://x"}')
    client.log_inputs(
        rid,
        datasets=[
            DatasetInput(ds_train, tags=[InputTag("mlflow.data.context", "training")]),
            DatasetInput(ds_eval, tags=[InputTag("mlflow.data.context", "eval")]),
        ],
    )
    # Logging the same dataset input twice does not duplicate it.
    client.log_inputs(rid, datasets=[DatasetInput(ds_train, tags=[InputTag("mlflow.data.context", "training")])])

    inputs = client.get_run(rid).inputs.dataset_inputs
    by_name = {di.dataset.name: di for di in inputs}
    assert sorted(by_name) == ["eval-set", "train-set"]
    tr = by_name["train-set"]
    assert tr.dataset.digest == "abc123"
    assert tr.dataset.source_type == "local"
    assert tr.dataset.source == '{"uri": "/data/train.csv"}'
    assert tr.dataset.schema == '{"mlflow_colspec": [{"type": "double", "name": "x"}]}'
    assert tr.dataset.profile == '{"num_rows": 10}'
    assert {(t.key, t.value) for t in tr.tags} == {("mlflow.data.context", "training")}
    ev = by_name["eval-set"]
    assert ev.dataset.digest == "def456"
    assert {(t.key, t.value) for t in ev.tags} == {("mlflow.data.context", "eval")}


def test_raw_metric_history_paging(client, experiment_id, base_url):
    rid = client.create_run(experiment_id).info.run_id
    n = 23
    client.log_batch(rid, metrics=[Metric("paged", float(i), 5000 + i, i) for i in range(n)])

    # Without max_results: everything, no token.
    body = ok_json(api_get(base_url, "metrics/get-history", {"run_id": rid, "metric_key": "paged"}))
    assert len(body["metrics"]) == n
    assert "next_page_token" not in body or not body["next_page_token"]

    seen = []
    token = None
    pages = 0
    while True:
        params = {"run_id": rid, "metric_key": "paged", "max_results": 5}
        if token:
            params["page_token"] = token
        body = ok_json(api_get(base_url, "metrics/get-history", params))
        assert len(body["metrics"]) <= 5
        seen.extend(body["metrics"])
        pages += 1
        token = body.get("next_page_token")
        if not token:
            break
        assert pages < 20
    assert pages == 5
    assert [m["step"] for m in seen] == list(range(n))
    assert all(m["key"] == "paged" for m in seen)
    assert [m["value"] for m in seen] == [float(i) for i in range(n)]
    assert all(isinstance(m["timestamp"], int) and isinstance(m["step"], int) for m in seen)


def test_raw_metric_history_bulk_interval(client, experiment_id, base_url):
    r1 = client.create_run(experiment_id).info.run_id
    r2 = client.create_run(experiment_id).info.run_id
    client.log_batch(r1, metrics=[Metric("acc", i / 10, 100 + i, i) for i in range(10)])
    client.log_batch(r2, metrics=[Metric("acc", i / 100, 200 + i, i * 2) for i in range(6)])
    client.log_metric(r2, "other", 1.0)

    body = ok_json(
        api_get(
            base_url,
            "metrics/get-history-bulk-interval",
            {"run_ids": [r1, r2], "metric_key": "acc", "max_results": 100},
        )
    )
    got = body["metrics"]
    assert all(set(m) == {"key", "value", "timestamp", "step", "run_id"} for m in got), got[:3]
    expected = {(r1, i, i / 10, 100 + i) for i in range(10)} | {(r2, i * 2, i / 100, 200 + i) for i in range(6)}
    assert {(m["run_id"], m["step"], m["value"], m["timestamp"]) for m in got} == expected
    assert len(got) == len(expected)
    assert all(m["key"] == "acc" for m in got)
    for rid in (r1, r2):
        steps = [m["step"] for m in got if m["run_id"] == rid]
        assert steps == sorted(steps)

    # Sampled: at most max_results points per run, keeping the first and last step.
    body = ok_json(
        api_get(
            base_url,
            "metrics/get-history-bulk-interval",
            {"run_ids": [r1], "metric_key": "acc", "max_results": 4},
        )
    )
    steps = [m["step"] for m in body["metrics"]]
    assert 2 <= len(steps) <= 4
    assert steps[0] == 0 and steps[-1] == 9
    assert set(steps) <= set(range(10))

    # A step window.
    body = ok_json(
        api_get(
            base_url,
            "metrics/get-history-bulk-interval",
            {"run_ids": [r1], "metric_key": "acc", "max_results": 100, "start_step": 3, "end_step": 6},
        )
    )
    assert sorted(m["step"] for m in body["metrics"]) == [3, 4, 5, 6]


def test_raw_metric_history_bulk_ajax(client, experiment_id, base_url):
    r1 = client.create_run(experiment_id).info.run_id
    r2 = client.create_run(experiment_id).info.run_id
    client.log_batch(r1, metrics=[Metric("loss", 1.0 - i / 10, 10 + i, i) for i in range(4)])
    client.log_batch(r2, metrics=[Metric("loss", 2.0 + i, 20 + i, i) for i in range(3)])
    body = ok_json(
        api_get(base_url, "metrics/get-history-bulk", {"run_id": [r1, r2], "metric_key": "loss"}, prefix=AJAX)
    )
    got = body["metrics"]
    assert all(set(m) == {"key", "value", "timestamp", "step", "run_id"} for m in got), got[:3]
    expected = {(r1, 1.0 - i / 10, 10 + i, i) for i in range(4)} | {(r2, 2.0 + i, 20 + i, i) for i in range(3)}
    assert {(m["run_id"], m["value"], m["timestamp"], m["step"]) for m in got} == expected
    assert len(got) == 7


def test_raw_search_runs_shape(client, experiment_id, base_url):
    rid = client.create_run(experiment_id, run_name="shape").info.run_id
    client.log_metric(rid, "m", float("nan"))
    body = ok_json(api_post(base_url, "runs/search", {"experiment_ids": [experiment_id]}))
    assert "next_page_token" not in body or not body["next_page_token"]
    (run,) = body["runs"]
    assert run["info"]["run_id"] == rid and run["info"]["run_uuid"] == rid
    assert run["data"]["metrics"][0]["value"] == "NaN"
    # Empty experiment: an empty object, or empty list.
    empty_exp = client.create_experiment(f"empty-{rid}")
    body = ok_json(api_post(base_url, "runs/search", {"experiment_ids": [empty_exp]}))
    assert body.get("runs", []) == []


def test_last_write_of_tag_wins(client, experiment_id):
    rid = client.create_run(experiment_id).info.run_id
    client.set_tag(rid, "k", "1")
    client.set_tag(rid, "k", "2")
    client.log_batch(rid, tags=[RunTag("k", "3")])
    assert client.get_run(rid).data.tags["k"] == "3"


def test_non_string_values_are_stringified(client, experiment_id):
    rid = client.create_run(experiment_id).info.run_id
    client.log_param(rid, "int", 3)
    client.log_param(rid, "list", [1, 2])
    client.set_tag(rid, "bool", True)
    data = client.get_run(rid).data
    assert data.params["int"] == "3"
    assert data.params["list"] == "[1, 2]"
    assert data.tags["bool"] == "True"


def test_metric_values_are_float_precise(client, experiment_id):
    rid = client.create_run(experiment_id).info.run_id
    values = [0.1, 1 / 3, -2.5e-10, 123456789.123456789, 2**53 + 0.0, -0.0]
    client.log_batch(rid, metrics=[Metric(f"v{i}", v, 1, 0) for i, v in enumerate(values)])
    m = client.get_run(rid).data.metrics
    for i, v in enumerate(values):
        assert same_float(m[f"v{i}"], v)


def test_big_integers_survive(client, experiment_id):
    rid = client.create_run(experiment_id).info.run_id
    big_ts = 4_102_444_800_000  # year 2100, in ms
    big_step = 2**40
    client.log_metric(rid, "big", 1.0, timestamp=big_ts, step=big_step)
    (h,) = client.get_metric_history(rid, "big")
    assert h.timestamp == big_ts and h.step == big_step


def test_run_status_enum_values(client, experiment_id):
    rid = client.create_run(experiment_id).info.run_id
    client.update_run(rid, status=RunStatus.to_string(RunStatus.KILLED))
    assert client.get_run(rid).info.status == "KILLED"
