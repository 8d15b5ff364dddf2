"""The inference routes answer exactly the same through the WSGI dispatch as through Flask.

`api.Dispatch` sends a POST to a served model's inference path straight to its handler; Flask's
routes call the same handlers. These tests send one corpus (good requests, every kind of bad
one, the hostile corpus of the server tests) both ways and compare status, body and headers.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from flask import Flask, request_started
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from werkzeug.test import Client, TestResponse

from inference_service import api, artifact
from inference_service.app import create_app
from inference_service.config import Settings
from inference_service.observability import Observe
from tests.e2e.test_hostile import BODIES

HEADERS = ("content-type", "www-authenticate", "inference-header-content-length", "allow")
KEY = "k" * 32


class Both:
    """One app, asked through its full WSGI stack and through Flask's routing alone."""

    def __init__(self, app: Flask) -> None:
        observe = app.wsgi_app
        assert isinstance(observe, Observe) and isinstance(observe.app, api.Dispatch)
        self.fast = app.test_client()
        self.flask = Client(observe.app.app, TestResponse)

    def same(self, method: str, path: str, **kwargs: Any) -> TestResponse:
        fast = self.fast.open(path, method=method, **kwargs)
        slow = self.flask.open(path, method=method, **kwargs)
        assert fast.status_code == slow.status_code, (path, fast.data[:300], slow.data[:300])
        assert fast.data == slow.data, path
        for name in HEADERS:
            assert fast.headers.get(name) == slow.headers.get(name), (path, name)
        assert fast.status_code < 500, fast.data[:300]
        return fast


def _app(root: Path, **changes: Any) -> Flask:
    return create_app(Settings(model_dir=root, reload_interval=0, **changes))


@pytest.fixture(scope="module")
def both(repository: Path) -> Both:
    return Both(_app(repository, max_body_bytes=200_000, max_rows=500))


@pytest.fixture(scope="module")
def versions(repository: Path) -> dict[str, str]:
    return {name: artifact.current_version(repository / name) for name in ("iris", "wine")}


def _v2(rows: list[list[float]], datatype: str = "FP32", **extra: Any) -> dict[str, Any]:
    tensor = {"name": "input", "shape": [len(rows), len(rows[0])], "datatype": datatype}
    return {"inputs": [{**tensor, "data": rows}], **extra}


def _binary(
    rows: list[list[float]], dtype: str = "<f4", datatype: str = "FP32"
) -> tuple[bytes, int]:
    data = np.asarray(rows, dtype=dtype).tobytes()
    header = json.dumps(
        {
            "inputs": [
                {
                    "name": "input",
                    "shape": [len(rows), len(rows[0])],
                    "datatype": datatype,
                    "parameters": {"binary_data_size": len(data)},
                }
            ],
            "parameters": {"binary_data_output": True},
        }
    ).encode()
    return header + data, len(header)


IRIS = [[5.1, 3.5, 1.4, 0.2], [6.3, 3.3, 6.0, 2.5]]
RECORD = {"0": 5.1, "1": 3.5, "2": 1.4, "3": 0.2}
NAMED = {"sepal length (cm)": 5.1, "sepal width (cm)": 3.5}


