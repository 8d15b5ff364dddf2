"""`inference-service deploy` command line: its help names only flags it accepts."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from tests.conftest import ROOT

ACTIONS = ("install", "up", "rollback", "status")


def deploy(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "inference_service.cli", "deploy", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


def flags_in(text: str) -> set[str]:
    return set(re.findall(r"(?<![\w-])--[a-z][a-z-]*", text)) - {"--help"}


@pytest.mark.parametrize("action", [None, *ACTIONS])
def test_every_flag_the_help_names_is_accepted_where_it_is_shown(action: str | None) -> None:
    where = [action] if action else []
    shown = deploy(*where, "--help")
    assert shown.returncode == 0, shown.stderr
    flags = flags_in(shown.stdout)
    if action in (None, "up"):
        assert flags, "the help shows no flags at all"
    for flag in sorted(flags):
        # The flag with a value, then --help: argparse stops at --help, and only after it has
        # refused any argument it does not know.
        args = [flag, "1"] if action is None else [action, "IMAGE", flag, "1"]
        if action in ("install", "rollback", "status"):
            args.remove("IMAGE")
        done = deploy(*args, "--help")
        assert "unrecognized arguments" not in done.stderr, (flag, done.stderr)
        assert "invalid choice" not in done.stderr, (flag, done.stderr)
        assert done.returncode == 0, (flag, done.stderr)


def test_a_flag_in_the_wrong_place_is_refused() -> None:
    """The check above can fail: a subcommand's flag before the subcommand is an error."""
    done = deploy("--ready-timeout", "5", "status")
    assert done.returncode == 2
    assert "unrecognized arguments" in done.stderr or "invalid choice" in done.stderr


def test_canary_percentage_out_of_range_is_refused_before_anything_runs() -> None:
    done = deploy("up", "inference-service:latest", "--canary", "100")
    assert done.returncode == 2
    assert "--canary must be a percentage between 1 and 99, got 100" in done.stderr


@pytest.mark.parametrize(
    ("variables", "command"),
    [
        ([], "deploy up inference-service:t"),
        (["CANARY=10"], "deploy up inference-service:t --canary 10"),
    ],
)
def test_make_deploy_local_runs_a_canary_when_asked(variables: list[str], command: str) -> None:
    done = subprocess.run(
        [
            "make",
            "--no-print-directory",
            "-n",
            "deploy-local",
            "IMAGE=inference-service:t",
            *variables,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1].endswith(command)
