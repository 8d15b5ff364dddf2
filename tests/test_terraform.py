"""Static checks of the Azure infrastructure in infra/terraform.

Providers cannot be downloaded here, so `terraform init/validate/plan` of the real modules run
in the hosted CI job (`make tf-validate`). What runs here: `terraform fmt`, checkov, structural
assertions on the parsed HCL, the variable validations and the cloud-init template evaluated by
the real terraform binary (neither needs a provider), and the rendered cloud-init checked by
`cloud-init schema`, `bash -n`, shellcheck, visudo and `nginx -t`.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from hcl2.api import load as parse_hcl

REPO_ROOT = Path(__file__).resolve().parents[1]
TF_DIR = REPO_ROOT / "infra" / "terraform"
AKS_DIR = TF_DIR / "aks"
SCALE_SET_DIR = TF_DIR / "modules" / "scale-set"
EXAMPLE_DIR = TF_DIR / "examples" / "basic"
MODULE_DIRS = [TF_DIR, SCALE_SET_DIR, AKS_DIR, EXAMPLE_DIR]
TEMPLATE = TF_DIR / "cloud-init.yaml.tftpl"

SERVICE_PORT = 6666
SERVICE_PORT_EXPR = "${tostring(local.service_port)}"
SAMPLE_TOKEN = "AABF3JGZDX3P5PMEXLND6TS6FCWO6"
BOOTSTRAP_PATH = "/usr/local/sbin/inference-host-bootstrap"
SUDOERS_PATH = "/etc/sudoers.d/inference-service"
NGINX_CONF_PATH = "/etc/nginx/conf.d/inference-service.conf"
TOKEN_PATH = "/etc/inference-service/runner-token"

# Valid values for every variable of the root module that has no default.
REQUIRED_VARS: dict[str, Any] = {
    "location": "westeurope",
    "admin_source_cidrs": ["203.0.113.7/32"],
    "admin_ssh_public_key": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJ0KexampleKeyOnly user@laptop",
    "repository_url": "https://github.com/example-org/inference-service",
    "runner_registration_token": SAMPLE_TOKEN,
}

TLS_VARS: dict[str, Any] = {"tls_email": "ops@example.com", "dns_label": "my-inference"}
TLS_DOMAIN = "my-inference.westeurope.cloudapp.azure.com"

CHECKOV_ENV = {
    # Keep checkov offline: no guideline mapping, no platform calls, no version check.
    "BC_SKIP_MAPPING": "TRUE",
    "CKV_IGNORE_HIDDEN_DIRECTORIES": "true",
    "CHECKOV_RUN_SCA_PACKAGE_SCAN_V2": "false",
}


def require_tool(name: str) -> str:
    """Return the path of a command-line tool; skip without it, but fail in CI."""
    path = shutil.which(name)
    if path is None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{name} is required in CI but is not on PATH")
        pytest.skip(f"{name} is not installed on this machine")
    return path


def run(args: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=300, check=False, **kwargs)


def terraform_env() -> dict[str, str]:
    return {
        **os.environ,
        "TF_CLI_CONFIG_FILE": os.devnull,
        "CHECKPOINT_DISABLE": "1",
        "TF_IN_AUTOMATION": "1",
    }


# --- parsed HCL -------------------------------------------------------------------------------


def _normalize(value: Any) -> Any:
    """Unwrap the one-element lists the hcl2 parser puts around every value; drop line markers.

    Nested blocks that occur more than once (security_rule) stay lists.
    """
    if isinstance(value, dict):
        return {k: _normalize(v) for k, v in value.items() if not k.startswith("__")}
    if isinstance(value, list):
        items = [_normalize(v) for v in value]
        return items[0] if len(items) == 1 else items
    return value


def load_hcl(path: Path) -> dict[str, list[dict[str, Any]]]:
    """Top-level blocks by kind; each kind keeps its list of blocks."""
    with path.open() as handle:
        parsed = parse_hcl(handle)
    return {kind: [_normalize(entry) for entry in entries] for kind, entries in parsed.items()}


def blocks(directory: Path, kind: str) -> dict[str, Any]:
    """All top-level blocks of one kind in a module, keyed by label ("type.name" for resources)."""
    found: dict[str, Any] = {}
    for path in sorted(directory.glob("*.tf")):
        for entry in load_hcl(path).get(kind, []):
            for label, body in entry.items():
                if kind in ("resource", "data"):
                    for name, inner in body.items():
                        found[f"{label}.{name}"] = inner
                else:
                    found[label] = body
    return found


def single(value: Any) -> Any:
    """A nested block is a one-element list in the parsed HCL."""
    if isinstance(value, list):
        assert len(value) == 1, value
        return value[0]
    return value


def resource(directory: Path, address: str) -> dict[str, Any]:
    found = blocks(directory, "resource")
    assert address in found, f"{address} not in {directory}: {sorted(found)}"
    return found[address]  # type: ignore[no-any-return]


def local_values(directory: Path) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for path in sorted(directory.glob("*.tf")):
        for entry in load_hcl(path).get("locals", []):
            merged.update(entry)
    return merged


def terraform_settings(directory: Path) -> dict[str, Any]:
    entries = [e for p in sorted(directory.glob("*.tf")) for e in load_hcl(p).get("terraform", [])]
    assert len(entries) == 1
    return entries[0]


# --- terraform fmt and checkov ----------------------------------------------------------------


def test_terraform_files_are_formatted() -> None:
    terraform = require_tool("terraform")
    result = run(
        [terraform, "fmt", "-check", "-recursive", "-diff", str(TF_DIR)], env=terraform_env()
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.fixture(scope="module")
def checkov_report() -> dict[str, Any]:
    checkov = Path(sys.executable).parent / "checkov"
    args = [
        str(checkov),
        "--directory",
        str(TF_DIR),
        "--framework",
        "terraform",
        "--download-external-modules",
        "false",
        # Not --quiet: the passed and skipped checks are asserted on too.
        "--compact",
        "--output",
        "json",
    ]
    result = run(args, env={**os.environ, **CHECKOV_ENV}, cwd=REPO_ROOT)
    assert result.stdout.strip(), f"checkov printed no report: {result.stderr[-2000:]}"
    report = json.loads(result.stdout)
    if isinstance(report, list):
        (report,) = [r for r in report if r.get("check_type") == "terraform"]
    return report  # type: ignore[no-any-return]


def _checks(report: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    return report.get("results", {}).get(kind, [])  # type: ignore[no-any-return]


def test_checkov_finds_no_failed_checks(checkov_report: dict[str, Any]) -> None:
    failed = [
        f"{c['check_id']} {c['resource']} ({c['file_path']}): {c['check_name']}"
        for c in _checks(checkov_report, "failed_checks")
    ]
    assert failed == []
    assert checkov_report["summary"]["parsing_errors"] == 0


def test_checkov_scanned_the_vm_scale_set_and_cluster(checkov_report: dict[str, Any]) -> None:
    scanned = {c["resource"].split(".")[-2] for c in _checks(checkov_report, "passed_checks")}
    for resource_type in (
        "azurerm_linux_virtual_machine",
        "azurerm_linux_virtual_machine_scale_set",
        "azurerm_network_security_group",
        "azurerm_kubernetes_cluster",
        "azurerm_container_registry",
    ):
        assert resource_type in scanned


SKIP_COMMENT = re.compile(r"#\s*checkov:skip=(CKV2?_[A-Z]+_\d+):(.*)")


def inline_skips() -> list[tuple[str, str, str]]:
    skips = []
    for path in sorted(TF_DIR.rglob("*.tf")):
        for match in SKIP_COMMENT.finditer(path.read_text()):
            skips.append((str(path.relative_to(TF_DIR)), match.group(1), match.group(2).strip()))
    return skips


def test_every_checkov_skip_is_inline_with_a_reason(checkov_report: dict[str, Any]) -> None:
    for path, check_id, reason in inline_skips():
        assert len(reason) >= 40, f"{path}: skip of {check_id} needs a real reason"
    for check in _checks(checkov_report, "skipped_checks"):
        reason = check["check_result"].get("suppress_comment")
        assert reason, f"{check['check_id']} skipped without a reason"


def test_every_checkov_skip_still_suppresses_a_finding(checkov_report: dict[str, Any]) -> None:
    used = {c["check_id"] for c in _checks(checkov_report, "skipped_checks")}
    stale = [(path, check_id) for path, check_id, _ in inline_skips() if check_id not in used]
    assert stale == []


# --- versions and backend ---------------------------------------------------------------------


@pytest.mark.parametrize("directory", MODULE_DIRS, ids=lambda d: str(d.relative_to(TF_DIR)))
def test_terraform_and_provider_versions_are_bounded(directory: Path) -> None:
    settings = terraform_settings(directory)
    required_version = settings["required_version"]
    assert ">=" in required_version and "<" in required_version.replace("<=", "<")
    providers = single(settings["required_providers"])
    assert providers["azurerm"]["source"] == "hashicorp/azurerm"
    assert re.fullmatch(r"~> 4\.\d+", providers["azurerm"]["version"])
    if directory in (TF_DIR, EXAMPLE_DIR):
        assert providers["cloudinit"]["source"] == "hashicorp/cloudinit"
        assert providers["cloudinit"]["version"].startswith("~> ")


@pytest.mark.parametrize("directory", [TF_DIR, AKS_DIR], ids=["vm", "aks"])
def test_root_modules_have_an_empty_azurerm_backend(directory: Path) -> None:
    backend = single(terraform_settings(directory)["backend"])
    assert backend == {"azurerm": {}}


# --- variables and outputs --------------------------------------------------------------------


@pytest.mark.parametrize("directory", MODULE_DIRS, ids=lambda d: str(d.relative_to(TF_DIR)))
def test_every_variable_has_a_type_and_a_description(directory: Path) -> None:
    variables = blocks(directory, "variable")
    assert variables
    for name, body in variables.items():
        assert body.get("type"), f"{directory.name}: variable {name} has no type"
        assert len(body.get("description", "")) > 10, f"{directory.name}: {name} undescribed"


@pytest.mark.parametrize("directory", MODULE_DIRS, ids=lambda d: str(d.relative_to(TF_DIR)))
def test_every_output_has_a_description(directory: Path) -> None:
    for name, body in blocks(directory, "output").items():
        assert len(body.get("description", "")) > 10, f"{directory.name}: output {name}"


@pytest.mark.parametrize("directory", [TF_DIR, EXAMPLE_DIR], ids=["root", "example"])
def test_runner_registration_token_is_sensitive(directory: Path) -> None:
    token = blocks(directory, "variable")["runner_registration_token"]
    assert token["sensitive"] is True


def test_scale_set_custom_data_is_sensitive() -> None:
    assert blocks(SCALE_SET_DIR, "variable")["custom_data"]["sensitive"] is True


def test_admin_source_cidrs_is_required() -> None:
    assert "default" not in blocks(TF_DIR, "variable")["admin_source_cidrs"]


def test_aks_api_server_ranges_are_required() -> None:
    assert "default" not in blocks(AKS_DIR, "variable")["api_server_authorized_ip_ranges"]


def test_root_module_exposes_the_documented_outputs() -> None:
    outputs = blocks(TF_DIR, "output")
    for name in ("public_ip_address", "fqdn", "service_url", "ssh_command"):
        assert name in outputs
    assert "identity_principal_id" in outputs
    service_url = outputs["service_url"]["value"]
    plain = "http://${azurerm_public_ip.this.ip_address}:${local.service_port}/inference"
    assert (
        service_url
        == f'${{local.tls_enabled ? "https://${{local.tls_domain}}/inference" : "{plain}"}}'
    )
    assert plain in outputs["plain_http_url"]["value"]
    assert local_values(TF_DIR)["service_port"] == SERVICE_PORT
    assert "ssh ${var.admin_username}@" in outputs["ssh_command"]["value"]


def test_aks_module_exposes_registry_and_identity_outputs() -> None:
    outputs = blocks(AKS_DIR, "output")
    for name in (
        "oidc_issuer_url",
        "kubelet_identity_object_id",
        "acr_login_server",
        "cluster_name",
    ):
        assert name in outputs


# --- network security -------------------------------------------------------------------------


def nsg_rules() -> list[dict[str, Any]]:
    """The NSG's static rules (SSH)."""
    rules = resource(TF_DIR, "azurerm_network_security_group.this")["security_rule"]
    return rules if isinstance(rules, list) else [rules]


