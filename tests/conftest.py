"""Shared fixtures: isolated environment, one trained model per session, the app and a client."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient

from inference_service.app import create_app
from inference_service.config import Settings
from inference_service.train import TrainConfig, train

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Config comes from the environment, so no test may see another's (or the shell's)."""
    for name in list(os.environ):
        if name.startswith("INFERENCE_"):
            monkeypatch.delenv(name)


@pytest.fixture(scope="session")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model trained once per session into a temporary model directory. Treat as read-only."""
    model_dir = tmp_path_factory.mktemp("models") / "iris"
    train(TrainConfig(data_file=ROOT / "data/input/train/iris.csv", model_dir=model_dir))
    return model_dir


@pytest.fixture
def model_dir(trained: Path, tmp_path: Path) -> Path:
    """A private copy of the trained model directory, for tests that change it."""
    copy = tmp_path / "iris"
    shutil.copytree(trained, copy)
    return copy


@pytest.fixture
def app(trained: Path) -> Flask:
    return create_app(Settings(model_dir=trained, reload_interval=0))


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_ready(url: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/readyz", timeout=1) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.05)
    raise TimeoutError(f"{url} not ready after {timeout} s")


@contextmanager
def serving(
    model_dir: Path, log: Path, **settings: str
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """The real `inference-service serve` on a free loopback port, its output to `log`.

    A file, not a pipe: a pipe nobody reads fills up and blocks a chatty server.
    """
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("INFERENCE_")}
    env |= {"INFERENCE_MODEL_DIR": str(model_dir), "INFERENCE_PORT": str(port), **settings}
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "inference_service.cli", "serve"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url)
        yield url, proc
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=25)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@pytest.fixture
def server(trained: Path, tmp_path: Path) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    with serving(trained, tmp_path / "server.log") as running:
        yield running


def require_tool(name: str) -> str:
    """The path of a command-line tool: skip without it, but fail with CI=true."""
    path = shutil.which(name)
    if path is None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{name} is required in CI but is not on PATH", pytrace=False)
        pytest.skip(f"{name} is not installed on this machine")
    return path
