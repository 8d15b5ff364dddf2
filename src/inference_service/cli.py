"""`inference-service`: train, import, serve, predict, smoke, models, deploy."""

from __future__ import annotations

import argparse
import csv
import io
import json
import logging
import sys
from pathlib import Path
from typing import Any

from inference_service.config import Settings

# Bad rows `predict` lists before it stops listing.
MAX_REPORTED_ROWS = 20


class _Defaults(argparse.ArgumentDefaultsHelpFormatter):
    """A flag's default, unless it is empty or off or the help already says where it comes from."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        if action.default in (None, False, "", []) or "default" in text:
            return text
        return super()._get_help_string(action)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="inference-service", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    helpful = _Defaults

    train = commands.add_parser(
        "train",
        help="train, gate and publish models from their specs",
        description="Train the model(s) a spec describes (data/input/train/<name>.toml), run the "
        "quality, parity and champion gates, and publish a new version to the repository.",
        formatter_class=helpful,
    )
    train.add_argument("names", nargs="*", help="models to train (default with --all: every spec)")
    train.add_argument("--all", action="store_true", help="train every spec in --specs")
    train.add_argument("--specs", type=Path, default=Path("data/input/train"), help="spec folder")
    train.add_argument(
        "--model-dir", type=Path, help="repository root (default INFERENCE_MODEL_DIR)"
    )
    train.add_argument(
        "--if-missing", action="store_true", help="skip models that already have a current version"
    )
    _promotion_flags(train)

    imp = commands.add_parser(
        "import",
        help="publish an ONNX model trained elsewhere",
        description="Check an ONNX file against its spec (features, labels, task), measure the "
        "spec's gates on the spec's labelled CSV, and publish it as a versioned artifact.",
        formatter_class=helpful,
    )
    imp.add_argument("name", help="model name (its spec is <specs>/<name>.toml unless --spec)")
    imp.add_argument("onnx", type=Path, help="the ONNX file")
    imp.add_argument("--spec", type=Path, help="spec file (default <specs>/<name>.toml)")
    imp.add_argument("--specs", type=Path, default=Path("data/input/train"), help="spec folder")
    imp.add_argument("--model-dir", type=Path, help="repository root (default INFERENCE_MODEL_DIR)")
    _promotion_flags(imp)

    serve = commands.add_parser(
        "serve",
        help="serve the model repository over HTTP",
        description="Serve every model of the repository (INFERENCE_* settings; flags win).",
        formatter_class=helpful,
    )
    serve.add_argument("--host", help="interface to bind (default INFERENCE_HOST or 127.0.0.1)")
    serve.add_argument("--port", type=int, help="TCP port (default INFERENCE_PORT or 6666)")
    serve.add_argument("--workers", type=int, help="worker processes (default INFERENCE_WORKERS)")

    predict = commands.add_parser(
        "predict", help="score a CSV or JSON file offline", formatter_class=helpful
    )
    predict.add_argument("file", help="CSV with a header, JSON records, or - for stdin")
    predict.add_argument("--model", help="model name (default INFERENCE_DEFAULT_MODEL)")
    predict.add_argument("--format", choices=("csv", "json"), default="csv", help="output format")
    predict.add_argument(
        "--keep",
        action="append",
        default=[],
        metavar="COLUMN",
        help="input column to carry through to the output (an id, say); repeat for more",
    )

    smoke = commands.add_parser(
        "smoke", help="check a running service end to end", formatter_class=helpful
    )
    smoke.add_argument("url", help="base URL, e.g. http://127.0.0.1:6666")
    smoke.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for readiness")
    smoke.add_argument(
        "--api-key",
        help="bearer key (default: INFERENCE_API_KEY, else the first INFERENCE_API_KEYS)",
    )

    models = commands.add_parser("models", help="list, promote or roll back model versions")
    models.add_argument(
        "--model-dir", type=Path, help="repository root (default INFERENCE_MODEL_DIR)"
    )
    actions = models.add_subparsers(dest="action", required=True)
    listing = actions.add_parser("list", help="versions with metrics; * marks current")
    listing.add_argument("name", nargs="?", help="one model (default: all)")
    promote = actions.add_parser("promote", help="make VERSION current (verified first)")
    promote.add_argument("name")
    promote.add_argument("version")
    rollback = actions.add_parser("rollback", help="make the version before current current again")
    rollback.add_argument("name")

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
    overrides = {}
    if args.command == "serve":
        overrides = {k: v for k in ("host", "port", "workers") if (v := getattr(args, k))}
    try:
        settings = Settings.from_env(overrides=overrides)
    except ValueError as exc:
        parser.error(str(exc))
    logging.basicConfig(
        level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    if args.command == "train":
        return _train(args, settings)
    if args.command == "import":
        return _import(args, settings)
    if args.command == "serve":
        from inference_service.server import serve as run

        return run(settings)
    if args.command == "predict":
        return _predict(args, settings)
    if args.command == "models":
        return _models(args, settings)
    from inference_service.smoke import run as smoke_run

    return smoke_run(args.url, timeout=args.timeout, api_key=args.api_key)


def _promotion_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--force",
        action="store_true",
        help="promote even when the live version is better beyond the spec's tolerance",
    )
    parser.add_argument("--reason", default="", help="why --force; recorded in the model card")


def _fail(message: object) -> int:
    print(f"error: {message}", file=sys.stderr)  # noqa: T201
    return 1


def _train(args: argparse.Namespace, settings: Settings) -> int:
    from inference_service import artifact, spec
    from inference_service.data import DataError
    from inference_service.errors import ArtifactError
    from inference_service.train import GateError, Options, Refused, train

    root = args.model_dir or settings.model_dir
    try:
        specs = spec.discover(args.specs)
        if args.names:
            known = {s.name: s for s in specs}
            unknown = [n for n in args.names if n not in known]
            if unknown:
                names = ", ".join(known) or "none"
                return _fail(f"no spec for {unknown[0]!r} in {args.specs} (specs: {names})")
            specs = [known[n] for n in args.names]
        elif not args.all:
            return _fail("name the models to train, or pass --all")
    except spec.SpecError as exc:
        return _fail(exc)
    if not specs:
        return _fail(f"no specs (*.toml) in {args.specs}")
    options = Options(root=root, force=args.force, reason=args.reason)
    failed = 0
    for s in specs:
        if args.if_missing:
            try:
                artifact.read(root / s.name)
                continue
            except ArtifactError:
                pass
        try:
            print(train(s, options))  # noqa: T201
        except Refused as exc:
            failed += _fail(exc)
        except (GateError, DataError, spec.SpecError, ArtifactError) as exc:
            failed += _fail(f"{s.name}: {exc}")
    return 1 if failed else 0


def _import(args: argparse.Namespace, settings: Settings) -> int:
    from inference_service import spec
    from inference_service.data import DataError
    from inference_service.errors import ArtifactError
    from inference_service.train import GateError, Options, Refused, import_onnx

    try:
        s = spec.load(args.spec or args.specs / f"{args.name}{spec.SPEC_SUFFIX}")
        if s.name != args.name:
            return _fail(f"{s.path} describes model {s.name!r}, not {args.name!r}")
        if s.estimator is not None:
            return _fail(f"{s.path}: an imported model's spec has no estimator")
        options = Options(
            root=args.model_dir or settings.model_dir, force=args.force, reason=args.reason
        )
        print(import_onnx(s, args.onnx, options))  # noqa: T201
    except (Refused, GateError, DataError, spec.SpecError, ArtifactError) as exc:
        return _fail(exc)
    return 0


def _predict(args: argparse.Namespace, settings: Settings) -> int:
    from inference_service import protocol
    from inference_service.errors import ArtifactError, InferenceError
    from inference_service.model import Model

    name = args.model or settings.default_model
    root = settings.model_dir
    model_dir = root if (root / "current").exists() else root / name
    try:
        model = Model.load(model_dir)
    except ArtifactError as exc:
        return _fail(f"model {name!r}: {exc}")
    try:
        raw = sys.stdin.buffer.read() if args.file == "-" else Path(args.file).read_bytes()
    except OSError as exc:
        return _fail(f"{args.file}: {exc.strerror or exc}")
    source = "stdin" if args.file == "-" else args.file
    kept: list[list[str]] = []
    try:
        if raw.lstrip()[:1] in (b"[", b"{"):
            if args.keep:
                return _fail("--keep needs CSV input")
            x = protocol.parse_records(raw, model.signature, max_rows=sys.maxsize)
        else:
            x, kept = _read_csv(raw, source, model.features, args.keep)
    except InferenceError as exc:
        return _fail(f"{source}: {exc}")
    except ValueError as exc:
        return _fail(exc)
    prediction = model.predict(x)
    if args.format == "json":
        sys.stdout.buffer.write(
            protocol.records_response(
                model.name, model.version, prediction, model.labels, with_probabilities=True
            )
            + b"\n"
        )
        return 0
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    classes = [f"p_{c}" for c in model.labels]
    writer.writerow([*args.keep, *model.features, "prediction", *classes])
    answers = protocol.answers(prediction)
    probabilities: list[Any] = (
        prediction.probabilities.tolist() if prediction.probabilities is not None else []
    )
    for i, (row, answer) in enumerate(zip(x.tolist(), answers, strict=True)):
        p = [f"{v:.6g}" for v in probabilities[i]] if probabilities else []
        value = answer if isinstance(answer, str) else f"{answer:.6g}"
        writer.writerow([*(kept[i] if kept else []), *(f"{v:g}" for v in row), value, *p])
    sys.stdout.write(out.getvalue())
    return 0


def _read_csv(
    raw: bytes, source: str, features: tuple[str, ...], keep: list[str]
) -> tuple[Any, list[list[str]]]:
    """Rows of a CSV with a header naming the features; every bad cell is reported."""
    import math

    import numpy as np

    try:
        text = raw.decode()
    except UnicodeDecodeError:
        raise ValueError(f"{source}: not UTF-8 text (expected CSV or JSON)") from None
    reader = csv.DictReader(io.StringIO(text))
    header = reader.fieldnames or []
    missing = [f for f in (*features, *keep) if f not in header]
    if missing:
        raise ValueError(
            f"{source}: the header lacks column {missing[0]!r} "
            f"(header: {', '.join(header) or 'empty'}; the model needs {', '.join(features)})"
        )
    rows, kept, problems = [], [], []
    for line, record in enumerate(reader, start=2):
        values = []
        for f in features:
            cell = record.get(f)
            try:
                value = float(cell)  # type: ignore[arg-type]
                ok = math.isfinite(value) and abs(value) < 3.4e38
            except (TypeError, ValueError):
                ok = False
            if not ok:
                problems.append(
                    f"{source}, row {line}, column {f}: {cell!r} is not a finite number"
                )
                value = 0.0
            values.append(value)
        rows.append(values)
        kept.append([record.get(k) or "" for k in keep])
    if problems:
        more = len(problems) - MAX_REPORTED_ROWS
        listed = problems[:MAX_REPORTED_ROWS] + ([f"... and {more} more"] if more > 0 else [])
        raise ValueError("\n".join(listed))
    if not rows:
        raise ValueError(f"{source}: no data rows")
    return np.array(rows, dtype=np.float32), kept


def _models(args: argparse.Namespace, settings: Settings) -> int:
    from inference_service import artifact
    from inference_service.errors import ArtifactError
    from inference_service.model import Model

    root: Path = args.model_dir or settings.model_dir
    if args.action == "list":
        if not root.is_dir():
            return _fail(f"{root}: no such model repository")
        names = [args.name] if args.name else sorted(p.name for p in root.iterdir() if p.is_dir())
        listing = []
        for name in names:
            directory = root / name
            if not directory.is_dir():
                return _fail(f"no model {name!r} in {root}")
            try:
                current = artifact.current_version(directory)
            except ArtifactError:
                current = None
            for version in artifact.versions(directory):
                card = json.loads((directory / version / artifact.CARD_FILE).read_text())
                listing.append(
                    {
                        "model": name,
                        "version": version,
                        "current": version == current,
                        "created_at": card.get("created_at"),
                        "metrics": {
                            k.removeprefix("holdout_"): v
                            for k, v in card.get("metrics", {}).items()
                            if k.startswith("holdout_") and k != "holdout_rows"
                        },
                        "promotion": card.get("promotion", {}).get("decision"),
                    }
                )
        for entry in listing:
            mark = "*" if entry["current"] else " "
            figures = " ".join(f"{k}={v:g}" for k, v in entry["metrics"].items())
            print(  # noqa: T201
                f"{mark} {entry['model']:<16} {entry['version']}  {entry['created_at']}  "
                f"{figures}  ({entry['promotion'] or 'n/a'})"
            )
        return 0
    directory = root / args.name
    try:
        if args.action == "promote":
            version = args.version
        else:
            current = artifact.current_version(directory)
            history = artifact.versions(directory)
            if current not in history or history.index(current) == 0:
                return _fail(f"{args.name}: no version before {current} to roll back to")
            version = history[history.index(current) - 1]
        Model.load(directory, version)  # the same checks as a reload, before the pointer moves
    except ArtifactError as exc:
        return _fail(f"{args.name}: {exc}")
    artifact.point_to(directory, version)
    print(f"{args.name}: current is now {version}")  # noqa: T201
    return 0


if __name__ == "__main__":
    sys.exit(main())
