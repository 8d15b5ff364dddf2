"""The OpenAPI 3.1 description of the service and the interactive page that renders it.

The document is built from the definitions the code validates with: the feature names and key
styles, the V2 request Structs (through `msgspec.json.schema`), the accepted datatypes and output
names, and the limits of the running app's Settings. A test walks the Flask url_map so that no
route goes undocumented, and sends every example to the app.

`GET /docs` is Swagger UI 5 from the flask-swagger-ui package's files: no CDN, so it works offline.
"""

from __future__ import annotations

from importlib.resources import files
from typing import Any

import msgspec
from flask import Blueprint, Flask, Response, current_app, send_from_directory

from inference_service import FEATURES, LABELS, MODEL_NAME, __version__, protocol
from inference_service.config import Settings
from inference_service.smoke import ORIGINAL_LABELS, ORIGINAL_PAYLOAD

bp = Blueprint("openapi", __name__)
ASSETS = str(files("flask_swagger_ui") / "dist")
# Doubles from this magnitude on round to infinity as float32, which the server refuses.
FLOAT32_OVERFLOW = 2.0**128 * (1 - 2.0**-25)
REF = "#/components/schemas/{name}"
JSON = "application/json"
REQUEST_ID = "X-Request-ID"

# Examples use a real answer of the model trained from the repository's data set; the version
# differs per training run.
EXAMPLE_VERSION = "d055ba30f16d"
ORIGINAL_ROWS = [[float(v) for v in record.values()] for record in ORIGINAL_PAYLOAD]
ORIGINAL_PREDICTIONS = ORIGINAL_LABELS
ORIGINAL_PROBABILITIES = [[0.0, 0.0, 1.0], [0.0, 1.0, 0.0]]
NO_MODEL = "no model in models/iris: current is missing (run `inference-service train`)"


def ref(name: str) -> dict[str, str]:
    return {"$ref": REF.format(name=name)}


def _number(description: str) -> dict[str, Any]:
    return {
        "type": "number",
        "exclusiveMinimum": -FLOAT32_OVERFLOW,
        "exclusiveMaximum": FLOAT32_OVERFLOW,
        "description": description,
    }


def _record(keys: tuple[str, ...], title: str) -> dict[str, Any]:
    return {
        "title": title,
        "type": "object",
        "properties": {
            key: _number(f"{feature} in cm") for key, feature in zip(keys, FEATURES, strict=True)
        },
        "required": list(keys),
        "additionalProperties": False,
    }


def _records_schemas(max_rows: int) -> dict[str, Any]:
    def many(name: str) -> dict[str, Any]:
        return {"type": "array", "items": ref(name), "minItems": 1, "maxItems": max_rows}

    return {
        "PositionalRecord": _record(protocol.POSITIONAL, "Record with positional keys"),
        "NamedRecord": _record(FEATURES, "Record with feature names"),
        "RecordsRequest": {
            "description": (
                f"An array of 1 to {max_rows} records, or one record. Keys are the positions "
                f"{', '.join(protocol.POSITIONAL)} or the feature names {', '.join(FEATURES)}; "
                "all records of a request use the same style."
            ),
            "oneOf": [
                many("PositionalRecord"),
                many("NamedRecord"),
                ref("PositionalRecord"),
                ref("NamedRecord"),
            ],
        },
        "RecordsResponse": {
            "type": "object",
            "properties": {
                "predictions": {
                    "type": "array",
                    "items": {"type": "string", "enum": list(LABELS)},
                    "description": "One class per record, in request order.",
                },
                "model": ref("ModelRef"),
                "probabilities": {
                    "type": "array",
                    "description": "With `?probabilities=true`: class probabilities per record.",
                    "items": {
                        "type": "object",
                        "properties": {
                            label: {"type": "number", "minimum": 0, "maximum": 1}
                            for label in LABELS
                        },
                        "required": list(LABELS),
                        "additionalProperties": False,
                    },
                },
            },
            "required": ["predictions", "model"],
            "additionalProperties": False,
        },
    }


