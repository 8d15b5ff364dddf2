"""Shared fixtures: isolated environment, one trained model per session, the app and a client."""

from __future__ import annotations

import dataclasses
import functools
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from flask import Flask
from flask.testing import FlaskClient

from inference_service import spec
from inference_service.app import create_app
from inference_service.config import Settings
from inference_service.train import Options, train

ROOT = Path(__file__).resolve().parents[1]
SPECS = ROOT / "data/input/train"


def spec_for(name: str, **changes: object) -> spec.Spec:
    """The repository's spec for `name`, its data path absolute, with `changes` applied."""
    s = spec.load(SPECS / f"{name}.toml")
    return dataclasses.replace(s, **changes)  # type: ignore[arg-type]


def train_model(name: str, root: Path, **changes: object) -> Path:
    """Train the repository's spec `name` into the repository `root`; the version directory."""
    return train(spec_for(name, **changes), Options(root=root))


# A private nginx for tests: its own prefix, pid, logs and temp directories, conf.d included.
NGINX_MAIN = """\
worker_processes 2;
pid {root}/nginx.pid;
error_log {root}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    client_body_temp_path {root}/tmp/body;
    proxy_temp_path {root}/tmp/proxy;
    fastcgi_temp_path {root}/tmp/fastcgi;
    uwsgi_temp_path {root}/tmp/uwsgi;
    scgi_temp_path {root}/tmp/scgi;
    include {root}/conf.d/*.conf;
}}
"""


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Config comes from the environment, so no test may see another's (or the shell's)."""
    for name in list(os.environ):
        if name.startswith("INFERENCE_"):
            monkeypatch.delenv(name)


@pytest.fixture(scope="session")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """iris trained once per session into a temporary model directory. Treat as read-only."""
    root = tmp_path_factory.mktemp("models")
    train_model("iris", root)
    return root / "iris"


@pytest.fixture(scope="session")
def repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every model of the repository (iris, wine, diabetes) trained once per session, in one
    repository root. Treat as read-only."""
    root = tmp_path_factory.mktemp("repository")
    for s in spec.discover(SPECS):
        train(s, Options(root=root))
    return root


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


@functools.cache
def original_labels() -> list[str]:
    """What the default model, trained from the committed data and spec, answers to the
    original payload: computed by training it (once per session), never copied from a past run."""
    from inference_service.model import Model
    from inference_service.smoke import ORIGINAL_PAYLOAD

    root = Path(tempfile.mkdtemp(prefix="original-labels-"))
    try:
        train_model("iris", root)
        model = Model.load(root / "iris")
        rows = [[float(r[str(i)]) for i in range(len(r))] for r in ORIGINAL_PAYLOAD]
        labels = model.predict(np.array(rows, dtype=np.float32)).labels
    finally:
        shutil.rmtree(root, ignore_errors=True)
    assert labels is not None
    return labels


def require_tool(name: str) -> str:
    """The path of a command-line tool: skip without it, but fail with CI=true."""
    path = shutil.which(name)
    if path is None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{name} is required in CI but is not on PATH", pytrace=False)
        pytest.skip(f"{name} is not installed on this machine")
    return path
