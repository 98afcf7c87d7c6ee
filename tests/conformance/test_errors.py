"""Errors: MlflowException.error_code through the client, and status + JSON body on the wire."""

from __future__ import annotations

import pytest
import requests
from mlflow.entities import Metric, Param
from mlflow.exceptions import MlflowException

from conformance_util import (
    AJAX,
    API,
    api_get,
    api_post,
    assert_error_response,
    assert_mlflow_error,
    now_ms,
    ok_json,
    unique_name,
)

MISSING_RUN = "0" * 32
MISSING_EXPERIMENT = "987654321"


@pytest.fixture
def run_id(client, experiment_id):
    return client.create_run(experiment_id).info.run_id


# --- through the client -------------------------------------------------------------------


def test_unknown_experiment_id(client, no_retries):
    with pytest.raises(MlflowException) as ei:
        client.get_experiment(MISSING_EXPERIMENT)
    assert_mlflow_error(ei, "RESOURCE_DOES_NOT_EXIST")
    for call in (
        lambda: client.delete_experiment(MISSING_EXPERIMENT),
        lambda: client.rename_experiment(MISSING_EXPERIMENT, unique_name("x")),
        lambda: client.set_experiment_tag(MISSING_EXPERIMENT, "k", "v"),
        lambda: client.create_run(MISSING_EXPERIMENT),
    ):
        with pytest.raises(MlflowException) as ei:
            call()
        assert_mlflow_error(ei, "RESOURCE_DOES_NOT_EXIST")


def test_unknown_run(client, no_retries):
    calls = [
        lambda: client.get_run(MISSING_RUN),
        lambda: client.log_metric(MISSING_RUN, "m", 1.0),
        lambda: client.log_param(MISSING_RUN, "p", "v"),
        lambda: client.set_tag(MISSING_RUN, "t", "v"),
        lambda: client.log_batch(MISSING_RUN, metrics=[Metric("m", 1.0, 1, 0)]),
        lambda: client.update_run(MISSING_RUN, status="FINISHED"),
        lambda: client.delete_run(MISSING_RUN),
        lambda: client.restore_run(MISSING_RUN),
    ]
    for call in calls:
        with pytest.raises(MlflowException) as ei:
            call()
        assert_mlflow_error(ei, "RESOURCE_DOES_NOT_EXIST")


def test_duplicate_experiment_name(client, no_retries):
    name = unique_name("dup")
    client.create_experiment(name)
    with pytest.raises(MlflowException) as ei:
        client.create_experiment(name)
    assert_mlflow_error(ei, "RESOURCE_ALREADY_EXISTS")


def test_rename_to_taken_name_fails_and_changes_nothing(client, no_retries):
    taken = unique_name("taken")
    client.create_experiment(taken)
    mine = unique_name("mine")
    exp_id = client.create_experiment(mine)
    with pytest.raises(MlflowException):
        client.rename_experiment(exp_id, taken)
    assert client.get_experiment(exp_id).name == mine


@pytest.mark.cairn_only
def test_rename_to_taken_name_is_resource_already_exists(client, no_retries):
    # Stock MLflow answers BAD_REQUEST with a leaked SQL IntegrityError text here.
    taken = unique_name("taken")
    client.create_experiment(taken)
    exp_id = client.create_experiment(unique_name("mine"))
    with pytest.raises(MlflowException) as ei:
        client.rename_experiment(exp_id, taken)
    assert_mlflow_error(ei, "RESOURCE_ALREADY_EXISTS")
    assert "sqlite" not in ei.value.message.lower() and "INSERT" not in ei.value.message


def test_experiment_name_too_long(client, no_retries):
    with pytest.raises(MlflowException) as ei:
        client.create_experiment("x" * 501)
    assert_mlflow_error(ei, "INVALID_PARAMETER_VALUE")


def test_non_numeric_experiment_id(client, no_retries):
    with pytest.raises(MlflowException) as ei:
        client.get_experiment("not-a-number")
    assert_mlflow_error(ei, "INVALID_PARAMETER_VALUE")


@pytest.mark.parametrize(
    "flt",
    [
        "metrics.x >",
        "metrics.x = 'a'",
        "params.x = 1",
        "params.x > 'a'",
        "tags.t < 'b'",
        "bogus.x = 1",
        "attributes.nope = 'x'",
        "metrics.x LIKE '1'",
        "metrics.x IS NULL",
        "start_time > 'a'",
        "params.x == 'a'",
        "metrics.x > 1 ; metrics.y > 2",
        "datasets.bogus = 'a'",
    ],
)
def test_malformed_filter(client, experiment_id, no_retries, flt):
    with pytest.raises(MlflowException) as ei:
        client.search_runs([experiment_id], filter_string=flt)
    assert_mlflow_error(ei, "INVALID_PARAMETER_VALUE")


