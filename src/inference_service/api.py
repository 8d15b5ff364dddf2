"""HTTP endpoints: parse the transport, delegate to protocol and model, serialize. Nothing else."""

from __future__ import annotations

import hmac
import logging
import re
from typing import Any

import msgspec
from flask import Blueprint, Flask, Response, current_app, request
from werkzeug.exceptions import HTTPException

from inference_service import FEATURES, MODEL_NAME, __version__, protocol
from inference_service.config import Settings, parse_bool
from inference_service.errors import (
    InferenceError,
    InvalidInput,
    ModelNotReady,
    NotFound,
    PayloadTooLarge,
    Unauthorized,
    UnsupportedMediaType,
)
from inference_service.model import Model

log = logging.getLogger(__name__)
bp = Blueprint("api", __name__)
_encode = msgspec.json.Encoder().encode
_JSON_SUFFIX = re.compile(r"application/[\w.+-]+\+json")


class Live:
    """What this process serves. `model` is swapped whole by a reload, never mutated."""

    def __init__(self, settings: Settings, model: Model | None = None) -> None:
        self.settings = settings
        self.model = model
        self.error: str | None = None
        self.keys = tuple(k.encode() for k in settings.keys())

    def ready_model(self) -> Model:
        model = self.model  # read once: a reload may swap it meanwhile
        if model is None:
            raise ModelNotReady(f"No model is loaded: {self.error or 'still starting'}.")
        return model


def live() -> Live:
    state: Live = current_app.extensions["inference"]
    return state


def json_response(body: bytes | dict[str, Any], status: int = 200) -> Response:
    data = body if isinstance(body, bytes) else _encode(body)
    return Response(data, status=status, mimetype="application/json")


def _too_large(limit: int) -> str:
    return f"The body is larger than the limit of {limit} bytes."


def _json_body(state: Live, environ: dict[str, Any]) -> bytes:
    # A missing Content-Type is read as JSON (V2 clients such as tritonclient send none);
    # any other declared type is refused.
    mimetype = environ.get("CONTENT_TYPE", "").partition(";")[0].strip().lower()
    if mimetype and mimetype != "application/json" and not _JSON_SUFFIX.fullmatch(mimetype):
        raise UnsupportedMediaType(f"Content-Type must be application/json, got {mimetype!r}.")
    length = environ.get("CONTENT_LENGTH", "")
    limit = state.settings.max_body_bytes
    if length.isdigit() and "HTTP_TRANSFER_ENCODING" not in environ:
        # The common case, read straight from the server: werkzeug's stream wrappers cost more
        # than the whole inference for a small body.
        if int(length) > limit:
            raise PayloadTooLarge(_too_large(limit))
        data: bytes = environ["wsgi.input"].read(int(length))
        # granian ends a body at the client's EOF without checking it against Content-Length,
        # and a body cut short can still parse (a complete JSON array followed by nothing).
        if len(data) != int(length):
            raise InvalidInput(
                f"The body ended after {len(data)} of the {length} bytes in Content-Length."
            )
        return data
    # Chunked: read one byte past the limit. werkzeug's MAX_CONTENT_LENGTH stream would stop at
    # the limit and hand over the first 1 MiB of a longer body as if it were all of it.
    stream, chunks, size = environ["wsgi.input"], [], 0
    while size <= limit and (chunk := stream.read(min(65536, limit + 1 - size))):
        chunks.append(chunk)
        size += len(chunk)
    if size > limit:
        raise PayloadTooLarge(_too_large(limit))
    return b"".join(chunks)


def _authorize(state: Live, environ: dict[str, Any]) -> None:
    """With API keys set, require `Authorization: Bearer <key>`, compared in constant time."""
    if not state.keys:
        return
    scheme, _, given = environ.get("HTTP_AUTHORIZATION", "").partition(" ")
    offered = given.strip().encode() if scheme.lower() == "bearer" else b""
    matched = False
    for key in state.keys:  # no early exit: the time taken does not depend on which key matched
        matched |= hmac.compare_digest(offered, key)
    if not matched:
        raise Unauthorized("Missing or invalid API key.")


def _check_named(name: str, version: str | None, model: Model | None) -> None:
    """404 for another model name, or for a version that is not the live one."""
    if name != MODEL_NAME:
        raise NotFound(f"Model {name!r} not found; this server serves {MODEL_NAME!r}.")
    if model is not None and version not in (None, model.version):
        raise NotFound(f"Model {name!r} version {version!r} not found; live is {model.version!r}.")


def _model_named(state: Live, name: str, version: str | None = None) -> Model:
    _check_named(name, version, state.model)
    model = state.ready_model()
    _check_named(name, version, model)  # a reload may have swapped it since the first check
    return model


def _flag(environ: dict[str, Any], name: str) -> bool:
    if not environ.get("QUERY_STRING"):
        return False
    raw = request.args.get(name, "false")
    try:
        return parse_bool(raw)
    except ValueError:
        raise InvalidInput(f"Query parameter {name}={raw!r} must be true or false.") from None


