#!/usr/bin/env bash
# Build the service image: scripts/build-image.sh [IMAGE]   (default inference-service:<git sha>)
#
# Two passes over the same Dockerfile. The first builds up to the `model` stage and reads the
# version it trained; the second builds the whole image with that version as a build argument,
# so it lands in a label (labels cannot be computed inside a build). The second pass reuses the
# first's cached layers and the Dockerfile fails if the two disagree.
# Also tags inference-service:latest and inference-service:models-<hash of the model versions>.
# NO_CACHE=1 rebuilds every layer (a cold build).
set -euo pipefail
cd "$(dirname "$0")/.."

commit="$(git rev-parse HEAD 2>/dev/null || echo unknown)"
short="$(git rev-parse --short=12 HEAD 2>/dev/null || echo latest)"
image="${1:-inference-service:$short}"
name="${image%:*}"
if [[ "$image" != *:* || "${image##*:}" == */* ]]; then name="$image"; fi
version="$(sed -n 's/^version = "\(.*\)"$/\1/p' pyproject.toml | head -n1)"
created="$(date -u +%Y-%m-%dT%H:%M:%SZ)"
source_url="${IMAGE_SOURCE:-$(git config --get remote.origin.url 2>/dev/null || true)}"
source_url="${source_url:-https://github.com/inference-service/inference-service}"

# BuildKit needs the buildx plugin with a current docker CLI; without it use the classic builder,
# unless the caller chose explicitly.
if [[ -z "${DOCKER_BUILDKIT:-}" ]] && ! docker buildx version >/dev/null 2>&1; then
    export DOCKER_BUILDKIT=0
fi

args=(--build-arg "GIT_COMMIT=$commit" --build-arg "PROMOTE_REASON=${PROMOTE_REASON:-}")

# The champion: the models of the live release (CHAMPION_IMAGE), which every new version is
# compared with during training. A refused candidate fails the build; PROMOTE_REASON overrides.
champion=build/champion
rm -rf "$champion" && mkdir -p "$champion"
if [[ -n "${CHAMPION_IMAGE:-}" ]]; then
    if ! docker image inspect "$CHAMPION_IMAGE" >/dev/null 2>&1; then
        echo "CHAMPION_IMAGE=$CHAMPION_IMAGE is not on this host" >&2
        exit 1
    fi
    holder="$(docker create "$CHAMPION_IMAGE")"
    docker cp "$holder:/app/models/." "$champion/"
    docker rm "$holder" >/dev/null
    echo "champion: the models of $CHAMPION_IMAGE ($(ls "$champion" | tr '\n' ' '))"
fi
cache=()
[[ "${NO_CACHE:-0}" == 1 ]] && cache=(--no-cache)  # the first pass only; the second reuses it
start=$SECONDS
echo "building the model stage (commit $commit)"
iidfile="$(mktemp)"
trap 'rm -f "$iidfile"' EXIT
docker build --target model --iidfile "$iidfile" "${cache[@]}" "${args[@]}" .
model_stage="$(cat "$iidfile")"
# shellcheck disable=SC2016  # expanded by the container's shell
model_versions="$(docker run --rm --network none --entrypoint /bin/bash "$model_stage" -c \
    'for d in /app/models/*/; do n="${d%/}"; printf "%s=%s," "${n##*/}" "$(cat "${d}current")"; done')"
model_versions="${model_versions%,}"
models_tag="models-$(printf '%s' "$model_versions" | sha256sum | cut -c1-12)"
echo "models $model_versions"

docker build \
    "${args[@]}" \
    --build-arg "MODEL_VERSIONS=$model_versions" \
    --build-arg "BUILD_DATE=$created" \
    --build-arg "VERSION=$version" \
    --build-arg "SOURCE=$source_url" \
    -t "$image" -t "$name:latest" -t "$name:$models_tag" \
    .

id="$(docker image inspect -f '{{.Id}}' "$image")"
size="$(docker image inspect -f '{{.Size}}' "$image")"
echo "image:   $id"
echo "size:    $((size / 1000000)) MB ($size bytes)"
echo "tags:    $image $name:latest $name:$models_tag"
echo "models:  $model_versions"
echo "built in $((SECONDS - start)) s"
