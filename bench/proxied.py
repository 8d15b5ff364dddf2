"""The service behind the deployed proxy, for `make bench`: one command that bench.py can spawn.

    .venv/bin/python bench/proxied.py PORT

nginx runs with the two files `inference-service deploy install` writes (rendered by the same
code, deploy/proxy.py: split_clients buckets, symlinked release sockets, a new upstream
connection per request, the JSON access log), in front of `inference-service serve --uds`, the
command the release container runs. What is left out is Docker itself, which adds nothing per
request here: the container's socket is a file in a bind-mounted directory. nginx runs one
worker on the process group's core(s), or on BENCH_NGINX_CORES (a taskset list) when set.
INFERENCE_* settings, such as INFERENCE_WORKERS, reach the service from the environment. TERM
stops both.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from types import FrameType

from inference_service.deploy import proxy
from inference_service.deploy.settings import DeploySettings

RELEASE = "bench"
NGINX_MAIN = """\
worker_processes 1;
daemon off;
pid {root}/nginx.pid;
error_log {root}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    client_body_temp_path {root}/tmp/body;
    proxy_temp_path {root}/tmp/proxy;
    fastcgi_temp_path {root}/tmp/fastcgi;
    uwsgi_temp_path {root}/tmp/uwsgi;
    scgi_temp_path {root}/tmp/scgi;
    include {root}/conf.d/*.conf;
}}
"""


def main() -> int:
    port = int(sys.argv[1])
    root = Path(tempfile.mkdtemp(prefix="bench-proxy-"))
    root.chmod(0o755)  # nginx's workers run as nobody and must reach the sockets
    children: list[subprocess.Popen[bytes]] = []

    def stop(signum: int, frame: FrameType | None) -> None:
        for child in reversed(children):
            child.terminate()
        for child in children:
            child.wait(30)
        shutil.rmtree(root, ignore_errors=True)
        sys.exit(0)

    signal.signal(signal.SIGTERM, stop)
    settings = replace(
        DeploySettings(),
        proxy_port=port,
        proxy_conf=root / "conf.d" / "inference-service.conf",
        proxy_dir=root / "proxy",
        proxy_access_log=str(root / "access.log"),
        state_dir=root / "state",
    )
    for sub in ("conf.d", "tmp"):
        (root / sub).mkdir()
    (root / "nginx.conf").write_text(NGINX_MAIN.format(root=root))
    proxy.prepare(settings)
    proxy.write(settings.proxy_conf, proxy.render_main(settings))
    proxy.write(proxy.snippet_path(settings), proxy.render_locations(settings))
    release = proxy.release_dir(settings, RELEASE)
    release.mkdir(mode=0o755)
    socket = proxy.release_socket(settings, RELEASE)
    cli = Path(sys.executable).parent / "inference-service"
    env = {**os.environ, "INFERENCE_UDS": str(socket)}
    children.append(subprocess.Popen([str(cli), "serve"], env=env))
    deadline = time.monotonic() + 30
    while not socket.exists():
        if children[0].poll() is not None or time.monotonic() > deadline:
            stop(signal.SIGTERM, None)
        time.sleep(0.005)
    proxy.set_role(settings, proxy.STABLE, RELEASE)
    proxy.set_split(settings, 0)
    cores = os.environ.get("BENCH_NGINX_CORES")
    pin = ["taskset", "-c", cores] if cores else []
    nginx = [*pin, "nginx", "-p", str(root), "-c", str(root / "nginx.conf")]
    children.append(subprocess.Popen(nginx))
    while all(child.poll() is None for child in children):
        time.sleep(0.5)
    stop(signal.SIGTERM, None)
    return 1


if __name__ == "__main__":
    sys.exit(main())
