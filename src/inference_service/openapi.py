"""The OpenAPI 3.1 description of the service, generated from the models it serves, and the
interactive page that renders it.

Each served model gets concrete paths (`/models/<name>/inference`, `/v1/models/<name>:predict`,
`/v2/models/<name>/infer`, ...) with its own request and response schemas, built from its
signature: feature names and training ranges, labels or a number per row, the limits of the
running Settings, and the V2 request Structs the server decodes (through `msgspec.json.schema`).
Examples are the rows recorded in each model card with the answers the model gave; error examples
are what the server's own checks say about a request, and carry that request (`x-request-body`).

The document is built when first asked for and again whenever the set of served models, their
versions or their load errors change (a hot reload, a model that appears).

`GET /docs` is Swagger UI 5 from the flask-swagger-ui package's files: no CDN, so it works offline.
"""

from __future__ import annotations

import threading
from collections.abc import Hashable
from importlib.resources import files
from typing import Any

import msgspec
from flask import Blueprint, Flask, Response, current_app, send_from_directory

from inference_service import __version__, protocol
from inference_service.config import Settings
from inference_service.errors import InferenceError
from inference_service.model import Model
from inference_service.repository import Repository, Slot
from inference_service.signature import LABEL, PREDICTION, PROBABILITIES, Signature

bp = Blueprint("openapi", __name__)
ASSETS = str(files("flask_swagger_ui") / "dist")
# Doubles from this magnitude on round to infinity as float32, which the server refuses.
FLOAT32_OVERFLOW = 2.0**128 * (1 - 2.0**-25)
REF = "#/components/schemas/{name}"
JSON = "application/json"
REQUEST_ID = "X-Request-ID"
TRIGGER = "x-request-body"
"""Error examples carry the body that produces them, sent to the operation that documents them."""
UNKNOWN_VERSION = "no-such-version"
UNKNOWN_MODEL = "no-such-model"
OPTIONAL_AUTH: list[dict[str, list[str]]] = [{}, {"bearerAuth": []}]
DEFAULT, OPERATIONS, HEALTH, DOCS = "default model", "operations", "health", "docs"


def ref(name: str) -> dict[str, str]:
    return {"$ref": REF.format(name=name)}


def _response_ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/responses/{name}"}


def _example(value: Any, summary: str) -> dict[str, Any]:
    return {"summary": summary, "value": value}


def _body(schema: dict[str, Any], examples: dict[str, Any] | None = None) -> dict[str, Any]:
    media: dict[str, Any] = {"schema": schema}
    if examples:
        media["examples"] = examples
    return {"content": {JSON: media}}


def _ok(
    description: str, schema: dict[str, Any], examples: dict[str, Any] | None = None
) -> dict[str, Any]:
    return {"description": description, **_body(schema, examples)}


def _message(call: Any, *args: Any) -> str:
    """What the server's own check says: the message of the error `call(*args)` raises."""
    try:
        call(*args)
    except InferenceError as exc:
        return exc.message
    raise AssertionError(f"{call.__name__}{args!r} raised nothing")  # a trigger that is not one


def _error(description: str, examples: dict[str, tuple[str, Any]]) -> dict[str, Any]:
    """An error response; examples are name -> (message, body that produces it or None)."""
    rendered = {}
    for name, (message, trigger) in examples.items():
        example: dict[str, Any] = {"summary": message, "value": {"error": message}}
        if trigger is not None:
            example[TRIGGER] = trigger
        rendered[name] = example
    return {"description": description, **_body(ref("Error"), rendered)}


def _with_header(response: dict[str, Any], name: str, schema: dict[str, Any]) -> dict[str, Any]:
    response.setdefault("headers", {})[name] = {"required": True, "schema": schema}
    return response


def trigger_text(value: Any) -> str:
    """An error example's trigger as the request body text (a string is sent as it is)."""
    return value if isinstance(value, str) else msgspec.json.encode(value).decode()


def _get(
    tag: str, operation_id: str, summary: str, responses: dict[str, Any], **extra: Any
) -> dict[str, Any]:
    return {
        "get": {
            "tags": [tag],
            "operationId": operation_id,
            "summary": summary,
            **extra,
            "responses": responses,
        }
    }


def _flag(name: str) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {name: {"type": "boolean"}},
        "required": [name],
        "additionalProperties": False,
    }


def _id(name: str) -> str:
    """An operationId fragment for a model name (letters, digits, '-', '_', '.')."""
    return "".join(c if c.isalnum() else "_" for c in name)


