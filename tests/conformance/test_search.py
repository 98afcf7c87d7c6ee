"""search_runs over a few thousand runs: every identifier alias, operator, ordering rule and
pagination, checked against expectations computed in Python from what was logged.

The corpus is created once per module through the raw REST API from a thread pool (that is
much faster than the fluent API). Its size is ``CONFORMANCE_SEARCH_RUNS`` (default 2000).
"""

from __future__ import annotations

import math
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import mlflow
import pytest
import requests
from mlflow.entities import ViewType

from conformance_util import API, now_ms, run_ids, search_all_runs, unique_name

N_RUNS = int(os.environ.get("CONFORMANCE_SEARCH_RUNS", "2000"))
THREADS = 8

MODELS = ["rf", "svm", "lin", "Tree"]
TEAMS = ["Alpha", "alpha", "beta"]
USERS = ["alice", "bob", "carol", "Dave"]


@dataclass
class R:
    """What was logged to one run, as the expected side of every comparison."""

    i: int
    run_id: str = ""
    name: str = ""
    user: str = ""
    start: int = 0
    end: int | None = None
    status: str = "RUNNING"
    deleted: bool = False
    tags: dict = field(default_factory=dict)
    params: dict = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)  # latest value per key
    datasets: list = field(default_factory=list)  # (name, digest, context)


def _plan(i: int, base: int) -> R:
    r = R(i=i)
    r.name = f"Special-{i}" if i % 50 == 0 else f"run-{i:05d}"
    r.user = USERS[i % 4]
    r.start = base + i * 1000
    r.tags = {
        "mlflow.runName": r.name,
        "group": f"g{i % 7}",
        "team": TEAMS[i % 3],
        "dotted.tag": f"d{i % 2}",
    }
    if i % 5 == 0:
        r.tags["note"] = f"note {i}"
    if i % 4 == 0:
        r.tags["space tag"] = "s"
    r.params = {
        "model": MODELS[i % 4],
        "lr": str((i % 10) / 100),
        "opt.name": "adam" if i % 2 else "sgd",
    }
    if i % 9 == 0:
        r.params["only_some"] = f"v{i}"
    r.metrics = {
        "loss": ((i * 37) % 1000) / 10,  # an earlier 999.0 at step 0 is superseded
        "val.loss": float(i % 11),
        "nanny": math.nan if i % 13 == 0 else float(i % 17),
    }
    if i % 3 != 0:
        r.metrics["acc"] = i / N_RUNS
    if i % 2 == 0:
        r.metrics["train loss"] = i * 0.5
    if i % 5 == 0:
        r.status, r.end = "FAILED", r.start + 500
    elif i % 5 == 1:
        r.status, r.end = "FINISHED", r.start + 500
    elif i % 5 == 2 and i % 10 == 7:
        r.status, r.end = "KILLED", r.start + 500
    if i % 100 in (0, 1):
        r.datasets = [("ds_a" if i % 100 == 0 else "ds_b", f"dg{i % 3}", "train" if i % 200 < 100 else "eval")]
    r.deleted = i % 250 == 7
    return r


def _metric_json(v: float):
    return "NaN" if math.isnan(v) else v


