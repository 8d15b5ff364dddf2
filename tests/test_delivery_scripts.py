"""The delivery scripts the workflows call: `make api-keys` and the AKS run-command wrapper."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
AKS_COMMAND = ROOT / "scripts/aks-command.py"
KEYS = ["k-7f3a9c2e41b8d6", "k-0b5e8d1c7a2f94", "k-93d0e6b4c1a7f2"]


def api_keys(target: Path, value: str | None) -> subprocess.CompletedProcess[str]:
    """`make api-keys` as the deploy job runs it, with API_KEYS from the environment secret."""
    env = {k: v for k, v in os.environ.items() if k != "API_KEYS"}
    if value is not None:
        env["API_KEYS"] = value
    return subprocess.run(
        ["make", "--no-print-directory", "-s", "api-keys", f"API_KEYS_FILE={target}"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    "secret",
    [",".join(KEYS), "\n".join(KEYS) + "\n", f" {KEYS[0]} ,\n{KEYS[1]},,\n {KEYS[2]}\n\n"],
    ids=["commas", "lines", "mixed"],
)
def test_api_keys_are_written_one_per_line_readable_by_the_owner_only(
    tmp_path: Path, secret: str
) -> None:
    target = tmp_path / "state" / "api-keys"
    done = api_keys(target, secret)
    assert done.returncode == 0, done.stderr
    assert target.read_text().splitlines() == KEYS
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert "wrote 3 API key(s)" in done.stdout
    for key in KEYS:
        assert key not in done.stdout + done.stderr, "a key reached the job log"
    assert [p.name for p in target.parent.iterdir()] == ["api-keys"], "no temporary file left"


def test_rotation_replaces_the_keys_in_place(tmp_path: Path) -> None:
    target = tmp_path / "api-keys"
    assert api_keys(target, ",".join(KEYS[:2])).returncode == 0
    before = target.stat().st_ino
    assert api_keys(target, ",".join(KEYS[1:])).returncode == 0
    assert target.read_text().splitlines() == KEYS[1:]
    assert target.stat().st_ino != before, "replaced by rename: a reader sees old or new, whole"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600


def test_an_unset_secret_keeps_the_keys_on_the_host(tmp_path: Path) -> None:
    """Removing the secret must not switch authentication off (fail closed)."""
    target = tmp_path / "api-keys"
    assert api_keys(target, KEYS[0]).returncode == 0
    for unset in (None, ""):
        done = api_keys(target, unset)
        assert done.returncode == 0, done.stderr
        assert target.read_text().splitlines() == [KEYS[0]]
        assert "stay as they are" in done.stdout


def test_no_secret_and_no_file_means_no_keys(tmp_path: Path) -> None:
    target = tmp_path / "api-keys"
    done = api_keys(target, None)
    assert done.returncode == 0
    assert not target.exists()
    assert "runs without API keys" in done.stdout


def test_a_secret_with_separators_only_is_refused(tmp_path: Path) -> None:
    target = tmp_path / "api-keys"
    assert api_keys(target, KEYS[0]).returncode == 0
    done = api_keys(target, " , \n ,")
    assert done.returncode != 0
    assert "holds separators but no key" in done.stderr
    assert target.read_text().splitlines() == [KEYS[0]], "the old keys stay"


def last_command(goal: str, target: Path) -> str:
    done = subprocess.run(
        ["make", "--no-print-directory", "-n", goal, f"API_KEYS_FILE={target}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()[-1]


def test_without_a_keys_file_deploy_and_smoke_set_no_keys(tmp_path: Path) -> None:
    for goal in ("deploy-local", "smoke"):
        assert "INFERENCE_API_KEYS" not in last_command(goal, tmp_path / "api-keys")


def test_smoke_reads_the_keys_file(tmp_path: Path) -> None:
    target = tmp_path / "api-keys"
    assert api_keys(target, KEYS[0]).returncode == 0
    command = last_command("smoke", target)
    assert command.startswith(f"INFERENCE_API_KEYS={target} "), command


def test_deploy_local_hands_the_keys_over_in_the_environment_only(tmp_path: Path) -> None:
    """The deploy tool passes INFERENCE_API_KEYS to the container by name; the value is in no
    command line make prints or the process list shows."""
    target = tmp_path / "api-keys"
    assert api_keys(target, ",".join(KEYS)).returncode == 0
    command = last_command("deploy-local", target)
    assert all(key not in command for key in KEYS), command
    # The recipe as make runs it, with a stand-in CLI that prints what it was given.
    probe = tmp_path / "cli"
    probe.write_text('#!/bin/sh\necho "args: $*"\necho "keys: $INFERENCE_API_KEYS"\n')
    probe.chmod(0o755)
    done = subprocess.run(
        ["make", "--no-print-directory", "deploy-local", f"API_KEYS_FILE={target}", f"CLI={probe}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert f"keys: {','.join(KEYS)}" in lines
    args = next(line for line in lines if line.startswith("args: "))
    assert args.startswith("args: deploy up ") and all(key not in args for key in KEYS)
    echoed = [line for line in lines if str(probe) in line]
    assert echoed and all(key not in line for line in echoed for key in KEYS)


def test_the_state_dir_setting_places_the_keys_file(tmp_path: Path) -> None:
    done = subprocess.run(
        ["make", "--no-print-directory", "-n", "api-keys"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "INFERENCE_DEPLOY_STATE_DIR": str(tmp_path)},
    )
    assert f'"{tmp_path}/api-keys"' in done.stdout


# --- az aks command invoke --------------------------------------------------------------------
# The Azure CLI cannot reach Azure here. A stand-in `az` records its arguments and prints the JSON
# that `az aks command invoke --output json` returns (its RunCommandResult), so the wrapper's
# handling of that result runs for real.


def fake_az(tmp_path: Path, result: dict[str, object] | str, exit_code: int = 0) -> Path:
    script = tmp_path / "az"
    payload = result if isinstance(result, str) else json.dumps(result)
    (tmp_path / "result.json").write_text(payload)
    script.write_text(
        f"#!{sys.executable}\n"
        "import json, sys, pathlib\n"
        f"here = pathlib.Path({str(tmp_path)!r})\n"
        "(here / 'args.json').write_text(json.dumps(sys.argv[1:]))\n"
        "sys.stdout.write((here / 'result.json').read_text())\n"
        "sys.stderr.write('stderr of az\\n')\n"
        f"sys.exit({exit_code})\n"
    )
    script.chmod(0o755)
    return script


def aks_command(tmp_path: Path, az: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(AKS_COMMAND), "--resource-group", "rg", "--name", "aks", *args],
        cwd=tmp_path,
        env={**os.environ, "AZ": str(az)},
        capture_output=True,
        text=True,
        timeout=60,
    )


def succeeded(exit_code: int, logs: str) -> dict[str, object]:
    return {"provisioningState": "Succeeded", "exitCode": exit_code, "logs": logs, "id": "x"}


def test_the_command_and_its_files_go_to_az_aks_command_invoke(tmp_path: Path) -> None:
    manifest = tmp_path / "inference-service.yaml"
    manifest.write_text("kind: List\n")
    az = fake_az(tmp_path, succeeded(0, "deployment.apps/inference-service configured\n"))
    done = aks_command(tmp_path, az, "--file", manifest.name, "kubectl apply -f x.yaml")
    assert done.returncode == 0, done.stderr
    assert "deployment.apps/inference-service configured" in done.stdout
    args = json.loads((tmp_path / "args.json").read_text())
    assert args[:3] == ["aks", "command", "invoke"]
    assert args[args.index("--resource-group") + 1] == "rg"
    assert args[args.index("--name") + 1] == "aks"
    assert args[args.index("--command") + 1] == "kubectl apply -f x.yaml"
    assert args[args.index("--file") + 1] == manifest.name
    assert args[args.index("--output") + 1] == "json"


def test_a_failing_command_in_the_cluster_fails_the_step(tmp_path: Path) -> None:
    """`az aks command invoke` exits 0 when kubectl fails; the wrapper must not."""
    logs = 'error: deployment "inference-service" exceeded its progress deadline\n'
    done = aks_command(tmp_path, fake_az(tmp_path, succeeded(1, logs)), "kubectl rollout status")
    assert done.returncode == 1
    assert "exceeded its progress deadline" in done.stderr
    assert "exited with 1" in done.stderr


@pytest.mark.parametrize(
    "result",
    [
        {"provisioningState": "Failed", "reason": "command pod could not be scheduled"},
        {"provisioningState": "Succeeded", "logs": "no exit code"},
        "not json",
        "[]",
    ],
)
def test_a_command_that_did_not_run_fails_the_step(
    tmp_path: Path, result: dict[str, object] | str
) -> None:
    done = aks_command(tmp_path, fake_az(tmp_path, result), "kubectl get pods")
    assert done.returncode == 3, done.stdout + done.stderr


def test_an_az_error_is_passed_on(tmp_path: Path) -> None:
    done = aks_command(tmp_path, fake_az(tmp_path, "", exit_code=2), "kubectl get pods")
    assert done.returncode == 2
    assert "stderr of az" in done.stderr


def test_a_missing_file_is_refused_before_calling_az(tmp_path: Path) -> None:
    az = fake_az(tmp_path, succeeded(0, ""))
    done = aks_command(tmp_path, az, "--file", "missing.yaml", "kubectl apply -f missing.yaml")
    assert done.returncode == 2
    assert "--file missing.yaml: no such file" in done.stderr
    assert not (tmp_path / "args.json").exists()


def test_aks_manifest_renders_the_prod_overlay_into_the_file_the_cluster_gets(
    tmp_path: Path,
) -> None:
    done = subprocess.run(
        ["make", "--no-print-directory", "aks-manifest", f"AKS_MANIFEST_DIR={tmp_path}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    documents = list(yaml.safe_load_all((tmp_path / "inference-service.yaml").read_text()))
    kinds = {d["kind"] for d in documents}
    assert {"Namespace", "Deployment", "Service", "Ingress", "NetworkPolicy"} <= kinds
    ingress = next(d for d in documents if d["kind"] == "Ingress")
    assert ingress["spec"]["ingressClassName"] == "webapprouting.kubernetes.azure.com"
    assert all(d["metadata"].get("labels", {}).get("environment") == "prod" for d in documents)