def _v2_request_schemas(max_rows: int) -> dict[str, Any]:
    """msgspec's schema of the Structs the server decodes, narrowed by the checks parse_v2 runs."""
    _, schemas = msgspec.json.schema_components([protocol.V2Request], ref_template=REF)
    width = len(FEATURES)
    request, tensor, output = schemas["V2Request"], schemas["V2Tensor"], schemas["V2Output"]
    request["description"] = "Open Inference Protocol V2 inference request: one [N, 4] tensor."
    request["properties"]["inputs"].update(minItems=1, maxItems=1)
    request["properties"]["id"]["description"] = "Echoed in the response."
    request["properties"]["outputs"]["description"] = (
        f"Outputs to return (default: all of {', '.join(protocol.OUTPUT_NAMES)})."
    )
    props = tensor["properties"]
    props["shape"].update(
        minItems=2,
        maxItems=2,
        prefixItems=[
            {"type": "integer", "minimum": 1, "maximum": max_rows, "description": "rows"},
            {"type": "integer", "const": width, "description": "features"},
        ],
        description=f"[N, {width}] with N from 1 to {max_rows}.",
    )
    props["datatype"].update(
        enum=list(protocol.DATATYPES),
        description="Integer types need integral data within the type's range.",
    )
    props["data"] = {
        "description": (
            f"N x {width} values, flat in row-major order or as N rows of {width}; "
            f"features in the order {', '.join(FEATURES)}."
        ),
        "oneOf": [
            {
                "type": "array",
                "items": _number("feature value"),
                "minItems": width,
                "maxItems": width * max_rows,
            },
            {
                "type": "array",
                "items": {
                    "type": "array",
                    "items": _number("feature value"),
                    "minItems": width,
                    "maxItems": width,
                },
                "minItems": 1,
                "maxItems": max_rows,
            },
        ],
    }
    output["properties"]["name"]["enum"] = list(protocol.OUTPUT_NAMES)
    return schemas


def _response_schemas() -> dict[str, Any]:
    n_labels = len(LABELS)
    string_list = {"type": "array", "items": {"type": "string"}}
    return {
        "Error": {
            "type": "object",
            "properties": {"error": {"type": "string", "description": "What was wrong."}},
            "required": ["error"],
            "additionalProperties": False,
        },
        "ModelRef": {
            "type": "object",
            "properties": {"name": {"type": "string"}, "version": {"type": "string"}},
            "required": ["name", "version"],
            "additionalProperties": False,
        },
        "V2LabelTensor": {
            "type": "object",
            "properties": {
                "name": {"const": "label"},
                "shape": {"type": "array", "items": {"type": "integer"}, "minItems": 1},
                "datatype": {"const": "BYTES"},
                "data": {"type": "array", "items": {"type": "string", "enum": list(LABELS)}},
            },
            "required": ["name", "shape", "datatype", "data"],
        },
        "V2ProbabilitiesTensor": {
            "type": "object",
            "description": f"[N, {n_labels}] probabilities, flat, classes in order {LABELS}.",
            "properties": {
                "name": {"const": "probabilities"},
                "shape": {"type": "array", "items": {"type": "integer"}, "minItems": 2},
                "datatype": {"const": "FP32"},
                "data": {"type": "array", "items": {"type": "number", "minimum": 0, "maximum": 1}},
            },
            "required": ["name", "shape", "datatype", "data"],
        },
        "V2Response": {
            "type": "object",
            "properties": {
                "model_name": {"type": "string"},
                "model_version": {"type": "string"},
                "id": {"type": "string", "description": "The request's `id`, when it had one."},
                "outputs": {
                    "type": "array",
                    "items": {"oneOf": [ref("V2LabelTensor"), ref("V2ProbabilitiesTensor")]},
                },
            },
            "required": ["model_name", "model_version", "outputs"],
        },
        "V2ServerMetadata": {
            "type": "object",
            "properties": {
                "name": {"type": "string"},
                "version": {"type": "string"},
                "extensions": string_list,
            },
            "required": ["name", "version", "extensions"],
        },
        "V2TensorMetadata": {
            "type": "object",
            "properties": {
                "name": {"type": "string"},
                "datatype": {"type": "string"},
                "shape": {"type": "array", "items": {"type": "integer"}},
            },
            "required": ["name", "datatype", "shape"],
        },
        "V2ModelMetadata": {
            "type": "object",
            "properties": {
                "name": {"type": "string"},
                "versions": string_list,
                "platform": {"type": "string"},
                "inputs": {"type": "array", "items": ref("V2TensorMetadata")},
                "outputs": {"type": "array", "items": ref("V2TensorMetadata")},
                "parameters": {
                    "type": "object",
                    "description": "Key fields of the model card.",
                    "properties": {
                        "version": {"type": "string"},
                        "trained_at": {"type": "string", "format": "date-time"},
                        "data_sha256": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
                        "features": string_list,
                        "labels": string_list,
                        "metrics": {"type": "object"},
                    },
                },
            },
            "required": ["name", "versions", "platform", "inputs", "outputs"],
        },
        "ModelCard": {
            "type": "object",
            "description": "The model card written by training, next to the ONNX artifact.",
            "properties": {
                "name": {"type": "string"},
                "version": {"type": "string"},
                "created_at": {"type": "string", "format": "date-time"},
                "data_sha256": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
                "features": string_list,
                "labels": string_list,
                "metrics": {"type": "object"},
            },
            "required": [
                "name",
                "version",
                "created_at",
                "data_sha256",
                "features",
                "labels",
                "metrics",
            ],
        },
    }