class _Creator:
    def __init__(self, base_url: str, exp_id: str):
        self.base_url = base_url
        self.exp_id = exp_id
        self.local = threading.local()

    def _post(self, path: str, body: dict) -> dict:
        s = getattr(self.local, "session", None)
        if s is None:
            s = self.local.session = requests.Session()
        resp = s.post(f"{self.base_url}{API}/{path}", json=body, timeout=120)
        assert resp.status_code == 200, f"{path}: {resp.status_code} {resp.text[:500]}"
        return resp.json()

    def create(self, r: R) -> R:
        tags = [{"key": k, "value": v} for k, v in r.tags.items() if k != "mlflow.runName"]
        info = self._post(
            "runs/create",
            {
                "experiment_id": self.exp_id,
                "user_id": r.user,
                "run_name": r.name,
                "start_time": r.start,
                "tags": tags,
            },
        )["run"]["info"]
        r.run_id = info["run_id"]
        metrics = [{"key": "loss", "value": 999.0, "timestamp": 1, "step": 0}]
        metrics += [
            {"key": k, "value": _metric_json(v), "timestamp": 2, "step": 1} for k, v in r.metrics.items()
        ]
        self._post(
            "runs/log-batch",
            {
                "run_id": r.run_id,
                "metrics": metrics,
                "params": [{"key": k, "value": v} for k, v in r.params.items()],
            },
        )
        if r.end is not None:
            self._post("runs/update", {"run_id": r.run_id, "status": r.status, "end_time": r.end})
        for name, digest, context in r.datasets:
            self._post(
                "runs/log-inputs",
                {
                    "run_id": r.run_id,
                    "datasets": [
                        {
                            "tags": [{"key": "mlflow.data.context", "value": context}],
                            "dataset": {
                                "name": name,
                                "digest": digest,
                                "source_type": "local",
                                "source": '{"uri": "/tmp/x"}',
                            },
                        }
                    ],
                },
            )
        if r.deleted:
            self._post("runs/delete", {"run_id": r.run_id})
        return r


@pytest.fixture(scope="module")
def corpus(base_url, client):
    exp_id = client.create_experiment(unique_name("search-corpus"))
    base = now_ms() - (N_RUNS + 100) * 1000
    plans = [_plan(i, base) for i in range(N_RUNS)]
    creator = _Creator(base_url, exp_id)
    with ThreadPoolExecutor(THREADS) as pool:
        runs = list(pool.map(creator.create, plans))
    assert len({r.run_id for r in runs}) == N_RUNS
    return exp_id, runs, base


def active(corpus):
    return [r for r in corpus[1] if not r.deleted]


def search_ids(client, corpus, flt, order_by=None, view=ViewType.ACTIVE_ONLY):
    return run_ids(search_all_runs(client, [corpus[0]], flt, order_by=order_by, run_view_type=view))


def _like(value: str, pattern: str, ci=False) -> bool:
    import re

    rx = "".join(".*" if c == "%" else "." if c == "_" else re.escape(c) for c in pattern)
    return re.fullmatch(rx, value, re.S | (re.I if ci else 0)) is not None


def _m(r, k):
    return r.metrics.get(k)


def _num(r, k):
    """A metric value usable in a numeric comparison: None if missing or NaN."""
    v = r.metrics.get(k)
    return None if v is None or math.isnan(v) else v


