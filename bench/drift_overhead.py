"""Throughput cost of drift tracking: the same model served with and without its drift reference.

    flock /tmp/heavy.lock .venv/bin/python bench/drift_overhead.py [--rounds 3] [--duration 8]

Trains one model into a temporary directory and serves it twice, `inference-service serve
--workers 1` pinned to core 0: once as trained (the card has a "drift" reference, so every
request is counted) and once from a copy whose card has no reference (nothing is tracked). wrk,
pinned to core 1, drives the 2-record and 1,000-record bodies of bench.py; the variants alternate
for --rounds rounds so that background load hits both alike. Prints req/s and CPU µs per request
(user + system of the server's process group over the measured run), medians over the rounds.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import bench as b  # bench/bench.py: this script's directory is first on sys.path
from inference_service import artifact, drift, spec
from inference_service.train import Options, train


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=int, default=8)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--connections", type=int, default=16)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="drift-overhead-") as tmp:
        out = Path(tmp)
        with_ref = out / "with" / "iris"
        train(spec.load(b.ROOT / "data/input/train/iris.toml"), Options(root=with_ref.parent))
        without = out / "without" / "iris"
        shutil.copytree(with_ref, without)
        card_file = without / artifact.current_version(without) / artifact.CARD_FILE
        card = json.loads(card_file.read_text())
        del card[drift.CARD_KEY]
        card_file.write_text(json.dumps(card))
        assets = b.prepare(out, with_ref.parent)
        results: dict[tuple[str, str], list[tuple[float, float]]] = {}
        for round_ in range(args.rounds):
            for variant, model_dir in (("with drift", with_ref), ("without", without)):
                for payload in ("2", "1000"):
                    figures = measure(model_dir, assets[payload], payload, out, args)
                    results.setdefault((variant, payload), []).append(figures)
                    print(  # noqa: T201
                        f"round {round_ + 1} {variant:10} {payload:>4} records: "
                        f"{figures[0]:8.0f} req/s {figures[1]:6.1f} CPU µs/req",
                        file=sys.stderr,
                    )
    print("| payload | variant | req/s (median) | CPU µs/req (median) |")  # noqa: T201
    print("| --- | --- | --- | --- |")  # noqa: T201
    for payload in ("2", "1000"):
        base = None
        for variant in ("without", "with drift"):
            runs = results[(variant, payload)]
            rps = statistics.median(r[0] for r in runs)
            cpu = statistics.median(r[1] for r in runs)
            delta = "" if base is None else f" ({(rps / base[0] - 1) * 100:+.1f} %)"
            cpu_delta = "" if base is None else f" ({cpu - base[1]:+.1f})"
            print(f"| {payload} records | {variant} | {rps:,.0f}{delta} | {cpu:.1f}{cpu_delta} |")  # noqa: T201
            base = base or (rps, cpu)
    print(f"{args.rounds} rounds, {args.duration} s per run, {args.connections} connections")  # noqa: T201


def measure(
    model_dir: Path, asset: dict[str, Any], payload: str, out: Path, args: argparse.Namespace
) -> tuple[float, float]:
    server = next(s for s in b.servers() if s.name == "service-nolog")
    env = {k: v for k, v in os.environ.items() if not k.startswith("INFERENCE_")}
    env |= {"INFERENCE_MODEL_DIR": str(model_dir), **dict(server.env)}
    port = b.BASE_PORT + 90
    proc, _ = b.cold_start(server, port, asset, out / "server.log", env)
    try:
        b.wrk(port, payload, "service", args.warmup, args.connections, out)
        before = b.group_cpu_s(proc.pid)
        started = time.perf_counter()
        result = b.wrk(port, payload, "service", args.duration, args.connections, out)
        cpu = b.group_cpu_s(proc.pid) - before
        elapsed = time.perf_counter() - started
    finally:
        b.stop(proc)
    if result.get("mismatches"):
        sys.exit(f"{result['mismatches']} wrong answers; see {out / 'server.log'}")
    requests = float(result["requests"])
    return requests / elapsed, cpu / requests * 1e6


if __name__ == "__main__":
    main()
