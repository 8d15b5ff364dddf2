"""The Docker side, through the `docker` CLI: run, inspect, wait for readiness, stop, remove."""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from inference_service.deploy import uds
from inference_service.deploy.proxy import CONTAINER_SOCKET_DIR
from inference_service.deploy.settings import SOCKET_NAME, DeploySettings, container_env

OWNER_LABEL = "io.inference-service.deploy"
CONTAINER_SOCKET = f"{CONTAINER_SOCKET_DIR}/{SOCKET_NAME}"
# The image's own HEALTHCHECK asks its TCP port; a release listens on its socket instead.
HEALTH_CMD = (
    '/app/venv/bin/python -c "import socket; s = socket.socket(socket.AF_UNIX); '
    f"s.settimeout(2); s.connect('{CONTAINER_SOCKET}'); "
    "s.sendall(b'GET /readyz HTTP/1.0\\r\\n\\r\\n'); "
    "raise SystemExit(s.recv(12)[9:12] != b'200')\""
)


class EngineError(Exception):
    pass


def docker(settings: DeploySettings, *args: str, timeout: float = 120) -> str:
    command = [*settings.docker_cmd, *args]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise EngineError(f"`{' '.join(command[:3])} …` failed: {exc}") from None
    if done.returncode != 0:
        raise EngineError(f"`{' '.join(command[:3])} …` failed: {done.stderr.strip()}")
    return done.stdout.strip()


def image_id(settings: DeploySettings, image: str) -> str:
    try:
        return docker(settings, "image", "inspect", "-f", "{{.Id}}", image)
    except EngineError:
        raise EngineError(f"image {image} is not on this host (build or pull it)") from None


def run(
    settings: DeploySettings, image: str, name: str, socket_dir: Path, environ: Mapping[str, str]
) -> str:
    """Start a container from `image`, listening on a socket in `socket_dir`, read-only, non-root.

    `socket_dir` is mounted into the container, which joins the directory's group (ours) to
    create its socket there; others may only pass through to it (0771), as nginx does.
    """
    socket_dir.mkdir(mode=0o771)
    socket_dir.chmod(0o771)  # whatever the umask
    args = [
        "run",
        "--detach",
        "--name",
        name,
        "--label",
        f"{OWNER_LABEL}={settings.container_prefix}",
        "--network",
        "none",
        "--volume",
        f"{socket_dir}:{CONTAINER_SOCKET_DIR}",
        "--group-add",
        str(os.getegid()),
        "--env",
        f"INFERENCE_UDS={CONTAINER_SOCKET}",
        "--health-cmd",
        HEALTH_CMD,
        "--health-interval",
        "5s",
        "--health-timeout",
        "3s",
        "--health-start-period",
        "20s",
        "--read-only",
        "--tmpfs",
        "/tmp:rw,nosuid,nodev,size=64m",
        "--restart",
        "unless-stopped",
        "--cap-drop",
        "ALL",
        "--security-opt",
        "no-new-privileges",
        "--stop-timeout",
        str(settings.stop_timeout),
        "--log-opt",
        "max-size=20m",
        "--log-opt",
        "max-file=3",
    ]
    for variable in container_env(environ):
        args += ["--env", variable]  # the value comes from this process's environment
    keys = environ.get("INFERENCE_API_KEYS", "")
    if keys and "," not in keys and os.path.isfile(keys):
        args += ["--volume", f"{keys}:{keys}:ro"]
    args.append(image)
    return docker(settings, *args, timeout=60)


def inspect(settings: DeploySettings, name: str) -> dict[str, Any] | None:
    try:
        out = docker(settings, "container", "inspect", name)
    except EngineError:
        return None
    found = json.loads(out)
    # docker also matches an id prefix ("a" is one): only the container of that name counts.
    exact = [c for c in found if c.get("Name") == f"/{name}"]
    return exact[0] if exact else None


def wait_ready(settings: DeploySettings, name: str, sock: Path, timeout: float) -> str:
    """Wait for GET /readyz to answer 200; returns the model version. Fails fast if it exits."""
    deadline = time.monotonic() + timeout
    last = "no answer yet"
    while time.monotonic() < deadline:
        state = (inspect(settings, name) or {}).get("State", {})
        if state.get("Status") in ("exited", "dead") or state.get("Restarting"):
            raise EngineError(f"container {name} stopped (exit code {state.get('ExitCode')})")
        try:
            status, raw = uds.request(sock, "GET", "/readyz", timeout=2)
            body = json.loads(raw)
            if status == 200:
                return str(body["model"]["version"])
            last = f"HTTP {status}: {body.get('error', '?') if isinstance(body, dict) else body}"
        except (OSError, ValueError, KeyError, TypeError) as exc:
            last = str(exc)
        time.sleep(0.25)
    raise EngineError(f"container {name} not ready after {timeout:g} s (last: {last})")


def logs_tail(settings: DeploySettings, name: str, lines: int = 5) -> str:
    command = [*settings.docker_cmd, "logs", "--tail", str(lines), name]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return (done.stdout + done.stderr).strip()


def stop_and_remove(settings: DeploySettings, name: str, timeout: int) -> None:
    """`docker stop -t timeout` (SIGTERM, the container drains) then remove it."""
    if inspect(settings, name) is None:
        return
    docker(settings, "stop", "-t", str(timeout), name, timeout=timeout + 30)
    docker(settings, "rm", "--force", name)


def remove(settings: DeploySettings, name: str) -> None:
    """Remove at once (for a new container that never served)."""
    if inspect(settings, name) is not None:
        docker(settings, "rm", "--force", name)
