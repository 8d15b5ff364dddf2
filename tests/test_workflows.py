"""The GitHub Actions workflows: lint, schema, and the delivery rules they must keep."""

from __future__ import annotations

import json
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

from tests.github_expressions import condition, evaluate, text

ROOT = Path(__file__).resolve().parents[1]
WORKFLOW_DIR = ROOT / ".github/workflows"
WORKFLOWS = sorted(WORKFLOW_DIR.glob("*.yml"))
VENV_BIN = ROOT / ".venv/bin"
DEPLOY_JOBS = ["install", "build", "deploy", "test"]
RUNNER_LABELS = ["self-hosted", "linux", "inference"]
LOCK_FILE = ".terraform.lock.hcl"
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


DEPLOY_WORKFLOWS = ["deploy.yml", "deploy-k8s.yml"]


@pytest.mark.parametrize("name", DEPLOY_WORKFLOWS)
def test_deploys_follow_ci_on_the_default_branch_or_a_manual_run(name: str) -> None:
    on = triggers(load(WORKFLOW_DIR / name))
    assert set(on) == {"workflow_run", "workflow_dispatch"}
    run = on["workflow_run"]
    ci_name = load(WORKFLOW_DIR / "ci.yml")["name"]
    assert run["workflows"] == [ci_name]
    assert run["types"] == ["completed"]
    assert sorted(run["branches"]) == ["main", "master"]


def workflow_run_event(**run: Any) -> dict[str, Any]:
    """The `github` context of a workflow_run event (the fields the conditions read)."""
    fields = {
        "conclusion": "success",
        "event": "push",
        "head_branch": "main",
        "head_sha": "a" * 40,
        "head_repository": {"full_name": "example-org/inference-service"},
        **run,
    }
    return {
        "event_name": "workflow_run",
        "repository": "example-org/inference-service",
        "sha": "b" * 40,
        "event": {"workflow_run": fields},
    }