def public_rule_template() -> dict[str, Any]:
    """The dynamic rule built from local.public_inbound_rules (service, HTTPS, ACME)."""
    dynamic = resource(TF_DIR, "azurerm_network_security_group.this")["dynamic"]
    rule = dynamic["security_rule"]
    assert rule["for_each"] == "${local.public_inbound_rules}"
    return rule["content"]  # type: ignore[no-any-return]


def test_ssh_is_only_open_to_admin_cidrs() -> None:
    ssh_rules = [r for r in nsg_rules() if r["destination_port_range"] == "22"]
    assert len(ssh_rules) == 1
    (rule,) = ssh_rules
    assert rule["access"] == "Allow" and rule["direction"] == "Inbound"
    assert rule["source_address_prefixes"] == "${var.admin_source_cidrs}"
    assert "source_address_prefix" not in rule


def test_public_rules_are_inbound_tcp_to_one_port_from_listed_sources() -> None:
    rule = public_rule_template()
    assert rule["access"] == "Allow" and rule["direction"] == "Inbound"
    assert rule["protocol"] == "Tcp"
    assert rule["destination_port_range"] == "${tostring(security_rule.value.port)}"
    assert rule["source_address_prefixes"] == "${security_rule.value.sources}"
    assert "destination_port_ranges" not in rule and "source_address_prefix" not in rule


