"""The nginx side: render the service's config, switch it atomically, reload gracefully."""

from __future__ import annotations

import os
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

from inference_service.artifact import write_atomic
from inference_service.deploy.settings import DeploySettings

UPSTREAM_MARK = "# upstream-port: "

TEMPLATE = """\
# Written by `inference-service deploy`; every deploy replaces it. Edit the settings, not this file.
{mark}{port}

# Per-client-IP request rate; excess requests get a JSON 429 (INFERENCE_PROXY_RATE/_BURST).
limit_req_zone $binary_remote_addr zone=inference_service_per_ip:10m rate={rate}r/s;

log_format inference_service_json escape=json
    '{{"time":"$time_iso8601","remote":"$remote_addr","method":"$request_method",'
    '"uri":"$request_uri","status":$status,"bytes":$body_bytes_sent,'
    '"request_time":$request_time,"upstream":"$upstream_addr",'
    '"upstream_status":"$upstream_status","upstream_time":"$upstream_response_time",'
    '"request_id":"$request_id","user_agent":"$http_user_agent"}}';

{upstream}
server {{
    listen {listen};
    server_name _;
    server_tokens off;

    access_log {access_log} inference_service_json;
    client_max_body_size 1m;
    client_body_timeout 10s;
    send_timeout 30s;
    keepalive_timeout 65s;

    limit_req zone=inference_service_per_ip burst={burst} nodelay;
    limit_req_status 429;

    error_page 429 /_proxy_errors/429.json;
    error_page 502 504 /_proxy_errors/502.json;
    error_page 503 /_proxy_errors/503.json;
    error_page 413 /_proxy_errors/413.json;

    location / {{
{location}
    }}

    # Which release this nginx generation forwards to: the deploy polls it to know the reload
    # has taken effect. Loopback only.
    location = /_proxy/release {{
        allow 127.0.0.1;
        deny all;
        access_log off;
        default_type text/plain;
        return 200 '{release}\\n';
    }}

    location ^~ /_proxy_errors/ {{
        internal;
        default_type application/json;
        add_header Retry-After 1 always;
        location = /_proxy_errors/429.json {{
            return 429 '{{"error":"Too many requests from this address; retry later."}}\\n';
        }}
        location = /_proxy_errors/502.json {{
            return 502 '{{"error":"The service did not answer; retry later."}}\\n';
        }}
        location = /_proxy_errors/503.json {{
            return 503 '{{"error":"No release is deployed yet."}}\\n';
        }}
        location = /_proxy_errors/413.json {{
            return 413 '{{"error":"The request body is larger than 1 MiB."}}\\n';
        }}
    }}
}}
"""

UPSTREAM = """\
upstream inference_service {{
    server 127.0.0.1:{port} max_fails=0;
    keepalive 32;
    keepalive_timeout 30s;
}}
"""

LOCATION = """\
        proxy_pass http://inference_service;
        proxy_http_version 1.1;
        proxy_set_header Connection "";
        proxy_set_header Host $host;
        proxy_set_header X-Request-ID $request_id;
        proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
        proxy_set_header X-Forwarded-Proto $scheme;
        proxy_connect_timeout 2s;
        proxy_send_timeout 30s;
        proxy_read_timeout {read_timeout}s;
        # Inference is a pure function of the body, so retrying a POST is safe: a connection
        # the container closed while idle is retried instead of surfacing as a 502.
        proxy_next_upstream error timeout non_idempotent;
        proxy_next_upstream_tries 2;
        proxy_next_upstream_timeout 5s;"""

NO_RELEASE = "        return 503;"


class ProxyError(Exception):
    pass


def render(settings: DeploySettings, port: int | None, release: str = "none") -> str:
    """The config for an upstream on 127.0.0.1:port, or one answering 503 when port is None."""
    return TEMPLATE.format(
        release=release,
        mark=UPSTREAM_MARK,
        port=port if port is not None else "none",
        rate=settings.proxy_rate,
        burst=settings.proxy_burst,
        listen=settings.proxy_port,
        access_log=settings.proxy_access_log,
        upstream=UPSTREAM.format(port=port) if port is not None else "",
        location=(
            LOCATION.format(read_timeout=settings.proxy_read_timeout)
            if port is not None
            else NO_RELEASE
        ),
    )