def _error(description: str, examples: dict[str, str]) -> dict[str, Any]:
    return {
        "description": description,
        "content": {
            JSON: {
                "schema": ref("Error"),
                "examples": {
                    name: {"summary": message, "value": {"error": message}}
                    for name, message in examples.items()
                },
            }
        },
    }


def _error_responses(settings: Settings) -> dict[str, Any]:
    rows, size = settings.max_rows, settings.max_body_bytes
    datatypes = ", ".join(protocol.DATATYPES)
    outputs = ", ".join(protocol.OUTPUT_NAMES)
    return {
        "RecordsBadRequest": _error(
            "The body is not a valid records request.",
            {
                "missing_key": "Record 0: missing key '3'; every record needs '0', '1', '2', '3'.",
                "not_a_number": "Record 1, key '2': expected a number, got a string.",
                "empty": "The body is an empty array; send at least one record.",
                "not_json": "The body is not valid JSON: Input data was truncated.",
            },
        ),
        "V2BadRequest": _error(
            "The body is not a valid V2 request for this model.",
            {
                "shape": "Input 'input': shape must be [N, 4], got [2, 3].",
                "datatype": (
                    f"Input 'input': datatype 'BOOL' is not supported; use one of {datatypes}."
                ),
                "output": f"Unknown output 'scores'; this model has {outputs}.",
                "two_inputs": "Send exactly one input tensor, got 2.",
            },
        ),
        "Unauthorized": _with_header(
            _error(
                "The server has API keys (INFERENCE_API_KEYS) and the request's bearer key is "
                "missing or wrong.",
                {"missing_key": "Missing or invalid API key."},
            ),
            "WWW-Authenticate",
            {"const": "Bearer"},
        ),
        "ModelNotFound": _error(
            f"The model name is not {MODEL_NAME!r}, or the version is not the live one.",
            {"name": f"Model 'mnist' not found; this server serves {MODEL_NAME!r}."},
        ),
        "NoEndpoint": _error(
            "No route at this path.", {"path": "No endpoint at /predict; see /docs for the API."}
        ),
        "MethodNotAllowed": _with_header(
            _error(
                "The path exists, but not for this method; the `Allow` header lists the methods.",
                {"method": "GET is not allowed on /inference."},
            ),
            "Allow",
            {"type": "string", "examples": ["OPTIONS, POST"]},
        ),
        "RecordsTooLarge": _error(
            f"The body is over {size} bytes, or has more than {rows} records.",
            {
                "rows": f"{rows + 1} records is more than the limit of {rows}.",
                "bytes": f"The body is larger than the limit of {size} bytes.",
            },
        ),
        "V2TooLarge": _error(
            f"The body is over {size} bytes, or the tensor has more than {rows} rows.",
            {"rows": f"{rows + 1} rows is more than the limit of {rows}."},
        ),
        "UnsupportedMediaType": _error(
            "The body is not sent as `application/json`.",
            {"text": "Content-Type must be application/json, got 'text/plain'."},
        ),
        "ModelNotReady": _error(
            "No verified model is loaded yet, or the artifact failed verification.",
            {"no_model": f"No model is loaded: {NO_MODEL}."},
        ),
    }


