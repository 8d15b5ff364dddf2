"""HTTPS through `deploy tls`: Pebble (Let's Encrypt's test CA), real certbot, real nginx.

Pebble resolves the test name through pebble-challtestsrv (every A query answers 127.0.0.1)
and validates HTTP-01 on the port of the challenge server the tool writes, so issuance and
renewal go through exactly the path they take against Let's Encrypt. nginx runs from its own
prefix; `inference-service serve` is the upstream.

Until the plain server's body moves into a shared snippet, the tests make that snippet from
today's proxy template: the plain config becomes `listen`, `server_name`, the plain-HTTP guard
include and `include <snippet>`, which is the shape the HTTPS server expects.
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from inference_service.deploy import engine, proxy, tls
from inference_service.deploy.settings import DeploySettings
from inference_service.smoke import ORIGINAL_PAYLOAD
from tests.conftest import NGINX_MAIN, free_port, original_labels
from tests.e2e.conftest import record

pytestmark = pytest.mark.slow

DOMAIN = "inference.test"
KEY = "tls-test-key-0123456789"
TOOLS = ("pebble", "pebble-challtestsrv", "certbot", "nginx", "openssl")


def _require_tools() -> None:
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    if not missing:
        return
    reason = f"{', '.join(missing)} not installed (apt-get install pebble certbot nginx openssl)"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"CI=true but {reason}", pytrace=False)
    pytest.skip(reason)


def _spawn(
    argv: list[str], log: Path, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """A background process writing to `log` (a file: a pipe nobody reads fills up)."""
    with log.open("wb") as out:
        return subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _wait(probe: Any, what: str, timeout: float = 20) -> Any:
    deadline = time.monotonic() + timeout
    error: object = None
    while time.monotonic() < deadline:
        try:
            return probe()
        except OSError as exc:
            error = exc
        time.sleep(0.1)
    raise TimeoutError(f"{what} not up after {timeout} s: {error}")


@dataclass
class Pebble:
    directory: str
    ca_bundle: Path
    """Trust for Pebble's own HTTPS listener (certbot's REQUESTS_CA_BUNDLE)."""
    root: Path
    """Pebble's issuing root: what a client of the service trusts."""


@contextmanager
def pebble(work: Path, http_port: int) -> Iterator[Pebble]:
    """Pebble validating HTTP-01 on `http_port`, names resolved by pebble-challtestsrv."""
    work.mkdir()
    listener_cert, listener_key = work / "listener.pem", work / "listener.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"]
        + ["-nodes", "-days", "2", "-subj", "/CN=pebble listener"]
        + ["-keyout", str(listener_key), "-out", str(listener_cert)]
        + ["-addext", "subjectAltName=IP:127.0.0.1"],
        check=True,
        capture_output=True,
    )
    acme_port, management_port, dns_port, dns_management = (free_port() for _ in range(4))
    config = {
        "pebble": {
            "listenAddress": f"127.0.0.1:{acme_port}",
            "managementListenAddress": f"127.0.0.1:{management_port}",
            "certificate": str(listener_cert),
            "privateKey": str(listener_key),
            "httpPort": http_port,
            "tlsPort": free_port(),
            "ocspResponderURL": "",
            "externalAccountBindingRequired": False,
        }
    }
    (work / "pebble.json").write_text(json.dumps(config))
    dns = _spawn(
        ["pebble-challtestsrv", "-dns01", f"127.0.0.1:{dns_port}", "-http01", ""]
        + ["-https01", "", "-tlsalpn01", "", "-defaultIPv6", ""]
        + ["-management", f"127.0.0.1:{dns_management}"],
        work / "challtestsrv.log",
    )
    env = {**os.environ, "PEBBLE_VA_NOSLEEP": "1", "PEBBLE_WFE_NONCEREJECT": "0"}
    ca = _spawn(
        ["pebble", "-config", str(work / "pebble.json"), "-strict=false"]
        + ["-dnsserver", f"127.0.0.1:{dns_port}"],
        work / "pebble.log",
        env,
    )
    try:
        trust = ssl.create_default_context(cafile=str(listener_cert))

        def fetch(url: str) -> bytes:
            with urllib.request.urlopen(url, context=trust, timeout=2) as response:
                return bytes(response.read())

        directory = f"https://127.0.0.1:{acme_port}/dir"
        _wait(lambda: fetch(directory), "pebble")
        root = work / "pebble-root.pem"
        root.write_bytes(fetch(f"https://127.0.0.1:{management_port}/roots/0"))
        yield Pebble(directory=directory, ca_bundle=listener_cert, root=root)
    finally:
        _stop(ca)
        _stop(dns)


