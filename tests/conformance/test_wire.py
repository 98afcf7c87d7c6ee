"""Raw HTTP details the client relies on: response shapes, legacy fields, value encodings."""

from __future__ import annotations

import math

import pytest

from conformance_util import AJAX, api_get, api_post, now_ms, ok_json, unique_name


@pytest.fixture
def raw_experiment(base_url):
    body = ok_json(api_post(base_url, "experiments/create", {"name": unique_name("wire")}))
    assert set(body) == {"experiment_id"}
    assert isinstance(body["experiment_id"], str) and body["experiment_id"].isdigit()
    return body["experiment_id"]


def test_run_create_update_shapes(base_url, raw_experiment):
    start = now_ms()
    body = ok_json(
        api_post(
            base_url,
            "runs/create",
            {
                "experiment_id": raw_experiment,
                "user_id": "wire-user",
                "run_name": "wire-run",
                "start_time": start,
                "tags": [{"key": "a", "value": "b"}],
            },
        )
    )
    info = body["run"]["info"]
    rid = info["run_id"]
    assert info["run_uuid"] == rid
    assert info["experiment_id"] == raw_experiment
    assert info["user_id"] == "wire-user"
    assert info["run_name"] == "wire-run"
    assert info["status"] == "RUNNING"
    assert info["start_time"] == start
    assert info["lifecycle_stage"] == "active"
    assert info["artifact_uri"] == f"mlflow-artifacts:/{raw_experiment}/{rid}/artifacts"
    assert "end_time" not in info or info["end_time"] is None
    tags = {t["key"]: t["value"] for t in body["run"]["data"]["tags"]}
    assert tags["a"] == "b"
    assert tags["mlflow.runName"] == "wire-run"

    body = ok_json(api_post(base_url, "runs/update", {"run_id": rid, "status": "FINISHED", "end_time": start + 10}))
    ri = body["run_info"]
    assert ri["run_id"] == rid and ri["run_uuid"] == rid
    assert ri["status"] == "FINISHED"
    assert ri["end_time"] == start + 10

    body = ok_json(api_post(base_url, "runs/update", {"run_id": rid, "run_name": "wire-renamed"}))
    assert body["run_info"]["run_name"] == "wire-renamed"
    assert body["run_info"]["status"] == "FINISHED"
    got = ok_json(api_get(base_url, "runs/get", {"run_id": rid}))["run"]
    assert {"key": "mlflow.runName", "value": "wire-renamed"} in got["data"]["tags"]


def test_camel_case_fields_on_create(base_url, raw_experiment):
    start = now_ms()
    body = ok_json(
        api_post(
            base_url,
            "runs/create",
            {"experimentId": raw_experiment, "runName": "camel", "startTime": start, "userId": "u"},
        )
    )
    info = body["run"]["info"]
    assert (info["experiment_id"], info["run_name"], info["start_time"], info["user_id"]) == (
        raw_experiment,
        "camel",
        start,
        "u",
    )
    body = ok_json(
        api_post(base_url, "experiments/create", {"name": unique_name("camel"), "artifactLocation": "s3://b/camel"})
    )
    exp = ok_json(api_get(base_url, "experiments/get", {"experiment_id": body["experiment_id"]}))["experiment"]
    assert exp["artifact_location"] == "s3://b/camel"


def test_legacy_run_uuid_field(base_url, raw_experiment):
    rid = ok_json(api_post(base_url, "runs/create", {"experiment_id": raw_experiment, "start_time": now_ms()}))["run"]["info"]["run_id"]
    ok_json(api_post(base_url, "runs/set-tag", {"run_uuid": rid, "key": "legacy", "value": "yes"}))
    ok_json(api_post(base_url, "runs/log-metric", {"run_uuid": rid, "run_id": rid, "key": "m", "value": 1.0, "timestamp": 1, "step": 0}))
    got = ok_json(api_get(base_url, "runs/get", {"run_uuid": rid}))["run"]
    assert {"key": "legacy", "value": "yes"} in got["data"]["tags"]
    assert got["data"]["metrics"][0]["key"] == "m"


def test_non_finite_values_accepted_as_strings(base_url, raw_experiment):
    rid = ok_json(api_post(base_url, "runs/create", {"experiment_id": raw_experiment, "start_time": now_ms()}))["run"]["info"]["run_id"]
    ok_json(api_post(base_url, "runs/log-metric", {"run_id": rid, "key": "nan", "value": "NaN", "timestamp": 1, "step": 0}))
    ok_json(
        api_post(
            base_url,
            "runs/log-batch",
            {"run_id": rid, "metrics": [{"key": "inf", "value": "Infinity", "timestamp": 1, "step": 0}]},
        )
    )
    metrics = {m["key"]: m["value"] for m in ok_json(api_get(base_url, "runs/get", {"run_id": rid}))["run"]["data"]["metrics"]}
    assert metrics["nan"] == "NaN"
    # Stock MLflow stores +Inf as DBL_MAX; Cairn keeps Infinity.
    assert metrics["inf"] in ("Infinity", 1.7976931348623157e308)
    hist = ok_json(api_get(base_url, "metrics/get-history", {"run_id": rid, "metric_key": "nan"}))["metrics"]
    assert [h["value"] for h in hist] == ["NaN"]


