"""The container image, built and run with the real Docker engine."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from inference_service.smoke import ORIGINAL_PAYLOAD
from tests.conftest import original_labels
from tests.e2e.conftest import ROOT, docker, free_port, get_json

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


def _build_worse_iris(image: str, tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """The build script on a copy of this tree whose iris spec trains a one-split tree (gates
    lowered so that only the champion check can refuse it), with the image as the champion."""
    tree = tmp_path / "tree"
    tree.mkdir(parents=True)
    for name in ("Dockerfile", ".dockerignore", "pyproject.toml", "uv.lock", "README.md"):
        shutil.copy2(ROOT / name, tree / name)
    for name in ("src", "scripts", "data"):
        shutil.copytree(ROOT / name, tree / name, ignore=shutil.ignore_patterns("__pycache__"))
    spec = tree / "data/input/train/iris.toml"
    worse = spec.read_text().replace("min_accuracy = 0.90", "min_accuracy = 0.5")
    spec.write_text(worse.replace('criterion = "gini"', 'criterion = "gini"\nmax_depth = 1'))
    return subprocess.run(
        [str(tree / "scripts/build-image.sh"), f"{image}-challenger"],
        cwd=tree,
        env={**os.environ, "CHAMPION_IMAGE": image, **env},
        capture_output=True,
        text=True,
        timeout=1200,
    )


def test_a_build_worse_than_the_live_models_fails_and_a_reason_forces_it(
    image: str, tmp_path: Path
) -> None:
    refused = _build_worse_iris(image, tmp_path / "refused")
    output = refused.stdout + refused.stderr
    assert refused.returncode != 0, output[-3000:]
    assert "iris" in output and "is not promoted: held_out accuracy" in output, output[-3000:]
    forced = _build_worse_iris(image, tmp_path / "forced", PROMOTE_REASON="rollback drill")
    assert forced.returncode == 0, (forced.stdout + forced.stderr)[-3000:]
    try:
        card = json.loads(
            docker(
                "run",
                "--rm",
                "--entrypoint",
                "/bin/sh",
                f"{image}-challenger",
                "-c",
                'cat "/app/models/iris/$(cat /app/models/iris/current)/model.json"',
            ).stdout  # fmt: skip
        )
        assert card["promotion"]["decision"] == "forced"
        assert card["promotion"]["forced_because"] == "rollback drill"
    finally:
        docker("rmi", f"{image}-challenger", check=False)