class ModelDoc:
    """The schemas, error responses and paths of one loaded model, from its signature."""

    def __init__(self, model: Model, settings: Settings, default: bool) -> None:
        self.model = model
        self.sig: Signature = model.signature
        self.name = model.name
        self.rows = settings.max_rows
        self.default = default
        self.positional = tuple(str(i) for i in range(self.sig.width))
        named = self.sig.feature_names
        self.styles = {"Record": self.positional}
        if named != self.positional:
            self.styles["NamedRecord"] = named
        self.inputs = [list(map(float, e["inputs"])) for e in self.sig.examples]
        self.recorded = bool(self.inputs)
        """Whether the card records answers; without, requests have examples and answers not."""
        if not self.inputs:  # one row at the middle of each training range
            self.inputs = [[(f.min + f.max) / 2 for f in self.sig.features]]

    def _recorded(self, answers: dict[str, Any]) -> dict[str, Any] | None:
        return answers if self.recorded else None

    def c(self, component: str) -> str:
        return f"{self.name}.{component}"

    # --- schemas -------------------------------------------------------------------------------

    def _number(self, i: int) -> dict[str, Any]:
        feature = self.sig.features[i]
        return {
            "type": "number",
            "exclusiveMinimum": -FLOAT32_OVERFLOW,
            "exclusiveMaximum": FLOAT32_OVERFLOW,
            "description": f"{feature.name} (training data: {feature.min:g} to {feature.max:g})",
        }

    def _record(self, keys: tuple[str, ...], title: str) -> dict[str, Any]:
        return {
            "title": title,
            "type": "object",
            "properties": {key: self._number(i) for i, key in enumerate(keys)},
            "required": list(keys),
            "additionalProperties": False,
        }

    def _many(self, items: dict[str, Any]) -> dict[str, Any]:
        return {"type": "array", "items": items, "minItems": 1, "maxItems": self.rows}

    def _row(self) -> dict[str, Any]:
        width = self.sig.width
        return {
            "type": "array",
            "description": f"The {width} features in order: {', '.join(self.sig.feature_names)}.",
            "prefixItems": [self._number(i) for i in range(width)],
            "items": False,
            "minItems": width,
            "maxItems": width,
        }

    def _answer(self) -> dict[str, Any]:
        if self.sig.is_classifier:
            return {"type": "string", "enum": list(self.sig.labels)}
        return {"type": "number", "description": "The predicted value (float32)."}

    def schemas(self) -> dict[str, Any]:
        sig, c = self.sig, self.c
        keys = " or ".join(
            f"{'positions' if style == 'Record' else 'feature names'} {', '.join(k)}"
            for style, k in self.styles.items()
        )
        schemas: dict[str, Any] = {
            c(style): self._record(
                k, "Record with positional keys" if style == "Record" else "Record with names"
            )
            for style, k in self.styles.items()
        }
        schemas[c("RecordsRequest")] = {
            "description": (
                f"An array of 1 to {self.rows} records, or one record. Keys are the {keys}; all "
                "records of a request use the same style."
            ),
            "oneOf": [self._many(ref(c(s))) for s in self.styles]
            + [ref(c(s)) for s in self.styles],
        }
        answers = self._many(self._answer())
        answers["description"] = "One answer per record, in request order."
        response: dict[str, Any] = {
            "type": "object",
            "properties": {"predictions": answers, "model": ref("ModelRef")},
            "required": ["predictions", "model"],
            "additionalProperties": False,
        }
        if sig.is_classifier:
            response["properties"]["probabilities"] = {
                "type": "array",
                "description": "With `?probabilities=true`: class probabilities per record.",
                "items": {
                    "type": "object",
                    "properties": {
                        label: {"type": "number", "minimum": 0, "maximum": 1}
                        for label in sig.labels
                    },
                    "required": list(sig.labels),
                    "additionalProperties": False,
                },
            }
        schemas[c("RecordsResponse")] = response
        schemas[c("V1Request")] = {
            "type": "object",
            "description": (
                "KServe V1: `instances` holds rows of the features in order, or records keyed "
                "as in the records contract."
            ),
            "properties": {
                "instances": {
                    "oneOf": [self._many(self._row())]
                    + [self._many(ref(c(s))) for s in self.styles]
                }
            },
            "required": ["instances"],
        }
        schemas[c("V1Response")] = {
            "type": "object",
            "properties": {"predictions": answers},
            "required": ["predictions"],
            "additionalProperties": False,
        }
        schemas |= self._v2_request_schemas()
        schemas |= self._v2_response_schemas()
        return schemas

    def _v2_request_schemas(self) -> dict[str, Any]:
        """msgspec's schema of the Structs the server decodes, narrowed by parse_v2's checks."""
        template = REF.format(name=self.c("{name}"))
        _, raw = msgspec.json.schema_components([protocol.V2Request], ref_template=template)
        schemas = {self.c(name): schema for name, schema in raw.items()}
        width, rows, sig = self.sig.width, self.rows, self.sig
        request = schemas[self.c("V2Request")]
        tensor, output = schemas[self.c("V2Tensor")], schemas[self.c("V2Output")]
        request["description"] = (
            f"Open Inference Protocol V2 inference request: one [N, {width}] tensor."
        )
        request["properties"]["inputs"].update(minItems=1, maxItems=1)
        request["properties"]["id"]["description"] = "Echoed in the response."
        request["properties"]["outputs"]["description"] = (
            f"Outputs to return (default: all of {', '.join(sig.outputs)})."
        )
        props = tensor["properties"]
        props["name"]["description"] = "Any name; `input` by convention."
        props["shape"].update(
            minItems=2,
            maxItems=2,
            prefixItems=[
                {"type": "integer", "minimum": 1, "maximum": rows, "description": "rows"},
                {"type": "integer", "const": width, "description": "features"},
            ],
            description=f"[N, {width}] with N from 1 to {rows}.",
        )
        props["datatype"].update(
            enum=list(protocol.DATATYPES),
            description="Integer types need integral data within the type's range.",
        )
        value = {
            "type": "number",
            "exclusiveMinimum": -FLOAT32_OVERFLOW,
            "exclusiveMaximum": FLOAT32_OVERFLOW,
        }
        props["data"] = {
            "description": (
                f"N x {width} values, flat in row-major order or as N rows of {width}; "
                f"features in the order {', '.join(sig.feature_names)}."
            ),
            "oneOf": [
                {"type": "array", "items": value, "minItems": width, "maxItems": width * rows},
                self._many(self._row()),
            ],
        }
        output["properties"]["name"]["enum"] = list(sig.outputs)
        return schemas

    def _v2_response_schemas(self) -> dict[str, Any]:
        c, sig = self.c, self.sig

        def tensor(name: str, datatype: str, data: dict[str, Any], dims: int) -> dict[str, Any]:
            return {
                "type": "object",
                "properties": {
                    "name": {"const": name},
                    "shape": {
                        "type": "array",
                        "items": {"type": "integer", "minimum": 1},
                        "minItems": dims,
                        "maxItems": dims,
                    },
                    "datatype": {"const": datatype},
                    "data": {"type": "array", "items": data},
                },
                "required": ["name", "shape", "datatype", "data"],
                "additionalProperties": False,
            }

        if sig.is_classifier:
            tensors = {
                c("V2LabelTensor"): tensor(LABEL, "BYTES", self._answer(), 1),
                c("V2ProbabilitiesTensor"): {
                    **tensor(
                        PROBABILITIES, "FP32", {"type": "number", "minimum": 0, "maximum": 1}, 2
                    ),
                    "description": (
                        f"[N, {len(sig.labels)}] probabilities, flat, classes in the order "
                        f"{', '.join(sig.labels)}."
                    ),
                },
            }
        else:
            tensors = {c("V2PredictionTensor"): tensor(PREDICTION, "FP32", self._answer(), 1)}
        return tensors | {
            c("V2Response"): {
                "type": "object",
                "properties": {
                    "model_name": {"const": self.name},
                    "model_version": {"type": "string"},
                    "id": {"type": "string", "description": "The request's `id`, when it had one."},
                    "outputs": {"type": "array", "items": {"oneOf": [ref(t) for t in tensors]}},
                },
                "required": ["model_name", "model_version", "outputs"],
                "additionalProperties": False,
            }
        }

    # --- error responses -----------------------------------------------------------------------

    def responses(self, repository: Repository) -> dict[str, Any]:
        sig, rows, width = self.sig, self.rows, self.sig.width
        first = self.inputs[0]
        record = dict(zip(self.positional, first, strict=True))

        def records(body: Any) -> tuple[str, Any]:
            raw = trigger_text(body).encode()
            return _message(protocol.parse_records, raw, sig, rows), body

        def v1(body: Any) -> tuple[str, Any]:
            return _message(protocol.parse_v1, trigger_text(body).encode(), sig, rows), body

        def v2(body: Any) -> tuple[str, Any]:
            return _message(protocol.parse_v2, trigger_text(body).encode(), sig, rows), body

        tensor = {"name": "input", "shape": [1, width], "datatype": "FP32", "data": first}
        wrong = {**tensor, "shape": [1, width + 1], "data": [*first, 0.0]}
        not_a_number = {**record, self.positional[-1]: "x"}
        responses = {
            "RecordsBadRequest": _error(
                "The body is not a valid records request for this model.",
                {
                    "missing_key": records([{k: v for k, v in record.items() if k != "0"}]),
                    "not_a_number": records([record, not_a_number]),
                    "empty": records([]),
                    "not_json": records("[{"),
                },
            ),
            "V1BadRequest": _error(
                "The body is not a valid KServe V1 request for this model.",
                {
                    "width": v1({"instances": [first[:-1] or [*first, 0.0]]}),
                    "not_a_number": v1({"instances": [[*first[:-1], "x"]]}),
                    "no_instances": v1({"inputs": [first]}),
                },
            ),
            "V2BadRequest": _error(
                "The body is not a valid V2 request for this model.",
                {
                    "shape": v2({"inputs": [wrong]}),
                    "datatype": v2({"inputs": [{**tensor, "datatype": "BOOL"}]}),
                    "output": v2({"inputs": [tensor], "outputs": [{"name": "scores"}]}),
                    "two_inputs": v2({"inputs": [tensor, tensor]}),
                },
            ),
            "VersionNotFound": _error(
                "The version is not the live one.",
                {"version": (_message(repository.model, self.name, UNKNOWN_VERSION), None)},
            ),
        }
        return {self.c(name): response for name, response in responses.items()}

    # --- examples ------------------------------------------------------------------------------

    def answers(self) -> list[Any]:
        key = LABEL if self.sig.is_classifier else PREDICTION
        return [e[key] for e in self.sig.examples] if self.sig.examples else []

    @property
    def ref_example(self) -> dict[str, str]:
        return {"name": self.name, "version": self.model.version}

    # --- paths ---------------------------------------------------------------------------------

    def paths(self) -> dict[str, Any]:
        n = self.name
        return {
            f"/models/{n}/inference": self.records_operation(f"{_id(n)}Records", [n]),
            f"/models/{n}": _get(
                n,
                f"{_id(n)}Card",
                f"The {n} model card",
                {
                    "200": _ok(
                        "Version, training, data, metrics, gates, parity and signature.",
                        ref("ModelCard"),
                        {"card": _example(self.model.card, f"The card of {n}")},
                    )
                },
            ),
            f"/models/{n}/drift": _get(
                n,
                f"{_id(n)}Drift",
                "Input drift of the live version",
                {
                    "200": _ok(
                        "PSI per feature of the live inputs against the training data, summed "
                        "over every worker, with the share of values outside the training range.",
                        {
                            "allOf": [ref("Drift")],
                            "properties": {
                                "model": {"const": n},
                                "features": {
                                    "propertyNames": {"enum": list(self.sig.feature_names)}
                                },
                            },
                        },
                    )
                },
            ),
            f"/v1/models/{n}": _get(
                n,
                f"{_id(n)}V1Model",
                "KServe V1 model readiness",
                {
                    "200": _ok(
                        "Whether the model is loaded.",
                        ref("Readiness"),
                        {"ready": _example({"name": n, "ready": True}, "Ready")},
                    )
                },
            ),
            f"/v1/models/{n}:predict": self.v1_operation(),
            f"/v2/models/{n}": self.v2_metadata_operation(False),
            f"/v2/models/{n}/versions/{{version}}": self.v2_metadata_operation(True),
            f"/v2/models/{n}/ready": self.v2_ready_operation(False),
            f"/v2/models/{n}/versions/{{version}}/ready": self.v2_ready_operation(True),
            f"/v2/models/{n}/infer": self.v2_infer_operation(False),
            f"/v2/models/{n}/versions/{{version}}/infer": self.v2_infer_operation(True),
        }

    def _version(self) -> dict[str, Any]:
        return {
            "name": "version",
            "in": "path",
            "required": True,
            "description": f"The live version of {self.name}; any other gives 404.",
            "schema": {"type": "string", "minLength": 1},
            "example": self.model.version,
        }

    def records_operation(self, operation_id: str, tags: list[str]) -> dict[str, Any]:
        sig, n, c = self.sig, self.name, self.c
        rows = [dict(zip(self.positional, row, strict=True)) for row in self.inputs]
        named = [dict(zip(sig.feature_names, row, strict=True)) for row in self.inputs]
        model = self.ref_example
        answers = self.answers()
        requests = {"positional": _example(rows, f"{len(rows)} example rows of the {n} card")}
        responses = {"positional": _example({"predictions": answers, "model": model}, "Answer")}
        if "NamedRecord" in self.styles:
            requests["named"] = _example(named, "The same records keyed by feature name")
            responses["named"] = _example({"predictions": answers, "model": model}, "Answer")
        requests["single"] = _example(rows[0], "One record as a bare object")
        responses["single"] = _example(
            {"predictions": answers[:1], "model": model}, "Answer to one record"
        )
        parameters = []
        if sig.is_classifier:
            parameters.append(
                {
                    "name": "probabilities",
                    "in": "query",
                    "required": False,
                    "description": "Also return class probabilities (`1`, `true` or `yes`).",
                    "schema": {"type": "boolean", "default": False},
                }
            )
            responses["with_probabilities"] = _example(
                {
                    "predictions": answers,
                    "model": model,
                    "probabilities": [
                        dict(zip(sig.labels, e[PROBABILITIES], strict=True)) for e in sig.examples
                    ],
                },
                "Answer to the positional example with ?probabilities=true",
            )
        kind = "Classify" if sig.is_classifier else "Predict from"
        description = (
            f"An array of records with the {sig.width} features of {n}, keyed by position "
            f'(`"0"`..`"{sig.width - 1}"`) or by feature name. Answers '
            + ("one class per record." if sig.is_classifier else "one number per record.")
        )
        if self.default and tags != [n]:
            description = f"The original contract, answered by the default model {n!r}. " + (
                description
            )
        operation: dict[str, Any] = {
            "tags": tags,
            "operationId": operation_id,
            "summary": f"{kind} {n} records",
            "description": description,
            "security": OPTIONAL_AUTH,
            "requestBody": {"required": True, **_body(ref(c("RecordsRequest")), requests)},
            "responses": {
                "200": _ok(
                    "One answer per record.", ref(c("RecordsResponse")), self._recorded(responses)
                ),
                "400": _response_ref(c("RecordsBadRequest")),
                "401": _response_ref("Unauthorized"),
                "413": _response_ref("RecordsTooLarge"),
                "411": _response_ref("LengthRequired"),
                "415": _response_ref("UnsupportedMediaType"),
            },
        }
        if parameters:
            operation["parameters"] = parameters
        return {"post": operation}

    def v1_operation(self) -> dict[str, Any]:
        sig, n, c = self.sig, self.name, self.c
        answer = _example({"predictions": self.answers()}, "Answer")
        requests = {"rows": _example({"instances": self.inputs}, "Rows in feature order")}
        responses = {"rows": answer}
        if "NamedRecord" in self.styles:
            named = [dict(zip(sig.feature_names, row, strict=True)) for row in self.inputs]
            requests["named"] = _example({"instances": named}, "Instances keyed by feature name")
            responses["named"] = answer
        return {
            "post": {
                "tags": [n],
                "operationId": f"{_id(n)}V1Predict",
                "summary": "KServe V1 prediction",
                "security": OPTIONAL_AUTH,
                "requestBody": {"required": True, **_body(ref(c("V1Request")), requests)},
                "responses": {
                    "200": _ok(
                        "One answer per instance.", ref(c("V1Response")), self._recorded(responses)
                    ),
                    "400": _response_ref(c("V1BadRequest")),
                    "401": _response_ref("Unauthorized"),
                    "413": _response_ref("RecordsTooLarge"),
                    "411": _response_ref("LengthRequired"),
                    "415": _response_ref("UnsupportedMediaType"),
                },
            }
        }

    def v2_metadata_operation(self, versioned: bool) -> dict[str, Any]:
        n = self.name
        responses: dict[str, Any] = {
            "200": _ok(
                "Tensors, versions and the model card's key fields.",
                ref("V2ModelMetadata"),
                {"metadata": _example(protocol.v2_metadata(self.model), f"The metadata of {n}")},
            )
        }
        extra: dict[str, Any] = {}
        if versioned:
            responses["404"] = _response_ref(self.c("VersionNotFound"))
            extra["parameters"] = [self._version()]
        return _get(
            n,
            f"{_id(n)}V2Metadata" + ("Version" if versioned else ""),
            "V2 model metadata" + (" of a given version" if versioned else ""),
            responses,
            **extra,
        )

    def v2_ready_operation(self, versioned: bool) -> dict[str, Any]:
        n = self.name
        responses: dict[str, Any] = {
            "200": _ok(
                "The model is loaded and verified.",
                ref("Readiness"),
                {"ready": _example({"name": n, "ready": True}, "Ready")},
            )
        }
        extra: dict[str, Any] = {}
        if versioned:
            responses["404"] = _response_ref(self.c("VersionNotFound"))
            extra["parameters"] = [self._version()]
        return _get(
            n,
            f"{_id(n)}V2Ready" + ("Version" if versioned else ""),
            "V2 model readiness" + (" of a given version" if versioned else ""),
            responses,
            **extra,
        )

    def v2_infer_operation(self, versioned: bool) -> dict[str, Any]:
        sig, n, c = self.sig, self.name, self.c
        width, count = sig.width, len(self.inputs)
        tensor = {"name": "input", "shape": [count, width], "datatype": "FP32"}
        flat = [v for row in self.inputs for v in row]
        answer: dict[str, Any] = {"model_name": n, "model_version": self.model.version}
        first = sig.outputs[0]
        if sig.is_classifier:
            outputs = [
                {"name": LABEL, "shape": [count], "datatype": "BYTES", "data": self.answers()},
                {
                    "name": PROBABILITIES,
                    "shape": [count, len(sig.labels)],
                    "datatype": "FP32",
                    "data": [p for e in sig.examples for p in e[PROBABILITIES]],
                },
            ]
        else:
            outputs = [
                {"name": PREDICTION, "shape": [count], "datatype": "FP32", "data": self.answers()}
            ]
        parameters = [self._version()] if versioned else []
        responses: dict[str, Any] = {
            "200": _ok(
                "The requested output tensors.",
                ref(c("V2Response")),
                self._recorded(
                    {
                        "nested": _example({**answer, "id": "42", "outputs": outputs}, "Answer"),
                        "flat": _example({**answer, "outputs": outputs}, "Answer"),
                        "one_output": _example(
                            {**answer, "outputs": outputs[:1]}, f"Answer with {first} only"
                        ),
                    }
                ),
            ),
            "400": _response_ref(c("V2BadRequest")),
            "401": _response_ref("Unauthorized"),
            "413": _response_ref("V2TooLarge"),
            "411": _response_ref("LengthRequired"),
            "415": _response_ref("UnsupportedMediaType"),
        }
        if versioned:
            responses["404"] = _response_ref(c("VersionNotFound"))
        operation: dict[str, Any] = {
            "tags": [n],
            "operationId": f"{_id(n)}V2Infer" + ("Version" if versioned else ""),
            "summary": "V2 inference" + (" on a given version" if versioned else ""),
            "description": (
                f"One input tensor of shape [N, {width}]; outputs {', '.join(sig.outputs)} "
                "(or those named in `outputs`)."
            ),
            "security": OPTIONAL_AUTH,
            "requestBody": {
                "required": True,
                **_body(
                    ref(c("V2Request")),
                    {
                        "nested": _example(
                            {"id": "42", "inputs": [{**tensor, "data": self.inputs}]},
                            f"The card's example rows as a nested [{count}, {width}] tensor",
                        ),
                        "flat": _example(
                            {"inputs": [{**tensor, "data": flat}]}, "The same tensor, flat"
                        ),
                        "one_output": _example(
                            {"inputs": [{**tensor, "data": flat}], "outputs": [{"name": first}]},
                            f"Ask for {first} only",
                        ),
                    },
                ),
            },
            "responses": responses,
        }
        if parameters:
            operation["parameters"] = parameters
        return {"post": operation}