def _with_header(response: dict[str, Any], name: str, schema: dict[str, Any]) -> dict[str, Any]:
    response.setdefault("headers", {})[name] = {"required": True, "schema": schema}
    return response


def _request_ids(paths: dict[str, Any], responses: dict[str, Any]) -> None:
    """Every operation takes an optional X-Request-ID, and every response carries one."""
    header = {"$ref": f"#/components/headers/{REQUEST_ID}"}
    for item in paths.values():
        for operation in item.values():
            operation.setdefault("parameters", []).append(
                {"$ref": f"#/components/parameters/{REQUEST_ID}"}
            )
            for response in operation["responses"].values():
                if "$ref" not in response:
                    response.setdefault("headers", {})[REQUEST_ID] = header
    for response in responses.values():
        response.setdefault("headers", {})[REQUEST_ID] = header


def _body(schema: dict[str, Any], examples: dict[str, Any]) -> dict[str, Any]:
    return {"content": {JSON: {"schema": schema, "examples": examples}}}


def _ok(description: str, schema: dict[str, Any], examples: dict[str, Any]) -> dict[str, Any]:
    return {"description": description, **_body(schema, examples)}


def _errors(*names: str) -> dict[str, Any]:
    status = {
        "RecordsBadRequest": "400",
        "V2BadRequest": "400",
        "Unauthorized": "401",
        "ModelNotFound": "404",
        "RecordsTooLarge": "413",
        "V2TooLarge": "413",
        "UnsupportedMediaType": "415",
        "ModelNotReady": "503",
    }
    return {status[name]: {"$ref": f"#/components/responses/{name}"} for name in names}


def _example(value: Any, summary: str) -> dict[str, Any]:
    return {"summary": summary, "value": value}


MODEL_REF = {"name": MODEL_NAME, "version": EXAMPLE_VERSION}
NAME = {
    "name": "name",
    "in": "path",
    "required": True,
    "description": "The model name.",
    "schema": {"type": "string", "enum": [MODEL_NAME]},
}
VERSION = {
    "name": "version",
    "in": "path",
    "required": True,
    "description": "The live model version (see `GET /v2/models/iris`); any other gives 404.",
    "schema": {"type": "string", "minLength": 1},
}
CARD_EXAMPLE = {
    "name": MODEL_NAME,
    "version": EXAMPLE_VERSION,
    "created_at": "2026-11-26T12:50:09+00:00",
    "data_sha256": "91eb642c3adbc7bad8e99c930c11fa3a5cc8a07262c7a753b4e6ecf405f2e05e",
    "features": list(FEATURES),
    "labels": list(LABELS),
    "algorithm": "sklearn.tree.DecisionTreeClassifier",
    "metrics": {"cv_accuracy_mean": 0.95, "holdout_accuracy": 0.933333, "holdout_rows": 30},
    "parity": {"rows_checked": 10171, "mismatches": 0},
}
OPTIONAL_AUTH: list[dict[str, list[str]]] = [{}, {"bearerAuth": []}]


