"""A model's training spec: one TOML file per model, validated with errors naming file and key.

    data/input/train/<name>.toml     next to its CSV (`data` defaults to <name>.csv)

    task = "classification"          # or "regression"
    label = "species"                # the label column
    features = ["a", "b"]            # optional: default, every other column (all must be numeric)
    estimator = "decision_tree"      # see ESTIMATORS
    test_size = 0.2                  # held-out share (stratified for classifiers)
    seed = 42
    folds = 5                        # cross-validation folds on the training part
    [params]                         # estimator hyperparameters, passed through
    max_depth = 4
    [gates]                          # classification: min_accuracy, min_macro_f1
    min_accuracy = 0.9               # regression: max_rmse, min_r2
    [promotion]                      # tolerated loss against the live version (champion)
    accuracy = 0.01                  # per gate metric: accuracy, macro_f1, rmse, r2

An imported model (`inference-service import`) uses the same file without `estimator`/`params`.
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from inference_service.signature import CLASSIFICATION, REGRESSION, TASKS

SPEC_DIR = Path("data/input/train")
SPEC_SUFFIX = ".toml"

# name -> (scikit-learn class per task); None where the task has no such estimator.
ESTIMATORS: dict[str, dict[str, str]] = {
    "decision_tree": {
        CLASSIFICATION: "sklearn.tree.DecisionTreeClassifier",
        REGRESSION: "sklearn.tree.DecisionTreeRegressor",
    },
    "random_forest": {
        CLASSIFICATION: "sklearn.ensemble.RandomForestClassifier",
        REGRESSION: "sklearn.ensemble.RandomForestRegressor",
    },
    "gradient_boosting": {
        CLASSIFICATION: "sklearn.ensemble.GradientBoostingClassifier",
        REGRESSION: "sklearn.ensemble.GradientBoostingRegressor",
    },
    "logistic_regression": {CLASSIFICATION: "sklearn.linear_model.LogisticRegression"},
    "linear_regression": {REGRESSION: "sklearn.linear_model.LinearRegression"},
    "ridge": {REGRESSION: "sklearn.linear_model.Ridge"},
}
GATES = {
    CLASSIFICATION: {"min_accuracy": "accuracy", "min_macro_f1": "macro_f1"},
    REGRESSION: {"max_rmse": "rmse", "min_r2": "r2"},
}
# For each metric, whether larger is better (the promotion rule depends on it).
HIGHER_IS_BETTER = {"accuracy": True, "macro_f1": True, "rmse": False, "r2": True}
KEYS = {
    "name",
    "data",
    "label",
    "features",
    "labels",
    "task",
    "estimator",
    "params",
    "test_size",
    "seed",
    "folds",
    "gates",
    "promotion",
    "eval_data",
    "parity_tolerance",
}


class SpecError(ValueError):
    """A spec file is invalid; the message names the file and the key."""


@dataclass(frozen=True)
class Spec:
    path: Path
    name: str
    data: Path
    label: str
    task: str
    features: tuple[str, ...] | None = None
    labels: tuple[str, ...] | None = None
    estimator: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    test_size: float = 0.2
    seed: int = 42
    folds: int = 5
    gates: dict[str, float] = field(default_factory=dict)
    promotion: dict[str, float] = field(default_factory=dict)
    eval_data: Path | None = None
    parity_tolerance: float = 1e-4
    """Largest absolute difference allowed between scikit-learn and ONNX probabilities or
    regression outputs (labels must match exactly)."""

    def error(self, message: str) -> SpecError:
        return SpecError(f"{self.path}: {message}")

    @property
    def estimator_class(self) -> str:
        assert self.estimator is not None
        return ESTIMATORS[self.estimator][self.task]


def load(path: Path) -> Spec:
    """Read and validate one spec file."""
    try:
        raw = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise SpecError(f"{path}: file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError(f"{path}: cannot be read: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise SpecError(f"{path}: not valid TOML: {exc}") from None
    return parse(raw, path)


def parse(raw: dict[str, Any], path: Path) -> Spec:
    def fail(message: str) -> SpecError:
        return SpecError(f"{path}: {message}")

    unknown = sorted(set(raw) - KEYS)
    if unknown:
        raise fail(f"unknown key {unknown[0]!r} (known keys: {', '.join(sorted(KEYS))})")
    name = _str(raw.get("name", path.stem), "name", fail)
    if not name or not all(c.isalnum() or c in "-_." for c in name) or name.startswith("."):
        raise fail(f"name {name!r} must be letters, digits, '-', '_' or '.' (used in URLs)")
    task = _str(raw.get("task"), "task", fail)
    if task not in TASKS:
        raise fail(f"task must be one of {', '.join(TASKS)}, got {task!r}")
    label = _str(raw.get("label"), "label", fail)
    data = path.parent / _str(raw.get("data", f"{path.stem}.csv"), "data", fail)
    eval_data = raw.get("eval_data")
    estimator = raw.get("estimator")
    if estimator is not None:
        estimator = _str(estimator, "estimator", fail)
        if estimator not in ESTIMATORS:
            raise fail(f"unknown estimator {estimator!r} (known: {', '.join(sorted(ESTIMATORS))})")
        if task not in ESTIMATORS[estimator]:
            raise fail(f"estimator {estimator!r} cannot do {task}")
    params = raw.get("params", {})
    if not isinstance(params, dict):
        raise fail("params must be a table")
    if params and estimator is None:
        raise fail("params given without an estimator")
    gates = _numbers(raw.get("gates", {}), "gates", set(GATES[task]), fail)
    promotion = _numbers(raw.get("promotion", {}), "promotion", set(GATES[task].values()), fail)
    if any(v < 0 for v in promotion.values()):
        raise fail("promotion tolerances must be zero or more")
    test_size = _number(raw.get("test_size", 0.2), "test_size", fail)
    if not 0 < test_size < 1:
        raise fail(f"test_size must be between 0 and 1, got {test_size}")
    seed, folds = raw.get("seed", 42), raw.get("folds", 5)
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise fail(f"seed must be a non-negative integer, got {seed!r}")
    if not isinstance(folds, int) or isinstance(folds, bool) or folds < 2:
        raise fail(f"folds must be an integer of at least 2, got {folds!r}")
    tolerance = _number(raw.get("parity_tolerance", 1e-4), "parity_tolerance", fail)
    return Spec(
        path=path,
        name=name,
        data=data,
        label=label,
        task=task,
        features=_names(raw.get("features"), "features", fail),
        labels=_names(raw.get("labels"), "labels", fail),
        estimator=estimator,
        params=dict(params),
        test_size=test_size,
        seed=seed,
        folds=folds,
        gates=gates,
        promotion=promotion,
        eval_data=None if eval_data is None else path.parent / _str(eval_data, "eval_data", fail),
        parity_tolerance=tolerance,
    )


def discover(directory: Path = SPEC_DIR) -> list[Spec]:
    """Every spec in `directory`, sorted by name; duplicate names are refused."""
    specs = [load(p) for p in sorted(directory.glob(f"*{SPEC_SUFFIX}"))]
    seen: dict[str, Path] = {}
    for s in specs:
        if s.name in seen:
            raise SpecError(f"{s.path}: model name {s.name!r} is also used by {seen[s.name]}")
        seen[s.name] = s.path
    return specs


def find(name: str, directory: Path = SPEC_DIR) -> Spec:
    for s in discover(directory):
        if s.name == name:
            return s
    known = ", ".join(s.name for s in discover(directory)) or "none"
    raise SpecError(f"no spec for model {name!r} in {directory} (specs: {known})")


def _str(value: Any, key: str, fail: Any) -> str:
    if not isinstance(value, str) or not value:
        raise fail(f"{key} must be a non-empty string, got {value!r}")
    return value


def _number(value: Any, key: str, fail: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise fail(f"{key} must be a finite number, got {value!r}")
    return float(value)


def _numbers(value: Any, key: str, allowed: set[str], fail: Any) -> dict[str, float]:
    if not isinstance(value, dict):
        raise fail(f"{key} must be a table")
    unknown = sorted(set(value) - allowed)
    if unknown:
        raise fail(f"unknown key {key}.{unknown[0]} (for this task: {', '.join(sorted(allowed))})")
    return {k: _number(v, f"{key}.{k}", fail) for k, v in value.items()}


def _names(value: Any, key: str, fail: Any) -> tuple[str, ...] | None:
    if value is None:
        return None
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise fail(f"{key} must be a non-empty list of strings")
    if len(set(value)) != len(value):
        raise fail(f"{key} has duplicates")
    return tuple(value)
