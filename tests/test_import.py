"""Importing an ONNX model trained elsewhere: checked against its spec, gated, then served."""

import json
from pathlib import Path

import pytest
from flask.testing import FlaskClient
from skl2onnx import convert_sklearn
from skl2onnx.common.data_types import FloatTensorType
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from inference_service import spec
from inference_service.app import create_app
from inference_service.cli import main
from inference_service.config import Settings
from inference_service.data import load
from tests.conftest import SPECS

SPEC = """task = "classification"
label = "cultivar"
data = "{data}"

[gates]
min_accuracy = {gate}
"""


def pipeline_onnx(path: Path, zipmap: bool = False) -> Path:
    """A scaler + logistic regression pipeline fitted on the wine data, exported with skl2onnx."""
    ds = load(spec.load(SPECS / "wine.toml"))
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)).fit(ds.x, ds.y)
    proto = convert_sklearn(
        model,
        initial_types=[("features", FloatTensorType([None, ds.x.shape[1]]))],
        options={id(model): {"zipmap": zipmap}},
        target_opset={"": 17, "ai.onnx.ml": 3},
    )
    path.write_bytes(proto.SerializeToString())
    return path


@pytest.fixture
def spec_file(tmp_path: Path) -> Path:
    path = tmp_path / "vintage.toml"
    path.write_text(SPEC.format(data=SPECS / "wine.csv", gate=0.9))
    return path


def test_imported_pipeline_is_published_and_served(tmp_path: Path, spec_file: Path) -> None:
    onnx = pipeline_onnx(tmp_path / "pipeline.onnx")
    root = tmp_path / "models"
    argv = ["import", "vintage", str(onnx), "--spec", str(spec_file), "--model-dir", str(root)]
    assert main(argv) == 0
    card = json.loads(next((root / "vintage").glob("*/model.json")).read_text())
    assert card["signature"]["onnx"] == {
        "input": "features",
        "outputs": {"label": "label", "probabilities": "probabilities"},
    }
    assert card["metrics"]["holdout_accuracy"] >= 0.9
    assert card["algorithm"] == "imported ONNX (pipeline.onnx)"
    client: FlaskClient = create_app(Settings(model_dir=root, reload_interval=0)).test_client()
    example = card["signature"]["examples"][0]
    answer = client.post("/v1/models/vintage:predict", json={"instances": [example["inputs"]]})
    assert answer.status_code == 200, answer.json
    assert answer.json == {"predictions": [example["label"]]}


def test_import_gate_is_measured_on_the_csv(tmp_path: Path) -> None:
    onnx = pipeline_onnx(tmp_path / "pipeline.onnx")
    strict = tmp_path / "vintage.toml"
    strict.write_text(SPEC.format(data=SPECS / "wine.csv", gate=1.01))
    root = tmp_path / "models"
    argv = ["import", "vintage", str(onnx), "--spec", str(strict), "--model-dir", str(root)]
    assert main(argv) == 1
    assert not (root / "vintage").exists()


def test_zipmap_output_is_refused_with_a_reason(
    tmp_path: Path, spec_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    onnx = pipeline_onnx(tmp_path / "zipmap.onnx", zipmap=True)
    argv = ["import", "vintage", str(onnx), "--spec", str(spec_file), "--model-dir", str(tmp_path)]
    assert main(argv) == 1
    assert "export without ZipMap" in capsys.readouterr().err


def test_graph_of_another_width_is_refused(
    tmp_path: Path, spec_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    onnx = pipeline_onnx(tmp_path / "pipeline.onnx")
    narrow = tmp_path / "narrow.toml"
    narrow.write_text('name = "vintage"\nfeatures = ["alcohol", "ash"]\n' + spec_file.read_text())
    argv = ["import", "vintage", str(onnx), "--spec", str(narrow), "--model-dir", str(tmp_path)]
    assert main(argv) == 1
    assert "the signature has 2 features" in capsys.readouterr().err
    assert not (tmp_path / "vintage").exists()