def _records_operation() -> dict[str, Any]:
    named = [dict(zip(FEATURES, record.values(), strict=True)) for record in ORIGINAL_PAYLOAD]
    probabilities = [dict(zip(LABELS, row, strict=True)) for row in ORIGINAL_PROBABILITIES]
    return {
        "post": {
            "tags": ["original contract"],
            "operationId": "inference",
            "summary": "Classify iris records",
            "description": (
                "The original contract: an array of records with the four measurements, keyed by "
                'position (`"0"`..`"3"`) or by feature name. Answers one class per record.'
            ),
            "security": OPTIONAL_AUTH,
            "parameters": [
                {
                    "name": "probabilities",
                    "in": "query",
                    "required": False,
                    "description": "Also return class probabilities (`1`, `true` or `yes`).",
                    "schema": {"type": "boolean", "default": False},
                }
            ],
            "requestBody": {
                "required": True,
                **_body(
                    ref("RecordsRequest"),
                    {
                        "original": _example(ORIGINAL_PAYLOAD, "The original 2-record payload"),
                        "named": _example(named, "The same records keyed by feature name"),
                        "single": _example(ORIGINAL_PAYLOAD[0], "One record as a bare object"),
                    },
                ),
            },
            "responses": {
                "200": _ok(
                    "One predicted class per record.",
                    ref("RecordsResponse"),
                    {
                        "original": _example(
                            {"predictions": ORIGINAL_PREDICTIONS, "model": MODEL_REF},
                            "Answer to the original payload",
                        ),
                        "with_probabilities": _example(
                            {
                                "predictions": ORIGINAL_PREDICTIONS,
                                "model": MODEL_REF,
                                "probabilities": probabilities,
                            },
                            "Answer with ?probabilities=true",
                        ),
                    },
                ),
                **_errors(
                    "RecordsBadRequest",
                    "Unauthorized",
                    "RecordsTooLarge",
                    "UnsupportedMediaType",
                    "ModelNotReady",
                ),
            },
        }
    }


def _v2_infer_operation(versioned: bool) -> dict[str, Any]:
    width = len(FEATURES)
    tensor = {"name": "input", "shape": [len(ORIGINAL_ROWS), width], "datatype": "FP32"}
    flat = [v for row in ORIGINAL_ROWS for v in row]
    labels = {"name": "label", "shape": [2], "datatype": "BYTES", "data": ORIGINAL_PREDICTIONS}
    probabilities = {
        "name": "probabilities",
        "shape": [2, len(LABELS)],
        "datatype": "FP32",
        "data": [v for row in ORIGINAL_PROBABILITIES for v in row],
    }
    answer = {"model_name": MODEL_NAME, "model_version": EXAMPLE_VERSION}
    return {
        "post": {
            "tags": ["Open Inference Protocol V2"],
            "operationId": "v2InferVersion" if versioned else "v2Infer",
            "summary": "V2 inference" + (" on a given version" if versioned else ""),
            "description": f"One input tensor of shape [N, {width}]; outputs `label` and "
            "`probabilities` (or those named in `outputs`).",
            "security": OPTIONAL_AUTH,
            "parameters": [NAME, VERSION] if versioned else [NAME],
            "requestBody": {
                "required": True,
                **_body(
                    ref("V2Request"),
                    {
                        "original": _example(
                            {"id": "42", "inputs": [{**tensor, "data": ORIGINAL_ROWS}]},
                            "The original 2 records as a nested [2, 4] tensor",
                        ),
                        "flat": _example(
                            {"inputs": [{**tensor, "data": flat}]},
                            "The same tensor with flat data",
                        ),
                        "labels_only": _example(
                            {
                                "inputs": [{**tensor, "data": flat}],
                                "outputs": [{"name": "label"}],
                            },
                            "Ask for the labels only",
                        ),
                    },
                ),
            },
            "responses": {
                "200": _ok(
                    "The requested output tensors.",
                    ref("V2Response"),
                    {
                        "original": _example(
                            {**answer, "id": "42", "outputs": [labels, probabilities]},
                            "Answer to the original records",
                        ),
                        "labels_only": _example(
                            {**answer, "outputs": [labels]}, "Answer with the labels only"
                        ),
                    },
                ),
                **_errors(
                    "V2BadRequest",
                    "Unauthorized",
                    "ModelNotFound",
                    "V2TooLarge",
                    "UnsupportedMediaType",
                    "ModelNotReady",
                ),
            },
        }
    }


