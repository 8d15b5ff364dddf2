"""The VM's first boot, run by real cloud-init from the document Terraform renders.

The cloud-config comes from the real `templatefile` over the root module's variables, locals and
template (as tests/test_terraform.py renders it). It boots in a Debian 12 container whose PID 1 is
systemd and whose cloud-init reads the user-data from the NoCloud seed directory, the way an Azure
VM's cloud-init reads custom_data. The image (tests/e2e/cloud_init/Dockerfile) is built FROM the
debootstrap base image of scripts/docker-engine.sh; apt inside reaches Debian's archive.

What differs from Ubuntu 24.04 on Azure, and why:
- Debian 12 instead of Ubuntu 24.04: no Ubuntu image can be built here. Debian 12 has no
  `docker-buildx` package, so that one entry is removed from the package list before the boot.
- A privileged container instead of a VM, so systemd can run (on this test host, whose bounding
  set lacks CAP_SYS_RESOURCE and so refuses --privileged: every other capability, no seccomp or
  AppArmor filter, the cgroup tree writable); Docker's data directory is a volume so that dockerd
  inside can use overlayfs.
- NoCloud instead of the Azure datasource: same cloud-config, different transport.
- github.com resolves to 127.0.0.1 inside, so the runner download fails at once, as it would on a
  VM without a route to GitHub (the runner's registration cannot run without GitHub).
"""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.e2e.conftest import ROOT, docker, record
from tests.test_terraform import REQUIRED_VARS, SAMPLE_TOKEN, TEMPLATE, TF_DIR, terraform_env

pytestmark = [pytest.mark.docker, pytest.mark.slow]

VM_IMAGE = "inference-service-vm:bookworm"
DOCKERFILE_DIR = ROOT / "tests/e2e/cloud_init"
TOKEN_FILE = "/etc/inference-service/runner-token"
RUNNER_ENV = "/home/deploy/actions-runner/.env"
BOOT_TIMEOUT = 420
# Not in Debian 12 (Ubuntu 24.04 has it).
NOT_IN_DEBIAN = {"docker-buildx"}
COMMON_FLAGS = [
    "--hostname",
    "vm-inference",
    "--tmpfs",
    "/run",
    "--tmpfs",
    "/run/lock",
    # No route to GitHub: the runner download fails at once.
    "--add-host",
    "github.com:127.0.0.1",
]
# systemd needs what --privileged gives, and its own writable cgroup tree.
PRIVILEGED_FLAGS = ["--privileged", "--cgroupns=private"]
# Where --privileged is refused because this host's bounding set lacks a capability (here
# CAP_SYS_RESOURCE): every other capability, no seccomp or AppArmor filter, and the (cgroup v1)
# tree writable.
RESTRICTED_HOST_FLAGS = [
    "--cap-add",
    "ALL",
    "--cap-drop",
    "SYS_RESOURCE",
    "--security-opt",
    "seccomp=unconfined",
    "--security-opt",
    "apparmor=unconfined",
    "--volume",
    "/sys/fs/cgroup:/sys/fs/cgroup:rw",
]


def host_grants_every_capability() -> bool:
    """Whether this process's bounding set holds every capability the kernel knows, which
    `docker run --privileged` gives the container."""
    last = int(Path("/proc/sys/kernel/cap_last_cap").read_text())
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("CapBnd:"):
            bounding = int(line.split()[1], 16)
            return all(bounding >> cap & 1 for cap in range(last + 1))
    return False


def vm_flags() -> list[str]:
    return COMMON_FLAGS + (
        PRIVILEGED_FLAGS if host_grants_every_capability() else RESTRICTED_HOST_FLAGS
    )


