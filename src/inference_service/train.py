"""Train (or import) -> quality gate -> ONNX export -> parity gate -> champion check -> artifact.

One path for every model: a spec (spec.py) names the data, the estimator and the gates; the result
is a versioned artifact whose card carries the signature (signature.py) that serving reads.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from importlib.metadata import version as package_version
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import onnxruntime as ort

from inference_service import artifact, data, drift
from inference_service.errors import ArtifactError
from inference_service.signature import (
    CLASSIFICATION,
    LABEL,
    ONNX_INPUT,
    ONNX_OUTPUTS,
    PREDICTION,
    PROBABILITIES,
    Feature,
    Signature,
)
from inference_service.spec import GATES, HIGHER_IS_BETTER, Spec

log = logging.getLogger(__name__)

PARITY_RANDOM_ROWS = 10_000
EXAMPLES_PER_MODEL = 4
LIBRARIES = ("scikit-learn", "skl2onnx", "onnx", "onnxruntime", "numpy")
Matrix = npt.NDArray[np.float64]


class GateError(RuntimeError):
    """The model failed a gate; nothing was written."""


class Refused(RuntimeError):
    """The candidate is worse than the live version beyond tolerance; kept, not promoted."""

    def __init__(self, message: str, path: Path) -> None:
        super().__init__(message)
        self.path = path


@dataclass(frozen=True)
class Options:
    root: Path = Path("models")
    """The model repository: the model goes to root/<name>/<version>/."""
    force: bool = False
    """Promote even when the champion check refuses; the reason is recorded."""
    reason: str = ""


def train(spec: Spec, options: Options) -> Path:
    """Train, gate and publish the model a spec describes; returns the version directory."""
    if spec.estimator is None:
        raise GateError(f"{spec.path}: no estimator; use `inference-service import` for ONNX files")
    from sklearn.model_selection import KFold, StratifiedKFold, cross_val_score, train_test_split

    ds = data.load(spec)
    classifier = spec.task == CLASSIFICATION
    stratify = ds.y if classifier else None
    try:
        x_train, x_test, y_train, y_test = train_test_split(
            ds.x, ds.y, test_size=spec.test_size, stratify=stratify, random_state=spec.seed
        )
    except ValueError as exc:
        raise GateError(f"{spec.path}: cannot split {ds.path}: {exc}") from None
    estimator = _estimator(spec)
    params = estimator.get_params()
    fold_type = StratifiedKFold if classifier else KFold
    folds = fold_type(n_splits=spec.folds, shuffle=True, random_state=spec.seed)
    scoring = "accuracy" if classifier else "neg_root_mean_squared_error"
    try:
        cv = cross_val_score(estimator, x_train, y_train, cv=folds, scoring=scoring)
        model = estimator.fit(x_train, y_train)
    except (ValueError, TypeError) as exc:
        raise GateError(
            f"{spec.path}: [params] rejected by {spec.estimator_class}: {exc}"
        ) from None
    if classifier:
        ds = _with_model_classes(ds, model)
    onnx = export(model, spec, ds.x.shape[1])
    session = _session(onnx)
    signature = _signature(spec, ds, session, x_test)
    held_out = evaluate(signature, session, x_test, y_test)
    log.info("%s: held-out %s", spec.name, _figures(held_out))
    gates = check_gates(spec, held_out)
    parity = check_parity(model, session, signature, ds.x, spec.parity_tolerance)
    data_sha = artifact.sha256(ds.path.read_bytes())
    metrics: dict[str, Any] = {
        "cv_folds": spec.folds,
        f"cv_{'accuracy' if classifier else 'rmse'}_mean": round(abs(float(cv.mean())), 6),
        f"cv_{'accuracy' if classifier else 'rmse'}_std": round(float(cv.std()), 6),
        **{f"holdout_{k}": v for k, v in held_out.items()},
        "holdout_rows": len(y_test),
        "train_rows": len(y_train),
    }
    if classifier:
        from sklearn.metrics import confusion_matrix

        predicted = _run(session, signature, x_test.astype(np.float32))[LABEL]
        metrics["confusion_matrix"] = (
            confusion_matrix(y_test, predicted, labels=list(signature.labels)).astype(int).tolist()
        )
    card = _card(
        spec,
        signature,
        onnx,
        data_sha=data_sha,
        algorithm=spec.estimator_class,
        hyperparameters=_jsonable(params),
        metrics=metrics,
        gates=gates,
        parity=parity,
        fingerprint=_fingerprint(session, signature, ds.x),
        x=ds.x,
    )
    card["explanations"] = _importances(model, signature)

    def extras(directory: Path) -> None:
        _card_files(directory, card, model, x_test, y_test, session, signature)

    return _publish(spec, options, card, onnx, extras, (x_test, y_test))


def import_onnx(spec: Spec, onnx_file: Path, options: Options) -> Path:
    """Publish an ONNX model trained elsewhere: check it against the spec, gate it on the CSV.

    No pickle or joblib file is read; only the ONNX graph and the labelled CSV.
    """
    try:
        onnx = onnx_file.read_bytes()
    except OSError as exc:
        raise GateError(f"{onnx_file}: cannot be read: {exc}") from None
    try:
        session = _session(onnx)
    except ArtifactError as exc:
        raise GateError(f"{onnx_file}: {exc}") from None
    ds = data.load(spec)
    signature = _signature(spec, ds, session, ds.x, onnx_file=onnx_file)
    measured = evaluate(signature, session, ds.x, ds.y)
    log.info("%s: measured on %s: %s", spec.name, ds.path, _figures(measured))
    gates = check_gates(spec, measured)
    card = _card(
        spec,
        signature,
        onnx,
        data_sha=artifact.sha256(ds.path.read_bytes()),
        algorithm=f"imported ONNX ({onnx_file.name})",
        hyperparameters={},
        metrics={**{f"holdout_{k}": v for k, v in measured.items()}, "holdout_rows": len(ds.y)},
        gates=gates,
        parity={"imported": True, "rows_checked": 0, "mismatches": 0},
        fingerprint=artifact.sha256(onnx),
        x=ds.x,
    )
    return _publish(spec, options, card, onnx, None, (ds.x, ds.y))


# --- gates -------------------------------------------------------------------------------------


def evaluate(
    signature: Signature, session: ort.InferenceSession, x: Matrix, y: npt.NDArray[Any]
) -> dict[str, float]:
    """The gate metrics of the ONNX model itself on labelled rows."""
    out = _run(session, signature, x.astype(np.float32))
    if signature.is_classifier:
        from sklearn.metrics import accuracy_score, f1_score

        predicted = out[LABEL]
        return {
            "accuracy": round(float(accuracy_score(y, predicted)), 6),
            "macro_f1": round(float(f1_score(y, predicted, average="macro", zero_division=0)), 6),
        }
    from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score

    predicted = out[PREDICTION]
    return {
        "rmse": round(float(np.sqrt(mean_squared_error(y, predicted))), 6),
        "r2": round(float(r2_score(y, predicted)), 6),
        "mae": round(float(mean_absolute_error(y, predicted)), 6),
    }


def check_gates(spec: Spec, measured: dict[str, float]) -> dict[str, Any]:
    """Every gate of the spec against the measured metrics; GateError names the failed one."""
    for gate, threshold in spec.gates.items():
        metric = GATES[spec.task][gate]
        value = measured[metric]
        ok = value >= threshold if gate.startswith("min_") else value <= threshold
        if not ok:
            raise GateError(
                f"{spec.path}: gates.{gate}: held-out {metric} {value:.4f} fails the gate "
                f"{threshold:g}; no model written"
            )
    return {"passed": True, "gates": dict(spec.gates), "measured": dict(measured)}


def check_parity(
    model: Any, session: ort.InferenceSession, signature: Signature, x: Matrix, tolerance: float
) -> dict[str, Any]:
    """ONNX against scikit-learn: labels exactly, probabilities and values within `tolerance`
    (absolute, or relative to the value for values above 1), on the training rows, random rows
    over the feature range and, for tree models, rows on and around every split threshold."""
    rows = parity_rows(model, x)
    out = _run(session, signature, rows)
    wide = rows.astype(np.float64)
    if signature.is_classifier:
        expected = model.predict(wide).astype(str)
        reference = model.predict_proba(wide)
        # Where the two best classes tie (an ensemble's votes split evenly), float32 and float64
        # sums may break the tie differently: either label is the model's answer.
        top = np.sort(reference, axis=1)
        tied = (top[:, -1] - top[:, -2]) <= tolerance
        differ = out[LABEL] != expected
        ties = int((differ & tied).sum())
        bad = np.flatnonzero(differ & ~tied)
        if bad.size:
            i = int(bad[0])
            raise GateError(
                f"ONNX disagrees with scikit-learn on {bad.size} of {len(rows)} labels, e.g. "
                f"{rows[i].tolist()}: {out[LABEL][i]} != {expected[i]}; no model written"
            )
        actual = out[PROBABILITIES]
    else:
        actual, reference, ties = out[PREDICTION], model.predict(wide), 0
    error = np.abs(actual - reference) / np.maximum(1.0, np.abs(reference))
    worst = float(error.max())
    if worst > tolerance:
        raise GateError(
            f"ONNX differs from scikit-learn by {worst:.3g} (tolerance {tolerance:g}) on "
            f"{int((error > tolerance).reshape(len(rows), -1).any(axis=1).sum())} "
            f"of {len(rows)} rows; no model written"
        )
    return {
        "rows_checked": len(rows),
        "mismatches": 0,
        "tied_labels": ties,
        "max_difference": worst,
        "tolerance": tolerance,
    }


def parity_rows(model: Any, x: Matrix) -> npt.NDArray[np.float32]:
    """Training rows, random rows over the range, and rows on and beside every split threshold."""
    rng = np.random.default_rng(0)
    low, high = x.min(axis=0) - 1, x.max(axis=0) + 1
    random_rows = rng.uniform(low, high, size=(PARITY_RANDOM_ROWS, x.shape[1]))
    edges = []
    for tree in _trees(model):
        for node in np.flatnonzero(tree.feature >= 0):
            feature, threshold = int(tree.feature[node]), np.float32(tree.threshold[node])
            for value in (
                np.nextafter(threshold, -np.inf),
                threshold,
                np.nextafter(threshold, np.inf),
            ):
                row = rng.uniform(low, high).astype(np.float32)
                row[feature] = value
                edges.append(row)
    parts = [x, random_rows] + ([np.array(edges)] if edges else [])
    return np.vstack(parts).astype(np.float32)


def _trees(model: Any) -> list[Any]:
    if hasattr(model, "tree_"):
        return [model.tree_]
    members = getattr(model, "estimators_", None)
    if members is None:
        return []
    return [e.tree_ for e in np.ravel(np.asarray(members, dtype=object)) if hasattr(e, "tree_")]


# --- champion / challenger ---------------------------------------------------------------------


def _publish(
    spec: Spec,
    options: Options,
    card: dict[str, Any],
    onnx: bytes,
    extras: Callable[[Path], None] | None,
    held_out: tuple[Matrix, npt.NDArray[Any]],
) -> Path:
    """Compare with the live version, write the version, and move `current` if promoted."""
    model_dir = options.root / spec.name
    card["promotion"] = promotion = _compare(spec, card, onnx, model_dir, held_out)
    refused = promotion["decision"] == "refused"
    if refused and options.force:
        promotion["decision"] = "forced"
        promotion["forced_because"] = options.reason or "no reason given"
    path = artifact.write(
        model_dir, onnx, card, extras=extras, promote=not refused or options.force
    )
    if refused and not options.force:
        raise Refused(
            f"{spec.name} {card['version']} is not promoted: {promotion['reason']}; kept at {path} "
            "(`--force --reason ...` promotes it anyway)",
            path,
        )
    log.info(
        "model %s %s written to %s (%s)", spec.name, card["version"], path, promotion["decision"]
    )
    return path


def _compare(
    spec: Spec,
    card: dict[str, Any],
    onnx: bytes,
    model_dir: Path,
    held_out: tuple[Matrix, npt.NDArray[Any]],
) -> dict[str, Any]:
    """Evaluate the live version on the candidate's held-out rows (and the frozen evaluation CSV
    when the spec names one) and decide whether the candidate may replace it."""
    from inference_service.model import Model

    try:
        live = Model.load(model_dir)
    except ArtifactError:
        return {"decision": "promoted", "reason": "no live version to compare with"}
    candidate_sig = Signature.from_json(card["signature"])
    if live.version == card["version"]:
        return {"decision": "promoted", "reason": "same version as the live one"}
    if live.signature.feature_names != candidate_sig.feature_names or (
        live.signature.task != candidate_sig.task
    ):
        return {
            "decision": "promoted",
            "reason": f"the live version {live.version} has another signature; not comparable",
        }
    sets = {"held_out": held_out}
    if spec.eval_data is not None:
        frozen = data.load(spec, spec.eval_data)
        sets["eval_data"] = (frozen.x, frozen.y)
    candidate = _session(onnx)
    figures: dict[str, Any] = {}
    reasons = []
    for set_name, (x, y) in sets.items():
        new = evaluate(candidate_sig, candidate, x, y)
        old = evaluate(live.signature, live.session, x, y)
        figures[set_name] = {"candidate": new, "live": old}
        for metric, tolerance in _tolerances(spec).items():
            loss = (old[metric] - new[metric]) * (1 if HIGHER_IS_BETTER[metric] else -1)
            if loss > tolerance:
                reasons.append(
                    f"{set_name} {metric} {new[metric]:.4f} vs live {old[metric]:.4f} "
                    f"(tolerance {tolerance:g})"
                )
    return {
        "live_version": live.version,
        "figures": figures,
        "tolerance": _tolerances(spec),
        "decision": "refused" if reasons else "promoted",
        "reason": "; ".join(reasons) or "not worse than the live version beyond tolerance",
    }


def _tolerances(spec: Spec) -> dict[str, float]:
    """The metrics compared with the live version and how much worse each may be: those of the
    spec's [promotion] table, else the task's main metric with no loss allowed."""
    if spec.promotion:
        return dict(sorted(spec.promotion.items()))
    return {"accuracy": 0.0} if spec.task == CLASSIFICATION else {"rmse": 0.0}


# --- building blocks ---------------------------------------------------------------------------


def _estimator(spec: Spec) -> Any:
    module, _, name = spec.estimator_class.rpartition(".")
    cls = getattr(importlib.import_module(module), name)
    params = dict(spec.params)
    if "random_state" in cls().get_params():
        params.setdefault("random_state", spec.seed)
    try:
        return cls(**params)
    except TypeError as exc:
        raise GateError(f"{spec.path}: [params] {exc}") from None


def _with_model_classes(ds: data.Dataset, model: Any) -> data.Dataset:
    """The probability columns follow the estimator's classes_ (sorted), whatever the spec says."""
    classes = tuple(str(c) for c in model.classes_)
    return data.Dataset(ds.path, ds.features, ds.x, ds.y, classes)