def _unready_paths(slot: Slot) -> dict[str, Any]:
    """A model that is not loaded: its contract is unknown until it is; it answers 503."""
    n, not_ready = slot.name, _response_ref(f"{slot.name}.NotReady")
    any_body = {"required": True, **_body({"description": "Unknown until the model loads."})}

    def post(operation_id: str, summary: str) -> dict[str, Any]:
        return {
            "post": {
                "tags": [n],
                "operationId": operation_id,
                "summary": summary,
                "security": OPTIONAL_AUTH,
                "requestBody": any_body,
                "responses": {"401": _response_ref("Unauthorized"), "503": not_ready},
            }
        }

    def get(operation_id: str, summary: str, versioned: bool = False) -> dict[str, Any]:
        extra: dict[str, Any] = {}
        if versioned:
            extra["parameters"] = [
                {"name": "version", "in": "path", "required": True, "schema": {"type": "string"}}
            ]
        return _get(n, operation_id, summary, {"503": not_ready}, **extra)

    ready = ref("Readiness")
    unready = {"not_ready": _example({"name": n, "ready": False}, "Not ready")}
    i = _id(n)
    return {
        f"/models/{n}/inference": post(f"{i}Records", f"{n} records (not loaded)"),
        f"/models/{n}": get(f"{i}Card", f"The {n} model card"),
        f"/models/{n}/drift": get(f"{i}Drift", "Input drift of the live version"),
        f"/v1/models/{n}": _get(
            n,
            f"{i}V1Model",
            "KServe V1 model readiness",
            {"200": _ok("Not loaded.", ready, unready)},
        ),
        f"/v1/models/{n}:predict": post(f"{i}V1Predict", "KServe V1 prediction"),
        f"/v2/models/{n}": get(f"{i}V2Metadata", "V2 model metadata"),
        f"/v2/models/{n}/versions/{{version}}": get(
            f"{i}V2MetadataVersion", "V2 model metadata of a given version", True
        ),
        f"/v2/models/{n}/ready": _get(
            n, f"{i}V2Ready", "V2 model readiness", {"503": _ok("Not loaded.", ready, unready)}
        ),
        f"/v2/models/{n}/versions/{{version}}/ready": {
            "get": {
                **get(f"{i}V2ReadyVersion", "V2 model readiness of a given version", True)["get"],
                "responses": {"503": _ok("Not loaded.", ready, unready)},
            }
        },
        f"/v2/models/{n}/infer": post(f"{i}V2Infer", "V2 inference"),
        f"/v2/models/{n}/versions/{{version}}/infer": {
            "post": {
                **post(f"{i}V2InferVersion", "V2 inference on a given version")["post"],
                "parameters": get("", "", True)["get"]["parameters"],
            }
        },
    }


