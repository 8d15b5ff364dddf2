"""The OpenAPI document is valid, documents every route, and says what the server really answers."""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import msgspec
import pytest
from flask.testing import FlaskClient
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate
from werkzeug.test import TestResponse

from inference_service import FEATURES, openapi, protocol
from inference_service.app import create_app
from inference_service.config import Settings

KEY = "docs-test-key"
HTTP_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
# Routes that serve files rather than API operations.
ASSET_ENDPOINTS = {"static", "openapi.docs_asset"}
SPEC = openapi.build(Settings())
OPERATIONS = [
    (path, method, op)
    for path, item in SPEC["paths"].items()
    for method, op in item.items()
    if method in HTTP_METHODS
]
RECORD = {"0": 0, "1": 5, "2": 7, "3": 6}
TENSOR = {"name": "input", "shape": [1, 4], "datatype": "FP32", "data": [0, 5, 7, 6]}


@pytest.fixture(scope="module")
def ready(trained: Path) -> FlaskClient:
    return create_app(Settings(model_dir=trained)).test_client()


@pytest.fixture(scope="module")
def unready(tmp_path_factory: pytest.TempPathFactory) -> FlaskClient:
    empty = tmp_path_factory.mktemp("no-model") / "iris"
    return create_app(Settings(model_dir=empty)).test_client()


@pytest.fixture(scope="module")
def keyed(trained: Path) -> FlaskClient:
    return create_app(Settings(model_dir=trained, api_keys=KEY)).test_client()


@pytest.fixture(scope="module")
def doc(ready: FlaskClient) -> dict[str, Any]:
    response = ready.get("/openapi.json")
    assert response.status_code == 200
    assert response.mimetype == "application/json"
    value: dict[str, Any] = response.json
    return value


@pytest.fixture(scope="module")
def live_version(ready: FlaskClient) -> str:
    version: str = ready.get("/v2/models/iris").json["versions"][0]
    return version


def resolve(doc: dict[str, Any], item: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in item:
        *_, kind, name = item["$ref"].split("/")
        item = doc["components"][kind][name]
    return item


def check(doc: dict[str, Any], schema: dict[str, Any], instance: Any) -> None:
    """Validate against a schema of the document, its `#/components/...` refs included."""
    root = {**schema, "components": doc["components"]}
    Draft202012Validator(root, format_checker=Draft202012Validator.FORMAT_CHECKER).validate(
        instance
    )


def check_response(doc: dict[str, Any], op: dict[str, Any], response: TestResponse) -> None:
    documented = resolve(doc, op["responses"][str(response.status_code)])
    for name, header in documented.get("headers", {}).items():
        header = resolve(doc, header)
        assert name in response.headers, f"{name} header is missing"
        check(doc, header["schema"], response.headers[name])
    content = documented["content"]
    assert response.mimetype in content, f"{response.mimetype} is not documented"
    if response.mimetype == "application/json":
        check(doc, content[response.mimetype]["schema"], response.json)
    else:
        check(doc, content[response.mimetype]["schema"], response.get_data(as_text=True))


def fill(path: str, name: str = "iris", version: str = "") -> str:
    return path.replace("{name}", name).replace("{version}", version)


def first_example(op: dict[str, Any]) -> Any:
    examples = op["requestBody"]["content"]["application/json"]["examples"]
    return next(iter(examples.values()))["value"]


def same_model_version(answer: dict[str, Any]) -> dict[str, Any]:
    if "model" in answer:
        answer["model"]["version"] = openapi.EXAMPLE_VERSION
    if "model_version" in answer:
        answer["model_version"] = openapi.EXAMPLE_VERSION
    return answer


def test_document_is_valid_openapi_3_1(doc: dict[str, Any]) -> None:
    assert doc["openapi"].startswith("3.1.")
    validate(doc)


def test_served_document_is_the_one_built_from_the_app_settings(doc: dict[str, Any]) -> None:
    assert doc == msgspec.json.decode(msgspec.json.encode(openapi.build(Settings())))


def test_every_route_is_documented_with_its_methods_and_nothing_else(
    ready: FlaskClient, doc: dict[str, Any]
) -> None:
    served: dict[str, set[str]] = {}
    app = ready.application
    for rule in app.url_map.iter_rules():
        if rule.endpoint in ASSET_ENDPOINTS:
            continue
        path = re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule.rule)
        served.setdefault(path, set()).update((rule.methods or set()) - {"HEAD", "OPTIONS"})
    documented = {
        path: {m.upper() for m in item if m in HTTP_METHODS} for path, item in doc["paths"].items()
    }
    assert served == documented


