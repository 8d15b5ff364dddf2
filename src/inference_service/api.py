"""HTTP endpoints: parse the transport, delegate to protocol and model, serialize. Nothing else."""

from __future__ import annotations

import hmac
import logging
import re
from typing import Any

import msgspec
from flask import Blueprint, Flask, Response, current_app, request
from werkzeug.exceptions import HTTPException, MethodNotAllowed

from inference_service import __version__, protocol
from inference_service.config import Settings, parse_bool
from inference_service.errors import (
    InferenceError,
    InvalidInput,
    LengthRequired,
    PayloadTooLarge,
    Unauthorized,
    UnsupportedMediaType,
)
from inference_service.model import Model, Prediction
from inference_service.repository import Repository

log = logging.getLogger(__name__)
bp = Blueprint("api", __name__)
_encode = msgspec.json.Encoder().encode
_JSON_SUFFIX = re.compile(r"application/[\w.+-]+\+json")


class Live:
    """What this process serves: the model repository, its limits and the accepted API keys."""

    def __init__(self, settings: Settings, repository: Repository) -> None:
        self.settings = settings
        self.repository = repository
        self.keys = tuple(k.encode() for k in settings.keys())


def live() -> Live:
    state: Live = current_app.extensions["inference"]
    return state


def json_response(body: bytes | dict[str, Any], status: int = 200) -> Response:
    data = body if isinstance(body, bytes) else _encode(body)
    return Response(data, status=status, mimetype="application/json")


def _too_large(limit: int) -> str:
    return f"The body is larger than the limit of {limit} bytes."


def _json_body(state: Live, environ: dict[str, Any], binary: bool = False) -> bytes:
    # A missing Content-Type is read as JSON (V2 clients such as tritonclient send none);
    # any other declared type is refused, but for binary tensor data after a JSON header.
    mimetype = environ.get("CONTENT_TYPE", "").partition(";")[0].strip().lower()
    allowed = mimetype == "application/json" or bool(_JSON_SUFFIX.fullmatch(mimetype))
    if binary and mimetype == "application/octet-stream":
        allowed = True
    if mimetype and not allowed:
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
    if "HTTP_TRANSFER_ENCODING" in environ:
        # granian ends a chunked body stream at a malformed chunk size, a chunk cut short or an
        # EOF before the last chunk exactly as at a proper end, so a truncated body that happens
        # to be valid JSON would be answered. Refuse what cannot be verified; a proxy in front
        # (the deployed nginx buffers the body) sends Content-Length.
        raise LengthRequired(
            "Send the body with a Content-Length header; chunked request bodies are not accepted."
        )
    return b""  # neither Content-Length nor Transfer-Encoding: the request has no body


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


def _flag(environ: dict[str, Any], name: str) -> bool:
    if not environ.get("QUERY_STRING"):
        return False
    raw = request.args.get(name, "false")
    try:
        return parse_bool(raw)
    except ValueError:
        raise InvalidInput(f"Query parameter {name}={raw!r} must be true or false.") from None


def _predict(environ: dict[str, Any], model: Model, x: Any) -> Prediction:
    """Predict, and leave what the access log and metrics need in the WSGI environ."""
    prediction = model.predict(x)
    drift = current_app.extensions["metrics"].drift
    drift.observe(model.name, model.version, model.features, model.card, x)
    environ["inference.rows"] = prediction.rows
    environ["inference.labels"] = prediction.labels
    environ["inference.model_version"] = model.version
    return prediction


def _named(environ: dict[str, Any], name: str, version: str | None = None) -> Model:
    repository = live().repository
    environ["inference.model"] = name if name in repository.slots else "unknown"
    return repository.model(name, version)


def _records(model: Model) -> Response:
    state, environ = live(), request.environ
    environ["inference.model"] = model.name
    x = protocol.parse_records(_json_body(state, environ), model.signature, state.settings.max_rows)
    with_probabilities = _flag(environ, "probabilities")
    if with_probabilities and not model.signature.is_classifier:
        raise InvalidInput(f"Model {model.name!r} is a regressor: it has no probabilities.")
    prediction = _predict(environ, model, x)
    return json_response(
        protocol.records_response(
            model.name, model.version, prediction, model.labels, with_probabilities
        )
    )


@bp.post("/inference")
def inference() -> Response:
    """The original contract, answered by the default model."""
    _authorize(live(), request.environ)
    return _records(live().repository.default_model())


@bp.post("/models/<name>/inference")
def model_inference(name: str) -> Response:
    _authorize(live(), request.environ)
    return _records(_named(request.environ, name))


@bp.get("/models/<name>")
def model_card_named(name: str) -> Response:
    return json_response(_named(request.environ, name).card)


@bp.get("/models/<name>/drift")
def model_drift(name: str) -> Response:
    """Input drift of the live version: PSI per feature against the training data, summed over
    every worker, with the share of out-of-range values."""
    model = _named(request.environ, name)
    drift = current_app.extensions["metrics"].drift
    return json_response(drift.summary(model.name, model.version, model.features, model.card))


