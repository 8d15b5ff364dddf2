#!/usr/bin/env bash
# `make pipeline`: the deploy workflow (.github/workflows/deploy.yml) run on this machine, in the
# same order and with the same make targets:
#
#   install   make host-install                   (job install)
#   test      make test, see PIPELINE_TESTS        (hosted CI does this before a merge)
#   build     make image IMAGE_TAG=<tag>           (job build; the model is trained in the build)
#   api-keys  make api-keys                        (job deploy; API_KEYS from the environment)
#   deploy    make deploy-local IMAGE_TAG=<tag>    (job deploy)
#   smoke     make smoke URL=<PIPELINE_URL>, then make smoke   (job test)
#   rollback  make rollback-local, only when a smoke test failed
#
# A failed stage skips the ones after it, as `needs:` does; the exit status is 1 if any stage
# failed, even when the rollback succeeded.
#
# Settings (environment):
#   PIPELINE_TESTS    fast (default): lint, types and every test not marked docker or slow
#                     full: all of `make test`, container tests included;  none: skip the stage
#   PIPELINE_URL      the "public" URL to smoke-test, as vars.INFERENCE_URL in the workflow
#                     (default: this host's proxy, http://127.0.0.1:$INFERENCE_PROXY_PORT)
#   IMAGE_TAG         default: the commit SHA, with -dirty when tracked files have changes
#   PIPELINE_SUMMARY  also write "stage<TAB>result<TAB>seconds" lines to this file
#   INFERENCE_PROXY_PORT, INFERENCE_PROXY_CONF, INFERENCE_DEPLOY_STATE_DIR, INFERENCE_NGINX,
#   INFERENCE_READY_TIMEOUT ...: read by the deploy tool, so a private proxy and state dir work.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 2

tests="${PIPELINE_TESTS:-fast}"
case "$tests" in
    fast | full | none) ;;
    *) echo "PIPELINE_TESTS must be fast, full or none, not '$tests'" >&2; exit 2 ;;
esac
if [[ -z "${IMAGE_TAG:-}" ]]; then
    IMAGE_TAG="$(git rev-parse HEAD 2>/dev/null || echo latest)"
    [[ -n "$(git status --porcelain --untracked-files=no 2>/dev/null)" ]] && IMAGE_TAG+="-dirty"
fi
local_url="http://127.0.0.1:${INFERENCE_PROXY_PORT:-6666}"
public_url="${PIPELINE_URL:-$local_url}"

now() { echo "${EPOCHREALTIME:-$(date +%s)}"; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

names=() results=() seconds=()
failed=0 start_all="$(now)"

# stage NAME COMMAND...: run it unless an earlier stage failed; record the result and duration.
stage() {
    local name="$1" start result
    shift
    if ((failed)); then
        names+=("$name") results+=("skipped") seconds+=("-")
        return 1
    fi
    printf '\n=== %s: %s\n' "$name" "$*"
    start="$(now)"
    if "$@"; then result=ok; else result=FAILED; failed=1; fi
    names+=("$name") results+=("$result") seconds+=("$(since "$start")")
    printf '=== %s %s in %s s\n' "$name" "$result" "${seconds[-1]}"
    [[ "$result" == ok ]]
}

# shellcheck disable=SC2317  # called through `stage`
run_tests() {
    case "$tests" in
        fast) PYTEST_ADDOPTS="${PYTEST_ADDOPTS:-} -m 'not docker and not slow'" make test ;;
        full) make test ;;
    esac
}

stage install make host-install
if [[ "$tests" == none ]]; then
    names+=("test") results+=("skipped") seconds+=("-")
else
    stage test run_tests
fi
stage build make image IMAGE_TAG="$IMAGE_TAG"
stage api-keys make api-keys
deployed=0
stage deploy make deploy-local IMAGE_TAG="$IMAGE_TAG" && deployed=1
smoke_failed=0
stage smoke-public make smoke URL="$public_url" || smoke_failed=$deployed
if ((deployed && !smoke_failed)); then
    stage smoke-local make smoke || smoke_failed=1
else
    stage smoke-local true
fi
if ((smoke_failed)); then
    # The only stage that runs after a failure, as `if: failure()` in the workflow.
    failed=0
    stage rollback make rollback-local
    failed=1
else
    names+=("rollback") results+=("not needed") seconds+=("-")
fi

total="$(since "$start_all")"
printf '\npipeline summary: image inference-service:%s, tests %s\n' "$IMAGE_TAG" "$tests"
printf '  %-14s %-11s %8s\n' stage result seconds
for i in "${!names[@]}"; do
    printf '  %-14s %-11s %8s\n' "${names[$i]}" "${results[$i]}" "${seconds[$i]}"
done
printf '  %-14s %-11s %8s\n' total "$( ((failed)) && echo FAILED || echo ok)" "$total"
if [[ -n "${PIPELINE_SUMMARY:-}" ]]; then
    for i in "${!names[@]}"; do
        printf '%s\t%s\t%s\n' "${names[$i]}" "${results[$i]}" "${seconds[$i]}"
    done >"$PIPELINE_SUMMARY"
    printf 'total\t%s\t%s\n' "$( ((failed)) && echo FAILED || echo ok)" "$total" >>"$PIPELINE_SUMMARY"
fi
exit "$failed"