def _v2_model_operation(versioned: bool) -> dict[str, Any]:
    metadata = {
        "name": MODEL_NAME,
        "versions": [EXAMPLE_VERSION],
        "platform": "onnxruntime_onnx",
        "inputs": [{"name": "input", "datatype": "FP32", "shape": [-1, len(FEATURES)]}],
        "outputs": [
            {"name": "label", "datatype": "BYTES", "shape": [-1]},
            {"name": "probabilities", "datatype": "FP32", "shape": [-1, len(LABELS)]},
        ],
        "parameters": {
            "version": EXAMPLE_VERSION,
            "trained_at": "2026-11-26T12:50:09+00:00",
            "data_sha256": "91eb642c3adbc7bad8e99c930c11fa3a5cc8a07262c7a753b4e6ecf405f2e05e",
            "features": list(FEATURES),
            "labels": list(LABELS),
            "metrics": {"cv_accuracy_mean": 0.95, "holdout_accuracy": 0.933333},
        },
    }
    return {
        "get": {
            "tags": ["Open Inference Protocol V2"],
            "operationId": "v2ModelMetadataVersion" if versioned else "v2ModelMetadata",
            "summary": "V2 model metadata" + (" of a given version" if versioned else ""),
            "parameters": [NAME, VERSION] if versioned else [NAME],
            "responses": {
                "200": _ok(
                    "Tensors, versions and the model card's key fields.",
                    ref("V2ModelMetadata"),
                    {"iris": _example(metadata, "The iris model")},
                ),
                **_errors("ModelNotFound", "ModelNotReady"),
            },
        }
    }


def _v2_model_ready_operation(versioned: bool) -> dict[str, Any]:
    ready = {
        "type": "object",
        "properties": {"name": {"type": "string"}, "ready": {"type": "boolean"}},
        "required": ["name", "ready"],
        "additionalProperties": False,
    }
    return {
        "get": {
            "tags": ["Open Inference Protocol V2"],
            "operationId": "v2ModelReadyVersion" if versioned else "v2ModelReady",
            "summary": "V2 model readiness" + (" of a given version" if versioned else ""),
            "parameters": [NAME, VERSION] if versioned else [NAME],
            "responses": {
                "200": _ok(
                    "The model is loaded and verified.",
                    ready,
                    {"ready": _example({"name": MODEL_NAME, "ready": True}, "Ready")},
                ),
                "503": _ok(
                    "No model is loaded.",
                    ready,
                    {"not_ready": _example({"name": MODEL_NAME, "ready": False}, "Not ready")},
                ),
                **_errors("ModelNotFound"),
            },
        }
    }


def _get(
    tag: str, operation_id: str, summary: str, responses: dict[str, Any], description: str = ""
) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "tags": [tag],
        "operationId": operation_id,
        "summary": summary,
        "responses": responses,
    }
    if description:
        operation["description"] = description
    return {"get": operation}


def _flag(name: str) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {name: {"type": "boolean"}},
        "required": [name],
        "additionalProperties": False,
    }


