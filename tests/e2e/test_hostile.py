"""Hand-picked hostile inputs against the real server, over raw sockets.

Every case checks the answer (status; a 4xx from the app is JSON with a string `error`) and that
the server is still ready afterwards. Findings are in docs/reliability.md; in short:

- Duplicate keys in a JSON object: the last one wins (msgspec and the standard library agree).
- A body that ends before its Content-Length: 400 when the client half-closes; a client that
  keeps the connection open waits for the rest of the body. granian has no body-read timeout:
  the stalled request holds one of the worker's blocking threads until the client goes away,
  while the worker keeps serving everyone else. nginx in front (client_body_timeout 10 s, and it
  buffers the whole body before forwarding) keeps stalled bodies from reaching the service.
- Headers that never finish: granian closes the connection after 30 s (HTTP/1 header read
  timeout); the same timer closes idle keep-alive connections.
- Malformed HTTP (bad Content-Length, garbage request line, too many headers) is refused by
  granian's HTTP parser before the app runs: 400 or 431 with an empty body, connection closed.
"""

from __future__ import annotations

import contextlib
import http.client
import io
import json
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import pytest

from inference_service.smoke import ORIGINAL_PAYLOAD
from tests.conftest import serving

MIB = 1024 * 1024
RECORD = {"0": 1, "1": 3, "2": 3, "3": 1}
ROW = [1.0, 3.0, 3.0, 1.0]


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@pytest.fixture(scope="module")
def live(trained: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, Path]]:
    """The real `inference-service serve`; its output goes to a file that is never full."""
    log = tmp_path_factory.mktemp("hostile") / "server.log"
    with serving(trained, log) as (url, _):
        yield int(url.rsplit(":", 1)[1]), log


def connect(port: int, timeout: float = 10) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    sock.settimeout(timeout)
    return sock


class KeptOpen(io.BytesIO):
    """Bytes that http.client can read several answers from (it closes its file after each)."""

    def close(self) -> None:
        pass


def read_answer(sock: socket.socket, stream: BinaryIO | None = None) -> Answer:
    """The next answer on `sock`; pass the same `stream` to read several in a row."""
    response = http.client.HTTPResponse(sock)
    if stream is not None:
        response.fp = stream
    response.begin()
    body = response.read()
    return Answer(response.status, {k.lower(): v for k, v in response.getheaders()}, body)


def exchange(port: int, data: bytes, timeout: float = 10) -> Answer:
    """Send raw bytes, then read the first HTTP answer.

    A body over the size limit is refused from its Content-Length, before it is read, and the
    connection closed: the rest of the body then meets a closed socket (EPIPE), as it would for
    any client, and the answer is still there to read.
    """
    with connect(port, timeout) as sock:
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(data)
        return read_answer(sock)


def post(
    path: str,
    body: bytes,
    content_type: str | None = "application/json",
    keep_alive: bool = False,
    **headers: str,
) -> bytes:
    lines = [f"POST {path} HTTP/1.1", "Host: 127.0.0.1"]
    if not keep_alive:
        lines.append("Connection: close")
    if content_type:
        lines.append(f"Content-Type: {content_type}")
    lines += [f"{k.replace('_', '-')}: {v}" for k, v in headers.items()]
    if "Content_Length" not in headers and "Transfer_Encoding" not in headers:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def chunked(*parts: bytes) -> bytes:
    return b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in parts) + b"0\r\n\r\n"


def v2(shape: list[Any], data: Any, datatype: str = "FP32", **extra: Any) -> bytes:
    tensor = {"name": "input", "shape": shape, "datatype": datatype, "data": data}
    return json.dumps({"inputs": [tensor], **extra}).encode()


def assert_error_json(answer: Answer) -> None:
    assert answer.headers.get("content-type", "").startswith("application/json"), answer
    body = answer.json()
    assert isinstance(body, dict) and isinstance(body.get("error"), str) and body["error"]


