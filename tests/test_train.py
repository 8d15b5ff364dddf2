import json
from pathlib import Path

import numpy as np
import pytest
from sklearn.tree import DecisionTreeClassifier

from inference_service import artifact
from inference_service.data import load
from inference_service.errors import ArtifactError
from inference_service.train import (
    PARITY_RANDOM_ROWS,
    GateError,
    TrainConfig,
    export,
    parity,
    parity_rows,
    train,
)

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "data/input/train/iris.csv"


def test_trained_artifact_has_a_complete_model_card(trained: Path) -> None:
    art = artifact.read(trained)
    card = art.card
    assert card["version"] == (trained / "current").read_text().strip()
    assert card["onnx_sha256"] == artifact.sha256(art.onnx)
    assert card["data_sha256"] == artifact.sha256(DATA.read_bytes())
    assert card["features"] == ["sepal_length", "sepal_width", "petal_length", "petal_width"]
    assert card["labels"] == ["setosa", "versicolor", "virginica"]
    assert card["metrics"]["holdout_accuracy"] >= 0.9
    assert card["metrics"]["cv_folds"] == 5
    assert np.array(card["metrics"]["confusion_matrix"]).sum() == card["metrics"]["holdout_rows"]
    assert card["parity"] == {"rows_checked": card["parity"]["rows_checked"], "mismatches": 0}
    assert card["parity"]["rows_checked"] >= 150 + PARITY_RANDOM_ROWS
    assert {"scikit-learn", "skl2onnx", "onnxruntime", "numpy"} <= set(card["libraries"])
    for extra in ("model_card.md", "tree.png", "confusion_matrix.png"):
        assert (art.path / extra).stat().st_size > 0


def test_same_data_code_and_seed_give_the_same_version(trained: Path, tmp_path: Path) -> None:
    again = train(TrainConfig(data_file=DATA, model_dir=tmp_path / "iris"))
    assert again.name == artifact.current_version(trained)


def test_another_seed_gives_another_version(trained: Path, tmp_path: Path) -> None:
    other = train(TrainConfig(data_file=DATA, model_dir=tmp_path / "iris", seed=7))
    assert other.name != artifact.current_version(trained)


def test_accuracy_gate_refuses_and_writes_nothing(tmp_path: Path) -> None:
    model_dir = tmp_path / "iris"
    with pytest.raises(GateError, match="below the gate"):
        train(TrainConfig(data_file=DATA, model_dir=model_dir, min_accuracy=0.99))
    assert not model_dir.exists()


def test_parity_rows_cover_every_split_threshold_exactly() -> None:
    x, y = load(DATA)
    model = DecisionTreeClassifier(random_state=0).fit(x, y)
    rows = parity_rows(model, x)
    tree = model.tree_
    for node in np.flatnonzero(tree.feature >= 0):
        threshold = np.float32(tree.threshold[node])
        assert (rows[:, tree.feature[node]] == threshold).any()
    assert len(rows) >= 150 + PARITY_RANDOM_ROWS


def test_parity_gate_catches_an_onnx_model_that_disagrees() -> None:
    x, y = load(DATA)
    model = DecisionTreeClassifier(random_state=0).fit(x, y)
    shallow = DecisionTreeClassifier(random_state=0, max_depth=1).fit(x, y)
    assert parity(model, export(model), x) >= 10_000
    with pytest.raises(GateError, match="ONNX disagrees with scikit-learn"):
        parity(model, export(shallow), x)


def test_crash_mid_write_leaves_current_model_in_place(model_dir: Path) -> None:
    before = artifact.current_version(model_dir)
    art = artifact.read(model_dir)
    card = {**art.card, "version": "crashed0000", "onnx_sha256": artifact.sha256(b"new")}

    def crash(directory: Path) -> None:
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        artifact.write(model_dir, b"new", card, extras=crash)
    assert artifact.current_version(model_dir) == before
    assert sorted(p.name for p in model_dir.iterdir()) == sorted([before, "current"])
    artifact.read(model_dir)


def test_tampered_model_fails_its_checksum(model_dir: Path) -> None:
    version = artifact.current_version(model_dir)
    onnx = model_dir / version / "model.onnx"
    onnx.write_bytes(onnx.read_bytes()[:-1] + b"\x00")
    with pytest.raises(ArtifactError, match="fails its checksum"):
        artifact.read(model_dir)


@pytest.mark.parametrize("pointer", ["", "../etc", ".hidden", "absent"])
def test_bad_pointer_is_an_artifact_error(model_dir: Path, pointer: str) -> None:
    (model_dir / "current").write_text(pointer)
    with pytest.raises(ArtifactError):
        artifact.read(model_dir)


def test_card_that_describes_another_version_is_refused(model_dir: Path) -> None:
    version = artifact.current_version(model_dir)
    card_file = model_dir / version / "model.json"
    card = json.loads(card_file.read_text())
    card["version"] = "someoneelse"
    card_file.write_text(json.dumps(card))
    with pytest.raises(ArtifactError, match="does not describe version"):
        artifact.read(model_dir)


def test_unreadable_model_is_an_artifact_error_not_a_crash(model_dir: Path) -> None:
    version = artifact.current_version(model_dir)
    (model_dir / version / "model.onnx").unlink()
    (model_dir / version / "model.onnx").mkdir()  # reading a directory fails with an OSError
    with pytest.raises(ArtifactError, match="cannot be read"):
        artifact.read(model_dir)
