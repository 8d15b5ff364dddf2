"""The real `inference-service serve` process over HTTP."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import tritonclient.http as v2client

from inference_service.model import Model
from inference_service.smoke import ORIGINAL_PAYLOAD
from tests.conftest import original_labels, serving

Server = tuple[str, "subprocess.Popen[bytes]"]


def post(url: str, payload: object) -> tuple[int, dict[str, object]]:
    request = urllib.request.Request(
        url, data=json.dumps(payload).encode(), headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_original_payload_over_http(server: Server) -> None:
    url, _ = server
    status, body = post(f"{url}/inference", ORIGINAL_PAYLOAD)
    assert status == 200
    assert body["predictions"] == original_labels()


def test_standard_v2_client_library(server: Server, trained: Path) -> None:
    url, _ = server
    client = v2client.InferenceServerClient(url.removeprefix("http://"))
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready("iris")
    metadata = client.get_model_metadata("iris")
    assert metadata["versions"] == [(trained / "current").read_text().strip()]
    examples = Model.load(trained).signature.examples
    rows = np.array([e["inputs"] for e in examples], dtype=np.float32)
    tensor = v2client.InferInput("input", list(rows.shape), "FP32")
    tensor.set_data_from_numpy(rows, binary_data=False)
    outputs = [
        v2client.InferRequestedOutput("label", binary_data=False),
        v2client.InferRequestedOutput("probabilities", binary_data=False),
    ]
    result = client.infer("iris", [tensor], outputs=outputs, request_id="client-1")
    assert [v.decode() if isinstance(v, bytes) else v for v in result.as_numpy("label")] == [
        e["label"] for e in examples
    ]
    probabilities = result.as_numpy("probabilities")
    assert probabilities.shape == (len(examples), 3)
    assert np.allclose(probabilities.sum(axis=1), 1.0)
    assert result.get_response()["id"] == "client-1"


def test_sigterm_lets_an_in_flight_request_finish(server: Server) -> None:
    url, proc = server
    body = json.dumps(ORIGINAL_PAYLOAD).encode()
    port = int(url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        # Half a request is in flight when the signal arrives; the rest comes after it.
        head = (
            f"POST /inference HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode()
        sock.sendall(head + body[:10])
        time.sleep(0.3)
        proc.send_signal(signal.SIGTERM)
        time.sleep(1.0)
        sock.sendall(body[10:])
        answer = b""
        while b"\r\n\r\n" not in answer or not answer.rstrip().endswith(b"}"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 200")
    assert b'"predictions":["virginica","versicolor"]' in answer
    assert proc.wait(timeout=25) == 0


def modules_after(code: str) -> set[str]:
    """The modules a fresh interpreter has loaded after running `code`."""
    listing = "\nimport sys, json\nprint(json.dumps(sorted(sys.modules)))\n"
    out = subprocess.run([sys.executable, "-c", code + listing], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    return set(json.loads(out.stdout.strip().splitlines()[-1]))


def test_serving_path_never_imports_training_libraries(trained: Path) -> None:
    code = (
        "from inference_service.app import create_app\n"
        "from inference_service.config import Settings\n"
        "from pathlib import Path\n"
        f"app = create_app(Settings(model_dir=Path({str(trained)!r})))\n"
        "c = app.test_client()\n"
        "assert c.post('/inference', json=[{'0':1,'1':2,'2':3,'3':4}]).status_code == 200\n"
        "assert c.post('/v2/models/iris/infer', json={'inputs': [{'name': 'input', "
        "'shape': [1, 4], 'datatype': 'FP32', 'data': [1, 2, 3, 4]}]}).status_code == 200\n"
    )
    modules = {m.split(".")[0] for m in modules_after(code)}
    assert "onnxruntime" in modules and "flask" in modules
    assert not modules & {"sklearn", "scipy", "pandas", "skl2onnx", "matplotlib"}


def test_the_supervising_process_imports_only_what_it_runs() -> None:
    """`serve`'s main process starts granian and logs; what workers need stays in the workers."""
    modules = modules_after("from inference_service import cli, logs, server\nimport granian\n")
    modules |= {m.split(".")[0] for m in modules}
    heavy = {"numpy", "onnxruntime", "flask", "msgspec", "prometheus_client", "importlib.metadata"}
    assert not modules & heavy


