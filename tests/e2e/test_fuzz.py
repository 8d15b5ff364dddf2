"""Contract fuzzing: schemathesis generates requests from the live server's /openapi.json.

The server serves every model of the repository's specs (classifiers and a regressor), so the
document has each model's own paths and schemas. Every operation is fuzzed with positive
(schema-valid) and negative (schema-violating) data, after its documented examples. Each response
must be below 500, match the documented status codes, content types, headers and schemas, and
every 4xx must be JSON with a string `error`.

`positive_data_acceptance` is left out on purpose: some rules cannot be written in JSON Schema
(V2 `data` must hold exactly N x n values for `shape` [N, n]; records of one request share one key
style), so schema-valid requests may rightly get 400. `negative_data_rejection` stays on: anything
the schema forbids must be refused with a 4xx.

The versioned operations are fuzzed twice: with generated versions (almost always 404) and with
each model's live version pinned, so their 200 path is fuzzed as well.

FUZZ_EXAMPLES (default 300; `make fuzz` sets 1500) is the least number of requests a run sends;
the generated examples per operation derive from it, most for the operations that take a body.
Every request has a 5 s timeout and shrinking is off, so a run is bounded by the budget.
The last test prints the count per operation and status (and writes it to $FUZZ_REPORT).
"""

from __future__ import annotations

import math
import os
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from inference_service import spec
from tests.conftest import SPECS, serving

BUDGET = int(os.environ.get("FUZZ_EXAMPLES", "300"))
MODELS = len(spec.discover(SPECS))
# Per model: records, V1 predict, V2 infer and V2 infer on a version take a body (POST); the
# card, its input drift, V1 readiness, V2 metadata and readiness (each also on a version) are
# GETs. Besides: POST /inference and /v2/repository/index, and 9 GETs (/model, /v2, health,
# docs, metrics).
POSTS = 4 * MODELS + 2
GETS = 7 * MODELS + 9
VERSIONED = 3 * MODELS
# Generated examples per operation (the documented examples come on top): two thirds of the
# budget for the POSTs, the rest for the GETs and for a second pass over the versioned ones at
# the live version.
INFER_EXAMPLES = math.ceil(BUDGET * 2 / 3 / POSTS)
READ_EXAMPLES = max(5, math.ceil(BUDGET / 6 / GETS))
VERSIONED_EXAMPLES = max(5, math.ceil(BUDGET / 6 / VERSIONED))
REQUEST_TIMEOUT = 5.0
REJECTIONS = ["400", "401", "404", "405", "413", "415"]

SENT: Counter[str] = Counter()
STATUSES: Counter[tuple[str, int]] = Counter()


@schemathesis.check
def errors_are_json_with_a_message(ctx: Any, response: Any, case: Any) -> bool | None:
    """Every 4xx is `{"error": "<non-empty string>"}` sent as application/json."""
    if not 400 <= response.status_code < 500:
        return None
    content_type = response.headers.get("content-type", [""])[0]
    assert content_type.startswith("application/json"), f"4xx with Content-Type {content_type!r}"
    body = response.json()
    assert isinstance(body, dict), f"4xx body is not an object: {body!r}"
    assert isinstance(body.get("error"), str) and body["error"], f"4xx without error: {body!r}"
    return True


CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    negative_data_rejection,
    errors_are_json_with_a_message,
]


