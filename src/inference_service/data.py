"""The training data set: schema and a loader that names the file, row and column of any fault."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import numpy.typing as npt

from inference_service import FEATURES, LABELS

DATA_FILE = Path("data/input/train/iris.csv")
TARGET = "species"
COLUMNS = (*FEATURES, TARGET)


class DataError(ValueError):
    """The training file does not match the schema."""


def load(path: Path = DATA_FILE) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.str_]]:
    """Return features [N, 4] and labels [N], checking every cell."""
    try:
        with open(path, newline="") as f:
            reader = csv.reader(f)
            header = next(reader, None)
            if header is None or tuple(h.strip() for h in header) != COLUMNS:
                raise DataError(f"{path}: header must be {','.join(COLUMNS)}, got {header}")
            rows, labels = [], []
            for line, record in enumerate(reader, start=2):
                if len(record) != len(COLUMNS):
                    raise DataError(
                        f"{path}, row {line}: expected {len(COLUMNS)} columns, got {len(record)}"
                    )
                rows.append(
                    [
                        _number(path, line, name, cell)
                        for name, cell in zip(FEATURES, record, strict=False)
                    ]
                )
                label = record[-1].strip()
                if label not in LABELS:
                    raise DataError(
                        f"{path}, row {line}, column {TARGET}: unknown label {label!r} "
                        f"(expected one of {', '.join(LABELS)})"
                    )
                labels.append(label)
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    if not rows:
        raise DataError(f"{path}: no data rows")
    return np.array(rows, dtype=np.float64), np.array(labels)


def _number(path: Path, line: int, column: str, cell: str) -> float:
    try:
        value = float(cell)
    except ValueError:
        raise DataError(f"{path}, row {line}, column {column}: {cell!r} is not a number") from None
    if not math.isfinite(value):
        raise DataError(f"{path}, row {line}, column {column}: {cell!r} is not finite")
    return value
