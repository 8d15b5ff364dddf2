"""Open Inference Protocol V2 over Flask's test client."""

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from flask.testing import FlaskClient

from inference_service import artifact

ROWS = [[5.1, 3.5, 1.4, 0.2], [7.0, 3.2, 4.7, 1.4], [6.3, 3.3, 6.0, 2.5]]
LABELS = ["setosa", "versicolor", "virginica"]


def infer(
    client: FlaskClient, data: Any, datatype: str = "FP32", shape: Any = None, **extra: Any
) -> Any:
    tensor = {"name": "input", "shape": shape or [3, 4], "datatype": datatype, "data": data}
    return client.post("/v2/models/iris/infer", json={"inputs": [tensor], **extra})


def test_server_and_model_metadata(client: FlaskClient, trained: Path) -> None:
    version = artifact.current_version(trained)
    assert client.get("/v2").json["name"] == "inference-service"
    assert client.get("/v2/health/live").json == {"live": True}
    assert client.get("/v2/health/ready").json == {"ready": True}
    meta = client.get("/v2/models/iris").json
    assert meta["versions"] == [version]
    assert meta["inputs"] == [{"name": "input", "datatype": "FP32", "shape": [-1, 4]}]
    assert [o["name"] for o in meta["outputs"]] == ["label", "probabilities"]
    assert meta["parameters"]["data_sha256"] == artifact.read(trained).card["data_sha256"]
    assert client.get(f"/v2/models/iris/versions/{version}").json == meta
    assert client.get("/v2/models/iris/ready").json == {"name": "iris", "ready": True}


@pytest.mark.parametrize(
    ("data", "datatype"),
    [
        (sum(ROWS, []), "FP32"),
        (ROWS, "FP32"),
        (sum(ROWS, []), "FP64"),
        (sum(ROWS, []), "FP16"),
    ],
)
def test_infer_flat_or_nested_float_data(client: FlaskClient, data: Any, datatype: str) -> None:
    response = infer(client, data, datatype)
    assert response.status_code == 200, response.json
    outputs = {o["name"]: o for o in response.json["outputs"]}
    assert outputs["label"] == {"name": "label", "shape": [3], "datatype": "BYTES", "data": LABELS}
    probabilities = outputs["probabilities"]
    assert probabilities["shape"] == [3, 3] and probabilities["datatype"] == "FP32"
    assert len(probabilities["data"]) == 9


@pytest.mark.parametrize("datatype", ["INT8", "INT32", "INT64", "UINT8"])
def test_infer_integer_tensors(client: FlaskClient, datatype: str) -> None:
    response = infer(client, [[0, 5, 7, 6], [1, 3, 3, 1]], datatype, shape=[2, 4])
    assert response.status_code == 200, response.json
    assert response.json["outputs"][0]["data"] == ["virginica", "versicolor"]


def test_id_is_echoed_and_outputs_are_selected(client: FlaskClient, trained: Path) -> None:
    response = infer(client, ROWS, id="req-42", outputs=[{"name": "probabilities"}])
    body = response.json
    assert body["id"] == "req-42"
    assert body["model_name"] == "iris"
    assert body["model_version"] == artifact.current_version(trained)
    assert [o["name"] for o in body["outputs"]] == ["probabilities"]


def test_versioned_infer_path(client: FlaskClient, trained: Path) -> None:
    version = artifact.current_version(trained)
    url = f"/v2/models/iris/versions/{version}/infer"
    tensor = {"name": "input", "shape": [3, 4], "datatype": "FP32", "data": ROWS}
    assert client.post(url, json={"inputs": [tensor]}).status_code == 200
    other = client.post("/v2/models/iris/versions/nope/infer", json={"inputs": [tensor]})
    assert other.status_code == 404 and "version 'nope' not found" in other.json["error"]


@pytest.mark.parametrize(
    ("datatype", "value"),
    [
        ("UINT64", 2**64 - 1),
        ("UINT64", 0),
        ("INT64", 2**63 - 1),
        ("INT64", -(2**63)),
        ("UINT32", 2**32 - 1),
        ("INT8", -128),
        ("INT32", 7.0),  # JSON has one number type: 7.0 is a whole number
    ],
)
def test_integer_tensors_take_every_value_of_their_type(
    client: FlaskClient, datatype: str, value: int | float
) -> None:
    # Compared as doubles, 2**64 - 1 rounds up to 2**64 and UINT64's largest value was refused.
    response = infer(client, [[value, 2, 3, 4]], datatype, shape=[1, 4])
    assert response.status_code == 200, response.json