def test_metrics_add_up_across_worker_processes(trained: Path, tmp_path: Path) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    from tests.conftest import serving

    with serving(trained, tmp_path / "server.log", INFERENCE_WORKERS="2") as (url, proc):
        deadline = time.monotonic() + 30
        while len(worker_pids(url)) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)  # both workers have loaded the model once both report it
        assert len(worker_pids(url)) == 2
        for _ in range(40):
            assert post(f"{url}/inference", ORIGINAL_PAYLOAD)[0] == 200
        with urllib.request.urlopen(f"{url}/metrics", timeout=10) as response:
            text = response.read().decode()
        proc.terminate()
        assert proc.wait(timeout=30) == 0
    total = {
        s.labels.get("status"): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == "inference_requests_total" and s.labels.get("endpoint") == "/inference"
    }
    assert total == {"200": 40.0}


def worker_pids(url: str) -> set[str]:
    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(f"{url}/metrics", timeout=10) as response:
        text = response.read().decode()
    return {
        s.labels["pid"]
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == "inference_model_info" and "pid" in s.labels
    }


@pytest.fixture
def every_model(repository: Path, tmp_path: Path) -> Iterator[Server]:
    with serving(repository, tmp_path / "server.log") as running:
        yield running


def test_whole_repository_is_served_over_every_protocol(
    every_model: Server, repository: Path
) -> None:
    url, _ = every_model
    client = v2client.InferenceServerClient(url.removeprefix("http://"))
    index = client.get_model_repository_index()
    assert sorted((m["name"], m["state"]) for m in index) == [
        ("diabetes", "READY"),
        ("iris", "READY"),
        ("wine", "READY"),
    ]
    cases = [
        (name, datatype, binary)
        for name in ("iris", "wine", "diabetes")
        for datatype in ("FP32", "FP64")
        for binary in (True, False)
    ]
    for name, datatype, binary in cases:
        signature = Model.load(repository / name).signature
        rows = np.array(
            [e["inputs"] for e in signature.examples],
            dtype=np.float32 if datatype == "FP32" else np.float64,
        )
        tensor = v2client.InferInput("input", list(rows.shape), datatype)
        tensor.set_data_from_numpy(rows, binary_data=binary)
        output = "label" if signature.is_classifier else "prediction"
        # The client's defaults when binary: binary input, every output binary (no outputs named).
        wanted = None if binary else [v2client.InferRequestedOutput(output, binary_data=False)]
        result = client.infer(name, [tensor], outputs=wanted)
        got = result.as_numpy(output).tolist()
        if signature.is_classifier:
            assert [g.decode() if isinstance(g, bytes) else g for g in got] == [
                e["label"] for e in signature.examples
            ]
        else:
            expected = [e["prediction"] for e in signature.examples]
            assert got == pytest.approx(expected, rel=1e-5)
    status, body = post(f"{url}/inference", ORIGINAL_PAYLOAD)
    assert status == 200 and body["predictions"] == original_labels()
    status, body = post(f"{url}/models/wine/inference", [{"0": 1, "1": 2, "2": 3, "3": 4}])
    assert status == 400 and "every record needs 13 keys" in body["error"]
    smoke = subprocess.run(
        [sys.executable, "-m", "inference_service.cli", "smoke", url, "--timeout", "10"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert smoke.returncode == 0, smoke.stderr
    assert all(name in smoke.stdout for name in ("iris", "wine", "diabetes"))


def test_a_second_server_on_a_busy_port_refuses_at_once(server: Server, trained: Path) -> None:
    url, _ = server
    port = url.rsplit(":", 1)[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith("INFERENCE_")}
    env |= {"INFERENCE_MODEL_DIR": str(trained)}
    # A bad INFERENCE_PORT does not matter when --port is given.
    env["INFERENCE_PORT"] = "abc"
    second = subprocess.run(
        [sys.executable, "-m", "inference_service.cli", "serve", "--port", port],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert second.returncode != 0
    assert f"cannot serve on 127.0.0.1:{port}" in second.stderr
    assert "INFERENCE_SHARE_PORT" in second.stderr


def test_start_up_says_whether_auth_is_on_and_logs_only_json(trained: Path, tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    keys.write_text("one\ntwo\n")
    log = tmp_path / "server.log"
    with serving(trained, log, INFERENCE_API_KEYS=str(keys)):
        pass
    lines = log.read_text().splitlines()
    records = [json.loads(line) for line in lines]  # every line, granian's included, is JSON
    assert any(r["message"] == "auth on: 2 API key(s)" for r in records)
    assert not any("one" in line.split('"message"')[1] for line in lines if "auth" in line)
    assert not any("512 Python threads" in r["message"] for r in records)
