"""Write the Kubernetes PrometheusRule from deploy/monitoring/alerts.yml, the rules' one source.

    .venv/bin/python scripts/prometheusrule.py      (make monitoring-rules)

tests/test_alerts.py fails when the committed PrometheusRule differs from what this writes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
RULES = ROOT / "deploy/monitoring/alerts.yml"
TARGET = ROOT / "deploy/k8s/components/servicemonitor/prometheusrule.yaml"
HEADER = """\
# Generated from deploy/monitoring/alerts.yml by `make monitoring-rules`; do not edit by hand.
"""


def render(rules_text: str) -> str:
    """The PrometheusRule manifest holding exactly the groups of the rules file."""
    rules: dict[str, Any] = yaml.safe_load(rules_text)
    manifest = {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {
            "name": "inference-service",
            "labels": {"app.kubernetes.io/name": "inference-service"},
        },
        "spec": {"groups": rules["groups"]},
    }
    return HEADER + yaml.safe_dump(manifest, sort_keys=False, width=1000)


def main() -> None:
    TARGET.write_text(render(RULES.read_text()))


if __name__ == "__main__":
    main()