def _shared_schemas() -> dict[str, Any]:
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
        "Readiness": {
            "type": "object",
            "properties": {"name": {"type": "string"}, "ready": {"type": "boolean"}},
            "required": ["name", "ready"],
            "additionalProperties": False,
        },
        "ModelState": {
            "type": "object",
            "description": "A loaded model's version, or why it is not loaded.",
            "properties": {"version": {"type": "string"}, "error": {"type": "string"}},
            "minProperties": 1,
            "maxProperties": 1,
            "additionalProperties": False,
        },
        "Drift": {
            "type": "object",
            "description": (
                "Population stability index (PSI) per feature; below 0.1 no real change, 0.1 to "
                "0.25 a moderate shift, above 0.25 a significant one. `scored` is false until "
                "`min_rows` live rows were seen, or when the card has no drift reference "
                "(`reason`)."
            ),
            "properties": {
                "model": {"type": "string"},
                "version": {"type": "string"},
                "method": {"const": "psi"},
                "rows": {"type": "integer", "minimum": 0},
                "min_rows": {"type": "integer", "minimum": 1},
                "scored": {"type": "boolean"},
                "reason": {"type": "string"},
                "thresholds": {
                    "type": "object",
                    "properties": {
                        "moderate": {"type": "number"},
                        "significant": {"type": "number"},
                    },
                },
                "features": {
                    "type": "object",
                    "additionalProperties": {
                        "type": "object",
                        "properties": {
                            "psi": {"type": ["number", "null"], "minimum": 0},
                            "rows": {"type": "integer", "minimum": 0},
                            "out_of_range_share": {"type": "number", "minimum": 0, "maximum": 1},
                            "edges": {"type": "array", "items": {"type": "number"}},
                            "reference": {"type": "array", "items": {"type": "number"}},
                            "live": {"type": "array", "items": {"type": "number"}},
                        },
                        "required": ["psi", "rows", "out_of_range_share"],
                    },
                },
            },
            "required": ["model", "version", "method", "scored", "features"],
        },
        "RepositoryIndex": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "name": {"type": "string"},
                    "version": {"type": "string"},
                    "state": {"enum": ["READY", "UNAVAILABLE"]},
                    "reason": {"type": "string"},
                },
                "required": ["name", "state", "reason"],
                "additionalProperties": False,
            },
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
                        "task": {"enum": ["classification", "regression"]},
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
                "task": {"enum": ["classification", "regression"]},
                "created_at": {"type": "string", "format": "date-time"},
                "data_sha256": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
                "features": string_list,
                "labels": string_list,
                "metrics": {"type": "object"},
                "signature": {"type": "object", "description": "What the model takes and gives."},
            },
            "required": ["name", "version", "created_at", "metrics", "signature"],
        },
    }