def test_nsg_allows_nothing_but_ssh_and_the_public_rules() -> None:
    for rule in nsg_rules():
        assert rule.get("source_address_prefix") not in ("*", "Internet", "0.0.0.0/0", "Any")
        assert "destination_port_ranges" not in rule
        assert rule["destination_port_range"] == "22"
        assert rule["protocol"] == "Tcp"
        assert rule["direction"] == "Inbound"


def test_nsg_is_attached_to_the_subnet() -> None:
    association = resource(TF_DIR, "azurerm_subnet_network_security_group_association.this")
    assert association["subnet_id"] == "${azurerm_subnet.this.id}"
    assert association["network_security_group_id"] == "${azurerm_network_security_group.this.id}"


def test_public_ip_is_static_standard_with_optional_dns_label() -> None:
    public_ip = resource(TF_DIR, "azurerm_public_ip.this")
    assert public_ip["allocation_method"] == "Static"
    assert public_ip["sku"] == "Standard"
    assert public_ip["domain_name_label"] == "${var.dns_label}"


# --- VM and scale set -------------------------------------------------------------------------

VM = "azurerm_linux_virtual_machine.this"
VMSS = "azurerm_linux_virtual_machine_scale_set.this"
MACHINES = [(TF_DIR, VM), (SCALE_SET_DIR, VMSS)]


@pytest.mark.parametrize(("directory", "address"), MACHINES, ids=["vm", "scale-set"])
def test_machines_accept_ssh_keys_only(directory: Path, address: str) -> None:
    machine = resource(directory, address)
    assert machine["disable_password_authentication"] is True
    assert "admin_password" not in machine
    key = single(machine["admin_ssh_key"])
    assert key["username"] == "${var.admin_username}"


@pytest.mark.parametrize(("directory", "address"), MACHINES, ids=["vm", "scale-set"])
def test_machines_have_a_system_assigned_identity(directory: Path, address: str) -> None:
    assert single(resource(directory, address)["identity"])["type"] == "SystemAssigned"


@pytest.mark.parametrize(("directory", "address"), MACHINES, ids=["vm", "scale-set"])
def test_machines_are_hardened(directory: Path, address: str) -> None:
    machine = resource(directory, address)
    assert machine["encryption_at_host_enabled"] == "${var.encryption_at_host_enabled}"
    assert machine["secure_boot_enabled"] == "${var.trusted_launch_enabled}"
    assert machine["vtpm_enabled"] == "${var.trusted_launch_enabled}"
    assert single(machine["boot_diagnostics"]) == {}
    extensions = machine.get(
        "allow_extension_operations", machine.get("extension_operations_enabled")
    )
    assert extensions is False


def test_hardening_switches_default_to_on() -> None:
    variables = blocks(TF_DIR, "variable")
    assert variables["encryption_at_host_enabled"]["default"] is True
    assert variables["trusted_launch_enabled"]["default"] is True


def test_default_image_is_ubuntu_24_04_lts() -> None:
    image = blocks(TF_DIR, "variable")["image"]["default"]
    assert image == {
        "publisher": "Canonical",
        "offer": "ubuntu-24_04-lts",
        "sku": "server",
        "version": "latest",
    }


def test_vm_boots_from_the_rendered_cloud_init() -> None:
    machine = resource(TF_DIR, VM)
    assert machine["custom_data"] == "${data.cloudinit_config.vm.rendered}"
    # A fresh registration token on a later apply must not replace the running host.
    assert machine["lifecycle"]["ignore_changes"] == "${custom_data}"
    for name, mode_vars in (
        ("vm", "cloud_init_vm_vars"),
        ("scale_set", "cloud_init_scale_set_vars"),
    ):
        config = blocks(TF_DIR, "data")[f"cloudinit_config.{name}"]
        assert config["base64_encode"] is True
        part = single(config["part"])
        assert part["content_type"] == "text/cloud-config"
        assert "cloud-init.yaml.tftpl" in part["content"]
        assert f"local.{mode_vars}" in part["content"]
    module = blocks(TF_DIR, "module")["scale_set"]
    assert module["custom_data"] == "${data.cloudinit_config.scale_set.rendered}"


def test_scale_set_sits_behind_a_load_balancer_probing_readyz() -> None:
    probe = resource(SCALE_SET_DIR, "azurerm_lb_probe.readyz")
    assert probe["protocol"] == "Http"
    assert probe["request_path"] == "/readyz"
    assert probe["port"] == "${var.service_port}"
    assert resource(SCALE_SET_DIR, "azurerm_lb.this")["sku"] == "Standard"
    rule = resource(SCALE_SET_DIR, "azurerm_lb_rule.service")
    assert rule["probe_id"] == "${azurerm_lb_probe.readyz.id}"
    scale_set = resource(SCALE_SET_DIR, VMSS)
    assert scale_set["health_probe_id"] == "${azurerm_lb_probe.readyz.id}"
    module = blocks(TF_DIR, "module")["scale_set"]
    assert module["service_port"] == "${local.service_port}"


