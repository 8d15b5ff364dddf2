from pathlib import Path

import pytest

from inference_service import spec
from inference_service.data import DataError, load
from tests.conftest import SPECS, spec_for

HEADER = "sepal_length,sepal_width,petal_length,petal_width,species\n"


def test_committed_iris_is_the_150_row_data_set() -> None:
    ds = load(spec_for("iris"))
    assert ds.x.shape == (150, 4)
    assert ds.labels == ("setosa", "versicolor", "virginica")
    assert all((ds.y == label).sum() == 50 for label in ds.labels)


@pytest.mark.parametrize(("name", "shape"), [("wine", (178, 13)), ("diabetes", (442, 10))])
def test_example_data_sets_load_with_every_other_column_as_a_feature(
    name: str, shape: tuple[int, int]
) -> None:
    ds = load(spec_for(name))
    assert ds.x.shape == shape
    assert spec_for(name).label not in ds.features


def test_default_features_skip_non_numeric_columns(tmp_path: Path) -> None:
    (tmp_path / "m.csv").write_text("id,a,b,y\nx1,1,2,p\nx2,3,4,q\n")
    s = spec.parse({"task": "classification", "label": "y"}, tmp_path / "m.toml")
    assert load(s).features == ("a", "b")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("a,b,c,d,species\n1,2,3,4,setosa\n", "no column 'sepal_length'"),
        (HEADER + "5.1,3.5,x,0.2,setosa\n", "row 2, column petal_length: 'x' is not a number"),
        (HEADER + "5.1,3.5,1.4,0.2,setosa\n5.1,inf,1.4,0.2,setosa\n", "row 3, column sepal_width"),
        (HEADER + "5.1,3.5,1.4,nan,setosa\n", "column petal_width: 'nan' is not finite"),
        (HEADER + "5.1,3.5,1.4,setosa\n", "row 2: expected 5 columns, got 4"),
        (HEADER + "5.1,3.5,1.4,0.2,\n", "row 2, column species: the label is empty"),
        (HEADER, "no data rows"),
    ],
)
def test_loader_names_file_row_and_column(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(content)
    with pytest.raises(DataError, match=message) as info:
        load(spec_for("iris"), path)
    assert str(path) in str(info.value)


def test_label_outside_the_specs_labels_names_the_row(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(HEADER + "5.1,3.5,1.4,0.2,setosa\n5.1,3.5,1.4,0.2,rose\n")
    with pytest.raises(DataError, match="row 3, column species: unknown label 'rose'"):
        load(spec_for("iris", labels=("setosa", "virginica")), path)


def test_missing_file_is_a_data_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="file not found"):
        load(spec_for("iris"), tmp_path / "absent.csv")


def test_every_committed_spec_names_an_existing_csv() -> None:
    for s in spec.discover(SPECS):
        assert s.data.is_file(), s.path
