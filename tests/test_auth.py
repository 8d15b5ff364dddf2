"""Optional API keys on the inference endpoints."""

from pathlib import Path

import pytest
from flask.testing import FlaskClient

from inference_service.app import create_app
from inference_service.config import Settings
from inference_service.smoke import ORIGINAL_PAYLOAD

V2 = {"inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP32", "data": [5, 3, 1, 0]}]}


@pytest.fixture
def keyed(trained: Path) -> FlaskClient:
    return create_app(Settings(model_dir=trained, api_keys="k-one,k-two")).test_client()


@pytest.mark.parametrize(
    "header", [None, "Bearer", "Bearer wrong", "Basic k-one", "k-one", "Bearer k-one-and-more"]
)
def test_missing_or_wrong_key_gets_401_without_detail(
    keyed: FlaskClient, header: str | None
) -> None:
    headers = {"Authorization": header} if header else {}
    for url, body in (("/inference", ORIGINAL_PAYLOAD), ("/v2/models/iris/infer", V2)):
        response = keyed.post(url, json=body, headers=headers)
        assert response.status_code == 401
        assert response.json == {"error": "Missing or invalid API key."}
        assert response.headers["WWW-Authenticate"] == "Bearer"


@pytest.mark.parametrize("key", ["k-one", "k-two"])
def test_any_configured_key_opens_inference(keyed: FlaskClient, key: str) -> None:
    headers = {"Authorization": f"Bearer {key}"}
    assert keyed.post("/inference", json=ORIGINAL_PAYLOAD, headers=headers).status_code == 200
    assert keyed.post("/v2/models/iris/infer", json=V2, headers=headers).status_code == 200


def test_health_metrics_and_docs_stay_open(keyed: FlaskClient) -> None:
    for url in ("/livez", "/readyz", "/metrics", "/v2/health/ready", "/openapi.json"):
        assert keyed.get(url).status_code == 200, url


def test_auth_is_checked_before_the_body_is_read(keyed: FlaskClient) -> None:
    response = keyed.post("/inference", data=b"not json", content_type="application/json")
    assert response.status_code == 401


def test_keys_from_a_file(trained: Path, tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    keys.write_text("from-file\n")
    client = create_app(Settings(model_dir=trained, api_keys=str(keys))).test_client()
    headers = {"Authorization": "Bearer from-file"}
    assert client.post("/inference", json=ORIGINAL_PAYLOAD, headers=headers).status_code == 200
    assert client.post("/inference", json=ORIGINAL_PAYLOAD).status_code == 401
