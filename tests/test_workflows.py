"""The GitHub Actions workflows: lint, schema, and the delivery rules they must keep."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
WORKFLOW_DIR = ROOT / ".github/workflows"
WORKFLOWS = sorted(WORKFLOW_DIR.glob("*.yml"))
VENV_BIN = ROOT / ".venv/bin"
DEPLOY_JOBS = ["install", "build", "deploy", "test"]
RUNNER_LABELS = ["self-hosted", "linux", "inference"]
USES = re.compile(r"^\s*(?:-\s+)?uses:\s*(?P<ref>\S+)(?P<comment>.*)$")
PINNED = re.compile(r"^(?P<action>[\w.-]+/[\w./-]+)@(?P<sha>[0-9a-f]{40})$")
VERSION_COMMENT = re.compile(r"^\s+# v\d+\.\d+\.\d+$")
EXPRESSION = re.compile(r"\$\{\{\s*(.*?)\s*\}\}")


def load(path: Path) -> dict[str, Any]:
    doc = yaml.safe_load(path.read_text())
    assert isinstance(doc, dict), path
    # YAML 1.1 reads the key `on` as the boolean True.
    if True in doc:
        doc["on"] = doc.pop(True)
    return doc


def triggers(doc: dict[str, Any]) -> dict[str, Any]:
    on = doc["on"]
    if isinstance(on, str):
        return {on: None}
    if isinstance(on, list):
        return dict.fromkeys(on)
    return dict(on)


def runs_on(job: dict[str, Any]) -> list[str]:
    labels = job.get("runs-on", [])
    return [labels] if isinstance(labels, str) else list(labels)


def steps(doc: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for job_id, job in doc["jobs"].items():
        for step in job.get("steps", []):
            yield doc["name"], job_id, step


def all_steps() -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path in WORKFLOWS:
        yield from steps(load(path))


def make_targets() -> set[str]:
    text = (ROOT / "Makefile").read_text()
    return set(re.findall(r"^([A-Za-z0-9][\w.-]*)\s*:(?!=)", text, flags=re.MULTILINE))


def tool(name: str) -> str:
    path = VENV_BIN / name
    if path.exists():
        return str(path)
    found = shutil.which(name)
    if found is None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{name} is required in CI but is not installed")
        pytest.skip(f"{name} is not installed (uv sync)")
    return found


def test_the_four_workflows_exist() -> None:
    names = {path.name for path in WORKFLOWS}
    assert names == {"ci.yml", "deploy.yml", "infra.yml", "deploy-k8s.yml"}


def test_every_workflow_passes_actionlint() -> None:
    # actionlint also runs shellcheck on every `run:` script when shellcheck is on PATH.
    done = subprocess.run(
        [tool("actionlint"), *map(str, WORKFLOWS)], cwd=ROOT, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_every_workflow_matches_the_github_workflow_schema() -> None:
    done = subprocess.run(
        [tool("check-jsonschema"), "--builtin-schema", "vendor.github-workflows", *WORKFLOWS],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.slow
def test_every_workflow_passes_checkov() -> None:
    done = subprocess.run(
        [tool("checkov"), "--quiet", "--compact", "--skip-download"]
        + ["--framework", "github_actions", "-d", str(WORKFLOW_DIR)],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "CHECKOV_RUN_SCA_PACKAGE_SCAN_V2": "false"},
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert "Failed checks: 0" in done.stdout


def test_deploy_runs_install_build_deploy_test_in_that_order() -> None:
    jobs = load(WORKFLOW_DIR / "deploy.yml")["jobs"]
    assert list(jobs) == DEPLOY_JOBS
    assert "needs" not in jobs["install"]
    for before, after in zip(DEPLOY_JOBS, DEPLOY_JOBS[1:], strict=False):
        assert jobs[after]["needs"] in (before, [before]), f"{after} must wait for {before}"


def test_deploy_jobs_run_on_the_self_hosted_inference_runner() -> None:
    jobs = load(WORKFLOW_DIR / "deploy.yml")["jobs"]
    for job_id, job in jobs.items():
        assert runs_on(job) == RUNNER_LABELS, job_id


def test_deploy_runs_on_pushes_to_the_default_branch_and_by_hand_only() -> None:
    on = triggers(load(WORKFLOW_DIR / "deploy.yml"))
    assert set(on) == {"push", "workflow_dispatch"}
    assert sorted(on["push"]["branches"]) == ["main", "master"]


def test_no_workflow_with_a_self_hosted_job_can_be_started_by_a_pull_request() -> None:
    checked = 0
    for path in WORKFLOWS:
        doc = load(path)
        hosted_here = [j for j, job in doc["jobs"].items() if "self-hosted" in runs_on(job)]
        if not hosted_here:
            continue
        checked += 1
        on = set(triggers(doc))
        unsafe = on & {"pull_request", "pull_request_target", "issue_comment", "workflow_run"}
        assert not unsafe, f"{path.name} runs {hosted_here} on the VM for {unsafe}"
    assert checked == 1, "only deploy.yml uses the VM's runner"


def test_every_action_is_pinned_to_a_commit_sha_with_its_version() -> None:
    pins: dict[str, set[str]] = {}
    for path in WORKFLOWS:
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if not (match := USES.match(line)):
                continue
            where = f"{path.name}:{number}"
            pinned = PINNED.match(match["ref"])
            assert pinned, f"{where}: {match['ref']} is not pinned to a 40-character commit SHA"
            assert VERSION_COMMENT.match(match["comment"]), f"{where}: no '# vX.Y.Z' comment"
            pins.setdefault(pinned["action"], set()).add(match["ref"] + match["comment"])
    assert pins, "no actions found"
    for action, refs in pins.items():
        assert len(refs) == 1, f"{action} is pinned to different commits: {sorted(refs)}"


def test_every_workflow_defaults_to_read_only_permissions() -> None:
    for path in WORKFLOWS:
        doc = load(path)
        assert doc.get("permissions") == {"contents": "read"}, path.name


def test_only_jobs_that_sign_in_to_azure_get_an_oidc_token() -> None:
    for path in WORKFLOWS:
        for job_id, job in load(path)["jobs"].items():
            logins = [s for s in job.get("steps", []) if s.get("uses", "").startswith("azure/")]
            permissions = job.get("permissions", {})
            if logins:
                assert permissions == {"contents": "read", "id-token": "write"}, job_id
                for step in logins:
                    assert set(step["with"]) == {"client-id", "tenant-id", "subscription-id"}
            else:
                assert "id-token" not in permissions, f"{path.name}:{job_id}"


def test_no_workflow_stores_an_azure_client_secret() -> None:
    for path in WORKFLOWS:
        text = path.read_text()
        assert "client-secret" not in text and "AZURE_CREDENTIALS" not in text, path.name
        assert "ARM_CLIENT_SECRET" not in text, path.name


def test_every_job_has_a_timeout() -> None:
    for path in WORKFLOWS:
        for job_id, job in load(path)["jobs"].items():
            minutes = job.get("timeout-minutes")
            assert isinstance(minutes, int) and 0 < minutes <= 60, f"{path.name}:{job_id}"


@pytest.mark.parametrize(
    ("name", "cancel"),
    [("ci.yml", True), ("deploy.yml", False), ("infra.yml", False), ("deploy-k8s.yml", False)],
)
def test_concurrency_cancels_only_superseded_checks_never_a_deploy(name: str, cancel: bool) -> None:
    concurrency = load(WORKFLOW_DIR / name)["concurrency"]
    assert concurrency["group"]
    assert concurrency["cancel-in-progress"] is cancel


def test_setup_uv_caches_the_uv_cache() -> None:
    found = [s for _, _, s in all_steps() if s.get("uses", "").startswith("astral-sh/setup-uv@")]
    assert found
    for step in found:
        assert step["with"]["enable-cache"] is True


def test_checkouts_do_not_keep_the_token_on_disk() -> None:
    for workflow, job_id, step in all_steps():
        if step.get("uses", "").startswith("actions/checkout@"):
            assert step["with"]["persist-credentials"] is False, f"{workflow}:{job_id}"


def test_every_run_step_is_one_make_or_cli_command_that_exists() -> None:
    targets = make_targets()
    cli_commands: set[tuple[str, ...]] = set()
    for workflow, job_id, step in all_steps():
        if "run" not in step:
            continue
        where = f"{workflow}:{job_id}: {step['run']!r}"
        script = step["run"].strip()
        assert "\n" not in script, f"{where} is more than one line"
        words = shlex.split(EXPRESSION.sub("X", script))
        assert words[0] in {"make", "inference-service", ".venv/bin/inference-service"}, where
        if words[0] == "make":
            goals = [w for w in words[1:] if "=" not in w and not w.startswith("-")]
            assert goals, where
            assert set(goals) <= targets, f"{where}: unknown targets {set(goals) - targets}"
        else:
            cli_commands.add(tuple(w for w in words[1:3] if not w.startswith("-")))
    for command in cli_commands:
        done = subprocess.run(
            [str(VENV_BIN / "inference-service"), *command, "--help"], capture_output=True
        )
        assert done.returncode == 0, command


def test_make_accepts_every_run_step_as_written() -> None:
    """`make -n` resolves each step's goals and variables without running anything."""
    for workflow, job_id, step in all_steps():
        if not step.get("run", "").startswith("make "):
            continue
        words = shlex.split(EXPRESSION.sub("0123abcd", step["run"]), posix=True)
        words = [re.sub(r"\$\{?(\w+)(:\?[^}]*)?\}?", "http://127.0.0.1:1", w) for w in words]
        done = subprocess.run(
            ["make", "-n", *words[1:]], cwd=ROOT, capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 0, f"{workflow}:{job_id}: {done.stderr}"


def test_run_steps_interpolate_only_the_commit_sha() -> None:
    """Everything else reaches scripts through `env:`, so no value can inject shell code."""
    for workflow, job_id, step in all_steps():
        for expression in EXPRESSION.findall(step.get("run", "")):
            assert expression == "github.sha", f"{workflow}:{job_id}: ${{{{ {expression} }}}}"


def test_deploy_builds_and_deploys_the_image_of_the_pushed_commit() -> None:
    jobs = load(WORKFLOW_DIR / "deploy.yml")["jobs"]
    runs = {job_id: [s["run"] for s in job["steps"] if "run" in s] for job_id, job in jobs.items()}
    assert runs["install"] == ["make host-install"]
    assert runs["build"] == ["make image IMAGE_TAG=${{ github.sha }}"]
    assert runs["deploy"] == ["make deploy-local IMAGE_TAG=${{ github.sha }}"]


def test_deploy_smoke_tests_the_public_url_and_this_host_then_rolls_back_on_failure() -> None:
    test = load(WORKFLOW_DIR / "deploy.yml")["jobs"]["test"]
    assert test["env"]["INFERENCE_URL"] == "${{ vars.INFERENCE_URL }}"
    run_steps = [s for s in test["steps"] if "run" in s]
    smokes, rollback = run_steps[:-1], run_steps[-1]
    assert [s["run"].split()[:2] for s in smokes] == [["make", "smoke"], ["make", "smoke"]]
    assert "INFERENCE_URL" in smokes[0]["run"]
    assert smokes[1]["run"] == "make smoke", "the default URL is this host's proxy port"
    assert all("if" not in s for s in smokes)
    assert rollback["run"] == "make rollback-local"
    condition = rollback["if"]
    assert condition.startswith("failure() && ")
    for smoke in smokes:
        assert f"steps.{smoke['id']}.outcome == 'failure'" in condition


def test_deploy_job_is_the_production_environment_with_the_service_url() -> None:
    jobs = load(WORKFLOW_DIR / "deploy.yml")["jobs"]
    assert jobs["deploy"]["environment"] == {
        "name": "production",
        "url": "${{ vars.INFERENCE_URL }}",
    }


def test_ci_runs_lint_tests_image_terraform_policy_and_audit_on_pull_requests() -> None:
    doc = load(WORKFLOW_DIR / "ci.yml")
    assert {"pull_request", "push"} <= set(triggers(doc))
    runs = {
        job_id: [s["run"] for s in job["steps"] if "run" in s]
        for job_id, job in doc["jobs"].items()
    }
    assert "make lint typecheck" in runs["lint"]
    assert "make test" in runs["test"] and "make test" in runs["container"]
    assert "make image IMAGE_TAG=${{ github.sha }}" in runs["container"]
    assert "make tf-validate" in runs["terraform"]
    assert runs["policy"] == ["make workflow-lint", "make checkov"]
    assert runs["audit"] == ["make audit"]
    for job in doc["jobs"].values():
        assert runs_on(job) == ["ubuntu-24.04"]
    selection = {doc["jobs"][j]["env"]["PYTEST_ADDOPTS"] for j in ("test", "container")}
    assert selection == {'-m "not docker"', "-m docker"}, "together they are the whole suite"


def test_infra_applies_exactly_the_reviewed_plan_behind_an_environment() -> None:
    doc = load(WORKFLOW_DIR / "infra.yml")
    on = triggers(doc)
    assert on["pull_request"]["paths"][0] == "infra/terraform/**"
    assert doc["env"]["ARM_USE_OIDC"] == "true"
    plan, apply = doc["jobs"]["plan"], doc["jobs"]["apply"]
    assert "head.repo.full_name == github.repository" in plan["if"], "forks get no OIDC token"
    assert apply["needs"] == "plan" and apply["if"] == "github.event_name != 'pull_request'"
    assert apply["environment"] == "infrastructure"
    upload = next(s for s in plan["steps"] if "upload-artifact" in s.get("uses", ""))
    download = next(s for s in apply["steps"] if "download-artifact" in s.get("uses", ""))
    assert upload["with"]["name"] == download["with"]["name"]
    assert upload["with"]["path"] == f"{download['with']['path']}/tfplan"
    assert [s["run"] for s in plan["steps"] if "run" in s] == ["make tf-plan"]
    assert [s["run"] for s in apply["steps"] if "run" in s] == ["make tf-apply"]


def test_aks_delivery_is_opt_in_and_undoes_a_failed_rollout() -> None:
    doc = load(WORKFLOW_DIR / "deploy-k8s.yml")
    assert "pull_request" not in triggers(doc)
    job = doc["jobs"]["deploy-k8s"]
    assert "vars.AKS_DEPLOY == 'true'" in job["if"]
    runs = [s for s in job["steps"] if "run" in s]
    assert [s["run"].split()[1] for s in runs] == [
        "image",
        "aks-push",
        "aks-credentials",
        "aks-deploy",
        "smoke",
        "aks-rollback",
    ]
    assert job["env"]["IMAGE_TAG"] == "${{ github.sha }}"
    undo = runs[-1]["if"]
    assert "steps.rollout.outcome == 'failure'" in undo
    assert "steps.smoke.outcome == 'failure'" in undo
    makefile = (ROOT / "Makefile").read_text()
    assert "kubectl apply -k $(K8S_OVERLAY)" in makefile
    assert "rollout undo deployment/inference-service" in makefile


def test_pipeline_script_runs_the_deploy_workflow_targets_in_the_same_order() -> None:
    jobs = load(WORKFLOW_DIR / "deploy.yml")["jobs"]
    workflow = [
        s["run"].split()[1] for job_id in DEPLOY_JOBS for s in jobs[job_id]["steps"] if "run" in s
    ]
    script = (ROOT / "scripts/pipeline.sh").read_text()
    pipeline = re.findall(r"^\s*stage [\w-]+ make ([\w-]+)", script, flags=re.MULTILINE)
    assert pipeline == workflow


def test_pipeline_script_passes_shellcheck() -> None:
    shellcheck = shutil.which("shellcheck")
    if shellcheck is None:
        if os.environ.get("CI") == "true":
            pytest.fail("shellcheck is required in CI")
        pytest.skip("shellcheck is not installed")
    done = subprocess.run(
        [shellcheck, "--severity=style", "scripts/pipeline.sh"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout


def test_pipeline_refuses_an_unknown_test_selection() -> None:
    done = subprocess.run(
        ["scripts/pipeline.sh"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "PIPELINE_TESTS": "some"},
        timeout=30,
    )
    assert done.returncode == 2
    assert "PIPELINE_TESTS must be fast, full or none" in done.stderr