def test_or_and_parentheses_are_rejected_by_mlflow_grammar(client, experiment_id, no_retries):
    """Stock MLflow has no OR; Cairn accepts it (see test_search cairn_only tests). Here we only
    check that something unparseable in both grammars is INVALID_PARAMETER_VALUE."""
    with pytest.raises(MlflowException) as ei:
        client.search_runs([experiment_id], filter_string="metrics.x > 1 OR")
    assert_mlflow_error(ei, "INVALID_PARAMETER_VALUE")
    with pytest.raises(MlflowException) as ei:
        client.search_runs([experiment_id], filter_string="(metrics.x > 1")
    assert_mlflow_error(ei, "INVALID_PARAMETER_VALUE")


@pytest.mark.parametrize(
    "order_by",
    [["metrics.x SIDEWAYS"], ["foo.x"], ["attributes.nope"], ["metrics.x ASC DESC"]],
)
def test_malformed_order_by(client, experiment_id, no_retries, order_by):
    with pytest.raises(MlflowException) as ei:
        client.search_runs([experiment_id], order_by=order_by)
    assert_mlflow_error(ei, "INVALID_PARAMETER_VALUE")


@pytest.mark.cairn_only
def test_duplicate_order_by_key_is_invalid_parameter(client, experiment_id, no_retries):
    # Stock MLflow raises an MlflowException without an error code here: HTTP 500 INTERNAL_ERROR.
    with pytest.raises(MlflowException) as ei:
        client.search_runs([experiment_id], order_by=["metrics.x ASC", "metrics.x DESC"])
    assert_mlflow_error(ei, "INVALID_PARAMETER_VALUE")


def test_search_max_results_bounds(client, experiment_id, no_retries):
    for bad in (0, -1, 50001):
        with pytest.raises(MlflowException) as ei:
            client.search_runs([experiment_id], max_results=bad)
        assert_mlflow_error(ei, "INVALID_PARAMETER_VALUE")
    client.search_runs([experiment_id], max_results=50000)


def test_bad_page_token(client, experiment_id, no_retries):
    with pytest.raises(MlflowException) as ei:
        client.search_runs([experiment_id], page_token="garbage!!")
    assert_mlflow_error(ei, "INVALID_PARAMETER_VALUE")


def test_search_experiments_malformed_filter(client, no_retries):
    with pytest.raises(MlflowException) as ei:
        client.search_experiments(filter_string="name = ")
    assert_mlflow_error(ei, "INVALID_PARAMETER_VALUE")
    with pytest.raises(MlflowException) as ei:
        client.search_experiments(filter_string="bogus.name = 'a'")
    assert_mlflow_error(ei, "INVALID_PARAMETER_VALUE")


def test_delete_missing_tags(client, run_id, experiment_id, no_retries):
    with pytest.raises(MlflowException) as ei:
        client.delete_tag(run_id, "never-set")
    assert_mlflow_error(ei, "RESOURCE_DOES_NOT_EXIST")
    with pytest.raises(MlflowException) as ei:
        client.delete_experiment_tag(experiment_id, "never-set")
    assert_mlflow_error(ei, "RESOURCE_DOES_NOT_EXIST")


def test_restore_active_experiment_is_an_error(client, experiment_id, no_retries):
    with pytest.raises(MlflowException) as ei:
        client.restore_experiment(experiment_id)
    assert_mlflow_error(ei, "RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE", "INVALID_STATE")


def test_key_too_long_through_client(client, run_id, no_retries):
    with pytest.raises(MlflowException) as ei:
        client.log_metric(run_id, "k" * 251, 1.0)
    assert_mlflow_error(ei, "INVALID_PARAMETER_VALUE")
    with pytest.raises(MlflowException) as ei:
        client.log_param(run_id, "k" * 251, "v")
    assert_mlflow_error(ei, "INVALID_PARAMETER_VALUE")
    with pytest.raises(MlflowException) as ei:
        client.set_tag(run_id, "k" * 251, "v")
    assert_mlflow_error(ei, "INVALID_PARAMETER_VALUE")
    # 250 is fine.
    client.log_metric(run_id, "k" * 250, 1.0)
    assert client.get_run(run_id).data.metrics["k" * 250] == 1.0


