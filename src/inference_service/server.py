"""Run the app under granian, the fastest production WSGI server measured (docs/performance.md)."""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
from dataclasses import fields
from pathlib import Path

from inference_service.config import ENV_PREFIX, Settings

# Anyone may connect to the socket itself; the directory around it decides who can reach it.
UDS_PERMISSIONS = 0o666


def serve(settings: Settings) -> None:
    """Serve until SIGTERM/SIGINT; in-flight requests get `drain_seconds` to finish."""
    from granian import Granian
    from granian.constants import Interfaces

    # Workers build the app from the environment, so pass every setting through it.
    for f in fields(settings):
        os.environ[ENV_PREFIX + f.name.upper()] = str(getattr(settings, f.name))
    if settings.uds:
        _remove_stale_socket(Path(settings.uds))
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
        uds=Path(settings.uds) if settings.uds else None,
        uds_permissions=UDS_PERMISSIONS if settings.uds else None,
        workers=settings.workers,
        workers_kill_timeout=settings.drain_seconds,
        respawn_failed_workers=True,
        log_access=False,  # the app writes its own structured access log
    )
    try:
        server.serve()
    finally:
        shutil.rmtree(metrics_dir, ignore_errors=True)


def _remove_stale_socket(path: Path) -> None:
    """Remove a socket file left by a server that died; refuse one that still answers.

    A process killed without its shutdown (SIGKILL, a crash) leaves the file behind, and binding
    over it fails, so a restarted container would never come back.
    """
    if not path.is_socket():
        return
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(str(path))
    except ConnectionRefusedError:
        path.unlink(missing_ok=True)
        return
    except OSError:
        return  # let the bind report it
    finally:
        probe.close()
    raise SystemExit(f"{ENV_PREFIX}UDS={path}: another server is listening on that socket")
