"""HTTP endpoints: parse the transport, delegate to protocol and model, serialize. Nothing else.

The inference routes (records, KServe V1 predict, V2 infer) are plain functions of the WSGI
environ. Flask routes them like every other endpoint, and `Dispatch`, a WSGI layer in front of
Flask, sends a POST to a served model's inference path straight to the same function: the
request then costs what parsing, prediction and the answer cost, not Flask's request cycle
(docs/performance.md has the profile). Every other request, and every inference path that does
not name a served model, goes to Flask.
"""

from __future__ import annotations

import hmac
import logging
import re
import threading
from collections import deque
from collections.abc import Callable, Iterable
from http import HTTPStatus
from typing import TYPE_CHECKING, Any, NamedTuple
from urllib.parse import parse_qsl

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
from inference_service.observability import Metrics
from inference_service.repository import Repository

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

log = logging.getLogger(__name__)
bp = Blueprint("api", __name__)
_encode = msgspec.json.Encoder().encode
_JSON_SUFFIX = re.compile(r"application/[\w.+-]+\+json")
JSON = "application/json"
INFERENCE_HEADER = "Inference-Header-Content-Length"
INTERNAL_ERROR = b'{"error":"Internal server error."}'


class Turns:
    """First come, first served: one request at a time computes, in the order they asked.

    Parsing, prediction and encoding are CPU work under one interpreter lock, so running
    requests side by side makes none faster; it only lets the lock pick, at random, which one
    goes on each time another pauses (onnxruntime and numpy release it). Waiting in line
    instead turns that lottery into a queue: at 16 connections sending 1,000 records, p99
    drops from about 36 ms to 10-14 ms, for 5-10 % fewer requests/s at that size and none
    measurable at 2 records (docs/performance.md). Bodies are read before the line, so a slow
    client never holds it.
    """

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._busy = False
        self._waiting: deque[threading.Lock] = deque()

    def __enter__(self) -> None:
        with self._guard:
            if not self._busy:
                self._busy = True
                return
            turn = threading.Lock()
            turn.acquire()
            self._waiting.append(turn)
        turn.acquire()  # released by the request before this one, handing its turn on

    def __exit__(self, *exc: object) -> None:
        with self._guard:
            if self._waiting:
                self._waiting.popleft().release()
            else:
                self._busy = False


class Live:
    """What this process serves: the model repository, its limits, metrics and API keys."""

    def __init__(self, settings: Settings, repository: Repository, metrics: Metrics) -> None:
        self.settings = settings
        self.repository = repository
        self.metrics = metrics
        self.keys = tuple(k.encode() for k in settings.keys())
        self.turns = Turns()


class Reply(NamedTuple):
    """An answer, independent of the framework that sends it."""

    body: bytes
    status: int = 200
    content_type: str = JSON
    headers: tuple[tuple[str, str], ...] = ()


def live() -> Live:
    state: Live = current_app.extensions["inference"]
    return state


def json_response(body: bytes | dict[str, Any], status: int = 200) -> Response:
    data = body if isinstance(body, bytes) else _encode(body)
    return Response(data, status=status, mimetype=JSON)


def _flask(reply: Reply) -> Response:
    response = Response(reply.body, status=reply.status, content_type=reply.content_type)
    response.headers.extend(reply.headers)
    return response


def _too_large(limit: int) -> str:
    return f"The body is larger than the limit of {limit} bytes."


def _json_body(state: Live, environ: WSGIEnvironment, binary: bool = False) -> bytes:
    # A missing Content-Type is read as JSON (V2 clients such as tritonclient send none);
    # any other declared type is refused, but for binary tensor data after a JSON header.
    mimetype = environ.get("CONTENT_TYPE", "").partition(";")[0].strip().lower()
    allowed = mimetype == JSON or bool(_JSON_SUFFIX.fullmatch(mimetype))
    if binary and mimetype == "application/octet-stream":
        allowed = True
    if mimetype and not allowed:
        raise UnsupportedMediaType(f"Content-Type must be application/json, got {mimetype!r}.")
    length = environ.get("CONTENT_LENGTH", "")
    limit = state.settings.max_body_bytes
    if length.isdigit() and "HTTP_TRANSFER_ENCODING" not in environ:
        # Read straight from the server: werkzeug's stream wrappers cost more than the whole
        # inference for a small body.
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