# --- AKS --------------------------------------------------------------------------------------


def test_aks_enables_workload_identity_and_oidc_issuer() -> None:
    cluster = resource(AKS_DIR, "azurerm_kubernetes_cluster.this")
    assert cluster["oidc_issuer_enabled"] is True
    assert cluster["workload_identity_enabled"] is True
    assert single(cluster["identity"])["type"] == "SystemAssigned"
    assert cluster["local_account_disabled"] is True


def test_aks_node_pools_autoscale() -> None:
    pool = single(resource(AKS_DIR, "azurerm_kubernetes_cluster.this")["default_node_pool"])
    assert pool["auto_scaling_enabled"] is True
    assert pool["min_count"] <= pool["max_count"]
    workload = resource(AKS_DIR, "azurerm_kubernetes_cluster_node_pool.workload")
    assert workload["auto_scaling_enabled"] is True
    assert workload["min_count"] == "${var.node_count_min}"
    assert workload["max_count"] == "${var.node_count_max}"


def test_aks_uses_azure_cni_overlay_with_cilium() -> None:
    network = single(resource(AKS_DIR, "azurerm_kubernetes_cluster.this")["network_profile"])
    assert network["network_plugin"] == "azure"
    assert network["network_plugin_mode"] == "overlay"
    assert network["network_data_plane"] == "cilium"
    assert network["network_policy"] == "cilium"


def test_aks_enables_the_ingress_controller_the_overlays_use() -> None:
    classes = set()
    for path in sorted((REPO_ROOT / "deploy/k8s/overlays").glob("*/ingress.yaml")):
        classes.add(yaml.safe_load(path.read_text())["spec"]["ingressClassName"])
    assert classes == {"webapprouting.kubernetes.azure.com"}
    cluster = resource(AKS_DIR, "azurerm_kubernetes_cluster.this")
    routing = single(cluster["web_app_routing"])
    assert routing["dns_zone_ids"] == "${var.web_app_routing_dns_zone_ids}"
    assert blocks(AKS_DIR, "variable")["web_app_routing_dns_zone_ids"]["default"] == []


def test_kubelet_identity_can_pull_from_the_registry() -> None:
    registry = resource(AKS_DIR, "azurerm_container_registry.this")
    assert registry["admin_enabled"] is False
    assert registry["anonymous_pull_enabled"] is False
    assignment = resource(AKS_DIR, "azurerm_role_assignment.kubelet_acr_pull")
    assert assignment["role_definition_name"] == "AcrPull"
    assert assignment["scope"] == "${azurerm_container_registry.this.id}"
    assert assignment["principal_id"] == (
        "${azurerm_kubernetes_cluster.this.kubelet_identity[0].object_id}"
    )


# --- variable validations, evaluated by terraform ---------------------------------------------


@dataclass(frozen=True)
class Harness:
    """The root module's variables, locals and template without resources: no provider needed."""

    directory: Path
    terraform: str

    def terraform_run(self, *args: str, values: dict[str, Any]) -> subprocess.CompletedProcess[str]:
        var_file = self.directory / "test.tfvars.json"
        var_file.write_text(json.dumps(values))
        command = [self.terraform, *args, "-input=false", "-no-color", "-lock=false"]
        return run([*command, f"-var-file={var_file}"], cwd=self.directory, env=terraform_env())

    def plan(self, **overrides: Any) -> subprocess.CompletedProcess[str]:
        return self.terraform_run("plan", values={**REQUIRED_VARS, **overrides})

    def outputs(self, **overrides: Any) -> dict[str, Any]:
        """Apply (no resources, so nothing but the locals and outputs) and return the outputs."""
        state = self.directory / f"{uuid.uuid4().hex}.tfstate"
        values = {k: v for k, v in {**REQUIRED_VARS, **overrides}.items() if v is not None}
        applied = self.terraform_run("apply", "-auto-approve", f"-state={state}", values=values)
        assert applied.returncode == 0, applied.stderr
        shown = run(
            [self.terraform, "output", "-json", f"-state={state}"],
            cwd=self.directory,
            env=terraform_env(),
        )
        assert shown.returncode == 0, shown.stderr
        return {name: o["value"] for name, o in json.loads(shown.stdout).items()}


@pytest.fixture(scope="module")
def harness(tmp_path_factory: pytest.TempPathFactory) -> Harness:
    terraform = require_tool("terraform")
    directory = tmp_path_factory.mktemp("tf-harness")
    for name in ("variables.tf", "locals.tf", TEMPLATE.name):
        shutil.copy(TF_DIR / name, directory / name)
    outputs = [
        f'output "{name}" {{\n'
        f'  value     = templatefile("${{path.module}}/{TEMPLATE.name}", local.{local})\n'
        "  sensitive = true\n}\n"
        for name, local in (
            ("vm", "cloud_init_vm_vars"),
            ("scale_set", "cloud_init_scale_set_vars"),
        )
    ]
    outputs += [
        'output "inbound_rules" {\n  value = local.public_inbound_rules\n}\n',
        'output "tls_domain" {\n  value = local.tls_domain\n}\n',
    ]
    (directory / "harness.tf").write_text("\n".join(outputs))
    return Harness(directory, terraform)


def test_valid_inputs_pass_every_validation(harness: Harness) -> None:
    result = harness.plan()
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(
    "cidrs",
    [
        ["0.0.0.0/0"],
        ["*"],
        ["Internet"],
        ["Any"],
        ["any"],
        ["::/0"],
        [],
        ["10.0.0.0/4"],
        ["203.0.113.7/32", "0.0.0.0/0"],
        ["203.0.113.7"],
    ],
)
def test_admin_source_cidrs_refuses_open_ranges(harness: Harness, cidrs: list[str]) -> None:
    result = harness.plan(admin_source_cidrs=cidrs)
    assert result.returncode != 0
    assert "admin_source_cidrs" in result.stderr


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("repository_url", "https://github.com/o/r'; rm -rf / #"),
        ("repository_url", "https://gitlab.com/o/r"),
        ("runner_registration_token", "ABCDEFGHIJKLMNOPQRSTU'\nruncmd: [reboot]"),
        ("runner_labels", ["self-hosted", "linux,inference"]),
        ("runner_sha256", "not-a-digest"),
        ("service_source_cidrs", ["Internet"]),
        ("admin_ssh_public_key", "not a key"),
        ("admin_username", "root"),
        ("vm_size", "Standard_D2ps_v5"),
        (
            "image",
            {"publisher": "Debian", "offer": "debian-12", "sku": "12-gen2", "version": "latest"},
        ),
        ("scale_set", {"enabled": True, "instances": 0}),
        ("scale_set", {"enabled": True, "app_ref": "main; reboot"}),
    ],
)
def test_validations_refuse_values_that_would_break_the_host(
    harness: Harness, name: str, value: Any
) -> None:
    result = harness.plan(**{name: value})
    assert result.returncode != 0
    assert name in result.stderr


