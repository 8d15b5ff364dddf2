"""Train -> quality gate -> ONNX export -> parity gate -> atomic artifact write."""

from __future__ import annotations

import json
import logging
import os
import subprocess
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib.metadata import version as package_version
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import onnxruntime as ort
from skl2onnx import convert_sklearn
from skl2onnx.common.data_types import FloatTensorType
from sklearn.metrics import accuracy_score, confusion_matrix
from sklearn.model_selection import StratifiedKFold, cross_val_score, train_test_split
from sklearn.tree import DecisionTreeClassifier

from inference_service import FEATURES, LABELS, MODEL_NAME, artifact, data, drift

log = logging.getLogger(__name__)

INPUT_NAME = "input"
PARITY_RANDOM_ROWS = 10_000


class GateError(RuntimeError):
    """The trained model failed a gate; nothing was written."""


@dataclass(frozen=True)
class TrainConfig:
    data_file: Path = data.DATA_FILE
    model_dir: Path = Path("models/iris")
    seed: int = 42
    test_size: float = 0.2
    folds: int = 5
    min_accuracy: float = 0.90
    max_depth: int | None = None


def train(config: TrainConfig) -> Path:
    """Train, gate and publish a model; returns the version directory."""
    x, y = data.load(config.data_file)
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=config.test_size, stratify=y, random_state=config.seed
    )
    params = {"criterion": "gini", "max_depth": config.max_depth, "random_state": config.seed}
    folds = StratifiedKFold(n_splits=config.folds, shuffle=True, random_state=config.seed)
    cv = cross_val_score(DecisionTreeClassifier(**params), x_train, y_train, cv=folds)
    model = DecisionTreeClassifier(**params).fit(x_train, y_train)
    holdout = float(accuracy_score(y_test, model.predict(x_test)))
    log.info("cv accuracy %.4f ± %.4f, held-out accuracy %.4f", cv.mean(), cv.std(), holdout)
    if holdout < config.min_accuracy:
        raise GateError(
            f"held-out accuracy {holdout:.4f} is below the gate {config.min_accuracy:.4f}; "
            "no model written"
        )

    onnx = export(model)
    checked = parity(model, onnx, x)
    data_sha = artifact.sha256(config.data_file.read_bytes())
    version = _version(model, data_sha, params)
    card: dict[str, Any] = {
        "name": MODEL_NAME,
        "version": version,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "git_commit": _git_commit(),
        "data_file": str(config.data_file),
        "data_sha256": data_sha,
        "features": list(FEATURES),
        "labels": list(LABELS),
        "algorithm": "sklearn.tree.DecisionTreeClassifier",
        "hyperparameters": params,
        "metrics": {
            "cv_folds": config.folds,
            "cv_accuracy_mean": round(float(cv.mean()), 6),
            "cv_accuracy_std": round(float(cv.std()), 6),
            "holdout_accuracy": round(holdout, 6),
            "holdout_rows": len(y_test),
            "train_rows": len(y_train),
            "min_accuracy": config.min_accuracy,
            "confusion_matrix": confusion_matrix(y_test, model.predict(x_test), labels=LABELS)
            .astype(int)
            .tolist(),
        },
        "parity": {"rows_checked": checked, "mismatches": 0},
        "tree": {"depth": int(model.get_depth()), "leaves": int(model.get_n_leaves())},
        "libraries": {
            name: package_version(name)
            for name in ("scikit-learn", "skl2onnx", "onnx", "onnxruntime", "numpy")
        },
        "onnx_sha256": artifact.sha256(onnx),
        drift.CARD_KEY: drift.reference(x_train, FEATURES),
    }
    path = artifact.write(
        config.model_dir, onnx, card, extras=lambda d: _card_files(d, card, model)
    )
    log.info("model %s written to %s", version, path)
    return path


def _version(model: DecisionTreeClassifier, data_sha: str, params: dict[str, Any]) -> str:
    """A short hash of what determines the model: data, hyperparameters, the learned tree, code.

    The ONNX bytes are not used: the exporter numbers node names per process, so the same model
    can serialize differently.
    """
    tree = model.tree_
    parts = [
        data_sha.encode(),
        json.dumps(params, sort_keys=True).encode(),
        tree.feature.tobytes(),
        tree.threshold.tobytes(),
        tree.value.tobytes(),
        package_version("inference-service").encode(),
        package_version("skl2onnx").encode(),
    ]
    return artifact.sha256(b"\0".join(parts))[:12]


def export(model: DecisionTreeClassifier) -> bytes:
    """ONNX with a label tensor and a probability tensor (no ZipMap)."""
    proto = convert_sklearn(
        model,
        initial_types=[(INPUT_NAME, FloatTensorType([None, len(FEATURES)]))],
        options={id(model): {"zipmap": False}},
        target_opset={"": 17, "ai.onnx.ml": 3},
    )
    proto.doc_string = ""
    return bytes(proto.SerializeToString())