def _cases(versions: dict[str, str]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path in ("/inference", "/models/iris/inference"):
        yield "POST", path, {"json": [RECORD, RECORD]}
        yield "POST", path, {"json": RECORD}
        yield "POST", path + "?probabilities=true", {"json": [RECORD]}
        yield "POST", path + "?probabilities=maybe", {"json": [RECORD]}
        yield "POST", path + "?probabilities=0&probabilities=1", {"json": [RECORD]}
        yield "POST", path, {"json": []}
        yield "POST", path, {"json": [NAMED]}
        yield "POST", path, {"json": [{**RECORD, "4": 1}]}
        yield "POST", path, {"json": [RECORD, {"0": 1, "1": 2, "2": 3}]}
        yield "POST", path, {"json": [{**RECORD, "0": "a"}]}
        yield "POST", path, {"json": [RECORD] * 501}
        yield "POST", path, {"data": b"[{", "content_type": "application/json"}
        yield "POST", path, {"data": b"{}", "content_type": "text/plain"}
        yield "POST", path, {"data": b'[{"0":1}]'}
        yield "POST", path, {"data": b"x" * 200_001, "content_type": "application/json"}
        yield "POST", path, {"json": [RECORD], "headers": {"Transfer-Encoding": "chunked"}}
        yield "GET", path, {}
        yield "PUT", path, {"json": [RECORD]}
    yield "POST", "/models/diabetes/inference?probabilities=true", {"json": [{"0": 1}]}
    yield "POST", "/models/nope/inference", {"json": [RECORD]}
    yield "POST", "/models//inference", {"json": [RECORD]}
    yield "POST", "/inference/", {"json": [RECORD]}
    yield "POST", "/v1/models/wine:predict", {"json": {"instances": [[13.0] * 13]}}
    yield "POST", "/v1/models/iris:predict", {"json": {"instances": IRIS}}
    yield "POST", "/v1/models/iris:predict", {"json": {"instances": [RECORD]}}
    yield "POST", "/v1/models/iris:predict", {"json": {"instances": [[1, 2, 3]]}}
    yield "POST", "/v1/models/iris:predict", {"json": [RECORD]}
    yield "POST", "/v1/models/nope:predict", {"json": {"instances": IRIS}}
    yield "POST", "/v1/models/:predict", {"json": {"instances": IRIS}}
    yield "GET", "/v1/models/iris:predict", {}
    for name in ("iris", "wine"):
        v = versions[name]
        for path in (f"/v2/models/{name}/infer", f"/v2/models/{name}/versions/{v}/infer"):
            rows = IRIS if name == "iris" else [[13.0] * 13]
            yield "POST", path, {"json": _v2(rows)}
            yield "POST", path, {"json": _v2(rows, "FP64", id="a-1")}
            yield "POST", path, {"json": _v2(rows, outputs=[{"name": "label"}])}
            yield "POST", path, {"json": _v2(rows, outputs=[{"name": "nope"}])}
            yield "POST", path, {"json": _v2(rows, "INT8")}
            yield "POST", path, {"json": _v2([[70000.0] * len(rows[0])], "FP16")}
    body, length = _binary(IRIS)
    path = "/v2/models/iris/infer"
    binary = {"headers": {api.INFERENCE_HEADER: str(length)}}
    yield "POST", path, {"data": body, **binary}
    yield "POST", path, {"data": body, "content_type": "application/octet-stream", **binary}
    yield "POST", path, {"data": body[:-1], **binary}
    yield "POST", path, {"data": body, "headers": {api.INFERENCE_HEADER: str(len(body) + 1)}}
    yield "POST", path, {"data": body, "headers": {api.INFERENCE_HEADER: "twelve"}}
    yield "POST", path, {"data": _binary(IRIS, "<f8", "FP32")[0], **binary}
    yield "POST", path, {"data": _binary(IRIS, "<f8", "FP64")[0], **binary}
    yield "POST", "/v2/models/iris/versions/0000/infer", {"json": _v2(IRIS)}
    yield "POST", "/v2/models/nope/infer", {"json": _v2(IRIS)}
    yield "POST", "/v2/models/iris/versions//infer", {"json": _v2(IRIS)}


def test_every_case_answers_the_same_both_ways(both: Both, versions: dict[str, str]) -> None:
    answered = {status: 0 for status in (200, 400, 404, 405, 411, 413, 415)}
    for method, path, kwargs in _cases(versions):
        status = both.same(method, path, **kwargs).status_code
        answered[status] += 1
    # The corpus reaches every kind of answer, so the comparison covers each.
    assert all(answered.values()), answered


@pytest.mark.parametrize(
    ("path", "body"), [pytest.param(p, b, id=name) for name, p, b, _ in BODIES[:-4]]
)
def test_the_hostile_corpus_answers_the_same_both_ways(
    repository: Path, path: str, body: bytes
) -> None:
    both = Both(_app(repository))
    both.same("POST", path, data=body, content_type="application/json")


def test_api_keys_are_checked_the_same_both_ways(repository: Path) -> None:
    both = Both(_app(repository, api_keys=KEY))
    for path in ("/inference", "/v1/models/iris:predict", "/v2/models/iris/infer"):
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {KEY}"}):
            assert both.same("POST", path, json=[RECORD], headers=headers).status_code == 401
        ok = both.same("POST", path, json=[RECORD], headers={"Authorization": f"Bearer {KEY}"})
        assert ok.status_code in (200, 400)  # V1 and V2 bodies differ; the key got in


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    path=st.sampled_from(
        ["/inference", "/models/wine/inference", "/v1/models/iris:predict", "/v2/models/iris/infer"]
    ),
    body=st.one_of(
        st.binary(max_size=64),
        st.recursive(
            st.none() | st.booleans() | st.floats() | st.integers() | st.text(max_size=5),
            lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=3), inner),
            max_leaves=12,
        ).map(lambda v: json.dumps(v).encode()),
    ),
)
def test_arbitrary_bodies_answer_the_same_both_ways(both: Both, path: str, body: bytes) -> None:
    both.same("POST", path, data=body, content_type="application/json")


