"""The container image, built and run with the real Docker engine."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest

from inference_service.smoke import ORIGINAL_PAYLOAD
from tests.conftest import original_labels
from tests.e2e.conftest import docker, free_port, get_json

pytestmark = pytest.mark.docker

MAX_IMAGE_BYTES = 250 * 1000 * 1000


@pytest.fixture(scope="module")
def container(image: str) -> Iterator[tuple[str, int]]:
    """One read-only container from the image, published on a free loopback port."""
    port = free_port()
    name = f"isvc-image-test-{port}"
    docker(
        "run", "--detach", "--name", name, "--read-only", "--tmpfs", "/tmp",
        "--publish", f"127.0.0.1:{port}:6666", image,
    )  # fmt: skip
    try:
        yield name, port
    finally:
        docker("rm", "--force", name, check=False)


def _inspect(name: str) -> dict[str, object]:
    return dict(json.loads(docker("inspect", name).stdout)[0])


def test_image_is_at_most_250_mb(image: str) -> None:
    size = int(docker("image", "inspect", "-f", "{{.Size}}", image).stdout)
    assert size <= MAX_IMAGE_BYTES, f"{size / 1e6:.1f} MB"


def test_image_runs_as_non_root_user_10001(image: str, container: tuple[str, int]) -> None:
    assert docker("image", "inspect", "-f", "{{.Config.User}}", image).stdout.strip() == (
        "10001:10001"
    )
    assert docker("exec", container[0], "id", "-u").stdout.strip() == "10001"


def test_image_labels_carry_commit_model_version_and_created_date(image: str) -> None:
    labels = json.loads(docker("image", "inspect", "-f", "{{json .Config.Labels}}", image).stdout)
    model = docker("run", "--rm", "--entrypoint", "cat", image, "/app/models/iris/current")
    assert f"iris={model.stdout.strip()}" in labels["io.inference-service.models"].split(",")
    assert len(labels["org.opencontainers.image.revision"]) == 40
    assert labels["org.opencontainers.image.created"].endswith("Z")
    assert labels["org.opencontainers.image.version"]


def test_original_payload_gets_the_right_labels_from_a_read_only_container(
    container: tuple[str, int],
) -> None:
    name, port = container
    assert _inspect(name)["HostConfig"]["ReadonlyRootfs"] is True  # type: ignore[index]
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            status, body = get_json(f"http://127.0.0.1:{port}/inference", ORIGINAL_PAYLOAD)
            if status == 200:
                break
        except OSError:
            pass
        time.sleep(0.2)
    assert status == 200, body
    assert body["predictions"] == original_labels()


def test_healthcheck_turns_healthy(container: tuple[str, int]) -> None:
    deadline = time.monotonic() + 40
    health = None
    while time.monotonic() < deadline:
        health = _inspect(container[0])["State"]["Health"]["Status"]  # type: ignore[index]
        if health == "healthy":
            break
        time.sleep(0.5)
    assert health == "healthy"


def test_training_libraries_are_not_in_the_image(container: tuple[str, int]) -> None:
    for module in ("sklearn", "scipy", "pandas"):
        done = docker("exec", container[0], "python3", "-c", f"import {module}", check=False)
        assert done.returncode != 0, f"{module} is importable in the image"
        assert "ModuleNotFoundError" in done.stderr
    for tool in ("pip", "pip3", "gcc", "cc", "curl"):
        found = docker("exec", container[0], "sh", "-c", f"command -v {tool}", check=False)
        assert found.returncode != 0, f"{tool} is in the image"
