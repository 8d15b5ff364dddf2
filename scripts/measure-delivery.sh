#!/usr/bin/env bash
# Measure the figures docs/delivery.md quotes for the delivery e2e tests: deploy.yml under act
# (green, and red with the rollback step) and the VM's first boot under cloud-init.
# Run it under `flock /tmp/heavy.lock` on a shared machine: it builds images and boots containers.
set -euo pipefail
cd "$(dirname "$0")/.."
figures="$(mktemp)"
trap 'rm -f "$figures"' EXIT
E2E_FIGURES_FILE="$figures" .venv/bin/pytest -q -p no:cacheprovider \
    tests/e2e/test_act.py tests/e2e/test_cloud_init.py
cat "$figures"