def _record(environ: dict[str, Any], model: Model, labels: list[str], x: protocol.Matrix) -> None:
    """Leave what the access log and metrics need in the WSGI environ; count inputs for drift."""
    environ["inference.labels"] = labels
    environ["inference.model_version"] = model.version
    drift = current_app.extensions["metrics"].drift
    drift.observe(model.name, model.version, model.features, model.card, x)


@bp.post("/inference")
def inference() -> Response:
    state, environ = live(), request.environ
    _authorize(state, environ)
    x = protocol.parse_records(_json_body(state, environ), state.settings.max_rows)
    with_probabilities = _flag(environ, "probabilities")
    model = state.ready_model()
    labels, probabilities = model.predict(x)
    _record(environ, model, labels, x)
    return json_response(
        protocol.records_response(
            model.name,
            model.version,
            labels,
            probabilities if with_probabilities else None,
            model.labels,
        )
    )


@bp.post("/v2/models/<name>/infer")
@bp.post("/v2/models/<name>/versions/<version>/infer")
def v2_infer(name: str, version: str | None = None) -> Response:
    state, environ = live(), request.environ
    _authorize(state, environ)
    model = _model_named(state, name, version)
    body, x = protocol.parse_v2(_json_body(state, environ), state.settings.max_rows)
    labels, probabilities = model.predict(x)
    _record(environ, model, labels, x)
    return json_response(
        protocol.v2_response(model.name, model.version, body, labels, probabilities)
    )


@bp.get("/v2")
def v2_server() -> Response:
    return json_response({"name": "inference-service", "version": __version__, "extensions": []})


@bp.get("/v2/health/live")
def v2_live() -> Response:
    return json_response({"live": True})


@bp.get("/v2/health/ready")
def v2_ready() -> Response:
    ready = live().model is not None
    return json_response({"ready": ready}, 200 if ready else 503)


@bp.get("/v2/models/<name>")
@bp.get("/v2/models/<name>/versions/<version>")
def v2_model(name: str, version: str | None = None) -> Response:
    model = _model_named(live(), name, version)
    card = model.card
    return json_response(
        {
            "name": model.name,
            "versions": [model.version],
            "platform": "onnxruntime_onnx",
            "inputs": [{"name": "input", "datatype": "FP32", "shape": [-1, len(FEATURES)]}],
            "outputs": [
                {"name": "label", "datatype": "BYTES", "shape": [-1]},
                {"name": "probabilities", "datatype": "FP32", "shape": [-1, len(model.labels)]},
            ],
            "parameters": {
                "version": model.version,
                "trained_at": card["created_at"],
                "data_sha256": card["data_sha256"],
                "features": list(model.features),
                "labels": list(model.labels),
                "metrics": {k: v for k, v in card["metrics"].items() if k != "confusion_matrix"},
            },
        }
    )


@bp.get("/v2/models/<name>/ready")
@bp.get("/v2/models/<name>/versions/<version>/ready")
def v2_model_ready(name: str, version: str | None = None) -> Response:
    model = live().model
    _check_named(name, version, model)
    ready = model is not None
    return json_response({"name": name, "ready": ready}, 200 if ready else 503)


@bp.get("/model")
def model_card() -> Response:
    """The full model card of the live model."""
    return json_response(live().ready_model().card)


@bp.get("/livez")
def livez() -> Response:
    return json_response({"status": "alive"})


@bp.get("/readyz")
def readyz() -> Response:
    state = live()
    model = state.model
    if model is None:
        return json_response({"error": f"Not ready: {state.error or 'still starting'}."}, 503)
    return json_response(
        {"status": "ready", "model": {"name": model.name, "version": model.version}}
    )


def _domain_error(exc: InferenceError) -> Response:
    request.environ["inference.error"] = exc.message
    response = json_response({"error": exc.message}, exc.status)
    if isinstance(exc, Unauthorized):
        response.headers["WWW-Authenticate"] = "Bearer"
    return response


def _http_error(exc: HTTPException) -> Response:
    messages = {
        404: f"No endpoint at {request.path}; see /docs for the API.",
        405: f"{request.method} is not allowed on {request.path}.",
        413: _too_large(live().settings.max_body_bytes),
    }
    message = messages.get(exc.code or 0) or exc.description or exc.name
    request.environ["inference.error"] = message
    response = json_response({"error": message}, exc.code or 500)
    if exc.code == 405 and (allowed := exc.get_headers()):
        response.headers.update({k: v for k, v in allowed if k == "Allow"})
    return response


def _unexpected(exc: Exception) -> Response:
    log.exception("unhandled error")
    return json_response({"error": "Internal server error."}, 500)


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)
    app.register_error_handler(InferenceError, _domain_error)
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(Exception, _unexpected)
