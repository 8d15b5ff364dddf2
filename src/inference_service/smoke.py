"""`inference-service smoke URL`: prove a running service answers correctly, not just with 200.

Every served model is checked with the examples its own card records (rows and the answers the
model gave when it was written), over the records contract, KServe V1 and V2, so the smoke test
works for a model it has never seen. The default model also answers the original contract.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from typing import Any

from inference_service.config import Settings

# The original contract's request: positional keys, two records.
ORIGINAL_PAYLOAD = [{"0": 0, "1": 5, "2": 7, "3": 6}, {"0": 1, "1": 3, "2": 3, "3": 1}]
# Regression answers are float32 from the same ONNX graph: equal but for JSON rounding.
TOLERANCE = 1e-5


class SmokeFailure(Exception):
    pass


def run(url: str, timeout: float = 60.0, api_key: str | None = None) -> int:
    """Exit status 0 when every check passes; otherwise print the reason and return 1."""
    base = url.rstrip("/").removesuffix("/inference")
    scheme = urllib.parse.urlsplit(base).scheme
    if scheme not in ("http", "https"):
        print(  # noqa: T201
            f"smoke: {url!r} is not an http:// or https:// URL (e.g. http://127.0.0.1:6666)",
            file=sys.stderr,
        )
        return 2
    key = api_key or default_key()
    try:
        wait_ready(base, timeout)
        checked = check(base, key)
    except SmokeFailure as exc:
        print(f"smoke FAILED against {base}: {exc}", file=sys.stderr)  # noqa: T201
        return 1
    print(f"smoke passed against {base}: {', '.join(checked)}")  # noqa: T201
    return 0


def default_key(environ: Mapping[str, str] = os.environ) -> str | None:
    """INFERENCE_API_KEY, else the first of the service's own INFERENCE_API_KEYS, else none."""
    if key := environ.get("INFERENCE_API_KEY"):
        return key
    keys = Settings(api_keys=environ.get("INFERENCE_API_KEYS", "")).keys()
    return keys[0] if keys else None


def wait_ready(base: str, timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        try:
            status, body = _call("GET", f"{base}/readyz", None, None)
            if status == 200:
                return body
            last = f"HTTP {status}: {body.get('error', body)}"
        except SmokeFailure as exc:
            last = str(exc)
        time.sleep(0.25)
    raise SmokeFailure(f"not ready after {timeout:g} s ({last})")


def check(base: str, key: str | None) -> list[str]:
    """Check every model a ready service serves; returns `name version` for each."""
    status, ready = _call("GET", f"{base}/readyz", None, None)
    _expect(status == 200, f"not ready: HTTP {status} {ready}")
    models = ready.get("models")
    if not isinstance(models, dict) or not models:
        raise SmokeFailure(f"/readyz lists no models ({ready}); nothing was checked")
    default = ready.get("model")
    return [check_model(base, name, key, default=default) for name in models]


def check_model(base: str, name: str, key: str | None, default: Any = None) -> str:
    """Every protocol of one model against the examples in its card; returns `name version`."""
    status, card = _call("GET", f"{base}/models/{name}", None, None)
    _expect(status == 200, f"{name}: model card: HTTP {status} {card}")
    signature = card["signature"]
    examples = signature["examples"]
    _expect(bool(examples), f"{name}: the model card records no examples")
    features = [f["name"] for f in signature["features"]]
    rows = [e["inputs"] for e in examples]
    classifier = signature["task"] == "classification"
    expected = [e["label"] if classifier else e["prediction"] for e in examples]

    positional = [{str(i): v for i, v in enumerate(row)} for row in rows]
    named = [dict(zip(features, row, strict=True)) for row in rows]
    for what, path, payload in (
        ("records", f"/models/{name}/inference", positional),
        ("named records", f"/models/{name}/inference", named),
    ):
        status, body = _call("POST", base + path, payload, key)
        _expect(status == 200, f"{name} {what}: HTTP {status} {body}")
        _same(name, what, body.get("predictions"), expected)
    status, body = _call("POST", f"{base}/v1/models/{name}:predict", {"instances": rows}, key)
    _expect(status == 200, f"{name} V1 predict: HTTP {status} {body}")
    _same(name, "V1 predict", body.get("predictions"), expected)
    v2 = {
        "id": "smoke",
        "inputs": [
            {
                "name": "input",
                "shape": [len(rows), len(features)],
                "datatype": "FP32",
                "data": [v for row in rows for v in row],
            }
        ],
    }
    status, body = _call("POST", f"{base}/v2/models/{name}/infer", v2, key)
    _expect(status == 200, f"{name} V2 infer: HTTP {status} {body}")
    output = "label" if classifier else "prediction"
    answers = next((o["data"] for o in body.get("outputs", []) if o.get("name") == output), None)
    _same(name, "V2 infer", answers, expected)
    _expect(body.get("id") == "smoke", f"{name} V2 infer: id {body.get('id')!r} not echoed")
    if isinstance(default, dict) and default.get("name") == name:
        _check_original(base, name, signature, key)
    return f"{name} {card['version']}"


def _check_original(base: str, name: str, signature: dict[str, Any], key: str | None) -> None:
    """The default model answers the original contract: one known label per record."""
    if len(signature["features"]) != len(ORIGINAL_PAYLOAD[0]):
        return  # the original payload has four features; another default model cannot take it
    status, body = _call("POST", f"{base}/inference", ORIGINAL_PAYLOAD, key)
    _expect(status == 200, f"original payload: HTTP {status} {body}")
    predictions = body.get("predictions")
    known = signature["labels"]
    _expect(
        isinstance(predictions, list)
        and len(predictions) == len(ORIGINAL_PAYLOAD)
        and all((p in known) if known else isinstance(p, float | int) for p in predictions),
        f"original payload: predictions {predictions} are not {len(ORIGINAL_PAYLOAD)} answers "
        f"of model {name}",
    )


def _same(name: str, what: str, got: Any, expected: list[Any]) -> None:
    ok = isinstance(got, list) and len(got) == len(expected)
    if ok and expected and isinstance(expected[0], float):
        ok = all(
            isinstance(g, int | float) and math.isclose(g, e, rel_tol=TOLERANCE, abs_tol=TOLERANCE)
            for g, e in zip(got, expected, strict=True)
        )
    elif ok:
        ok = got == expected
    _expect(ok, f"{name} {what}: answers {got}, the model card says {expected}")


def _expect(ok: bool, reason: str) -> None:
    if not ok:
        raise SmokeFailure(reason)


def _call(method: str, url: str, payload: Any, key: str | None) -> tuple[int, dict[str, Any]]:
    data = None if payload is None else json.dumps(payload).encode()
    request = urllib.request.Request(url, data=data, method=method)
    request.add_header("Content-Type", "application/json")
    if key:
        request.add_header("Authorization", f"Bearer {key}")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            status, raw = response.status, response.read()
    except urllib.error.HTTPError as exc:
        status, raw = exc.code, exc.read()
    except (urllib.error.URLError, OSError) as exc:
        raise SmokeFailure(f"{method} {url}: {getattr(exc, 'reason', exc)}") from None
    try:
        body = json.loads(raw)
    except ValueError:
        raise SmokeFailure(f"{method} {url}: HTTP {status}, not JSON: {raw[:200]!r}") from None
    return status, body if isinstance(body, dict) else {"body": body}
