"""`inference-service smoke URL`: prove a running service answers correctly, not just with 200."""

from __future__ import annotations

import json
import os
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from typing import Any

from inference_service import MODEL_NAME
from inference_service.config import Settings

ORIGINAL_PAYLOAD = [{"0": 0, "1": 5, "2": 7, "3": 6}, {"0": 1, "1": 3, "2": 3, "3": 1}]
ORIGINAL_LABELS = ["virginica", "versicolor"]
# Typical flowers of each species from the data set; any model that passes the gate knows them.
KNOWN_ROWS = [[5.1, 3.5, 1.4, 0.2], [7.0, 3.2, 4.7, 1.4], [6.3, 3.3, 6.0, 2.5]]
KNOWN_LABELS = ["setosa", "versicolor", "virginica"]


class SmokeFailure(Exception):
    pass


def run(url: str, timeout: float = 60.0, api_key: str | None = None) -> int:
    """Exit status 0 when every check passes; otherwise print the reason and return 1."""
    base = url.rstrip("/").removesuffix("/inference")
    key = api_key or default_key()
    try:
        version = wait_ready(base, timeout)
        check(base, key)
    except SmokeFailure as exc:
        print(f"smoke FAILED against {base}: {exc}", file=sys.stderr)  # noqa: T201
        return 1
    print(f"smoke passed against {base} (model {version})")  # noqa: T201
    return 0


def default_key(environ: Mapping[str, str] = os.environ) -> str | None:
    """INFERENCE_API_KEY, else the first of the service's own INFERENCE_API_KEYS, else none."""
    if key := environ.get("INFERENCE_API_KEY"):
        return key
    keys = Settings(api_keys=environ.get("INFERENCE_API_KEYS", "")).keys()
    return keys[0] if keys else None


def wait_ready(base: str, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        try:
            status, body = _call("GET", f"{base}/readyz", None, None)
            if status == 200:
                return str(body["model"]["version"])
            last = f"HTTP {status}: {body.get('error', body)}"
        except SmokeFailure as exc:
            last = str(exc)
        time.sleep(0.25)
    raise SmokeFailure(f"not ready after {timeout:g} s ({last})")


def check(base: str, key: str | None) -> None:
    status, body = _call("POST", f"{base}/inference", ORIGINAL_PAYLOAD, key)
    _expect(status == 200, f"original payload: HTTP {status} {body}")
    _expect(
        body.get("predictions") == ORIGINAL_LABELS,
        f"original payload: predictions {body.get('predictions')}, expected {ORIGINAL_LABELS}",
    )
    records = [dict(zip("0123", row, strict=True)) for row in KNOWN_ROWS]
    status, body = _call("POST", f"{base}/inference", records, key)
    _expect(
        status == 200 and body.get("predictions") == KNOWN_LABELS,
        f"known rows: HTTP {status}, predictions {body.get('predictions')}, "
        f"expected {KNOWN_LABELS}",
    )
    v2 = {
        "id": "smoke",
        "inputs": [
            {"name": "input", "shape": [3, 4], "datatype": "FP32", "data": sum(KNOWN_ROWS, [])}
        ],
    }
    status, body = _call("POST", f"{base}/v2/models/{MODEL_NAME}/infer", v2, key)
    _expect(status == 200, f"V2 infer: HTTP {status} {body}")
    labels = next((o["data"] for o in body.get("outputs", []) if o.get("name") == "label"), None)
    _expect(labels == KNOWN_LABELS, f"V2 infer: labels {labels}, expected {KNOWN_LABELS}")
    _expect(body.get("id") == "smoke", f"V2 infer: id {body.get('id')!r} not echoed")


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
