"""The audit log, end to end: requests against `cairn server --auth` (successful and failed
writes, a 403, 401s, bearer-token calls) each leave one hash-chained event that the
admin-only GET /api/2.0/cairn/audit/events returns; after the server stops,
`cairn audit verify` accepts the untouched SQLite file, `cairn audit export` writes the
same events as JSON lines, and verify names the event an edit, a deletion or a swap of
two rows broke (each done with sqlite3 on its own copy of the data directory).

Env: CAIRN_BIN (default <repo>/target/debug/cairn).
"""

from __future__ import annotations

import json
import re
import shutil
import sqlite3
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from cairn_util import PASSWORD, Api, cairn_bin, server_env, start, stop

GENESIS = "0" * 64
EVE_PW = "eve-password-1"
MAL_PW = "mal-password-1"
EVENTS = "/api/2.0/cairn/audit/events"


def rid(r) -> str:
    return r.headers["x-request-id"]


@pytest.fixture(scope="module")
def audited():
    """Runs the scenario against a live server, reads the log as admin, stops the server
    (SIGTERM, waited for) and hands over what it saw and the data directory."""
    tmp = Path(tempfile.mkdtemp(prefix="cairn-audit-"))
    data = tmp / "data"
    t0 = int(time.time() * 1000)
    proc, url = start(tmp, "--auth", env=server_env(), data_dir=data)
    try:
        admin = Api(url, "admin", PASSWORD)
        eve = Api(url, "eve", EVE_PW)
        mal = Api(url, "mal", MAL_PW)
        seen: dict[str, tuple[str, object]] = {}  # label -> (request id, response)

        def do(label, r, status):
            assert r.status_code == status, (label, r.status_code, r.text)
            seen[label] = (rid(r), r)
            return r

        do("create eve", admin.post("users/create", {"username": "eve", "password": EVE_PW}),
           200)
        do("create mal", admin.post("users/create", {"username": "mal", "password": MAL_PW}),
           200)
        exp = do("eve creates", eve.post("experiments/create", {"name": "audited"}), 200)
        exp_id = exp.json()["experiment_id"]
        do("eve duplicate", eve.post("experiments/create", {"name": "audited"}), 400)
        do("eve reads", eve.get("experiments/get", experiment_id=exp_id), 200)
        tok = do("eve token", eve.post("users/access-tokens/create", {"name": "ci"}), 200)
        token = Api(url, token=tok.json()["token"])
        run = do("token run", token.post("runs/create", {"experiment_id": exp_id}), 200)
        run_id = run.json()["run"]["info"]["run_id"]
        do("token logs", token.post("runs/log-metric", {
            "run_id": run_id, "key": "m", "value": 1.0, "timestamp": t0, "step": 0}), 200)
        # Default permission READ: mal may look at eve's experiment, not write to it.
        do("mal denied", mal.post("runs/create", {"experiment_id": exp_id}), 403)
        do("anonymous", Api(url).post("experiments/create", {"name": "x"}), 401)
        do("wrong password", Api(url, "eve", "not-her-password").post(
            "experiments/create", {"name": "y"}), 401)
        do("mal reads log", mal.get(EVENTS), 403)
        do("token reads log", token.get(EVENTS), 403)

        page = admin.get(EVENTS, after=2, max_results=3)
        assert page.status_code == 200, page.text
        full = admin.get(EVENTS, after=0, max_results=1000)
        assert full.status_code == 200, full.text
        events = full.json()["events"]
        # Reading the log is no change: reading it again gives the same events.
        assert admin.get(EVENTS, after=0, max_results=1000).json()["events"] == events
    finally:
        stop(proc)
    assert proc.returncode is not None
    yield {
        "tmp": tmp, "data": data, "t0": t0, "t1": int(time.time() * 1000),
        "events": events, "page": page.json()["events"], "seen": seen,
        "exp_id": exp_id, "run_id": run_id,
    }
    shutil.rmtree(tmp, ignore_errors=True)


