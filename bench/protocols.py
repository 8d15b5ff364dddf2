"""What the protocols and models cost on one worker: records for a 13-feature model, and V2 with
JSON tensors against the binary tensor data extension at 1,000 and 10,000 rows.

    .venv/bin/python bench/protocols.py [--duration 10] [--warmup 2] [--connections 16]

(`make bench` runs the same cases as part of bench/bench.py, against the repository's models.)

One `inference-service serve --workers 1` pinned to core 0 serves the whole repository (trained
into a temporary directory from the committed specs); wrk -t1 on core 1 sends one fixed body per
case and checks every answer against what onnxruntime gives for the same rows from the same
artifact (a binary answer is checked byte for byte). Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import bench as b  # bench/bench.py: this script's directory is first on sys.path
from inference_service import spec
from inference_service.model import Model
from inference_service.train import Options, train

SEED = 7
ERRORS = ("status", "read", "write", "timeout", "mismatches")


def cases(root: Path) -> list[dict[str, Any]]:
    """name, path, body, the bytes every correct answer contains, and the binary header length."""
    iris, wine = Model.load(root / "iris"), Model.load(root / "wine")
    found = []
    for model, n in ((iris, 2), (wine, 1000)):
        rows = b.rows_for(model, n, SEED)
        labels = model.predict(rows).labels
        records = [{str(i): float(v) for i, v in enumerate(r)} for r in rows.tolist()]
        found.append(
            {
                "case": f"{model.name} records, {n} rows",
                "path": f"/models/{model.name}/inference",
                "body": json.dumps(records, separators=(",", ":")).encode(),
                "expect": json.dumps(labels, separators=(",", ":")).encode(),
            }
        )
    for n in (1000, 10_000):
        rows = b.rows_for(iris, n, SEED)
        labels = iris.predict(rows).labels or []
        tensor = {"name": "input", "shape": [n, iris.signature.width], "datatype": "FP32"}
        plain = {"inputs": [{**tensor, "data": rows.ravel().tolist()}]}
        found.append(
            {
                "case": f"iris V2 JSON tensors, {n} rows",
                "path": "/v2/models/iris/infer",
                "body": json.dumps(plain, separators=(",", ":")).encode(),
                "expect": json.dumps(labels, separators=(",", ":")).encode(),
            }
        )
        blob = rows.astype("<f4").tobytes()
        binary = {
            "inputs": [{**tensor, "parameters": {"binary_data_size": len(blob)}}],
            "parameters": {"binary_data_output": True},
        }
        header = json.dumps(binary, separators=(",", ":")).encode()
        answer = b"".join(len(x.encode()).to_bytes(4, "little") + x.encode() for x in labels)
        found.append(
            {
                "case": f"iris V2 binary tensors, {n} rows",
                "path": "/v2/models/iris/infer",
                "body": header + blob,
                "expect": answer,
                "header_length": len(header),
            }
        )
    return found


def run_case(
    port: int, case: dict[str, Any], args: argparse.Namespace, out: Path
) -> dict[str, Any]:
    body, expect = out / "body", out / "expect"
    body.write_bytes(case["body"])
    expect.write_bytes(case["expect"])
    env = {
        **os.environ,
        "BENCH_BODY": str(body),
        "BENCH_EXPECT": str(expect),
        "BENCH_HEADER_LENGTH": str(case.get("header_length", "")),
    }
    results = []
    for seconds in (args.warmup, args.duration):
        cmd = [
            *b.pinned(1), "wrk", "-t1", f"-c{args.connections}", f"-d{seconds}s",
            "--timeout", "10s", "-s", str(b.BENCH / "post.lua"),
            f"http://{b.HOST}:{port}{case['path']}",
        ]  # fmt: skip
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=seconds + 60)
        line = next((x for x in done.stdout.splitlines() if x.startswith("BENCH ")), None)
        if line is None:
            sys.exit(f"wrk failed: {done.stdout}\n{done.stderr}")
        results.append(json.loads(line[6:]))
    return results[-1]


def measure(model_dir: Path, args: argparse.Namespace, out: Path) -> list[dict[str, Any]]:
    """Every case against one `serve --workers 1` on core 0 serving `model_dir`."""
    port = b.BASE_PORT + 90
    env = {**os.environ, "INFERENCE_MODEL_DIR": str(model_dir), "INFERENCE_ACCESS_LOG": "false"}
    server = b.Server(
        "service", "serve", (str(b.BIN / "inference-service"), "serve", "--port", "{port}"),
        "service",
    )  # fmt: skip
    proc = b.spawn(server, port, out / "protocols-server.log", env)
    found = []
    try:
        _wait(port)
        for case in cases(model_dir):
            r = run_case(port, case, args, out)
            rps = r["requests"] / (r["duration_us"] / 1e6)
            rows = int(case["case"].rsplit(", ", 1)[1].split()[0].replace(",", ""))
            found.append(
                {
                    "case": case["case"],
                    "bytes": len(case["body"]),
                    "rps": rps,
                    "rows_per_s": rps * rows,
                    "p50_ms": r["p50_us"] / 1000,
                    "p99_ms": r["p99_us"] / 1000,
                    "errors": sum(r[k] for k in ERRORS),
                }
            )
            print(f"  {case['case']}: {rps:,.0f} req/s", flush=True)  # noqa: T201
    finally:
        b.stop(proc)
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--connections", type=int, default=16)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-protocols-") as tmp:
        out = Path(tmp)
        root = out / "models"
        for s in spec.discover(b.ROOT / "data/input/train"):
            train(s, Options(root=root))
        found = measure(root, args, out)
    from report import protocol_table

    print(protocol_table(found)[1])  # noqa: T201
    return 0


def _wait(port: int) -> None:
    import time
    import urllib.request

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://{b.HOST}:{port}/readyz", timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    sys.exit("the server did not become ready")


if __name__ == "__main__":
    sys.exit(main())
