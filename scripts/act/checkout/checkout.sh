#!/usr/bin/env bash
# See action.yml: fetch REF (or GITHUB_SHA) from ACT_LOCAL_REPOSITORY into GITHUB_WORKSPACE.
set -euo pipefail
source="${ACT_LOCAL_REPOSITORY:?ACT_LOCAL_REPOSITORY must name the local clone (make pipeline-act sets it)}"
ref="${REF:-${GITHUB_SHA:?}}"
cd "${GITHUB_WORKSPACE:?}"
# The workspace of a host job is reused between runs: start from a clean tree, like checkout's clean.
if [[ ! -d .git ]]; then
    git init --quiet .
fi
git -c protocol.version=2 fetch --quiet --no-tags --depth 1 "$source" "$ref"
git checkout --quiet --force --detach FETCH_HEAD
git clean -ffdxq
echo "checked out $(git rev-parse HEAD) from $source"