def by_request(audited) -> dict[str, dict]:
    out: dict[str, dict] = {}
    for e in audited["events"]:
        assert e["request_id"] not in out, f"two events for one request: {e}"
        out[e["request_id"]] = e
    return out


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([cairn_bin(), "audit", *args], capture_output=True, text=True,
                          timeout=60)


def verify(data: Path) -> subprocess.CompletedProcess:
    return cli("verify", "--data-dir", str(data))


# --- the endpoint --------------------------------------------------------------------


def test_each_change_and_denial_is_one_event_with_who_how_and_outcome(audited):
    ev = by_request(audited)
    exp = f"experiment:{audited['exp_id']}"
    expected = {
        # label: actor, auth_method, action, outcome, resource (None: not checked)
        "create eve": ("admin", "basic", "POST /api/2.0/mlflow/users/create", "ok", None),
        "create mal": ("admin", "basic", "POST /api/2.0/mlflow/users/create", "ok", None),
        "eve creates": ("eve", "basic", "POST /api/2.0/mlflow/experiments/create", "ok", None),
        "eve duplicate": ("eve", "basic", "POST /api/2.0/mlflow/experiments/create",
                          "error:400", None),
        "eve token": ("eve", "basic", "POST /api/2.0/mlflow/users/access-tokens/create", "ok",
                      None),
        "token run": ("eve", "token", "POST /api/2.0/mlflow/runs/create", "ok", exp),
        "token logs": ("eve", "token", "POST /api/2.0/mlflow/runs/log-metric", "ok", None),
        "mal denied": ("mal", "basic", "POST /api/2.0/mlflow/runs/create", "denied", exp),
        "anonymous": ("anonymous", "none", "POST /api/2.0/mlflow/experiments/create",
                      "unauthenticated", None),
        "wrong password": ("eve", "basic", "POST /api/2.0/mlflow/experiments/create",
                           "unauthenticated", None),
        "mal reads log": ("mal", "basic", f"GET {EVENTS}", "denied", None),
        "token reads log": ("eve", "token", f"GET {EVENTS}", "denied", None),
    }
    for label, (actor, method, action, outcome, resource) in expected.items():
        request_id = audited["seen"][label][0]
        assert request_id in ev, f"no event for {label} (x-request-id {request_id})"
        e = ev[request_id]
        got = (e["actor"], e["auth_method"], e["action"], e["outcome"])
        assert got == (actor, method, action, outcome), (label, e)
        if resource is not None:
            assert e["resource"] == resource, (label, e)
        assert e["source_ip"] == "127.0.0.1", (label, e)
        assert audited["t0"] <= e["time_ms"] <= audited["t1"], (label, e)
    # A read that succeeded changed nothing and is not recorded; nor is anything else.
    assert audited["seen"]["eve reads"][0] not in ev
    assert len(audited["events"]) == len(expected)


def test_the_events_form_a_hash_chain(audited):
    events = audited["events"]
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    assert events[0]["prev_hash"] == GENESIS
    for prev, e in zip(events, events[1:]):
        assert e["prev_hash"] == prev["hash"], e
    assert all(re.fullmatch(r"[0-9a-f]{64}", e["hash"]) for e in events)
    assert len({e["hash"] for e in events}) == len(events)
    assert [e["time_ms"] for e in events] == sorted(e["time_ms"] for e in events)


def test_the_endpoint_pages_with_after_and_max_results(audited):
    assert audited["page"] == audited["events"][2:5]


def test_only_administrators_read_the_log(audited):
    for label in ("mal reads log", "token reads log"):
        r = audited["seen"][label][1]
        assert r.status_code == 403 and r.json()["error_code"] == "PERMISSION_DENIED", r.text


# --- the CLI on the stopped server's data --------------------------------------------


