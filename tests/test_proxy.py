"""Writing the proxy config, as root and as a deploy user who owns only the file."""

import http.client
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from inference_service.deploy import engine, proxy
from inference_service.deploy.proxy import write
from inference_service.deploy.settings import DeploySettings
from inference_service.smoke import ORIGINAL_PAYLOAD
from tests.conftest import NGINX_MAIN, free_port

NOBODY = 65534


@pytest.fixture
def conf_dir() -> Iterator[Path]:
    # Not under pytest's tmp_path: its parent is private to root, and the test runs as nobody.
    path = Path(tempfile.mkdtemp(prefix="proxy-conf-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path)


def run_as(uid: int, action: Callable[[], None]) -> str:
    """Run `action` in a forked child that has dropped to `uid`; returns its error, or "".

    A fork, not a new interpreter: the child already holds every module it needs, so it works
    wherever the checkout lives, even in a directory that `uid` cannot enter, while the file
    system still checks every access against `uid`.
    """
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        os.close(read_end)
        code = 0
        try:
            os.setgroups([])
            os.setgid(uid)
            os.setuid(uid)
            action()
        except BaseException as exc:  # everything goes back to the parent
            os.write(write_end, f"{type(exc).__name__}: {exc}".encode())
            code = 1
        finally:
            os._exit(code)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        error = pipe.read().decode()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == (1 if error else 0)
    return error


def test_write_replaces_the_file(conf_dir: Path) -> None:
    conf = conf_dir / "inference-service.conf"
    write(conf, "first\n")
    write(conf, "second\n")
    assert conf.read_text() == "second\n"
    assert [p.name for p in conf_dir.iterdir()] == [conf.name]  # no temporary file left


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to act as another user")
def test_owner_of_the_file_but_not_the_directory_rewrites_in_place(conf_dir: Path) -> None:
    """The VM's layout: the deploy user owns the config file, root owns nginx's conf.d."""
    conf = conf_dir / "inference-service.conf"
    conf.write_text("a much longer placeholder than the new config\n")
    os.chown(conf, NOBODY, NOBODY)
    inode = conf.stat().st_ino
    assert run_as(NOBODY, lambda: write(conf, "upstream\n")) == ""
    assert conf.read_text() == "upstream\n"
    assert conf.stat().st_ino == inode


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to act as another user")
def test_a_user_owning_neither_file_nor_directory_is_refused(conf_dir: Path) -> None:
    """The child really runs as that user: without the file it cannot write at all."""
    conf = conf_dir / "inference-service.conf"
    conf.write_text("root's\n")
    error = run_as(NOBODY, lambda: write(conf, "upstream\n"))
    assert error.startswith("PermissionError"), error
    assert conf.read_text() == "root's\n"


# --- The routing, with the real nginx and the real server on Unix sockets ---------------------


@dataclass
class Routed:
    """A private nginx in front of a routing directory, and releases to route to."""

    settings: DeploySettings
    root: Path
    versions: dict[str, str]

    def get(self, path: str, method: str = "GET", body: Any = None) -> tuple[int, Any]:
        data = None if body is None else json.dumps(body).encode()
        url = f"http://127.0.0.1:{self.settings.proxy_port}{path}"
        request = urllib.request.Request(url, data=data, method=method)
        request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read())

    def access_log(self) -> list[dict[str, Any]]:
        path = Path(self.settings.proxy_access_log)
        return [json.loads(line) for line in path.read_text().splitlines()]

    def nginx_pids(self) -> set[int]:
        master = int((self.root / "nginx.pid").read_text())
        children = Path(f"/proc/{master}/task/{master}/children").read_text().split()
        return {master, *map(int, children)}

    def configure(self, **changes: Any) -> None:
        self.settings = replace(self.settings, **changes)
        proxy.ensure_config(self.settings)


def _release(model_dir: Path, suffix: str, into: Path) -> tuple[Path, str]:
    """A copy of the trained model published as `<version><suffix>`, to tell releases apart."""
    version = (model_dir / "current").read_text().strip()
    new = version + suffix
    shutil.copytree(model_dir / version, into / new)
    card = json.loads((into / new / "model.json").read_text())
    card["version"] = new
    (into / new / "model.json").write_text(json.dumps(card))
    (into / "current").write_text(new + "\n")
    return into, new


@pytest.fixture(scope="module")
def routed(trained: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Routed]:
    nginx = shutil.which("nginx")
    if nginx is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("CI=true but nginx is not installed", pytrace=False)
        pytest.skip("nginx is not installed")
    # nginx's workers run as another user: the routing directory must be reachable by it.
    root = Path(tempfile.mkdtemp(prefix="proxy-routing-"))
    root.chmod(0o755)
    for sub in ("conf.d", "tmp", "logs"):
        (root / sub).mkdir()
    (root / "nginx.conf").write_text(NGINX_MAIN.format(root=root))
    settings = DeploySettings(
        proxy_port=free_port(),
        proxy_conf=root / "conf.d/inference-service.conf",
        proxy_dir=root / "proxy",
        proxy_access_log=str(root / "logs/access.log"),
        nginx=f"{nginx} -p {root} -c {root / 'nginx.conf'}",
    )
    proxy.ensure_config(settings)
    servers = []
    versions = {}
    try:
        for name, suffix in (("a", "-a"), ("b", "-b")):
            model_dir, versions[name] = _release(
                trained, suffix, tmp_path_factory.mktemp(f"model-{name}")
            )
            sock = proxy.release_socket(settings, name)
            sock.parent.mkdir(mode=0o771)
            env = {k: v for k, v in os.environ.items() if not k.startswith("INFERENCE_")}
            env |= {"INFERENCE_MODEL_DIR": str(model_dir), "INFERENCE_UDS": str(sock)}
            log = (root / "logs" / f"{name}.log").open("wb")
            servers.append(
                subprocess.Popen(
                    [sys.executable, "-m", "inference_service.cli", "serve"],
                    env=env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            )
        for name in ("a", "b"):
            engine.wait_ready(settings, name, proxy.release_socket(settings, name), 30)
        yield Routed(settings, root, versions)
    finally:
        for server in servers:
            server.terminate()
            server.wait(timeout=30)
        if (root / "nginx.pid").exists():
            proxy.nginx(settings, "-s", "quit")
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def fresh(routed: Routed) -> Routed:
    """Nothing routed, default settings, an empty access log."""
    routed.configure(proxy_rate=0, proxy_burst=0)
    proxy.set_split(routed.settings, 0)
    for role in (proxy.STABLE, proxy.CANARY):
        proxy.set_role(routed.settings, role, None)
    proxy.publish(routed.settings)
    Path(routed.settings.proxy_access_log).write_text("")
    return routed


def _served_by(routed: Routed, requests: int) -> Counter[str]:
    return Counter(
        routed.get("/inference", "POST", ORIGINAL_PAYLOAD)[1]["model"]["version"]
        for _ in range(requests)
    )


def test_before_any_release_the_proxy_answers_503_json(fresh: Routed) -> None:
    status, body = fresh.get("/inference", "POST", ORIGINAL_PAYLOAD)
    assert status == 503
    assert body == {"error": "No release is deployed yet."}
    assert fresh.get("/_proxy/release") == (
        200,
        {"stable": None, "canary": None, "canary_percent": 0},
    )


def test_a_switch_is_a_rename_seen_by_the_next_request_without_reloading(fresh: Routed) -> None:
    pids = fresh.nginx_pids()
    proxy.set_role(fresh.settings, proxy.STABLE, "a")
    proxy.publish(fresh.settings)
    assert _served_by(fresh, 5) == {fresh.versions["a"]: 5}
    proxy.set_role(fresh.settings, proxy.STABLE, "b")
    proxy.publish(fresh.settings)
    assert _served_by(fresh, 5) == {fresh.versions["b"]: 5}
    assert fresh.get("/_proxy/release")[1]["stable"] == "b"
    assert fresh.nginx_pids() == pids, "nginx was reloaded or restarted"


def test_a_keep_alive_client_loses_nothing_while_the_routing_flips(fresh: Routed) -> None:
    """Many switches while one connection keeps sending: every answer 200, from both releases."""
    proxy.set_role(fresh.settings, proxy.STABLE, "a")
    connection = http.client.HTTPConnection("127.0.0.1", fresh.settings.proxy_port, timeout=10)
    body = json.dumps(ORIGINAL_PAYLOAD).encode()
    seen: Counter[str] = Counter()
    sockets = set()
    for i in range(400):
        if i % 20 == 0:
            proxy.set_role(fresh.settings, proxy.STABLE, "ab"[(i // 20) % 2])
        connection.request("POST", "/inference", body, {"Content-Type": "application/json"})
        response = connection.getresponse()
        answer = json.loads(response.read())
        assert response.status == 200, answer
        seen[answer["model"]["version"]] += 1
        sockets.add(id(connection.sock))
    connection.close()
    assert seen == {fresh.versions["a"]: 200, fresh.versions["b"]: 200}
    assert len(sockets) == 1, "the client connection was closed"


def test_canary_buckets_take_their_share_of_requests(fresh: Routed) -> None:
    proxy.set_role(fresh.settings, proxy.STABLE, "a")
    proxy.set_role(fresh.settings, proxy.CANARY, "b")
    proxy.set_split(fresh.settings, 30)
    assert proxy.publish(fresh.settings) == {"stable": "a", "canary": "b", "canary_percent": 30}
    served = _served_by(fresh, 400)
    # 400 draws at 30 %: a standard deviation of 9 requests; 60 to 180 is beyond 6 of them.
    assert 60 <= served[fresh.versions["b"]] <= 180, served
    assert served[fresh.versions["a"]] + served[fresh.versions["b"]] == 400


def _canary_series(routed: Routed) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    url = f"http://127.0.0.1:{routed.settings.proxy_port}/_proxy/metrics"
    with urllib.request.urlopen(url, timeout=10) as response:
        assert response.headers["Content-Type"].startswith("text/plain")
        text = response.read().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_the_canary_state_is_served_to_prometheus_by_nginx(fresh: Routed) -> None:
    proxy.set_role(fresh.settings, proxy.STABLE, "a")
    proxy.publish(fresh.settings)
    before = _canary_series(fresh)
    assert before[("inference_canary_active", ())] == 0
    assert before[("inference_canary_weight_percent", (("release", "a"),))] == 100
    promoted = before[("inference_canary_verdicts_total", (("verdict", "promoted"),))]
    proxy.set_role(fresh.settings, proxy.CANARY, "b")
    proxy.set_split(fresh.settings, 20)
    proxy.publish(fresh.settings)
    during = _canary_series(fresh)
    assert during[("inference_canary_active", ())] == 1
    assert during[("inference_canary_weight_percent", (("release", "a"),))] == 80
    assert during[("inference_canary_weight_percent", (("release", "b"),))] == 20
    proxy.count_verdict(fresh.settings, "promoted")
    after = _canary_series(fresh)
    assert after[("inference_canary_verdicts_total", (("verdict", "promoted"),))] == promoted + 1


def test_the_rate_limit_is_off_by_default(fresh: Routed) -> None:
    assert "limit_req" not in proxy.render_main(fresh.settings)
    assert "limit_req" not in proxy.render_locations(fresh.settings)
    proxy.set_role(fresh.settings, proxy.STABLE, "a")
    statuses = Counter(fresh.get("/inference", "POST", ORIGINAL_PAYLOAD)[0] for _ in range(300))
    assert statuses == {200: 300}


def test_a_throttled_request_is_answered_in_json_and_logged_with_its_method(
    fresh: Routed,
) -> None:
    fresh.configure(proxy_rate=1, proxy_burst=0)
    proxy.set_role(fresh.settings, proxy.STABLE, "a")
    # A reload only signals nginx: for a moment an old worker may still take a connection with
    # the old config, so keep asking (bounded) until the limit shows.
    answers: list[tuple[int, Any]] = []
    deadline = time.monotonic() + 10
    while len(answers) < 40 and time.monotonic() < deadline:
        answers.append(fresh.get("/inference", "POST", ORIGINAL_PAYLOAD))
        if sum(status == 429 for status, _ in answers) >= 3:
            break
    refused = [body for status, body in answers if status == 429]
    assert refused, answers
    assert refused[0] == {"error": "Too many requests from this address; retry later."}
    time.sleep(0.3)  # nginx writes the access log line after the answer
    lines = [line for line in fresh.access_log() if line["status"] == 429]
    assert len(lines) == len(refused)
    assert {line["method"] for line in lines} == {"POST"}
    assert {line["uri"] for line in lines} == {"/inference"}


def test_a_body_too_large_is_answered_in_json_and_logged_with_its_method(fresh: Routed) -> None:
    proxy.set_role(fresh.settings, proxy.STABLE, "a")
    status, body = fresh.get("/inference", "POST", [[1.0, 2.0, 3.0, 4.0]] * 60_000)
    assert status == 413 and body == {"error": "The request body is larger than 1 MiB."}
    time.sleep(0.3)
    assert [line["method"] for line in fresh.access_log() if line["status"] == 413] == ["POST"]


def test_the_locations_file_is_all_a_server_block_needs(fresh: Routed) -> None:
    """A second server that only includes the locations file serves the same releases."""
    port = free_port()
    extra = fresh.root / "conf.d" / "second.conf"
    extra.write_text(
        f"server {{ listen 127.0.0.1:{port}; include {proxy.snippet_path(fresh.settings)}; }}\n"
    )
    try:
        proxy.nginx(fresh.settings, "-t")
        proxy.nginx(fresh.settings, "-s", "reload")
        proxy.set_role(fresh.settings, proxy.STABLE, "b")
        second = replace(fresh.settings, proxy_port=port)
        for _ in range(50):
            if proxy.serving(second) is not None:
                break
            time.sleep(0.1)
        assert (
            Routed(second, fresh.root, fresh.versions).get("/inference", "POST", ORIGINAL_PAYLOAD)[
                1
            ]["model"]["version"]
            == (fresh.versions["b"])
        )
    finally:
        extra.unlink()
        proxy.nginx(fresh.settings, "-s", "reload")


def test_install_writes_the_config_once(fresh: Routed) -> None:
    assert proxy.ensure_config(fresh.settings) == "config unchanged, nginx serving it"
