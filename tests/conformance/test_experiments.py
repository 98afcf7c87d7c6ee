"""Experiments through MlflowClient and the fluent API."""

from __future__ import annotations

import mlflow
import pytest
from mlflow.entities import LifecycleStage, ViewType
from mlflow.exceptions import MlflowException

from conformance_util import api_get, assert_mlflow_error, now_ms, ok_json, unique_name


def test_default_experiment_exists(client):
    exp = client.get_experiment("0")
    assert exp.experiment_id == "0"
    assert exp.name == "Default"
    assert exp.lifecycle_stage == LifecycleStage.ACTIVE
    by_name = client.get_experiment_by_name("Default")
    assert by_name is not None and by_name.experiment_id == "0"


def test_create_experiment_with_tags_and_artifact_location(client):
    name = unique_name("create")
    location = f"s3://conformance-bucket/{unique_name('loc')}"
    before = now_ms()
    exp_id = client.create_experiment(
        name, artifact_location=location, tags={"team": "search", "dotted.key": "v 1"}
    )
    after = now_ms()
    assert isinstance(exp_id, str) and exp_id.isdigit()

    exp = client.get_experiment(exp_id)
    assert exp.experiment_id == exp_id
    assert exp.name == name
    assert exp.artifact_location == location
    assert exp.lifecycle_stage == LifecycleStage.ACTIVE
    assert exp.tags["team"] == "search"
    assert exp.tags["dotted.key"] == "v 1"
    assert before - 1000 <= exp.creation_time <= after + 1000
    assert exp.last_update_time >= exp.creation_time


def test_create_experiment_default_artifact_location(client):
    exp_id = client.create_experiment(unique_name("defloc"))
    exp = client.get_experiment(exp_id)
    assert exp.artifact_location == f"mlflow-artifacts:/{exp_id}"


def test_experiment_ids_are_distinct_and_increasing(client):
    ids = [client.create_experiment(unique_name("ids")) for _ in range(3)]
    assert len(set(ids)) == 3
    assert [int(i) for i in ids] == sorted(int(i) for i in ids)


def test_get_experiment_by_name(client):
    name = unique_name("byname")
    exp_id = client.create_experiment(name)
    exp = client.get_experiment_by_name(name)
    assert exp is not None
    assert exp.experiment_id == exp_id
    assert exp.name == name


def test_get_experiment_by_name_missing_is_none(client):
    assert client.get_experiment_by_name(unique_name("missing")) is None
    assert mlflow.get_experiment_by_name(unique_name("missing")) is None


def test_raw_get_experiment_shape(client, base_url):
    name = unique_name("raw")
    exp_id = client.create_experiment(name, tags={"k": "v"})
    body = ok_json(api_get(base_url, "experiments/get", {"experiment_id": exp_id}))
    exp = body["experiment"]
    assert exp["experiment_id"] == exp_id
    assert exp["name"] == name
    assert exp["lifecycle_stage"] == "active"
    # 64-bit integers are JSON numbers, not strings.
    assert isinstance(exp["creation_time"], int)
    assert isinstance(exp["last_update_time"], int)
    assert {"key": "k", "value": "v"} in exp["tags"]

    by_name = ok_json(api_get(base_url, "experiments/get-by-name", {"experiment_name": name}))
    assert by_name["experiment"]["experiment_id"] == exp_id


def test_set_experiment_creates_then_reuses(tracking_uri):
    name = unique_name("setexp")
    assert mlflow.get_experiment_by_name(name) is None
    first = mlflow.set_experiment(name)
    assert first.name == name
    assert first.lifecycle_stage == LifecycleStage.ACTIVE
    second = mlflow.set_experiment(name)
    assert second.experiment_id == first.experiment_id
    by_id = mlflow.set_experiment(experiment_id=first.experiment_id)
    assert by_id.name == name
    with mlflow.start_run() as run:
        assert run.info.experiment_id == first.experiment_id


def test_set_experiment_rejects_deleted(client, no_retries):
    name = unique_name("setdel")
    exp_id = client.create_experiment(name)
    client.delete_experiment(exp_id)
    with pytest.raises(MlflowException) as ei:
        mlflow.set_experiment(name)
    assert_mlflow_error(ei, "INVALID_PARAMETER_VALUE")


def test_rename_experiment(client):
    old = unique_name("old")
    new = unique_name("new")
    exp_id = client.create_experiment(old)
    client.rename_experiment(exp_id, new)
    assert client.get_experiment(exp_id).name == new
    assert client.get_experiment_by_name(new).experiment_id == exp_id
    assert client.get_experiment_by_name(old) is None


def test_set_and_delete_experiment_tag(client):
    exp_id = client.create_experiment(unique_name("tags"))
    client.set_experiment_tag(exp_id, "a", "1")
    client.set_experiment_tag(exp_id, "b", "2")
    client.set_experiment_tag(exp_id, "a", "overwritten")
    tags = client.get_experiment(exp_id).tags
    assert tags["a"] == "overwritten"
    assert tags["b"] == "2"
    client.delete_experiment_tag(exp_id, "a")
    tags = client.get_experiment(exp_id).tags
    assert "a" not in tags
    assert tags["b"] == "2"


def test_fluent_experiment_tags(fluent_experiment, client):
    mlflow.set_experiment_tags({"x": "1", "y": "2"})
    mlflow.set_experiment_tag("z", "3")
    mlflow.delete_experiment_tag("y")
    tags = client.get_experiment(fluent_experiment.experiment_id).tags
    assert tags["x"] == "1" and tags["z"] == "3"
    assert "y" not in tags


