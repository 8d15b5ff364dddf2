"""Microbenchmark of drift tracking: µs per DriftTracker.observe for 2 and 1,000 rows.

    flock /tmp/heavy.lock .venv/bin/python bench/drift_bench.py [--repeat 7]

Runs in prometheus_client's multi-process mode, as the server does, with the iris reference
(4 features, 10 bins). Prints the best of --repeat timings per call (the least disturbed by other
processes), and the cost of the background flush into the Prometheus counters per call.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
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
    x, features = ds.x, ds.features
    tracker = drift.DriftMetrics(CollectorRegistry()).track(
        "iris", "bench", features, {drift.CARD_KEY: drift.reference(x, features)}
    )
    assert tracker is not None
    rng = np.random.default_rng(0)
    rows = f"{'rows':>6}"
    print(f"{rows} | observe µs/call | flush µs (after 1 call) | calls timed")  # noqa: T201
    for n, number in ((2, 20_000), (1_000, 500)):
        batch = x[rng.integers(0, len(x), n)].astype(np.float32)
        timings = timeit.repeat(lambda b=batch: tracker.observe(b), number=number, repeat=repeat)
        observe = min(timings)

        def one_then_flush(b: np.ndarray = batch) -> None:  # type: ignore[type-arg]
            tracker.observe(b)
            tracker.flush()

        both = min(timeit.repeat(one_then_flush, number=number // 10, repeat=repeat))
        per_call = observe / number * 1e6
        flush = both / (number // 10) * 1e6 - per_call
        print(f"{n:>6} | {per_call:15.2f} | {flush:23.2f} | {number}")  # noqa: T201
    print(f"python {sys.version.split()[0]}, numpy {np.__version__}")  # noqa: T201


if __name__ == "__main__":
    main()