def test_inference_routes_skip_flask_and_the_rest_do_not(both: Both) -> None:
    app: Flask = both.fast.application  # type: ignore[assignment]
    seen: list[str] = []

    def started(sender: Flask, **extra: Any) -> None:
        seen.append("flask")

    request_started.connect(started, app)
    try:
        assert both.fast.post("/inference", json=[RECORD]).status_code == 200
        assert both.fast.post("/v2/models/iris/infer", json=_v2(IRIS)).status_code == 200
        assert both.fast.post("/inference", data=b"[").status_code == 400
        assert seen == []
        assert both.fast.post("/models/nope/inference", json=[RECORD]).status_code == 404
        assert both.fast.get("/readyz").status_code == 200
        assert seen == ["flask", "flask"]
    finally:
        request_started.disconnect(started, app)


def test_metrics_and_access_lines_name_the_route_whichever_way(
    repository: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    app = _app(repository)
    access_log = app.extensions["access_log"]
    access_log.flush()
    capfd.readouterr()
    client = app.test_client()
    answer = client.post(
        "/v1/models/iris:predict", json={"instances": IRIS}, headers={"X-Request-ID": "r-1"}
    )
    assert answer.headers["X-Request-ID"] == "r-1"
    assert client.post("/models/wine/inference", json=[{"0": 1}]).headers["X-Request-ID"]
    access_log.flush()
    ok, bad = (json.loads(line) for line in capfd.readouterr().err.splitlines())
    assert (ok["path"], ok["status"], ok["model"], ok["rows"]) == (
        "/v1/models/iris:predict",
        200,
        "iris",
        2,
    )
    assert ok["request_id"] == "r-1" and ok["model_version"]
    assert (bad["status"], bad["model"], bad["rows"]) == (400, "wine", None)
    assert bad["error"].startswith("Record 0")
    text = client.get("/metrics").text
    assert (
        'inference_requests_total{endpoint="/v1/models/<name>:predict",method="POST",'
        'model="iris",status="200"} 1.0'
    ) in text
    assert 'inference_rows_per_request_count{model="iris"} 1.0' in text


def test_turns_are_taken_in_arrival_order_and_released_on_errors() -> None:
    turns = api.Turns()
    order: list[int] = []

    def wait_in_line(i: int) -> None:
        with turns:
            order.append(i)

    with turns:  # held: everyone after queues
        threads = []
        for i in range(8):
            threads.append(threading.Thread(target=wait_in_line, args=(i,)))
            threads[-1].start()
            deadline = time.monotonic() + 5
            while len(turns._waiting) < i + 1:  # queued before the next one arrives
                assert time.monotonic() < deadline
                time.sleep(0.001)
        assert order == []
    for thread in threads:
        thread.join(5)
    assert order == list(range(8))
    with pytest.raises(ZeroDivisionError), turns:
        1 / 0  # noqa: B018
    done = threading.Event()
    threading.Thread(target=lambda: (turns.__enter__(), done.set())).start()
    assert done.wait(5), "a turn left by an exception was never handed on"
