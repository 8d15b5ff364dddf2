from pathlib import Path

import pytest

from inference_service import LABELS
from inference_service.data import DATA_FILE, DataError, load

ROOT = Path(__file__).resolve().parents[1]
HEADER = "sepal_length,sepal_width,petal_length,petal_width,species\n"


def test_committed_data_set_is_the_150_row_iris() -> None:
    x, y = load(ROOT / DATA_FILE)
    assert x.shape == (150, 4)
    assert sorted(set(y)) == list(LABELS)
    assert all((y == label).sum() == 50 for label in LABELS)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("a,b,c,d,e\n1,2,3,4,setosa\n", "header must be"),
        (HEADER + "5.1,3.5,x,0.2,setosa\n", "row 2, column petal_length: 'x' is not a number"),
        (HEADER + "5.1,3.5,1.4,0.2,setosa\n5.1,inf,1.4,0.2,setosa\n", "row 3, column sepal_width"),
        (HEADER + "5.1,3.5,1.4,nan,setosa\n", "column petal_width: 'nan' is not finite"),
        (HEADER + "5.1,3.5,1.4,0.2,rose\n", "row 2, column species: unknown label 'rose'"),
        (HEADER + "5.1,3.5,1.4,setosa\n", "row 2: expected 5 columns, got 4"),
        (HEADER, "no data rows"),
    ],
)
def test_loader_names_file_row_and_column(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(content)
    with pytest.raises(DataError, match=message) as info:
        load(path)
    assert str(path) in str(info.value)


def test_missing_file_is_a_data_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="file not found"):
        load(tmp_path / "absent.csv")
