"""Zero-downtime deploys, automatic rollback and the rollback command, with Docker and nginx."""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from dataclasses import dataclass, field

import pytest

from inference_service.smoke import ORIGINAL_PAYLOAD
from tests.conftest import original_labels
from tests.e2e.conftest import Host, docker, get_json, record

pytestmark = [pytest.mark.docker, pytest.mark.slow]

CLIENTS = 8


@dataclass
class Load:
    """Closed-loop clients posting the original payload to the proxy until stopped."""

    url: str
    ok: int = 0
    failures: list[str] = field(default_factory=list)
    versions: list[tuple[float, str]] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def client(self) -> None:
        body = json.dumps(ORIGINAL_PAYLOAD).encode()
        while not self.stop.is_set():
            request = urllib.request.Request(
                f"{self.url}/inference", data=body, headers={"Content-Type": "application/json"}
            )
            try:
                with urllib.request.urlopen(request, timeout=10) as response:
                    answer = json.loads(response.read())
                    good = answer["predictions"] == original_labels()
                    outcome = "" if good else f"wrong labels {answer['predictions']}"
            except urllib.error.HTTPError as exc:
                outcome = f"HTTP {exc.code}"
            except (OSError, ValueError) as exc:
                outcome = f"{type(exc).__name__}: {exc}"
            with self.lock:
                if outcome:
                    self.failures.append(outcome)
                else:
                    self.ok += 1
                    self.versions.append((time.monotonic(), answer["model"]["version"]))

    def __enter__(self) -> Load:
        self.threads = [threading.Thread(target=self.client, daemon=True) for _ in range(CLIENTS)]
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=15)


def _deployed(host: Host, image: str) -> None:
    done = host.deploy("up", image)
    assert done.returncode == 0, done.stderr


def test_deploy_serves_the_original_payload_through_the_proxy(
    host: Host, derived_images: dict[str, str]
) -> None:
    assert host.deploy("install").returncode == 0
    status, body = get_json(f"{host.url}/inference", ORIGINAL_PAYLOAD)
    assert status == 503 and "No release" in body["error"]
    _deployed(host, derived_images["v1"])
    status, body = get_json(f"{host.url}/inference", ORIGINAL_PAYLOAD)
    assert status == 200 and body["predictions"] == original_labels()
    container = host.state()["current"]["container"]
    inspected = json.loads(docker("inspect", container).stdout)[0]
    assert inspected["HostConfig"]["ReadonlyRootfs"] is True
    assert inspected["HostConfig"]["RestartPolicy"]["Name"] == "unless-stopped"
    published = inspected["HostConfig"]["PortBindings"]["6666/tcp"][0]
    assert published["HostIp"] == "127.0.0.1"
    status_out = json.loads(host.deploy("status").stdout)
    assert status_out["consistent"] is True and status_out["current"]["running"] is True


def test_deploy_under_load_drops_no_request_and_switches_to_the_new_release(
    host: Host, derived_images: dict[str, str]
) -> None:
    assert host.deploy("install").returncode == 0
    _deployed(host, derived_images["v1"])
    old_container = host.state()["current"]["container"]
    with Load(host.url) as load:
        begin = time.monotonic()
        time.sleep(3)
        done = host.deploy("up", derived_images["v2"])
        deployed_at = time.monotonic()
        record("deploy_seconds_under_load", round(deployed_at - begin - 3, 2))
        time.sleep(max(3.0, 20 - (deployed_at - begin)))
    record("zero_downtime_requests", {"ok": load.ok, "failed": len(load.failures)})
    assert done.returncode == 0, done.stderr
    assert load.failures == [], Counter(load.failures).most_common(5)
    assert load.ok > 500, f"only {load.ok} requests in the load window"
    after = [v for t, v in load.versions if t > deployed_at]
    assert after and set(after) == {derived_images["v2_version"]}
    before = {v for t, v in load.versions if t < begin + 3}
    assert before == {derived_images["v1_version"]}
    assert docker("inspect", old_container, check=False).returncode != 0, "old one not removed"


def test_broken_release_is_refused_and_the_live_one_keeps_answering(
    host: Host, derived_images: dict[str, str]
) -> None:
    assert host.deploy("install").returncode == 0
    _deployed(host, derived_images["v2"])
    live = host.state()["current"]
    with Load(host.url) as load:
        started = time.monotonic()
        done = host.deploy("up", derived_images["broken"], "--ready-timeout", "15")
        refused_after = time.monotonic() - started
        time.sleep(2)
    record("broken_deploy_refused_seconds", round(refused_after, 2))
    record("broken_deploy_requests", {"ok": load.ok, "failed": len(load.failures)})
    assert done.returncode != 0
    assert "not deployed" in done.stderr and "fails its checksum" in done.stderr, done.stderr
    assert refused_after < 15 + 10
    assert load.failures == [], Counter(load.failures).most_common(5)
    assert {v for _, v in load.versions} == {derived_images["v2_version"]}
    assert host.state()["current"] == live
    leftovers = docker("ps", "-aq", "--filter", f"label=io.inference-service.deploy={host.prefix}")
    assert len(leftovers.stdout.split()) == 1, "the broken container was not removed"


def test_rollback_brings_back_the_previous_release(
    host: Host, derived_images: dict[str, str]
) -> None:
    assert host.deploy("rollback").returncode != 0, "rollback without history must fail"
    assert host.deploy("install").returncode == 0
    _deployed(host, derived_images["v1"])
    _deployed(host, derived_images["v2"])
    assert (
        get_json(f"{host.url}/inference", ORIGINAL_PAYLOAD)[1]["model"]["version"]
        == (derived_images["v2_version"])
    )
    started = time.monotonic()
    done = host.deploy("rollback")
    record("rollback_seconds", round(time.monotonic() - started, 2))
    assert done.returncode == 0, done.stderr
    status, body = get_json(f"{host.url}/inference", ORIGINAL_PAYLOAD)
    assert status == 200 and body["model"]["version"] == derived_images["v1_version"]
    state = host.state()
    assert state["current"]["model_version"] == derived_images["v1_version"]
    assert state["previous"]["model_version"] == derived_images["v2_version"]
