import csv
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from inference_service.cli import main
from inference_service.smoke import ORIGINAL_PAYLOAD
from tests.conftest import ROOT

DATA = ROOT / "data/input/train/iris.csv"


def run_cli(
    *args: str, model_dir: Path, stdin: bytes | None = None
) -> subprocess.CompletedProcess[bytes]:
    env = {**os.environ, "INFERENCE_MODEL_DIR": str(model_dir)}
    return subprocess.run(
        [sys.executable, "-m", "inference_service.cli", *args],
        input=stdin,
        capture_output=True,
        env=env,
        timeout=120,
    )


def test_predict_scores_the_training_csv(trained: Path) -> None:
    out = run_cli("predict", str(DATA), model_dir=trained)
    assert out.returncode == 0, out.stderr
    rows = list(csv.DictReader(io.StringIO(out.stdout.decode())))
    truth = list(csv.DictReader(DATA.open()))
    assert len(rows) == 150
    correct = sum(r["prediction"] == t["species"] for r, t in zip(rows, truth, strict=True))
    assert correct / 150 >= 0.95
    assert {"p_setosa", "p_versicolor", "p_virginica"} <= set(rows[0])


def test_predict_reads_json_from_stdin(trained: Path) -> None:
    out = run_cli(
        "predict",
        "-",
        "--format",
        "json",
        model_dir=trained,
        stdin=json.dumps(ORIGINAL_PAYLOAD).encode(),
    )
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["predictions"] == ["virginica", "versicolor"]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b'[{"0": "x", "1": 1, "2": 1, "3": 1}]', b"expected a number"),
        (b"sepal_length,sepal_width\n1,2\n", b"CSV header lacks petal_length, petal_width"),
        (
            b"sepal_length,sepal_width,petal_length,petal_width\n1,2,x,4\n",
            b"CSV row 2: every feature must be a finite number",
        ),
    ],
)
def test_predict_applies_the_same_validation(
    trained: Path, tmp_path: Path, content: bytes, message: bytes
) -> None:
    path = tmp_path / "input"
    path.write_bytes(content)
    out = run_cli("predict", str(path), model_dir=trained)
    assert out.returncode == 1
    assert message in out.stderr


def test_train_gate_failure_exits_non_zero(tmp_path: Path) -> None:
    out = run_cli("train", "--min-accuracy", "0.999", model_dir=tmp_path / "iris")
    assert out.returncode == 1
    assert b"below the gate" in out.stderr
    assert not (tmp_path / "iris").exists()


def test_train_if_missing_keeps_a_valid_model(
    model_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = sorted(p.name for p in model_dir.iterdir())
    assert main(["train", "--if-missing", "--model-dir", str(model_dir)]) == 0
    assert sorted(p.name for p in model_dir.iterdir()) == before


def test_invalid_setting_is_a_usage_error(trained: Path) -> None:
    env = {**os.environ, "INFERENCE_PORT": "http"}
    out = subprocess.run(
        [sys.executable, "-m", "inference_service.cli", "serve"],
        capture_output=True,
        env=env,
        timeout=60,
    )
    assert out.returncode == 2
    assert b"INFERENCE_PORT='http' is not a valid int" in out.stderr


def test_smoke_key_falls_back_to_the_services_own_keys(tmp_path: Path) -> None:
    from inference_service.smoke import default_key

    assert default_key({}) is None
    assert default_key({"INFERENCE_API_KEYS": "first, second"}) == "first"
    assert default_key({"INFERENCE_API_KEY": "mine", "INFERENCE_API_KEYS": "first"}) == "mine"
    keys = tmp_path / "keys"
    keys.write_text("\nfrom-file\n")
    assert default_key({"INFERENCE_API_KEYS": str(keys)}) == "from-file"
