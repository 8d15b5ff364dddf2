"""What a model takes and gives: its signature. Training writes it; serving reads nothing else.

The signature lives in the model card (`model.json`, key `signature`) and names the model, its task,
the ordered features with their training range, the class labels (classification), the ONNX input
and output names, and example rows with the answers the model gave when it was written. Request
decoding, answer shaping, metadata, the OpenAPI document, the CLI and the smoke test all read it.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any

CLASSIFICATION = "classification"
REGRESSION = "regression"
TASKS = (CLASSIFICATION, REGRESSION)

# The service's output names per task; the ONNX graph's own names are mapped onto them.
LABEL = "label"
PROBABILITIES = "probabilities"
PREDICTION = "prediction"
OUTPUTS = {CLASSIFICATION: (LABEL, PROBABILITIES), REGRESSION: (PREDICTION,)}

# What training exports (skl2onnx): one float32 matrix in; a label and a probability tensor out
# for classifiers (no ZipMap), one value per row for regressors.
ONNX_INPUT = "input"
ONNX_OUTPUTS = {
    CLASSIFICATION: {LABEL: "label", PROBABILITIES: "probabilities"},
    REGRESSION: {PREDICTION: "variable"},
}
FEATURE_DTYPE = "float32"


class SignatureError(ValueError):
    """A signature is malformed or does not match what it describes."""


@dataclass(frozen=True)
class Feature:
    name: str
    min: float
    max: float
    dtype: str = FEATURE_DTYPE

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "dtype": self.dtype, "min": self.min, "max": self.max}


@dataclass(frozen=True)
class Signature:
    name: str
    task: str
    features: tuple[Feature, ...]
    labels: tuple[str, ...]
    onnx_input: str
    onnx_outputs: tuple[tuple[str, str], ...]
    examples: tuple[dict[str, Any], ...]
    """Rows (`inputs`) with the answer the model gave (`label` and `probabilities`, or
    `prediction`) when it was written; smoke tests and documentation examples use them."""

    # Cached: request decoding and drift counting ask for these on every request.
    @cached_property
    def feature_names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.features)

    @cached_property
    def width(self) -> int:
        return len(self.features)

    @property
    def outputs(self) -> tuple[str, ...]:
        return OUTPUTS[self.task]

    @property
    def is_classifier(self) -> bool:
        return self.task == CLASSIFICATION

    def onnx_output(self, output: str) -> str:
        return dict(self.onnx_outputs)[output]

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "task": self.task,
            "features": [f.to_json() for f in self.features],
            "outputs": list(self.outputs),
            "labels": list(self.labels),
            "onnx": {"input": self.onnx_input, "outputs": dict(self.onnx_outputs)},
            "examples": list(self.examples),
        }

    @classmethod
    def from_json(cls, raw: Any) -> Signature:
        """Parse the card's `signature`; SignatureError names what is wrong."""
        if not isinstance(raw, dict):
            raise SignatureError("the model card has no signature object")
        try:
            task = raw["task"]
            if task not in TASKS:
                raise SignatureError(f"task must be one of {', '.join(TASKS)}, got {task!r}")
            features = tuple(
                Feature(str(f["name"]), float(f["min"]), float(f["max"]), str(f["dtype"]))
                for f in raw["features"]
            )
            labels = tuple(str(label) for label in raw["labels"])
            onnx = raw["onnx"]
            signature = cls(
                name=str(raw["name"]),
                task=task,
                features=features,
                labels=labels,
                onnx_input=str(onnx["input"]),
                onnx_outputs=tuple((str(k), str(v)) for k, v in dict(onnx["outputs"]).items()),
                examples=tuple(dict(e) for e in raw["examples"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            if isinstance(exc, SignatureError):
                raise
            raise SignatureError(f"the signature is malformed: {exc!r}") from None
        signature.check()
        return signature

    def check(self) -> None:
        """Internal consistency: names, labels and outputs agree with the task."""
        names = self.feature_names
        if not names:
            raise SignatureError("the signature lists no features")
        if len(set(names)) != len(names):
            raise SignatureError(f"feature names repeat: {list(names)}")
        if any(f.dtype != FEATURE_DTYPE for f in self.features):
            raise SignatureError(f"every feature must be {FEATURE_DTYPE}")
        if self.is_classifier and len(self.labels) < 2:
            raise SignatureError("a classifier needs at least two labels")
        if not self.is_classifier and self.labels:
            raise SignatureError("a regressor has no labels")
        if tuple(k for k, _ in self.onnx_outputs) != self.outputs:
            raise SignatureError(
                f"ONNX outputs must map {', '.join(self.outputs)}, "
                f"got {[k for k, _ in self.onnx_outputs]}"
            )
        for i, example in enumerate(self.examples):
            inputs = example.get("inputs")
            if not isinstance(inputs, list) or len(inputs) != self.width:
                raise SignatureError(f"example {i} needs {self.width} inputs")