@pytest.mark.parametrize(
    ("kwargs", "status", "message"),
    [
        ({"data": sum(ROWS, [])[:-1]}, 400, "needs 12 values"),
        ({"data": ROWS, "shape": [2, 4]}, 400, "needs 8 values"),
        ({"data": [[1, 2, 3], [1, 2, 3], [1, 2, 3]]}, 400, "shape [3, 4] needs 12 values"),
        ({"data": [[1, 2, 3, 4], [1, 2, 3], [1, 2, 3, 4, 5]]}, 400, "differ in length"),
        ({"data": [1, [2, 3, 4, 5]]}, 400, "mixes numbers and lists"),
        ({"data": ROWS, "shape": [3, 5]}, 400, "shape must be [N, 4]"),
        ({"data": ROWS, "shape": [12]}, 400, "shape must be [N, 4]"),
        ({"data": ROWS, "datatype": "BYTES"}, 400, "datatype 'BYTES' is not supported"),
        ({"data": [[1.5, 2, 3, 4]] * 3, "datatype": "INT32"}, 400, "integers in INT32 range"),
        ({"data": [[300, 2, 3, 4]] * 3, "datatype": "INT8"}, 400, "integers in INT8 range"),
        ({"data": [[True, 2, 3, 4]] * 3}, 400, "got `bool`"),
        ({"data": [[10**400, 2, 3, 4]] * 3}, 400, "out of range for a 32-bit float"),
        ({"data": [[2.5e19, 2, 3, 4]] * 3, "datatype": "UINT64"}, 400, "in UINT64 range"),
        ({"data": [["1", 2, 3, 4]] * 3}, 400, "got `str`"),
        ({"data": [[1e39, 2, 3, 4]] * 3}, 400, "out of range for a 32-bit float"),
        ({"data": [[65520.0, 2, 3, 4]] * 3, "datatype": "FP16"}, 400, "out of range for FP16"),
        ({"data": [[-7e4, 2, 3, 4]] * 3, "datatype": "FP16"}, 400, "out of range for FP16"),
        ({"data": [[2**63, 2, 3, 4]] * 3, "datatype": "INT64"}, 400, "integers in INT64 range"),
        ({"data": [[-(2**63) * 2, 2, 3, 4]] * 3, "datatype": "INT64"}, 400, "in INT64 range"),
        ({"data": [[2**64, 2, 3, 4]] * 3, "datatype": "UINT64"}, 400, "integers in UINT64 range"),
        ({"data": [[-1, 2, 3, 4]] * 3, "datatype": "UINT64"}, 400, "integers in UINT64 range"),
    ],
)
def test_bad_tensors_get_4xx(
    client: FlaskClient, kwargs: dict[str, Any], status: int, message: str
) -> None:
    response = infer(client, **kwargs)
    assert response.status_code == status
    assert message in response.json["error"]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({}, "Object missing required field `inputs`"),
        ({"inputs": []}, "exactly one input tensor, got 0"),
        ({"inputs": "x"}, "Expected `array`, got `str`"),
        (
            {
                "inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP32", "data": ROWS[0]}],
                "outputs": [{"name": "species"}],
            },
            "Unknown output 'species'",
        ),
    ],
)
def test_bad_requests_get_400(client: FlaskClient, body: Any, message: str) -> None:
    response = client.post("/v2/models/iris/infer", json=body)
    assert response.status_code == 400
    assert message in response.json["error"]


def test_unknown_model_is_404(client: FlaskClient) -> None:
    assert client.get("/v2/models/roses").status_code == 404
    response = client.post("/v2/models/roses/infer", json={})
    assert response.status_code == 404
    assert "Model 'roses' not found" in response.json["error"]


def test_too_many_rows_get_413(client: FlaskClient) -> None:
    response = infer(client, [[1, 2, 3, 4]], shape=[10_001, 4])
    assert response.status_code == 413


# --- the binary tensor data extension ---


def binary_request(
    rows: np.ndarray[Any, Any],
    datatype: str = "FP32",
    size: int | None = None,
    extra: bytes = b"",
    header_length: int | None = None,
    **request: Any,
) -> tuple[bytes, dict[str, str]]:
    raw = rows.astype({"FP32": "<f4", "FP64": "<f8", "INT64": "<i8", "FP16": "<f2"}[datatype])
    blob = raw.tobytes() + extra
    tensor = {
        "name": "input",
        "shape": list(rows.shape),
        "datatype": datatype,
        "parameters": {"binary_data_size": len(blob) if size is None else size},
    }
    header = json.dumps({"inputs": [tensor], **request}).encode()
    length = len(header) if header_length is None else header_length
    return header + blob, {"Inference-Header-Content-Length": str(length)}


