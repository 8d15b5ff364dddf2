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
    # Only stdin, stdout and stderr go to dockerd: it would otherwise hold every descriptor this
    # script inherited, such as the lock of `flock /tmp/heavy.lock`, for as long as it runs.
    (
        for fd in /proc/"$BASHPID"/fd/*; do
            fd="${fd##*/}"
            ((fd > 2)) && eval "exec $fd>&-" 2>/dev/null
        done
        exec nohup dockerd >"$LOG" 2>&1
    ) &
    for _ in $(seq 60); do
        docker info >/dev/null 2>&1 && break
        sleep 1
    done
    docker info >/dev/null 2>&1 || { echo "dockerd did not start; see $LOG" >&2; exit 1; }
fi

# BASE_REBUILD=1 replaces a local base image built earlier (for example by an older version of this).
if [[ "${BASE_REBUILD:-0}" != 1 ]] && docker image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
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
# The copy under /usr/local/share/ca-certificates survives update-ca-certificates in image builds.
if [[ -f /etc/ssl/certs/ca-certificates.crt ]]; then
    mkdir -p "$rootfs/etc/ssl/certs" "$rootfs/usr/local/share/ca-certificates"
    cp /etc/ssl/certs/ca-certificates.crt "$rootfs/etc/ssl/certs/ca-certificates.crt"
    cp /etc/ssl/certs/ca-certificates.crt "$rootfs/usr/local/share/ca-certificates/host-trust.crt"
fi
# Slim it the way the published -slim images are (debuerreotype --slim): no docs, man pages or
# locales, now or in later `apt-get install`s, and apt keeps no downloaded packages.
printf '%s\n' 'path-exclude /usr/share/doc/*' 'path-include /usr/share/doc/*/copyright' \
    'path-exclude /usr/share/info/*' 'path-exclude /usr/share/linda/*' \
    'path-exclude /usr/share/lintian/overrides/*' 'path-exclude /usr/share/locale/*' \
    'path-exclude /usr/share/man/*' >"$rootfs/etc/dpkg/dpkg.cfg.d/docker"
clean='"rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true";'
printf '%s\n' "DPkg::Post-Invoke { $clean };" "APT::Update::Post-Invoke { $clean };" \
    'Dir::Cache::pkgcache "";' 'Dir::Cache::srcpkgcache "";' >"$rootfs/etc/apt/apt.conf.d/docker-clean"
echo 'Acquire::Languages "none";' >"$rootfs/etc/apt/apt.conf.d/docker-no-languages"
(
    cd "$rootfs/usr/share" || exit 1
    find doc -mindepth 1 ! -type d ! -name copyright -delete
    find doc -mindepth 1 -type d -empty -delete
    rm -rf info/* man/* locale/* lintian/overrides/*
    cd "$rootfs/var" || exit 1
    rm -rf lib/apt/lists/* cache/apt/*.bin cache/apt/archives/*.deb
)
tar -C "$rootfs" -c . | docker import --change 'CMD ["bash"]' - "$BASE_IMAGE" >/dev/null
echo "built $BASE_IMAGE"
