"""Hot model reload: a new `current` goes live without a restart; a bad one is refused."""

import json
import threading
import time
from pathlib import Path

from inference_service import artifact
from inference_service.app import create_app
from inference_service.config import Settings
from inference_service.smoke import ORIGINAL_PAYLOAD
from inference_service.train import TrainConfig, train
from tests.conftest import ROOT

DATA = ROOT / "data/input/train/iris.csv"


def test_new_version_goes_live_under_load_with_zero_failures(model_dir: Path) -> None:
    app = create_app(Settings(model_dir=model_dir, reload_interval=0.05))
    old = artifact.current_version(model_dir)
    statuses: list[int] = []
    per_thread: list[list[str]] = [[] for _ in range(4)]
    stop = threading.Event()

    def load(versions: list[str]) -> None:
        client = app.test_client()
        deadline = time.monotonic() + 90
        while not stop.is_set() and time.monotonic() < deadline:
            response = client.post("/inference", json=ORIGINAL_PAYLOAD)
            statuses.append(response.status_code)
            if response.status_code == 200:
                versions.append(response.json["model"]["version"])
            time.sleep(0.001)  # leave the GIL to the training run now and then

    threads = [threading.Thread(target=load, args=(v,)) for v in per_thread]
    for t in threads:
        t.start()
    time.sleep(0.3)
    new = train(TrainConfig(data_file=DATA, model_dir=model_dir, seed=7)).name
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not all(v and v[-1] == new for v in per_thread):
        time.sleep(0.05)
    time.sleep(0.2)
    stop.set()
    for t in threads:
        t.join()
    app.extensions["reloader"].stop()
    assert new != old
    assert statuses and set(statuses) == {200}
    for answers in per_thread:  # each client sees old, then new, and never goes back
        changes = [(a, b) for a, b in zip(answers, answers[1:], strict=False) if a != b]
        assert answers[0] == old and answers[-1] == new
        assert changes == [(old, new)]
    metrics = app.test_client().get("/metrics").get_data(as_text=True)
    assert 'inference_model_reloads_total{result="success"} 1.0' in metrics


def test_tampered_new_version_is_refused_and_old_keeps_serving(model_dir: Path) -> None:
    app = create_app(Settings(model_dir=model_dir, reload_interval=0))
    reloader = app.extensions["reloader"]
    old = artifact.current_version(model_dir)
    new_dir = train(TrainConfig(data_file=DATA, model_dir=model_dir / "staging", seed=7))
    bad = model_dir / new_dir.name
    new_dir.rename(bad)
    onnx = bad / "model.onnx"
    onnx.write_bytes(onnx.read_bytes() + b"\x00")
    artifact.point_to(model_dir, bad.name)
    assert reloader.check() is False
    client = app.test_client()
    response = client.post("/inference", json=ORIGINAL_PAYLOAD)
    assert response.status_code == 200 and response.json["model"]["version"] == old
    assert client.get("/readyz").json["model"]["version"] == old
    metrics = client.get("/metrics").get_data(as_text=True)
    assert 'inference_model_reloads_total{result="refused"} 1.0' in metrics
    # Refused once, not retried in a loop; a fixed artifact (pointer rewritten) is taken.
    assert reloader.check() is False
    onnx.write_bytes(onnx.read_bytes()[:-1])
    artifact.point_to(model_dir, bad.name)
    assert reloader.check() is True
    assert client.post("/inference", json=ORIGINAL_PAYLOAD).json["model"]["version"] == bad.name


def test_card_without_a_passed_parity_gate_is_refused(model_dir: Path) -> None:
    version = artifact.current_version(model_dir)
    card_file = model_dir / version / "model.json"
    card = json.loads(card_file.read_text())
    card["parity"] = {"rows_checked": 10, "mismatches": 0}
    card_file.write_text(json.dumps(card))
    client = create_app(Settings(model_dir=model_dir, reload_interval=0)).test_client()
    assert client.get("/readyz").status_code == 503
    assert "parity" in client.get("/readyz").json["error"]
