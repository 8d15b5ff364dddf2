"""Request ids, one JSON access-log line per request, and Prometheus metrics.

All three live in one WSGI middleware around the Flask app, so they cost a few microseconds per
request instead of a chain of Flask hooks (docs/performance.md has the profile).

Metrics work with several worker processes: `serve` points PROMETHEUS_MULTIPROC_DIR at a fresh
directory before the workers start, and /metrics then aggregates every worker's values.
"""

from __future__ import annotations

import atexit
import functools
import itertools
import logging
import os
import re
import sys
import threading
import time
from collections import Counter as Tally
from collections import deque
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

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
from inference_service.drift import DEFAULT_MIN_ROWS, DriftMetrics
from inference_service.logs import iso
from inference_service.model import Model

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

REQUEST_ID_HEADER = "X-Request-ID"
_VALID_ID = re.compile(r"[\w.:@/+=-]{1,128}")
QUIET_PATHS = frozenset({"/livez", "/readyz", "/v2/health/live", "/v2/health/ready", "/metrics"})
ACCESS_LOGGER = "inference_service.access"
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_encode = msgspec.json.Encoder().encode


class Metrics:
    """Every metric the service exports, on one registry per app."""

    def __init__(self, drift_min_rows: int = DEFAULT_MIN_ROWS) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "inference_requests",
            "HTTP requests.",
            ["endpoint", "model", "method", "status"],
            registry=r,
        )
        self.latency = Histogram(
            "inference_request_duration_seconds",
            "Time from request start to response, in seconds.",
            ["endpoint", "model", "status"],
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 2.5),
            registry=r,
        )
        self.predictions = Counter(
            "inference_predictions",
            "Predicted labels (classifiers).",
            ["model", "label"],
            registry=r,
        )
        self.rows = Histogram(
            "inference_rows_per_request",
            "Records (or tensor rows) per successful inference request.",
            ["model"],
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
            "inference_model_reloads", "Model reload attempts.", ["model", "result"], registry=r
        )
        # Drift bin counters, and the PSI computed from them at scrape time (drift.py).
        self.drift = DriftMetrics(r, drift_min_rows)
        # labels() takes a lock and builds a key on every call; the children never change.
        self._by_request: dict[tuple[str, str, str, str], tuple[Any, Any]] = {}
        self._by_label: dict[tuple[str, str], Any] = {}
        self._rows: dict[str, Any] = {}

    def observe(self, endpoint: str, model: str, method: str, status: str, seconds: float) -> None:
        key = (endpoint, model, method, status)
        children = self._by_request.get(key)
        if children is None:
            children = (
                self.requests.labels(endpoint, model, method, status),
                self.latency.labels(endpoint, model, status),
            )
            self._by_request[key] = children
        children[0].inc()
        children[1].observe(seconds)

    def predicted(self, model: str, rows: int, labels: list[str] | None) -> None:
        child = self._rows.get(model)
        if child is None:
            child = self._rows[model] = self.rows.labels(model)
        child.observe(rows)
        for label, count in Tally(labels or ()).items():
            key = (model, label)
            counter = self._by_label.get(key)
            if counter is None:
                counter = self._by_label[key] = self.predictions.labels(model, label)
            counter.inc(count)

    def model_seen(self, name: str) -> None:
        """A model's reload counters start at 0, so that its first refusal is an increase."""
        for result in ("success", "refused"):
            self.reloads.labels(name, result)

    def model_loaded(self, model: Model, previous: Model | None = None) -> None:
        if previous is not None:
            stamp = iso(previous.loaded_at)
            self.model_info.labels(previous.name, previous.version, stamp).set(0)
        self.model_info.labels(model.name, model.version, iso(model.loaded_at)).set(1)

    def exposition(self) -> bytes:
        if "PROMETHEUS_MULTIPROC_DIR" in os.environ:
            registry = CollectorRegistry()
            registry.register(self.drift.collector)  # first: it flushes this process's tallies
            multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
            return generate_latest(registry)
        return generate_latest(self.registry)


def _to_stderr(data: bytes) -> None:
    try:
        fd = sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):  # replaced by a stream with no descriptor
        sys.stderr.write(data.decode())
        return
    os.write(fd, data)