def test_verify_accepts_the_untouched_log(audited):
    out = verify(audited["data"])
    assert out.returncode == 0, out.stdout + out.stderr
    last = audited["events"][-1]
    assert "audit log intact" in out.stdout, out.stdout
    assert f"{len(audited['events'])} events" in out.stdout, out.stdout
    assert last["hash"] in out.stdout, out.stdout


def test_export_writes_the_same_events_as_json_lines(audited, tmp_path):
    dest = tmp_path / "audit.jsonl"
    out = cli("export", "--data-dir", str(audited["data"]), "-o", str(dest))
    assert out.returncode == 0, out.stdout + out.stderr
    lines = dest.read_text().splitlines()
    assert len(lines) == len(audited["events"])
    assert [json.loads(line) for line in lines] == audited["events"]
    # Incremental shipping: only what follows a sequence number.
    out = cli("export", "--data-dir", str(audited["data"]), "--after", "4")
    assert out.returncode == 0, out.stderr
    assert [json.loads(line) for line in out.stdout.splitlines()] == audited["events"][4:]


def tampered_copy(audited, tmp_path: Path, *statements: tuple[str, tuple]) -> Path:
    copy = tmp_path / "data"
    shutil.copytree(audited["data"], copy)
    db = sqlite3.connect(copy / "cairn.db")
    try:
        for sql, params in statements:
            assert db.execute(sql, params).rowcount == 1, sql
        db.commit()
    finally:
        db.close()
    return copy


def assert_tampered(copy: Path, pattern: str) -> str:
    out = verify(copy)
    assert out.returncode == 1, (out.returncode, out.stdout, out.stderr)
    assert "audit log TAMPERED" in out.stdout, out.stdout
    assert re.search(pattern, out.stdout), (pattern, out.stdout)
    return out.stdout


def test_verify_names_an_edited_event(audited, tmp_path):
    seq = 6
    copy = tampered_copy(audited, tmp_path, (
        "UPDATE audit_events SET actor = 'someone-else' WHERE seq = ?", (seq,)))
    assert_tampered(copy, rf"\bevent {seq}\b.*edited")
    assert verify(audited["data"]).returncode == 0  # the original is untouched


def test_verify_names_a_deleted_event(audited, tmp_path):
    seq = len(audited["events"]) // 2
    copy = tampered_copy(audited, tmp_path, ("DELETE FROM audit_events WHERE seq = ?", (seq,)))
    assert_tampered(copy, rf"\bevent {seq}\b.*deleted")


def test_verify_names_the_first_of_two_swapped_events(audited, tmp_path):
    a, b = 4, 8
    cols = ["time_ms", "actor", "auth_method", "source_ip", "action", "resource", "outcome",
            "request_id", "prev_hash", "hash"]
    rows = {e["seq"]: e for e in audited["events"]}
    assert rows[a]["actor"] != rows[b]["actor"] or rows[a]["action"] != rows[b]["action"]
    sets = ", ".join(f"{c} = ?" for c in cols)
    copy = tampered_copy(
        audited, tmp_path,
        (f"UPDATE audit_events SET {sets} WHERE seq = ?", (*[rows[b][c] for c in cols], a)),
        (f"UPDATE audit_events SET {sets} WHERE seq = ?", (*[rows[a][c] for c in cols], b)),
    )
    swapped = sqlite3.connect(copy / "cairn.db").execute(
        "SELECT seq, request_id FROM audit_events WHERE seq IN (?, ?) ORDER BY seq", (a, b)
    ).fetchall()
    assert swapped == [(a, rows[b]["request_id"]), (b, rows[a]["request_id"])]
    assert_tampered(copy, rf"\bevent {a}\b")


def test_verify_of_a_missing_database_is_an_error(tmp_path):
    missing = tmp_path / "typo"
    out = verify(missing)
    assert out.returncode != 0, out.stdout
    assert not (missing / "cairn.db").exists()
