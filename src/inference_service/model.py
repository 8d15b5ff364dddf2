"""The runtime model: a verified ONNX artifact behind predict(array) -> labels, probabilities."""

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

INPUT_NAME = "input"
OUTPUTS = ("label", "probabilities")
PARITY_MIN_ROWS = 10_000


@dataclass(frozen=True)
class Model:
    name: str
    version: str
    labels: tuple[str, ...]
    features: tuple[str, ...]
    card: dict[str, Any]
    session: ort.InferenceSession = field(repr=False)
    loaded_at: float = field(default_factory=time.time)

    @classmethod
    def load(cls, model_dir: Path, version: str | None = None) -> Model:
        """Load and verify a version (default: current). Raises ArtifactError when unusable."""
        art = artifact.read(model_dir, version)
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
        outputs = tuple(o.name for o in session.get_outputs())
        if outputs != OUTPUTS or [i.name for i in session.get_inputs()] != [INPUT_NAME]:
            raise ArtifactError(f"{art.path}: unexpected model signature, outputs {outputs}")
        card = art.card
        checked = card.get("parity", {})
        if checked.get("mismatches") != 0 or checked.get("rows_checked", 0) < PARITY_MIN_ROWS:
            raise ArtifactError(f"{art.path}: the model card does not record a passed parity gate")
        return cls(
            name=card["name"],
            version=art.version,
            labels=tuple(card["labels"]),
            features=tuple(card["features"]),
            card=card,
            session=session,
        )

    def predict(self, x: npt.NDArray[np.float32]) -> tuple[list[str], npt.NDArray[np.float32]]:
        """Labels and class probabilities for a float32 matrix [N, 4]."""
        labels, probabilities = self.session.run(OUTPUTS, {INPUT_NAME: x})
        return labels.tolist(), probabilities
