from pathlib import Path

import pytest

from inference_service import spec
from tests.conftest import SPECS

GOOD = 'task = "classification"\nlabel = "y"\nestimator = "decision_tree"\n'


def write(tmp_path: Path, text: str, name: str = "m.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_committed_specs_are_iris_wine_and_diabetes() -> None:
    specs = {s.name: s for s in spec.discover(SPECS)}
    assert set(specs) == {"iris", "wine", "diabetes"}
    assert specs["iris"].estimator == "decision_tree"
    assert specs["diabetes"].task == "regression"


def test_defaults_come_from_the_file_name(tmp_path: Path) -> None:
    s = spec.load(write(tmp_path, GOOD, "churn.toml"))
    assert (s.name, s.data, s.test_size, s.seed, s.folds) == (
        "churn",
        tmp_path / "churn.csv",
        0.2,
        42,
        5,
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (GOOD + "estimater = 1\n", "unknown key 'estimater'"),
        ('task = "clustering"\nlabel = "y"\n', "task must be one of classification, regression"),
        ('task = "classification"\n', "label must be a non-empty string"),
        (GOOD.replace("decision_tree", "xgboost"), "unknown estimator 'xgboost'"),
        (GOOD.replace("decision_tree", "ridge"), "estimator 'ridge' cannot do classification"),
        (GOOD + "[gates]\nmax_rmse = 3\n", "unknown key gates.max_rmse"),
        (GOOD + "[gates]\nmin_accuracy = 'high'\n", "gates.min_accuracy must be a finite number"),
        (GOOD + "test_size = 1.5\n", "test_size must be between 0 and 1"),
        (GOOD + "folds = 1\n", "folds must be an integer of at least 2"),
        (GOOD + 'features = "a"\n', "features must be a non-empty list of strings"),
        (GOOD + "[promotion]\naccuracy = -1\n", "promotion tolerances must be zero or more"),
        (GOOD + 'name = "a/b"\n', "name 'a/b' must be letters"),
        ("task = ", "not valid TOML"),
    ],
)
def test_bad_spec_is_refused_naming_file_and_key(tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(spec.SpecError, match=message) as info:
        spec.load(path)
    assert str(path) in str(info.value)


def test_two_specs_with_one_name_are_refused(tmp_path: Path) -> None:
    write(tmp_path, GOOD + 'name = "same"\n', "a.toml")
    write(tmp_path, GOOD + 'name = "same"\n', "b.toml")
    with pytest.raises(spec.SpecError, match="model name 'same' is also used by"):
        spec.discover(tmp_path)
