"""Alert rules and the Grafana dashboard: promtool's own tests, the Kubernetes copy, and every
metric they name is one the service (or, for canaries, the deploy tool) exports."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from flask.testing import FlaskClient
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import ROOT, require_tool

MONITORING = ROOT / "deploy/monitoring"
RULES = MONITORING / "alerts.yml"
DASHBOARD = MONITORING / "grafana-dashboard.json"
PROMETHEUS_RULE = ROOT / "deploy/k8s/components/servicemonitor/prometheusrule.yaml"
RUNBOOK = ROOT / "docs/monitoring.md"
# Series Prometheus makes itself.
PROMETHEUS_SERIES = {"up"}


def _canary_series() -> set[str]:
    """What the deploy tool serves at /_proxy/metrics (not the service), read from its output."""
    from prometheus_client.parser import text_string_to_metric_families

    from inference_service.deploy import proxy
    from inference_service.deploy.settings import DeploySettings

    routing = {"stable": "a", "canary": "b", "canary_percent": 10}
    text = proxy.canary_metrics(DeploySettings(proxy_dir=Path("/nonexistent")), routing)
    return {s.name for family in text_string_to_metric_families(text) for s in family.samples}


CANARY_SERIES = _canary_series()
SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "gauge": ("",),
    "summary": ("", "_sum", "_count", "_created"),
}
PROMQL_WORDS = {
    "and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right",
    "bool", "offset", "inf", "nan",
}  # fmt: skip


def rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def dashboard_exprs() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    exprs += [v["query"]["query"] for v in dashboard["templating"]["list"] if v["type"] == "query"]
    return exprs


def series_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects (Grafana variables allowed)."""
    s = expr.replace("label_values(", "(")
    s = re.sub(r'"(?:[^"\\]|\\.)*"', '""', s)
    s = re.sub(r"\{[^}]*\}", " ", s)
    s = re.sub(r"\[[^\]]*\]", " ", s)
    s = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", s)
    s = re.sub(r",\s*[a-z_]+\s*\)", ")", s)  # the label argument of label_values
    names = set()
    for match in re.finditer(r"(?<![\w$.])[A-Za-z_:][A-Za-z0-9_:]*", s):
        word = match.group(0)
        if s[match.end() :].lstrip().startswith("(") or word in PROMQL_WORDS:
            continue  # a function or aggregation, or a keyword
        names.add(word)
    return names


@pytest.fixture
def exported(client: FlaskClient) -> set[str]:
    """Every series name the service's /metrics can hold, from the live exposition."""
    text = client.get("/metrics").get_data(as_text=True)
    return {
        family.name + suffix
        for family in text_string_to_metric_families(text)
        for suffix in SUFFIXES[family.type]
    }


def test_series_names_are_found_in_promql() -> None:
    expr = (
        'sum by (le) (rate(a_bucket{job="$job", x=~"y|z"}[$__rate_interval])) / ignoring (l) '
        "group_left b_total unless on (i) max(c) > bool 0.25"
    )
    assert series_names(expr) == {"a_bucket", "b_total", "c"}
    assert series_names('label_values(d_total{job="$job"}, model)') == {"d_total"}


def test_every_series_in_the_rules_and_dashboard_is_exported(exported: set[str]) -> None:
    assert {"inference_drift_bin_total", "inference_drift_psi"} <= exported
    referenced = {name for rule in rules() for name in series_names(rule["expr"])}
    assert referenced >= {"inference_drift_psi", "inference_model_reloads_total", "up"}
    unknown = referenced - exported - PROMETHEUS_SERIES
    assert unknown == set(), f"the alert rules name series nobody exports: {unknown}"
    in_dashboard = {name for expr in dashboard_exprs() for name in series_names(expr)}
    assert CANARY_SERIES <= in_dashboard
    unknown = in_dashboard - exported - PROMETHEUS_SERIES - CANARY_SERIES
    assert unknown == set(), f"the dashboard names series nobody exports: {unknown}"
    runbook = RUNBOOK.read_text()
    assert all(f"`{name}`" in runbook for name in CANARY_SERIES), "document the canary series"


def test_reload_counters_start_at_zero_so_the_first_refusal_is_an_increase(
    client: FlaskClient,
) -> None:
    text = client.get("/metrics").get_data(as_text=True)
    assert 'inference_model_reloads_total{model="iris",result="refused"} 0.0' in text


def test_promtool_accepts_the_rules_and_their_unit_tests_pass() -> None:
    promtool = require_tool("promtool")
    checked = subprocess.run(
        [promtool, "check", "rules", str(RULES)], capture_output=True, text=True, timeout=60
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    tested = subprocess.run(
        [promtool, "test", "rules", "alerts_test.yml"],
        cwd=MONITORING,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "SUCCESS" in tested.stdout


def test_every_alert_has_a_unit_test_a_severity_and_a_runbook_section() -> None:
    tests = yaml.safe_load((MONITORING / "alerts_test.yml").read_text())["tests"]
    tested = {case["alertname"] for t in tests for case in t["alert_rule_test"]}
    fired = {
        case["alertname"] for t in tests for case in t["alert_rule_test"] if case["exp_alerts"]
    }
    runbook = RUNBOOK.read_text()
    names = [rule["alert"] for rule in rules()]
    assert len(names) == len(set(names))
    for rule in rules():
        name = rule["alert"]
        assert name in tested and name in fired, f"{name} has no promtool test that fires it"
        assert rule["labels"]["severity"] in ("page", "warning")
        anchor = rule["annotations"]["runbook"].partition("#")[2]
        assert anchor == name.lower()
        assert f"### {name}\n" in runbook, f"docs/monitoring.md has no section for {name}"


def test_the_kubernetes_prometheus_rule_is_generated_from_the_rules_file() -> None:
    from scripts.prometheusrule import render

    assert PROMETHEUS_RULE.read_text() == render(RULES.read_text()), (
        "deploy/k8s/components/servicemonitor/prometheusrule.yaml is stale: "
        "run `make monitoring-rules`"
    )
    manifest = yaml.safe_load(PROMETHEUS_RULE.read_text())
    assert manifest["kind"] == "PrometheusRule"
    assert manifest["spec"]["groups"] == yaml.safe_load(RULES.read_text())["groups"]
    component = yaml.safe_load(PROMETHEUS_RULE.with_name("kustomization.yaml").read_text())
    assert PROMETHEUS_RULE.name in component["resources"]


def test_the_dashboard_is_well_formed() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    panels = dashboard["panels"]
    assert len({p["id"] for p in panels}) == len(panels)
    titles = {p["title"] for p in panels}
    for wanted in (
        "Requests by endpoint and status",
        "Errors by status",
        "Inference latency quantiles",
        "Predictions by label",
        "Drift per feature (PSI)",
        "Model versions being served",
        "Model reloads",
        "Canary traffic weight",
    ):
        assert wanted in titles
    variables = {v["name"] for v in dashboard["templating"]["list"]}
    assert variables == {"datasource", "job", "model"}
    for panel in panels:
        grid = panel["gridPos"]
        assert 0 <= grid["x"] and grid["x"] + grid["w"] <= 24
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            selectors = re.findall(r"\{([^}]*)\}", target["expr"])
            if not series_names(target["expr"]) & CANARY_SERIES:
                assert selectors and all('job="$job"' in s for s in selectors), target["expr"]
