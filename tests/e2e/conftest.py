"""Docker fixtures: the engine, the image built once per session, a private nginx and deploy env.

Without a Docker engine the `docker` tests skip, except with CI=true, where they fail.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import NGINX_MAIN

ROOT = Path(__file__).resolve().parents[2]
# One tag per checkout: checkouts sharing a Docker engine must not build over each other's image.
IMAGE = f"inference-service:e2e-{hashlib.sha256(str(ROOT).encode()).hexdigest()[:8]}"


def _unavailable(reason: str) -> None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"CI=true but {reason}: the docker tests must run in CI", pytrace=False)
    pytest.skip(f"{reason} (run scripts/docker-engine.sh to set one up)")


def docker(
    *args: str, check: bool = True, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["docker", *args], capture_output=True, text=True, check=check, timeout=timeout
    )


@pytest.fixture(scope="session")
def engine() -> None:
    if shutil.which("docker") is None:
        _unavailable("no docker CLI on PATH")
    try:
        info = docker("info", "--format", "{{.ServerVersion}}", check=False, timeout=30)
    except subprocess.TimeoutExpired:
        _unavailable("the Docker engine does not answer")
    if info.returncode != 0:
        _unavailable(f"no Docker engine ({info.stderr.strip()[:200]})")
    if docker("image", "inspect", "debian:bookworm-slim", check=False).returncode != 0:
        _unavailable("the base image debian:bookworm-slim is missing")


@pytest.fixture(scope="session")
def image(engine: None) -> str:
    """The image, built once per session by the same script `make image` runs."""
    done = subprocess.run(
        [str(ROOT / "scripts/build-image.sh"), IMAGE],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=1200,
    )
    output = f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    assert done.returncode == 0, f"image build failed:\n{output}"
    return IMAGE


@pytest.fixture(scope="session")
def derived_images(
    image: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, str]]:
    """Two more releases made from the built image, without another training run.

    v2: the same model published under a new version (`<version>-v2`), so every answer says
    which release produced it. broken: model.onnx altered after its checksum was recorded, so
    the service never becomes ready.
    """
    version = docker("run", "--rm", "--entrypoint", "cat", image, "/app/models/iris/current")
    v = version.stdout.strip()
    script = (
        "import json, pathlib, shutil, sys; d = pathlib.Path('/app/models/iris'); "
        "v = (d / 'current').read_text().strip(); new = v + '-v2'; "
        "shutil.copytree(d / v, d / new); card = json.loads((d / new / 'model.json').read_text()); "
        "card['version'] = new; (d / new / 'model.json').write_text(json.dumps(card)); "
        "(d / 'current').write_text(new + '\\n'); shutil.rmtree(d / v)"
    )
    recipes = {
        f"{image}-v2": f'RUN ["/app/venv/bin/python", "-c", "{_escape(script)}"]',
        f"{image}-broken": (f"RUN printf 'x' >> /app/models/iris/{v}/model.onnx"),
    }
    context = tmp_path_factory.mktemp("derived")
    built = []
    for tag, step in recipes.items():
        dockerfile = context / f"{tag.split(':')[1]}.Dockerfile"
        dockerfile.write_text(f"FROM {image}\nUSER root\n{step}\nUSER 10001:10001\n")
        done = subprocess.run(
            ["docker", "build", "-q", "-f", str(dockerfile), "-t", tag, str(context)],
            capture_output=True,
            text=True,
            env={**os.environ, "DOCKER_BUILDKIT": "0"},
            timeout=300,
        )
        assert done.returncode == 0, done.stderr
        built.append(tag)
    yield {
        "v1": image,
        "v1_version": v,
        "v2": built[0],
        "v2_version": v + "-v2",
        "broken": built[1],
    }
    for tag in built:
        docker("rmi", tag, check=False)


def _escape(code: str) -> str:
    return code.replace("\\", "\\\\").replace('"', '\\"')


@dataclass
class Host:
    """A private deploy target: its own nginx (own prefix, port, config) and state dir."""

    env: dict[str, str]
    proxy_port: int
    prefix: str
    root: Path

    def deploy(self, *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(ROOT / ".venv/bin/inference-service"), "deploy", *args],
            capture_output=True,
            text=True,
            env=self.env,
            timeout=timeout,
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.proxy_port}"

    def state(self) -> dict[str, Any]:
        return dict(json.loads((self.root / "state" / "state.json").read_text()))


def record(figure: str, value: object) -> None:
    """Append a measured figure to $E2E_FIGURES_FILE (scripts/measure-deploy.sh sets it)."""
    if target := os.environ.get("E2E_FIGURES_FILE"):
        with open(target, "a") as f:
            f.write(json.dumps({"figure": figure, "value": value}) + "\n")


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def host(engine: None, tmp_path: Path) -> Iterator[Host]:
    if shutil.which("nginx") is None:
        _unavailable("nginx is not installed")
    root = tmp_path / "host"
    for sub in ("conf.d", "tmp", "state", "logs"):
        (root / sub).mkdir(parents=True)
    root.chmod(0o755)
    (root / "nginx.conf").write_text(NGINX_MAIN.format(root=root))
    prefix = f"isvc-e2e-{os.getpid()}-{tmp_path.name[-6:].strip('_')}".replace("_", "-")
    port = free_port()
    # nginx's workers (another user) connect to the release sockets: not under pytest's
    # private tmp_path, and short, as socket paths must be.
    routing = Path(tempfile.mkdtemp(prefix="isvc-"))
    routing.chmod(0o755)
    env = {
        "PATH": os.environ["PATH"],
        "HOME": os.environ.get("HOME", "/root"),
        "INFERENCE_PROXY_PORT": str(port),
        "INFERENCE_PROXY_CONF": str(root / "conf.d/inference-service.conf"),
        "INFERENCE_PROXY_ACCESS_LOG": str(root / "logs/access.log"),
        "INFERENCE_PROXY_DIR": str(routing / "proxy"),
        "INFERENCE_DEPLOY_STATE_DIR": str(root / "state"),
        "INFERENCE_NGINX": f"nginx -p {root} -c {root / 'nginx.conf'}",
        "INFERENCE_CONTAINER_PREFIX": prefix,
        "INFERENCE_READY_TIMEOUT": "30",
        "INFERENCE_DEPLOY_DRAIN_SECONDS": "10",
        "INFERENCE_STOP_TIMEOUT": "25",
    }
    yield Host(env=env, proxy_port=port, prefix=prefix, root=root)
    names = docker("ps", "-aq", "--filter", f"label=io.inference-service.deploy={prefix}")
    for cid in names.stdout.split():
        docker("rm", "--force", cid, check=False)
    pid_file = root / "nginx.pid"
    if pid_file.exists():
        pid = int(pid_file.read_text())
        os.kill(pid, signal.SIGQUIT)
        for _ in range(50):
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.1)
    shutil.rmtree(routing, ignore_errors=True)


def get_json(url: str, payload: Any = None, timeout: float = 5) -> tuple[int, Any]:
    data = None if payload is None else json.dumps(payload).encode()
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


class WrongAnswers(BaseHTTPRequestHandler):
    """A service that is up and ready but predicts the wrong species: smoke tests must fail."""

    def do_GET(self) -> None:
        self._send({"status": "ready", "model": {"name": "iris", "version": "wrong"}})

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", 0))
        rows = json.loads(self.rfile.read(length) or b"[]")
        count = len(rows) if isinstance(rows, list) else 1
        self._send({"predictions": ["setosa"] * count, "model": {"version": "wrong"}})

    def _send(self, body: dict[str, Any]) -> None:
        raw = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def wrong_url() -> Iterator[str]:
    """The URL of a service that answers, ready, with the wrong labels."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), WrongAnswers)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/inference"
    server.shutdown()
    server.server_close()
