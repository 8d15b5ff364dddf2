#!/usr/bin/env bash
# `make api-keys`: write the service's API keys to FILE (mode 0600, atomically), from the
# environment variable API_KEYS, which the deploy workflow fills from the GitHub environment secret
# INFERENCE_API_KEYS. Keys are separated by commas or newlines; FILE gets one per line.
# No key is ever printed or passed on a command line (printf is a shell builtin).
# An empty API_KEYS keeps FILE as it is: removing the secret never switches authentication off.
set -euo pipefail

target="${1:?usage: write-api-keys.sh FILE}"
if [[ -z "${API_KEYS:-}" ]]; then
    if [[ -f "$target" ]]; then
        echo "API_KEYS is empty: the keys in $target stay as they are"
    else
        echo "API_KEYS is empty and $target does not exist: the service runs without API keys"
    fi
    exit 0
fi

umask 077
dir="$(dirname "$target")"
mkdir -p "$dir"
tmp="$(mktemp "$dir/.api-keys.XXXXXX")"
trap 'rm -f "$tmp"' EXIT
printf '%s\n' "$API_KEYS" | tr ',' '\n' | sed -e 's/^[[:space:]]*//' -e 's/[[:space:]]*$//' \
    | { grep -v '^$' || true; } >"$tmp"
count="$(wc -l <"$tmp")"
if ((count == 0)); then
    echo "API_KEYS holds separators but no key; $target is unchanged" >&2
    exit 1
fi
chmod 0600 "$tmp"
mv -f "$tmp" "$target"
trap - EXIT
echo "wrote $count API key(s) to $target (mode 0600)"
