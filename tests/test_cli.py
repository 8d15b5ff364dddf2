import csv
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from inference_service import artifact
from inference_service.cli import main
from inference_service.smoke import ORIGINAL_PAYLOAD
from tests.conftest import ROOT, train_model

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
        (b"sepal_length,sepal_width\n1,2\n", b"the header lacks column 'petal_length'"),
        (
            b"sepal_length,sepal_width,petal_length,petal_width\n1,2,x,4\n",
            b"input, row 2, column petal_length: 'x' is not a finite number",
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
    specs = tmp_path / "specs"
    specs.mkdir()
    text = (ROOT / "data/input/train/iris.toml").read_text()
    (specs / "iris.toml").write_text(
        f'data = "{DATA}"\n' + text.replace("min_accuracy = 0.90", "min_accuracy = 0.999")
    )
    out = run_cli("train", "iris", "--specs", str(specs), model_dir=tmp_path / "models")
    assert out.returncode == 1
    assert b"gates.min_accuracy" in out.stderr
    assert not (tmp_path / "models" / "iris").exists()


def test_train_needs_names_or_all(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "--model-dir", str(tmp_path)]) == 1
    assert "name the models to train, or pass --all" in capsys.readouterr().err
    assert main(["train", "roses", "--model-dir", str(tmp_path)]) == 1
    assert "no spec for 'roses'" in capsys.readouterr().err


def test_train_if_missing_keeps_a_valid_model(
    model_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = sorted(p.name for p in model_dir.iterdir())
    assert main(["train", "iris", "--if-missing", "--model-dir", str(model_dir.parent)]) == 0
    assert sorted(p.name for p in model_dir.iterdir()) == before


def test_predict_names_the_model_and_keeps_id_columns(repository: Path, tmp_path: Path) -> None:
    wine = (ROOT / "data/input/train/wine.csv").read_text().splitlines()
    path = tmp_path / "with_ids.csv"
    path.write_text("\n".join(["id," + wine[0]] + [f"w{i}," + r for i, r in enumerate(wine[1:4])]))
    out = run_cli("predict", "--model", "wine", "--keep", "id", str(path), model_dir=repository)
    assert out.returncode == 0, out.stderr
    rows = list(csv.DictReader(io.StringIO(out.stdout.decode())))
    assert [r["id"] for r in rows] == ["w0", "w1", "w2"]
    assert all(r["prediction"].startswith("cultivar_") for r in rows)


def test_predict_reports_every_bad_row_and_missing_files(trained: Path, tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(
        "sepal_length,sepal_width,petal_length,petal_width\n1,2,x,4\n1,2,3,4\n1,,3,nan\n"
    )
    out = run_cli("predict", str(path), model_dir=trained)
    lines = out.stderr.decode().splitlines()
    assert out.returncode == 1
    assert "row 2, column petal_length: 'x'" in lines[0]
    assert "row 4, column sepal_width: ''" in lines[1]
    assert "row 4, column petal_width: 'nan'" in lines[2]
    missing = run_cli("predict", str(tmp_path / "absent.csv"), model_dir=trained)
    assert missing.returncode == 1
    assert (
        missing.stderr.decode().strip()
        == f"error: {tmp_path / 'absent.csv'}: No such file or directory"
    )


def test_models_list_promote_and_rollback(
    model_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = model_dir.parent
    first = artifact.current_version(model_dir)
    second = train_model("iris", root, seed=7, promotion={"accuracy": 1.0}).name
    assert main(["models", "--model-dir", str(root), "list", "iris"]) == 0
    listing = capsys.readouterr().out
    assert "* iris" in listing and second in listing and first in listing
    assert main(["models", "--model-dir", str(root), "rollback", "iris"]) == 0
    assert artifact.current_version(model_dir) == first
    assert main(["models", "--model-dir", str(root), "promote", "iris", second]) == 0
    assert artifact.current_version(model_dir) == second
    assert main(["models", "--model-dir", str(root), "promote", "iris", "nope"]) == 1
    assert artifact.current_version(model_dir) == second


def test_smoke_refuses_a_url_without_scheme_at_once(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["smoke", "127.0.0.1:1", "--timeout", "60"]) == 2
    assert "is not an http:// or https:// URL" in capsys.readouterr().err


def test_invalid_setting_is_a_usage_error(trained: Path) -> None:
    env = {**os.environ, "INFERENCE_PORT": "http"}
    out = subprocess.run(
        [sys.executable, "-m", "inference_service.cli", "serve"],
        capture_output=True,
        env=env,
        timeout=60,
    )
    assert out.returncode == 2
    assert b"INFERENCE_PORT must be an integer, got 'http'" in out.stderr


def test_smoke_key_falls_back_to_the_services_own_keys(tmp_path: Path) -> None:
    from inference_service.smoke import default_key

    assert default_key({}) is None
    assert default_key({"INFERENCE_API_KEYS": "first, second"}) == "first"
    assert default_key({"INFERENCE_API_KEY": "mine", "INFERENCE_API_KEYS": "first"}) == "mine"
    keys = tmp_path / "keys"
    keys.write_text("\nfrom-file\n")
    assert default_key({"INFERENCE_API_KEYS": str(keys)}) == "from-file"


@pytest.mark.parametrize("command", ["train", "import", "serve", "predict", "smoke"])
def test_help_states_each_default_once(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    """A default is shown once, and never as a bare None, False or empty string."""
    with pytest.raises(SystemExit) as done:
        main([command, "--help"])
    assert done.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "(default: None)" not in text and "(default: False)" not in text
    assert "(default: )" not in text
    assert text.count("default") >= 1