@bp.get("/model")
def model_card() -> Response:
    """The full model card of the default model."""
    return json_response(live().repository.default_model().card)


# --- KServe V1 ---


@bp.get("/v1/models/<name>")
def v1_model(name: str) -> Response:
    if name.endswith(":predict"):  # the GET rule also matches the predict path
        raise MethodNotAllowed(valid_methods=["POST"])
    slot = live().repository.get(name)
    return json_response({"name": name, "ready": slot.model is not None})


@bp.post("/v1/models/<name>:predict")
def v1_predict(name: str) -> Response:
    state, environ = live(), request.environ
    _authorize(state, environ)
    model = _named(environ, name)
    x = protocol.parse_v1(_json_body(state, environ), model.signature, state.settings.max_rows)
    return json_response(protocol.v1_response(_predict(environ, model, x)))


# --- Open Inference Protocol V2 ---


@bp.post("/v2/models/<name>/infer")
@bp.post("/v2/models/<name>/versions/<version>/infer")
def v2_infer(name: str, version: str | None = None) -> Response:
    state, environ = live(), request.environ
    _authorize(state, environ)
    model = _named(environ, name, version)
    header_length = _header_length(environ)
    body, x = protocol.parse_v2(
        _json_body(state, environ, binary=header_length is not None),
        model.signature,
        state.settings.max_rows,
        header_length,
    )
    prediction = _predict(environ, model, x)
    answer, json_length = protocol.v2_response(
        model.name, model.version, body, prediction, model.signature
    )
    if json_length is None:
        return json_response(answer)
    response = Response(answer, mimetype="application/octet-stream")
    response.headers[INFERENCE_HEADER] = str(json_length)
    return response


INFERENCE_HEADER = "Inference-Header-Content-Length"


def _header_length(environ: dict[str, Any]) -> int | None:
    """The binary tensor data extension's JSON header length, when the request has one."""
    raw = environ.get("HTTP_INFERENCE_HEADER_CONTENT_LENGTH")
    if raw is None:
        return None
    if not raw.strip().isdigit():
        raise InvalidInput(f"{INFERENCE_HEADER} must be a byte count, got {raw!r}.")
    return int(raw)


@bp.get("/v2")
def v2_server() -> Response:
    return json_response(
        {
            "name": "inference-service",
            "version": __version__,
            "extensions": ["model_repository", protocol.BINARY_EXTENSION],
        }
    )


@bp.get("/v2/health/live")
def v2_live() -> Response:
    return json_response({"live": True})


@bp.get("/v2/health/ready")
def v2_ready() -> Response:
    ready = live().repository.ready
    return json_response({"ready": ready}, 200 if ready else 503)


@bp.get("/v2/models/<name>")
@bp.get("/v2/models/<name>/versions/<version>")
def v2_model(name: str, version: str | None = None) -> Response:
    return json_response(protocol.v2_metadata(_named(request.environ, name, version)))


@bp.get("/v2/models/<name>/ready")
@bp.get("/v2/models/<name>/versions/<version>/ready")
def v2_model_ready(name: str, version: str | None = None) -> Response:
    slot = live().repository.get(name)
    model = slot.model
    if model is not None and version not in (None, model.version):
        live().repository.model(name, version)  # raises the 404 naming the live version
    ready = model is not None
    return json_response({"name": name, "ready": ready}, 200 if ready else 503)


@bp.post("/v2/repository/index")
def v2_repository_index() -> Response:
    """The V2 model-repository extension's index: every model with its state, as Triton answers."""
    index = []
    for slot in live().repository.slots.values():
        model = slot.model
        entry: dict[str, Any] = {"name": slot.name}
        if model is not None:
            entry |= {"version": model.version, "state": "READY", "reason": ""}
        else:
            entry |= {"state": "UNAVAILABLE", "reason": slot.error or "still starting"}
        index.append(entry)
    return json_response(_encode(index))


@bp.get("/livez")
def livez() -> Response:
    return json_response({"status": "alive"})


@bp.get("/readyz")
def readyz() -> Response:
    """Ready when every configured model is; the body says which are and why not."""
    repository = live().repository
    models = {
        name: {"version": slot.model.version}
        if slot.model is not None
        else {"error": slot.error or "still starting"}
        for name, slot in repository.slots.items()
    }
    if not repository.ready:
        missing = [n for n, m in models.items() if "error" in m]
        reason = f"models not loaded: {', '.join(missing)}" if missing else repository.problem
        return json_response({"error": f"Not ready: {reason}.", "models": models}, 503)
    body: dict[str, Any] = {"status": "ready", "models": models}
    if (default := repository.default) is not None:
        body["model"] = {"name": default, "version": models[default]["version"]}
    return json_response(body)


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
