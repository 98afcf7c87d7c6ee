"""Helpers for the `cairn serve` black-box suite: starting processes, building models,
reading metrics. Fixtures live in conftest.py; this module holds plain functions so test
files can import them."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import requests

REPO_ROOT = Path(__file__).resolve().parents[2]
STARTUP_TIMEOUT_S = 120.0
READY_TIMEOUT_S = 120.0

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def cairn_bin() -> str:
    """CAIRN_BIN, made absolute when it is a relative path (the processes run in their own
    working directories)."""
    path = os.environ.get("CAIRN_BIN", str(REPO_ROOT / "target" / "release" / "cairn"))
    if os.sep in path and not os.path.isabs(path):
        path = os.path.abspath(path)
    return path


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def child_env() -> dict[str, str]:
    """Environment for Cairn processes: the active Python environment (so the server finds
    the onnxruntime wheel's shared library), no colours in logs, nothing that would make
    the serving process pick a tracking server other than the one passed explicitly."""
    env = dict(os.environ)
    bindir = str(Path(sys.executable).parent)
    env["PATH"] = bindir + os.pathsep + env.get("PATH", "")
    if sys.prefix != sys.base_prefix:
        env["VIRTUAL_ENV"] = sys.prefix
    env["NO_COLOR"] = "1"
    env.setdefault("RUST_BACKTRACE", "1")
    env.pop("MLFLOW_TRACKING_URI", None)
    return env


def log_text(path: Path) -> str:
    try:
        return _ANSI.sub("", path.read_text(errors="replace"))
    except OSError as e:
        return f"<could not read {path}: {e}>"


def tail(path: Path, n: int = 60) -> str:
    return "\n".join(log_text(path).splitlines()[-n:])


def find_addr(line: str, key: str) -> tuple[str, int] | None:
    """`key=HOST:PORT` in a tracing log line (``addr`` does not match ``grpc_addr``)."""
    m = re.search(rf"(?<![\w]){re.escape(key)}=\"?([0-9A-Za-z.\-\[\]:]+?):(\d+)\b", line)
    if not m:
        return None
    return m.group(1), int(m.group(2))


def stop_process(proc: subprocess.Popen, timeout: float = 10.0) -> None:
    """SIGTERM the process group we started, then SIGKILL it if it lingers."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(timeout=timeout)


def with_env(overrides: dict[str, str | None] | None) -> dict[str, str]:
    """`child_env()` with `overrides` applied (a None value removes the variable)."""
    env = child_env()
    for k, v in (overrides or {}).items():
        if v is None:
            env.pop(k, None)
        else:
            env[k] = v
    return env


def spawn(
    cmd: list[str], workdir: Path, log_name: str, env: dict[str, str | None] | None = None
) -> tuple[subprocess.Popen, Path]:
    """Starts `cmd` in its own process group, output to `workdir/log_name`; `env` overrides
    entries of `child_env()` (None removes one)."""
    log_path = workdir / log_name
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            cmd,
            cwd=workdir,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=with_env(env),
            start_new_session=True,
        )
    return proc, log_path


