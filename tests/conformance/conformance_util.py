"""Small helpers shared by the conformance tests (no fixtures here; see conftest.py)."""

from __future__ import annotations

import math
import time
import uuid
from typing import Any, Iterable

import pytest
import requests
from mlflow.entities import ViewType
from mlflow.exceptions import MlflowException

API = "/api/2.0/mlflow"
AJAX = "/ajax-api/2.0/mlflow"


def unique_name(prefix: str = "exp") -> str:
    return f"{prefix}-{uuid.uuid4().hex}"


def now_ms() -> int:
    return int(time.time() * 1000)


def api_get(base_url: str, path: str, params: Any = None, prefix: str = API, **kw):
    return requests.get(f"{base_url}{prefix}/{path}", params=params, timeout=60, **kw)


def api_post(base_url: str, path: str, body: Any = None, prefix: str = API, **kw):
    return requests.post(f"{base_url}{prefix}/{path}", json=body, timeout=60, **kw)


def ok_json(resp: requests.Response) -> dict:
    assert resp.status_code == 200, f"{resp.request.method} {resp.url}: {resp.status_code} {resp.text[:2000]}"
    assert resp.headers.get("Content-Type", "").startswith("application/json"), resp.headers
    return resp.json()


def assert_error_response(resp: requests.Response, status: int, *codes: str) -> dict:
    """An MLflow-format JSON error: given HTTP status and one of ``codes``."""
    assert resp.status_code == status, f"expected {status}, got {resp.status_code}: {resp.text[:2000]}"
    body = resp.json()
    assert body.get("error_code") in codes, body
    assert isinstance(body.get("message"), str) and body["message"], body
    return body


def assert_mlflow_error(excinfo: pytest.ExceptionInfo, *codes: str) -> MlflowException:
    exc = excinfo.value
    assert isinstance(exc, MlflowException), repr(exc)
    assert exc.error_code in codes, f"error_code={exc.error_code!r} message={exc.message!r}"
    return exc


def search_all_runs(
    client,
    experiment_ids: list[str],
    filter_string: str = "",
    order_by: list[str] | None = None,
    run_view_type: int = ViewType.ACTIVE_ONLY,
    page_size: int = 5000,
):
    """Every run matching, following page tokens until the end."""
    runs = []
    token = None
    while True:
        page = client.search_runs(
            experiment_ids,
            filter_string=filter_string,
            run_view_type=run_view_type,
            max_results=page_size,
            order_by=order_by,
            page_token=token,
        )
        runs.extend(page)
        token = page.token
        if not token:
            return runs


def run_ids(runs: Iterable) -> list[str]:
    return [r.info.run_id for r in runs]


def same_float(a: float, b: float) -> bool:
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    return a == b
