#!/usr/bin/env python3
"""Run a shell command inside the AKS cluster through `az aks command invoke`, and fail like it.

The command reaches the cluster through the Azure control plane (the AKS run-command API), not
through the Kubernetes API server, so it works from a GitHub-hosted runner although the API server
only accepts `api_server_authorized_ip_ranges` (or is private), and it needs no kubeconfig and no
kubelogin: `az` signs in with the job's OIDC login. AKS runs the command in a pod of the cluster's
`aks-command` namespace, with the given files in its working directory.

`az aks command invoke` itself exits 0 whatever the command did; with `--output json` it returns
the result (provisioningState, exitCode, logs), which this script prints and turns into its own
exit status.

    scripts/aks-command.py --resource-group RG --name CLUSTER [--file F ...] -- 'kubectl ...'
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

# Status for a run-command request that did not run at all (rejected, timed out, no result).
NOT_RUN = 3


def invoke_args(resource_group: str, name: str, command: str, files: list[Path]) -> list[str]:
    args = ["aks", "command", "invoke", "--resource-group", resource_group, "--name", name]
    args += ["--command", command, "--output", "json", "--only-show-errors"]
    for path in files:
        args += ["--file", str(path)]
    return args


def result_status(raw: str) -> tuple[int, str]:
    """(exit status, text to print) from the JSON that `az aks command invoke -o json` returns."""
    try:
        result = json.loads(raw)
    except ValueError:
        return NOT_RUN, f"az returned no JSON result: {raw.strip()[:2000]!r}"
    if not isinstance(result, dict):
        return NOT_RUN, f"az returned an unexpected result: {raw.strip()[:2000]!r}"
    state = result.get("provisioningState")
    logs = str(result.get("logs") or "")
    if state != "Succeeded":
        return NOT_RUN, f"{logs}run command {state}: {result.get('reason') or 'no reason given'}"
    code = result.get("exitCode")
    if not isinstance(code, int):
        return NOT_RUN, f"{logs}run command succeeded without an exit code"
    return code, f"{logs}command in the cluster exited with {code}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--resource-group", required=True, help="resource group of the cluster")
    parser.add_argument("--name", required=True, help="name of the AKS cluster")
    parser.add_argument("--file", action="append", type=Path, default=[], help="file to attach")
    parser.add_argument("command", help="shell command to run in the cluster")
    args = parser.parse_args(argv)
    for path in args.file:
        if not path.is_file():
            parser.error(f"--file {path}: no such file")
    az = os.environ.get("AZ", "az")
    if shutil.which(az) is None:
        parser.error(f"{az} (the Azure CLI) is not on PATH")
    done = subprocess.run(
        [az, *invoke_args(args.resource_group, args.name, args.command, args.file)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        sys.stderr.write(done.stderr)
        return done.returncode
    status, text = result_status(done.stdout)
    (sys.stdout if status == 0 else sys.stderr).write(text.rstrip("\n") + "\n")
    return status


if __name__ == "__main__":
    sys.exit(main())
