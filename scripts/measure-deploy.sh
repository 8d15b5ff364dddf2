#!/usr/bin/env bash
# Measure the figures docs/deploy.md quotes: image size, cold and warm build time, deploy duration,
# failed requests during the zero-downtime test, and how fast a broken release is refused.
# COLD=1 also times a build without the layer cache (downloads every wheel again).
set -euo pipefail
cd "$(dirname "$0")/.."
image="inference-service:measure"
if [[ "${COLD:-0}" == 1 ]]; then
    start=$SECONDS
    NO_CACHE=1 scripts/build-image.sh "$image" >/dev/null
    echo "cold build (no layer cache): $((SECONDS - start)) s"
fi
start=$SECONDS
scripts/build-image.sh "$image" >/dev/null
echo "warm build (nothing changed): $((SECONDS - start)) s"
echo "image size: $(($(docker image inspect -f '{{.Size}}' "$image") / 1000000)) MB"
docker rmi "$image" >/dev/null
figures="$(mktemp)"
trap 'rm -f "$figures"' EXIT
E2E_FIGURES_FILE="$figures" .venv/bin/pytest -q -p no:cacheprovider tests/e2e/test_deploy.py
cat "$figures"