def _authorize(state: Live, environ: WSGIEnvironment) -> None:
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


def _flag(environ: WSGIEnvironment, name: str) -> bool:
    query = environ.get("QUERY_STRING")
    if not query:
        return False
    # The first value counts, as in Flask's request.args; latin-1 as WSGI delivers the query.
    values = [v for k, v in parse_qsl(query, keep_blank_values=True) if k == name]
    raw = values[0] if values else "false"
    try:
        return parse_bool(raw)
    except ValueError:
        raise InvalidInput(f"Query parameter {name}={raw!r} must be true or false.") from None


def _predict(state: Live, environ: WSGIEnvironment, model: Model, x: Any) -> Prediction:
    """Predict, and leave what the access log and metrics need in the WSGI environ."""
    prediction = model.predict(x)
    state.metrics.drift.observe(model.name, model.version, model.features, model.card, x)
    environ["inference.rows"] = prediction.rows
    environ["inference.labels"] = prediction.labels
    environ["inference.model_version"] = model.version
    return prediction


def _named(state: Live, environ: WSGIEnvironment, name: str, version: str | None = None) -> Model:
    repository = state.repository
    environ["inference.model"] = name if name in repository.slots else "unknown"
    return repository.model(name, version)


# --- the inference routes: (state, environ, path arguments) -> Reply ---


def records(state: Live, environ: WSGIEnvironment, name: str | None = None) -> Reply:
    """The record contract: the default model's (`/inference`) or a named model's."""
    _authorize(state, environ)
    if name is None:
        model = state.repository.default_model()
    else:
        model = _named(state, environ, name)
    environ["inference.model"] = model.name
    body = _json_body(state, environ)
    with state.turns:
        x = protocol.parse_records(body, model.signature, state.settings.max_rows)
        with_probabilities = _flag(environ, "probabilities")
        if with_probabilities and not model.signature.is_classifier:
            raise InvalidInput(f"Model {model.name!r} is a regressor: it has no probabilities.")
        prediction = _predict(state, environ, model, x)
        return Reply(
            protocol.records_response(
                model.name, model.version, prediction, model.labels, with_probabilities
            )
        )


def v1_predict(state: Live, environ: WSGIEnvironment, name: str) -> Reply:
    _authorize(state, environ)
    model = _named(state, environ, name)
    body = _json_body(state, environ)
    with state.turns:
        x = protocol.parse_v1(body, model.signature, state.settings.max_rows)
        return Reply(protocol.v1_response(_predict(state, environ, model, x)))


def v2_infer(state: Live, environ: WSGIEnvironment, name: str, version: str | None = None) -> Reply:
    _authorize(state, environ)
    model = _named(state, environ, name, version)
    header_length = _header_length(environ)
    data = _json_body(state, environ, binary=header_length is not None)
    with state.turns:
        body, x = protocol.parse_v2(data, model.signature, state.settings.max_rows, header_length)
        prediction = _predict(state, environ, model, x)
        answer, json_length = protocol.v2_response(
            model.name, model.version, body, prediction, model.signature
        )
    if json_length is None:
        return Reply(answer)
    return Reply(answer, 200, "application/octet-stream", ((INFERENCE_HEADER, str(json_length)),))


def _header_length(environ: WSGIEnvironment) -> int | None:
    """The binary tensor data extension's JSON header length, when the request has one."""
    raw = environ.get("HTTP_INFERENCE_HEADER_CONTENT_LENGTH")
    if raw is None:
        return None
    if not raw.strip().isdigit():
        raise InvalidInput(f"{INFERENCE_HEADER} must be a byte count, got {raw!r}.")
    return int(raw)