def test_delete_and_restore_experiment(client):
    name = unique_name("delres")
    exp_id = client.create_experiment(name)
    run = client.create_run(exp_id)

    client.delete_experiment(exp_id)
    exp = client.get_experiment(exp_id)
    assert exp.lifecycle_stage == LifecycleStage.DELETED
    # A deleted experiment is still found by id and by name.
    assert client.get_experiment_by_name(name).lifecycle_stage == LifecycleStage.DELETED
    # Deleting an experiment deletes its runs.
    assert client.get_run(run.info.run_id).info.lifecycle_stage == LifecycleStage.DELETED

    active = {e.experiment_id for e in client.search_experiments(view_type=ViewType.ACTIVE_ONLY, max_results=50000)}
    deleted = {e.experiment_id for e in client.search_experiments(view_type=ViewType.DELETED_ONLY, max_results=50000)}
    every = {e.experiment_id for e in client.search_experiments(view_type=ViewType.ALL, max_results=50000)}
    assert exp_id not in active
    assert exp_id in deleted
    assert exp_id in every
    assert "0" in active and "0" not in deleted

    client.restore_experiment(exp_id)
    assert client.get_experiment(exp_id).lifecycle_stage == LifecycleStage.ACTIVE
    assert client.get_run(run.info.run_id).info.lifecycle_stage == LifecycleStage.ACTIVE


def test_deleted_experiment_name_stays_taken(client, no_retries):
    name = unique_name("taken")
    exp_id = client.create_experiment(name)
    client.delete_experiment(exp_id)
    with pytest.raises(MlflowException) as ei:
        client.create_experiment(name)
    assert_mlflow_error(ei, "RESOURCE_ALREADY_EXISTS")


def test_deleted_experiment_rejects_new_runs(client, no_retries):
    exp_id = client.create_experiment(unique_name("norun"))
    client.delete_experiment(exp_id)
    with pytest.raises(MlflowException) as ei:
        client.create_run(exp_id)
    assert_mlflow_error(ei, "INVALID_PARAMETER_VALUE", "INVALID_STATE")


@pytest.fixture(scope="module")
def search_family(client):
    """Five experiments sharing a unique prefix, with tags, two of them deleted at the end."""
    prefix = unique_name("fam")
    names = [f"{prefix}-{i}" for i in range(5)]
    ids = []
    for i, name in enumerate(names):
        ids.append(
            client.create_experiment(
                name, tags={"parity": "even" if i % 2 == 0 else "odd", "idx": str(i), "Team": "Core"}
            )
        )
    client.delete_experiment(ids[3])
    client.delete_experiment(ids[4])
    return prefix, names, ids


def _names(exps):
    return [e.name for e in exps]


def test_search_experiments_like_and_view_type(client, search_family):
    prefix, names, ids = search_family
    flt = f"name LIKE '{prefix}%'"
    active = client.search_experiments(filter_string=flt)
    assert sorted(_names(active)) == sorted(names[:3])
    deleted = client.search_experiments(filter_string=flt, view_type=ViewType.DELETED_ONLY)
    assert sorted(_names(deleted)) == sorted(names[3:])
    every = client.search_experiments(filter_string=flt, view_type=ViewType.ALL)
    assert sorted(_names(every)) == sorted(names)
    # Also through the fluent API.
    assert sorted(_names(mlflow.search_experiments(filter_string=flt))) == sorted(names[:3])


def test_search_experiments_filters(client, search_family):
    prefix, names, ids = search_family
    base = f"name LIKE '{prefix}%'"
    got = client.search_experiments(filter_string=f"{base} AND tags.parity = 'even'", view_type=ViewType.ALL)
    assert sorted(_names(got)) == sorted([names[0], names[2], names[4]])
    got = client.search_experiments(filter_string=f"name = '{names[1]}'")
    assert _names(got) == [names[1]]
    got = client.search_experiments(filter_string=f"name ILIKE '{prefix.upper()}-1'")
    assert _names(got) == [names[1]]
    got = client.search_experiments(filter_string=f"{base} AND tags.`idx` != '0'")
    assert sorted(_names(got)) == sorted(names[1:3])
    got = client.search_experiments(filter_string=f"{base} AND tags.Team LIKE 'Co%'")
    assert sorted(_names(got)) == sorted(names[:3])
    got = client.search_experiments(filter_string=f"{base} AND tags.Team LIKE 'co%'")
    assert got == []


def test_search_experiments_order_by(client, search_family):
    prefix, names, ids = search_family
    flt = f"name LIKE '{prefix}%'"
    asc = client.search_experiments(filter_string=flt, order_by=["name ASC"], view_type=ViewType.ALL)
    assert _names(asc) == sorted(names)
    desc = client.search_experiments(filter_string=flt, order_by=["name DESC"], view_type=ViewType.ALL)
    assert _names(desc) == sorted(names, reverse=True)
    # Default ordering: newest first (creation_time DESC, then experiment_id).
    default = client.search_experiments(filter_string=flt, view_type=ViewType.ALL)
    got = [(e.creation_time, e.experiment_id) for e in default]
    assert [c for c, _ in got] == sorted((c for c, _ in got), reverse=True)
    by_id = client.search_experiments(filter_string=flt, order_by=["experiment_id DESC"], view_type=ViewType.ALL)
    assert [e.experiment_id for e in by_id] == sorted(ids, key=int, reverse=True)


def test_search_experiments_pagination(client, search_family):
    prefix, names, ids = search_family
    flt = f"name LIKE '{prefix}%'"
    seen = []
    token = None
    pages = 0
    while True:
        page = client.search_experiments(
            filter_string=flt, view_type=ViewType.ALL, max_results=2, order_by=["name ASC"], page_token=token
        )
        assert len(page) <= 2
        seen.extend(_names(page))
        pages += 1
        token = page.token
        if not token:
            break
        assert pages < 10, "pagination does not terminate"
    assert seen == sorted(names)
    assert pages == 3
