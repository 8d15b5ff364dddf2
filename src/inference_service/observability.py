"""Request ids, one JSON access-log line per request, and Prometheus metrics.

Metrics work with several worker processes: `serve` points PROMETHEUS_MULTIPROC_DIR at a fresh
directory before the workers start, and /metrics then aggregates every worker's values.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import time
import uuid
from collections import Counter as Tally
from datetime import UTC, datetime
from typing import Any

import msgspec
from flask import Flask, Response, request
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

from inference_service.config import Settings

REQUEST_ID_HEADER = "X-Request-ID"
_VALID_ID = re.compile(r"[\w.:@/+=-]{1,128}")
QUIET_PATHS = frozenset({"/livez", "/readyz", "/v2/health/live", "/v2/health/ready", "/metrics"})
_encode = msgspec.json.Encoder().encode
access_log = logging.getLogger("inference_service.access")


class Metrics:
    """Every metric the service exports, on one registry per app."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "inference_requests", "HTTP requests.", ["endpoint", "method", "status"], registry=r
        )
        self.latency = Histogram(
            "inference_request_duration_seconds",
            "Time from request start to response, in seconds.",
            ["endpoint", "status"],
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 2.5),
            registry=r,
        )
        self.predictions = Counter(
            "inference_predictions", "Predicted labels.", ["label"], registry=r
        )
        self.rows = Histogram(
            "inference_rows_per_request",
            "Records (or tensor rows) per successful inference request.",
            buckets=(1, 2, 5, 10, 50, 100, 500, 1000, 5000, 10000),
            registry=r,
        )
        self.in_flight = Gauge(
            "inference_requests_in_flight",
            "Requests being handled now.",
            multiprocess_mode="livesum",
            registry=r,
        )
        self.model_info = Gauge(
            "inference_model_info",
            "The live model: 1 for the version being served (per worker pid with several workers).",
            ["name", "version", "loaded_at"],
            multiprocess_mode="liveall",
            registry=r,
        )
        self.reloads = Counter(
            "inference_model_reloads", "Model reload attempts.", ["result"], registry=r
        )

    def model_loaded(self, name: str, version: str, loaded_at: float, previous: Any = None) -> None:
        if previous is not None:
            stamp = _iso(previous.loaded_at)
            self.model_info.labels(previous.name, previous.version, stamp).set(0)
        self.model_info.labels(name, version, _iso(loaded_at)).set(1)

    def exposition(self) -> bytes:
        if "PROMETHEUS_MULTIPROC_DIR" in os.environ:
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
            return generate_latest(registry)
        return generate_latest(self.registry)


def configure_logging(settings: Settings) -> None:
    """Root logging once per process: JSON lines or plain text, at the configured level."""
    root = logging.getLogger()
    if getattr(root, "_inference_configured", False):
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        JsonFormatter()
        if settings.log_format == "json"
        else logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    )
    root.handlers[:] = [handler]
    root.setLevel(settings.log_level.upper())
    root._inference_configured = True  # type: ignore[attr-defined]


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": _iso(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        line.update(getattr(record, "fields", {}))
        if record.exc_info:
            line["traceback"] = self.formatException(record.exc_info)
        return _encode(line).decode()


def init_app(app: Flask, settings: Settings) -> Metrics:
    metrics = Metrics()
    app.extensions["metrics"] = metrics
    log_requests = settings.access_log and access_log.isEnabledFor(logging.INFO)

    @app.before_request
    def start() -> None:
        environ = request.environ
        environ["inference.start"] = time.perf_counter()
        incoming = environ.get("HTTP_X_REQUEST_ID")
        environ["inference.id"] = (
            incoming if incoming and _VALID_ID.fullmatch(incoming) else uuid.uuid4().hex
        )
        metrics.in_flight.inc()

    @app.after_request
    def finish(response: Response) -> Response:
        environ = request.environ
        request_id = environ.get("inference.id") or uuid.uuid4().hex
        response.headers[REQUEST_ID_HEADER] = request_id
        started = environ.get("inference.start")
        if started is None:
            return response
        duration = time.perf_counter() - started
        rule = request.url_rule
        endpoint = rule.rule if rule is not None else "unmatched"
        status = str(response.status_code)
        metrics.requests.labels(endpoint, request.method, status).inc()
        metrics.latency.labels(endpoint, status).observe(duration)
        rows = environ.get("inference.rows")
        if rows is not None:
            metrics.rows.observe(rows)
            labels: list[str] = environ["inference.labels"]
            for label, count in Tally(labels).items():
                metrics.predictions.labels(label).inc(count)
        if log_requests and request.path not in QUIET_PATHS:
            access_log.info(
                "request",
                extra={
                    "fields": {
                        "method": request.method,
                        "path": request.path,
                        "status": response.status_code,
                        "duration_ms": round(duration * 1000, 3),
                        "rows": rows,
                        "model_version": environ.get("inference.model_version"),
                        "request_id": request_id,
                        "error": environ.get("inference.error"),
                    }
                },
            )
        return response

    @app.teardown_request
    def done(_: BaseException | None) -> None:
        if "inference.start" in request.environ:
            metrics.in_flight.dec()

    @app.get("/metrics")
    def metrics_endpoint() -> Response:
        return Response(metrics.exposition(), mimetype=CONTENT_TYPE_LATEST.split(";")[0])

    return metrics


def _iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="milliseconds")
