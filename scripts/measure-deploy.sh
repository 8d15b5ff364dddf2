#!/usr/bin/env bash
# Measure the figures docs/deploy.md quotes: image size, cold and warm build time, the deploy and
# canary figures the e2e tests record, zero downtime under wrk through repeated redeploys, and
# what the proxy costs per request against the container served directly.
# COLD=1 also times a build without the layer cache (downloads every wheel again).
# Run it alone on the machine (flock /tmp/heavy.lock scripts/measure-deploy.sh): timings are shared.
set -euo pipefail
cd "$(dirname "$0")/.."
image="inference-service:measure"
cli=.venv/bin/inference-service
seconds="${MEASURE_SECONDS:-10}"
root="$(mktemp -d /tmp/isvc-measure-XXXX)"
figures="$(mktemp)"
prefix="isvc-measure-$$"
cleanup() {
    [[ -f "$root/nginx.pid" ]] && nginx -p "$root" -c "$root/nginx.conf" -s quit 2>/dev/null || true
    docker ps -aq --filter "label=io.inference-service.deploy=$prefix" | xargs -r docker rm -f >/dev/null
    [[ -n "${direct:-}" ]] && docker rm -f "$direct" >/dev/null 2>&1 || true
    docker rmi "$image" >/dev/null 2>&1 || true
    rm -rf "$root" "$figures"
}
trap cleanup EXIT

if [[ "${COLD:-0}" == 1 ]]; then
    start=$SECONDS
    NO_CACHE=1 scripts/build-image.sh "$image" >/dev/null
    echo "cold build (no layer cache): $((SECONDS - start)) s"
fi
start=$SECONDS
scripts/build-image.sh "$image" >/dev/null
echo "warm build (nothing changed): $((SECONDS - start)) s"
echo "image size: $(($(docker image inspect -f '{{.Size}}' "$image") / 1000000)) MB"

if [[ "${MEASURE_E2E:-1}" == 1 ]]; then  # MEASURE_E2E=0: only the wrk figures below
    E2E_FIGURES_FILE="$figures" .venv/bin/pytest -q -p no:cacheprovider tests/e2e/test_deploy.py
    cat "$figures"
fi

# A private nginx and routing directory, as the e2e tests use.
chmod 755 "$root"
mkdir -p "$root"/{conf.d,tmp,state,logs}
cat >"$root/nginx.conf" <<CONF
worker_processes 2;
pid $root/nginx.pid;
error_log $root/error.log warn;
events { worker_connections 1024; }
http {
    client_body_temp_path $root/tmp/body;
    proxy_temp_path $root/tmp/proxy;
    fastcgi_temp_path $root/tmp/fastcgi;
    uwsgi_temp_path $root/tmp/uwsgi;
    scgi_temp_path $root/tmp/scgi;
    include $root/conf.d/*.conf;
}
CONF
port="$(.venv/bin/python -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
export INFERENCE_PROXY_PORT="$port" INFERENCE_PROXY_CONF="$root/conf.d/inference-service.conf"
export INFERENCE_PROXY_DIR="$root/proxy" INFERENCE_PROXY_ACCESS_LOG="$root/logs/access.log"
export INFERENCE_DEPLOY_STATE_DIR="$root/state" INFERENCE_CONTAINER_PREFIX="$prefix"
export INFERENCE_NGINX="nginx -p $root -c $root/nginx.conf"
$cli deploy install 2>/dev/null
$cli deploy up "$image" 2>/dev/null

.venv/bin/python -c 'import json; from inference_service.smoke import ORIGINAL_PAYLOAD as p; print(json.dumps(p))' >"$root/body.json"
# The answer the deployed image gives: ask the live release itself, once, before the load.
curl -sf -X POST -H 'Content-Type: application/json' --data-binary @"$root/body.json" \
    "http://127.0.0.1:$port/inference" \
    | .venv/bin/python -c 'import json, sys; print(json.dumps(json.load(sys.stdin)["predictions"], separators=(",", ":")), end="")' \
    >"$root/expect.txt"
bench() {  # URL SECONDS -> the BENCH line of bench/post.lua (requests, errors, non-2xx, latency)
    BENCH_BODY="$root/body.json" BENCH_EXPECT="$root/expect.txt" \
        wrk -t2 -c8 -d"$2"s --timeout 10s -s bench/post.lua "$1/inference" | sed -n 's/^BENCH //p'
}

# Zero downtime as a client sees it: wrk -c8 (keep-alive) through three redeploys.
bench "http://127.0.0.1:$port" 40 >"$root/redeploys.json" &
load=$!
sleep 3
for i in 1 2 3; do
    start=$(date +%s%N)
    $cli deploy up "$image" 2>/dev/null
    echo "redeploy $i under wrk -c8: $((($(date +%s%N) - start) / 1000000)) ms"
    sleep 4
done
wait "$load"
echo "wrk -t2 -c8 -d40s through 3 redeploys (status = non-2xx, connect/read/write = socket errors):"
cat "$root/redeploys.json"

# The proxy's cost per request: through nginx (6666 -> release socket) against the same image
# served directly on a loopback TCP port (host network, so no docker-proxy in between).
direct_port="$(.venv/bin/python -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
direct="$(docker run -d --rm --network host --read-only --tmpfs /tmp \
    -e INFERENCE_HOST=127.0.0.1 -e INFERENCE_PORT="$direct_port" "$image")"
for _ in $(seq 60); do
    curl -sf "http://127.0.0.1:$direct_port/readyz" >/dev/null && break
    sleep 0.5
done
# The previous design for comparison: the same nginx with a pooled keep-alive TCP upstream.
pooled_port="$(.venv/bin/python -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
cat >"$root/conf.d/pooled.conf" <<CONF
upstream measure_pooled { server 127.0.0.1:$direct_port; keepalive 32; }
server {
    listen 127.0.0.1:$pooled_port;
    access_log $root/logs/pooled.log inference_service_json;
    location / {
        proxy_pass http://measure_pooled;
        proxy_http_version 1.1;
        proxy_set_header Connection "";
        proxy_set_header X-Request-ID \$request_id;
    }
}
CONF
nginx -p "$root" -c "$root/nginx.conf" -s reload
sleep 2
for round in 1 2; do
    echo "round $round, wrk -t2 -c8 for ${seconds} s each:"
    echo "  through the proxy (nginx -> release socket, a connection per request): $(bench "http://127.0.0.1:$port" "$seconds")"
    echo "  nginx with a pooled keep-alive TCP upstream (the previous design): $(bench "http://127.0.0.1:$pooled_port" "$seconds")"
    echo "  direct to the container's TCP port: $(bench "http://127.0.0.1:$direct_port" "$seconds")"
done