# (filter, predicate over R). A clause on a missing key never matches (except IS NULL).
FILTER_CASES = [
    # metrics, every alias and quoting style
    ("metrics.loss > 50", lambda r: r.metrics["loss"] > 50),
    ("metric.loss >= 50.5", lambda r: r.metrics["loss"] >= 50.5),
    ("metrics.`loss` < 10", lambda r: r.metrics["loss"] < 10),
    ('metrics."loss" <= 10', lambda r: r.metrics["loss"] <= 10),
    ("metrics.loss = 37.0", lambda r: r.metrics["loss"] == 37.0),
    ("metrics.loss = 37", lambda r: r.metrics["loss"] == 37.0),
    ("metrics.loss != 37.0", lambda r: r.metrics["loss"] != 37.0),
    ("metrics.loss > 100", lambda r: r.metrics["loss"] > 100),  # only the superseded 999.0 was > 100
    ("metrics.acc > 0.5", lambda r: _num(r, "acc") is not None and r.metrics["acc"] > 0.5),
    ("metrics.acc != 0.5", lambda r: _num(r, "acc") is not None and r.metrics["acc"] != 0.5),
    ("metrics.`val.loss` = 3", lambda r: r.metrics["val.loss"] == 3.0),
    ('metrics."val.loss" >= 9', lambda r: r.metrics["val.loss"] >= 9),
    ("metrics.`train loss` < 100", lambda r: _num(r, "train loss") is not None and r.metrics["train loss"] < 100),
    ("metrics.loss > -1e3", lambda r: True),
    ("metrics.loss < 1.5e1", lambda r: r.metrics["loss"] < 15),
    # NaN never satisfies a comparison except !=
    ("metrics.nanny >= 0", lambda r: _num(r, "nanny") is not None),
    ("metrics.nanny < 5", lambda r: _num(r, "nanny") is not None and r.metrics["nanny"] < 5),
    ("metrics.nanny != 5", lambda r: math.isnan(r.metrics["nanny"]) or r.metrics["nanny"] != 5),
    # params, every alias
    ("params.model = 'rf'", lambda r: r.params["model"] == "rf"),
    ("param.model != 'rf'", lambda r: r.params["model"] != "rf"),
    ("parameter.model LIKE 'T%'", lambda r: r.params["model"].startswith("T")),
    ("parameters.model LIKE 't%'", lambda r: r.params["model"].startswith("t")),
    ("params.model ILIKE 't%'", lambda r: r.params["model"].lower().startswith("t")),
    ("params.model like '%v%'", lambda r: "v" in r.params["model"]),
    ("params.`opt.name` = 'adam'", lambda r: r.params["opt.name"] == "adam"),
    ('params."opt.name" = \'sgd\'', lambda r: r.params["opt.name"] == "sgd"),
    ("params.lr = '0.03'", lambda r: r.params["lr"] == "0.03"),
    ("params.lr LIKE '0.0_'", lambda r: _like(r.params["lr"], "0.0_")),
    ("params.only_some IS NULL", lambda r: "only_some" not in r.params),
    ("params.only_some IS NOT NULL", lambda r: "only_some" in r.params),
    ("params.only_some != 'v9'", lambda r: "only_some" in r.params and r.params["only_some"] != "v9"),
    ("params.model = 'RF'", lambda r: False),
    # tags, every alias
    ("tags.team = 'alpha'", lambda r: r.tags["team"] == "alpha"),
    ("tag.team ILIKE 'ALPHA'", lambda r: r.tags["team"].lower() == "alpha"),
    ("tags.team LIKE 'a%'", lambda r: r.tags["team"].startswith("a")),
    ("tags.team != 'beta'", lambda r: r.tags["team"] != "beta"),
    ("tags.note IS NULL", lambda r: "note" not in r.tags),
    ("tags.note IS NOT NULL", lambda r: "note" in r.tags),
    ("tags.note LIKE '%5'", lambda r: r.tags.get("note", "").endswith("5")),
    ("tags.`dotted.tag` = 'd1'", lambda r: r.tags["dotted.tag"] == "d1"),
    ('tags."space tag" = \'s\'', lambda r: r.tags.get("space tag") == "s"),
    ("tags.`mlflow.runName` LIKE 'Special-%'", lambda r: r.name.startswith("Special-")),
    ("tags.mlflow.runName = 'run-00003'", lambda r: r.name == "run-00003"),
    # string attributes, every alias
    ("attributes.run_name = 'run-00003'", lambda r: r.name == "run-00003"),
    ("attribute.run_name LIKE 'Special-%'", lambda r: r.name.startswith("Special-")),
    ("attr.run_name ILIKE 'special-1%'", lambda r: r.name.lower().startswith("special-1")),
    ("run.run_name != 'run-00003'", lambda r: r.name != "run-00003"),
    ("run_name LIKE '%7'", lambda r: r.name.endswith("7")),
    ("attributes.status = 'FAILED'", lambda r: r.status == "FAILED"),
    ("status != 'RUNNING'", lambda r: r.status != "RUNNING"),
    ("status LIKE 'FIN%'", lambda r: r.status.startswith("FIN")),
    ("attributes.status ILIKE 'killed'", lambda r: r.status == "KILLED"),
    ("attributes.user_id = 'bob'", lambda r: r.user == "bob"),
    ("user_id ILIKE 'dave'", lambda r: r.user == "Dave"),
    ("user_id LIKE 'dave'", lambda r: False),
    # datasets, every key and alias
    ("datasets.name = 'ds_a'", lambda r: any(d[0] == "ds_a" for d in r.datasets)),
    ("dataset.name LIKE 'ds_%'", lambda r: bool(r.datasets)),
    ("datasets.name != 'ds_a'", lambda r: any(d[0] != "ds_a" for d in r.datasets)),
    ("datasets.digest = 'dg1'", lambda r: any(d[1] == "dg1" for d in r.datasets)),
    ("datasets.context = 'eval'", lambda r: any(d[2] == "eval" for d in r.datasets)),
    ("datasets.name IN ('ds_a', 'nope')", lambda r: any(d[0] == "ds_a" for d in r.datasets)),
    ("datasets.digest NOT IN ('dg0')", lambda r: any(d[1] != "dg0" for d in r.datasets)),
    # combinations (AND, any case)
    (
        "metrics.loss < 50 AND params.model = 'rf' AND tags.team = 'alpha' AND status = 'RUNNING'",
        lambda r: r.metrics["loss"] < 50 and r.params["model"] == "rf" and r.tags["team"] == "alpha" and r.status == "RUNNING",
    ),
    (
        "params.model = 'svm' and metrics.acc > 0.25 and tags.note IS NOT NULL",
        lambda r: r.params["model"] == "svm" and _num(r, "acc") is not None and r.metrics["acc"] > 0.25 and "note" in r.tags,
    ),
    (
        "datasets.name = 'ds_b' AND metrics.loss >= 0",
        lambda r: any(d[0] == "ds_b" for d in r.datasets),
    ),
    ("metrics.loss > 10 AND metrics.loss < 20", lambda r: 10 < r.metrics["loss"] < 20),
]