def upstream_port(conf: Path) -> int | None:
    """The container port the current config forwards to (None: no release, or no config)."""
    try:
        for line in conf.read_text().splitlines():
            if line.startswith(UPSTREAM_MARK):
                value = line.removeprefix(UPSTREAM_MARK).strip()
                return int(value) if value.isdigit() else None
    except FileNotFoundError:
        return None
    return None


def write(path: Path, text: str) -> None:
    """Write the proxy config: atomically, or in place where only the file is ours.

    On the VM the deploy user owns the config file but not nginx's conf.d, so no temporary file
    can be made beside it. Rewriting in place is safe there: nginx reads the file only on the
    reload this tool triggers after `nginx -t`.
    """
    try:
        write_atomic(path, text.encode())
    except PermissionError:
        if not path.exists():
            raise
        with open(path, "r+b") as f:
            f.write(text.encode())
            f.truncate()
            f.flush()
            os.fsync(f.fileno())


def nginx(settings: DeploySettings, *args: str, timeout: float = 30) -> None:
    command = [*settings.nginx_cmd, *args]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ProxyError(f"`{' '.join(command)}` failed: {exc}") from None
    if done.returncode != 0:
        raise ProxyError(f"`{' '.join(command)}` failed: {done.stderr.strip() or done.stdout}")


def switch(settings: DeploySettings, port: int | None, release: str = "none") -> None:
    """Point the proxy at `port`: write atomically, `nginx -t`, graceful reload.

    On any failure the previous file is put back (and reloaded if nginx had seen the new one).
    """
    conf = settings.proxy_conf
    try:
        before: str | None = conf.read_text()
    except FileNotFoundError:
        before = None
    write(conf, render(settings, port, release))
    try:
        nginx(settings, "-t")
    except ProxyError:
        _restore(conf, before)
        raise
    try:
        nginx(settings, "-s", "reload")
    except ProxyError as exc:
        # The config is valid (nginx -t passed), so a failed reload means nginx is not running.
        try:
            nginx(settings, timeout=15)
        except ProxyError:
            _restore(conf, before)
            raise exc from None


def _restore(conf: Path, before: str | None) -> None:
    if before is None:
        conf.unlink(missing_ok=True)
    else:
        write(conf, before)


def ensure_running(settings: DeploySettings) -> str:
    """Reload nginx if it runs, start it if not. Returns what it did."""
    nginx(settings, "-t")
    try:
        nginx(settings, "-s", "reload")
        return "reloaded"
    except ProxyError:
        nginx(settings, timeout=15)
        return "started"


def wait_switched(settings: DeploySettings, release: str, timeout: float = 10) -> None:
    """Wait until nginx's new workers answer for `release` (`nginx -s reload` only signals)."""
    url = f"http://127.0.0.1:{settings.proxy_port}/_proxy/release"
    deadline = time.monotonic() + timeout
    seen = "nothing"
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                seen = response.read().decode().strip()
        except (urllib.error.URLError, OSError) as exc:
            seen = str(getattr(exc, "reason", exc))
        if seen == release:
            return
        time.sleep(0.05)
    raise ProxyError(f"nginx did not switch to {release} within {timeout:g} s (sees {seen})")


def shutting_down_workers() -> int:
    """nginx worker processes still finishing requests from before the last reload."""
    count = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            title = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if title.startswith(b"nginx: worker process is shutting down"):
            count += 1
    return count


def wait_drained(timeout: float, poll: float = 0.2) -> float:
    """Wait until no old nginx worker is left (all requests to the old upstream are answered).

    Returns the seconds waited. nginx ends an old worker only when its last request is done, so
    this is the exact moment the old container stops being needed; `timeout` bounds it.
    """
    start = time.monotonic()
    time.sleep(poll)
    while shutting_down_workers() and time.monotonic() - start < timeout:
        time.sleep(poll)
    return time.monotonic() - start
