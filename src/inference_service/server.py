"""Run the app under granian, the fastest production WSGI server measured (docs/performance.md)."""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import fields

from inference_service.config import ENV_PREFIX, Settings


def serve(settings: Settings) -> None:
    """Serve until SIGTERM/SIGINT; in-flight requests get `drain_seconds` to finish."""
    from granian import Granian
    from granian.constants import Interfaces

    # Workers build the app from the environment, so pass every setting through it.
    for f in fields(settings):
        os.environ[ENV_PREFIX + f.name.upper()] = str(getattr(settings, f.name))
    # Each worker writes its metrics here and /metrics sums them (prometheus_client multiprocess).
    # A fresh directory per server start, so counters from a previous run never leak in.
    parent = settings.metrics_dir or None
    metrics_dir = tempfile.mkdtemp(prefix="inference-metrics-", dir=parent)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
    server = Granian(
        "inference_service.app:create_app",
        factory=True,
        interface=Interfaces.WSGI,
        address=settings.host,
        port=settings.port,
        workers=settings.workers,
        workers_kill_timeout=settings.drain_seconds,
        respawn_failed_workers=True,
        log_access=False,  # the app writes its own structured access log
    )
    try:
        server.serve()
    finally:
        shutil.rmtree(metrics_dir, ignore_errors=True)
