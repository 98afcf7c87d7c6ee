"""MLflow 3 logged models (no artifacts: create, tag, param, finalize, search, delete)."""

from __future__ import annotations

import re

import mlflow
import pytest
from mlflow.entities import LoggedModelOutput, LoggedModelStatus
from mlflow.exceptions import MlflowException

from conformance_util import api_get, assert_mlflow_error, now_ms, ok_json, unique_name

MODEL_ID_RE = re.compile(r"^m-[0-9a-f]{32}$")


def test_create_and_get_logged_model(client, experiment_id):
    run_id = client.create_run(experiment_id).info.run_id
    before = now_ms()
    model = client.create_logged_model(
        experiment_id,
        name="my-model",
        source_run_id=run_id,
        tags={"team": "ml", "dotted.key": "x"},
        params={"alpha": "0.1", "depth": "3"},
        model_type="agent",
    )
    after = now_ms()
    assert MODEL_ID_RE.match(model.model_id), model.model_id
    assert model.experiment_id == experiment_id
    assert model.name == "my-model"
    assert model.source_run_id == run_id
    assert model.model_type == "agent"
    assert model.status == LoggedModelStatus.PENDING
    assert model.tags == {"team": "ml", "dotted.key": "x"}
    assert model.params == {"alpha": "0.1", "depth": "3"}
    assert before - 1000 <= model.creation_timestamp <= after + 1000
    assert model.artifact_location
    assert model.model_id in model.artifact_location

    got = client.get_logged_model(model.model_id)
    assert got.model_id == model.model_id
    assert got.name == "my-model"
    assert got.experiment_id == experiment_id
    assert got.source_run_id == run_id
    assert got.model_type == "agent"
    assert got.status == LoggedModelStatus.PENDING
    assert got.tags == model.tags
    assert got.params == model.params
    assert got.creation_timestamp == model.creation_timestamp
    assert got.artifact_location == model.artifact_location


def test_create_without_name_generates_one(client, experiment_id):
    model = client.create_logged_model(experiment_id)
    assert model.name
    assert client.get_logged_model(model.model_id).name == model.name


def test_raw_logged_model_shape(client, experiment_id, base_url):
    model = client.create_logged_model(experiment_id, name="raw", tags={"k": "v"}, params={"p": "1"})
    body = ok_json(api_get(base_url, f"logged-models/{model.model_id}", prefix="/api/2.0/mlflow"))
    lm = body["model"]
    info = lm["info"]
    assert info["model_id"] == model.model_id
    assert info["experiment_id"] == experiment_id
    assert info["name"] == "raw"
    assert info["status"] == "LOGGED_MODEL_PENDING"
    assert isinstance(info["creation_timestamp_ms"], int)
    assert {"key": "k", "value": "v"} in info["tags"]
    assert {"key": "p", "value": "1"} in lm["data"]["params"]


def test_logged_model_tags(client, experiment_id):
    model = client.create_logged_model(experiment_id, tags={"a": "1"})
    client.set_logged_model_tags(model.model_id, {"b": "2", "a": "overwritten"})
    assert client.get_logged_model(model.model_id).tags == {"a": "overwritten", "b": "2"}
    client.delete_logged_model_tag(model.model_id, "a")
    assert client.get_logged_model(model.model_id).tags == {"b": "2"}
    # Fluent API equivalents.
    mlflow.set_logged_model_tags(model.model_id, {"c": "3"})
    mlflow.delete_logged_model_tag(model.model_id, "b")
    assert client.get_logged_model(model.model_id).tags == {"c": "3"}


def test_log_model_params(client, experiment_id):
    model = client.create_logged_model(experiment_id, params={"a": "1"})
    client.log_model_params(model.model_id, {"b": "2", "c": "3"})
    mlflow.log_model_params({"d": "4"}, model_id=model.model_id)
    assert client.get_logged_model(model.model_id).params == {"a": "1", "b": "2", "c": "3", "d": "4"}


@pytest.mark.parametrize("status", ["READY", "FAILED"])
def test_finalize_logged_model(client, experiment_id, status):
    model = client.create_logged_model(experiment_id)
    finalized = client.finalize_logged_model(model.model_id, status)
    assert finalized.status == LoggedModelStatus(status)
    got = client.get_logged_model(model.model_id)
    assert got.status == LoggedModelStatus(status)
    assert got.last_updated_timestamp >= got.creation_timestamp


def test_delete_logged_model(client, experiment_id, no_retries):
    model = client.create_logged_model(experiment_id)
    client.delete_logged_model(model.model_id)
    with pytest.raises(MlflowException) as ei:
        client.get_logged_model(model.model_id)
    assert_mlflow_error(ei, "RESOURCE_DOES_NOT_EXIST")
    assert model.model_id not in {m.model_id for m in client.search_logged_models([experiment_id])}


def test_unknown_logged_model(client, no_retries):
    with pytest.raises(MlflowException) as ei:
        client.get_logged_model("m-" + "0" * 32)
    assert_mlflow_error(ei, "RESOURCE_DOES_NOT_EXIST")


