"""Hot model reload: a new `current` goes live without a restart; a bad one is refused."""

import json
import shutil
import threading
import time
from pathlib import Path

import pytest

from inference_service import artifact
from inference_service.app import create_app
from inference_service.config import Settings
from inference_service.smoke import ORIGINAL_PAYLOAD
from inference_service.train import Options, train
from tests.conftest import spec_for, train_model


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
    new = train_model("iris", model_dir.parent, seed=7, promotion={"accuracy": 1.0}).name
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not all(v and v[-1] == new for v in per_thread):
        time.sleep(0.05)
    time.sleep(0.2)
    stop.set()
    for t in threads:
        t.join()
    app.extensions["repository"].stop()
    assert new != old
    assert statuses and set(statuses) == {200}
    for answers in per_thread:  # each client sees old, then new, and never goes back
        changes = [(a, b) for a, b in zip(answers, answers[1:], strict=False) if a != b]
        assert answers[0] == old and answers[-1] == new
        assert changes == [(old, new)]
    metrics = app.test_client().get("/metrics").get_data(as_text=True)
    assert 'inference_model_reloads_total{model="iris",result="success"} 1.0' in metrics


def test_tampered_new_version_is_refused_and_old_keeps_serving(model_dir: Path) -> None:
    app = create_app(Settings(model_dir=model_dir, reload_interval=0))
    reloader = app.extensions["repository"]
    old = artifact.current_version(model_dir)
    new_dir = train(spec_for("iris", seed=7), Options(root=model_dir.parent / "staging"))
    bad = model_dir / new_dir.name
    new_dir.rename(bad)
    onnx = bad / "model.onnx"
    onnx.write_bytes(onnx.read_bytes() + b"\x00")
    artifact.point_to(model_dir, bad.name)
    assert reloader.check() == []
    client = app.test_client()
    response = client.post("/inference", json=ORIGINAL_PAYLOAD)
    assert response.status_code == 200 and response.json["model"]["version"] == old
    assert client.get("/readyz").json["model"]["version"] == old
    metrics = client.get("/metrics").get_data(as_text=True)
    assert 'inference_model_reloads_total{model="iris",result="refused"} 1.0' in metrics
    # Refused once, not retried in a loop; a fixed artifact (pointer rewritten) is taken.
    assert reloader.check() == []
    onnx.write_bytes(onnx.read_bytes()[:-1])
    artifact.point_to(model_dir, bad.name)
    assert reloader.check() == ["iris"]
    assert client.post("/inference", json=ORIGINAL_PAYLOAD).json["model"]["version"] == bad.name


def test_card_without_passed_gates_is_refused(model_dir: Path) -> None:
    version = artifact.current_version(model_dir)
    card_file = model_dir / version / "model.json"
    card = json.loads(card_file.read_text())
    card["gates"]["passed"] = False
    card_file.write_text(json.dumps(card))
    client = create_app(Settings(model_dir=model_dir, reload_interval=0)).test_client()
    assert client.get("/readyz").status_code == 503
    assert "does not record passed gates" in client.get("/readyz").json["models"]["iris"]["error"]


def test_signature_that_does_not_match_the_graph_is_refused(model_dir: Path) -> None:
    version = artifact.current_version(model_dir)
    card_file = model_dir / version / "model.json"
    card = json.loads(card_file.read_text())
    signature = card["signature"]
    signature["features"].pop()
    for example in signature["examples"]:
        example["inputs"].pop()
    card_file.write_text(json.dumps(card))
    client = create_app(Settings(model_dir=model_dir, reload_interval=0)).test_client()
    error = client.get("/readyz").json["models"]["iris"]["error"]
    assert "the signature has 3 features" in error


@pytest.mark.parametrize("pointer", ["", "../..", "/etc"])
def test_invalid_pointer_is_refused_logged_and_counted(
    model_dir: Path, pointer: str, caplog: pytest.LogCaptureFixture
) -> None:
    app = create_app(Settings(model_dir=model_dir, reload_interval=0))
    old = artifact.current_version(model_dir)
    (model_dir / "current").write_text(pointer)
    assert app.extensions["repository"].check() == []
    client = app.test_client()
    assert client.post("/inference", json=ORIGINAL_PAYLOAD).json["model"]["version"] == old
    metrics = client.get("/metrics").get_data(as_text=True)
    assert 'inference_model_reloads_total{model="iris",result="refused"} 1.0' in metrics
    assert "refused model iris" in caplog.text


def test_version_symlinked_outside_the_model_directory_is_refused(
    model_dir: Path, tmp_path: Path
) -> None:
    app = create_app(Settings(model_dir=model_dir, reload_interval=0))
    old = artifact.current_version(model_dir)
    outside = tmp_path / "elsewhere"
    shutil.copytree(model_dir / old, outside)
    card = json.loads((outside / "model.json").read_text())
    (outside / "model.json").write_text(json.dumps({**card, "version": "linked"}))
    (model_dir / "linked").symlink_to(outside)  # complete and checksum-valid, but elsewhere
    artifact.point_to(model_dir, "linked")
    assert app.extensions["repository"].check() == []
    assert app.extensions["repository"].slots["iris"].model.version == old
    metrics = app.test_client().get("/metrics").get_data(as_text=True)
    assert 'inference_model_reloads_total{model="iris",result="refused"} 1.0' in metrics