def _paths() -> dict[str, Any]:
    v2 = "Open Inference Protocol V2"
    return {
        "/inference": _records_operation(),
        "/v2": _get(
            v2,
            "v2ServerMetadata",
            "V2 server metadata",
            {
                "200": _ok(
                    "Server name and version.",
                    ref("V2ServerMetadata"),
                    {
                        "server": _example(
                            {"name": "inference-service", "version": __version__, "extensions": []},
                            "This server",
                        )
                    },
                )
            },
        ),
        "/v2/health/live": _get(
            v2,
            "v2ServerLive",
            "V2 server liveness",
            {
                "200": _ok(
                    "The process serves HTTP.",
                    _flag("live"),
                    {"live": _example({"live": True}, "Live")},
                )
            },
        ),
        "/v2/health/ready": _get(
            v2,
            "v2ServerReady",
            "V2 server readiness",
            {
                "200": _ok(
                    "A model is loaded.",
                    _flag("ready"),
                    {"ready": _example({"ready": True}, "Ready")},
                ),
                "503": _ok(
                    "No model is loaded.",
                    _flag("ready"),
                    {"not_ready": _example({"ready": False}, "Not ready")},
                ),
            },
        ),
        "/v2/models/{name}": _v2_model_operation(versioned=False),
        "/v2/models/{name}/versions/{version}": _v2_model_operation(versioned=True),
        "/v2/models/{name}/ready": _v2_model_ready_operation(versioned=False),
        "/v2/models/{name}/versions/{version}/ready": _v2_model_ready_operation(versioned=True),
        "/v2/models/{name}/infer": _v2_infer_operation(versioned=False),
        "/v2/models/{name}/versions/{version}/infer": _v2_infer_operation(versioned=True),
        "/model": _get(
            "model",
            "modelCard",
            "The live model's card",
            {
                "200": _ok(
                    "Version, training time, data hash, metrics, parity check and libraries.",
                    ref("ModelCard"),
                    {"iris": _example(CARD_EXAMPLE, "Key fields of a card")},
                ),
                **_errors("ModelNotReady"),
            },
        ),
        "/livez": _get(
            "health",
            "livez",
            "Liveness probe",
            {
                "200": _ok(
                    "The process serves HTTP; it does not depend on the model.",
                    {
                        "type": "object",
                        "properties": {"status": {"const": "alive"}},
                        "required": ["status"],
                        "additionalProperties": False,
                    },
                    {"alive": _example({"status": "alive"}, "Alive")},
                )
            },
        ),
        "/readyz": _get(
            "health",
            "readyz",
            "Readiness probe",
            {
                "200": _ok(
                    "A verified model is loaded.",
                    {
                        "type": "object",
                        "properties": {"status": {"const": "ready"}, "model": ref("ModelRef")},
                        "required": ["status", "model"],
                        "additionalProperties": False,
                    },
                    {"ready": _example({"status": "ready", "model": MODEL_REF}, "Ready")},
                ),
                "503": {
                    "description": "No verified model is loaded (yet).",
                    **_body(
                        ref("Error"),
                        {
                            "no_model": _example(
                                {"error": f"Not ready: {NO_MODEL}."}, "No model yet"
                            )
                        },
                    ),
                },
            },
        ),
        "/metrics": _get(
            "operations",
            "metrics",
            "Prometheus metrics",
            {
                "200": {
                    "description": "Prometheus text exposition format.",
                    "content": {"text/plain": {"schema": {"type": "string"}}},
                }
            },
        ),
        "/openapi.json": _get(
            "docs",
            "openapi",
            "This OpenAPI document",
            {
                "200": {
                    "description": "OpenAPI 3.1.",
                    "content": {JSON: {"schema": {"type": "object"}}},
                }
            },
        ),
        "/docs": _get(
            "docs",
            "docs",
            "Interactive API page",
            {
                "200": {
                    "description": "Swagger UI.",
                    "content": {"text/html": {"schema": {"type": "string"}}},
                }
            },
        ),
    }