def _shared_responses(settings: Settings, repository: Repository) -> dict[str, Any]:
    rows, size = settings.max_rows, settings.max_body_bytes
    too_large = f"The body is larger than the limit of {size} bytes."
    responses = {
        "Unauthorized": _with_header(
            _error(
                "The server has API keys (INFERENCE_API_KEYS) and the request's bearer key is "
                "missing or wrong.",
                {"missing_key": ("Missing or invalid API key.", None)},
            ),
            "WWW-Authenticate",
            {"const": "Bearer"},
        ),
        "ModelNotFound": _error(
            "No model of that name: only the models below have paths.",
            {"name": (_message(repository.get, UNKNOWN_MODEL), None)},
        ),
        "NoEndpoint": _error(
            "No route at this path.",
            {"path": ("No endpoint at /predict; see /docs for the API.", None)},
        ),
        "MethodNotAllowed": _with_header(
            _error(
                "The path exists, but not for this method; the `Allow` header lists the methods.",
                {"method": ("POST is not allowed on /livez.", None)},
            ),
            "Allow",
            {"type": "string", "examples": ["GET, HEAD, OPTIONS"]},
        ),
        "RecordsTooLarge": _error(
            f"The body is over {size} bytes, or has more than {rows} records.",
            {
                "rows": (f"{rows + 1} records is more than the limit of {rows}.", None),
                "bytes": (too_large, None),
            },
        ),
        "V2TooLarge": _error(
            f"The body is over {size} bytes, or the tensor has more than {rows} rows.",
            {
                "rows": (f"{rows + 1} rows is more than the limit of {rows}.", None),
                "bytes": (too_large, None),
            },
        ),
        "LengthRequired": _error(
            "The body was sent chunked (`Transfer-Encoding`); send it with `Content-Length`.",
            {
                "chunked": (
                    "Send the body with a Content-Length header; chunked request bodies are "
                    "not accepted.",
                    None,
                )
            },
        ),
        "UnsupportedMediaType": _error(
            "The body is not sent as `application/json`.",
            {"text": ("Content-Type must be application/json, got 'text/plain'.", None)},
        ),
    }
    if repository.default is None:
        responses["NoDefaultModel"] = _error(
            "No default model is served.",
            {"no_default": (_message(repository.default_model), None)},
        )
    for slot in repository.slots.values():
        if slot.model is None:
            responses[f"{slot.name}.NotReady"] = _error(
                f"Model {slot.name!r} is not loaded, or its artifact failed verification.",
                {"not_loaded": (_message(slot.ready_model), None)},
            )
    return responses


