"""Where a request's time goes inside the worker: the app called as WSGI, no HTTP server.

    .venv/bin/python bench/inprocess.py [--model-dir models] [--repeat 2000]

Prints µs per request (median of 5 rounds) for whole requests through the app (the WSGI
dispatch, metrics and access log included; logs go to a file here) and for the steps
of the 1,000-record request. Pin it to a core (taskset -c 0) on a machine doing nothing else.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np


def per_call_us(fn: Callable[[], object], repeat: int) -> float:
    rounds = []
    for _ in range(5):
        started = time.perf_counter()
        for _ in range(repeat):
            fn()
        rounds.append((time.perf_counter() - started) / repeat * 1e6)
    return statistics.median(rounds)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", default="models")
    parser.add_argument("--repeat", type=int, default=2000)
    args = parser.parse_args()
    os.environ["INFERENCE_MODEL_DIR"] = args.model_dir
    log = Path(tempfile.mkdtemp(prefix="bench-inprocess-")) / "access.log"
    sys.stderr = open(log, "w")  # noqa: SIM115 - where the logs go, for the whole run

    from bench import rows_for
    from inference_service import protocol
    from inference_service.app import create_app
    from inference_service.config import Settings

    app = create_app(Settings.from_env())
    state = app.extensions["inference"]
    # Everything from the default model's signature: its features, their training ranges, its
    # V2 input and first output.
    model = state.repository.default_model()
    rows = np.round(rows_for(model, 1000), 1)
    names = model.signature.feature_names
    records = [dict(zip(names, r, strict=True)) for r in rows.tolist()]
    bodies: dict[str, tuple[str, bytes, dict[str, str]]] = {
        "records, 2 rows": ("/inference", json.dumps(records[:2]).encode(), {}),
        "records, 1,000 rows": ("/inference", json.dumps(records).encode(), {}),
    }
    metadata = protocol.v2_metadata(model)
    infer = f"/v2/models/{model.name}/infer"
    tensor = {"name": metadata["inputs"][0]["name"], "shape": list(rows.shape), "datatype": "FP32"}
    v2_json = {"inputs": [{**tensor, "data": rows.ravel().tolist()}]}
    bodies["V2 JSON tensors, 1,000 rows"] = (infer, json.dumps(v2_json).encode(), {})
    binary = rows.astype("<f4").tobytes()
    output = metadata["outputs"][0]["name"]
    header = json.dumps(
        {
            "inputs": [{**tensor, "parameters": {"binary_data_size": len(binary)}}],
            "outputs": [{"name": output, "parameters": {"binary_data": True}}],
        }
    ).encode()
    bodies["V2 binary tensors, 1,000 rows"] = (
        infer,
        header + binary,
        {"HTTP_INFERENCE_HEADER_CONTENT_LENGTH": str(len(header))},
    )

    def call(path: str, body: bytes, extra: dict[str, str]) -> Callable[[], object]:
        def run() -> object:
            environ: dict[str, Any] = {
                "REQUEST_METHOD": "POST",
                "PATH_INFO": path,
                "CONTENT_TYPE": "application/json",
                "CONTENT_LENGTH": str(len(body)),
                "wsgi.input": io.BytesIO(body),
                "SERVER_NAME": "127.0.0.1",
                "SERVER_PORT": "6666",
                "SERVER_PROTOCOL": "HTTP/1.1",
                "wsgi.url_scheme": "http",
                **extra,
            }
            status: list[str] = []
            b"".join(app(environ, lambda s, h, e=None: status.append(s)))
            if not status[0].startswith("200"):
                raise SystemExit(f"{path}: {status[0]}")
            return status

        return run

    lines = []
    for name, (path, body, extra) in bodies.items():
        repeat = args.repeat if len(body) < 1000 else args.repeat // 10
        lines.append((name, per_call_us(call(path, body, extra), repeat)))

    # The same two requests with the dispatch taken out: what Flask's request cycle costs.
    from inference_service.api import Dispatch

    outer, layer = app, app.wsgi_app
    while not isinstance(layer, Dispatch):
        outer, layer = layer, layer.app
    outer.app = layer.app
    for name in ("records, 2 rows", "records, 1,000 rows"):
        path, body, extra = bodies[name]
        repeat = args.repeat if len(body) < 1000 else args.repeat // 10
        lines.append((f"{name}, through Flask", per_call_us(call(path, body, extra), repeat)))
    outer.app = layer

    body = bodies["records, 1,000 rows"][1]
    x = protocol.parse_records(body, model.signature, 100_000)
    prediction = model.predict(x)
    repeat = args.repeat // 10
    steps: list[tuple[str, Callable[[], object]]] = [
        (
            "  decode 1,000 records into float32",
            lambda: protocol.parse_records(body, model.signature, 100_000),
        ),
        ("  onnxruntime", lambda: model.predict(x)),
        (
            "  drift counters",
            lambda: state.metrics.drift.observe(
                model.name, model.version, model.features, model.card, x
            ),
        ),
        (
            "  encode the answer",
            lambda: protocol.records_response(model.name, model.version, prediction, model.labels),
        ),
    ]
    for name, fn in steps:
        lines.append((name, per_call_us(fn, repeat)))

    print("| request or step | µs |", "| --- | --- |", sep="\n")
    for name, us in lines:
        print(f"| {name} | {us:,.1f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