def test_long_values_are_truncated_by_client(client, run_id):
    client.log_param(run_id, "long", "v" * 7000)
    client.set_tag(run_id, "long", "t" * 9000)
    data = client.get_run(run_id).data
    assert data.params["long"] == "v" * 6000
    assert data.tags["long"] == "t" * 8000


def test_duplicate_param_keys_in_one_batch(client, run_id, no_retries):
    with pytest.raises(MlflowException) as ei:
        client.log_batch(run_id, params=[Param("d", "1"), Param("d", "2")])
    assert_mlflow_error(ei, "INVALID_PARAMETER_VALUE")
    assert client.get_run(run_id).data.params == {}


# --- on the wire --------------------------------------------------------------------------


def test_error_statuses_on_the_wire(base_url, run_id):
    assert_error_response(
        api_get(base_url, "experiments/get", {"experiment_id": MISSING_EXPERIMENT}), 404, "RESOURCE_DOES_NOT_EXIST"
    )
    assert_error_response(api_get(base_url, "runs/get", {"run_id": MISSING_RUN}), 404, "RESOURCE_DOES_NOT_EXIST")
    assert_error_response(
        api_get(base_url, "experiments/get-by-name", {"experiment_name": unique_name("nope")}),
        404,
        "RESOURCE_DOES_NOT_EXIST",
    )
    name = unique_name("wire")
    ok_json(api_post(base_url, "experiments/create", {"name": name}))
    assert_error_response(api_post(base_url, "experiments/create", {"name": name}), 400, "RESOURCE_ALREADY_EXISTS")
    assert_error_response(api_get(base_url, "runs/get", {}), 400, "INVALID_PARAMETER_VALUE")
    assert_error_response(api_post(base_url, "experiments/create", {}), 400, "INVALID_PARAMETER_VALUE")
    assert_error_response(
        api_post(base_url, "experiments/create", {"name": 5}), 400, "INVALID_PARAMETER_VALUE"
    )
    assert_error_response(
        api_post(base_url, "runs/search", {"experiment_ids": ["0"], "filter": "metrics.x >"}),
        400,
        "INVALID_PARAMETER_VALUE",
    )
    # Same answers on the /ajax-api prefix.
    assert_error_response(
        api_get(base_url, "runs/get", {"run_id": MISSING_RUN}, prefix=AJAX), 404, "RESOURCE_DOES_NOT_EXIST"
    )


def test_raw_log_batch_limits(base_url, run_id):
    t = now_ms()
    too_many_metrics = [{"key": f"m{i}", "value": 1.0, "timestamp": t, "step": 0} for i in range(1001)]
    body = assert_error_response(
        api_post(base_url, "runs/log-batch", {"run_id": run_id, "metrics": too_many_metrics}),
        400,
        "INVALID_PARAMETER_VALUE",
    )
    assert "1000" in body["message"]
    too_many_params = [{"key": f"p{i}", "value": "1"} for i in range(101)]
    assert_error_response(
        api_post(base_url, "runs/log-batch", {"run_id": run_id, "params": too_many_params}),
        400,
        "INVALID_PARAMETER_VALUE",
    )
    too_many_tags = [{"key": f"t{i}", "value": "1"} for i in range(101)]
    assert_error_response(
        api_post(base_url, "runs/log-batch", {"run_id": run_id, "tags": too_many_tags}),
        400,
        "INVALID_PARAMETER_VALUE",
    )
    # Nothing of the rejected batches was written.
    data = ok_json(api_get(base_url, "runs/get", {"run_id": run_id}))["run"]["data"]
    assert not data.get("metrics") and not data.get("params")
    assert all(t["key"].startswith("mlflow.") for t in data.get("tags", []))
    # Exactly at the limits is fine.
    ok_json(api_post(base_url, "runs/log-batch", {"run_id": run_id, "metrics": too_many_metrics[:1000]}))
    ok_json(api_post(base_url, "runs/log-batch", {"run_id": run_id, "params": too_many_params[:100]}))


def test_raw_key_validation(base_url, run_id):
    t = now_ms()
    for key in ("k" * 251, "../escape", "/absolute"):
        assert_error_response(
            api_post(base_url, "runs/log-metric", {"run_id": run_id, "key": key, "value": 1.0, "timestamp": t, "step": 0}),
            400,
            "INVALID_PARAMETER_VALUE",
        )
    assert_error_response(
        api_post(base_url, "runs/log-parameter", {"run_id": run_id, "key": "k" * 251, "value": "v"}),
        400,
        "INVALID_PARAMETER_VALUE",
    )
    assert_error_response(
        api_post(base_url, "runs/set-tag", {"run_id": run_id, "key": "k" * 251, "value": "v"}),
        400,
        "INVALID_PARAMETER_VALUE",
    )


