"""What a worker imports before its first answer, and what each package costs.

    .venv/bin/python bench/imports.py [--runs 7] [--module inference_service.app]

Runs `python -X importtime -c "import MODULE"` in fresh interpreters pinned to one core and
prints, per top-level package, the median of its imports' own time (`self us`, summed), with
the median wall time of the whole import. Packages are charged for what they import themselves,
so the rows add up to the total.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from collections import defaultdict


def one_run(module: str) -> tuple[dict[str, int], float]:
    pin = ["taskset", "-c", "0"] if len(os.sched_getaffinity(0)) > 1 else []
    started = time.perf_counter()
    done = subprocess.run(
        [*pin, sys.executable, "-X", "importtime", "-c", f"import {module}"],
        capture_output=True,
        text=True,
        check=True,
    )
    wall = time.perf_counter() - started
    own: dict[str, int] = defaultdict(int)
    for line in done.stderr.splitlines():
        if not line.startswith("import time:") or "self [us]" in line:
            continue
        self_us, _, name = line.removeprefix("import time:").split("|")
        own[name.strip().split(".")[0]] += int(self_us)
    return own, wall


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--module", default="inference_service.app")
    parser.add_argument("--top", type=int, default=14)
    args = parser.parse_args()
    runs = [one_run(args.module) for _ in range(args.runs)]
    packages = {name for own, _ in runs for name in own}
    median = {p: statistics.median(own.get(p, 0) for own, _ in runs) for p in packages}
    total = sum(median.values())
    print(f"| package (import {args.module}) | ms | share |")  # noqa: T201
    print("| --- | --- | --- |")  # noqa: T201
    ranked = sorted(median.items(), key=lambda kv: -kv[1])
    for name, us in ranked[: args.top]:
        print(f"| {name} | {us / 1000:.1f} | {us / total:.0%} |")  # noqa: T201
    rest = sum(us for _, us in ranked[args.top :])
    print(f"| {len(ranked) - args.top} others | {rest / 1000:.1f} | {rest / total:.0%} |")  # noqa: T201
    wall = statistics.median(w for _, w in runs)
    print(  # noqa: T201
        f"| **total** (sum of imports; interpreter start to exit: {wall * 1000:.0f} ms) "
        f"| {total / 1000:.1f} | |"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
