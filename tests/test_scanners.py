"""Scanners over what we ship: hadolint and checkov on the Dockerfile, checkov on the workflows,
detect-secrets against the committed baseline, and pip-audit on the lock file.

Terraform and Kubernetes manifests are scanned by checkov in test_terraform.py and test_k8s.py.
A scanned path that does not exist yet skips the test, except with CI=true, where it fails.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
DOCKERFILE = ROOT / "Dockerfile"
WORKFLOWS = ROOT / ".github/workflows"
BASELINE = ROOT / ".secrets.baseline"
CHECKOV_ENV = {
    # Offline: no guideline mapping, no platform calls, no package scan.
    "BC_SKIP_MAPPING": "TRUE",
    "CKV_IGNORE_HIDDEN_DIRECTORIES": "false",
    "CHECKOV_RUN_SCA_PACKAGE_SCAN_V2": "false",
}
SKIP_COMMENT = re.compile(r"checkov:skip=(CKV2?_[A-Z0-9]+_\d+):?(.*)")


def require(path: Path) -> Path:
    if not path.exists():
        if os.environ.get("CI") == "true":
            pytest.fail(f"{path.relative_to(ROOT)} is missing", pytrace=False)
        pytest.skip(f"{path.relative_to(ROOT)} does not exist yet")
    return path


def run(args: list[str | Path], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(a) for a in args], capture_output=True, text=True, timeout=300, **kwargs
    )


# --- hadolint ---------------------------------------------------------------------------------


def test_hadolint_finds_nothing_in_the_dockerfile() -> None:
    done = run([BIN / "hadolint", "--no-color", require(DOCKERFILE)], cwd=ROOT)
    assert done.returncode == 0 and not done.stdout.strip(), done.stdout + done.stderr


def test_hadolint_does_flag_a_careless_dockerfile(tmp_path: Path) -> None:
    careless = tmp_path / "Dockerfile"
    careless.write_text("FROM debian\nRUN apt-get update && apt-get install -y curl\n")
    done = run([BIN / "hadolint", "--no-color", careless])
    assert done.returncode != 0
    assert "DL3006" in done.stdout and "DL3008" in done.stdout, done.stdout


def test_every_hadolint_ignore_says_why() -> None:
    lines = require(DOCKERFILE).read_text().splitlines()
    for i, line in enumerate(lines):
        if "hadolint ignore=" in line:
            reason = lines[i - 1].strip() if i else ""
            assert reason.startswith("#") and len(reason) > 20, (
                f"Dockerfile line {i + 1}: put the reason on the line above the ignore"
            )


# --- checkov ----------------------------------------------------------------------------------


def checkov(framework: str, target: Path) -> dict[str, Any]:
    flag = "--file" if target.is_file() else "--directory"
    done = run(
        [BIN / "checkov", flag, target, "--framework", framework, "--compact", "-o", "json"],
        cwd=ROOT,
        env={**os.environ, **CHECKOV_ENV},
    )
    assert done.stdout.strip(), f"checkov printed no report: {done.stderr[-2000:]}"
    report = json.loads(done.stdout)
    if isinstance(report, list):
        (report,) = [r for r in report if r.get("check_type") == framework]
    return dict(report)


def failed(report: dict[str, Any]) -> list[str]:
    return [
        f"{c['check_id']} {c['file_path']}:{c['file_line_range']}: {c['check_name']}"
        for c in report["results"].get("failed_checks", [])
    ]


def unexplained_skips(report: dict[str, Any]) -> list[str]:
    return [
        f"{c['check_id']} {c['file_path']}"
        for c in report["results"].get("skipped_checks", [])
        if len((c["check_result"].get("suppress_comment") or "").strip()) < 20
    ]


def test_checkov_passes_the_dockerfile() -> None:
    report = checkov("dockerfile", require(DOCKERFILE))
    assert failed(report) == []
    assert unexplained_skips(report) == []
    assert report["summary"]["parsing_errors"] == 0
    assert report["summary"]["passed"] > 0


def test_checkov_passes_every_workflow() -> None:
    workflows = sorted(require(WORKFLOWS).glob("*.y*ml"))
    if not workflows:
        require(WORKFLOWS / "ci.yml")
    report = checkov("github_actions", WORKFLOWS)
    assert failed(report) == []
    assert unexplained_skips(report) == []
    assert report["summary"]["parsing_errors"] == 0
    scanned = {Path(c["file_path"]).name for c in report["results"]["passed_checks"]}
    assert scanned == {w.name for w in workflows}


def test_checkov_does_flag_a_careless_workflow(tmp_path: Path) -> None:
    careless = tmp_path / ".github/workflows"  # checkov recognises workflows by this path
    careless.mkdir(parents=True)
    (careless / "bad.yml").write_text(
        "on: [push]\n"
        "permissions: write-all\n"
        "jobs:\n"
        "  build:\n"
        "    runs-on: ubuntu-latest\n"
        "    steps:\n"
        "      - run: curl -s https://example.com/install.sh | bash\n"
    )
    assert failed(checkov("github_actions", careless))


def test_every_checkov_skip_in_the_dockerfile_and_workflows_says_why() -> None:
    paths = [p for p in [DOCKERFILE, *sorted(WORKFLOWS.glob("*.y*ml"))] if p.exists()]
    for path in paths:
        for match in SKIP_COMMENT.finditer(path.read_text()):
            assert len(match.group(2).strip()) >= 20, f"{path.name}: skip {match.group(1)}"


# --- detect-secrets ---------------------------------------------------------------------------


def test_no_secret_outside_the_audited_baseline(tmp_path: Path) -> None:
    """Re-scan the tracked files with the baseline's settings: every finding must be one the
    baseline records as audited and not a secret (is_secret: false)."""
    baseline = tmp_path / "baseline.json"
    shutil.copy(require(BASELINE), baseline)
    done = run([BIN / "detect-secrets", "scan", "--baseline", baseline], cwd=ROOT)
    assert done.returncode == 0, done.stderr
    results = json.loads(baseline.read_text())["results"]
    unaudited = [
        f"{path}:{item['line_number']} {item['type']}"
        for path, items in results.items()
        for item in items
        if item.get("is_secret") is not False
    ]
    assert unaudited == [], (
        "new findings: remove the secret, or audit with `.venv/bin/detect-secrets audit "
        ".secrets.baseline` after `detect-secrets scan --baseline .secrets.baseline`"
    )


def test_baseline_excludes_only_generated_and_vendored_files() -> None:
    filters = json.loads(require(BASELINE).read_text())["filters_used"]
    (excluded,) = [f["pattern"] for f in filters if f["path"].endswith("should_exclude_file")]
    pattern = re.compile(excluded[0])
    for path in (".secrets.baseline", "uv.lock", ".venv/lib/x.py", "models/iris/current", "a.png"):
        assert pattern.search(path), path
    for path in ("src/inference_service/api.py", "infra/terraform/main.tf", ".ci/run"):
        assert not pattern.search(path), path


def test_detect_secrets_does_flag_a_planted_key(tmp_path: Path) -> None:
    planted = tmp_path / "settings.py"
    key = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYzEXAMPLEKEY"  # pragma: allowlist secret
    planted.write_text(f'AWS_SECRET_ACCESS_KEY = "{key}"\n')
    done = run([BIN / "detect-secrets", "scan", planted], cwd=tmp_path)
    assert json.loads(done.stdout)["results"], done.stdout


# --- pip-audit --------------------------------------------------------------------------------


def advisory_data_reachable() -> str | None:
    """pip-audit asks PyPI's per-version JSON API (or OSV); None when it answers, else why not."""
    try:
        with urllib.request.urlopen("https://pypi.org/pypi/pip/24.0/json", timeout=10) as r:
            if "vulnerabilities" in json.loads(r.read()):
                return None
            return "PyPI's per-version JSON has no vulnerabilities field"
    except (OSError, ValueError) as exc:
        return f"PyPI's per-version JSON API is unreachable ({exc})"


def test_pip_audit_finds_no_known_vulnerability_in_the_lock_file(tmp_path: Path) -> None:
    uv = shutil.which("uv")
    if uv is None:
        pytest.skip("uv is not on PATH")
    reason = advisory_data_reachable()
    if reason:
        pytest.skip(f"{reason}: the hosted CI job `audit` (make audit) runs pip-audit")
    requirements = tmp_path / "requirements.txt"
    export = [uv, "export", "--quiet", "--frozen", "--all-extras", "--no-emit-project"]
    done = run([*export, "--format", "requirements-txt", "-o", requirements], cwd=ROOT)
    assert done.returncode == 0, done.stderr
    audit = [uv, "tool", "run", "pip-audit==2.10.1", "--strict", "--disable-pip"]
    done = run([*audit, "--require-hashes", "-r", requirements], cwd=ROOT)
    assert done.returncode == 0, done.stdout + done.stderr