def assert_still_ready(port: int) -> None:
    answer = exchange(port, b"GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 5)
    assert answer.status == 200, answer


INFER = "/inference"
V2_INFER = "/v2/models/iris/infer"
DEEP = 100_000

# (id, path, body, expected status). Bodies are sent with a correct Content-Length.
BODIES: list[tuple[str, str, bytes, int]] = [
    ("nested-arrays-unclosed", INFER, b"[" * DEEP, 400),
    ("nested-arrays-balanced", INFER, b"[" * DEEP + b"]" * DEEP, 400),
    ("nested-objects", INFER, b'{"0":' * DEEP + b"1" + b"}" * DEEP, 400),
    (
        "nested-arrays-in-a-value",
        INFER,
        b'[{"0":' + b"[" * DEEP + b"]" * DEEP + b',"1":2,"2":3,"3":4}]',
        400,
    ),
    ("nested-arrays-v2", V2_INFER, b"[" * DEEP + b"]" * DEEP, 400),
    (
        "nested-v2-data",
        V2_INFER,
        v2([1, 4], "PLACEHOLDER").replace(b'"PLACEHOLDER"', b"[" * DEEP + b"]" * DEEP),
        400,
    ),
    (
        "nested-v2-parameters",
        V2_INFER,
        v2([1, 4], ROW, parameters={"a": "PLACEHOLDER"}).replace(
            b'"PLACEHOLDER"', b"[" * DEEP + b"]" * DEEP
        ),
        400,
    ),
    ("string-900kb", INFER, json.dumps([{**RECORD, "0": "a" * 900_000}]).encode(), 400),
    ("string-900kb-v2-id", V2_INFER, v2([1, 4], ROW, id="a" * 900_000), 200),
    ("number-1e309", INFER, b'[{"0":1e309,"1":3,"2":3,"3":1}]', 400),
    ("number-minus-1e309", INFER, b'[{"0":-1e309,"1":3,"2":3,"3":1}]', 400),
    ("number-over-float32", INFER, b'[{"0":1e39,"1":3,"2":3,"3":1}]', 400),
    ("number-5000-digits", INFER, b'[{"0":' + b"9" * 5000 + b',"1":3,"2":3,"3":1}]', 400),
    ("number-nan-literal", INFER, b'[{"0":NaN,"1":3,"2":3,"3":1}]', 400),
    ("number-1e309-v2", V2_INFER, v2([1, 4], [1, 3, 3, 1]).replace(b"[1, 3,", b"[1e309, 3,"), 400),
    ("shape-1e309-v2", V2_INFER, v2([1, 4], ROW).replace(b"[1, 4]", b"[1e309, 4]"), 400),
    ("utf8-invalid-key", INFER, b'[{"0":1,"1":3,"2":3,"3":1,"\xff\xfe":1}]', 400),
    ("utf8-invalid-only-key", INFER, b'[{"\xff":1}]', 400),
    ("utf8-invalid-value", INFER, b'[{"0":"\xc3\x28","1":3,"2":3,"3":1}]', 400),
    ("utf8-lone-surrogate", INFER, b'[{"0":1,"1":3,"2":3,"3":1,"\\ud800":1}]', 400),
    ("utf8-invalid-v2-name", V2_INFER, v2([1, 4], ROW).replace(b'"input"', b'"\xff"'), 400),
    ("utf8-bom", INFER, b"\xef\xbb\xbf" + json.dumps([RECORD]).encode(), 400),
    ("nul-after-json", INFER, json.dumps([RECORD]).encode() + b"\x00", 400),
    ("empty-body", INFER, b"", 400),
    ("rows-100000", INFER, json.dumps([RECORD] * 100_000).encode(), 413),
    ("rows-10001", INFER, json.dumps([RECORD] * 10_001).encode(), 413),
    ("rows-100000-v2-nested", V2_INFER, v2([100_000, 4], [ROW] * 100_000), 413),
    # 400,000 values fit in 1 MiB flat, so this one is refused for its rows, not its size.
    ("rows-100000-v2-flat", V2_INFER, v2([100_000, 4], [0] * 400_000).replace(b" ", b""), 413),
    ("v2-shape-more-than-data", V2_INFER, v2([3, 4], ROW), 400),
    ("v2-shape-less-than-data", V2_INFER, v2([1, 4], ROW * 2), 400),
    ("v2-shape-odd-flat-count", V2_INFER, v2([2, 4], ROW + ROW[:3]), 400),
    ("v2-rows-differ-in-length", V2_INFER, v2([2, 4], [ROW, ROW[:3]]), 400),
    ("v2-row-too-long", V2_INFER, v2([2, 4], [ROW, [*ROW, 1.0]]), 400),
    ("v2-rows-count-differs", V2_INFER, v2([3, 4], [ROW, ROW]), 400),
    ("v2-shape-three-dims", V2_INFER, v2([1, 1, 4], ROW), 400),
    ("v2-shape-zero-rows", V2_INFER, v2([0, 4], []), 400),
    ("v2-shape-negative", V2_INFER, v2([-1, 4], ROW), 400),
    ("v2-shape-huge", V2_INFER, v2([10**30, 4], ROW), 413),
    ("v2-int8-overflow", V2_INFER, v2([1, 4], [1, 3, 3, 400], "INT8"), 400),
]


@pytest.mark.parametrize(
    ("path", "body", "status"),
    [pytest.param(path, body, status, id=name) for name, path, body, status in BODIES],
)
def test_hostile_body_gets_a_client_error_and_the_server_stays_ready(
    live: tuple[int, Path], path: str, body: bytes, status: int
) -> None:
    port, _ = live
    answer = exchange(port, post(path, body))
    assert answer.status == status, answer.body[:300]
    if status >= 400:
        assert_error_json(answer)
    assert_still_ready(port)


def predictions(port: int, body: bytes) -> list[str]:
    answer = exchange(port, post(INFER, body))
    assert answer.status == 200, answer
    labels: list[str] = answer.json()["predictions"]
    return labels


def test_duplicate_keys_take_the_last_value(live: tuple[int, Path]) -> None:
    port, _ = live
    first, last = ORIGINAL_PAYLOAD
    # Record 0's keys, then record 1's: first-wins would classify record 0, last-wins record 1.
    duplicated = (
        "[{" + ",".join(f'"{k}":{v}' for r in (first, last) for k, v in r.items()) + "}]"
    ).encode()
    assert predictions(port, json.dumps([first]).encode()) != predictions(
        port, json.dumps([last]).encode()
    )
    assert predictions(port, duplicated) == predictions(port, json.dumps([last]).encode())
    v2_body = (
        b'{"inputs":[],"inputs":'
        + json.dumps([{"name": "input", "shape": [1, 4], "datatype": "FP32", "data": ROW}]).encode()
        + b"}"
    )
    answer = exchange(port, post(V2_INFER, v2_body))
    assert answer.status == 200, answer
    assert_still_ready(port)


def test_ten_megabyte_body_is_refused_before_it_is_read(live: tuple[int, Path]) -> None:
    port, _ = live
    body = json.dumps([{**RECORD, "0": "a" * 10_000_000}]).encode()
    with connect(port) as sock:
        # The answer comes after the headers: the rest of the 10 MB is never read.
        sock.sendall(post(INFER, body)[: 64 * 1024])
        answer = read_answer(sock)
    assert answer.status == 413
    assert_error_json(answer)
    assert_still_ready(port)


@pytest.mark.parametrize(
    "tail",
    [b"0\r\n\r\n", b"zz\r\nabc\r\n0\r\n\r\n", b"", b"10\r\nabc"],
    ids=[
        "well-formed",
        "malformed-chunk-size",
        "eof-before-last-chunk",
        "chunk-shorter-than-declared",
    ],
)
def test_chunked_bodies_are_refused_with_411(live: tuple[int, Path], tail: bytes) -> None:
    """The first chunk alone is a complete, valid request: whatever follows, the server cannot
    tell a proper end from a broken one, so it serves none of them."""
    port, _ = live
    valid = json.dumps([RECORD]).encode()
    head = post(INFER, b"", Transfer_Encoding="chunked")
    with connect(port) as sock:
        sock.sendall(head + b"%x\r\n" % len(valid) + valid + b"\r\n" + tail)
        answer = read_answer(sock)
    assert answer.status == 411, answer.body
    assert_error_json(answer)
    assert_still_ready(port)


def test_content_length_shorter_than_the_body(live: tuple[int, Path]) -> None:
    """The body is cut at Content-Length; the leftover bytes are a malformed next request."""
    port, _ = live
    body = json.dumps([RECORD]).encode()
    with connect(port) as sock:
        head = post(INFER, body, keep_alive=True, Content_Length=str(len(body) - 5))
        sock.sendall(head + body[-5:])
        stream = KeptOpen(sock.makefile("rb").read())  # up to the close after the 2nd answer
        first, second = read_answer(sock, stream), read_answer(sock, stream)
    assert first.status == 400
    assert_error_json(first)
    assert second.status == 400 and second.body == b""  # granian's parser, not the app
    assert_still_ready(port)


def test_content_length_longer_than_the_body_then_eof(live: tuple[int, Path]) -> None:
    """A complete JSON body followed by EOF before Content-Length is reached is refused."""
    port, _ = live
    body = json.dumps([RECORD]).encode()
    with connect(port) as sock:
        sock.sendall(post(INFER, body, Content_Length=str(len(body) + 50)))
        sock.shutdown(socket.SHUT_WR)
        answer = read_answer(sock)
    assert answer.status == 400
    assert "Content-Length" in answer.json()["error"]
    assert_still_ready(port)


@pytest.mark.parametrize(
    "request_bytes",
    [
        pytest.param(post(INFER, b"[]", Content_Length="abc"), id="content-length-not-a-number"),
        pytest.param(post(INFER, b"[]", Content_Length="-5"), id="content-length-negative"),
        pytest.param(
            post(INFER, b"[]", Content_Length="2\r\nContent-Length: 9"), id="content-length-twice"
        ),
        pytest.param(post(INFER, b"[]", Content_Length="9" * 30), id="content-length-huge"),
        pytest.param(b"\x00\x01\x02 nonsense\r\n\r\n", id="garbage-request-line"),
        pytest.param(b"GET /readyz\r\n\r\n", id="http-0.9"),
        pytest.param(b"GET /v2/models/\xff/ready HTTP/1.1\r\nHost: x\r\n\r\n", id="raw-byte-path"),
        pytest.param(
            b"GET /readyz HTTP/1.1\r\nHost: x\r\n"
            + b"".join(b"X-%d: 1\r\n" % i for i in range(2000))
            + b"\r\n",
            id="2000-headers",
        ),
    ],
)
def test_malformed_http_is_refused_by_the_server(
    live: tuple[int, Path], request_bytes: bytes
) -> None:
    port, _ = live
    answer = exchange(port, request_bytes)
    assert answer.status in (400, 431), answer
    assert answer.headers.get("connection") == "close"
    assert_still_ready(port)


def open_stalled(port: int, count: int, make: Callable[[], bytes]) -> list[socket.socket]:
    socks = []
    for _ in range(count):
        sock = connect(port)
        sock.sendall(make())
        socks.append(sock)
    return socks


def timed_requests(port: int, n: int) -> list[float]:
    times = []
    for _ in range(n):
        start = time.monotonic()
        answer = exchange(port, post(INFER, json.dumps(ORIGINAL_PAYLOAD).encode()), timeout=5)
        times.append(time.monotonic() - start)
        assert answer.status == 200, answer
    return times


STALLED = 64


def test_stalled_bodies_do_not_stop_other_requests(live: tuple[int, Path]) -> None:
    """64 clients that promise 100 bytes and send 2 (slowloris on the body): everyone else is
    still served at once, and a stalled client gets no answer (it is waiting for the body)."""
    port, _ = live
    stalled = open_stalled(port, STALLED, lambda: post(INFER, b"[{", Content_Length="100"))
    try:
        times = timed_requests(port, 50)
        assert max(times) < 1.0, times
        assert_still_ready(port)
        stalled[0].settimeout(2)
        with pytest.raises(socket.timeout):
            stalled[0].recv(1)
    finally:
        for sock in stalled:
            sock.close()
    assert_still_ready(port)


@pytest.mark.slow
def test_headers_that_never_finish_are_cut_off_after_30_seconds(live: tuple[int, Path]) -> None:
    """granian's HTTP/1 header read timeout (30 s); meanwhile everyone else is served."""
    port, _ = live
    stalled = open_stalled(port, STALLED, lambda: b"GET /readyz HTTP/1.1\r\nHost: x\r\n")
    try:
        start = time.monotonic()
        times = timed_requests(port, 20)
        assert max(times) < 1.0, times
        first = stalled[0]
        first.settimeout(40)
        assert first.recv(1) == b""  # closed without an answer
        waited = time.monotonic() - start
        assert 25 < waited < 36, waited
    finally:
        for sock in stalled:
            sock.close()
    assert_still_ready(port)


def test_no_hostile_input_caused_an_unhandled_error(live: tuple[int, Path]) -> None:
    """Runs last (file order): the server log holds no traceback from any case above."""
    port, log = live
    assert_still_ready(port)
    text = log.read_text(errors="replace")
    assert "unhandled error" not in text and "Traceback" not in text, text[-3000:]
