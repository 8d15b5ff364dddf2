"""The OpenAPI document is generated from the served models, is valid, documents every route, and
says what the server really answers: every example is sent, every documented status provoked."""

from __future__ import annotations

import math
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
import pytest
from flask import Flask
from flask.testing import FlaskClient
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate
from werkzeug.test import TestResponse

from inference_service import openapi, protocol
from inference_service.app import create_app
from inference_service.config import Settings
from inference_service.repository import Repository
from inference_service.train import Options, train
from tests.conftest import spec_for

KEY = "docs-test-key"
HTTP_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
# Routes that serve files rather than API operations.
ASSET_ENDPOINTS = {"static", "openapi.docs_asset"}
ROWS = Settings().max_rows
TOO_MANY = ROWS + 1
# Paths whose answer depends on every model, not on one.
SERVER_WIDE = {"/readyz", "/v2/health/ready"}
# Served: every model ready, default iris. Partial: the default model `absent` is not loaded.
# No default: the default names a model that is not served.
VARIANTS = {
    "ready": {},
    "partial": {"models": "absent,iris,diabetes", "default_model": "absent"},
    "no_default": {"models": "iris,diabetes", "default_model": "nope"},
}


@dataclass
class Served:
    """One app, its twin with API keys, and the document it serves."""

    client: FlaskClient
    keyed: FlaskClient
    doc: dict[str, Any]

    @property
    def repository(self) -> Repository:
        repository: Repository = self.client.application.extensions["repository"]
        return repository

    def version(self, name: str) -> str:
        model = self.repository.slots[name].model
        assert model is not None
        return model.version


def _app(root: Path, **settings: Any) -> Flask:
    return create_app(Settings(model_dir=root, reload_interval=0, **settings))


@pytest.fixture(scope="module")
def served(repository: Path) -> dict[str, Served]:
    """iris, wine (classifiers) and diabetes (a regressor), served as each variant."""
    apps = {}
    for variant, settings in VARIANTS.items():
        client = _app(repository, **settings).test_client()
        keyed = _app(repository, api_keys=KEY, **settings).test_client()
        response = client.get("/openapi.json")
        assert response.status_code == 200
        assert response.mimetype == "application/json"
        apps[variant] = Served(client, keyed, response.json)
    return apps


@pytest.fixture(scope="module")
def ready(served: dict[str, Served]) -> Served:
    return served["ready"]


