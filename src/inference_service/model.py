"""The runtime model: a verified ONNX artifact whose graph matches its signature. No Flask."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import onnxruntime as ort

from inference_service import artifact
from inference_service.errors import ArtifactError
from inference_service.signature import (
    LABEL,
    PREDICTION,
    PROBABILITIES,
    Signature,
    SignatureError,
)

Matrix = npt.NDArray[np.float32]
# The ONNX type each output of the signature must have (labels may be strings or integers).
OUTPUT_TYPES = {
    LABEL: ("tensor(string)", "tensor(int64)"),
    PROBABILITIES: ("tensor(float)",),
    PREDICTION: ("tensor(float)",),
}


@dataclass(frozen=True)
class Prediction:
    """One request's answers: labels and probabilities (classifiers) or values (regressors)."""

    labels: list[str] | None = None
    probabilities: Matrix | None = None
    values: Matrix | None = None

    @property
    def rows(self) -> int:
        answers = self.labels if self.labels is not None else self.values
        return len(answers) if answers is not None else 0


@dataclass(frozen=True)
class Model:
    name: str
    version: str
    signature: Signature
    card: dict[str, Any]
    session: ort.InferenceSession = field(repr=False)
    loaded_at: float = field(default_factory=time.time)
    _outputs: tuple[str, ...] = field(default=(), repr=False)

    @property
    def labels(self) -> tuple[str, ...]:
        return self.signature.labels

    @property
    def features(self) -> tuple[str, ...]:
        return self.signature.feature_names

    @classmethod
    def load(cls, model_dir: Path, version: str | None = None) -> Model:
        """Load and verify a version (default: current). Raises ArtifactError when unusable."""
        art = artifact.read(model_dir, version)
        card = art.card
        try:
            signature = Signature.from_json(card.get("signature"))
        except SignatureError as exc:
            raise ArtifactError(f"{art.path}: {exc}") from None
        if signature.name != card.get("name"):
            raise ArtifactError(
                f"{art.path}: the signature names model {signature.name!r}, "
                f"the card {card.get('name')!r}"
            )
        if card.get("gates", {}).get("passed") is not True:
            raise ArtifactError(f"{art.path}: the model card does not record passed gates")
        options = ort.SessionOptions()
        # One request is one small matrix: threads would cost more to wake than they save.
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        try:
            session = ort.InferenceSession(
                art.onnx, sess_options=options, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # onnxruntime raises several unrelated types for a bad file
            raise ArtifactError(f"{art.path}: onnxruntime cannot load the model: {exc}") from None
        try:
            check_graph(signature, session)
        except ArtifactError as exc:
            raise ArtifactError(f"{art.path}: {exc}") from None
        return cls(
            name=signature.name,
            version=art.version,
            signature=signature,
            card=card,
            session=session,
            _outputs=tuple(signature.onnx_output(o) for o in signature.outputs),
        )

    def predict(self, x: Matrix) -> Prediction:
        """Answers for a float32 matrix [N, n_features]."""
        results = self.session.run(self._outputs, {self.signature.onnx_input: x})
        if self.signature.is_classifier:
            labels, probabilities = results
            if labels.dtype != object:  # integer class labels: the signature holds their text
                labels = labels.astype(str)
            return Prediction(labels=labels.tolist(), probabilities=probabilities)
        return Prediction(values=np.asarray(results[0], dtype=np.float32).reshape(len(x)))


def check_graph(signature: Signature, session: ort.InferenceSession) -> None:
    """The ONNX graph takes and gives what the signature says; ArtifactError names the mismatch."""
    inputs = {i.name: i for i in session.get_inputs()}
    graph_input = inputs.get(signature.onnx_input)
    if graph_input is None or len(inputs) != 1:
        raise ArtifactError(
            f"the graph's inputs {sorted(inputs)} are not the signature's one input "
            f"{signature.onnx_input!r}"
        )
    if graph_input.type != "tensor(float)":
        raise ArtifactError(f"input {graph_input.name!r} is {graph_input.type}, not tensor(float)")
    shape = graph_input.shape
    if len(shape) != 2 or (isinstance(shape[1], int) and shape[1] != signature.width):
        raise ArtifactError(
            f"input {graph_input.name!r} has shape {shape}; the signature has "
            f"{signature.width} features"
        )
    outputs = {o.name: o for o in session.get_outputs()}
    for output in signature.outputs:
        name = signature.onnx_output(output)
        graph_output = outputs.get(name)
        if graph_output is None:
            raise ArtifactError(
                f"the graph has no output {name!r} for {output!r} (outputs: {sorted(outputs)})"
            )
        if graph_output.type not in OUTPUT_TYPES[output]:
            raise ArtifactError(
                f"output {name!r} is {graph_output.type}; {output!r} needs "
                f"{' or '.join(OUTPUT_TYPES[output])}"
            )
        if output == PROBABILITIES:
            width = graph_output.shape[-1] if graph_output.shape else None
            if isinstance(width, int) and width != len(signature.labels):
                raise ArtifactError(
                    f"output {name!r} has {width} columns; the signature has "
                    f"{len(signature.labels)} labels"
                )
