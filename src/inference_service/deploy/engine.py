"""The Docker side, through the `docker` CLI: run, inspect, wait for readiness, stop, remove."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from typing import Any

from inference_service.deploy.settings import DeploySettings, container_env

OWNER_LABEL = "io.inference-service.deploy"
CONTAINER_PORT = 6666


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


def free_port() -> int:
    """A port nothing listens on now; Docker binds it a moment later (a race only with itself)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def image_id(settings: DeploySettings, image: str) -> str:
    try:
        return docker(settings, "image", "inspect", "-f", "{{.Id}}", image)
    except EngineError:
        raise EngineError(f"image {image} is not on this host (build or pull it)") from None


def run(
    settings: DeploySettings, image: str, name: str, port: int, environ: Mapping[str, str]
) -> str:
    """Start a container from `image`, published only on 127.0.0.1:port, read-only, non-root."""
    args = [
        "run",
        "--detach",
        "--name",
        name,
        "--label",
        f"{OWNER_LABEL}={settings.container_prefix}",
        "--publish",
        f"127.0.0.1:{port}:{CONTAINER_PORT}",
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
    return found[0] if found else None


def wait_ready(settings: DeploySettings, name: str, port: int, timeout: float) -> str:
    """Wait for GET /readyz to answer 200; returns the model version. Fails fast if it exits."""
    deadline = time.monotonic() + timeout
    last = "no answer yet"
    while time.monotonic() < deadline:
        state = (inspect(settings, name) or {}).get("State", {})
        if state.get("Status") in ("exited", "dead") or state.get("Restarting"):
            raise EngineError(f"container {name} stopped (exit code {state.get('ExitCode')})")
        try:
            url = f"http://127.0.0.1:{port}/readyz"
            with urllib.request.urlopen(url, timeout=2) as response:
                body = json.loads(response.read())
                return str(body["model"]["version"])
        except urllib.error.HTTPError as exc:
            last = f"HTTP {exc.code}: {_error_text(exc)}"
        except (urllib.error.URLError, OSError, ValueError, KeyError) as exc:
            last = str(getattr(exc, "reason", exc))
        time.sleep(0.25)
    raise EngineError(f"container {name} not ready after {timeout:g} s (last: {last})")


def _error_text(exc: urllib.error.HTTPError) -> str:
    try:
        return str(json.loads(exc.read()).get("error", "?"))
    except (ValueError, AttributeError, OSError):
        return "?"


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
