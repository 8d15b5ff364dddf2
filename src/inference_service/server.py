"""Run the app under granian, the fastest production WSGI server measured (docs/performance.md)."""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import shutil
import socket
import tempfile
import threading
import time
from dataclasses import fields
from pathlib import Path
from typing import Any

from inference_service.config import ENV_PREFIX, Settings

log = logging.getLogger(__name__)

# Anyone may connect to the socket itself; the directory around it decides who can reach it.
UDS_PERMISSIONS = 0o666


def serve(settings: Settings) -> int:
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
    # Only now: prometheus_client picks its multi-process mode when first imported, and workers
    # forked from this process inherit the choice (logs does not import it, but stays light).
    from inference_service import logs

    logs.configure_logging(settings)
    keys = settings.keys()
    log.info("auth %s", f"on: {len(keys)} API key(s)" if keys else "off (INFERENCE_API_KEYS empty)")
    if not settings.uds and not settings.share_port:
        try:
            claim_port(settings.host, settings.port)
        except SystemExit:
            shutil.rmtree(metrics_dir, ignore_errors=True)
            raise
    server = Granian(
        "inference_service.server:worker_app",
        factory=True,
        interface=Interfaces.WSGI,
        address=settings.host,
        port=settings.port,
        uds=Path(settings.uds) if settings.uds else None,
        uds_permissions=UDS_PERMISSIONS if settings.uds else None,
        workers=settings.workers,
        blocking_threads=threads(settings),
        websockets=False,
        log_dictconfig=logs.logging_dictconfig(settings),
        workers_kill_timeout=settings.drain_seconds,
        respawn_failed_workers=True,
        log_access=False,  # the app writes its own structured access log
    )
    try:
        server.serve()
    finally:
        shutil.rmtree(metrics_dir, ignore_errors=True)
    return 0


def worker_app() -> Any:
    """The app factory each granian worker calls: take a core, then build the app."""
    from inference_service.app import create_app

    settings = Settings.from_env()
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if settings.pin_workers and directory and hasattr(os, "sched_setaffinity"):
        core = pin_worker(Path(directory))
        if core is None and len(os.sched_getaffinity(0)) > 1:
            # A worker replaced on SIGHUP starts while the old ones still hold their cores.
            threading.Thread(target=_pin_later, args=(Path(directory),), daemon=True).start()
        log.info("worker %d on %s", os.getpid(), f"core {core}" if core is not None else "any core")
    threading.Thread(target=return_freed_memory, name="return-memory", daemon=True).start()
    return create_app(settings)


def return_freed_memory(period: float = 5.0, slack: int = 4 << 20) -> None:
    """Every `period` seconds, hand freed heap memory back to the system if RSS grew by `slack`.

    glibc's malloc keeps what large requests freed (the space between live blocks in each
    thread's arena) for later use, so after each burst of 10,000-row requests a worker rested a
    little higher than after the one before; with this it comes back to the same level, at no
    cost in throughput (bench/memory.py, figures in docs/performance.md). An idle worker never
    trims. Linux only (/proc, glibc).
    """
    if not os.path.exists("/proc/self/statm"):
        return
    settled = resident_bytes()
    while True:
        time.sleep(period)
        now = resident_bytes()
        if now > settled + slack:
            if not trim_heap():
                return
            settled = resident_bytes()
        elif now < settled:
            settled = now


def trim_heap() -> bool:
    """malloc_trim(0): give the free pages of every malloc arena back; False without glibc."""
    import ctypes

    trim = getattr(ctypes.CDLL(None), "malloc_trim", None)
    if trim is None:
        return False
    trim(0)
    return True


def resident_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _pin_later(directory: Path, tries: int = 30) -> None:
    for _ in range(tries):
        time.sleep(1)
        if (core := pin_worker(directory)) is not None:
            log.info("worker %d on core %d", os.getpid(), core)
            return


_CLAIMS: list[int] = []
"""Lock files a worker holds for its whole life; the kernel drops the lock when it dies."""


def pin_worker(directory: Path) -> int | None:
    """Move this process, every thread of it, onto one core no other worker of this server has.

    Workers claim cores with a lock file each in the server's private directory, so a worker
    respawned after a crash takes the core its predecessor left. The first core tried depends on
    the directory's random name, so two servers on one host (a release and its canary) start on
    different cores as often as chance allows. With more workers than cores, or one core, the
    remaining workers are left where the kernel puts them (None).
    """
    import hashlib  # here, not at the top: the main process has no use for OpenSSL

    cores = sorted(os.sched_getaffinity(0))
    if len(cores) < 2:
        return None
    start = int(hashlib.sha256(str(directory).encode()).hexdigest(), 16) % len(cores)
    for i in range(len(cores)):
        core = cores[(start + i) % len(cores)]
        fd = os.open(directory / f"core-{core}.lock", os.O_CREAT | os.O_RDWR, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue
        _CLAIMS.append(fd)
        # sched_setaffinity moves one thread; threads made later inherit it from their maker.
        for task in os.listdir("/proc/self/task"):
            with contextlib.suppress(ProcessLookupError):  # a thread that just ended
                os.sched_setaffinity(int(task), {core})
        return core
    return None


# A WSGI request holds its thread while its body arrives, so the pool, not the CPU, decides how
# many slow or stalled clients a worker rides out (the hostile-input tests stall 64 at once).
# Idle threads cost little: granian starts them on demand and stops them after 30 s idle.
DEFAULT_THREADS = 128


def threads(settings: Settings) -> int:
    """Python threads per worker: INFERENCE_THREADS, or DEFAULT_THREADS.

    The work itself is CPU-bound under one interpreter lock, so more threads do not make a
    worker faster; they keep slow clients from blocking fast ones. Behind the deployed nginx,
    which buffers request bodies, a thread never waits on a client at all.
    """
    return settings.threads or DEFAULT_THREADS


def claim_port(host: str, port: int) -> None:
    """Refuse a port that something already listens on, before the server starts.

    granian binds with SO_REUSEPORT, so a second server on a busy port would start and silently
    split the traffic with the first. A plain bind fails on any listener, reuse-port or not.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    probe = socket.socket(family, socket.SOCK_STREAM)
    try:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # TIME_WAIT is not "in use"
        probe.bind((host, port))
    except OSError as exc:
        raise SystemExit(
            f"cannot serve on {host}:{port}: {exc.strerror or exc} (address already in use?); "
            f"set {ENV_PREFIX}SHARE_PORT=true to share the port with another server on purpose"
        ) from None
    finally:
        probe.close()


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