def test_limits_and_keys_come_from_the_code_definitions() -> None:
    spec = openapi.build(Settings(max_rows=7, max_body_bytes=999))
    schemas = spec["components"]["schemas"]
    assert list(schemas["PositionalRecord"]["properties"]) == list(protocol.POSITIONAL)
    assert list(schemas["NamedRecord"]["properties"]) == list(FEATURES)
    assert [s.get("maxItems") for s in schemas["RecordsRequest"]["oneOf"]] == [7, 7, None, None]
    shape = schemas["V2Tensor"]["properties"]["shape"]["prefixItems"]
    assert (shape[0]["maximum"], shape[1]["const"]) == (7, len(FEATURES))
    too_large = spec["components"]["responses"]["RecordsTooLarge"]["content"]["application/json"]
    assert too_large["examples"]["rows"]["value"] == {
        "error": "8 records is more than the limit of 7."
    }
    assert "999 bytes" in spec["info"]["description"]


def test_v2_request_schema_has_the_fields_and_values_the_server_decodes() -> None:
    schemas = SPEC["components"]["schemas"]
    for struct in (protocol.V2Request, protocol.V2Tensor, protocol.V2Output):
        assert set(schemas[struct.__name__]["properties"]) == set(struct.__struct_fields__)
    assert schemas["V2Tensor"]["properties"]["datatype"]["enum"] == list(protocol.DATATYPES)
    assert schemas["V2Output"]["properties"]["name"]["enum"] == list(protocol.OUTPUT_NAMES)


def test_every_example_matches_its_schema(doc: dict[str, Any]) -> None:
    checked = 0
    for path, method, op in OPERATIONS:
        bodies = [op["requestBody"]] if "requestBody" in op else []
        bodies += [resolve(doc, r) for r in op["responses"].values()]
        for body in bodies:
            for media in body.get("content", {}).values():
                for name, example in media.get("examples", {}).items():
                    try:
                        check(doc, media["schema"], example["value"])
                    except Exception as exc:
                        raise AssertionError(f"{method} {path} example {name}: {exc}") from exc
                    checked += 1
    assert checked >= 30


@pytest.mark.parametrize(
    ("path", "name", "example"),
    [
        (path, name, example["value"])
        for path, method, op in OPERATIONS
        if method == "post"
        for name, example in op["requestBody"]["content"]["application/json"]["examples"].items()
    ],
)
def test_request_examples_get_the_documented_answer(
    ready: FlaskClient, doc: dict[str, Any], live_version: str, path: str, name: str, example: Any
) -> None:
    op = doc["paths"][path]["post"]
    response = ready.post(fill(path, version=live_version), json=example)
    assert response.status_code == 200, response.json
    check_response(doc, op, response)
    answers = op["responses"]["200"]["content"]["application/json"]["examples"]
    if name in answers:
        assert same_model_version(response.json) == answers[name]["value"]


def test_original_payload_answers_virginica_then_versicolor(
    ready: FlaskClient, doc: dict[str, Any]
) -> None:
    op = doc["paths"]["/inference"]["post"]
    payload = op["requestBody"]["content"]["application/json"]["examples"]["original"]["value"]
    assert payload == [{"0": 0, "1": 5, "2": 7, "3": 6}, {"0": 1, "1": 3, "2": 3, "3": 1}]
    answers = op["responses"]["200"]["content"]["application/json"]["examples"]
    response = ready.post("/inference?probabilities=true", json=payload)
    assert response.json["predictions"] == ["virginica", "versicolor"]
    assert same_model_version(response.json) == answers["with_probabilities"]["value"]


def _send_for_status(
    status: str,
    path: str,
    method: str,
    op: dict[str, Any],
    clients: dict[str, FlaskClient],
    live_version: str,
) -> TestResponse:
    """A request that should get `status` from the operation, as the document describes it."""
    rows = Settings().max_rows + 1
    client, url = clients["ready"], fill(path, version=live_version)
    kwargs: dict[str, Any] = {"json": first_example(op)} if method == "post" else {}
    v2 = path.startswith("/v2/")
    if status == "503":
        client, url = clients["unready"], fill(path, version="any")
    elif status == "401":
        client = clients["keyed"]
    elif status == "404":
        url = fill(path, name="mnist", version=live_version)
    elif status == "400":
        kwargs = {"json": {"inputs": []} if v2 else []}
    elif status == "413":
        kwargs = {
            "json": {"inputs": [{**TENSOR, "shape": [rows, 4], "data": [0] * 4 * rows}]}
            if v2
            else [RECORD] * rows
        }
    elif status == "415":
        kwargs = {"data": b'{"0": 0}', "content_type": "text/plain"}
    else:
        assert status == "200", f"no way to provoke {status}"
    return client.open(url, method=method.upper(), **kwargs)


