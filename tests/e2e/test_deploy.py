"""Zero-downtime deploys, automatic rollback, the rollback command and canaries, with Docker
and nginx. Every load here is keep-alive: a dropped connection counts as a failure."""

from __future__ import annotations

import http.client
import json
import os
import shutil
import signal
import subprocess
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from inference_service.deploy import engine as tool
from inference_service.deploy.settings import DeploySettings
from inference_service.smoke import ORIGINAL_PAYLOAD
from tests.conftest import original_labels
from tests.e2e.conftest import ROOT, Host, docker, get_json, record

pytestmark = [pytest.mark.docker, pytest.mark.slow]

CLIENTS = 8
LOAD_LIMIT_SECONDS = 240  # every load stops by then, whatever happens
INJECTED = "injected fault"


@dataclass
class Load:
    """Closed-loop clients, each on one keep-alive connection, posting the original payload.

    A refused, reset or closed connection is a failure (then the client reconnects), as is any
    answer that is not 200 with the right labels.
    """

    port: int
    ok: int = 0
    failures: list[str] = field(default_factory=list)
    connections: int = 0
    closed_by_server: int = 0
    """Connections nginx ended with `Connection: close` (after keepalive_requests answers)."""
    versions: list[tuple[float, str]] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def client(self) -> None:
        body = json.dumps(ORIGINAL_PAYLOAD).encode()
        headers = {"Content-Type": "application/json"}
        deadline = time.monotonic() + LOAD_LIMIT_SECONDS
        connection: http.client.HTTPConnection | None = None
        while not self.stop.is_set() and time.monotonic() < deadline:
            if connection is None:
                connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
                with self.lock:
                    self.connections += 1
            version = ""
            try:
                connection.request("POST", "/inference", body, headers)
                response = connection.getresponse()
                raw = response.read()
                if response.status != 200:
                    outcome = f"HTTP {response.status}: {raw[:80]!r}"
                else:
                    answer = json.loads(raw)
                    version = answer["model"]["version"]
                    good = answer["predictions"] == original_labels()
                    outcome = "" if good else f"wrong labels {answer['predictions']}"
                if response.will_close:
                    connection.close()
                    connection = None
                    with self.lock:
                        self.closed_by_server += 1
            except (OSError, http.client.HTTPException, ValueError) as exc:
                outcome = f"{type(exc).__name__}: {exc}"
                connection.close()
                connection = None
            with self.lock:
                if outcome:
                    self.failures.append(outcome)
                else:
                    self.ok += 1
                    self.versions.append((time.monotonic(), version))
        if connection is not None:
            connection.close()

    def __enter__(self) -> Load:
        self.threads = [threading.Thread(target=self.client, daemon=True) for _ in range(CLIENTS)]
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=15)

    @property
    def dropped(self) -> int:
        """Connections that ended without the server saying so first (none may)."""
        return self.connections - CLIENTS - self.closed_by_server

    def served_between(self, start: float, end: float) -> Counter[str]:
        with self.lock:
            return Counter(v for t, v in self.versions if start < t < end)


def _deployed(host: Host, image: str) -> None:
    done = host.deploy("up", image)
    assert done.returncode == 0, done.stderr


def _nginx_processes(host: Host) -> set[int]:
    master = int((host.root / "nginx.pid").read_text())
    children = Path(f"/proc/{master}/task/{master}/children").read_text().split()
    return {master, *map(int, children)}


def _ours(host: Host) -> list[str]:
    found = docker("ps", "-aq", "--filter", f"label=io.inference-service.deploy={host.prefix}")
    return found.stdout.split()