@dataclass
class Stack:
    settings: DeploySettings
    root: Path
    webroot: Path
    plain_port: int
    http_port: int
    https_port: int
    pebble: Pebble

    @property
    def env(self) -> dict[str, str]:
        return {
            "PATH": os.environ["PATH"],
            "HOME": os.environ.get("HOME", "/root"),
            "INFERENCE_PROXY_PORT": str(self.settings.proxy_port),
            "INFERENCE_PROXY_CONF": str(self.settings.proxy_conf),
            "INFERENCE_PROXY_DIR": str(self.settings.proxy_dir),
            "INFERENCE_NGINX": self.settings.nginx,
            "REQUESTS_CA_BUNDLE": str(self.pebble.ca_bundle),
        }

    def certbot_dir(self) -> Path:
        return self.root / "certbot"

    def deploy_tls(self, *extra: str) -> subprocess.CompletedProcess[str]:
        argv = [sys.executable, "-m", "inference_service.cli", "deploy", "tls"]
        argv += ["--domain", DOMAIN, "--email", "ops@inference.test"]
        argv += ["--acme-directory", self.pebble.directory, "--webroot", str(self.webroot)]
        argv += ["--https-port", str(self.https_port), "--http-port", str(self.http_port)]
        argv += ["--certbot-dir", str(self.certbot_dir()), *extra]
        return subprocess.run(argv, capture_output=True, text=True, env=self.env, timeout=300)

    def certbot_renew(self) -> subprocess.CompletedProcess[str]:
        """What Debian's certbot.service runs, forced: only the stored settings are used.

        `--no-random-sleep-on-renew` as in that unit (its timer adds the random delay instead);
        without it certbot sleeps up to 8 minutes first when no terminal is attached.
        """
        argv = ["certbot", "renew", "--non-interactive", "--force-renewal"]
        argv += ["--no-random-sleep-on-renew"]
        for name in ("config", "work", "logs"):
            argv += [f"--{name}-dir", str(self.certbot_dir() / name)]
        return subprocess.run(argv, capture_output=True, text=True, env=self.env, timeout=300)

    def https(
        self, method: str, path: str, body: Any = None, key: str | None = None
    ) -> tuple[int, Any, str]:
        """One request on a new TLS connection, verified against Pebble's root for DOMAIN.

        Returns status, JSON body and the certificate serial the server presented.
        """
        context = ssl.create_default_context(cafile=str(self.pebble.root))
        with socket.create_connection(("127.0.0.1", self.https_port), timeout=10) as raw:
            with context.wrap_socket(raw, server_hostname=DOMAIN) as sock:
                serial = str(sock.getpeercert()["serialNumber"])  # type: ignore[index]
                status, answer = _exchange(sock, method, path, body, key)
        return status, answer, serial

    def plain(
        self,
        method: str,
        path: str,
        body: Any = None,
        key: str | None = None,
        port: int = 0,
        source: str = "127.0.0.1",
    ) -> tuple[int, Any, dict[str, str]]:
        """One plain HTTP request; `source` 127.0.0.2 stands for another host (not exempt)."""
        connection = http.client.HTTPConnection(
            "127.0.0.1", port or self.plain_port, timeout=10, source_address=(source, 0)
        )
        try:
            connection.request(method, path, *_encoded(body, key))
            response = connection.getresponse()
            raw = response.read()
            headers = {k.lower(): v for k, v in response.getheaders()}
            is_json = headers.get("content-type") == "application/json"
            return response.status, json.loads(raw) if is_json else raw, headers
        finally:
            connection.close()


def _encoded(body: Any, key: str | None, host: str = DOMAIN) -> tuple[bytes | None, dict[str, str]]:
    headers = {"Host": host, "Content-Type": "application/json"}
    if key is not None:
        headers["Authorization"] = f"Bearer {key}"
    return (None if body is None else json.dumps(body).encode()), headers


def _exchange(
    sock: ssl.SSLSocket, method: str, path: str, body: Any, key: str | None
) -> tuple[int, Any]:
    data, headers = _encoded(body, key)
    lines = [f"{method} {path} HTTP/1.1", "Connection: close"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    lines.append(f"Content-Length: {len(data or b'')}")
    sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode() + (data or b""))
    response = http.client.HTTPResponse(sock)  # type: ignore[arg-type]
    response.begin()
    raw = response.read()
    return response.status, json.loads(raw) if raw.strip() else None


