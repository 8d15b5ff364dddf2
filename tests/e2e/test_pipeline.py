"""The deploy workflow's own `run:` steps, and `make pipeline`, against a private Docker host.

Each test gets its own nginx, proxy port, state dir and container prefix (the `host` fixture), so
nothing here touches port 6666 or /etc/nginx. The workflow's expressions are evaluated for a green
CI run (workflow_run) whose head_sha is a unique tag per test, with `vars.INFERENCE_URL` the private
proxy's URL (or a server that answers wrongly).
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from inference_service.smoke import ORIGINAL_PAYLOAD
from tests.conftest import original_labels
from tests.e2e.conftest import ROOT, Host, docker, get_json, record
from tests.github_expressions import condition, evaluate, text

pytestmark = [pytest.mark.docker, pytest.mark.slow]

WORKFLOW = ROOT / ".github/workflows/deploy.yml"
EXPRESSION = re.compile(r"\$\{\{\s*(.*?)\s*\}\}")
# What the runner does for `shell: bash`.
BASH = ["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c"]


@dataclass
class Step:
    job: str
    name: str
    outcome: str  # success, failure or skipped, as `steps.<id>.outcome`
    seconds: float
    output: str


def _substitute(value: str, context: dict[str, Any]) -> str:
    """Each `${{ expr }}` replaced by its value as the runner writes it (null becomes "")."""
    return EXPRESSION.sub(lambda m: text(evaluate(m[1], context)), value)


def workflow_run_context(head_sha: str, url: str) -> dict[str, Any]:
    """A green CI run on a push to main, as the workflow_run event that starts deploy.yml.

    `github.sha` is some later head of main: the deploy must use the commit CI tested.
    """
    repository = "example-org/inference-service"
    run = {
        "conclusion": "success",
        "event": "push",
        "head_branch": "main",
        "head_sha": head_sha,
        "head_repository": {"full_name": repository},
    }
    github = {
        "event_name": "workflow_run",
        "repository": repository,
        "sha": "f" * 40,
        "event": {"workflow_run": run},
    }
    return {"github": github, "vars": {"INFERENCE_URL": url}, "inputs": {}, "secrets": {}}


def run_deploy_workflow(env: dict[str, str], context: dict[str, Any]) -> list[Step]:
    """The four jobs' `run:` steps in order, with the workflow's `needs`, `if` and `env` rules."""
    doc = yaml.safe_load(WORKFLOW.read_text())
    jobs: dict[str, dict[str, Any]] = doc["jobs"]
    done: dict[str, bool] = {}
    results: list[Step] = []
    workflow_env = {k: _substitute(str(v), context) for k, v in (doc.get("env") or {}).items()}
    for job_id, job in jobs.items():
        needs = job.get("needs", [])
        needs = [needs] if isinstance(needs, str) else needs
        assert all(n in done for n in needs), f"{job_id} comes before what it needs"
        if not all(done[n] for n in needs):
            done[job_id] = False
            results.append(Step(job_id, "(job)", "skipped", 0.0, ""))
            continue
        if not condition(job.get("if"), context):
            done[job_id] = False
            results.append(Step(job_id, "(job)", "skipped", 0.0, ""))
            continue
        job_env = {k: _substitute(str(v), context) for k, v in (job.get("env") or {}).items()}
        failed = False
        outcomes: dict[str, str] = {}
        for index, step in enumerate(job["steps"]):
            if "run" not in step:
                continue  # actions/checkout: the tests already run in the checkout
            name = step.get("name", step["run"])
            step_context = {
                **context,
                "steps": {k: {"outcome": v} for k, v in outcomes.items()},
                "env": {**workflow_env, **job_env},
            }
            status = "failure" if failed else "success"
            should_run = condition(step.get("if"), step_context, job_status=status)
            if not should_run:
                outcomes[step.get("id", str(index))] = "skipped"
                results.append(Step(job_id, name, "skipped", 0.0, ""))
                continue
            script = _substitute(step["run"], step_context)
            step_env = {
                k: _substitute(str(v), step_context) for k, v in (step.get("env") or {}).items()
            }
            start = time.monotonic()
            proc = subprocess.run(
                [*BASH, script],
                cwd=ROOT,
                env={**env, **workflow_env, **job_env, **step_env},
                capture_output=True,
                text=True,
                timeout=900,
            )
            outcome = "success" if proc.returncode == 0 else "failure"
            failed = failed or outcome == "failure"
            outcomes[step.get("id", str(index))] = outcome
            results.append(
                Step(job_id, name, outcome, time.monotonic() - start, proc.stdout + proc.stderr)
            )
        done[job_id] = not failed
    return results


@pytest.fixture
def commit(host: Host) -> Iterator[str]:
    """A fake commit SHA per test, so each test's image tag is its own; the tag is removed after."""
    sha = hashlib.sha1(f"{host.prefix}-{time.time_ns()}".encode()).hexdigest()
    yield sha
    docker("rmi", f"inference-service:{sha}", check=False)