def _readyz(repository: Repository) -> dict[str, Any]:
    models = {
        name: {"version": slot.model.version}
        if slot.model is not None
        else {"error": slot.error or "still starting"}
        for name, slot in repository.slots.items()
    }
    ready_schema = {
        "type": "object",
        "properties": {
            "status": {"const": "ready"},
            "models": {"type": "object", "additionalProperties": ref("ModelState")},
            "model": {**ref("ModelRef"), "description": "The default model, if there is one."},
        },
        "required": ["status", "models"],
        "additionalProperties": False,
    }
    unready_schema = {
        "type": "object",
        "properties": {
            "error": {"type": "string"},
            "models": {"type": "object", "additionalProperties": ref("ModelState")},
        },
        "required": ["error", "models"],
        "additionalProperties": False,
    }
    missing = [name for name, state in models.items() if "error" in state]
    responses: dict[str, Any] = {
        "200": _ok("Every configured model is loaded.", ready_schema),
        "503": _ok("A configured model is not loaded (yet), or none is.", unready_schema),
    }
    if missing or not models:
        reason = (
            f"models not loaded: {', '.join(missing)}" if missing else "no model in the repository"
        )
        example = {"error": f"Not ready: {reason}.", "models": models}
        responses["503"]["content"][JSON]["examples"] = {"now": _example(example, "Now")}
    else:
        example = {"status": "ready", "models": models}
        if (default := repository.default) is not None:
            example["model"] = {"name": default, "version": models[default]["version"]}
        responses["200"]["content"][JSON]["examples"] = {"now": _example(example, "Now")}
    return _get(
        HEALTH,
        "readyz",
        "Readiness probe",
        responses,
        description="Ready when every configured model is; the body lists the models.",
    )


