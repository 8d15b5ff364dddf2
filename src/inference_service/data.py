"""Training data: a CSV checked against its spec, with errors naming the file, row and column."""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from inference_service.spec import Spec


class DataError(ValueError):
    """The data file does not match its spec."""


@dataclass(frozen=True)
class Dataset:
    path: Path
    features: tuple[str, ...]
    x: npt.NDArray[np.float64]
    y: npt.NDArray[np.str_] | npt.NDArray[np.float64]
    labels: tuple[str, ...]
    """Classes in the order of the probability columns (empty for regression)."""


def load(spec: Spec, path: Path | None = None) -> Dataset:
    """Read `path` (default: the spec's data file): features [N, F] and the label column."""
    path = path or spec.data
    try:
        with open(path, newline="") as f:
            reader = csv.reader(f)
            header = [h.strip() for h in next(reader, None) or []]
            table = list(reader)
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"{path}: cannot be read as CSV: {exc}") from None
    if not header:
        raise DataError(f"{path}: empty file, expected a header row")
    if len(set(header)) != len(header):
        raise DataError(f"{path}: the header repeats a column name: {header}")
    if spec.label not in header:
        raise DataError(f"{path}: no label column {spec.label!r} (columns: {', '.join(header)})")
    if not table:
        raise DataError(f"{path}: no data rows")
    features = spec.features or tuple(
        h for i, h in enumerate(header) if h != spec.label and _numeric_column(table, i)
    )
    if not features:
        raise DataError(f"{path}: no numeric column besides the label {spec.label!r}")
    missing = [f for f in features if f not in header]
    if missing:
        raise DataError(f"{path}: no column {missing[0]!r} named in {spec.path}'s features")
    if spec.label in features:
        raise DataError(f"{spec.path}: the label column {spec.label!r} is also a feature")
    columns = [header.index(f) for f in features]
    target = header.index(spec.label)
    rows: list[list[float]] = []
    y: list[Any] = []
    for line, record in enumerate(table, start=2):
        if len(record) != len(header):
            raise DataError(
                f"{path}, row {line}: expected {len(header)} columns, got {len(record)}"
            )
        rows.append([_number(path, line, header[c], record[c]) for c in columns])
        cell = record[target].strip()
        if not cell:
            raise DataError(f"{path}, row {line}, column {spec.label}: the label is empty")
        y.append(cell if spec.task == "classification" else _number(path, line, spec.label, cell))
    x = np.array(rows, dtype=np.float64)
    if spec.task != "classification":
        return Dataset(path, features, x, np.array(y, dtype=np.float64), ())
    found = sorted(set(y))
    labels = spec.labels or tuple(found)
    unknown = [label for label in found if label not in labels]
    if unknown:
        line = y.index(unknown[0]) + 2
        raise DataError(
            f"{path}, row {line}, column {spec.label}: unknown label {unknown[0]!r} "
            f"(expected one of {', '.join(labels)})"
        )
    if len(found) < 2:
        raise DataError(f"{path}: column {spec.label} needs at least two classes, got {found}")
    return Dataset(path, features, x, np.array(y), tuple(labels))


def _numeric_column(table: list[list[str]], column: int) -> bool:
    try:
        for record in table:
            float(record[column])
    except (ValueError, IndexError):
        return False
    return True


def _number(path: Path, line: int, column: str, cell: str) -> float:
    try:
        value = float(cell)
    except ValueError:
        raise DataError(
            f"{path}, row {line}, column {column}: {cell!r} is not a number "
            "(features must be numeric; leave non-numeric columns out of `features`)"
        ) from None
    if not math.isfinite(value):
        raise DataError(f"{path}, row {line}, column {column}: {cell!r} is not finite")
    return value
