#!/usr/bin/env bash
# `make ci-act`: the jobs of .github/workflows/ci.yml that can run on this host, run by act for a
# push of HEAD (default: lint and policy). The others need what this host lacks: the provider
# registry (terraform), PyPI's JSON API (audit), or are the test suite itself (test, container).
#
# Actions cannot be fetched from GitHub here: act's --local-repository replaces actions/checkout,
# astral-sh/setup-uv and hashicorp/setup-terraform with the stand-ins in scripts/act/.
#
# Settings (environment): ACT (the act command), ACT_JOBS (job ids, default "lint policy").
set -euo pipefail
cd "$(dirname "$0")/.."

workflow=.github/workflows/ci.yml
read -r -a act <<<"${ACT:?ACT must name the act command}"
read -r -a jobs <<<"${ACT_JOBS:-lint policy}"

args=(push --workflows "$workflow" -P ubuntu-24.04=-self-hosted)
for action in checkout setup-uv setup-terraform; do
    while read -r pinned; do
        args+=(--local-repository "$pinned=$PWD/scripts/act/$action")
    done < <(grep -ohE "[a-z-]+/$action@[0-9a-f]{40}" .github/workflows/*.yml | sort -u)
done
status=0
for job in "${jobs[@]}"; do
    echo "act: ci.yml job $job for a push of $(git rev-parse HEAD)"
    ACT_LOCAL_REPOSITORY="$PWD" "${act[@]}" "${args[@]}" --job "$job" || status=1
done
exit "$status"