def wait_for_log_line(
    proc: subprocess.Popen, log_path: Path, marker: str, timeout: float = STARTUP_TIMEOUT_S
) -> str:
    """The first log line containing `marker`; fails if the process exits first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for line in log_text(log_path).splitlines():
            if marker in line:
                return line
        if proc.poll() is not None:
            raise RuntimeError(
                f"process exited with {proc.returncode} before logging {marker!r}:\n"
                f"{tail(log_path)}"
            )
        time.sleep(0.05)
    raise TimeoutError(f"no {marker!r} in the log within {timeout:.0f}s:\n{tail(log_path)}")


# ---------------------------------------------------------------------------------------
# The tracking server


@dataclass
class TrackingServer:
    url: str
    proc: subprocess.Popen
    workdir: Path
    log_path: Path

    def stop(self) -> None:
        stop_process(self.proc)


def start_tracking_server(
    workdir: Path, *extra: str, env: dict[str, str | None] | None = None
) -> TrackingServer:
    """Starts `cairn server` on port 0 with its database and artifacts in `workdir`;
    `extra` flags are appended (e.g. --auth), `env` overrides entries of its environment."""
    cmd = [
        cairn_bin(),
        "server",
        "--host",
        "127.0.0.1",
        "--port",
        "0",
        "--backend-store-uri",
        f"sqlite:///{workdir}/mlflow.db",
        "--artifacts-destination",
        str(workdir / "artifacts"),
        *extra,
    ]
    proc, log_path = spawn(cmd, workdir, "tracking.log", env=env)
    try:
        line = wait_for_log_line(proc, log_path, "cairn listening")
        addr = find_addr(line, "addr")
        if addr is None:
            raise RuntimeError(f"no addr=HOST:PORT in {line!r}")
        url = f"http://127.0.0.1:{addr[1]}"
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while True:
            try:
                if requests.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except requests.RequestException:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"tracking server not healthy at {url}:\n{tail(log_path)}")
            time.sleep(0.1)
    except BaseException:
        stop_process(proc)
        raise
    return TrackingServer(url=url, proc=proc, workdir=workdir, log_path=log_path)


# ---------------------------------------------------------------------------------------
# `cairn serve`


@dataclass
class Served:
    """A running `cairn serve`."""

    url: str
    proc: subprocess.Popen
    log_path: Path
    cmd: list[str]
    grpc_target: str | None = None
    _stopped: bool = field(default=False, repr=False)

    def log(self) -> str:
        return log_text(self.log_path)

    def tail(self, n: int = 60) -> str:
        return tail(self.log_path, n)

    def metrics(self) -> str:
        r = requests.get(f"{self.url}/metrics", timeout=10)
        r.raise_for_status()
        return r.text

    def load_error(self, model: str = "m", timeout: float = 60) -> str:
        """Waits until `model` reports a load error on its readiness endpoint (503 with
        an `error`), and returns that message."""

        def reason():
            r = requests.get(f"{self.url}/v2/models/{model}/ready", timeout=5)
            # (A Response is falsy when its status is an error: return the message itself.)
            return r.json().get("error") if r.status_code == 503 else None

        return poll_until(reason, timeout=timeout, what=f"a load error on /v2/models/{model}/ready")

    def wait_ready(self, timeout: float = READY_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"cairn serve exited with {self.proc.returncode} before it was ready:\n"
                    f"{self.tail()}"
                )
            try:
                r = requests.get(f"{self.url}/v2/health/ready", timeout=5)
                last = (r.status_code, r.text)
                if r.status_code == 200:
                    return
            except requests.RequestException as e:
                last = repr(e)
            time.sleep(0.1)
        raise TimeoutError(
            f"cairn serve not ready within {timeout:.0f}s (last answer {last}):\n{self.tail(15)}"
        )

    def stop(self) -> None:
        if not self._stopped:
            self._stopped = True
            stop_process(self.proc)


def start_serve(
    models: dict[str, str],
    *extra: str,
    tracking_uri: str | None,
    workdir: Path | None = None,
    grpc: bool = True,
    wait_ready: bool = True,
    env: dict[str, str | None] | None = None,
    host: str = "127.0.0.1",
) -> Served:
    """Starts `cairn serve --model NAME=URI ... --port 0 --grpc-port 0` and waits until it
    listens (and, unless told otherwise, until every model is ready). With `grpc=False` the
    server is started with --no-grpc. `env` overrides entries of its environment (None
    removes one); `host` is the listening address (it is always reached on 127.0.0.1)."""
    workdir = Path(workdir or tempfile.mkdtemp(prefix="cairn-serve-"))
    workdir.mkdir(parents=True, exist_ok=True)
    cmd = [cairn_bin(), "serve"]
    for name, uri in models.items():
        cmd += ["--model", f"{name}={uri}"]
    if tracking_uri:
        cmd += ["--tracking-uri", tracking_uri]
    cmd += ["--host", host, "--port", "0", "--cache-dir", str(workdir / "cache")]
    # Never the default fixed gRPC port: servers of this suite run side by side.
    cmd += ["--grpc-port", "0"] if grpc else ["--no-grpc"]
    cmd += list(extra)
    proc, log_path = spawn(cmd, workdir, f"serve-{uuid.uuid4().hex[:6]}.log", env=env)
    try:
        line = wait_for_log_line(proc, log_path, "cairn serve listening")
        addr = find_addr(line, "addr")
        if addr is None:
            raise RuntimeError(f"no addr=HOST:PORT in the listening line {line!r}")
        grpc_target = None
        if grpc:
            gaddr = find_addr(line, "grpc_addr")
            if gaddr is None:
                raise RuntimeError(f"no grpc_addr=HOST:PORT in the listening line {line!r}")
            grpc_target = f"127.0.0.1:{gaddr[1]}"
        elif "grpc_addr=disabled" not in line:
            raise RuntimeError(f"--no-grpc, but the listening line says {line!r}")
        served = Served(
            url=f"http://127.0.0.1:{addr[1]}",
            proc=proc,
            log_path=log_path,
            cmd=cmd,
            grpc_target=grpc_target,
        )
        if wait_ready:
            served.wait_ready()
    except BaseException:
        stop_process(proc)
        raise
    return served


# ---------------------------------------------------------------------------------------
# Prometheus text


_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse_metrics(text: str) -> list[tuple[str, dict[str, str], float]]:
    """(name, labels, value) for every sample line of a Prometheus text exposition."""
    out = []
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = _SAMPLE.match(line)
        if not m:
            continue
        labels = dict(_LABEL.findall(m.group(3) or ""))
        out.append((m.group(1), labels, float(m.group(4))))
    return out


def metric_value(text: str, name: str, **labels: str) -> float:
    """Sum of the samples of `name` whose labels include `labels` (0 when none)."""
    total = 0.0
    for n, ls, v in parse_metrics(text):
        if n == name and all(ls.get(k) == val for k, val in labels.items()):
            total += v
    return total


def has_metric(text: str, name: str, **labels: str) -> bool:
    return any(
        n == name and all(ls.get(k) == val for k, val in labels.items())
        for n, ls, _ in parse_metrics(text)
    )


# ---------------------------------------------------------------------------------------
# Polling


def poll_until(predicate, timeout: float, interval: float = 0.1, what: str = "condition"):
    """Calls `predicate` until it returns something truthy; returns that value."""
    deadline = time.monotonic() + timeout
    last_exc = None
    while time.monotonic() < deadline:
        try:
            value = predicate()
            if value:
                return value
        except Exception as e:  # noqa: BLE001 - reported on timeout
            last_exc = e
        time.sleep(interval)
    raise TimeoutError(f"{what} not met within {timeout:.1f}s" + (f" (last error: {last_exc!r})" if last_exc else ""))


# ---------------------------------------------------------------------------------------
# OIP request building for raw `requests` tests


def oip_json_body(inputs: list[dict], **extra) -> bytes:
    return json.dumps({"inputs": inputs, **extra}).encode()


def oip_binary_body(header: dict, tail: bytes) -> tuple[bytes, dict[str, str]]:
    head = json.dumps(header).encode()
    return head + tail, {
        "Inference-Header-Content-Length": str(len(head)),
        "Content-Type": "application/octet-stream",
    }


class LoadGenerator:
    """Sends requests from several threads until stopped; records every outcome.

    `make_request(session)` returns (ok: bool, info: any). Each thread has its own
    `requests.Session`. The loop is bounded by `max_seconds` so it always stops."""

    def __init__(self, make_request, threads: int = 4, max_seconds: float = 120.0):
        self._make = make_request
        self._n = threads
        self._max = max_seconds
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self.results: list[tuple[float, bool, object]] = []
        self._threads: list[threading.Thread] = []

    def _run(self):
        deadline = time.monotonic() + self._max
        with requests.Session() as s:
            while not self._stop.is_set() and time.monotonic() < deadline:
                try:
                    ok, info = self._make(s)
                except Exception as e:  # noqa: BLE001 - recorded as a failure
                    ok, info = False, repr(e)
                with self._lock:
                    self.results.append((time.monotonic(), ok, info))

    def start(self) -> "LoadGenerator":
        for i in range(self._n):
            t = threading.Thread(target=self._run, name=f"load-{i}", daemon=True)
            t.start()
            self._threads.append(t)
        return self

    def snapshot(self) -> list[tuple[float, bool, object]]:
        with self._lock:
            return list(self.results)

    def stop(self) -> list[tuple[float, bool, object]]:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=30)
        return self.snapshot()


def assert_close(actual, expected, what: str = "", rtol: float = 1e-5, atol: float = 1e-5):
    actual = np.asarray(actual)
    expected = np.asarray(expected)
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != {expected.shape}"
    if expected.dtype.kind in "iub":
        np.testing.assert_array_equal(actual, expected, err_msg=what)
    else:
        np.testing.assert_allclose(actual, expected, rtol=rtol, atol=atol, err_msg=what)
