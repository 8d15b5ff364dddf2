#!/usr/bin/env bash
# Measure what TLS costs per request through nginx: wrk over HTTPS and over plain HTTP to the
# same nginx and `inference-service serve`, with keep-alive and with a new connection per
# request (a full handshake each time). The certificate comes from Pebble through
# `deploy tls`, as in tests/e2e/test_acme.py. RUN_SECONDS (default 10) bounds each wrk run.
set -euo pipefail
cd "$(dirname "$0")/.."
figures="$(mktemp)"
trap 'rm -f "$figures"' EXIT
TLS_MEASURE_SECONDS="${RUN_SECONDS:-10}" E2E_FIGURES_FILE="$figures" \
    .venv/bin/pytest -q -p no:cacheprovider tests/e2e/test_acme.py -k measure
cat "$figures"