def _repository_index(repository: Repository) -> list[dict[str, Any]]:
    index = []
    for slot in repository.slots.values():
        entry: dict[str, Any] = {"name": slot.name}
        if slot.model is not None:
            entry |= {"version": slot.model.version, "state": "READY", "reason": ""}
        else:
            entry |= {"state": "UNAVAILABLE", "reason": slot.error or "still starting"}
        index.append(entry)
    return index


def _service_paths(repository: Repository) -> dict[str, Any]:
    v2 = "Open Inference Protocol V2"
    return {
        "/v2": _get(
            v2,
            "v2ServerMetadata",
            "V2 server metadata",
            {
                "200": _ok(
                    "Server name, version and protocol extensions.",
                    ref("V2ServerMetadata"),
                    {
                        "server": _example(
                            {
                                "name": "inference-service",
                                "version": __version__,
                                "extensions": ["model_repository"],
                            },
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
            {"200": _ok("The process serves HTTP.", _flag("live"))},
        ),
        "/v2/health/ready": _get(
            v2,
            "v2ServerReady",
            "V2 server readiness",
            {
                "200": _ok("Every configured model is loaded.", _flag("ready")),
                "503": _ok("A configured model is not loaded.", _flag("ready")),
            },
        ),
        "/v2/repository/index": {
            "post": {
                "tags": [v2],
                "operationId": "v2RepositoryIndex",
                "summary": "V2 model repository index",
                "description": "Every configured model with its state, as Triton answers.",
                "responses": {
                    "200": _ok(
                        "One entry per model.",
                        ref("RepositoryIndex"),
                        {"now": _example(_repository_index(repository), "Now")},
                    )
                },
            }
        },
        "/livez": _get(
            HEALTH,
            "livez",
            "Liveness probe",
            {
                "200": _ok(
                    "The process serves HTTP; it does not depend on the models.",
                    {
                        "type": "object",
                        "properties": {"status": {"const": "alive"}},
                        "required": ["status"],
                        "additionalProperties": False,
                    },
                )
            },
        ),
        "/readyz": _readyz(repository),
        "/metrics": _get(
            OPERATIONS,
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
            DOCS,
            "openapi",
            "This OpenAPI document",
            {
                "200": {
                    "description": "OpenAPI 3.1, generated from the served models.",
                    "content": {JSON: {"schema": {"type": "object"}}},
                }
            },
        ),
        "/docs": _get(
            DOCS,
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


def _default_paths(repository: Repository, docs: dict[str, ModelDoc]) -> dict[str, Any]:
    """`POST /inference` and `GET /model`: the default model's, or what they answer without."""
    name = repository.default
    if name is None:
        responses = {"404": _response_ref("NoDefaultModel")}
        return {"/model": _get(DEFAULT, "modelCard", "The default model's card", responses)}
    if name not in docs:
        not_ready = {"401": _response_ref("Unauthorized"), "503": _response_ref(f"{name}.NotReady")}
        return {
            "/inference": {
                "post": {
                    "tags": [DEFAULT],
                    "operationId": "inference",
                    "summary": f"{name} records (not loaded)",
                    "security": OPTIONAL_AUTH,
                    "requestBody": {
                        "required": True,
                        **_body({"description": "Unknown until the model loads."}),
                    },
                    "responses": not_ready,
                }
            },
            "/model": _get(
                DEFAULT,
                "modelCard",
                "The default model's card",
                {"503": _response_ref(f"{name}.NotReady")},
            ),
        }
    doc = docs[name]
    return {
        "/inference": doc.records_operation("inference", [DEFAULT]),
        "/model": _get(
            DEFAULT,
            "modelCard",
            f"The default model's card ({name})",
            {
                "200": _ok(
                    "Version, training, data, metrics, gates, parity and signature.",
                    ref("ModelCard"),
                    {"card": _example(doc.model.card, f"The card of {name}")},
                )
            },
        ),
    }


def _model_tag(slot: Slot) -> dict[str, str]:
    model = slot.model
    if model is None:
        return {"name": slot.name, "description": f"Not loaded: {slot.error or 'still starting'}."}
    sig = model.signature
    what = f"{len(sig.labels)} classes" if sig.is_classifier else "a number per row"
    algorithm = model.card.get("algorithm", "an imported model")
    return {
        "name": slot.name,
        "description": (
            f"{sig.task.capitalize()}, version `{model.version}` ({algorithm}): "
            f"{sig.width} features, {what}."
        ),
    }


def build(settings: Settings, repository: Repository) -> dict[str, Any]:
    """The OpenAPI 3.1 document for the models `repository` serves now."""
    default = repository.default
    docs = {
        slot.name: ModelDoc(slot.model, settings, slot.name == default)
        for slot in repository.slots.values()
        if slot.model is not None
    }
    schemas = _shared_schemas()
    responses = _shared_responses(settings, repository)
    paths = _default_paths(repository, docs)
    for slot in repository.slots.values():
        if (doc := docs.get(slot.name)) is not None:
            schemas |= doc.schemas()
            responses |= doc.responses(repository)
            paths |= doc.paths()
        else:
            paths |= _unready_paths(slot)
    paths |= _service_paths(repository)
    _request_ids(paths, responses)
    listed = "\n".join(
        f"- **{t['name']}**: {t['description']}" for t in map(_model_tag, _slots(repository))
    )
    original = (
        f"`POST /inference` is the records contract of the default model, {default!r}.\n\n"
        if default
        else ""
    )
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Inference service",
            "version": __version__,
            "summary": "Models served from verified, self-describing ONNX artifacts.",
            "description": (
                f"Served models:\n\n{listed or '- none'}\n\n"
                "Each model has three contracts: records (`POST /models/<name>/inference`), "
                "KServe V1 (`/v1/models/<name>`) and the Open Inference Protocol V2 "
                "(`/v2/models/<name>`). " + original + "Any other model name gets 404 naming "
                "the served models.\n\n"
                'Every error is JSON `{"error": "<message>"}` with status 400 (invalid input), '
                "401 (API key missing or wrong, only when the server has API keys), 404 (unknown "
                "path, model or version), 405 (method not allowed on the path), 411 (chunked "
                "body), 413 (body over "
                f"{settings.max_body_bytes} bytes or more than {settings.max_rows} rows), 415 "
                "(body not `application/json`) or 503 (the model is not loaded)."
            ),
            "license": {"name": "MIT", "identifier": "MIT"},
        },
        "servers": [{"url": ".", "description": "this server"}],
        "tags": [
            {
                "name": DEFAULT,
                "description": (
                    f"`POST /inference` and `GET /model`: the model named by "
                    f"INFERENCE_DEFAULT_MODEL ({default or 'none served'})."
                ),
            },
            *map(_model_tag, _slots(repository)),
            {"name": "Open Inference Protocol V2", "description": "Server-wide V2 endpoints."},
            {"name": HEALTH, "description": "Probes for orchestrators and load balancers."},
            {"name": OPERATIONS, "description": "Monitoring."},
            {"name": DOCS, "description": "This description and its interactive page."},
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


def _slots(repository: Repository) -> list[Slot]:
    return list(repository.slots.values())


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


PAGE = """<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>Inference service - API</title>
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


class Cache:
    """The encoded document, rebuilt when the served models change."""

    def __init__(self) -> None:
        self.key: Hashable = None
        self.value = b""
        self.lock = threading.Lock()


def _key(repository: Repository) -> Hashable:
    slots = list(repository.slots.items())  # one C-level copy: the watcher may add a model
    return repository.default, tuple(
        (name, slot.model.version if slot.model is not None else None, slot.error)
        for name, slot in slots
    )


def encoded(app: Flask) -> bytes:
    """The document for what `app` serves now, built again only when that changed."""
    repository: Repository = app.extensions["repository"]
    cache: Cache = app.extensions["openapi"]
    settings = app.config.get("SETTINGS") or Settings()
    with cache.lock:
        # A reload may change a model while the document is built: build again until the
        # models it was built from are still the ones served.
        for attempt in range(3):
            key = _key(repository)
            if cache.key == key and cache.value:
                break
            try:
                value = msgspec.json.encode(build(settings, repository))
            except Exception:
                if _key(repository) == key or attempt == 2:
                    raise
                continue
            cache.key, cache.value = key, value
        return cache.value


@bp.get("/openapi.json")
def openapi_json() -> Response:
    return Response(encoded(current_app), mimetype=JSON)


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
    app.extensions["openapi"] = Cache()
    app.register_blueprint(bp)


def document(app: Flask) -> dict[str, Any]:
    """The document `app` serves now, as a fresh dict."""
    value: dict[str, Any] = msgspec.json.decode(encoded(app))
    return value
