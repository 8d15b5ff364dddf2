"""`inference-service` command line: train, serve, predict, smoke, deploy."""

from __future__ import annotations

import argparse
import csv
import io
import json
import logging
import math
import sys
from dataclasses import replace
from pathlib import Path

from inference_service import FEATURES
from inference_service.config import Settings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="inference-service", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    train = commands.add_parser("train", help="train, gate and publish a model")
    train.add_argument("--data", type=Path, help="training CSV (default data/input/train/iris.csv)")
    train.add_argument("--model-dir", type=Path, help="default: INFERENCE_MODEL_DIR")
    train.add_argument("--seed", type=int, default=42)
    train.add_argument("--min-accuracy", type=float, default=0.90, help="held-out accuracy gate")
    train.add_argument("--max-depth", type=int, default=None)
    train.add_argument(
        "--if-missing", action="store_true", help="do nothing when a model is already current"
    )

    serve = commands.add_parser("serve", help="serve the current model over HTTP")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.add_argument("--workers", type=int)

    predict = commands.add_parser("predict", help="score a CSV or JSON file offline")
    predict.add_argument("file", help="CSV with feature columns, JSON records, or - for stdin")
    predict.add_argument("--format", choices=("csv", "json"), default="csv", help="output format")

    smoke = commands.add_parser("smoke", help="check a running service end to end")
    smoke.add_argument("url", help="base URL, e.g. http://127.0.0.1:6666")
    smoke.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for readiness")
    smoke.add_argument(
        "--api-key",
        help="bearer key (default: INFERENCE_API_KEY, else the first INFERENCE_API_KEYS)",
    )

    # Everything after `deploy` (-h included) goes to the deploy tool's own parser.
    deploy = commands.add_parser(
        "deploy",
        help="zero-downtime deploys on one Docker host (install, up, rollback, status)",
        add_help=False,
    )
    deploy.add_argument("args", nargs=argparse.REMAINDER)

    args, extra = parser.parse_known_args(argv)
    if args.command == "deploy":
        from inference_service.deploy import main as deploy_main

        return deploy_main([*extra, *args.args])
    if extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        settings = Settings.from_env()
    except ValueError as exc:
        parser.error(str(exc))
    logging.basicConfig(
        level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    if args.command == "train":
        return _train(args, settings)
    if args.command == "serve":
        from inference_service.server import serve as run

        overrides = {k: v for k in ("host", "port", "workers") if (v := getattr(args, k))}
        settings = replace(settings, **overrides)
        settings.check()
        run(settings)
        return 0
    if args.command == "predict":
        return _predict(args, settings)
    from inference_service.smoke import run as smoke_run

    return smoke_run(args.url, timeout=args.timeout, api_key=args.api_key)


def _train(args: argparse.Namespace, settings: Settings) -> int:
    from inference_service import artifact
    from inference_service.errors import ArtifactError

    model_dir = args.model_dir or settings.model_dir
    if args.if_missing:
        try:
            artifact.read(model_dir)
            return 0
        except ArtifactError:
            pass
    from inference_service.data import DataError
    from inference_service.train import GateError, TrainConfig, train

    config = TrainConfig(
        model_dir=model_dir,
        seed=args.seed,
        min_accuracy=args.min_accuracy,
        max_depth=args.max_depth,
    )
    if args.data:
        config = replace(config, data_file=args.data)
    try:
        path = train(config)
    except (GateError, DataError) as exc:
        print(f"error: {exc}", file=sys.stderr)  # noqa: T201
        return 1
    print(path)  # noqa: T201
    return 0


def _predict(args: argparse.Namespace, settings: Settings) -> int:
    from inference_service import protocol
    from inference_service.errors import ArtifactError, InferenceError
    from inference_service.model import Model

    raw = sys.stdin.buffer.read() if args.file == "-" else Path(args.file).read_bytes()
    try:
        body = raw if raw.lstrip()[:1] in (b"[", b"{") else _csv_to_json(raw)
        x = protocol.parse_records(body, max_rows=sys.maxsize)
        model = Model.load(settings.model_dir)
    except (InferenceError, ArtifactError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)  # noqa: T201
        return 1
    labels, probabilities = model.predict(x)
    if args.format == "json":
        sys.stdout.buffer.write(
            protocol.records_response(
                model.name, model.version, labels, probabilities, model.labels
            )
            + b"\n"
        )
        return 0
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([*FEATURES, "prediction", *(f"p_{c}" for c in model.labels)])
    for row, label, p in zip(x.tolist(), labels, probabilities.tolist(), strict=True):
        writer.writerow([*(f"{v:g}" for v in row), label, *(f"{v:.6g}" for v in p)])
    sys.stdout.write(out.getvalue())
    return 0


def _csv_to_json(raw: bytes) -> bytes:
    """CSV with a header naming the four features (extra columns, like species, are ignored)."""
    reader = csv.DictReader(io.StringIO(raw.decode()))
    missing = [f for f in FEATURES if f not in (reader.fieldnames or ())]
    if missing:
        raise ValueError(f"CSV header lacks {', '.join(missing)}")
    records = []
    for line, row in enumerate(reader, start=2):
        try:
            record = {f: float(row[f]) for f in FEATURES}
        except (TypeError, ValueError):
            record = {}
        if len(record) != len(FEATURES) or not all(map(math.isfinite, record.values())):
            raise ValueError(f"CSV row {line}: every feature must be a finite number")
        records.append(record)
    return json.dumps(records).encode()


if __name__ == "__main__":
    sys.exit(main())