def test_an_empty_registration_token_is_refused_with_its_name(harness: Harness) -> None:
    result = harness.plan(runner_registration_token="")
    assert result.returncode != 0
    assert "runner_registration_token" in result.stderr


def test_the_single_vm_needs_a_registration_token(harness: Harness) -> None:
    result = harness.plan(runner_registration_token=None)
    assert result.returncode != 0
    assert "runner_registration_token is required for the single VM" in result.stderr


def test_the_scale_set_needs_no_registration_token(harness: Harness) -> None:
    result = harness.plan(runner_registration_token=None, scale_set={"enabled": True})
    assert result.returncode == 0, result.stderr


def _make_tf_plan(
    harness: Harness, tmp_path: Path, env: dict[str, str]
) -> tuple[Path, subprocess.CompletedProcess[str]]:
    """`make tf-plan` (what infra.yml runs) on the harness, variables as infra.yml sets them."""
    directory = tmp_path / uuid.uuid4().hex
    shutil.copytree(
        harness.directory, directory, ignore=shutil.ignore_patterns("*.tfstate*", "*.json")
    )
    tf_vars = {
        f"TF_VAR_{k}": v if isinstance(v, str) else json.dumps(v) for k, v in REQUIRED_VARS.items()
    }
    return directory, run(
        ["make", "--no-print-directory", "tf-plan", f"TF_DIR={directory}"],
        cwd=REPO_ROOT,
        env={**terraform_env(), **tf_vars, **env},
    )


def test_tf_plan_treats_an_unset_workflow_secret_as_no_token(
    harness: Harness, tmp_path: Path
) -> None:
    """infra.yml passes `${{ secrets.RUNNER_REGISTRATION_TOKEN }}`: "" when the secret is unset."""
    scale_set = {"TF_VAR_scale_set": '{"enabled": true}'}
    root, done = _make_tf_plan(
        harness, tmp_path, {"TF_VAR_runner_registration_token": "", **scale_set}
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert (root / "tfplan").is_file()
    _, single = _make_tf_plan(harness, tmp_path, {"TF_VAR_runner_registration_token": ""})
    assert single.returncode != 0
    assert "runner_registration_token is required for the single VM" in single.stderr


def test_infra_workflow_passes_the_token_secret_that_tf_plan_may_drop() -> None:
    env = yaml.safe_load((REPO_ROOT / ".github/workflows/infra.yml").read_text())["env"]
    assert env["TF_VAR_runner_registration_token"] == "${{ secrets.RUNNER_REGISTRATION_TOKEN }}"


@pytest.mark.parametrize(
    ("scale_set", "accepted"),
    [
        ({"enabled": True, "instances": 62}, True),  # 62 x 1024 = 63,488
        ({"enabled": True, "instances": 63}, False),  # 64,512: one instance without egress
        ({"enabled": True, "instances": 100}, False),
        ({"enabled": True, "instances": 100, "outbound_ports_per_instance": 640}, True),
        ({"enabled": True, "instances": 100, "outbound_ports_per_instance": 648}, False),
        ({"enabled": True, "instances": 2, "outbound_ports_per_instance": 1001}, False),
        ({"enabled": True, "instances": 2, "outbound_ports_per_instance": 0}, False),
    ],
)
def test_scale_set_outbound_ports_fit_one_frontend_ip(
    harness: Harness, scale_set: dict[str, Any], accepted: bool
) -> None:
    result = harness.plan(scale_set=scale_set)
    assert (result.returncode == 0) is accepted, result.stderr
    if not accepted:
        assert "scale_set.outbound_ports_per_instance" in result.stderr


def test_scale_set_boots_after_its_outbound_rule_exists() -> None:
    scale_set = resource(SCALE_SET_DIR, VMSS)
    assert "${azurerm_lb_outbound_rule.egress}" in scale_set["depends_on"]
    egress = resource(SCALE_SET_DIR, "azurerm_lb_outbound_rule.egress")
    assert egress["allocated_outbound_ports"] == "${var.outbound_ports_per_instance}"
    assert egress["backend_address_pool_id"] == "${azurerm_lb_backend_address_pool.this.id}"
    module = blocks(TF_DIR, "module")["scale_set"]
    assert module["outbound_ports_per_instance"] == "${var.scale_set.outbound_ports_per_instance}"
    subnet = resource(TF_DIR, "azurerm_subnet.this")
    assert subnet["default_outbound_access_enabled"] is False, (
        "the outbound rule is the only way out"
    )


@pytest.mark.parametrize(
    ("instances", "ports", "holds"), [(62, 1024, True), (63, 1024, False), (125, 512, True)]
)
def test_scale_set_module_precondition_counts_snat_ports(
    tmp_path: Path, instances: int, ports: int, holds: bool
) -> None:
    """The module's own precondition, evaluated by terraform (terraform_data needs no provider)."""
    terraform = require_tool("terraform")
    egress = resource(SCALE_SET_DIR, "azurerm_lb_outbound_rule.egress")
    condition = egress["lifecycle"]["precondition"]["condition"]
    assert condition.startswith("${") and condition.endswith("}")
    (tmp_path / "locals.tf").write_text((SCALE_SET_DIR / "locals.tf").read_text())
    (tmp_path / "check.tf").write_text(
        f'variable "instances" {{\n  default = {instances}\n}}\n'
        f'variable "outbound_ports_per_instance" {{\n  default = {ports}\n}}\n'
        'resource "terraform_data" "egress" {\n  lifecycle {\n    precondition {\n'
        f"      condition     = {condition[2:-1]}\n"
        '      error_message = "too many SNAT ports"\n    }\n  }\n}\n'
    )
    env = terraform_env()
    assert run([terraform, "init", "-input=false"], cwd=tmp_path, env=env).returncode == 0
    result = run([terraform, "plan", "-input=false", "-no-color"], cwd=tmp_path, env=env)
    assert (result.returncode == 0) is holds, result.stdout + result.stderr
    if not holds:
        assert "too many SNAT ports" in result.stderr


def _rules_by_port(harness: Harness, **overrides: Any) -> dict[int, dict[str, Any]]:
    rules = harness.outputs(**overrides)["inbound_rules"]
    return {int(rule["port"]): rule for rule in rules.values()}


def test_default_opens_only_plain_http_on_the_service_port(harness: Harness) -> None:
    rules = _rules_by_port(harness)
    assert set(rules) == {SERVICE_PORT}
    assert rules[SERVICE_PORT]["sources"] == ["0.0.0.0/0"]


def test_tls_opens_https_to_clients_and_port_80_for_acme(harness: Harness) -> None:
    cidrs = ["198.51.100.0/24"]
    rules = _rules_by_port(harness, service_source_cidrs=cidrs, **TLS_VARS)
    assert set(rules) == {SERVICE_PORT, 443, 80}
    assert rules[443]["sources"] == cidrs and rules[SERVICE_PORT]["sources"] == cidrs
    assert rules[80]["sources"] == ["0.0.0.0/0"], "ACME validation comes from anywhere"
    assert len({rule["priority"] for rule in rules.values()}) == 3


def test_plain_http_can_be_closed_when_tls_is_on(harness: Harness) -> None:
    rules = _rules_by_port(harness, plain_http_enabled=False, **TLS_VARS)
    assert set(rules) == {443, 80}


def test_tls_domain_defaults_to_the_public_ip_azure_name(harness: Harness) -> None:
    assert harness.outputs(**TLS_VARS)["tls_domain"] == TLS_DOMAIN
    custom = harness.outputs(tls_domain="inference.example.com", **TLS_VARS)
    assert custom["tls_domain"] == "inference.example.com"
    assert harness.outputs()["tls_domain"] == ""


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"plain_http_enabled": False}, "plain_http_enabled = false closes port 6666"),
        ({"tls_email": "ops@example.com"}, "tls_email needs a name for the certificate"),
        (
            {**TLS_VARS, "scale_set": {"enabled": True}},
            "tls_email turns on HTTPS on the single VM only",
        ),
        ({**TLS_VARS, "tls_email": "not-an-address"}, "tls_email must be an e-mail address"),
        ({**TLS_VARS, "tls_email": "a'b@example.com"}, "tls_email must be an e-mail address"),
        ({**TLS_VARS, "tls_domain": "https://x.example.com"}, "tls_domain must be a lower-case"),
        ({**TLS_VARS, "tls_domain": "*.example.com"}, "tls_domain must be a lower-case"),
    ],
)
def test_tls_settings_that_cannot_work_are_refused(
    harness: Harness, overrides: dict[str, Any], message: str
) -> None:
    result = harness.plan(**overrides)
    assert result.returncode != 0
    assert message in " ".join(result.stderr.split())


