"""The README's "Serve your own model" commands, run verbatim on a CSV the repo does not ship."""

import os
import re
import shutil
import signal
import subprocess
from pathlib import Path

import numpy as np

from tests.conftest import ROOT, free_port, wait_ready

START, END = "<!-- serve-your-own:start -->", "<!-- serve-your-own:end -->"


def readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    block = text[text.index(START) + len(START) : text.index(END)]
    body = re.search(r"```sh\n(.*?)```", block, re.S)
    assert body is not None
    return [line for line in body.group(1).splitlines() if line.strip()]


def churn_csv(path: Path) -> None:
    """6 features, two string classes with spaces in their names, a learnable rule."""
    rng = np.random.default_rng(3)
    x = rng.normal(size=(400, 6))
    churned = np.where(x[:, 0] + 0.5 * x[:, 3] > 0, "left us", "stayed on")
    lines = ["tenure,calls,spend,complaints,discount,age,churned"]
    lines += [
        ",".join(f"{v:.4f}" for v in row) + f",{c}" for row, c in zip(x, churned, strict=True)
    ]
    path.write_text("\n".join(lines) + "\n")


def test_serve_your_own_model_commands_work_verbatim(tmp_path: Path) -> None:
    commands = readme_commands()
    assert len(commands) <= 5
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True, timeout=120)
    for name in (
        "data",
        "src",
        "Makefile",
        "pyproject.toml",
        "uv.lock",
    ):  # this tree, uncommitted too
        target = clone / name
        shutil.rmtree(target) if target.is_dir() else target.unlink()
        copy = shutil.copytree if (ROOT / name).is_dir() else shutil.copy2
        copy(ROOT / name, target)
    (clone / ".venv").symlink_to(ROOT / ".venv")
    home = tmp_path / "home"
    home.mkdir()
    churn_csv(home / "churn.csv")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("INFERENCE_")}
    # The shared environment is already synced: make must not re-sync it from the clone.
    env |= {"HOME": str(home), "INFERENCE_PORT": str(port), "MAKEFLAGS": "-o .venv/.synced"}
    server = None
    try:
        for command in commands:
            if command.strip() == "make run":
                log = (tmp_path / "run.log").open("wb")
                server = subprocess.Popen(
                    ["bash", "-c", command],
                    cwd=clone,
                    env=env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
                wait_ready(f"http://127.0.0.1:{port}", timeout=60)
                continue
            done = subprocess.run(
                ["bash", "-c", command],
                cwd=clone,
                env=env,
                capture_output=True,
                text=True,
                timeout=600,
            )
            assert done.returncode == 0, f"{command}\n{done.stdout}\n{done.stderr}"
        assert "churn" in done.stdout  # make smoke's last line names every model it checked
    finally:
        if server is not None:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(timeout=30)
    card = next((clone / "models" / "churn").glob("*/model.json"))
    assert '"left us"' in card.read_text() and '"stayed on"' in card.read_text()
