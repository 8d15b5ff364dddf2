"""Microbenchmark of drift tracking: µs per DriftTracker.observe for 2 and 1,000 rows.

    flock /tmp/heavy.lock .venv/bin/python bench/drift_bench.py [--repeat 7]

Runs in prometheus_client's multi-process mode, as the server does, with the iris reference
(4 features, 10 bins). Prints the best of --repeat timings per call (the least disturbed by other
processes), and the median cost of one background flush into the Prometheus counters.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import timeit
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="drift-bench-") as metrics_dir:
        # Before prometheus_client is imported: the value class is chosen at import.
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
        run(args.repeat)


def run(repeat: int) -> None:
    import numpy as np
    from prometheus_client import CollectorRegistry

    from inference_service import drift, spec
    from inference_service.data import load

    ds = load(spec.load(ROOT / "data/input/train/iris.toml"))
    x, FEATURES = ds.x, ds.features
    card = {drift.CARD_KEY: drift.reference(x, FEATURES)}
    metrics = drift.DriftMetrics(CollectorRegistry())
    tracker = metrics.track("iris", "bench", FEATURES, card)
    assert tracker is not None
    rng = np.random.default_rng(0)
    # DriftMetrics.observe is what a request calls: it finds the version's tracker, then counts.
    print(f"{'rows':>6} | observe µs/call | calls timed")  # noqa: T201
    for n, number in ((2, 20_000), (1_000, 500)):
        batch = x[rng.integers(0, len(x), n)].astype(np.float32)
        timings = timeit.repeat(
            lambda b=batch: metrics.observe("iris", "bench", FEATURES, card, b),
            number=number,
            repeat=repeat,
        )
        print(f"{n:>6} | {min(timings) / number * 1e6:15.2f} | {number}")  # noqa: T201
    # The flush runs in a background thread once a second, off the request path.
    flushes = []
    for _ in range(200):
        tracker.observe(x[rng.integers(0, len(x), 2)].astype(np.float32))
        started = time.perf_counter()
        tracker.flush()
        flushes.append(time.perf_counter() - started)
    flush_us = sorted(flushes)[len(flushes) // 2] * 1e6
    print(f"one flush into the multi-process counters: {flush_us:.1f} µs (median)")  # noqa: T201
    print(f"python {sys.version.split()[0]}, numpy {np.__version__}")  # noqa: T201


if __name__ == "__main__":
    main()
