#!/usr/bin/env bash
# `make bench`: benchmark the service against the original design and other WSGI servers.
# Arguments go to bench/bench.py (--only, --duration, --warmup, --connections, --spawns, --publish).
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v wrk >/dev/null; then
  echo "installing wrk (apt)" >&2
  sudo_=""; [ "$(id -u)" -eq 0 ] || sudo_="sudo -n"
  $sudo_ apt-get update -qq && $sudo_ apt-get install -y -qq wrk >/dev/null
fi
command -v taskset >/dev/null || echo "taskset missing: server and wrk will share cores" >&2

PY=.venv/bin/python
if [ ! -x "$PY" ] || ! "$PY" -c 'import sklearn, pandas, matplotlib, gunicorn' 2>/dev/null; then
  uv sync --frozen --all-extras
fi
MODEL_DIR="${INFERENCE_MODEL_DIR:-models}"
.venv/bin/inference-service train --all --if-missing --model-dir "$MODEL_DIR"

exec "$PY" bench/bench.py "$@"