# --- cloud-init -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def rendered(harness: Harness) -> dict[str, str]:
    """The cloud-init documents exactly as Terraform renders them for the VM and the scale set."""
    values = harness.outputs()
    return {name: values[name] for name in ("vm", "scale_set")}


@pytest.fixture(scope="module")
def rendered_tls(harness: Harness) -> str:
    """The VM's cloud-init with HTTPS on (tls_email and dns_label set)."""
    return str(harness.outputs(**TLS_VARS)["vm"])


MODES = ["vm", "scale_set"]


def parsed(text: str) -> dict[str, Any]:
    document = yaml.safe_load(text)
    assert isinstance(document, dict)
    return document


def written_file(document: dict[str, Any], path: str) -> dict[str, Any]:
    (entry,) = [f for f in document["write_files"] if f["path"] == path]
    return entry  # type: ignore[no-any-return]


@pytest.mark.parametrize("mode", MODES)
def test_cloud_init_is_valid_yaml_cloud_config(rendered: dict[str, str], mode: str) -> None:
    text = rendered[mode]
    assert text.startswith("#cloud-config\n")
    document = parsed(text)
    assert "${" not in text, "an unescaped template expression leaked into the output"
    assert document["ssh_pwauth"] is False


@pytest.mark.parametrize("mode", MODES)
def test_cloud_init_passes_the_cloud_init_schema(
    rendered: dict[str, str], mode: str, tmp_path: Path
) -> None:
    cloud_init = require_tool("cloud-init")
    config = tmp_path / "user-data.yaml"
    config.write_text(rendered[mode])
    result = run([cloud_init, "schema", "--config-file", str(config)])
    assert result.returncode == 0, result.stdout + result.stderr


def test_cloud_init_installs_the_deploy_host_packages(rendered: dict[str, str]) -> None:
    packages = set(parsed(rendered["vm"])["packages"])
    expected = {"docker.io", "nginx", "git", "make", "curl", "python3", "python3-venv", "jq"}
    assert expected <= packages


def shell_scripts(document: dict[str, Any]) -> dict[str, str]:
    """The bootstrap script, and runcmd written out as cloud-init runs it (a /bin/sh script)."""
    runcmd = ["#!/bin/sh"]
    for command in document["runcmd"]:
        runcmd.append(command if isinstance(command, str) else shlex.join(command))
    return {
        "bootstrap": written_file(document, BOOTSTRAP_PATH)["content"],
        "runcmd": "\n".join(runcmd) + "\n",
    }


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("script", ["bootstrap", "runcmd"])
def test_cloud_init_shell_scripts_pass_bash_n_and_shellcheck(
    rendered: dict[str, str], mode: str, script: str, tmp_path: Path
) -> None:
    text = shell_scripts(parsed(rendered[mode]))[script]
    path = tmp_path / f"{script}.sh"
    path.write_text(text)
    syntax = run([require_tool("bash"), "-n", str(path)])
    assert syntax.returncode == 0, syntax.stderr
    lint = run([require_tool("shellcheck"), "--severity=style", str(path)])
    assert lint.returncode == 0, lint.stdout