@pytest.mark.parametrize(
    ("path", "method", "status"),
    [(path, method, status) for path, method, op in OPERATIONS for status in op["responses"]],
)
def test_every_documented_status_is_what_the_server_answers(
    ready: FlaskClient,
    unready: FlaskClient,
    keyed: FlaskClient,
    doc: dict[str, Any],
    live_version: str,
    path: str,
    method: str,
    status: str,
) -> None:
    op = doc["paths"][path][method]
    clients = {"ready": ready, "unready": unready, "keyed": keyed}
    response = _send_for_status(status, path, method, op, clients, live_version)
    assert str(response.status_code) == status, response.get_data(as_text=True)[:300]
    check_response(doc, op, response)


def test_documented_bearer_scheme_opens_the_inference_endpoints(
    keyed: FlaskClient, doc: dict[str, Any]
) -> None:
    assert doc["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"
    secured = [(p, m) for p, m, op in OPERATIONS if {"bearerAuth": []} in op.get("security", [])]
    assert {p for p, _ in secured} == {
        "/inference",
        "/v2/models/{name}/infer",
        "/v2/models/{name}/versions/{version}/infer",
    }
    live = keyed.get("/v2/models/iris").json["versions"][0]
    for path, method in secured:
        op = doc["paths"][path][method]
        url = fill(path, version=live)
        auth = {"Authorization": f"Bearer {KEY}"}
        assert keyed.post(url, json=first_example(op), headers=auth).status_code == 200
        assert keyed.post(url, json=first_example(op)).status_code == 401


TOO_MANY = Settings().max_rows + 1
# (component response, example) -> client, method, url, request arguments, status
ERROR_TRIGGERS: dict[tuple[str, str], tuple[str, str, str, dict[str, Any], int]] = {
    ("RecordsBadRequest", "missing_key"): (
        "ready",
        "POST",
        "/inference",
        {"json": [{"0": 0, "1": 5, "2": 7}]},
        400,
    ),
    ("RecordsBadRequest", "not_a_number"): (
        "ready",
        "POST",
        "/inference",
        {"json": [RECORD, {"0": 1, "1": 3, "2": "3", "3": 1}]},
        400,
    ),
    ("RecordsBadRequest", "empty"): ("ready", "POST", "/inference", {"json": []}, 400),
    ("RecordsBadRequest", "not_json"): (
        "ready",
        "POST",
        "/inference",
        {"data": b"[{", "content_type": "application/json"},
        400,
    ),
    ("V2BadRequest", "shape"): (
        "ready",
        "POST",
        "/v2/models/iris/infer",
        {"json": {"inputs": [{**TENSOR, "shape": [2, 3], "data": [0] * 6}]}},
        400,
    ),
    ("V2BadRequest", "datatype"): (
        "ready",
        "POST",
        "/v2/models/iris/infer",
        {"json": {"inputs": [{**TENSOR, "datatype": "BOOL"}]}},
        400,
    ),
    ("V2BadRequest", "output"): (
        "ready",
        "POST",
        "/v2/models/iris/infer",
        {"json": {"inputs": [TENSOR], "outputs": [{"name": "scores"}]}},
        400,
    ),
    ("V2BadRequest", "two_inputs"): (
        "ready",
        "POST",
        "/v2/models/iris/infer",
        {"json": {"inputs": [TENSOR, TENSOR]}},
        400,
    ),
    ("Unauthorized", "missing_key"): ("keyed", "POST", "/inference", {"json": [RECORD]}, 401),
    ("ModelNotFound", "name"): ("ready", "GET", "/v2/models/mnist", {}, 404),
    ("NoEndpoint", "path"): ("ready", "GET", "/predict", {}, 404),
    ("MethodNotAllowed", "method"): ("ready", "GET", "/inference", {}, 405),
    ("RecordsTooLarge", "rows"): (
        "ready",
        "POST",
        "/inference",
        {"json": [RECORD] * TOO_MANY},
        413,
    ),
    ("RecordsTooLarge", "bytes"): (
        "ready",
        "POST",
        "/inference",
        {
            "data": b"[" + b" " * Settings().max_body_bytes + b"]",
            "content_type": "application/json",
        },
        413,
    ),
    ("V2TooLarge", "rows"): (
        "ready",
        "POST",
        "/v2/models/iris/infer",
        {"json": {"inputs": [{**TENSOR, "shape": [TOO_MANY, 4], "data": [0] * 4 * TOO_MANY}]}},
        413,
    ),
    ("UnsupportedMediaType", "text"): (
        "ready",
        "POST",
        "/inference",
        {"data": b'{"0": 0}', "content_type": "text/plain"},
        415,
    ),
    ("ModelNotReady", "no_model"): ("unready", "POST", "/inference", {"json": [RECORD]}, 503),
}
# Messages that name the running server's model directory: only their first part is fixed.
PREFIX_ONLY = {("ModelNotReady", "no_model")}


def test_every_error_example_has_a_request_that_produces_it(doc: dict[str, Any]) -> None:
    documented = {
        (component, example)
        for component, response in doc["components"]["responses"].items()
        for example in response["content"]["application/json"]["examples"]
    }
    assert documented == set(ERROR_TRIGGERS)
    for path, method, op in OPERATIONS:
        for status, response in op["responses"].items():
            if "$ref" in response:
                component = response["$ref"].rsplit("/", 1)[1]
                statuses = {s for (c, _), (*_, s) in ERROR_TRIGGERS.items() if c == component}
                assert statuses == {int(status)}, f"{method} {path} {status} -> {component}"


@pytest.mark.parametrize(("component", "example"), sorted(ERROR_TRIGGERS))
def test_error_examples_are_what_the_server_answers(
    ready: FlaskClient,
    unready: FlaskClient,
    keyed: FlaskClient,
    doc: dict[str, Any],
    component: str,
    example: str,
) -> None:
    clients = {"ready": ready, "unready": unready, "keyed": keyed}
    client, method, url, kwargs, status = ERROR_TRIGGERS[component, example]
    response = clients[client].open(url, method=method, **kwargs)
    assert response.status_code == status
    assert response.mimetype == "application/json"
    documented = doc["components"]["responses"][component]
    check_response(doc, {"responses": {str(status): documented}}, response)
    examples = documented["content"]["application/json"]["examples"]
    message = examples[example]["value"]["error"]
    if (component, example) in PREFIX_ONLY:
        assert response.json["error"].split(":")[0] == message.split(":")[0]
    else:
        assert response.json["error"] == message


def test_docs_page_uses_only_packaged_assets_by_relative_urls(ready: FlaskClient) -> None:
    page = ready.get("/docs")
    assert page.status_code == 200
    assert page.mimetype == "text/html"
    urls = re.findall(r'(?:src|href)="([^"]+)"', page.get_data(as_text=True))
    assert urls, "the page loads no assets"
    for url in urls:
        assert not re.match(r"^(/|[a-z]+:)", url), f"{url} is not relative"
        asset = ready.get(f"/{url}")
        assert asset.status_code == 200, url
        assert len(asset.get_data()) > 100, url
    init = ready.get("/docs/init.js").get_data(as_text=True)
    assert 'url: "openapi.json"' in init
    assert "tryItOutEnabled: true" in init
    version = Path(openapi.ASSETS, "VERSION").read_text().strip()
    assert re.fullmatch(r"v5\.\d+\.\d+", version), f"Swagger UI {version} cannot show OpenAPI 3.1"


def test_docs_assets_cannot_escape_the_package_directory(ready: FlaskClient) -> None:
    assert ready.get("/docs/../__init__.py").status_code == 404
    assert ready.get("/docs/%2e%2e/flask_swagger_ui.py").status_code == 404


def test_registering_the_docs_twice_is_harmless(ready: FlaskClient) -> None:
    app = ready.application
    openapi.init_app(app)
    assert ready.get("/openapi.json").status_code == 200


def test_number_bounds_are_where_float32_overflows(ready: FlaskClient) -> None:
    number = SPEC["components"]["schemas"]["PositionalRecord"]["properties"]["0"]
    bound = number["exclusiveMaximum"]
    assert number["exclusiveMinimum"] == -bound
    largest = math.nextafter(bound, 0)
    for value, status in ((largest, 200), (-largest, 200), (bound, 400), (-bound, 400)):
        response = ready.post("/inference", json=[{**RECORD, "1": value}])
        assert response.status_code == status, (value, response.json)