def operations(doc: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in doc["paths"].items():
        for method, op in item.items():
            if method in HTTP_METHODS:
                yield path, method, op


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


def request_examples(op: dict[str, Any]) -> dict[str, Any]:
    media = op.get("requestBody", {}).get("content", {}).get("application/json", {})
    return {name: example["value"] for name, example in media.get("examples", {}).items()}


def first_example(op: dict[str, Any]) -> Any:
    return next(iter(request_examples(op).values()), [{}])


def close(actual: Any, expected: Any) -> bool:
    """Equal, numbers within float32 rounding: the card's answers were computed in another batch,
    and a tree ensemble may sum in another order there."""
    if isinstance(expected, dict):
        return (
            isinstance(actual, dict)
            and actual.keys() == expected.keys()
            and all(close(actual[k], v) for k, v in expected.items())
        )
    if isinstance(expected, list):
        return (
            isinstance(actual, list)
            and len(actual) == len(expected)
            and all(close(a, e) for a, e in zip(actual, expected, strict=True))
        )
    if isinstance(expected, float) and not isinstance(actual, bool | str):
        return math.isclose(actual, expected, rel_tol=1e-6, abs_tol=1e-6)
    return bool(actual == expected)


def fill(path: str, version: str) -> str:
    return path.replace("{version}", version)


def model_of(path: str) -> str | None:
    match = re.match(r"^/(?:v1/|v2/)?models/([^/:]+)", path)
    return match.group(1) if match else None


def too_many(path: str, op: dict[str, Any]) -> Any:
    """A request over the row limit, shaped like the operation's first example."""
    example = first_example(op)
    if path.endswith("/infer"):
        width = example["inputs"][0]["shape"][1]
        tensor = {"name": "input", "shape": [TOO_MANY, width], "datatype": "FP32"}
        return {"inputs": [{**tensor, "data": [0] * width * TOO_MANY}]}
    if path.endswith(":predict"):
        return {"instances": example["instances"][:1] * TOO_MANY}
    return example[:1] * TOO_MANY


def bad_request(doc: dict[str, Any], op: dict[str, Any]) -> Any:
    """The body of the first example of the operation's documented 400."""
    response = resolve(doc, op["responses"]["400"])
    example = next(iter(response["content"]["application/json"]["examples"].values()))
    return example[openapi.TRIGGER]


def _send_for_status(
    served: dict[str, Served], variant: str, status: str, path: str, method: str
) -> TestResponse:
    """A request that should get `status` from the operation, as the document describes it."""
    app = served[variant]
    op = app.doc["paths"][path][method]
    if path in SERVER_WIDE:
        app = served["ready" if status == "200" else "partial"]
    name = model_of(path)
    version = app.version(name) if name and app.repository.slots[name].model else "any"
    client, url = app.client, fill(path, version)
    kwargs: dict[str, Any] = {"json": first_example(op)} if method == "post" else {}
    if status == "401":
        client = app.keyed
    elif status == "404":
        url = fill(path, openapi.UNKNOWN_VERSION)
    elif status == "400":
        kwargs = {
            "data": openapi.trigger_text(bad_request(app.doc, op)),
            "content_type": "application/json",
        }
    elif status == "413":
        kwargs = {"json": too_many(path, op)}
    elif status == "415":
        kwargs = {"data": b'{"0": 0}', "content_type": "text/plain"}
    elif status == "411":
        kwargs["headers"] = {"Transfer-Encoding": "chunked"}
    else:
        assert status in ("200", "503"), f"no way to provoke {status}"
    return client.open(url, method=method.upper(), **kwargs)


@pytest.mark.parametrize("variant", VARIANTS)
def test_document_is_valid_openapi_3_1(served: dict[str, Served], variant: str) -> None:
    doc = served[variant].doc
    assert doc["openapi"].startswith("3.1.")
    validate(doc)


@pytest.mark.parametrize("variant", VARIANTS)
def test_served_document_is_built_from_the_app_models_and_settings(
    served: dict[str, Served], variant: str
) -> None:
    app = served[variant]
    settings = app.client.application.config["SETTINGS"]
    built = msgspec.json.decode(msgspec.json.encode(openapi.build(settings, app.repository)))
    assert app.doc == built == openapi.document(app.client.application)


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_route_is_documented_with_its_methods_and_nothing_else(
    served: dict[str, Served], variant: str
) -> None:
    """Templated rules are documented once per served model: `<name>` becomes each name."""
    app = served[variant]
    names = list(app.repository.slots)
    served_paths: dict[str, set[str]] = {}
    for rule in app.client.application.url_map.iter_rules():
        if rule.endpoint in ASSET_ENDPOINTS:
            continue
        if rule.rule == "/inference" and app.repository.default is None:
            continue  # without a default model it only answers 404
        path = re.sub(r"<(?:[^:<>]+:)?version>", "{version}", rule.rule)
        for name in names if "<name>" in path else [None]:
            concrete = path.replace("<name>", name) if name else path
            methods = (rule.methods or set()) - {"HEAD", "OPTIONS"}
            served_paths.setdefault(concrete, set()).update(methods)
    documented = {
        path: {m.upper() for m in item if m in HTTP_METHODS}
        for path, item in app.doc["paths"].items()
    }
    assert served_paths == documented


def test_each_model_gets_schemas_from_its_signature_and_the_limits(repository: Path) -> None:
    app = _app(repository, max_rows=7, max_body_bytes=999)
    spec = openapi.document(app)
    schemas = spec["components"]["schemas"]
    for name, slot in app.extensions["repository"].slots.items():
        sig = slot.model.signature
        positional = [str(i) for i in range(sig.width)]
        assert list(schemas[f"{name}.Record"]["properties"]) == positional
        assert list(schemas[f"{name}.NamedRecord"]["properties"]) == list(sig.feature_names)
        request = schemas[f"{name}.RecordsRequest"]["oneOf"]
        assert [s.get("maxItems") for s in request] == [7, 7, None, None]
        shape = schemas[f"{name}.V2Tensor"]["properties"]["shape"]["prefixItems"]
        assert (shape[0]["maximum"], shape[1]["const"]) == (7, sig.width)
        assert schemas[f"{name}.V2Output"]["properties"]["name"]["enum"] == list(sig.outputs)
        answer = schemas[f"{name}.RecordsResponse"]["properties"]["predictions"]["items"]
        if sig.is_classifier:
            assert answer["enum"] == list(sig.labels)
            assert f"{name}.V2ProbabilitiesTensor" in schemas
        else:
            assert answer["type"] == "number"
            assert "probabilities" not in schemas[f"{name}.RecordsResponse"]["properties"]
            assert f"{name}.V2PredictionTensor" in schemas
        bound = schemas[f"{name}.Record"]["properties"]["0"]["description"]
        assert f"{sig.features[0].min:g} to {sig.features[0].max:g}" in bound
    too_large = spec["components"]["responses"]["RecordsTooLarge"]["content"]["application/json"]
    assert too_large["examples"]["rows"]["value"] == {
        "error": "8 records is more than the limit of 7."
    }
    assert "999 bytes" in spec["info"]["description"]


def test_examples_come_from_each_model_card(ready: Served) -> None:
    for name, slot in ready.repository.slots.items():
        assert slot.model is not None
        sig, version = slot.model.signature, slot.model.version
        rows = [e["inputs"] for e in sig.examples]
        op = ready.doc["paths"][f"/models/{name}/inference"]["post"]
        named = [dict(zip(sig.feature_names, row, strict=True)) for row in rows]
        assert request_examples(op)["named"] == named
        answer = op["responses"]["200"]["content"]["application/json"]["examples"]["named"]
        key = "label" if sig.is_classifier else "prediction"
        assert answer["value"] == {
            "predictions": [e[key] for e in sig.examples],
            "model": {"name": name, "version": version},
        }
        v2 = request_examples(ready.doc["paths"][f"/v2/models/{name}/infer"]["post"])
        assert v2["nested"]["inputs"][0]["data"] == rows
    assert "iris" in ready.doc["info"]["description"]
    assert "diabetes" in ready.doc["info"]["description"]
    default = ready.doc["paths"]["/inference"]["post"]
    assert (
        default["requestBody"]
        == ready.doc["paths"]["/models/iris/inference"]["post"]["requestBody"]
    )


def test_v2_request_schema_has_the_fields_and_values_the_server_decodes(ready: Served) -> None:
    schemas = ready.doc["components"]["schemas"]
    for name in ready.repository.slots:
        for struct in (protocol.V2Request, protocol.V2Tensor, protocol.V2Output):
            fields = schemas[f"{name}.{struct.__name__}"]["properties"]
            assert set(fields) == set(struct.__struct_fields__)
        datatype = schemas[f"{name}.V2Tensor"]["properties"]["datatype"]
        assert datatype["enum"] == list(protocol.DATATYPES)


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_example_matches_its_schema(served: dict[str, Served], variant: str) -> None:
    doc, checked = served[variant].doc, 0
    for path, method, op in operations(doc):
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


def test_request_examples_get_the_documented_answer(ready: Served) -> None:
    doc, sent = ready.doc, 0
    for path, method, op in operations(doc):
        if not request_examples(op):
            continue
        answers = op["responses"]["200"]["content"]["application/json"]["examples"]
        name = model_of(path) or ready.repository.default
        assert name is not None
        url = fill(path, ready.version(name))
        for example, body in request_examples(op).items():
            response = ready.client.open(url, method=method.upper(), json=body)
            assert response.status_code == 200, (path, example, response.json)
            check_response(doc, op, response)
            assert close(response.json, answers[example]["value"]), (path, example)
            sent += 1
        if "with_probabilities" in answers:
            response = ready.client.post(f"{url}?probabilities=true", json=first_example(op))
            check_response(doc, op, response)
            assert close(response.json, answers["with_probabilities"]["value"]), path
    assert sent >= 3 * 10


@pytest.mark.parametrize("variant", VARIANTS)
def test_read_examples_are_what_the_server_answers(served: dict[str, Served], variant: str) -> None:
    app, checked = served[variant], 0
    for path, method, op in operations(app.doc):
        for status, response in op["responses"].items():
            content = resolve(app.doc, response).get("content", {}).get("application/json", {})
            if "$ref" in response or "requestBody" in op or not content.get("examples"):
                continue
            name = model_of(path)
            version = app.version(name) if name and app.repository.slots[name].model else "x"
            answer = app.client.open(fill(path, version), method=method.upper())
            assert str(answer.status_code) == status, path
            for example in content["examples"].values():
                if path == "/v2":
                    example["value"]["extensions"] = answer.json["extensions"]
                assert answer.json == example["value"], path
                checked += 1
    assert checked >= 5


def test_original_iris_records_still_answer_through_the_default_model(ready: Served) -> None:
    payload = [{"0": 0, "1": 5, "2": 7, "3": 6}, {"0": 1, "1": 3, "2": 3, "3": 1}]
    response = ready.client.post("/inference", json=payload)
    assert response.json["predictions"] == ["virginica", "versicolor"]
    check_response(ready.doc, ready.doc["paths"]["/inference"]["post"], response)


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_documented_status_is_what_the_server_answers(
    served: dict[str, Served], variant: str
) -> None:
    doc, provoked = served[variant].doc, 0
    for path, method, op in operations(doc):
        for status in op["responses"]:
            response = _send_for_status(served, variant, status, path, method)
            where = f"{method.upper()} {path} -> {status}"
            assert str(response.status_code) == status, (where, response.get_data()[:300])
            try:
                check_response(doc, op, response)
            except Exception as exc:
                raise AssertionError(f"{where}: {exc}") from exc
            provoked += 1
    assert provoked >= 20


def test_documented_bearer_scheme_opens_the_inference_endpoints(ready: Served) -> None:
    doc = ready.doc
    assert doc["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"
    secured = {
        (path, method)
        for path, method, op in operations(doc)
        if {"bearerAuth": []} in op.get("security", [])
    }
    inference = {
        (path, "post")
        for path in doc["paths"]
        if path == "/inference" or re.search(r"(/inference|:predict|/infer)$", path)
    }
    assert secured == inference
    assert len(secured) == 1 + 3 * 4
    for path, method in secured:
        op = doc["paths"][path][method]
        url = fill(path, ready.version(model_of(path) or "iris"))
        auth = {"Authorization": f"Bearer {KEY}"}
        assert ready.keyed.post(url, json=first_example(op), headers=auth).status_code == 200
        assert ready.keyed.post(url, json=first_example(op)).status_code == 401


# (variant, component response, example) -> keyed?, method, url, request arguments
SHARED_TRIGGERS: dict[tuple[str, str, str], tuple[bool, str, str, dict[str, Any]]] = {
    ("ready", "Unauthorized", "missing_key"): (True, "POST", "/inference", {"json": []}),
    ("ready", "ModelNotFound", "name"): (False, "GET", "/v2/models/no-such-model", {}),
    ("ready", "NoEndpoint", "path"): (False, "GET", "/predict", {}),
    ("ready", "MethodNotAllowed", "method"): (False, "POST", "/livez", {}),
    ("ready", "RecordsTooLarge", "rows"): (
        False,
        "POST",
        "/models/iris/inference",
        {"json": [{str(i): 1 for i in range(4)}] * TOO_MANY},
    ),
    ("ready", "RecordsTooLarge", "bytes"): (
        False,
        "POST",
        "/v1/models/iris:predict",
        {
            "data": b"[" + b" " * Settings().max_body_bytes + b"]",
            "content_type": "application/json",
        },
    ),
    ("ready", "V2TooLarge", "rows"): (
        False,
        "POST",
        "/v2/models/diabetes/infer",
        {
            "json": {
                "inputs": [
                    {
                        "name": "input",
                        "shape": [TOO_MANY, 10],
                        "datatype": "FP32",
                        "data": [0] * 10 * TOO_MANY,
                    }
                ]
            }
        },
    ),
    ("ready", "V2TooLarge", "bytes"): (
        False,
        "POST",
        "/v2/models/iris/infer",
        {
            "data": b"{" + b" " * Settings().max_body_bytes + b"}",
            "content_type": "application/json",
        },
    ),
    ("ready", "UnsupportedMediaType", "text"): (
        False,
        "POST",
        "/inference",
        {"data": b'{"0": 0}', "content_type": "text/plain"},
    ),
    ("ready", "LengthRequired", "chunked"): (
        False,
        "POST",
        "/inference",
        {"data": b"[]", "headers": {"Transfer-Encoding": "chunked"}},
    ),
    ("partial", "absent.NotReady", "not_loaded"): (False, "POST", "/inference", {"json": []}),
    ("no_default", "NoDefaultModel", "no_default"): (False, "GET", "/model", {}),
}


def _model_triggers(app: Served, component: str) -> list[tuple[str, str, dict[str, Any]]]:
    """The operations documenting a model's error component, and what each one is sent."""
    found = []
    for path, method, op in operations(app.doc):
        if {"$ref": f"#/components/responses/{component}"} not in op["responses"].values():
            continue
        name = model_of(path) or app.repository.default
        assert name is not None
        url = fill(path, openapi.UNKNOWN_VERSION if component.endswith("NotFound") else "")
        if "{version}" in path and not component.endswith("NotFound"):
            url = fill(path, app.version(name))
        found.append((method.upper(), url, {"json": first_example(op)} if method == "post" else {}))
    assert found, f"no operation documents {component}"
    return found


@pytest.mark.parametrize("variant", VARIANTS)
def test_error_examples_are_what_the_server_answers(
    served: dict[str, Served], variant: str
) -> None:
    app, checked = served[variant], set()
    for component, documented in app.doc["components"]["responses"].items():
        examples = documented["content"]["application/json"]["examples"]
        for example, value in examples.items():
            message = value["value"]["error"]
            triggers: list[tuple[str, str, dict[str, Any]]]
            if openapi.TRIGGER in value:
                body = openapi.trigger_text(value[openapi.TRIGGER]).encode()
                triggers = [
                    (method, url, {"data": body, "content_type": "application/json"})
                    for method, url, _ in _model_triggers(app, component)
                ]
                keyed = False
            elif component.endswith(".VersionNotFound"):
                triggers, keyed = _model_triggers(app, component), False
            elif (variant, component, example) in SHARED_TRIGGERS:
                keyed, method, url, kwargs = SHARED_TRIGGERS[variant, component, example]
                triggers = [(method, url, kwargs)]
            else:
                continue  # provoked in the variant the table names
            client = app.keyed if keyed else app.client
            status = int(_status_of(app.doc, component))
            for method, url, kwargs in triggers:
                response = client.open(url, method=method, **kwargs)
                assert response.status_code == status, (component, example, url, response.json)
                check_response(app.doc, {"responses": {str(status): documented}}, response)
                assert response.json["error"] == message, (component, example, url)
            checked.add((component, example))
    expected = {(c, e) for v, c, e in SHARED_TRIGGERS if v == variant}
    assert expected <= checked
    shared = {c for _, c, _ in SHARED_TRIGGERS}
    every = {
        (component, example)
        for component, response in app.doc["components"]["responses"].items()
        for example in response["content"]["application/json"]["examples"]
    }
    unchecked = {(c, e) for c, e in every - checked if c not in shared}
    assert not unchecked, unchecked


def _status_of(doc: dict[str, Any], component: str) -> str:
    """The one status every operation documents this component under."""
    statuses = {
        status
        for _, _, op in operations(doc)
        for status, response in op["responses"].items()
        if response.get("$ref", "").endswith(f"/{component}")
    }
    fixed = {"ModelNotFound": {"404"}, "NoEndpoint": {"404"}, "MethodNotAllowed": {"405"}}
    statuses = statuses or fixed.get(component, set())
    assert len(statuses) == 1, (component, statuses)
    return statuses.pop()


def test_document_follows_a_reload(repository: Path, tmp_path: Path) -> None:
    """A new version going live, or a model appearing, rebuilds the document; nothing else."""
    root = tmp_path / "models"
    shutil.copytree(repository / "iris", root / "iris")
    app = _app(root)
    first = openapi.encoded(app)
    assert openapi.encoded(app) is first  # cached while nothing changes
    old = app.extensions["repository"].slots["iris"].model.version
    train(spec_for("iris", seed=7), Options(root=root, force=True))
    shutil.copytree(repository / "diabetes", root / "diabetes")
    assert set(app.extensions["repository"].check()) == {"iris", "diabetes"}
    doc = openapi.document(app)
    new = app.extensions["repository"].slots["iris"].model.version
    assert new != old
    example = doc["paths"]["/inference"]["post"]["responses"]["200"]["content"]
    assert example["application/json"]["examples"]["named"]["value"]["model"]["version"] == new
    assert "/v2/models/diabetes/infer" in doc["paths"]
    metadata = doc["paths"]["/v2/models/iris"]["get"]["responses"]["200"]["content"]
    assert metadata["application/json"]["examples"]["metadata"]["value"]["versions"] == [new]


def test_a_card_without_examples_gets_mid_range_requests_and_no_invented_answers(
    repository: Path, tmp_path: Path
) -> None:
    root = tmp_path / "models"
    shutil.copytree(repository / "diabetes", root / "diabetes")
    (card_file,) = root.glob("diabetes/*/model.json")
    card = msgspec.json.decode(card_file.read_bytes())
    card["signature"]["examples"] = []
    card_file.write_bytes(msgspec.json.encode(card))
    client = _app(root).test_client()
    doc = client.get("/openapi.json").json
    validate(doc)
    op = doc["paths"]["/models/diabetes/inference"]["post"]
    single = request_examples(op)["single"]
    middle = [(f["min"] + f["max"]) / 2 for f in card["signature"]["features"]]
    assert list(single.values()) == middle
    assert "examples" not in op["responses"]["200"]["content"]["application/json"]
    for path, method, op in operations(doc):
        for body in request_examples(op).values():
            response = client.open(fill(path, card["version"]), method=method.upper(), json=body)
            assert response.status_code == 200, (path, response.json)
            check_response(doc, op, response)


def test_docs_page_uses_only_packaged_assets_by_relative_urls(ready: Served) -> None:
    client = ready.client
    page = client.get("/docs")
    assert page.status_code == 200
    assert page.mimetype == "text/html"
    urls = re.findall(r'(?:src|href)="([^"]+)"', page.get_data(as_text=True))
    assert urls, "the page loads no assets"
    for url in urls:
        assert not re.match(r"^(/|[a-z]+:)", url), f"{url} is not relative"
        asset = client.get(f"/{url}")
        assert asset.status_code == 200, url
        assert len(asset.get_data()) > 100, url
    init = client.get("/docs/init.js").get_data(as_text=True)
    assert 'url: "openapi.json"' in init
    assert "tryItOutEnabled: true" in init
    version = Path(openapi.ASSETS, "VERSION").read_text().strip()
    assert re.fullmatch(r"v5\.\d+\.\d+", version), f"Swagger UI {version} cannot show OpenAPI 3.1"


def test_docs_assets_cannot_escape_the_package_directory(ready: Served) -> None:
    assert ready.client.get("/docs/../__init__.py").status_code == 404
    assert ready.client.get("/docs/%2e%2e/flask_swagger_ui.py").status_code == 404


def test_registering_the_docs_twice_is_harmless(ready: Served) -> None:
    openapi.init_app(ready.client.application)
    assert ready.client.get("/openapi.json").status_code == 200


def test_number_bounds_are_where_float32_overflows(ready: Served) -> None:
    schemas = ready.doc["components"]["schemas"]
    number = schemas["diabetes.Record"]["properties"]["1"]
    bound = number["exclusiveMaximum"]
    assert number["exclusiveMinimum"] == -bound
    record = first_example(ready.doc["paths"]["/models/diabetes/inference"]["post"])[0]
    largest = math.nextafter(bound, 0)
    for value, status in ((largest, 200), (-largest, 200), (bound, 400), (-bound, 400)):
        response = ready.client.post("/models/diabetes/inference", json=[{**record, "1": value}])
        assert response.status_code == status, (value, response.json)