def render_user_data(tmp_path: Path) -> str:
    """The VM's cloud-config exactly as Terraform renders it, with REQUIRED_VARS."""
    terraform = shutil.which("terraform")
    assert terraform, "terraform renders the template"
    work = tmp_path / "render"
    work.mkdir()
    for name in ("variables.tf", "locals.tf", TEMPLATE.name):
        shutil.copy(TF_DIR / name, work / name)
    template = f'templatefile("${{path.module}}/{TEMPLATE.name}", local.cloud_init_vm_vars)'
    (work / "render.tf").write_text(
        f'output "vm" {{\n  value = {template}\n  sensitive = true\n}}\n'
    )
    (work / "vars.tfvars.json").write_text(json.dumps(REQUIRED_VARS))
    env = terraform_env()
    common = ["-input=false", "-no-color", "-var-file=vars.tfvars.json"]
    applied = subprocess.run(
        [terraform, "apply", "-auto-approve", *common],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert applied.returncode == 0, applied.stderr
    shown = subprocess.run(
        [terraform, "output", "-raw", "vm"], cwd=work, env=env, capture_output=True, text=True
    )
    assert shown.returncode == 0, shown.stderr
    return shown.stdout


def for_debian(user_data: str) -> str:
    document = yaml.safe_load(user_data)
    missing = NOT_IN_DEBIAN & set(document["packages"])
    assert missing == NOT_IN_DEBIAN, "the Ubuntu-only packages changed; update NOT_IN_DEBIAN"
    document["packages"] = [p for p in document["packages"] if p not in NOT_IN_DEBIAN]
    return "#cloud-config\n" + yaml.safe_dump(document, sort_keys=False, width=1000)


@dataclass
class Vm:
    name: str
    status: dict[str, Any]
    boot_seconds: float

    def run(self, command: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        done = docker("exec", self.name, "bash", "-c", command, check=False, timeout=120)
        if check:
            assert done.returncode == 0, f"{command}: {done.stdout}{done.stderr}"
        return done

    def read(self, path: str) -> str:
        return self.run(f"cat {shlex.quote(path)}").stdout


@pytest.fixture(scope="module")
def vm_image(engine: None) -> str:
    done = subprocess.run(
        ["docker", "build", "-q", "-t", VM_IMAGE, str(DOCKERFILE_DIR)],
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return VM_IMAGE


@pytest.fixture(scope="module")
def vm(vm_image: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Vm]:
    """One first boot; every test below reads the state it left."""
    tmp_path = tmp_path_factory.mktemp("cloud-init")
    seed = tmp_path / "seed"
    seed.mkdir()
    (seed / "user-data").write_text(for_debian(render_user_data(tmp_path)))
    (seed / "meta-data").write_text(
        "instance-id: iid-inference-test\nlocal-hostname: vm-inference\n"
    )
    for path in seed.iterdir():
        path.chmod(0o600)  # root-only, like the custom data an Azure VM receives
    name = f"isvc-vm-{uuid.uuid4().hex[:8]}"
    volume = f"{name}-docker"
    start = time.monotonic()
    try:
        docker(
            "run",
            "--detach",
            "--name",
            name,
            *vm_flags(),
            "--volume",
            f"{volume}:/var/lib/docker",
            "--volume",
            f"{seed}:/var/lib/cloud/seed/nocloud:ro",
            vm_image,
        )
        status = wait_for_cloud_init(name)
        boot = time.monotonic() - start
        record("cloud-init first boot (container)", round(boot, 1))
        yield Vm(name, status, boot)
    finally:
        log = docker("exec", name, "cat", "/var/log/cloud-init-output.log", check=False)
        (tmp_path / "cloud-init-output.log").write_text(log.stdout)
        docker("rm", "--force", "--volumes", name, check=False, timeout=120)
        docker("volume", "rm", "--force", volume, check=False)


def wait_for_cloud_init(name: str) -> dict[str, Any]:
    """Poll until cloud-init has finished all its stages (`status --wait` returns at once when
    cloud-init has not started yet)."""
    deadline = time.monotonic() + BOOT_TIMEOUT
    status: dict[str, Any] = {}
    while time.monotonic() < deadline:
        done = docker("exec", name, "cloud-init", "status", "--format", "json", check=False)
        try:
            status = json.loads(done.stdout)
        except ValueError:
            status = {"status": "unreadable", "output": done.stdout + done.stderr}
        if status.get("status") in ("done", "error", "degraded done", "disabled"):
            return status
        time.sleep(2)
    pytest.fail(f"cloud-init did not finish in {BOOT_TIMEOUT} s: {status}")


def test_first_boot_ends_with_the_runner_download_as_the_only_failure(vm: Vm) -> None:
    """Everything before the registration ran; the download from GitHub is what failed."""
    log = vm.read("/var/log/cloud-init-output.log")
    assert vm.status.get("status") == "error", vm.status
    assert "curl: (7) Failed to connect to github.com" in log, log[-4000:]
    failures = [line for line in log.splitlines() if "[WARNING]: Running module" in line]
    assert len(failures) == 1 and "scripts-user" in failures[0], failures
    assert vm.run("ls -A /home/deploy/actions-runner").stdout.split() == [".env"], "no runner"


def test_the_deploy_user_may_use_docker(vm: Vm) -> None:
    groups = vm.run("id -nG deploy").stdout.split()
    assert "docker" in groups
    assert vm.run("sudo -u deploy docker info --format '{{.ServerVersion}}'").stdout.strip()


@pytest.mark.parametrize("unit", ["docker.service", "nginx.service"])
def test_docker_and_nginx_are_installed_enabled_and_running(vm: Vm, unit: str) -> None:
    assert vm.run(f"systemctl is-active {unit}").stdout.strip() == "active"
    assert vm.run(f"systemctl is-enabled {unit}").stdout.strip() == "enabled"


def test_nginx_answers_on_6666_with_the_placeholder_proxy_config(vm: Vm) -> None:
    done = vm.run("curl -s -w '\\n%{http_code}' http://127.0.0.1:6666/inference")
    body, code = done.stdout.rsplit("\n", 1)
    assert code == "503"
    assert json.loads(body) == {
        "error": "The inference service has not been deployed to this host yet."
    }
    assert not vm.run("test -e /etc/nginx/sites-enabled/default", check=False).returncode == 0
    owner = vm.run("stat -c %U /etc/nginx/conf.d/inference-service.conf").stdout.strip()
    assert owner == "deploy", "the deploy tool rewrites it in place"


def test_the_sudoers_rule_is_valid_and_allows_only_nginx(vm: Vm) -> None:
    assert vm.run("visudo -c").returncode == 0
    allowed = vm.run("sudo -l -U deploy").stdout
    commands = allowed.split("NOPASSWD:", 1)[1].split(",")
    assert [c.strip() for c in commands] == [
        '/usr/sbin/nginx ""',
        "/usr/sbin/nginx -t",
        "/usr/sbin/nginx -t -q",
        "/usr/sbin/nginx -s reload",
    ]
    assert vm.run("sudo -u deploy sudo -n /usr/sbin/nginx -t -q").returncode == 0
    for refused in (
        "/bin/sh -c id",
        "/usr/sbin/nginx -c /tmp/x.conf",
        "/usr/bin/systemctl stop nginx",
    ):
        done = vm.run(f"sudo -u deploy sudo -n {refused}", check=False)
        assert done.returncode != 0, refused


def test_the_runner_env_carries_what_the_deploy_tool_needs(vm: Vm) -> None:
    assert vm.read(RUNNER_ENV) == "INFERENCE_NGINX=sudo -n /usr/sbin/nginx\n"
    owner, mode = vm.run(f"stat -c '%U %a' {RUNNER_ENV}").stdout.split()
    assert owner == "deploy"
    assert mode in ("600", "640", "644")
    assert vm.run("stat -c '%U %a' /var/lib/inference-service").stdout.split() == ["deploy", "750"]


def test_a_failed_registration_leaves_no_token_on_disk(vm: Vm) -> None:
    assert vm.run(f"test -e {TOKEN_FILE}", check=False).returncode != 0, "the token file is left"
    # Every file holding the token, besides cloud-init's own copies of the user-data.
    found = vm.run(
        f"grep -rlF {SAMPLE_TOKEN} / --exclude-dir=proc --exclude-dir=sys "
        "--exclude-dir=dev --exclude-dir=run 2>/dev/null || true"
    ).stdout.split()
    cloud_init_copies = [
        p for p in found if p.startswith(("/var/lib/cloud/", "/var/log/cloud-init"))
    ]
    assert sorted(set(found) - set(cloud_init_copies)) == []
    for path in cloud_init_copies:
        owner, mode = vm.run(f"stat -c '%U %a' {shlex.quote(path)}").stdout.split()
        assert owner == "root" and mode in ("600", "400"), f"{path}: {owner} {mode}"