def test_runcmd_runs_the_bootstrap_script(rendered: dict[str, str]) -> None:
    document = parsed(rendered["vm"])
    assert document["runcmd"] == [[BOOTSTRAP_PATH]]
    assert written_file(document, BOOTSTRAP_PATH)["permissions"] == "0700"


def test_runner_is_pinned_verified_and_registered_unattended(rendered: dict[str, str]) -> None:
    script = shell_scripts(parsed(rendered["vm"]))["bootstrap"]
    defaults = blocks(TF_DIR, "variable")
    assert f"readonly RUNNER_VERSION='{defaults['runner_version']['default']}'" in script
    assert f"readonly RUNNER_SHA256='{defaults['runner_sha256']['default']}'" in script
    assert "readonly RUNNER_LABELS='self-hosted,linux,inference'" in script
    assert "actions-runner-linux-x64-$RUNNER_VERSION.tar.gz" in script
    assert "sha256sum --check --strict --quiet -" in script
    assert 'as_deploy ./config.sh --unattended --url "$REPOSITORY_URL" --token' in script
    assert "--replace" in script
    assert './svc.sh install "$DEPLOY_USER"' in script and "./svc.sh start" in script
    assert "readonly BOOTSTRAP_MODE='runner'" in script


def test_scale_set_instances_build_from_source_without_a_token(rendered: dict[str, str]) -> None:
    text = rendered["scale_set"]
    assert SAMPLE_TOKEN not in text
    script = shell_scripts(parsed(text))["bootstrap"]
    assert "readonly BOOTSTRAP_MODE='pull'" in script
    assert "readonly APP_REF='main'" in script
    assert 'make -C "$APP_DIR" host-install image deploy-local' in script


def _bootstrap_in_a_sandbox(script: str, tmp_path: Path, failing: str) -> Path:
    """The rendered bootstrap with its token file moved under tmp_path and one step made to fail.

    Everything else it would do needs root and a VM (tests/e2e/test_cloud_init.py boots it); this
    runs only its own control flow: the functions as rendered, `main`, `set -e` and the traps.
    """
    token = tmp_path / "runner-token"
    token.write_text(SAMPLE_TOKEN + "\n")
    body = script.replace(TOKEN_PATH, str(token))
    assert body.rstrip().endswith('main "$@"')
    body = body.rstrip()[: -len('main "$@"')]
    stubs = {name: "return 0" for name in ("prepare_host", "register_runner", "enable_tls")}
    stubs[failing] = f'echo "{failing} failed" >&2; return 1'
    body += "".join(f"{name}() {{ {stub}; }}\n" for name, stub in stubs.items()) + "main\n"
    (tmp_path / "bootstrap.sh").write_text(body)
    return token


@pytest.mark.parametrize("failing", ["prepare_host", "register_runner"])
def test_a_failed_bootstrap_still_shreds_the_registration_token(
    rendered: dict[str, str], tmp_path: Path, failing: str
) -> None:
    script = written_file(parsed(rendered["vm"]), BOOTSTRAP_PATH)["content"]
    token = _bootstrap_in_a_sandbox(script, tmp_path, failing)
    done = run([require_tool("bash"), str(tmp_path / "bootstrap.sh")])
    assert done.returncode != 0, "the failure must still fail cloud-init's runcmd"
    assert f"{failing} failed" in done.stderr
    assert not token.exists(), "the token survived a failed bootstrap"


def test_the_token_is_gone_before_the_https_step_runs(rendered_tls: str, tmp_path: Path) -> None:
    script = written_file(parsed(rendered_tls), BOOTSTRAP_PATH)["content"]
    token = _bootstrap_in_a_sandbox(script, tmp_path, "enable_tls")
    done = run([require_tool("bash"), str(tmp_path / "bootstrap.sh")])
    assert done.returncode != 0 and "enable_tls failed" in done.stderr
    assert not token.exists()


def test_runner_env_is_written_before_the_runner_is_downloaded(rendered: dict[str, str]) -> None:
    script = written_file(parsed(rendered["vm"]), BOOTSTRAP_PATH)["content"]
    register = script[script.index("register_runner() {") :]
    env_write = register.index('as_deploy tee -a "$RUNNER_DIR/.env"')
    assert env_write < register.index("curl ") < register.index("./config.sh")
    assert 'grep -qxF "$DEPLOY_ENV" "$RUNNER_DIR/.env"' in register, "written once, not per run"


def test_https_is_off_by_default(rendered: dict[str, str]) -> None:
    document = parsed(rendered["vm"])
    assert "certbot" not in document["packages"]
    script = written_file(document, BOOTSTRAP_PATH)["content"]
    assert "readonly TLS_DOMAIN=''" in script


def test_https_installs_certbot_and_runs_deploy_tls_for_the_domain(rendered_tls: str) -> None:
    document = parsed(rendered_tls)
    assert "certbot" in document["packages"]
    script = written_file(document, BOOTSTRAP_PATH)["content"]
    assert f"readonly TLS_DOMAIN='{TLS_DOMAIN}'" in script
    assert f"readonly TLS_EMAIL='{TLS_VARS['tls_email']}'" in script
    call = 'inference-service" deploy tls --domain "$TLS_DOMAIN" --email "$TLS_EMAIL"'
    assert call in script
    main = script[script.index("main() {") :]
    # After the host is prepared and the runner registered: a failed certificate never costs the
    # one-hour registration token.
    assert main.index("register_runner") < main.index("shred_token") < main.index("enable_tls")


def test_https_cloud_init_passes_the_schema_and_shellcheck(
    rendered_tls: str, tmp_path: Path
) -> None:
    config = tmp_path / "user-data.yaml"
    config.write_text(rendered_tls)
    schema = run([require_tool("cloud-init"), "schema", "--config-file", str(config)])
    assert schema.returncode == 0, schema.stdout + schema.stderr
    script = tmp_path / "bootstrap.sh"
    script.write_text(written_file(parsed(rendered_tls), BOOTSTRAP_PATH)["content"])
    lint = run([require_tool("shellcheck"), "--severity=style", str(script)])
    assert lint.returncode == 0, lint.stdout


