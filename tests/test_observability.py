"""Request ids, the access log and Prometheus metrics, through real requests."""

import json
import logging
from pathlib import Path

import pytest
from flask.testing import FlaskClient
from prometheus_client.parser import text_string_to_metric_families

from inference_service import artifact
from inference_service.smoke import ORIGINAL_PAYLOAD


def samples(client: FlaskClient) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.mimetype == "text/plain"
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(response.get_data(as_text=True))
        for s in family.samples
    }


def value(
    all_samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str
) -> float:
    return all_samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_request_id_is_honoured_or_generated(client: FlaskClient) -> None:
    given = client.post("/inference", json=ORIGINAL_PAYLOAD, headers={"X-Request-ID": "abc-123"})
    assert given.headers["X-Request-ID"] == "abc-123"
    generated = {client.get("/nowhere").headers["X-Request-ID"] for _ in range(3)}
    assert len(generated) == 3 and all(generated)
    hostile = client.get("/livez", headers={"X-Request-ID": "bad id with spaces"})
    assert hostile.headers["X-Request-ID"] != "bad id with spaces"


def test_counters_move_after_real_requests(client: FlaskClient) -> None:
    before = samples(client)
    for _ in range(3):
        assert client.post("/inference", json=ORIGINAL_PAYLOAD).status_code == 200
    assert client.post("/inference", json=[]).status_code == 400
    after = samples(client)
    ok = {"endpoint": "/inference", "model": "iris", "method": "POST", "status": "200"}
    bad = {**ok, "status": "400"}
    assert (
        value(after, "inference_requests_total", **ok)
        - value(before, "inference_requests_total", **ok)
        == 3
    )
    assert (
        value(after, "inference_requests_total", **bad)
        - value(before, "inference_requests_total", **bad)
        == 1
    )
    assert (
        value(after, "inference_predictions_total", model="iris", label="virginica")
        - value(before, "inference_predictions_total", model="iris", label="virginica")
        == 3
    )
    assert (
        value(after, "inference_rows_per_request_sum", model="iris")
        - value(before, "inference_rows_per_request_sum", model="iris")
        == 6
    )
    latency = {"endpoint": "/inference", "model": "iris", "status": "200"}
    assert value(after, "inference_request_duration_seconds_count", **latency) >= 3
    assert value(after, "inference_requests_in_flight") == 1  # the /metrics request itself


def test_model_info_names_the_live_version(client: FlaskClient, trained: Path) -> None:
    version = artifact.current_version(trained)
    info = [
        (dict(labels), v)
        for (name, labels), v in samples(client).items()
        if name == "inference_model_info"
    ]
    assert [(labels["version"], v) for labels, v in info] == [(version, 1.0)]
    assert info[0][0]["name"] == "iris" and info[0][0]["loaded_at"]


def test_one_json_access_line_per_request_without_health_probes(
    client: FlaskClient, trained: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    access_log = client.application.extensions["access_log"]
    access_log.flush()
    capfd.readouterr()
    client.get("/livez")
    client.get("/readyz")
    client.post("/inference", json=ORIGINAL_PAYLOAD, headers={"X-Request-ID": "r-1"})
    client.post("/inference", data=b"[]", content_type="application/json")
    access_log.flush()
    lines = [json.loads(line) for line in capfd.readouterr().err.splitlines()]
    assert len(lines) == 2
    ok, bad = lines
    assert ok["logger"] == "inference_service.access" and ok["level"] == "info"
    assert ok["path"] == "/inference" and ok["status"] == 200 and ok["rows"] == 2
    assert ok["request_id"] == "r-1" and ok["method"] == "POST"
    assert ok["model_version"] == artifact.current_version(trained)
    assert ok["duration_ms"] > 0 and ok["time"].endswith("+00:00")
    assert bad["status"] == 400 and "empty array" in bad["error"]
    assert "traceback" not in bad


def test_access_log_can_be_switched_off(trained: Path) -> None:
    from inference_service.app import create_app
    from inference_service.config import Settings

    app = create_app(Settings(model_dir=trained, access_log=False, reload_interval=0))
    assert app.extensions["access_log"] is None
    assert app.test_client().post("/inference", json=ORIGINAL_PAYLOAD).status_code == 200


def test_json_formatter_writes_one_object_per_line() -> None:
    from inference_service.logs import JsonFormatter

    record = logging.LogRecord(
        "inference_service.app", logging.ERROR, "", 0, "a\nb %s", ("c",), None
    )
    line = JsonFormatter().format(record)
    assert "\n" not in line
    parsed = json.loads(line)
    assert parsed["message"] == "a\nb c" and parsed["level"] == "error"
    assert parsed["logger"] == "inference_service.app" and parsed["time"].endswith("+00:00")


def test_unknown_http_methods_share_one_metric_label(client: FlaskClient) -> None:
    for method in ("FOOBAR1", "FOOBAR2", "PROPFIND"):
        assert client.open("/inference", method=method).status_code == 405
    after = samples(client)
    methods = {
        dict(labels).get("method") for name, labels in after if name == "inference_requests_total"
    }
    assert "other" in methods
    assert not methods & {"FOOBAR1", "FOOBAR2", "PROPFIND"}


def test_text_access_log_escapes_what_clients_send(
    trained: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from inference_service.app import create_app
    from inference_service.config import Settings

    app = create_app(Settings(model_dir=trained, log_format="text", reload_interval=0))
    with caplog.at_level(logging.INFO, logger="inference_service.access"):
        app.test_client().get("/no%0Awhere")  # PATH_INFO arrives percent-decoded
    [line] = [r.getMessage() for r in caplog.records if r.name == "inference_service.access"]
    assert "\n" not in line
    assert "path='/no\\nwhere'" in line and "status=404" in line