@pytest.mark.parametrize("flt,pred", FILTER_CASES, ids=[c[0] for c in FILTER_CASES])
def test_filter(client, corpus, flt, pred):
    expected = {r.run_id for r in active(corpus) if pred(r)}
    got = search_ids(client, corpus, flt)
    assert len(got) == len(set(got)), "duplicate runs in result"
    assert set(got) == expected, f"{flt}: {len(got)} results, expected {len(expected)}"


def test_numeric_attributes(client, corpus):
    exp_id, runs, base = corpus
    pivot = base + 1000 * (N_RUNS // 3)
    cases = [
        (f"attributes.start_time >= {pivot}", lambda r: r.start >= pivot),
        (f"start_time < {pivot}", lambda r: r.start < pivot),
        (f"attributes.created = {pivot}", lambda r: r.start == pivot),
        (f"created != {pivot}", lambda r: r.start != pivot),
        (f"attr.start_time > {pivot} AND start_time <= {pivot + 5000}", lambda r: pivot < r.start <= pivot + 5000),
        ("attributes.end_time > 0", lambda r: r.end is not None),
        (f"end_time <= {pivot + 500}", lambda r: r.end is not None and r.end <= pivot + 500),
    ]
    for flt, pred in cases:
        expected = {r.run_id for r in active(corpus) if pred(r)}
        assert expected, flt
        assert set(search_ids(client, corpus, flt)) == expected, flt


def test_run_id_attribute(client, corpus):
    picked = [r.run_id for r in active(corpus)[10:15]]
    listed = ", ".join(f"'{x}'" for x in picked)
    assert set(search_ids(client, corpus, f"attributes.run_id IN ({listed})")) == set(picked)
    assert set(search_ids(client, corpus, f'run_id IN ("{picked[0]}", "{picked[1]}")')) == set(picked[:2])
    rest = set(search_ids(client, corpus, f"attributes.run_id NOT IN ({listed})"))
    assert rest == {r.run_id for r in active(corpus)} - set(picked)
    assert search_ids(client, corpus, f"attributes.run_id = '{picked[2]}'") == [picked[2]]
    assert search_ids(client, corpus, f"run_id = '{'f' * 32}'") == []
    uri_match = search_ids(client, corpus, f"attributes.artifact_uri LIKE '%{picked[3]}%'")
    assert uri_match == [picked[3]]


def test_search_result_carries_full_run_data(client, corpus):
    by_id = {r.run_id: r for r in active(corpus)}
    sample = [r for r in active(corpus) if r.i in (0, 1, 13, 26, 100, 101, 333)]
    listed = ", ".join(f"'{r.run_id}'" for r in sample)
    got = search_all_runs(client, [corpus[0]], f"attributes.run_id IN ({listed})")
    assert len(got) == len(sample)
    for run in got:
        r = by_id[run.info.run_id]
        assert run.info.run_name == r.name
        assert run.info.user_id == r.user
        assert run.info.start_time == r.start
        assert run.info.end_time == r.end
        assert run.info.status == r.status
        assert run.info.experiment_id == corpus[0]
        assert run.data.params == r.params
        assert {k: v for k, v in run.data.tags.items() if k in r.tags} == r.tags
        assert set(run.data.metrics) == set(r.metrics)
        for k, v in r.metrics.items():
            got_v = run.data.metrics[k]
            assert (math.isnan(v) and math.isnan(got_v)) or got_v == v, (k, v, got_v)
        ds = sorted(
            (d.dataset.name, d.dataset.digest, {t.key: t.value for t in d.tags}.get("mlflow.data.context"))
            for d in run.inputs.dataset_inputs
        )
        assert ds == sorted(r.datasets)


def test_view_types(client, corpus):
    exp_id, runs, _ = corpus
    deleted = {r.run_id for r in runs if r.deleted}
    assert deleted
    assert set(search_ids(client, corpus, "", view=ViewType.DELETED_ONLY)) == deleted
    assert set(search_ids(client, corpus, "", view=ViewType.ALL)) == {r.run_id for r in runs}
    assert set(search_ids(client, corpus, "")) == {r.run_id for r in runs} - deleted
    assert set(search_ids(client, corpus, "params.model = 'lin'", view=ViewType.DELETED_ONLY)) == {
        r.run_id for r in runs if r.deleted and r.params["model"] == "lin"
    }


# --- ordering -----------------------------------------------------------------------------

_LAST = (1,)


def _metric_key(r, k, desc):
    """MLflow's order for a metric: values (asc or desc), then NaN, then missing."""
    v = r.metrics.get(k)
    if v is None:
        return (2, 0.0)
    if math.isnan(v):
        return (1, 0.0)
    return (0, -v if desc else v)


class _Desc:
    """Wraps a string so that sorting ascending on it sorts the string descending."""

    def __init__(self, s):
        self.s = s

    def __lt__(self, other):
        return self.s > other.s

    def __eq__(self, other):
        return self.s == other.s


def _str_key(value, desc):
    if value is None:
        return (1, "")
    return (0, _Desc(value) if desc else value)


def _expected_order(runs, keys):
    """Sort by the given key functions, then MLflow's tie-breakers: start_time DESC, run_id."""
    return [r.run_id for r in sorted(runs, key=lambda r: tuple(k(r) for k in keys) + (-r.start, r.run_id))]


ORDER_CASES = [
    (["metrics.acc ASC"], [lambda r: _metric_key(r, "acc", False)]),
    (["metrics.acc DESC"], [lambda r: _metric_key(r, "acc", True)]),
    (["metric.`val.loss`"], [lambda r: _metric_key(r, "val.loss", False)]),
    (["metrics.nanny ASC"], [lambda r: _metric_key(r, "nanny", False)]),
    (["metrics.nanny DESC"], [lambda r: _metric_key(r, "nanny", True)]),
    (["params.model ASC"], [lambda r: _str_key(r.params.get("model"), False)]),
    (["param.only_some DESC"], [lambda r: _str_key(r.params.get("only_some"), True)]),
    (["tags.note DESC"], [lambda r: _str_key(r.tags.get("note"), True)]),
    (["tag.`dotted.tag` ASC"], [lambda r: _str_key(r.tags.get("dotted.tag"), False)]),
    (["attributes.run_name ASC"], [lambda r: _str_key(r.name, False)]),
    (["attributes.start_time ASC"], [lambda r: (r.start,)]),
    (["created DESC"], [lambda r: (-r.start,)]),
    (["status"], [lambda r: _str_key(r.status, False)]),
    (["user_id DESC"], [lambda r: _str_key(r.user, True)]),
    (
        ["params.model ASC", "metrics.loss DESC"],
        [lambda r: _str_key(r.params.get("model"), False), lambda r: _metric_key(r, "loss", True)],
    ),
    (
        ["tags.team DESC", "params.`opt.name`", "attr.run_name DESC"],
        [
            lambda r: _str_key(r.tags.get("team"), True),
            lambda r: _str_key(r.params.get("opt.name"), False),
            lambda r: _str_key(r.name, True),
        ],
    ),
]


@pytest.mark.parametrize("order_by,keys", ORDER_CASES, ids=[" , ".join(c[0]) for c in ORDER_CASES])
def test_order_by(client, corpus, order_by, keys):
    # A subset keeps each query cheap; g3 has runs with and without each optional key.
    subset = [r for r in active(corpus) if r.tags["group"] == "g3"]
    got = search_ids(client, corpus, "tags.group = 'g3'", order_by=order_by)
    assert got == _expected_order(subset, keys)


def test_default_order_is_start_time_desc(client, corpus):
    subset = [r for r in active(corpus) if r.tags["group"] == "g5"]
    got = search_ids(client, corpus, "tags.group = 'g5'")
    assert got == [r.run_id for r in sorted(subset, key=lambda r: -r.start)]


def test_order_ties_break_by_start_time_desc(client, corpus):
    subset = [r for r in active(corpus) if r.tags["group"] == "g1"]
    got = search_ids(client, corpus, "tags.group = 'g1'", order_by=["metrics.`val.loss` DESC"])
    expected = sorted(subset, key=lambda r: (-r.metrics["val.loss"], -r.start))
    assert got == [r.run_id for r in expected]


# --- pagination ---------------------------------------------------------------------------


def _page_through(client, exp_id, page_size, **kw):
    seen, token, pages = [], None, 0
    while True:
        page = client.search_runs([exp_id], max_results=page_size, page_token=token, **kw)
        assert len(page) <= page_size
        seen.extend(run_ids(page))
        pages += 1
        token = page.token
        if not token:
            return seen, pages
        assert pages <= N_RUNS, "pagination does not terminate"


def test_pagination_covers_every_run_once(client, corpus):
    exp_id = corpus[0]
    expected = [r.run_id for r in sorted(active(corpus), key=lambda r: -r.start)]
    seen, pages = _page_through(client, exp_id, 337)
    assert len(seen) == len(set(seen)), "a run appeared on two pages"
    assert seen == expected
    assert pages == math.ceil(len(expected) / 337)


def test_pagination_with_filter_and_order(client, corpus):
    exp_id = corpus[0]
    subset = [r for r in active(corpus) if r.params["model"] == "svm"]
    expected = _expected_order(subset, [lambda r: _metric_key(r, "acc", False)])
    seen, _ = _page_through(
        client, exp_id, 50, filter_string="params.model = 'svm'", order_by=["metrics.acc ASC"]
    )
    assert seen == expected


def test_exact_page_boundary_has_no_extra_page(client, corpus):
    exp_id = corpus[0]
    subset = [r for r in active(corpus) if r.tags["group"] == "g2"]
    page = client.search_runs([exp_id], filter_string="tags.group = 'g2'", max_results=len(subset))
    assert len(page) == len(subset)
    assert not page.token
    page = client.search_runs([exp_id], filter_string="tags.group = 'g2'", max_results=len(subset) - 1)
    assert page.token
    rest = client.search_runs(
        [exp_id], filter_string="tags.group = 'g2'", max_results=len(subset) - 1, page_token=page.token
    )
    assert len(rest) == 1 and not rest.token


def test_default_max_results_is_1000(client, corpus):
    page = client.search_runs([corpus[0]])
    assert len(page) == min(1000, len(active(corpus)))
    if len(active(corpus)) > 1000:
        assert page.token


def test_fluent_search_runs_dataframe_on_corpus(corpus):
    df = mlflow.search_runs(experiment_ids=[corpus[0]], filter_string="params.model = 'rf' AND metrics.loss < 20")
    expected = {r.run_id for r in active(corpus) if r.params["model"] == "rf" and r.metrics["loss"] < 20}
    assert set(df["run_id"]) == expected
    assert len(df) == len(expected)


def test_search_across_experiments(client, corpus, base_url):
    other = client.create_experiment(unique_name("search-other"))
    extra = []
    for i in range(3):
        run = client.create_run(other, run_name=f"other-{i}", tags={"group": "g3"})
        client.log_param(run.info.run_id, "model", "rf")
        extra.append(run.info.run_id)
    got = run_ids(
        search_all_runs(client, [corpus[0], other], "params.model = 'rf' AND tags.group = 'g3'")
    )
    expected = {r.run_id for r in active(corpus) if r.params["model"] == "rf" and r.tags["group"] == "g3"}
    assert set(got) == expected | set(extra)
    df = mlflow.search_runs(search_all_experiments=False, experiment_ids=[other])
    assert set(df["run_id"]) == set(extra)


# --- Cairn extensions ---------------------------------------------------------------------

OR_CASES = [
    ("params.model = 'rf' OR params.model = 'svm'", lambda r: r.params["model"] in ("rf", "svm")),
    ("params.model = 'rf' or tags.note IS NOT NULL", lambda r: r.params["model"] == "rf" or "note" in r.tags),
    (
        "metrics.loss < 10 OR metrics.loss > 90 AND tags.team = 'beta'",
        lambda r: r.metrics["loss"] < 10 or (r.metrics["loss"] > 90 and r.tags["team"] == "beta"),
    ),
    (
        "(metrics.loss < 10 OR metrics.loss > 90) AND tags.team = 'beta'",
        lambda r: (r.metrics["loss"] < 10 or r.metrics["loss"] > 90) and r.tags["team"] == "beta",
    ),
    (
        "tags.team = 'beta' AND metrics.loss < 10 OR status = 'KILLED'",
        lambda r: (r.tags["team"] == "beta" and r.metrics["loss"] < 10) or r.status == "KILLED",
    ),
    ("((params.model = 'rf'))", lambda r: r.params["model"] == "rf"),
    (
        "params.model = 'lin' AND (tags.group = 'g1' OR (tags.group = 'g2' AND metrics.acc > 0.5))",
        lambda r: r.params["model"] == "lin"
        and (r.tags["group"] == "g1" or (r.tags["group"] == "g2" and _num(r, "acc") is not None and r.metrics["acc"] > 0.5)),
    ),
    (
        "params.only_some IS NULL OR metrics.acc > 0.9",
        lambda r: "only_some" not in r.params or (_num(r, "acc") is not None and r.metrics["acc"] > 0.9),
    ),
    # Cairn accepts IN / NOT IN on every string attribute; MLflow only on run_id.
    ("status IN ('FINISHED', 'KILLED')", lambda r: r.status in ("FINISHED", "KILLED")),
    ("attributes.run_name NOT IN ('nope')", lambda r: True),
    (
        "datasets.name = 'ds_a' OR datasets.context = 'eval'",
        lambda r: any(d[0] == "ds_a" or d[2] == "eval" for d in r.datasets),
    ),
]


@pytest.mark.cairn_only
@pytest.mark.parametrize("flt,pred", OR_CASES, ids=[c[0] for c in OR_CASES])
def test_or_and_parentheses(client, corpus, flt, pred):
    expected = {r.run_id for r in active(corpus) if pred(r)}
    got = search_ids(client, corpus, flt)
    assert len(got) == len(set(got))
    assert set(got) == expected


@pytest.mark.cairn_only
def test_or_with_order_and_pagination(client, corpus):
    subset = [r for r in active(corpus) if r.tags["group"] in ("g4", "g6")]
    expected = _expected_order(subset, [lambda r: _metric_key(r, "loss", True)])
    seen, _ = _page_through(
        client,
        corpus[0],
        40,
        filter_string="tags.group = 'g4' OR tags.group = 'g6'",
        order_by=["metrics.loss DESC"],
    )
    assert seen == expected
