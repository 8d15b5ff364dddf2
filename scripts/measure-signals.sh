#!/usr/bin/env bash
# What SIGHUP and SIGTERM under load cost clients of `inference-service serve` (2 workers) that
# keep their connections alive: RUNS runs of wrk -c16 for 6 s posting BODY (default: 1,000 iris
# records) to 127.0.0.1:PORT; SIGHUP 1 s in, SIGTERM 4 s in. Prints wrk's socket errors and
# non-2xx answers and how long the server took to exit after SIGTERM, per run. Bounded: each run
# ends within 30 s; the server's process group is ended by PID.
#
#   scripts/measure-signals.sh [RUNS] [PORT]        (BODY=file.json to choose the body)
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-20}
port=${2:-18780}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

body=${BODY:-$work/body.json}
[[ -n "${BODY:-}" ]] || .venv/bin/python - "$body" <<'EOF'
import json, random, sys
rng = random.Random(7)
rows = [{str(i): round(rng.uniform(0.1, 7.9), 1) for i in range(4)} for _ in range(1000)]
open(sys.argv[1], "w").write(json.dumps(rows))
EOF
cat >"$work/post.lua" <<EOF
wrk.method = "POST"
local f = assert(io.open("$body", "rb")); wrk.body = f:read("*a"); f:close()
wrk.headers["Content-Type"] = "application/json"
EOF

for run in $(seq "$runs"); do
    INFERENCE_PORT=$port INFERENCE_WORKERS=2 INFERENCE_ACCESS_LOG=false INFERENCE_DRAIN_SECONDS=10 \
        setsid .venv/bin/inference-service serve >"$work/server-$run.log" 2>&1 &
    server=$!
    for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/ready" >/dev/null && break; sleep 0.2; done
    (
        sleep 1
        kill -HUP "$server"
        sleep 3
        start=$(date +%s.%N)
        kill -TERM "$server"
        for _ in $(seq 600); do kill -0 "$server" 2>/dev/null || break; sleep 0.05; done
        printf 'run %d: exit %.1f s after SIGTERM' "$run" "$(echo "$(date +%s.%N) - $start" | bc)"
    ) >"$work/exit-$run.txt" &
    watcher=$!
    errors=$(timeout 30 wrk -t1 -c16 -d6s -s "$work/post.lua" "http://127.0.0.1:$port/inference" \
        | grep -E "Socket errors|Non-2xx" | tr -s ' ' | paste -sd ';' || true)
    wait "$watcher" || true
    kill -- -"$server" 2>/dev/null || true
    wait "$server" 2>/dev/null || true
    killed=$(grep -c "refused to gracefully stop" "$work/server-$run.log" || true)
    echo "$(cat "$work/exit-$run.txt"), old workers killed: $killed, ${errors:-no socket errors}"
done