def parity(model: DecisionTreeClassifier, onnx: bytes, x: npt.NDArray[np.float64]) -> int:
    """Check that ONNX and scikit-learn agree on every row; returns the rows checked."""
    rows = parity_rows(model, x)
    session = ort.InferenceSession(onnx, providers=["CPUExecutionProvider"])
    onnx_labels = session.run(["label"], {INPUT_NAME: rows})[0]
    expected = model.predict(rows)
    mismatched = np.flatnonzero(onnx_labels != expected)
    if mismatched.size:
        i = int(mismatched[0])
        raise GateError(
            f"ONNX disagrees with scikit-learn on {mismatched.size} of {len(rows)} rows, "
            f"e.g. {rows[i].tolist()}: {onnx_labels[i]} != {expected[i]}; no model written"
        )
    return len(rows)


def parity_rows(model: DecisionTreeClassifier, x: npt.NDArray[np.float64]) -> npt.NDArray[Any]:
    """The training rows, random rows over the feature range, and rows on every split threshold."""
    rng = np.random.default_rng(0)
    low, high = x.min(axis=0) - 1, x.max(axis=0) + 1
    random_rows = rng.uniform(low, high, size=(PARITY_RANDOM_ROWS, x.shape[1]))
    edges = []
    tree = model.tree_
    for node in np.flatnonzero(tree.feature >= 0):
        feature, threshold = int(tree.feature[node]), np.float32(tree.threshold[node])
        for value in (np.nextafter(threshold, -np.inf), threshold, np.nextafter(threshold, np.inf)):
            row = rng.uniform(low, high).astype(np.float32)
            row[feature] = value
            edges.append(row)
    return np.vstack([x, random_rows, np.array(edges)]).astype(np.float32)


def _card_files(directory: Path, card: dict[str, Any], model: DecisionTreeClassifier) -> None:
    """Plots and a Markdown card next to model.json, for people rather than programs."""
    os.environ.setdefault("MPLBACKEND", "Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import ConfusionMatrixDisplay
    from sklearn.tree import plot_tree

    fig, ax = plt.subplots(figsize=(14, 8))
    plot_tree(model, feature_names=list(FEATURES), class_names=list(LABELS), filled=True, ax=ax)
    fig.savefig(directory / "tree.png", dpi=80, bbox_inches="tight")
    plt.close(fig)
    matrix = np.array(card["metrics"]["confusion_matrix"])
    fig, ax = plt.subplots(figsize=(5, 4))
    ConfusionMatrixDisplay(matrix, display_labels=list(LABELS)).plot(ax=ax, colorbar=False)
    ax.set_title(f"held-out confusion matrix ({card['metrics']['holdout_rows']} rows)")
    fig.savefig(directory / "confusion_matrix.png", dpi=80, bbox_inches="tight")
    plt.close(fig)
    (directory / "model_card.md").write_text(model_card(card))


def model_card(card: dict[str, Any]) -> str:
    m = card["metrics"]
    rows = "\n".join(
        f"| {label} | " + " | ".join(str(v) for v in row) + " |"
        for label, row in zip(LABELS, m["confusion_matrix"], strict=True)
    )
    libraries = ", ".join(f"{k} {v}" for k, v in card["libraries"].items())
    cv = f"{m['cv_folds']}-fold accuracy {m['cv_accuracy_mean']:.3f} ± {m['cv_accuracy_std']:.3f}"
    holdout = f"{m['holdout_accuracy']:.3f} on {m['holdout_rows']} rows (gate {m['min_accuracy']})"
    return f"""# Model card: {card["name"]} {card["version"]}

A decision tree that predicts the iris species from four flower measurements (cm).

| field | value |
| --- | --- |
| version | `{card["version"]}` |
| trained at | {card["created_at"]} |
| git commit | `{card["git_commit"] or "unknown"}` |
| data | `{card["data_file"]}` (sha256 `{card["data_sha256"][:16]}…`) |
| features | {", ".join(card["features"])} |
| labels | {", ".join(card["labels"])} |
| hyperparameters | `{json.dumps(card["hyperparameters"])}` |
| tree | depth {card["tree"]["depth"]}, {card["tree"]["leaves"]} leaves |
| cross-validation | {cv} |
| held-out accuracy | {holdout} |
| ONNX parity | {card["parity"]["rows_checked"]} rows, {card["parity"]["mismatches"]} mismatches |
| libraries | {libraries} |

## Held-out confusion matrix (rows: true, columns: predicted)

| | {" | ".join(LABELS)} |
| --- | --- | --- | --- |
{rows}

![confusion matrix](confusion_matrix.png)

## The tree

![tree](tree.png)

## Limits
Trained on 150 flowers from three species. It always answers one of the three labels, even for
measurements far outside the training range.
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
