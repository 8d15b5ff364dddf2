"""Does a worker give back what bursts of large requests took? Its RSS before, during and after.

    .venv/bin/python bench/memory.py [--bursts 3] [--seconds 15] [--rest 35] [--rows 10000]

Starts `inference-service serve --workers 1` on core 0, then per burst: wrk -c16 on core 1
posting ROWS records of the default model (drawn over its training ranges) for SECONDS, the
worker's RSS at the end of the burst, and again after REST seconds idle (granian stops idle
threads after 30 s). A worker that keeps what it freed rests higher after every burst; a bounded
one comes back to the same level.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402

from bench import (  # noqa: E402
    BENCH,
    HOST,
    ROOT,
    pinned,
    post,
    rows_for,
    stop,
)
from inference_service.config import Settings  # noqa: E402
from inference_service.model import Model  # noqa: E402

PORT = 18490


def worker_rss_mb(server_pid: int) -> float:
    """VmRSS of the server's largest child (the granian worker)."""
    sizes = [0.0]
    for child in Path(f"/proc/{server_pid}/task/{server_pid}/children").read_text().split():
        status = Path(f"/proc/{child}/status").read_text()
        sizes += [int(line.split()[1]) / 1024 for line in status.splitlines() if "VmRSS" in line]
    return max(sizes)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bursts", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=15)
    parser.add_argument("--rest", type=int, default=35)
    parser.add_argument("--rows", type=int, default=10_000)
    args = parser.parse_args()

    settings = Settings.from_env()
    model = Model.load(settings.model_dir / settings.default_model)
    rows = np.round(rows_for(model, args.rows), 1).tolist()
    names = model.signature.feature_names
    body = json.dumps([dict(zip(names, r, strict=True)) for r in rows]).encode()
    work = Path(tempfile.mkdtemp(prefix="bench-memory-"))
    (work / "body.json").write_bytes(body)
    (work / "expect.txt").write_text('{"predictions":')
    env = {
        **os.environ,
        "INFERENCE_PORT": str(PORT),
        "INFERENCE_WORKERS": "1",
        "INFERENCE_ACCESS_LOG": "false",
        "BENCH_BODY": str(work / "body.json"),
        "BENCH_EXPECT": str(work / "expect.txt"),
    }
    serve = [str(Path(sys.executable).parent / "inference-service"), "serve"]
    with open(work / "server.log", "wb") as log:
        server = subprocess.Popen(
            [*pinned(0), *serve],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if post(PORT, body, timeout=10)[0] == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                sys.exit(f"the server did not answer; see {work / 'server.log'}")
            time.sleep(0.2)
        print(f"{args.rows:,} rows ({len(body):,} B), wrk -c16 for {args.seconds} s per burst")
        print(f"start: worker RSS {worker_rss_mb(server.pid):.1f} MB")
        for burst in range(1, args.bursts + 1):
            done = subprocess.run(
                [
                    *pinned(1),
                    "wrk",
                    "-t1",
                    "-c16",
                    f"-d{args.seconds}s",
                    "-s",
                    str(BENCH / "post.lua"),
                    f"http://{HOST}:{PORT}/inference",
                ],
                capture_output=True,
                text=True,
                timeout=args.seconds + 30,
                env=env,
            )
            rate = next(
                (line.split()[1] for line in done.stdout.splitlines() if "Requests/sec" in line),
                "?",
            )
            loaded = worker_rss_mb(server.pid)
            time.sleep(args.rest)
            rested = worker_rss_mb(server.pid)
            print(
                f"burst {burst}: {rate} req/s, RSS at its end {loaded:.1f} MB, "
                f"{args.rest} s later {rested:.1f} MB"
            )
    finally:
        stop(server)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
