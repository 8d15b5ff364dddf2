"""Each worker of a server takes a core of its own, with every thread it has."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

CORES = sorted(os.sched_getaffinity(0))
pytestmark = pytest.mark.skipif(len(CORES) < 2, reason="needs two cores to choose from")

# A stand-in worker: a thread started before pinning (as granian's runtime threads are), then
# the claim; it prints the core and every thread's allowed CPUs, and stays alive until stdin ends.
WORKER = """
import os, sys, threading
from pathlib import Path
from inference_service.server import pin_worker
threading.Thread(target=sys.stdin.read, daemon=True).start()
core = pin_worker(Path(sys.argv[1]))
allowed = sorted({
    Path(f"/proc/self/task/{t}/status").read_text().split("Cpus_allowed_list:")[1].split()[0]
    for t in os.listdir("/proc/self/task")
})
print(core, ",".join(allowed), flush=True)
sys.stdin.read()
"""


def start(directory: Path) -> tuple[subprocess.Popen[str], str, str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", WORKER, str(directory)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    core, allowed = proc.stdout.readline().split()
    return proc, core, allowed


def test_workers_claim_distinct_cores_and_a_respawn_takes_the_freed_one(tmp_path: Path) -> None:
    workers = [start(tmp_path) for _ in CORES]
    try:
        claimed = [core for _, core, _ in workers]
        assert sorted(claimed) == sorted(str(c) for c in CORES)
        for _, core, allowed in workers:  # every thread moved, not only the one that asked
            assert allowed == core
        extra, core, allowed = start(tmp_path)
        assert core == "None" and allowed != claimed[0]  # more workers than cores: left alone
        extra.communicate("")
        first, freed, _ = workers.pop(0)
        first.communicate("")  # a worker dies: the kernel drops its claim
        deadline = time.monotonic() + 5
        while first.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        respawned = start(tmp_path)
        workers.append(respawned)
        assert respawned[1] == freed
    finally:
        for proc, _, _ in workers:
            proc.communicate("")


def test_two_servers_start_from_cores_that_depend_on_their_directory(tmp_path: Path) -> None:
    firsts = set()
    for i in range(12):
        directory = tmp_path / f"inference-metrics-{i}"
        directory.mkdir()
        proc, core, _ = start(directory)
        proc.communicate("")
        firsts.add(core)
    assert len(firsts) > 1  # not every server starts on the same core
