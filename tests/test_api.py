"""The HTTP contract through Flask's test client: every success and every error case."""

from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient

from inference_service import artifact
from inference_service.app import create_app
from inference_service.config import Settings
from inference_service.smoke import ORIGINAL_PAYLOAD

SETOSA = {"0": 5.1, "1": 3.5, "2": 1.4, "3": 0.2}
NAMED_SETOSA = {"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}


def test_original_payload_gets_one_prediction_per_record(
    client: FlaskClient, trained: Path
) -> None:
    response = client.post("/inference", json=ORIGINAL_PAYLOAD)
    assert response.status_code == 200
    assert response.json == {
        "predictions": ["virginica", "versicolor"],
        "model": {"name": "iris", "version": artifact.current_version(trained)},
    }


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (SETOSA, ["setosa"]),
        ([NAMED_SETOSA], ["setosa"]),
        ([{"3": 0.2, "2": 1.4, "1": 3.5, "0": 5.1}], ["setosa"]),
        (
            [SETOSA, {"0": 6.3, "1": 3.3, "2": 6.0, "3": 2.5}, SETOSA],
            ["setosa", "virginica", "setosa"],
        ),
        ([{"0": 7.0, "1": 3.2, "2": 4.7, "3": 1.4}], ["versicolor"]),
    ],
)
def test_accepted_bodies(client: FlaskClient, body: Any, expected: list[str]) -> None:
    response = client.post("/inference", json=body)
    assert response.status_code == 200, response.json
    assert response.json["predictions"] == expected


def test_probabilities_on_request(client: FlaskClient) -> None:
    response = client.post("/inference?probabilities=true", json=ORIGINAL_PAYLOAD)
    probabilities = response.json["probabilities"]
    assert len(probabilities) == 2
    for row, label in zip(probabilities, response.json["predictions"], strict=True):
        assert set(row) == {"setosa", "versicolor", "virginica"}
        assert sum(row.values()) == pytest.approx(1.0)
        assert max(row, key=row.get) == label
    assert "probabilities" not in client.post("/inference", json=ORIGINAL_PAYLOAD).json


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"[{", "not valid JSON"),
        (b"", "not valid JSON"),
        (b"[]", "empty array"),
        (b"{}", "Record 0: missing key 'sepal_length'"),
        (b'"iris"', "must be a JSON array of records"),
        (b"[1, 2]", "Record 0 must be a JSON object, got a number"),
        (b'[{"0":1,"1":2,"2":3}]', "Record 0: missing key '3'"),
        (b'[{"0":1,"1":2,"2":3,"3":4,"4":5}]', "Record 0: unknown key '4'"),
        (b'[{"0":1,"1":2,"2":3,"x":4}]', "Record 0: unknown key 'x'"),
        (
            b'[{"0":1,"1":2,"2":3,"3":4},{"sepal_length":1,"1":2,"2":3,"3":4}]',
            "Record 1 mixes key styles",
        ),
        (b'[{"0":1,"1":2,"2":3,"3":true}]', "Record 0, key '3': expected a number, got a boolean"),
        (b'[{"0":1,"1":"2","2":3,"3":4}]', "Record 0, key '1': expected a number, got a string"),
        (b'[{"0":1,"1":null,"2":3,"3":4}]', "Record 0, key '1': expected a number, got null"),
        (b'[{"0":1,"1":[2],"2":3,"3":4}]', "Record 0, key '1': expected a number, got an array"),
        (b'[{"0":NaN,"1":2,"2":3,"3":4}]', "not valid JSON"),
        (b'[{"0":Infinity,"1":2,"2":3,"3":4}]', "not valid JSON"),
        (b'[{"0":1e309,"1":2,"2":3,"3":4}]', "Record 0, key '0'"),
        (b'[{"0":1e39,"1":2,"2":3,"3":4}]', "Record 0, key '0': 1e+39 is out of range"),
        (b'[{"0":1,"1":2,"2":3,"3":' + b"9" * 5000 + b"}]", "Record 0, key '3': the number is out"),
        (b'[{"0":1,"1":2,"2":3,"3":4}] trailing', "not valid JSON"),
        (b"\xff\xfe", "not valid JSON"),
    ],
)
def test_bad_records_get_400_naming_the_problem(
    client: FlaskClient, data: bytes, message: str
) -> None:
    response = client.post("/inference", data=data, content_type="application/json")
    assert response.status_code == 400
    assert response.is_json
    assert message in response.json["error"]