def test_raw_missing_or_mistyped_fields(base_url, run_id):
    t = now_ms()
    # value missing / not a number / timestamp missing
    for body in (
        {"run_id": run_id, "key": "m", "timestamp": t, "step": 0},
        {"run_id": run_id, "key": "m", "value": "abc", "timestamp": t, "step": 0},
        {"run_id": run_id, "key": "m", "value": 1.0},
    ):
        assert_error_response(api_post(base_url, "runs/log-metric", body), 400, "INVALID_PARAMETER_VALUE")


def test_bad_run_id_format(base_url, client, no_retries):
    t = now_ms()
    for bad in ("bad!id", "-leading-dash", "a" * 300):
        assert_error_response(
            api_post(
                base_url,
                "runs/log-batch",
                {"run_id": bad, "metrics": [{"key": "a", "value": 1.0, "timestamp": t, "step": 0}]},
            ),
            400,
            "INVALID_PARAMETER_VALUE",
        )
    with pytest.raises(MlflowException) as ei:
        client.log_batch("bad!id", metrics=[Metric("a", 1.0, t, 0)])
    assert_mlflow_error(ei, "INVALID_PARAMETER_VALUE")


def test_unknown_endpoint_is_404(base_url):
    for path in (f"{API}/no-such-endpoint", f"{API}/runs/no-such-verb", f"{AJAX}/no-such-endpoint"):
        resp = requests.get(f"{base_url}{path}", timeout=30)
        assert resp.status_code == 404, (path, resp.status_code, resp.text[:300])
        resp = requests.post(f"{base_url}{path}", json={}, timeout=30)
        assert resp.status_code == 404, (path, resp.status_code, resp.text[:300])


@pytest.mark.cairn_only
def test_unknown_endpoint_has_endpoint_not_found_body(base_url):
    # Stock MLflow answers Flask's HTML 404 page; the registry client's endpoint fallback needs
    # the JSON body with ENDPOINT_NOT_FOUND.
    for path in (f"{API}/no-such-endpoint", f"{AJAX}/no-such-endpoint", "/api/2.0/mlflow/runs/no-such-verb"):
        for method in ("GET", "POST"):
            resp = requests.request(method, f"{base_url}{path}", json={} if method == "POST" else None, timeout=30)
            assert_error_response(resp, 404, "ENDPOINT_NOT_FOUND")


def test_malformed_json_body(base_url):
    resp = requests.post(
        f"{base_url}{API}/experiments/create",
        data="{not json",
        headers={"Content-Type": "application/json"},
        timeout=30,
    )
    # Stock MLflow answers INVALID_PARAMETER_VALUE (it reads the body as empty); BAD_REQUEST
    # and MALFORMED_REQUEST are also reasonable answers.
    assert_error_response(resp, 400, "INVALID_PARAMETER_VALUE", "BAD_REQUEST", "MALFORMED_REQUEST")


@pytest.mark.cairn_only
def test_malformed_json_body_on_every_endpoint(base_url):
    # Stock MLflow answers an HTML 500 for a truncated JSON body on runs/log-batch.
    resp = requests.post(
        f"{base_url}{API}/runs/log-batch",
        data='{"run_id": "abc", "metrics": [',
        headers={"Content-Type": "application/json"},
        timeout=30,
    )
    assert_error_response(resp, 400, "INVALID_PARAMETER_VALUE", "BAD_REQUEST", "MALFORMED_REQUEST")


@pytest.mark.cairn_only
def test_non_object_json_body_is_400(base_url):
    # Stock MLflow crashes with an HTML 500 on a JSON array body.
    resp = requests.post(
        f"{base_url}{API}/experiments/create", data="[1, 2]", headers={"Content-Type": "application/json"}, timeout=30
    )
    assert_error_response(resp, 400, "INVALID_PARAMETER_VALUE", "BAD_REQUEST", "MALFORMED_REQUEST")


def test_errors_are_json(base_url):
    resp = api_get(base_url, "runs/get", {"run_id": MISSING_RUN})
    assert resp.headers.get("Content-Type", "").startswith("application/json")


def test_health_and_version(base_url):
    resp = requests.get(f"{base_url}/health", timeout=10)
    assert resp.status_code == 200
    assert resp.text.strip() == "OK"
    resp = requests.get(f"{base_url}/version", timeout=10)
    assert resp.status_code == 200
    from packaging.version import Version

    # The client gates newer features (OTLP traces) on this being >= 3.4.
    assert Version(resp.text.strip()) >= Version("3.4")