def test_registration_token_only_lands_in_a_root_only_file(rendered: dict[str, str]) -> None:
    document = parsed(rendered["vm"])
    token_file = written_file(document, TOKEN_PATH)
    assert token_file["content"].strip() == SAMPLE_TOKEN
    assert token_file["permissions"] == "0600" and token_file["owner"] == "root:root"
    others = [f for f in document["write_files"] if f["path"] != TOKEN_PATH]
    assert all(SAMPLE_TOKEN not in f["content"] for f in others)
    assert 'shred -u "$TOKEN_FILE"' in written_file(document, BOOTSTRAP_PATH)["content"]


def test_deploy_user_gets_docker_state_dir_and_the_proxy_conf(rendered: dict[str, str]) -> None:
    script = shell_scripts(parsed(rendered["vm"]))["bootstrap"]
    assert 'usermod --append --groups docker "$DEPLOY_USER"' in script
    assert "readonly STATE_DIR=/var/lib/inference-service" in script
    assert 'install -d -o "$DEPLOY_USER" -g "$DEPLOY_USER" -m 0750 "$STATE_DIR"' in script
    assert f"readonly NGINX_CONF={NGINX_CONF_PATH}" in script
    assert 'chown "$DEPLOY_USER:$DEPLOY_USER" "$NGINX_CONF"' in script
    assert "rm -f /etc/nginx/sites-enabled/default" in script
    assert "systemctl enable --now docker.service nginx.service" in script


def test_sudoers_drop_in_is_valid_and_only_allows_nginx(
    rendered: dict[str, str], tmp_path: Path
) -> None:
    entry = written_file(parsed(rendered["vm"]), SUDOERS_PATH)
    assert entry["permissions"] == "0440"
    path = tmp_path / "sudoers"
    path.write_text(entry["content"])
    path.chmod(0o440)
    result = run([require_tool("visudo"), "-c", "-f", str(path)])
    assert result.returncode == 0, result.stdout + result.stderr
    rules = [line for line in entry["content"].splitlines() if line and not line.startswith("#")]
    assert len(rules) == 1
    user, _, commands = rules[0].partition(" ALL=(root) NOPASSWD: ")
    assert user == "deploy"
    for command in commands.split(", "):
        assert command.startswith("/usr/sbin/nginx "), command


def test_deploy_tool_runs_nginx_through_the_sudoers_rule(rendered: dict[str, str]) -> None:
    script = shell_scripts(parsed(rendered["vm"]))["bootstrap"]
    assert "readonly DEPLOY_ENV='INFERENCE_NGINX=sudo -n /usr/sbin/nginx'" in script
    assert 'echo "$DEPLOY_ENV" | as_deploy tee -a "$RUNNER_DIR/.env"' in script
    assert 'as_deploy env "$DEPLOY_ENV" make -C "$APP_DIR" host-install' in script
    content = written_file(parsed(rendered["vm"]), SUDOERS_PATH)["content"]
    rule = next(line for line in content.splitlines() if line.startswith("deploy "))
    allowed = rule.partition("NOPASSWD: ")[2].split(", ")
    # Every way the deploy tool calls nginx: start, test, reload.
    for args in ('""', "-t", "-s reload"):
        assert f"/usr/sbin/nginx {args}" in allowed


def test_placeholder_proxy_conf_answers_503_json_on_the_service_port(
    rendered: dict[str, str], tmp_path: Path
) -> None:
    conf = written_file(parsed(rendered["vm"]), NGINX_CONF_PATH)["content"]
    assert f"listen {SERVICE_PORT} default_server;" in conf
    assert 'return 503 \'{"error":' in conf
    assert "default_type application/json;" in conf
    nginx = require_tool("nginx")
    (tmp_path / "placeholder.conf").write_text(conf)
    main_conf = tmp_path / "nginx.conf"
    main_conf.write_text(
        f"pid {tmp_path}/nginx.pid;\nerror_log stderr;\nevents {{}}\n"
        f"http {{ include {tmp_path}/placeholder.conf; }}\n"
    )
    result = run([nginx, "-t", "-q", "-e", "stderr", "-p", str(tmp_path), "-c", str(main_conf)])
    assert result.returncode == 0, result.stderr


# --- the documented roles ---------------------------------------------------------------------


def documented_roles() -> list[dict[str, str]]:
    """Rows of the roles table in docs/delivery.md (Identity, Role, Scope, Why)."""
    text = (REPO_ROOT / "docs/delivery.md").read_text()
    lines = [line for line in text.splitlines() if line.startswith("| ")]
    header_at = next(i for i, line in enumerate(lines) if line.startswith("| Identity | Role |"))
    header = [cell.strip() for cell in lines[header_at].strip("|").split("|")]
    rows = []
    for line in lines[header_at + 2 :]:
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        if len(cells) != len(header):
            break
        rows.append(dict(zip(header, cells, strict=True)))
    return rows


def provider_registers_resource_providers(directory: Path) -> bool:
    provider = single(blocks(directory, "provider")["azurerm"])
    return provider.get("resource_provider_registrations", "legacy") != "none"


def test_the_documented_terraform_role_scope_can_apply_the_plan() -> None:
    roots = [TF_DIR, AKS_DIR]
    needs_subscription = any(
        "azurerm_resource_group.this" in blocks(d, "resource")
        or provider_registers_resource_providers(d)
        for d in roots
    )
    rows = [r for r in documented_roles() if r["Identity"] == "`infra.yml`"]
    contributor = [r for r in rows if r["Role"] == "Contributor"]
    assert len(contributor) == 1, rows
    assert (contributor[0]["Scope"] == "subscription") is needs_subscription
    text = (REPO_ROOT / "docs/delivery.md").read_text()
    assert ("Contributor on the resource group" in text) is not needs_subscription


def test_the_documented_roles_cover_the_role_assignments_terraform_creates() -> None:
    assigns = any(
        address.startswith("azurerm_role_assignment.")
        for d in (TF_DIR, AKS_DIR)
        for address in blocks(d, "resource")
    )
    rows = [r for r in documented_roles() if r["Identity"] == "`infra.yml`"]
    can_assign = [
        r
        for r in rows
        if "Role Based Access Control Administrator" in r["Role"]
        or "User Access Administrator" in r["Role"]
    ]
    assert bool(can_assign) is assigns
