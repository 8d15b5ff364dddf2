#!/usr/bin/env bash
# Make a Docker engine usable on this host: install it, start dockerd, and provide the base image.
# No registry is reachable here, so the Dockerfile's base image is built with debootstrap under the
# exact name `FROM` uses. On a host that can pull images, the last step is a no-op `docker pull`.
set -euo pipefail

BASE_IMAGE="${BASE_IMAGE:-debian:bookworm-slim}"
SUITE="${BASE_IMAGE#debian:}"
SUITE="${SUITE%-slim}"
LOG="${DOCKERD_LOG:-/tmp/dockerd.log}"

need=()
command -v dockerd >/dev/null || need+=(docker.io)
command -v debootstrap >/dev/null || need+=(debootstrap)
command -v nginx >/dev/null || need+=(nginx)
if ((${#need[@]})); then
    apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${need[@]}"
fi

if ! docker info >/dev/null 2>&1; then
    echo "starting dockerd (log: $LOG)"
    nohup dockerd >"$LOG" 2>&1 &
    for _ in $(seq 60); do
        docker info >/dev/null 2>&1 && break
        sleep 1
    done
    docker info >/dev/null 2>&1 || { echo "dockerd did not start; see $LOG" >&2; exit 1; }
fi

if docker image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
    exit 0
fi
if timeout 60 docker pull -q "$BASE_IMAGE" >/dev/null 2>&1; then
    exit 0
fi
echo "no registry: building $BASE_IMAGE with debootstrap ($SUITE)"
rootfs="$(mktemp -d)"
trap 'rm -rf "$rootfs"' EXIT
debootstrap --variant=minbase "$SUITE" "$rootfs" http://deb.debian.org/debian >/dev/null
# Trust the same CAs as this host, so TLS to package indexes works behind an inspecting proxy.
cp /etc/ssl/certs/ca-certificates.crt "$rootfs/etc/ssl/certs/ca-certificates.crt" 2>/dev/null || true
rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin
tar -C "$rootfs" -c . | docker import - "$BASE_IMAGE" >/dev/null
echo "built $BASE_IMAGE"