@pytest.fixture(scope="module")
def faulty_images(image: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """The built image with a fault that shows only under traffic: `errors` (500s) or `slow`."""
    context = tmp_path_factory.mktemp("faulty")
    for name in ("inference_fault.py", "inference_fault.pth"):
        shutil.copy(ROOT / "tests/e2e/faulty" / name, context / name)
    site = "/app/venv/lib/python3.11/site-packages/"
    built = {}
    for mode in ("errors", "slow"):
        tag = f"{image}-{mode}"
        (context / "Dockerfile").write_text(
            f"FROM {image}\nCOPY inference_fault.py inference_fault.pth {site}\n"
            f"ENV INFERENCE_FAULT={mode}\n"
        )
        done = subprocess.run(
            ["docker", "build", "-q", "-t", tag, str(context)],
            capture_output=True,
            text=True,
            env={**os.environ, "DOCKER_BUILDKIT": "0"},
            timeout=300,
        )
        assert done.returncode == 0, done.stderr
        built[mode] = tag
    yield built
    for tag in built.values():
        docker("rmi", tag, check=False)


def test_deploy_serves_the_original_payload_through_the_proxy(
    host: Host, derived_images: dict[str, str]
) -> None:
    assert host.deploy("install").returncode == 0
    status, body = get_json(f"{host.url}/inference", ORIGINAL_PAYLOAD)
    assert status == 503 and "No release" in body["error"]
    _deployed(host, derived_images["v1"])
    status, body = get_json(f"{host.url}/inference", ORIGINAL_PAYLOAD)
    assert status == 200 and body["predictions"] == original_labels()
    current = host.state()["current"]
    inspected = json.loads(docker("inspect", current["container"]).stdout)[0]
    assert inspected["HostConfig"]["ReadonlyRootfs"] is True
    assert inspected["HostConfig"]["RestartPolicy"]["Name"] == "unless-stopped"
    assert inspected["HostConfig"]["NetworkMode"] == "none", "it needs no network, only its socket"
    assert inspected["Config"]["User"] == "10001:10001"
    assert Path(current["socket"]).is_socket()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        status_out = json.loads(host.deploy("status").stdout)
        if status_out["current"]["health"] == "healthy":
            break
        time.sleep(1)
    assert status_out["current"]["health"] == "healthy", "the socket health check never passed"
    assert status_out["consistent"] is True and status_out["current"]["running"] is True
    assert status_out["proxy"]["routing"] == {
        "stable": current["container"],
        "canary": None,
        "canary_percent": 0,
    }
    assert get_json(f"{host.url}/_proxy/release")[1]["stable"] == current["container"]


def test_repeated_redeploys_under_keep_alive_load_lose_nothing_and_never_reload_nginx(
    host: Host, derived_images: dict[str, str]
) -> None:
    assert host.deploy("install").returncode == 0
    _deployed(host, derived_images["v1"])
    nginx_before = _nginx_processes(host)
    sequence = ["v2", "v1", "v2"]
    seconds = []
    with Load(host.proxy_port) as load:
        time.sleep(2)
        for name in sequence:
            old = host.state()["current"]["container"]
            started = time.monotonic()
            done = host.deploy("up", derived_images[name])
            seconds.append(round(time.monotonic() - started, 2))
            assert done.returncode == 0, done.stderr
            assert docker("inspect", old, check=False).returncode != 0, "old one not removed"
            time.sleep(1)
        last_switch = time.monotonic()
        time.sleep(2)
    record("redeploy_seconds_under_keep_alive_load", seconds)
    record(
        "redeploys_under_keep_alive_load",
        {
            "redeploys": len(sequence),
            "ok": load.ok,
            "failed": len(load.failures),
            "connections": load.connections,
            "closed_by_server_after_keepalive_requests": load.closed_by_server,
        },
    )
    assert load.failures == [], Counter(load.failures).most_common(5)
    assert load.dropped == 0, "a keep-alive connection was dropped"
    assert load.ok > 300, f"only {load.ok} requests in the load window"
    assert set(load.served_between(last_switch, time.monotonic())) == {derived_images["v2_version"]}
    assert _nginx_processes(host) == nginx_before, "nginx was reloaded"
    assert len(_ours(host)) == 1


def test_broken_release_is_refused_and_the_live_one_keeps_answering(
    host: Host, derived_images: dict[str, str]
) -> None:
    assert host.deploy("install").returncode == 0
    _deployed(host, derived_images["v2"])
    live = host.state()["current"]
    with Load(host.proxy_port) as load:
        started = time.monotonic()
        done = host.deploy("up", derived_images["broken"], "--ready-timeout", "15")
        refused_after = time.monotonic() - started
        time.sleep(2)
    record("broken_deploy_refused_seconds", round(refused_after, 2))
    record("broken_deploy_requests", {"ok": load.ok, "failed": len(load.failures)})
    assert done.returncode != 0
    assert "not deployed" in done.stderr and "fails its checksum" in done.stderr, done.stderr
    assert load.failures == [], Counter(load.failures).most_common(5)
    assert load.dropped == 0
    assert {v for _, v in load.versions} == {derived_images["v2_version"]}
    assert host.state()["current"] == live
    assert len(_ours(host)) == 1, "the broken container was not removed"


def test_rollback_brings_back_the_previous_release(
    host: Host, derived_images: dict[str, str]
) -> None:
    assert host.deploy("rollback").returncode != 0, "rollback without history must fail"
    assert host.deploy("install").returncode == 0
    _deployed(host, derived_images["v1"])
    _deployed(host, derived_images["v2"])
    status, body = get_json(f"{host.url}/inference", ORIGINAL_PAYLOAD)
    assert body["model"]["version"] == derived_images["v2_version"]
    started = time.monotonic()
    done = host.deploy("rollback")
    record("rollback_seconds", round(time.monotonic() - started, 2))
    assert done.returncode == 0, done.stderr
    status, body = get_json(f"{host.url}/inference", ORIGINAL_PAYLOAD)
    assert status == 200 and body["model"]["version"] == derived_images["v1_version"]
    state = host.state()
    assert state["current"]["model_version"] == derived_images["v1_version"]
    assert state["previous"]["model_version"] == derived_images["v2_version"]


def _canary(host: Host, image: str, percent: int, seconds: int) -> tuple[Any, list[Any], float]:
    """Run `deploy up --canary`, polling `deploy status` meanwhile; returns the process's
    result, the statuses seen and its duration."""
    started = time.monotonic()
    process = subprocess.Popen(
        [
            str(ROOT / ".venv/bin/inference-service"),
            "deploy",
            "up",
            image,
            "--canary",
            str(percent),
            "--canary-seconds",
            str(seconds),
        ],
        env=host.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    statuses = []
    while process.poll() is None and time.monotonic() - started < 180:
        statuses.append(json.loads(host.deploy("status").stdout))
        time.sleep(1)
    stdout, stderr = process.communicate(timeout=60)
    done = subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)
    return done, statuses, time.monotonic() - started


def test_a_good_canary_takes_its_share_then_is_promoted(
    host: Host, derived_images: dict[str, str]
) -> None:
    assert host.deploy("install").returncode == 0
    _deployed(host, derived_images["v1"])
    stable = host.state()["current"]
    with Load(host.proxy_port) as load:
        time.sleep(1)
        begin = time.monotonic()
        done, statuses, took = _canary(host, derived_images["v2"], 25, 12)
        end = time.monotonic()
        time.sleep(2)
    assert done.returncode == 0, done.stderr
    watching = [s for s in statuses if (s["canary"] or {}).get("outcome") == "watching"]
    assert watching, "deploy status never showed the canary"
    assert any(s["proxy"]["routing"]["canary_percent"] == 25 for s in watching)
    assert all(s["current"]["container"] == stable["container"] for s in watching)
    state = host.state()
    assert state["current"]["model_version"] == derived_images["v2_version"]
    assert state["previous"]["container"] == stable["container"]
    verdict = state["canary"]
    assert verdict["outcome"] == "promoted" and verdict["reasons"] == []
    figures = verdict["figures"]
    assert figures["canary"]["requests"] >= 100 and figures["canary"]["errors_5xx"] == 0
    assert figures["label_distance"] == 0  # the same model under another version
    assert load.failures == [], Counter(load.failures).most_common(5)
    assert load.dropped == 0
    during = load.served_between(begin, end)
    share = during[derived_images["v2_version"]] / sum(during.values())
    assert 0.05 < share < 0.6, during  # the canary's 25 % plus the promoted tail
    assert docker("inspect", stable["container"], check=False).returncode != 0
    metrics = urllib.request.urlopen(f"{host.url}/_proxy/metrics", timeout=10).read().decode()
    assert 'inference_canary_verdicts_total{verdict="promoted"} 1' in metrics
    assert "inference_canary_active 0" in metrics
    record("canary_promoted", {"seconds": round(took, 1), "window_s": 12, "figures": figures})


@pytest.mark.parametrize(("fault", "reason"), [("errors", "error rate"), ("slow", "p99")])
def test_a_bad_canary_is_rolled_back_and_the_stable_share_loses_nothing(
    host: Host,
    derived_images: dict[str, str],
    faulty_images: dict[str, str],
    fault: str,
    reason: str,
) -> None:
    assert host.deploy("install").returncode == 0
    _deployed(host, derived_images["v2"])
    stable = host.state()["current"]
    with Load(host.proxy_port) as load:
        time.sleep(1)
        done, statuses, took = _canary(host, faulty_images[fault], 20, 20)
        ended = time.monotonic()
        time.sleep(2)
    assert done.returncode == 1, done.stderr
    assert "canary rolled back" in done.stderr and reason in done.stderr, done.stderr
    state = host.state()
    assert state["current"] == stable
    verdict = state["canary"]
    assert verdict["outcome"] == "rolled back"
    assert any(reason in r for r in verdict["reasons"]), verdict["reasons"]
    # Whatever failed came from the canary (its injected 500s); the stable share lost nothing.
    assert all(INJECTED in failure for failure in load.failures), Counter(load.failures)
    assert load.dropped == 0, "a keep-alive connection was dropped"
    assert set(load.served_between(ended, time.monotonic())) == {derived_images["v2_version"]}
    assert len(_ours(host)) == 1, "the canary container was not removed"
    status_after = json.loads(host.deploy("status").stdout)
    assert status_after["consistent"] is True
    assert status_after["proxy"]["routing"]["canary"] is None
    record(
        f"canary_rolled_back_{fault}",
        {
            "seconds": round(took, 1),
            "reasons": verdict["reasons"],
            "figures": verdict["figures"],
            "failed_on_canary": len(load.failures),
            "ok": load.ok,
        },
    )


def _start_canary(host: Host, image: str) -> subprocess.Popen[str]:
    """A canary long enough to be interrupted, returned once `deploy status` shows it."""
    process = subprocess.Popen(
        [str(ROOT / ".venv/bin/inference-service"), "deploy", "up", image]
        + ["--canary", "30", "--canary-seconds", "120"],
        env=host.env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        routing = json.loads(host.deploy("status").stdout)["proxy"]["routing"]
        if routing["canary_percent"] == 30:
            return process
        time.sleep(0.5)
    process.kill()
    pytest.fail("the canary never took its share")


def test_an_interrupted_canary_is_routed_away_and_removed(
    host: Host, derived_images: dict[str, str]
) -> None:
    assert host.deploy("install").returncode == 0
    _deployed(host, derived_images["v1"])
    stable = host.state()["current"]
    with Load(host.proxy_port) as load:
        # Ctrl-C: the tool itself puts every bucket back and removes the canary.
        process = _start_canary(host, derived_images["v2"])
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=60)
        assert process.returncode != 0
        assert "routing everything back to the stable release" in stderr, stderr
        assert host.state()["canary"]["outcome"] == "abandoned"
        assert json.loads(host.deploy("status").stdout)["consistent"] is True
        assert _ours(host) == [docker("inspect", "-f", "{{.Id}}", stable["container"]).stdout[:12]]
        # SIGKILL: nothing runs on the way out; the next deploy finds the canary and removes it.
        process = _start_canary(host, derived_images["v2"])
        process.kill()
        process.wait(timeout=30)
        left = json.loads(host.deploy("status").stdout)
        assert left["canary"]["outcome"] == "watching"  # as the killed deploy left it
        assert left["proxy"]["routing"]["canary_percent"] == 30
        done = host.deploy("up", derived_images["v2"])
        assert done.returncode == 0, done.stderr
        assert "was left unfinished; removing it" in done.stderr
        time.sleep(2)
    assert load.failures == [], Counter(load.failures).most_common(5)
    assert load.dropped == 0
    state = host.state()
    assert state["canary"]["outcome"] == "abandoned"
    assert state["current"]["model_version"] == derived_images["v2_version"]
    assert len(_ours(host)) == 1
    assert json.loads(host.deploy("status").stdout)["consistent"] is True


def test_a_name_that_is_also_an_id_prefix_is_not_taken_for_that_container(engine: None) -> None:
    """`docker container inspect NAME` also answers for a container whose id starts with NAME: the
    deploy tool must not take a release named like that for another container."""
    created = docker("create", "debian:bookworm-slim", "true").stdout.strip()
    try:
        prefix = created[:6]  # a release could be named so: hex is a valid name
        assert docker("container", "inspect", prefix, check=False).returncode == 0
        assert tool.inspect(DeploySettings(), prefix) is None
        assert tool.inspect(DeploySettings(), created) is None  # an id is not a name either
    finally:
        docker("rm", created, check=False)