class AccessLog:
    """JSON access lines, buffered and written by a background thread a few times a second.

    One write system call per request was the largest single cost on the request path; a crash
    loses at most the last `interval` seconds of access lines (never other log records).
    """

    def __init__(self, sink: Callable[[bytes], object] | None = None, interval: float = 0.2):
        self._sink = sink or _to_stderr
        self._lines: deque[bytes] = deque()  # append and popleft are atomic: no lock per request
        self._flushing = threading.Lock()
        threading.Thread(target=self._run, args=(interval,), name="access-log", daemon=True).start()
        atexit.register(self.flush)

    def write(self, fields: dict[str, Any]) -> None:
        line = {"time": iso(time.time()), "level": "info", "logger": ACCESS_LOGGER}
        line["message"] = "request"
        line.update(fields)
        self._lines.append(_encode(line) + b"\n")

    def flush(self) -> None:
        with self._flushing:
            lines = self._lines
            batch = [lines.popleft() for _ in range(len(lines))]
            if batch:
                self._sink(b"".join(batch))

    def _run(self, interval: float) -> None:
        while True:
            time.sleep(interval)
            self.flush()


@functools.cache
def shared_access_log() -> AccessLog:
    """One writer per process, however many apps it builds."""
    return AccessLog()


class Observe:
    """WSGI middleware: request id in and out, timing, metrics and the access line."""

    def __init__(self, app: WSGIApplication, metrics: Metrics, log: AccessLog | None) -> None:
        self.app = app
        self.metrics = metrics
        self.log = log
        self._ids = itertools.count()
        self._prefix = os.urandom(6).hex()

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        started = time.perf_counter()
        incoming = environ.get("HTTP_X_REQUEST_ID")
        if incoming and _VALID_ID.fullmatch(incoming):
            request_id = incoming
        else:  # unique per process start and request, without a system call
            request_id = f"{self._prefix}{next(self._ids):08x}"
        status_line = ""

        def start(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            nonlocal status_line
            status_line = status
            headers.append((REQUEST_ID_HEADER, request_id))
            return start_response(status, headers, exc_info)

        in_flight = self.metrics.in_flight
        in_flight.inc()
        try:
            body = self.app(environ, start)
        finally:
            in_flight.dec()
        duration = time.perf_counter() - started
        endpoint = environ.get("inference.endpoint", "unmatched")
        status = status_line[:3]
        method = environ["REQUEST_METHOD"]
        # Any token is a valid HTTP method: an unbounded label would let clients grow the metrics.
        model = environ.get("inference.model", "")
        self.metrics.observe(
            endpoint, model, method if method in METHODS else "other", status, duration
        )
        rows = environ.get("inference.rows")
        if rows is not None:
            self.metrics.predicted(model, rows, environ.get("inference.labels"))
        path = environ.get("PATH_INFO", "")
        if self.log is not None and path not in QUIET_PATHS:
            self.log.write(
                {
                    "method": method,
                    "path": path,
                    "status": int(status or 0),
                    "duration_ms": round(duration * 1000, 3),
                    "rows": rows,
                    "model": model or None,
                    "model_version": environ.get("inference.model_version"),
                    "request_id": request_id,
                    "error": environ.get("inference.error"),
                }
            )
        return body


class _TextAccessLog(AccessLog):
    """With text logs, access lines go through logging like everything else (slower)."""

    def __init__(self) -> None:
        self._logger = logging.getLogger(ACCESS_LOGGER)

    def write(self, fields: dict[str, Any]) -> None:
        # repr() keeps a client's newlines and quotes from forging log lines.
        self._logger.info("request %s", " ".join(f"{k}={v!r}" for k, v in fields.items()))

    def flush(self) -> None:
        pass


def init_app(app: Flask, settings: Settings, metrics: Metrics) -> None:
    """Wrap the whole app, last: every request, whichever way it is routed, is observed."""
    app.extensions["metrics"] = metrics
    log: AccessLog | None = None
    if settings.access_log and logging.getLogger(ACCESS_LOGGER).isEnabledFor(logging.INFO):
        log = shared_access_log() if settings.log_format == "json" else _TextAccessLog()
    app.extensions["access_log"] = log
    app.wsgi_app = Observe(app.wsgi_app, metrics, log)  # type: ignore[method-assign]

    @app.before_request
    def name_the_endpoint() -> None:
        # The route pattern, not the path, keeps metric label values few.
        rule = request.url_rule
        if rule is not None:
            request.environ["inference.endpoint"] = rule.rule

    @app.get("/metrics")
    def metrics_endpoint() -> Response:
        return Response(metrics.exposition(), content_type=CONTENT_TYPE_LATEST)