def error_reply(environ: WSGIEnvironment, exc: InferenceError) -> Reply:
    environ["inference.error"] = exc.message
    headers = (("WWW-Authenticate", "Bearer"),) if isinstance(exc, Unauthorized) else ()
    return Reply(_encode({"error": exc.message}), exc.status, JSON, headers)


@bp.post("/inference")
def inference() -> Response:
    """The original contract, answered by the default model."""
    return _flask(records(live(), request.environ))


@bp.post("/models/<name>/inference")
def model_inference(name: str) -> Response:
    return _flask(records(live(), request.environ, name))


@bp.post("/v1/models/<name>:predict")
def v1_predict_route(name: str) -> Response:
    return _flask(v1_predict(live(), request.environ, name))


@bp.post("/v2/models/<name>/infer")
@bp.post("/v2/models/<name>/versions/<version>/infer")
def v2_infer_route(name: str, version: str | None = None) -> Response:
    return _flask(v2_infer(live(), request.environ, name, version))


Handler = Callable[..., Reply]


class Dispatch:
    """WSGI: a POST to a served model's inference path goes straight to its handler.

    The route patterns are the Flask rules' own, so metrics and access lines name the same
    endpoint whichever way a request went. Anything else, including a path naming a model this
    server does not serve (Flask answers its 404), goes to the Flask app.
    """

    def __init__(self, app: WSGIApplication, state: Live) -> None:
        self.app = app
        self.state = state
        self._status = {s.value: f"{s.value} {s.phrase}" for s in HTTPStatus}

    def route(self, path: str) -> tuple[str, Handler, tuple[str, ...]] | None:
        if path == "/inference":
            return "/inference", records, ()
        parts = path.split("/")
        slots = self.state.repository.slots
        match parts:
            case ["", "models", name, "inference"] if name in slots:
                return "/models/<name>/inference", records, (name,)
            case ["", "v1", "models", predict] if predict.endswith(":predict"):
                name = predict.removesuffix(":predict")
                if name in slots:
                    return "/v1/models/<name>:predict", v1_predict, (name,)
            case ["", "v2", "models", name, "infer"] if name in slots:
                return "/v2/models/<name>/infer", v2_infer, (name,)
            case ["", "v2", "models", name, "versions", version, "infer"] if (
                name in slots and version
            ):
                return "/v2/models/<name>/versions/<version>/infer", v2_infer, (name, version)
        return None

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        hit = (
            self.route(environ.get("PATH_INFO", ""))
            if environ["REQUEST_METHOD"] == "POST"
            else None
        )
        if hit is None:
            return self.app(environ, start_response)
        endpoint, handler, arguments = hit
        environ["inference.endpoint"] = endpoint
        try:
            reply = handler(self.state, environ, *arguments)
        except InferenceError as exc:
            reply = error_reply(environ, exc)
        except Exception:
            log.exception("unhandled error")
            reply = Reply(INTERNAL_ERROR, 500)
        headers = [("Content-Type", reply.content_type), ("Content-Length", str(len(reply.body)))]
        headers.extend(reply.headers)
        start_response(self._status[reply.status], headers)
        return [reply.body]


@bp.get("/models/<name>")
def model_card_named(name: str) -> Response:
    return json_response(_named(live(), request.environ, name).card)


@bp.get("/models/<name>/drift")
def model_drift(name: str) -> Response:
    """Input drift of the live version: PSI per feature against the training data, summed over
    every worker, with the share of out-of-range values."""
    state = live()
    model = _named(state, request.environ, name)
    drift = state.metrics.drift
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


# --- Open Inference Protocol V2 ---


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
    return json_response(protocol.v2_metadata(_named(live(), request.environ, name, version)))


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
    return _flask(error_reply(request.environ, exc))


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
    app.wsgi_app = Dispatch(app.wsgi_app, app.extensions["inference"])  # type: ignore[method-assign]
    app.register_error_handler(InferenceError, _domain_error)
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(Exception, _unexpected)