@contextmanager
def stack(tmp_path: Path, model_dir: Path, **serve_env: str) -> Iterator[Stack]:
    """serve (a release on its socket) <- nginx (the deploy tool's config on the plain port, and
    whatever `deploy tls` adds) ; Pebble beside them."""
    _require_tools()
    # nginx's workers (nobody, when the tests run as root) read the challenge files and connect
    # to the release's socket, and pytest's tmp_path is private to its owner.
    root = Path(tempfile.mkdtemp(prefix="acme-nginx-"))
    root.chmod(0o755)
    for sub in ("conf.d", "snippets", "tmp", "logs"):
        (root / sub).mkdir(parents=True)
    (root / "nginx.conf").write_text(NGINX_MAIN.format(root=root))
    webroot = root / "webroot"
    webroot.mkdir(mode=0o755)
    settings = DeploySettings(
        proxy_port=free_port(),
        proxy_conf=root / "conf.d/inference-service.conf",
        proxy_dir=root / "proxy",
        proxy_access_log=str(root / "logs/access.log"),
        nginx=f"nginx -p {root} -c {root / 'nginx.conf'}",
    )
    http_port, https_port = free_port(), free_port()
    proxy.ensure_config(settings)
    sock = proxy.release_socket(settings, "acme")
    sock.parent.mkdir(mode=0o771)
    env = {k: v for k, v in os.environ.items() if not k.startswith("INFERENCE_")}
    env |= {"INFERENCE_MODEL_DIR": str(model_dir), "INFERENCE_UDS": str(sock), **serve_env}
    with (tmp_path / "server.log").open("wb") as log:
        server = subprocess.Popen(
            [sys.executable, "-m", "inference_service.cli", "serve"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        engine.wait_ready(settings, "acme", sock, 30)
        proxy.set_role(settings, proxy.STABLE, "acme")
        with pebble(tmp_path / "pebble", http_port) as ca:
            yield Stack(settings, root, webroot, settings.proxy_port, http_port, https_port, ca)
    finally:
        server.terminate()
        server.wait(timeout=30)
        _stop_nginx(root)
        shutil.rmtree(root, ignore_errors=True)


def _stop_nginx(root: Path) -> None:
    pid_file = root / "nginx.pid"
    if not pid_file.exists():
        return
    pid = int(pid_file.read_text())
    os.kill(pid, signal.SIGQUIT)
    for _ in range(100):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)


def _nginx_cpu_seconds(root: Path) -> float:
    """CPU time (user + system) of the nginx workers under `root`'s master so far."""
    master = (root / "nginx.pid").read_text().strip()
    ticks = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[1] == master:  # ppid; fields[0] is the state
            ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def test_issues_serves_and_renews_over_acme_without_dropping_requests(
    trained: Path, tmp_path: Path
) -> None:
    with stack(tmp_path, trained, INFERENCE_API_KEYS=KEY) as s:
        # Before TLS: the plain port is the original contract, keys accepted from anywhere.
        assert s.plain("POST", "/inference", ORIGINAL_PAYLOAD, KEY, source="127.0.0.2")[0] == 200

        done = s.deploy_tls()
        assert done.returncode == 0, done.stderr
        assert "Successfully received certificate" in done.stderr

        status, answer, serial = s.https("POST", "/inference", ORIGINAL_PAYLOAD, KEY)
        assert (status, answer["predictions"]) == (200, original_labels())
        # The same API, auth included: no key, no answer.
        assert s.https("POST", "/inference", ORIGINAL_PAYLOAD)[0] == 401

        # Keys over plain HTTP from another host are refused with a JSON answer naming the
        # HTTPS address; without a key, the plain port answers as before; loopback (the
        # deploy's smoke test on the host) keeps working.
        remote = "127.0.0.2"
        status, answer, headers = s.plain(
            "POST", "/inference", ORIGINAL_PAYLOAD, KEY, source=remote
        )
        assert status == 403
        assert headers["content-type"] == "application/json"
        assert f"https://{DOMAIN}:{s.https_port}/" in answer["error"]
        assert s.plain("POST", "/inference", ORIGINAL_PAYLOAD, source=remote)[0] == 401
        assert s.plain("POST", "/inference", ORIGINAL_PAYLOAD, KEY)[0] == 200

        # The challenge port sends everything but the challenges to HTTPS.
        status, _, headers = s.plain("GET", "/readyz", port=s.http_port)
        assert status == 301
        assert headers["location"] == f"https://{DOMAIN}:{s.https_port}/readyz"

        # Idempotent: a second run keeps the certificate and the config.
        again = s.deploy_tls()
        assert again.returncode == 0, again.stderr
        assert "not yet due" in again.stderr and "unchanged" in again.stderr
        assert s.https("GET", "/readyz")[2] == serial

        # Renewal as the timer does it, under load: new TLS connections all along.
        failures: list[str] = []
        answered = 0
        stop = threading.Event()

        def client() -> None:
            nonlocal answered
            while not stop.is_set():
                try:
                    status, answer, _ = s.https("POST", "/inference", ORIGINAL_PAYLOAD, KEY)
                except (OSError, http.client.HTTPException, ValueError) as exc:
                    failures.append(repr(exc))
                    continue
                if status != 200 or answer.get("predictions") != original_labels():
                    failures.append(f"{status} {answer}")
                answered += 1

        threads = [threading.Thread(target=client) for _ in range(4)]
        for thread in threads:
            thread.start()
        try:
            time.sleep(1)
            renewed = s.certbot_renew()
            deadline = time.monotonic() + 15
            while s.https("GET", "/readyz")[2] == serial and time.monotonic() < deadline:
                time.sleep(0.1)
            time.sleep(1)
        finally:
            stop.set()
            for thread in threads:
                thread.join(timeout=30)
        assert renewed.returncode == 0, renewed.stderr
        new_serial = s.https("GET", "/readyz")[2]
        assert new_serial != serial, "the renewed certificate is not served"
        assert failures == []
        assert answered > 0
        record("requests during certificate renewal", {"answered": answered, "failed": 0})


def test_failed_issuance_leaves_nginx_valid_and_https_off(trained: Path, tmp_path: Path) -> None:
    with stack(tmp_path, trained) as s:
        closed = free_port()
        done = s.deploy_tls("--acme-directory", f"https://127.0.0.1:{closed}/dir")
        assert done.returncode == 1
        assert f"certbot could not obtain a certificate for {DOMAIN}" in done.stderr
        conf = tls.tls_conf(s.settings).read_text()
        assert "ssl_certificate" not in conf
        assert not (tls.snippets_dir(s.settings) / tls.PLAIN_HTTP_GUARD).exists()
        proxy.nginx(s.settings, "-t")
        status, answer, _ = s.plain("POST", "/inference", ORIGINAL_PAYLOAD)
        assert (status, answer["predictions"]) == (200, original_labels())


@pytest.mark.skipif(
    not os.environ.get("TLS_MEASURE_SECONDS"), reason="a measurement; scripts/measure-tls.sh"
)
def test_measure_tls_cost_through_nginx(trained: Path, tmp_path: Path) -> None:
    seconds = int(os.environ["TLS_MEASURE_SECONDS"])
    with stack(tmp_path, trained) as s:
        assert s.deploy_tls().returncode == 0
        body = tmp_path / "body.json"
        body.write_text(json.dumps(ORIGINAL_PAYLOAD))
        expect = tmp_path / "expect.json"
        expect.write_text(json.dumps(original_labels(), separators=(",", ":")))
        script = Path(__file__).resolve().parents[2] / "bench/post.lua"
        env = {**os.environ, "BENCH_BODY": str(body), "BENCH_EXPECT": str(expect)}
        for name, url, extra in (
            ("plain, keep-alive", f"http://127.0.0.1:{s.plain_port}/inference", []),
            ("https, keep-alive", f"https://127.0.0.1:{s.https_port}/inference", []),
            ("plain, new connection", f"http://127.0.0.1:{s.plain_port}/inference", ["close"]),
            ("https, new connection", f"https://127.0.0.1:{s.https_port}/inference", ["close"]),
        ):
            argv = ["wrk", "-t2", "-c8", f"-d{seconds}s", "--latency", "-s", str(script)]
            argv += [a for flag in extra for a in ("-H", f"Connection: {flag}")]
            cpu_before = _nginx_cpu_seconds(s.root)
            done = subprocess.run(
                [*argv, url], capture_output=True, text=True, env=env, timeout=seconds + 60
            )
            cpu = _nginx_cpu_seconds(s.root) - cpu_before
            assert done.returncode == 0, done.stderr
            line = next(x for x in done.stdout.splitlines() if x.startswith("BENCH "))
            figures = json.loads(line.removeprefix("BENCH "))
            assert figures["mismatches"] == 0 and figures["checked"] > 0, done.stdout
            figures["per_second"] = round(figures["requests"] / figures["duration_us"] * 1e6)
            figures["nginx_cpu_us_per_request"] = round(cpu / figures["requests"] * 1e6, 1)
            record(f"wrk {name}", figures)