def first_jobs(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {j: job for j, job in doc["jobs"].items() if not job.get("needs")}


def runs_for(name: str, github: dict[str, Any], **variables: str) -> bool:
    """Whether the workflow's first job would start for this event (later jobs need it)."""
    doc = load(WORKFLOW_DIR / name)
    (job,) = first_jobs(doc).values()
    context = {"github": github, "vars": variables, "inputs": {}}
    return condition(job.get("if"), context)


GREEN_PUSH = workflow_run_event()
RED_RUNS = {
    "failed CI": workflow_run_event(conclusion="failure"),
    "cancelled CI": workflow_run_event(conclusion="cancelled"),
    "timed-out CI": workflow_run_event(conclusion="timed_out"),
    "skipped CI": workflow_run_event(conclusion="skipped"),
    "green CI of a pull request": workflow_run_event(event="pull_request"),
    "green CI of a fork's branch named main": workflow_run_event(
        event="pull_request", head_repository={"full_name": "someone/inference-service"}
    ),
    "green CI pushed to a fork": workflow_run_event(
        head_repository={"full_name": "someone/inference-service"}
    ),
}


@pytest.mark.parametrize("name", DEPLOY_WORKFLOWS)
@pytest.mark.parametrize("case", sorted(RED_RUNS))
def test_a_ci_run_that_is_not_a_green_push_here_deploys_nothing(name: str, case: str) -> None:
    assert not runs_for(name, RED_RUNS[case], AKS_DEPLOY="true")


@pytest.mark.parametrize("name", DEPLOY_WORKFLOWS)
def test_a_green_ci_run_of_a_push_deploys(name: str) -> None:
    assert runs_for(name, GREEN_PUSH, AKS_DEPLOY="true")
    manual = {"event_name": "workflow_dispatch", "repository": "r/r", "sha": "c" * 40, "event": {}}
    assert runs_for(name, manual)


def test_aks_deploys_after_ci_only_once_switched_on() -> None:
    assert not runs_for("deploy-k8s.yml", GREEN_PUSH)
    assert not runs_for("deploy-k8s.yml", GREEN_PUSH, AKS_DEPLOY="false")


@pytest.mark.parametrize("name", DEPLOY_WORKFLOWS)
def test_every_later_job_waits_for_the_gated_first_job(name: str) -> None:
    jobs = load(WORKFLOW_DIR / name)["jobs"]
    first = set(first_jobs(load(WORKFLOW_DIR / name)))
    assert len(first) == 1
    for job_id, job in jobs.items():
        if job_id not in first:
            assert job.get("needs"), job_id
            assert "if" not in job, f"{job_id}: a later job's own if: could bypass the gate"


@pytest.mark.parametrize("name", DEPLOY_WORKFLOWS)
def test_deploys_check_out_and_tag_the_commit_ci_passed_on(name: str) -> None:
    doc = load(WORKFLOW_DIR / name)
    sha = doc["env"]["DEPLOY_SHA"]
    assert evaluate(sha, {"github": GREEN_PUSH}) == "a" * 40, "the tested commit, not the head"
    manual = {"event_name": "workflow_dispatch", "sha": "c" * 40, "event": {}}
    assert evaluate(sha, {"github": manual}) == "c" * 40
    for _, job_id, step in steps(doc):
        if step.get("uses", "").startswith("actions/checkout@"):
            assert step["with"]["ref"] == "${{ env.DEPLOY_SHA }}", job_id
        if "IMAGE_TAG" in step.get("run", ""):
            assert 'IMAGE_TAG="$DEPLOY_SHA"' in step["run"], job_id


def test_no_workflow_with_a_self_hosted_job_can_be_started_by_a_pull_request() -> None:
    checked = 0
    for path in WORKFLOWS:
        doc = load(path)
        hosted_here = [j for j, job in doc["jobs"].items() if "self-hosted" in runs_on(job)]
        if not hosted_here:
            continue
        checked += 1
        on = set(triggers(doc))
        unsafe = on & {"pull_request", "pull_request_target", "issue_comment"}
        assert not unsafe, f"{path.name} runs {hosted_here} on the VM for {unsafe}"
        # workflow_run runs the default branch's copy of this file; the gate above keeps a pull
        # request's CI run (whose code this would check out) from reaching the VM.
        if "workflow_run" in on:
            for case in ("green CI of a pull request", "green CI of a fork's branch named main"):
                assert not runs_for(path.name, RED_RUNS[case])
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


# What the workflows' env: values become on a runner, for the steps' shell variables.
STEP_ENV = {
    "DEPLOY_SHA": "0123abcd" * 5,
    "INFERENCE_URL": "http://127.0.0.1:1/inference",
    "AKS_INFERENCE_URL": "https://inference.example.com",
    "AKS_RESOURCE_GROUP": "rg-inference-aks",
    "AKS_CLUSTER": "aks-inference",
    "ACR_NAME": "acrinference",
    "CANARY": "",
}


@pytest.mark.parametrize("canary", ["", "10"])
def test_make_accepts_every_run_step_as_written(canary: str) -> None:
    """Each step through bash as the runner runs it, with `make -n`: goals and variables resolve."""
    env = {**os.environ, **STEP_ENV, "CANARY": canary}
    for workflow, job_id, step in all_steps():
        script = step.get("run", "")
        if not script.startswith("make "):
            continue
        dry = "make --no-print-directory -n " + EXPRESSION.sub("0123abcd", script)[len("make ") :]
        done = subprocess.run(
            ["bash", "-eo", "pipefail", "-c", dry],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
            env=env,
        )
        assert done.returncode == 0, f"{workflow}:{job_id}: {done.stderr}"


def test_run_steps_interpolate_only_the_commit_sha() -> None:
    """Everything else reaches scripts through `env:`, so no value can inject shell code."""
    for workflow, job_id, step in all_steps():
        for expression in EXPRESSION.findall(step.get("run", "")):
            assert expression == "github.sha", f"{workflow}:{job_id}: ${{{{ {expression} }}}}"


def test_deploy_builds_and_deploys_the_image_of_the_tested_commit() -> None:
    jobs = load(WORKFLOW_DIR / "deploy.yml")["jobs"]
    runs = {job_id: [s["run"] for s in job["steps"] if "run" in s] for job_id, job in jobs.items()}
    assert runs["install"] == ["make host-install"]
    assert runs["build"] == ['make image IMAGE_TAG="$DEPLOY_SHA"']
    assert runs["deploy"] == [
        "make api-keys",
        'make deploy-local IMAGE_TAG="$DEPLOY_SHA" CANARY="$CANARY"',
    ]


def test_api_keys_come_from_the_production_environment_secret_into_one_step() -> None:
    doc = load(WORKFLOW_DIR / "deploy.yml")
    deploy = doc["jobs"]["deploy"]
    assert deploy["environment"]["name"] == "production", "environment secrets need it"
    (keys_step,) = [s for s in deploy["steps"] if s.get("run") == "make api-keys"]
    assert keys_step["env"] == {"API_KEYS": "${{ secrets.INFERENCE_API_KEYS }}"}
    text = (WORKFLOW_DIR / "deploy.yml").read_text()
    assert text.count("secrets.INFERENCE_API_KEYS") == 1, "the keys reach no other step"
    assert "INFERENCE_API_KEYS" not in (doc.get("env") or {})
    for job in doc["jobs"].values():
        assert "secrets." not in json.dumps(job.get("env") or {})


@pytest.mark.parametrize(("variable", "expected"), [(None, ""), ("10", "10"), ("0", "0")])
def test_canary_percent_comes_from_the_repository_variable(
    variable: str | None, expected: str
) -> None:
    doc = load(WORKFLOW_DIR / "deploy.yml")
    assert triggers(doc)["workflow_dispatch"] is None, "no inputs: nothing typed changes a build"
    expression = doc["jobs"]["deploy"]["env"]["CANARY"]
    context = {"vars": {} if variable is None else {"INFERENCE_CANARY_PERCENT": variable}}
    assert text(evaluate(expression, context)) == expected, "env: null becomes empty"


@pytest.mark.parametrize(
    ("canary", "flag"), [("", None), ("0", None), ("1", "--canary 1"), ("99", "--canary 99")]
)
def test_deploy_local_passes_a_canary_percentage(canary: str, flag: str | None) -> None:
    done = subprocess.run(
        ["make", "--no-print-directory", "-n", "deploy-local", f"CANARY={canary}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    command = done.stdout.strip().splitlines()[-1]
    assert " deploy up " in command
    if flag is None:
        assert "--canary" not in command
    else:
        assert command.endswith(flag)


@pytest.mark.parametrize("canary", ["100", "-5", "ten", "5;reboot", "1 2", "2.5"])
def test_deploy_local_refuses_a_canary_that_is_not_a_percentage(canary: str) -> None:
    done = subprocess.run(
        ["make", "--no-print-directory", "-n", "deploy-local", f"CANARY={canary}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0
    assert "CANARY must be a whole percentage from 1 to 99" in done.stderr


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
    # The plan and the provider lock it was made with travel together (the lock file is hidden,
    # which upload-artifact skips unless told otherwise).
    uploaded = upload["with"]["path"].split()
    assert uploaded == [f"{download['with']['path']}/{name}" for name in ("tfplan", LOCK_FILE)]
    assert upload["with"]["include-hidden-files"] is True
    assert [s["run"] for s in plan["steps"] if "run" in s] == ["make tf-plan"]
    assert [s["run"] for s in apply["steps"] if "run" in s] == ["make tf-apply"]


def test_aks_delivery_undoes_a_failed_rollout() -> None:
    doc = load(WORKFLOW_DIR / "deploy-k8s.yml")
    assert "pull_request" not in triggers(doc)
    job = doc["jobs"]["deploy-k8s"]
    runs = [s for s in job["steps"] if "run" in s]
    assert [s["run"].split()[1] for s in runs] == [
        "image",
        "aks-push",
        "aks-deploy",
        "smoke",
        "aks-rollback",
    ]
    undo = runs[-1]["if"]
    for outcomes, expected in (
        ({"rollout": "failure"}, True),
        ({"rollout": "success", "smoke": "failure"}, True),
        ({"rollout": "success", "smoke": "success"}, False),
    ):
        context = {"steps": {k: {"outcome": v} for k, v in outcomes.items()}}
        assert condition(undo, context, job_status="failure" if expected else "success") is expected
    push_failed = {"steps": {"rollout": {"outcome": "skipped"}}}
    assert not condition(undo, push_failed, job_status="failure"), "nothing to undo"


def make_dry_run(*args: str) -> str:
    done = subprocess.run(
        ["make", "--no-print-directory", "-n", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.parametrize("target", ["aks-deploy", "aks-rollback"])
def test_aks_targets_reach_the_cluster_through_the_azure_control_plane(target: str) -> None:
    """No kubeconfig, no kubelogin, no API server address: `az aks command invoke` runs kubectl."""
    commands = make_dry_run(target, "AKS_RESOURCE_GROUP=rg", "AKS_CLUSTER=aks").splitlines()
    cluster_calls = [c for c in commands if "kubectl" in c and "kustomize" not in c]
    assert cluster_calls, commands
    for command in cluster_calls:
        words = shlex.split(command.split("&&", 1)[1] if command.startswith("cd ") else command)
        assert words[0].endswith("scripts/aks-command.py"), command
        assert words[1:5] == ["--resource-group", "rg", "--name", "aks"]
    joined = "\n".join(commands)
    assert "kubelogin" not in joined and "get-credentials" not in joined


def test_aks_deploy_applies_the_rendered_overlay_it_attaches() -> None:
    commands = make_dry_run("aks-deploy", "AKS_RESOURCE_GROUP=rg", "AKS_CLUSTER=aks")
    assert (
        "kubectl kustomize deploy/k8s/overlays/prod >.tools/aks/inference-service.yaml" in commands
    )
    invoke = next(c for c in commands.splitlines() if "aks-command.py" in c)
    words = shlex.split(invoke.split("&&", 1)[1])
    assert words[words.index("--file") + 1] == "inference-service.yaml"
    assert words[-1].startswith("kubectl apply -f inference-service.yaml && kubectl -n ")
    assert "rollout status deployment/inference-service" in words[-1]


def test_no_workflow_needs_kubelogin_or_a_kubeconfig() -> None:
    targets = make_targets()
    for workflow, job_id, step in all_steps():
        words = shlex.split(EXPRESSION.sub("X", step.get("run", "")))
        assert "kubelogin" not in words and "kubectl" not in words, f"{workflow}:{job_id}"
        for goal in (w for w in words[1:] if w in targets):
            recipe = make_dry_run(goal, "AKS_RESOURCE_GROUP=rg", "AKS_CLUSTER=aks", "URL=http://x")
            assert "kubelogin" not in recipe and "get-credentials" not in recipe, goal


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


def terraform_setups() -> list[tuple[str, str, dict[str, Any]]]:
    found = [
        (workflow, job_id, step)
        for workflow, job_id, step in all_steps()
        if step.get("uses", "").startswith("hashicorp/setup-terraform@")
    ]
    assert found
    return found


def satisfies(version: str, constraint: str) -> bool:
    """Terraform's `>= a, < b` style constraints, the only kind the modules use."""

    def key(text: str) -> tuple[int, ...]:
        parts = [int(part) for part in text.split(".")]
        return tuple(parts + [0] * (3 - len(parts)))

    checks = {">=": lambda a, b: a >= b, "<": lambda a, b: a < b, "<=": lambda a, b: a <= b}
    for part in constraint.split(","):
        match = re.fullmatch(r"\s*(>=|<=|<)\s*([\d.]+)\s*", part)
        assert match, f"unsupported constraint {part!r}"
        if not checks[match[1]](key(version), key(match[2])):
            return False
    return True


def test_every_workflow_runs_one_pinned_terraform_release_the_modules_accept() -> None:
    versions = {step["with"].get("terraform_version") for _, _, step in terraform_setups()}
    assert len(versions) == 1, f"different Terraform releases in the workflows: {versions}"
    (version,) = versions
    assert isinstance(version, str) and re.fullmatch(r"\d+\.\d+\.\d+", version), version
    for tf in sorted((ROOT / "infra/terraform").rglob("terraform.tf")):
        required = re.search(r'required_version\s*=\s*"([^"]+)"', tf.read_text())
        assert required, tf
        assert satisfies(version, required[1]), f"{version} does not satisfy {tf}: {required[1]}"


def test_apply_initialises_with_the_plans_lock_file_unchanged() -> None:
    plan = make_dry_run("tf-plan").splitlines()
    apply = make_dry_run("tf-apply").splitlines()
    assert any(" init " in line and "-lockfile" not in line for line in plan)
    (init,) = [line for line in apply if " init " in line]
    assert "-lockfile=readonly" in init
    assert apply.index(init) < next(i for i, line in enumerate(apply) if " apply " in line)


def test_the_provider_lock_file_can_be_committed() -> None:
    lock = ROOT / "infra/terraform" / LOCK_FILE
    done = subprocess.run(["git", "check-ignore", "-q", str(lock)], cwd=ROOT, check=False)
    assert done.returncode == 1, f"{LOCK_FILE} is git-ignored"
    commands = make_dry_run("tf-lock")
    assert "providers lock" in commands and "-platform=linux_amd64" in commands
