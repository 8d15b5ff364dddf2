"""`serve` on a Unix socket (INFERENCE_UDS), as each deployed release listens."""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from inference_service.deploy import uds


@contextmanager
def serving_on(sock: Path, model_dir: Path, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("INFERENCE_")}
    env |= {"INFERENCE_MODEL_DIR": str(model_dir), "INFERENCE_UDS": str(sock)}
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "inference_service.cli", "serve"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                if uds.request(sock, "GET", "/readyz", timeout=1)[0] == 200:
                    break
            except OSError:
                time.sleep(0.05)
        yield proc
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def serve_once(sock: Path, model_dir: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("INFERENCE_")}
    env |= {"INFERENCE_MODEL_DIR": str(model_dir), "INFERENCE_UDS": str(sock)}
    return subprocess.run(
        [sys.executable, "-m", "inference_service.cli", "serve"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_serves_on_the_socket_anyone_may_connect_to(trained: Path, tmp_path: Path) -> None:
    sock = tmp_path / "server.sock"
    with serving_on(sock, trained, tmp_path / "log") as proc:
        assert proc.poll() is None
        status, body = uds.request(sock, "GET", "/readyz")
        assert status == 200 and json.loads(body)["status"] == "ready"
        assert stat.S_IMODE(sock.stat().st_mode) == 0o666
    assert not sock.exists(), "a clean shutdown removes the socket"


def test_a_socket_left_by_a_dead_server_is_replaced(trained: Path, tmp_path: Path) -> None:
    sock = tmp_path / "server.sock"
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(sock))  # bound but never listening: what a killed server leaves
    stale.close()
    with serving_on(sock, trained, tmp_path / "log") as proc:
        assert proc.poll() is None, (tmp_path / "log").read_text()[-2000:]
        assert uds.request(sock, "GET", "/readyz")[0] == 200


def test_a_socket_another_server_listens_on_is_refused(trained: Path, tmp_path: Path) -> None:
    sock = tmp_path / "server.sock"
    with serving_on(sock, trained, tmp_path / "log"):
        second = serve_once(sock, trained)
        assert second.returncode != 0
        assert f"INFERENCE_UDS={sock}: another server is listening on that socket" in (
            second.stderr
        )
        assert uds.request(sock, "GET", "/readyz")[0] == 200, "the first one must keep serving"


def test_a_socket_in_a_missing_directory_is_refused_naming_the_setting(
    trained: Path, tmp_path: Path
) -> None:
    done = serve_once(tmp_path / "missing" / "server.sock", trained)
    assert done.returncode != 0
    assert (
        "INFERENCE_UDS must be a path in an existing directory, "
        f"got '{tmp_path}/missing/server.sock'" in done.stderr
    )