def split_answer(response: Any) -> tuple[dict[str, Any], bytes]:
    length = int(response.headers["Inference-Header-Content-Length"])
    data = response.get_data()
    return json.loads(data[:length]), data[length:]


@pytest.mark.parametrize("datatype", ["FP32", "FP64", "INT64", "FP16"])
def test_binary_input_gives_the_same_answers_as_json(client: FlaskClient, datatype: str) -> None:
    rows = np.array(ROWS, dtype=np.float64)
    if datatype == "INT64":
        rows = np.round(rows)
    body, headers = binary_request(rows, datatype)
    binary = client.post(
        "/v2/models/iris/infer", data=body, headers=headers, content_type="application/octet-stream"
    )
    assert binary.status_code == 200, binary.get_data()
    plain = infer(client, rows.tolist(), datatype=datatype)
    assert binary.json["outputs"] == plain.json["outputs"]


def test_binary_outputs_are_length_prefixed_labels_and_float32(client: FlaskClient) -> None:
    body, headers = binary_request(np.array(ROWS), parameters={"binary_data_output": True})
    response = client.post("/v2/models/iris/infer", data=body, headers=headers)
    assert response.status_code == 200
    assert response.mimetype == "application/octet-stream"
    header, blob = split_answer(response)
    label, probabilities = header["outputs"]
    assert "data" not in label and "data" not in probabilities
    label_blob = blob[: label["parameters"]["binary_data_size"]]
    rest = blob[len(label_blob) :]
    labels, i = [], 0
    while i < len(label_blob):
        n = int.from_bytes(label_blob[i : i + 4], "little")
        labels.append(label_blob[i + 4 : i + 4 + n].decode())
        i += 4 + n
    plain = infer(client, ROWS).json["outputs"]
    assert labels == plain[0]["data"]
    assert len(rest) == probabilities["parameters"]["binary_data_size"] == 3 * 3 * 4
    assert np.frombuffer(rest, "<f4").tolist() == pytest.approx(plain[1]["data"])


def test_only_the_outputs_asked_in_binary_are_binary(client: FlaskClient) -> None:
    outputs = [{"name": "label"}, {"name": "probabilities", "parameters": {"binary_data": True}}]
    body, headers = binary_request(np.array(ROWS), outputs=outputs)
    header, blob = split_answer(client.post("/v2/models/iris/infer", data=body, headers=headers))
    assert "data" in header["outputs"][0] and "data" not in header["outputs"][1]
    assert len(blob) == header["outputs"][1]["parameters"]["binary_data_size"]


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"size": 4}, "binary_data_size is 4, but 48 bytes follow"),
        ({"extra": b"\0\0\0\0", "size": 52}, "needs 48 bytes (12 values of 4), got 52"),
        ({"header_length": 10_000}, "past the end of the"),
        ({"header_length": 5}, "not valid JSON"),
        ({"size": -1}, "binary_data_size must be a byte count"),
    ],
)
def test_malformed_binary_requests_get_400(
    client: FlaskClient, changes: dict[str, Any], message: str
) -> None:
    body, headers = binary_request(np.array(ROWS), **changes)
    response = client.post("/v2/models/iris/infer", data=body, headers=headers)
    assert response.status_code == 400, response.get_data()
    assert message in response.json["error"]


def test_binary_bytes_without_binary_data_size_get_400(client: FlaskClient) -> None:
    header = json.dumps(
        {"inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP32", "data": ROWS[0]}]}
    ).encode()
    response = client.post(
        "/v2/models/iris/infer",
        data=header + b"\0" * 16,
        headers={"Inference-Header-Content-Length": str(len(header))},
    )
    assert response.status_code == 400
    assert "16 bytes follow the JSON header" in response.json["error"]


def test_binary_nan_and_a_bad_header_length_get_400(client: FlaskClient) -> None:
    rows = np.array(ROWS)
    rows[0, 0] = np.nan
    body, headers = binary_request(rows)
    response = client.post("/v2/models/iris/infer", data=body, headers=headers)
    assert response.status_code == 400 and "NaN or infinity" in response.json["error"]
    headers["Inference-Header-Content-Length"] = "twelve"
    response = client.post("/v2/models/iris/infer", data=body, headers=headers)
    assert response.status_code == 400 and "must be a byte count" in response.json["error"]


def test_octet_stream_needs_the_binary_header(client: FlaskClient) -> None:
    response = client.post(
        "/v2/models/iris/infer", data=b"{}", content_type="application/octet-stream"
    )
    assert response.status_code == 415