@pytest.fixture(scope="module")
def live(repository: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """The real `inference-service serve` of every model, its output (access log included) to a
    file."""
    log = tmp_path_factory.mktemp("fuzz") / "server.log"
    with serving(repository, log) as (url, _):
        yield url, log


def _schema(url: str) -> schemathesis.BaseSchema:
    # Loaded from the document the server serves. Not `from_url`: that one leaves out the
    # operation serving the document itself, and GET /openapi.json is fuzzed too.
    document = requests.get(f"{url}/openapi.json", timeout=10)
    document.raise_for_status()
    schema = schemathesis.openapi.from_dict(document.json())
    schema.config.update(base_url=url, request_timeout=REQUEST_TIMEOUT)
    # What counts as refusing schema-violating data: every documented 4xx (413 for too many rows).
    schema.config.checks.negative_data_rejection.expected_statuses = REJECTIONS
    schema.config.generation.update(
        modes=[GenerationMode.POSITIVE, GenerationMode.NEGATIVE], no_shrink=True
    )
    return schema


@pytest.fixture
def live_schema(live: tuple[str, Path]) -> schemathesis.BaseSchema:
    return _schema(live[0])


@pytest.fixture
def live_version_schema(live: tuple[str, Path]) -> schemathesis.BaseSchema:
    """Versioned operations with each model's live version, which generated strings never hit."""
    url = live[0]
    models = requests.get(f"{url}/readyz", timeout=5).json()["models"]
    schema = _schema(url)

    @schema.hook("map_path_parameters")
    def live_version(ctx: Any, parameters: dict[str, Any] | None) -> dict[str, Any]:
        name = ctx.operation.path.split("/")[3]  # /v2/models/<name>/versions/{version}...
        return {**(parameters or {}), "version": models[name]["version"]}

    return schema


api = schemathesis.pytest.from_fixture("live_schema")
api_at_live_version = schemathesis.pytest.from_fixture("live_version_schema")
SESSION = requests.Session()


def call(case: Any) -> None:
    SENT[case.operation.label] += 1
    response = case.call(session=SESSION, timeout=REQUEST_TIMEOUT)
    STATUSES[(case.operation.label, response.status_code)] += 1
    case.validate_response(response, checks=CHECKS)


FUZZ = {
    "deadline": None,
    "database": None,
    "phases": [Phase.explicit, Phase.generate],
    "suppress_health_check": list(HealthCheck),
}


@pytest.mark.timeout(900)
@api.include(method="POST").parametrize()
@settings(max_examples=INFER_EXAMPLES, **FUZZ)
def test_inference_operations_hold_their_contract(case: Any) -> None:
    call(case)


@pytest.mark.timeout(300)
@api.exclude(method="POST").parametrize()
@settings(max_examples=READ_EXAMPLES, **FUZZ)
def test_read_operations_hold_their_contract(case: Any) -> None:
    call(case)


@pytest.mark.timeout(300)
@api_at_live_version.include(path_regex="/versions/").parametrize()
@settings(max_examples=VERSIONED_EXAMPLES, **FUZZ)
def test_operations_on_the_live_version_hold_their_contract(case: Any) -> None:
    call(case)


def test_fuzzing_spent_the_budget_without_a_server_error(live: tuple[str, Path]) -> None:
    """Runs after the tests above (file order): every operation got requests, the whole budget
    was sent, and the server logged no unhandled error."""
    if not SENT:
        pytest.skip("runs together with the fuzz tests above")
    total = sum(SENT.values())
    lines = [f"fuzzed requests: {total} over {len(SENT)} operations (budget {BUDGET})"]
    for label, n in sorted(SENT.items()):
        codes = ", ".join(f"{s}: {c}" for (op, s), c in sorted(STATUSES.items()) if op == label)
        lines.append(f"  {n:6d}  {label:48s} {codes}")
    summary = "\n".join(lines)
    print(f"\n{summary}")  # noqa: T201
    if target := os.environ.get("FUZZ_REPORT"):
        Path(target).write_text(summary + "\n")
    document = requests.get(f"{live[0]}/openapi.json", timeout=10).json()
    operations = sum(len(item) for item in document["paths"].values())
    assert (operations, POSTS + GETS) == (len(SENT), len(SENT)), summary
    assert total >= BUDGET, summary
    assert not any(code >= 500 for _, code in STATUSES), summary
    log = live[1].read_text(errors="replace")
    assert "unhandled error" not in log and "Traceback" not in log, log[-3000:]