@pytest.mark.parametrize("value", ["maybe", "2", ""])
def test_unknown_probabilities_flag_gets_400(client: FlaskClient, value: str) -> None:
    response = client.post(f"/inference?probabilities={value}", json=ORIGINAL_PAYLOAD)
    assert response.status_code == 400
    assert f"probabilities={value!r} must be true or false" in response.json["error"]


@pytest.mark.parametrize("value", ["true", "1", "yes", "on", "TRUE"])
def test_probabilities_flag_spellings(client: FlaskClient, value: str) -> None:
    response = client.post(f"/inference?probabilities={value}", json=ORIGINAL_PAYLOAD)
    assert len(response.json["probabilities"]) == 2


def test_body_over_the_size_limit_gets_413(trained: Path) -> None:
    client = create_app(Settings(model_dir=trained, max_body_bytes=100)).test_client()
    response = client.post("/inference", json=[SETOSA] * 10)
    assert response.status_code == 413
    assert "larger than the limit of 100 bytes" in response.json["error"]


def test_too_many_rows_get_413(trained: Path) -> None:
    client = create_app(Settings(model_dir=trained, max_rows=3)).test_client()
    assert client.post("/inference", json=[SETOSA] * 3).status_code == 200
    response = client.post("/inference", json=[SETOSA] * 4)
    assert response.status_code == 413
    assert "4 records is more than the limit of 3" in response.json["error"]


@pytest.mark.parametrize(
    "content_type", ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data"]
)
def test_non_json_content_type_gets_415(client: FlaskClient, content_type: str) -> None:
    response = client.post("/inference", data=b"[]", content_type=content_type)
    assert response.status_code == 415
    assert "Content-Type must be application/json" in response.json["error"]


def test_missing_content_type_is_read_as_json(client: FlaskClient) -> None:
    response = client.post("/inference", data=b'[{"0":0,"1":5,"2":7,"3":6}]')
    assert response.status_code == 200
    assert client.post("/inference", data=b"[1").status_code == 400


def test_unknown_path_and_wrong_method_answer_json(client: FlaskClient) -> None:
    missing = client.get("/nowhere")
    assert missing.status_code == 404 and "No endpoint at /nowhere" in missing.json["error"]
    wrong = client.get("/inference")
    assert wrong.status_code == 405 and "GET is not allowed" in wrong.json["error"]
    assert "POST" in wrong.headers["Allow"]


def test_health_endpoints(client: FlaskClient, trained: Path) -> None:
    assert client.get("/livez").json == {"status": "alive"}
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json["model"]["version"] == artifact.current_version(trained)


def test_model_endpoint_shows_the_card(client: FlaskClient, trained: Path) -> None:
    card = client.get("/model").json
    assert card == artifact.read(trained).card


@pytest.mark.parametrize("damage", ["tamper", "remove"])
def test_broken_artifact_is_never_served(model_dir: Path, damage: str) -> None:
    onnx = model_dir / artifact.current_version(model_dir) / "model.onnx"
    if damage == "tamper":
        onnx.write_bytes(onnx.read_bytes() + b"\x00")
    else:
        onnx.unlink()
    client = create_app(Settings(model_dir=model_dir)).test_client()
    ready = client.get("/readyz")
    assert ready.status_code == 503
    expected = {"tamper": "fails its checksum", "remove": "model.onnx is missing"}[damage]
    assert expected in ready.json["models"]["iris"]["error"]
    response = client.post("/inference", json=ORIGINAL_PAYLOAD)
    assert response.status_code == 503
    assert "Model 'iris' is not loaded" in response.json["error"]
    assert client.get("/livez").status_code == 200


def test_empty_model_dir_is_not_ready(tmp_path: Path) -> None:
    client = create_app(Settings(model_dir=tmp_path)).test_client()
    assert client.get("/readyz").status_code == 503
    assert client.get("/v2/health/ready").status_code == 503


def test_get_on_the_v1_predict_path_is_405_not_an_unknown_model(client: FlaskClient) -> None:
    response = client.get("/v1/models/iris:predict")
    assert response.status_code == 405
    assert response.headers["Allow"] == "POST"
