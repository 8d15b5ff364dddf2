import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
from sklearn.tree import DecisionTreeClassifier

from inference_service import artifact
from inference_service.data import load
from inference_service.errors import ArtifactError
from inference_service.model import Model
from inference_service.signature import Signature
from inference_service.train import (
    PARITY_RANDOM_ROWS,
    GateError,
    Options,
    Refused,
    _session,
    check_parity,
    export,
    parity_rows,
    train,
)
from tests.conftest import ROOT, spec_for, train_model

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
    assert card["parity"]["mismatches"] == 0
    assert card["parity"]["rows_checked"] >= 150 + PARITY_RANDOM_ROWS
    assert card["gates"]["passed"] is True
    assert {"scikit-learn", "skl2onnx", "onnxruntime", "numpy"} <= set(card["libraries"])
    for extra in ("model_card.md", "confusion_matrix.png", "feature_importance.png"):
        assert (art.path / extra).stat().st_size > 0


def test_signature_describes_the_model_and_its_examples_hold(trained: Path) -> None:
    model = Model.load(trained)
    sig = model.signature
    assert Signature.from_json(sig.to_json()) == sig
    assert sig.task == "classification" and sig.width == 4
    assert [f.min for f in sig.features] == load(spec_for("iris")).x.min(axis=0).tolist()
    assert {e["label"] for e in sig.examples} == set(sig.labels)  # one example per class
    rows = np.array([e["inputs"] for e in sig.examples], dtype=np.float32)
    assert model.predict(rows).labels == [e["label"] for e in sig.examples]


def test_regressor_card_and_plots(repository: Path) -> None:
    model = Model.load(repository / "diabetes")
    assert model.signature.outputs == ("prediction",)
    assert model.signature.labels == ()
    card = model.card
    assert {"holdout_rmse", "holdout_r2"} <= set(card["metrics"])
    assert card["parity"]["max_difference"] <= card["parity"]["tolerance"]
    version_dir = repository / "diabetes" / model.version
    assert (version_dir / "predicted_vs_actual.png").stat().st_size > 0
    rows = np.array([e["inputs"] for e in model.signature.examples], dtype=np.float32)
    values = model.predict(rows).values
    assert values is not None
    # Tree ensembles sum in float32 in an order that depends on the batch: equal to ~1e-7.
    expected = [e["prediction"] for e in model.signature.examples]
    assert values.tolist() == pytest.approx(expected, rel=1e-5)


def test_same_data_code_and_seed_give_the_same_version(trained: Path, tmp_path: Path) -> None:
    again = train_model("iris", tmp_path)
    assert again.name == artifact.current_version(trained)


def test_another_seed_gives_another_version(trained: Path, tmp_path: Path) -> None:
    other = train_model("iris", tmp_path, seed=7)
    assert other.name != artifact.current_version(trained)


def test_accuracy_gate_refuses_naming_the_spec_and_writes_nothing(tmp_path: Path) -> None:
    with pytest.raises(GateError, match=r"iris.toml: gates.min_accuracy: held-out accuracy"):
        train_model("iris", tmp_path, gates={"min_accuracy": 0.99})
    assert not (tmp_path / "iris").exists()


def test_regression_gate_names_the_metric(tmp_path: Path) -> None:
    with pytest.raises(GateError, match="gates.max_rmse: held-out rmse"):
        train_model("diabetes", tmp_path, gates={"max_rmse": 1.0})


@pytest.mark.parametrize(
    ("estimator", "params"),
    [("logistic_regression", {"max_iter": 500}), ("gradient_boosting", {"n_estimators": 20})],
)
def test_other_classifiers_train_and_pass_parity(
    tmp_path: Path, estimator: str, params: dict[str, object]
) -> None:
    path = train_model("iris", tmp_path, estimator=estimator, params=params)
    card = json.loads((path / "model.json").read_text())
    assert card["algorithm"].endswith(("LogisticRegression", "GradientBoostingClassifier"))
    assert card["parity"]["mismatches"] == 0


@pytest.mark.parametrize("estimator", ["linear_regression", "ridge", "random_forest"])
def test_other_regressors_train_and_pass_parity(tmp_path: Path, estimator: str) -> None:
    path = train_model("diabetes", tmp_path, estimator=estimator, params={})
    assert json.loads((path / "model.json").read_text())["parity"]["mismatches"] == 0


def test_unknown_hyperparameter_is_refused_naming_the_spec(tmp_path: Path) -> None:
    with pytest.raises(GateError, match=r"iris.toml: \[params\]"):
        train_model("iris", tmp_path, params={"max_deepness": 3})


def test_parity_rows_cover_every_split_threshold_exactly() -> None:
    ds = load(spec_for("iris"))
    model = DecisionTreeClassifier(random_state=0).fit(ds.x, ds.y)
    rows = parity_rows(model, ds.x)
    tree = model.tree_
    for node in np.flatnonzero(tree.feature >= 0):
        threshold = np.float32(tree.threshold[node])
        assert (rows[:, tree.feature[node]] == threshold).any()
    assert len(rows) >= 150 + PARITY_RANDOM_ROWS


def test_parity_gate_catches_an_onnx_model_that_disagrees(trained: Path) -> None:
    s = spec_for("iris")
    ds = load(s)
    model = DecisionTreeClassifier(random_state=0).fit(ds.x, ds.y)
    shallow = DecisionTreeClassifier(random_state=0, max_depth=1).fit(ds.x, ds.y)
    sig = Model.load(trained).signature
    good = check_parity(model, _session(export(model, s, 4)), sig, ds.x, 1e-4)
    assert good["rows_checked"] >= 10_000
    with pytest.raises(GateError, match="ONNX disagrees with scikit-learn"):
        check_parity(model, _session(export(shallow, s, 4)), sig, ds.x, 1e-4)


def test_worse_candidate_is_kept_but_not_promoted(tmp_path: Path) -> None:
    live = train_model("iris", tmp_path)
    worse = dataclasses.replace(spec_for("iris"), params={"max_depth": 1}, gates={})
    with pytest.raises(Refused, match="is not promoted: held_out accuracy") as info:
        train(worse, Options(root=tmp_path))
    assert artifact.current_version(tmp_path / "iris") == live.name
    card = json.loads((info.value.path / "model.json").read_text())
    assert card["promotion"]["decision"] == "refused"
    assert card["promotion"]["live_version"] == live.name
    figures = card["promotion"]["figures"]["held_out"]
    assert figures["candidate"]["accuracy"] < figures["live"]["accuracy"]


def test_force_promotes_a_worse_candidate_and_records_why(tmp_path: Path) -> None:
    train_model("iris", tmp_path)
    worse = dataclasses.replace(spec_for("iris"), params={"max_depth": 1}, gates={})
    path = train(worse, Options(root=tmp_path, force=True, reason="rollback drill"))
    assert artifact.current_version(tmp_path / "iris") == path.name
    card = json.loads((path / "model.json").read_text())
    assert card["promotion"]["decision"] == "forced"
    assert card["promotion"]["forced_because"] == "rollback drill"


def test_frozen_evaluation_csv_is_compared_too(tmp_path: Path) -> None:
    train_model("iris", tmp_path)
    again = dataclasses.replace(spec_for("iris"), seed=7, eval_data=DATA)
    try:
        path = train(again, Options(root=tmp_path))
    except Refused as exc:
        path = exc.path
    card = json.loads((path / "model.json").read_text())
    assert set(card["promotion"]["figures"]) == {"held_out", "eval_data"}


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