def _env(host: Host) -> dict[str, str]:
    return {**host.env, "CI": os.environ.get("CI", "")}


def _answers(host: Host) -> dict[str, Any]:
    status, body = get_json(f"{host.url}/inference", ORIGINAL_PAYLOAD)
    assert status == 200, body
    assert body["predictions"] == original_labels()
    return dict(body)


def _report(results: list[Step]) -> str:
    return "\n".join(
        f"{r.job:8} {r.outcome:8} {r.seconds:6.1f}s {r.name}\n{r.output[-1500:]}" for r in results
    )


def test_deploy_workflow_steps_as_written_deploy_the_pushed_commit(host: Host, commit: str) -> None:
    context = workflow_run_context(commit, f"{host.url}/inference")
    results = run_deploy_workflow(_env(host), context)
    report = _report(results)

    assert [r.job for r in results if r.outcome != "skipped"] == [
        "install",
        "build",
        "deploy",
        "deploy",
        "test",
        "test",
    ], report
    assert all(r.outcome == "success" for r in results if r.outcome != "skipped"), report
    assert [r.name for r in results if r.outcome == "skipped"] == [
        "Roll back to the previous release"
    ], report
    assert host.state()["current"]["image"] == f"inference-service:{commit}"
    _answers(host)
    for r in results:
        record(f"workflow {r.job}: {r.name}", round(r.seconds, 1))


def test_deploy_workflow_rolls_back_and_stays_red_when_the_smoke_test_fails(
    host: Host, image: str, commit: str, wrong_url: str
) -> None:
    before = host.deploy("up", image)
    assert before.returncode == 0, before.stderr
    context = workflow_run_context(commit, wrong_url)
    results = run_deploy_workflow(_env(host), context)
    report = _report(results)

    outcomes = {r.name: r.outcome for r in results if r.job == "test"}
    assert outcomes == {
        "Smoke test through the public URL": "failure",
        "Smoke test on this host (http://127.0.0.1 on the proxy port, 6666)": "skipped",
        "Roll back to the previous release": "success",
    }, report
    assert all(r.outcome == "success" for r in results if r.job != "test"), report
    state = host.state()
    assert state["current"]["image"] == image, "the release before the push serves again"
    assert state["previous"]["image"] == f"inference-service:{commit}"
    _answers(host)


def _pipeline(host: Host, tmp_path: Path, **settings: str) -> tuple[int, str, list[list[str]]]:
    summary = tmp_path / "pipeline-summary.tsv"
    env = {**_env(host), "PIPELINE_SUMMARY": str(summary), **settings}
    proc = subprocess.run(
        ["make", "--no-print-directory", "pipeline"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    rows = [line.split("\t") for line in summary.read_text().splitlines()]
    return proc.returncode, proc.stdout + proc.stderr, rows


def test_make_pipeline_runs_green_end_to_end(host: Host, commit: str, tmp_path: Path) -> None:
    # The test stage is skipped here: it is the suite this test is part of.
    code, output, rows = _pipeline(host, tmp_path, PIPELINE_TESTS="none", IMAGE_TAG=commit)
    assert code == 0, output[-6000:]
    results = {row[0]: row[1] for row in rows}
    assert results == {
        "install": "ok",
        "test": "skipped",
        "build": "ok",
        "api-keys": "ok",  # pragma: allowlist secret
        "deploy": "ok",
        "smoke-public": "ok",
        "smoke-local": "ok",
        "rollback": "not needed",
        "total": "ok",
    }, output[-6000:]
    assert "pipeline summary" in output
    assert host.state()["current"]["image"] == f"inference-service:{commit}"
    _answers(host)
    for name, result, seconds in rows:
        if result == "ok":
            record(f"make pipeline {name}", float(seconds))
    print("\n".join("\t".join(row) for row in rows))  # noqa: T201 - the measured stage times


def test_make_pipeline_rolls_back_and_fails_when_the_public_smoke_test_fails(
    host: Host, image: str, commit: str, wrong_url: str, tmp_path: Path
) -> None:
    before = host.deploy("up", image)
    assert before.returncode == 0, before.stderr
    code, output, rows = _pipeline(
        host, tmp_path, PIPELINE_TESTS="none", IMAGE_TAG=commit, PIPELINE_URL=wrong_url
    )
    # make exits 2 when a recipe fails; the script's own status is in make's message.
    assert code == 2 and "pipeline] Error 1" in output, output[-6000:]
    results = {row[0]: row[1] for row in rows}
    assert results["deploy"] == "ok"
    assert results["smoke-public"] == "FAILED"
    assert results["smoke-local"] == "skipped"
    assert results["rollback"] == "ok"
    assert results["total"] == "FAILED"
    assert host.state()["current"]["image"] == image
    _answers(host)