def test_metrics_logged_against_a_model(client, experiment_id):
    run_id = client.create_run(experiment_id).info.run_id
    model = client.create_logged_model(experiment_id, source_run_id=run_id)
    client.log_metric(run_id, "accuracy", 0.75, step=1, model_id=model.model_id)
    client.log_metric(run_id, "accuracy", 0.9, step=2, model_id=model.model_id)
    got = client.get_logged_model(model.model_id)
    by_step = {m.step: m for m in got.metrics if m.key == "accuracy"}
    assert {s: m.value for s, m in by_step.items()} == {1: 0.75, 2: 0.9}
    assert all(m.run_id == run_id and m.model_id == model.model_id for m in got.metrics)
    # The run sees the metric too.
    assert client.get_run(run_id).data.metrics["accuracy"] == 0.9


def test_log_outputs_links_run_to_model(client, experiment_id):
    run_id = client.create_run(experiment_id).info.run_id
    model = client.create_logged_model(experiment_id, source_run_id=run_id)
    client.log_outputs(run_id, [LoggedModelOutput(model.model_id, step=7)])
    outputs = client.get_run(run_id).outputs.model_outputs
    assert [(o.model_id, o.step) for o in outputs] == [(model.model_id, 7)]


def test_search_logged_models(client):
    exp_id = client.create_experiment(unique_name("lm-search"))
    made = {}
    for i in range(5):
        m = client.create_logged_model(
            exp_id,
            name=f"model-{i}",
            tags={"parity": "even" if i % 2 == 0 else "odd"},
            params={"idx": str(i)},
            model_type="clf" if i < 3 else "reg",
        )
        made[m.model_id] = i
        if i % 2 == 0:
            client.finalize_logged_model(m.model_id, "READY")

    everything = client.search_logged_models([exp_id])
    assert {m.model_id for m in everything} == set(made)
    # Default order: newest first.
    stamps = [m.creation_timestamp for m in everything]
    assert stamps == sorted(stamps, reverse=True)

    def names(flt, **kw):
        return sorted(m.name for m in client.search_logged_models([exp_id], filter_string=flt, **kw))

    assert names("name = 'model-3'") == ["model-3"]
    assert names("name LIKE 'model-%'") == [f"model-{i}" for i in range(5)]
    assert names("tags.parity = 'odd'") == ["model-1", "model-3"]
    assert names("params.idx = '4'") == ["model-4"]
    assert names("model_type = 'reg'") == ["model-3", "model-4"]
    assert names("model_type = 'clf' AND tags.parity = 'even'") == ["model-0", "model-2"]

    asc = client.search_logged_models([exp_id], order_by=[{"field_name": "name", "ascending": True}])
    assert [m.name for m in asc] == [f"model-{i}" for i in range(5)]
    desc = client.search_logged_models([exp_id], order_by=[{"field_name": "name", "ascending": False}])
    assert [m.name for m in desc] == [f"model-{i}" for i in reversed(range(5))]

    seen = []
    token = None
    for _ in range(10):
        page = client.search_logged_models(
            [exp_id], max_results=2, page_token=token, order_by=[{"field_name": "name", "ascending": True}]
        )
        assert len(page) <= 2
        seen.extend(m.name for m in page)
        token = page.token
        if not token:
            break
    assert seen == [f"model-{i}" for i in range(5)]

    df = mlflow.search_logged_models(experiment_ids=[exp_id])
    assert len(df) == 5
    as_list = mlflow.search_logged_models(experiment_ids=[exp_id], output_format="list")
    assert {m.model_id for m in as_list} == set(made)


@pytest.mark.cairn_only
def test_search_logged_models_by_status(client):
    # Stock MLflow stores the status as an integer and compares it with the quoted string,
    # so `status = 'READY'` never matches anything there.
    exp_id = client.create_experiment(unique_name("lm-status"))
    ready = client.create_logged_model(exp_id, name="ready")
    client.finalize_logged_model(ready.model_id, "READY")
    client.create_logged_model(exp_id, name="pending")
    got = client.search_logged_models([exp_id], filter_string="status = 'READY'")
    assert [m.name for m in got] == ["ready"]


def test_search_logged_models_by_metric(client):
    exp_id = client.create_experiment(unique_name("lm-metric"))
    run_id = client.create_run(exp_id).info.run_id
    scores = {}
    for i in range(4):
        m = client.create_logged_model(exp_id, name=f"scored-{i}", source_run_id=run_id)
        client.log_metric(run_id, "score", i / 4, model_id=m.model_id)
        scores[m.name] = i / 4
    got = client.search_logged_models([exp_id], filter_string="metrics.score >= 0.5")
    assert sorted(m.name for m in got) == sorted(n for n, s in scores.items() if s >= 0.5)
    ordered = client.search_logged_models(
        [exp_id], order_by=[{"field_name": "metrics.score", "ascending": False}]
    )
    assert [m.name for m in ordered] == sorted(scores, key=lambda n: -scores[n])


def test_search_logged_models_malformed_filter(client, experiment_id, no_retries):
    with pytest.raises(MlflowException) as ei:
        client.search_logged_models([experiment_id], filter_string="name = ")
    assert_mlflow_error(ei, "INVALID_PARAMETER_VALUE")