def build(settings: Settings) -> dict[str, Any]:
    """The OpenAPI 3.1 document for a server running with `settings`."""
    schemas = {
        **_records_schemas(settings.max_rows),
        **_v2_request_schemas(settings.max_rows),
        **_response_schemas(),
    }
    paths, responses = _paths(), _error_responses(settings)
    _request_ids(paths, responses)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Iris inference service",
            "version": __version__,
            "summary": "An iris decision tree served from a verified ONNX artifact.",
            "description": (
                "Two contracts for the same model: the original records API (`POST /inference`) "
                "and the Open Inference Protocol V2 (`/v2`, model name `iris`).\n\n"
                'Every error is JSON `{"error": "<message>"}` with status 400 (invalid input), '
                "401 (API key missing or wrong, only when the server has API keys), 404 (unknown "
                "path, model or version), 405 (method not allowed on the path), 413 (body over "
                f"{settings.max_body_bytes} bytes or more than {settings.max_rows} rows), 415 "
                "(body not `application/json`) or 503 (no verified model loaded)."
            ),
            "license": {"name": "MIT", "identifier": "MIT"},
        },
        "servers": [{"url": ".", "description": "this server"}],
        "tags": [
            {"name": "original contract", "description": "`POST /inference` with records."},
            {"name": "Open Inference Protocol V2", "description": "KServe/Triton-style V2 REST."},
            {"name": "health", "description": "Probes for orchestrators and load balancers."},
            {"name": "model", "description": "What is being served."},
            {"name": "operations", "description": "Monitoring."},
            {"name": "docs", "description": "This description and its interactive page."},
        ],
        "paths": paths,
        "components": {
            "schemas": schemas,
            "responses": responses,
            "parameters": {
                REQUEST_ID: {
                    "name": REQUEST_ID,
                    "in": "header",
                    "required": False,
                    "description": (
                        "Your id for this request, echoed back and logged; a new one is made "
                        "when absent or not 1-128 characters of letters, digits and ._:@/+=-."
                    ),
                    "schema": {"type": "string"},
                }
            },
            "headers": {
                REQUEST_ID: {
                    "description": "The request's id, as given or newly made.",
                    "required": True,
                    "schema": {"type": "string", "minLength": 1, "maxLength": 128},
                }
            },
            "securitySchemes": {
                "bearerAuth": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": (
                        "Needed on the inference endpoints only when the server has "
                        "INFERENCE_API_KEYS; send `Authorization: Bearer <key>`."
                    ),
                }
            },
        },
    }


PAGE = """<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>Iris inference service - API</title>
  <link rel="stylesheet" href="docs/swagger-ui.css">
  <link rel="stylesheet" href="docs/index.css">
  <link rel="icon" type="image/png" href="docs/favicon-32x32.png" sizes="32x32">
</head>
<body>
  <div id="swagger-ui"></div>
  <script src="docs/swagger-ui-bundle.js"></script>
  <script src="docs/init.js"></script>
</body>
</html>
"""

# Relative URLs everywhere, so the page also works under a path prefix behind a proxy.
INIT_JS = """window.onload = function () {
  window.ui = SwaggerUIBundle({
    url: "openapi.json",
    validatorUrl: null,
    dom_id: "#swagger-ui",
    deepLinking: true,
    tryItOutEnabled: true,
    displayRequestDuration: true,
    presets: [SwaggerUIBundle.presets.apis],
    layout: "BaseLayout"
  });
};
"""


@bp.get("/openapi.json")
def openapi_json() -> Response:
    document: bytes = current_app.extensions["openapi"]
    return Response(document, mimetype=JSON)


@bp.get("/docs")
def docs() -> Response:
    return Response(PAGE, mimetype="text/html")


@bp.get("/docs/<path:filename>")
def docs_asset(filename: str) -> Response:
    if filename == "init.js":
        return Response(INIT_JS, mimetype="text/javascript")
    return send_from_directory(ASSETS, filename, max_age=3600)


def init_app(app: Flask) -> None:
    """Serve the document and the page; calling it twice on one app is harmless."""
    if bp.name in app.blueprints:
        return
    settings = app.config.get("SETTINGS") or Settings()
    app.extensions["openapi"] = msgspec.json.encode(build(settings))
    app.register_blueprint(bp)


def document(app: Flask) -> dict[str, Any]:
    """The document `app` serves, as a fresh dict."""
    value: dict[str, Any] = msgspec.json.decode(app.extensions["openapi"])
    return value