def export(model: Any, spec: Spec, width: int) -> bytes:
    """ONNX with the signature's input and outputs (classifiers: label and probabilities, no
    ZipMap)."""
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType

    options = {id(model): {"zipmap": False}} if spec.task == CLASSIFICATION else None
    proto = convert_sklearn(
        model,
        initial_types=[(ONNX_INPUT, FloatTensorType([None, width]))],
        options=options,
        target_opset={"": 17, "ai.onnx.ml": 3},
    )
    proto.doc_string = ""
    return bytes(proto.SerializeToString())


def _session(onnx: bytes) -> ort.InferenceSession:
    try:
        return ort.InferenceSession(onnx, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises several unrelated types for a bad file
        raise ArtifactError(f"onnxruntime cannot load the model: {exc}") from None


def _run(
    session: ort.InferenceSession, signature: Signature, x: npt.NDArray[np.float32]
) -> dict[str, Any]:
    names = [signature.onnx_output(o) for o in signature.outputs]
    values = session.run(names, {signature.onnx_input: x})
    out = dict(zip(signature.outputs, values, strict=True))
    if LABEL in out:
        out[LABEL] = np.asarray(out[LABEL]).astype(str)
    if PREDICTION in out:
        out[PREDICTION] = np.asarray(out[PREDICTION], dtype=np.float64).reshape(len(x))
    return out


def _signature(
    spec: Spec,
    ds: data.Dataset,
    session: ort.InferenceSession,
    example_pool: Matrix,
    onnx_file: Path | None = None,
) -> Signature:
    lows, highs = ds.x.min(axis=0), ds.x.max(axis=0)
    features = tuple(
        Feature(name, float(lo), float(hi))
        for name, lo, hi in zip(ds.features, lows, highs, strict=True)
    )
    if onnx_file is None:
        onnx_input, onnx_outputs = ONNX_INPUT, ONNX_OUTPUTS[spec.task]
    else:
        onnx_input, onnx_outputs = _graph_names(spec, session, onnx_file)
    draft = Signature(
        name=spec.name,
        task=spec.task,
        features=features,
        labels=ds.labels,
        onnx_input=onnx_input,
        onnx_outputs=tuple(onnx_outputs.items()),
        examples=(),
    )
    from inference_service.model import check_graph

    try:
        check_graph(draft, session)
    except ArtifactError as exc:
        raise GateError(f"{onnx_file or spec.path}: {exc}") from None
    return replace(draft, examples=_examples(draft, session, example_pool))


def _graph_names(
    spec: Spec, session: ort.InferenceSession, onnx_file: Path
) -> tuple[str, dict[str, str]]:
    """Which graph input and outputs play which role, from their types (imported models)."""
    inputs = session.get_inputs()
    if len(inputs) != 1:
        raise GateError(f"{onnx_file}: the graph needs exactly one input, has {len(inputs)}")
    outputs = session.get_outputs()
    if spec.task == CLASSIFICATION:
        labels = [o.name for o in outputs if o.type in ("tensor(string)", "tensor(int64)")]
        probabilities = [o.name for o in outputs if o.type == "tensor(float)"]
        if len(labels) != 1 or len(probabilities) != 1:
            types = ", ".join(f"{o.name}: {o.type}" for o in outputs)
            raise GateError(
                f"{onnx_file}: a classifier needs one label tensor (string or int64) and one float "
                f"probability tensor (export without ZipMap); the graph has {types}"
            )
        return inputs[0].name, {LABEL: labels[0], PROBABILITIES: probabilities[0]}
    values = [o.name for o in outputs if o.type == "tensor(float)"]
    if len(values) != 1:
        raise GateError(f"{onnx_file}: a regressor needs one float output, has {len(values)}")
    return inputs[0].name, {PREDICTION: values[0]}


def _examples(
    signature: Signature, session: ort.InferenceSession, pool: Matrix
) -> tuple[dict[str, Any], ...]:
    """A few rows with the answers this ONNX model gives them: one per class where possible."""
    rows = pool.astype(np.float32)
    out = _run(session, signature, rows)
    chosen: list[int] = []
    if signature.is_classifier:
        for label in signature.labels:
            hits = np.flatnonzero(out[LABEL] == label)
            if hits.size:
                chosen.append(int(hits[0]))
    for i in range(len(rows)):
        if len(chosen) >= max(EXAMPLES_PER_MODEL, len(chosen)) or len(chosen) >= len(rows):
            break
        if i not in chosen:
            chosen.append(i)
    examples = []
    for i in chosen[: max(EXAMPLES_PER_MODEL, len(signature.labels))]:
        # str() of a float32 is its shortest repr: 4.4, not 4.400000095367432.
        example: dict[str, Any] = {"inputs": [float(str(v)) for v in rows[i]]}
        if signature.is_classifier:
            example[LABEL] = str(out[LABEL][i])
            example[PROBABILITIES] = [float(p) for p in np.asarray(out[PROBABILITIES][i])]
        else:
            example[PREDICTION] = float(out[PREDICTION][i])
        examples.append(example)
    return tuple(examples)


def _fingerprint(session: ort.InferenceSession, signature: Signature, x: Matrix) -> str:
    """What the model does, as bytes: its outputs on fixed rows (the ONNX bytes themselves vary
    per export run, since the exporter numbers node names per process)."""
    rng = np.random.default_rng(0)
    rows = np.vstack([x, rng.uniform(x.min(axis=0), x.max(axis=0), size=(1000, x.shape[1]))])
    out = _run(session, signature, rows.astype(np.float32))
    return artifact.sha256(b"".join(np.ascontiguousarray(v).tobytes() for v in out.values()))


def _card(
    spec: Spec,
    signature: Signature,
    onnx: bytes,
    *,
    data_sha: str,
    algorithm: str,
    hyperparameters: dict[str, Any],
    metrics: dict[str, Any],
    gates: dict[str, Any],
    parity: dict[str, Any],
    fingerprint: str,
    x: Matrix,
) -> dict[str, Any]:
    libraries = {name: _installed(name) for name in LIBRARIES}
    version = artifact.sha256(
        b"\0".join(
            [
                data_sha.encode(),
                json.dumps(_spec_json(spec), sort_keys=True).encode(),
                fingerprint.encode(),
                _installed("inference-service").encode(),
                libraries["skl2onnx"].encode(),
            ]
        )
    )[:12]
    return {
        "name": spec.name,
        "version": version,
        "task": spec.task,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "git_commit": _git_commit(),
        "spec": _spec_json(spec),
        "data_file": str(spec.data),
        "data_sha256": data_sha,
        "features": list(signature.feature_names),
        "labels": list(signature.labels),
        "algorithm": algorithm,
        "hyperparameters": hyperparameters,
        "metrics": metrics,
        "gates": gates,
        "parity": parity,
        "signature": signature.to_json(),
        drift.CARD_KEY: drift.reference(x, signature.feature_names),
        "libraries": libraries,
        "onnx_sha256": artifact.sha256(onnx),
    }


def _spec_json(spec: Spec) -> dict[str, Any]:
    return {
        "file": str(spec.path),
        "label": spec.label,
        "estimator": spec.estimator,
        "params": _jsonable(spec.params),
        "test_size": spec.test_size,
        "seed": spec.seed,
        "folds": spec.folds,
        "gates": spec.gates,
        "promotion": spec.promotion,
        "eval_data": None if spec.eval_data is None else str(spec.eval_data),
    }


def _jsonable(params: dict[str, Any]) -> dict[str, Any]:
    return {
        k: v if isinstance(v, str | int | float | bool | None) else repr(v)
        for k, v in params.items()
    }


def _importances(model: Any, signature: Signature) -> dict[str, float] | None:
    values = getattr(model, "feature_importances_", None)
    if values is None and hasattr(model, "coef_"):
        values = np.abs(np.atleast_2d(model.coef_)).mean(axis=0)
    if values is None:
        return None
    return {n: round(float(v), 6) for n, v in zip(signature.feature_names, values, strict=True)}


def _figures(measured: dict[str, float]) -> str:
    return ", ".join(f"{k} {v:.4f}" for k, v in measured.items())


def _installed(name: str) -> str:
    try:
        return package_version(name)
    except Exception:  # a source tree that was never installed
        return "unknown"


def _card_files(
    directory: Path,
    card: dict[str, Any],
    model: Any,
    x_test: Matrix,
    y_test: npt.NDArray[Any],
    session: ort.InferenceSession,
    signature: Signature,
) -> None:
    """Plots and a Markdown card next to model.json, for people rather than programs."""
    os.environ.setdefault("MPLBACKEND", "Agg")
    import matplotlib.pyplot as plt

    plots = []
    if signature.is_classifier:
        from sklearn.metrics import ConfusionMatrixDisplay

        fig, ax = plt.subplots(figsize=(5, 4))
        matrix = np.array(card["metrics"]["confusion_matrix"])
        ConfusionMatrixDisplay(matrix, display_labels=list(signature.labels)).plot(
            ax=ax, colorbar=False
        )
        ax.set_title(f"held-out confusion matrix ({card['metrics']['holdout_rows']} rows)")
        fig.savefig(directory / "confusion_matrix.png", dpi=80, bbox_inches="tight")
        plt.close(fig)
        plots.append(
            ("Held-out confusion matrix (rows: true, columns: predicted)", "confusion_matrix.png")
        )
    else:
        predicted = _run(session, signature, x_test.astype(np.float32))[PREDICTION]
        fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
        left.scatter(y_test, predicted, s=10)
        bounds = [
            float(min(y_test.min(), predicted.min())),
            float(max(y_test.max(), predicted.max())),
        ]
        left.plot(bounds, bounds, color="grey", linewidth=1)
        left.set(xlabel="actual", ylabel="predicted", title="held-out: predicted vs actual")
        right.scatter(predicted, y_test - predicted, s=10)
        right.axhline(0, color="grey", linewidth=1)
        right.set(xlabel="predicted", ylabel="residual (actual - predicted)", title="residuals")
        fig.savefig(directory / "predicted_vs_actual.png", dpi=80, bbox_inches="tight")
        plt.close(fig)
        plots.append(("Held-out predictions and residuals", "predicted_vs_actual.png"))
    importances = card.get("explanations")
    if importances:
        fig, ax = plt.subplots(figsize=(6, 0.35 * len(importances) + 1))
        names = sorted(importances, key=importances.__getitem__)
        ax.barh(names, [importances[n] for n in names])
        ax.set_title("feature importance")
        fig.savefig(directory / "feature_importance.png", dpi=80, bbox_inches="tight")
        plt.close(fig)
        plots.append(("Feature importance", "feature_importance.png"))
    (directory / "model_card.md").write_text(model_card(card, plots))


def model_card(card: dict[str, Any], plots: list[tuple[str, str]] | None = None) -> str:
    m = card["metrics"]
    sig = card["signature"]
    held_out = ", ".join(
        f"{k.removeprefix('holdout_')} {v:.4f}"
        for k, v in m.items()
        if k.startswith("holdout_") and k != "holdout_rows"
    )
    features = ", ".join(f"{f['name']} [{f['min']:g}, {f['max']:g}]" for f in sig["features"])
    gates = ", ".join(f"{k} {v:g}" for k, v in card["gates"]["gates"].items()) or "none"
    libraries = ", ".join(f"{k} {v}" for k, v in card["libraries"].items())
    promotion = card.get("promotion", {})
    figures = "\n\n".join(f"## {title}\n\n![{title}]({file})" for title, file in plots or [])
    return f"""# Model card: {card["name"]} {card["version"]}

| field | value |
| --- | --- |
| task | {card["task"]} |
| version | `{card["version"]}` |
| trained at | {card["created_at"]} |
| git commit | `{card["git_commit"] or "unknown"}` |
| data | `{card["data_file"]}` (sha256 `{card["data_sha256"][:16]}…`) |
| features (training range) | {features} |
| labels | {", ".join(sig["labels"]) or "n/a (regression)"} |
| algorithm | {card["algorithm"]} |
| hyperparameters | `{json.dumps(card["hyperparameters"])}` |
| held-out | {held_out} on {m["holdout_rows"]} rows |
| gates | {gates} (passed) |
| ONNX parity | {card["parity"]["rows_checked"]} rows, {card["parity"]["mismatches"]} mismatches |
| promotion | {promotion.get("decision", "n/a")}: {promotion.get("reason", "")} |
| libraries | {libraries} |

{figures}

## Limits
The model always answers, even for inputs far outside the training range above; `/metrics` counts
such inputs per feature (`inference_out_of_range_total`).
"""


def _git_commit() -> str | None:
    if commit := os.environ.get("GIT_COMMIT"):
        return commit
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None