def test_large_integers_are_json_numbers(base_url, raw_experiment):
    rid = ok_json(api_post(base_url, "runs/create", {"experiment_id": raw_experiment, "start_time": now_ms()}))["run"]["info"]["run_id"]
    big = 2**53 - 1
    ok_json(api_post(base_url, "runs/log-metric", {"run_id": rid, "key": "b", "value": 0.5, "timestamp": big, "step": big}))
    (m,) = ok_json(api_get(base_url, "metrics/get-history", {"run_id": rid, "metric_key": "b"}))["metrics"]
    assert m["timestamp"] == big and m["step"] == big
    assert isinstance(m["timestamp"], int) and isinstance(m["step"], int)


def test_get_experiments_search_with_query_string(base_url):
    name = unique_name("qs")
    exp_id = ok_json(api_post(base_url, "experiments/create", {"name": name}))["experiment_id"]
    body = ok_json(api_get(base_url, "experiments/search", {"max_results": 10, "filter": f"name = '{name}'"}))
    assert [e["experiment_id"] for e in body["experiments"]] == [exp_id]
    body = ok_json(api_post(base_url, "experiments/search", {"max_results": 10, "filter": f"name = '{name}'"}))
    assert [e["name"] for e in body["experiments"]] == [name]


def test_runs_search_view_type_as_enum_name(base_url, raw_experiment):
    rid = ok_json(api_post(base_url, "runs/create", {"experiment_id": raw_experiment, "start_time": now_ms()}))["run"]["info"]["run_id"]
    ok_json(api_post(base_url, "runs/delete", {"run_id": rid}))
    body = ok_json(api_post(base_url, "runs/search", {"experiment_ids": [raw_experiment]}))
    assert body.get("runs", []) == []
    for view in ("DELETED_ONLY", "ALL"):
        body = ok_json(api_post(base_url, "runs/search", {"experiment_ids": [raw_experiment], "run_view_type": view}))
        assert [r["info"]["run_id"] for r in body["runs"]] == [rid]
        assert body["runs"][0]["info"]["lifecycle_stage"] == "deleted"


def test_ajax_prefix_serves_tracking_endpoints(base_url, raw_experiment):
    body = ok_json(api_get(base_url, "experiments/get", {"experiment_id": raw_experiment}, prefix=AJAX))
    assert body["experiment"]["experiment_id"] == raw_experiment
    rid = ok_json(api_post(base_url, "runs/create", {"experiment_id": raw_experiment, "start_time": now_ms()}, prefix=AJAX))["run"]["info"]["run_id"]
    ok_json(api_post(base_url, "runs/log-metric", {"run_id": rid, "key": "x", "value": 2.0, "timestamp": 5, "step": 1}, prefix=AJAX))
    body = ok_json(api_post(base_url, "runs/search", {"experiment_ids": [raw_experiment], "max_results": 10}, prefix=AJAX))
    assert [r["info"]["run_id"] for r in body["runs"]] == [rid]
    assert body["runs"][0]["data"]["metrics"] == [{"key": "x", "value": 2.0, "timestamp": 5, "step": 1}]


def test_delete_run_twice_and_restore_twice_are_idempotent(base_url, raw_experiment):
    rid = ok_json(api_post(base_url, "runs/create", {"experiment_id": raw_experiment, "start_time": now_ms()}))["run"]["info"]["run_id"]
    ok_json(api_post(base_url, "runs/delete", {"run_id": rid}))
    ok_json(api_post(base_url, "runs/delete", {"run_id": rid}))
    ok_json(api_post(base_url, "runs/restore", {"run_id": rid}))
    ok_json(api_post(base_url, "runs/restore", {"run_id": rid}))
    info = ok_json(api_get(base_url, "runs/get", {"run_id": rid}))["run"]["info"]
    assert info["lifecycle_stage"] == "active"


def test_metric_value_types(base_url, raw_experiment):
    rid = ok_json(api_post(base_url, "runs/create", {"experiment_id": raw_experiment, "start_time": now_ms()}))["run"]["info"]["run_id"]
    ok_json(api_post(base_url, "runs/log-metric", {"run_id": rid, "key": "int", "value": 3, "timestamp": 1, "step": 0}))
    (m,) = ok_json(api_get(base_url, "metrics/get-history", {"run_id": rid, "metric_key": "int"}))["metrics"]
    assert m["value"] == 3.0 and not (isinstance(m["value"], float) and math.isnan(m["value"]))
