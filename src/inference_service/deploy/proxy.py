"""The nginx side: a config written once, and routing changed by renaming symlinks.

nginx forwards each request to `buckets/NN.sock`, one of BUCKETS symlinks chosen by hashing the
request id (`split_clients`). A bucket points at a role, `roles/stable.sock` or
`roles/canary.sock`, and a role points at a release's socket, `releases/<container>/server.sock`:

    buckets/00.sock -> ../roles/canary.sock -> ../releases/<new>/server.sock
    buckets/01.sock -> ../roles/stable.sock -> ../releases/<old>/server.sock
    ...

`proxy_pass` names a Unix socket through a variable and there is no upstream keep-alive pool,
so nginx connects afresh for every request and the kernel resolves the links at that moment.
Renaming one link over another is atomic: a switch or a new canary weight takes effect with the
next request, requests already sent finish where they are, and nginx is never reloaded.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import stat
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any

from inference_service.artifact import write_atomic
from inference_service.deploy.settings import SOCKET_NAME, DeploySettings

BUCKETS = 100
"""Traffic is split in 1 % steps."""
STABLE, CANARY = "stable", "canary"
SNIPPET = "locations.conf"
"""Everything inside a `server {}` that serves the API; every such server block includes it."""
RELEASE_FILE = "release.json"
"""The routing as JSON, served by nginx at /_proxy/release (loopback only)."""
METRICS_FILE = "metrics.prom"
"""The canary's state in Prometheus' text format, served at /_proxy/metrics (loopback only)."""
VERDICTS_FILE = "verdicts.json"
"""How many canaries were promoted and rolled back on this host, for the verdict counter."""
VERDICTS = ("promoted", "rolled_back")
CONTAINER_SOCKET_DIR = "/run/inference-service"
"""Where each release directory is mounted inside its container."""

MAIN = """\
# Written by `inference-service deploy install`. Routing changes never touch it: see
# {proxy_dir} and docs/deploy.md. Edit the settings, not this file.

# Each request goes to one of {buckets} buckets by its random request id.
split_clients "$request_id" $inference_service_bucket {{
{split}
}}

log_format inference_service_json escape=json
    '{{"time":"$time_iso8601","remote":"$remote_addr","method":"$request_method",'
    '"uri":"$request_uri","status":$status,"bytes":$body_bytes_sent,'
    '"request_time":$request_time,"bucket":"$inference_service_bucket",'
    '"upstream_status":"$upstream_status","upstream_time":"$upstream_response_time",'
    '"request_id":"$request_id","user_agent":"$http_user_agent"}}';
{rate_zone}
server {{
    listen {listen};
    server_name _;
    # Written by `deploy tls` once HTTPS is on (refuses credentials sent in clear text); until
    # then the pattern matches nothing.
    include {guard};
    include {snippet};
}}
"""

RATE_ZONE = """
# Per-client-IP request rate (INFERENCE_PROXY_RATE / INFERENCE_PROXY_BURST); excess gets 429.
limit_req_zone $binary_remote_addr zone=inference_service_per_ip:10m rate={rate}r/s;
"""

RATE_LIMIT = """
limit_req zone=inference_service_per_ip{burst} nodelay;
limit_req_status 429;
"""

LOCATIONS = """\
# Written by `inference-service deploy install`: the service's part of a server block.
# Include it in any `server {{}}` that serves the API (the plain one on :{listen} does).
server_tokens off;
access_log {access_log} inference_service_json;
keepalive_timeout 65s;
# nginx closes a keep-alive connection after 1000 requests by default: one backend caller at
# full speed would reconnect every few seconds.
keepalive_requests 100000;
client_max_body_size 1m;
client_body_timeout 10s;
send_timeout 30s;
{rate_limit}
# Named locations keep the request's method, so the access log shows what was refused.
error_page 429 = @inference_service_429;
error_page 502 504 = @inference_service_502;
error_page 413 = @inference_service_413;

location / {{
    proxy_pass http://unix:{proxy_dir}/buckets/$inference_service_bucket.sock;
    proxy_http_version 1.1;
    proxy_set_header Host $host;
    proxy_set_header X-Request-ID $request_id;
    proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
    proxy_set_header X-Forwarded-Proto $scheme;
    proxy_connect_timeout 2s;
    proxy_send_timeout 30s;
    proxy_read_timeout {read_timeout}s;
}}

# Which release serves which share, read from a file the deploy replaces atomically.
location = /_proxy/release {{
    allow 127.0.0.1;
    deny all;
    access_log off;
    default_type application/json;
    add_header X-Proxy-Config {config_id} always;
    alias {proxy_dir}/{release_file};
}}

# The canary's state for Prometheus (a second scrape target: job inference-deploy).
location = /_proxy/metrics {{
    allow 127.0.0.1;
    deny all;
    access_log off;
    default_type "text/plain; version=0.0.4";
    alias {proxy_dir}/{metrics_file};
}}

location @inference_service_429 {{
    default_type application/json;
    add_header Retry-After 1 always;
    return 429 '{{"error":"Too many requests from this address; retry later."}}\\n';
}}
location @inference_service_502 {{
    default_type application/json;
    add_header Retry-After 1 always;
    if (!-e {proxy_dir}/buckets/$inference_service_bucket.sock) {{
        return 503 '{{"error":"No release is deployed yet."}}\\n';
    }}
    return 502 '{{"error":"The service did not answer; retry later."}}\\n';
}}
location @inference_service_413 {{
    default_type application/json;
    return 413 '{{"error":"The request body is larger than 1 MiB."}}\\n';
}}
"""


class ProxyError(Exception):
    pass


def snippet_path(settings: DeploySettings) -> Path:
    """The file a server block includes to serve the API (shared with the TLS server)."""
    return settings.proxy_dir / SNIPPET


def release_dir(settings: DeploySettings, container: str) -> Path:
    return settings.proxy_dir / "releases" / container


def release_socket(settings: DeploySettings, container: str) -> Path:
    return release_dir(settings, container) / SOCKET_NAME


def render_main(settings: DeploySettings) -> str:
    split = "\n".join(f"    1% {i:02d};" for i in range(BUCKETS - 1))
    return MAIN.format(
        proxy_dir=settings.proxy_dir,
        buckets=BUCKETS,
        split=f"{split}\n    * {BUCKETS - 1:02d};",
        rate_zone=RATE_ZONE.format(rate=settings.proxy_rate) if settings.proxy_rate else "",
        listen=settings.proxy_port,
        guard=plain_http_guard(settings),
        snippet=snippet_path(settings),
    )


def plain_http_guard(settings: DeploySettings) -> Path:
    """The plain server's guard file written by `deploy tls`, as the glob the server includes."""
    return settings.proxy_conf.parent.parent / "snippets" / "inference-service-plain-http*.conf"


def render_locations(settings: DeploySettings, config_id: str = "") -> str:
    """The locations file; `config_id` (see config_id()) lets the deploy see a reload land."""
    burst = f" burst={settings.proxy_burst}" if settings.proxy_burst else ""  # nginx refuses 0
    rate_limit = RATE_LIMIT.format(burst=burst) if settings.proxy_rate else ""
    return LOCATIONS.format(
        listen=settings.proxy_port,
        access_log=settings.proxy_access_log,
        rate_limit=rate_limit,
        proxy_dir=settings.proxy_dir,
        read_timeout=settings.proxy_read_timeout,
        release_file=RELEASE_FILE,
        metrics_file=METRICS_FILE,
        config_id=config_id or "-",
    )


def config_id(settings: DeploySettings) -> str:
    """A digest of both files' content, sent in a header by /_proxy/release."""
    text = render_main(settings) + render_locations(settings)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def write(path: Path, text: str) -> None:
    """Write a config file: atomically, or in place where only the file is ours.

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


def prepare(settings: DeploySettings) -> None:
    """The routing directory, reachable by nginx's workers; a missing bucket goes to stable."""
    for sub in ("", "buckets", "roles", "releases"):
        path = settings.proxy_dir / sub
        path.mkdir(parents=True, exist_ok=True)
        path.chmod(0o755)
    _check_reachable(settings.proxy_dir)
    for index in range(BUCKETS):
        bucket = settings.proxy_dir / "buckets" / f"{index:02d}.sock"
        if not bucket.is_symlink():
            _link(bucket, f"../roles/{STABLE}.sock")
    if not (settings.proxy_dir / RELEASE_FILE).exists():
        publish(settings)


def _check_reachable(path: Path) -> None:
    """nginx's workers run as another user: every directory above the sockets must let it pass.

    A directory of ours that does not is opened for passing through only (o+x, no listing).
    """
    for parent in [path, *path.parents]:
        mode = parent.stat().st_mode
        if mode & stat.S_IXOTH:
            continue
        if parent.stat().st_uid == os.geteuid():
            parent.chmod(stat.S_IMODE(mode) | stat.S_IXOTH)
            continue
        raise ProxyError(
            f"nginx's worker user cannot reach {path}: {parent} is not searchable by other "
            f"users; choose another INFERENCE_PROXY_DIR or run `chmod o+x {parent}`"
        )


def ensure_config(settings: DeploySettings) -> str:
    """Write both config files if they differ from what they should be, check, then reload.

    Returns what was done. Routing never needs this: it changes symlinks only.
    """
    prepare(settings)
    wanted = {
        settings.proxy_conf: render_main(settings),
        snippet_path(settings): render_locations(settings, config_id(settings)),
    }
    before: dict[Path, str | None] = {}
    for path in wanted:
        try:
            before[path] = path.read_text()
        except FileNotFoundError:
            before[path] = None
    changed = any(before[path] != text for path, text in wanted.items())
    if changed:
        for path, text in wanted.items():
            write(path, text)
        try:
            nginx(settings, "-t")
        except ProxyError:
            for path, text_before in before.items():
                if text_before is None:
                    path.unlink(missing_ok=True)
                else:
                    write(path, text_before)
            raise
    wanted_id = config_id(settings)
    if not changed and _served_config(settings) == wanted_id:
        return "config unchanged, nginx serving it"
    try:
        nginx(settings, "-s", "reload")
        done = "config written, nginx reloaded" if changed else "nginx reloaded"
    except ProxyError:
        nginx(settings, timeout=15)  # the config is valid (nginx -t passed): nginx was not running
        done = "nginx started"
    _wait_config(settings, wanted_id)
    return done


def ensure_running(settings: DeploySettings) -> str:
    """Check the config, then reload nginx if it runs or start it if not. Returns what it did."""
    nginx(settings, "-t")
    try:
        nginx(settings, "-s", "reload")
        return "reloaded"
    except ProxyError:
        nginx(settings, timeout=15)
        return "started"


def _served_config(settings: DeploySettings) -> str | None:
    url = f"http://127.0.0.1:{settings.proxy_port}/_proxy/release"
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            served = response.headers.get("X-Proxy-Config")
    except OSError:
        return None
    return str(served) if served else None


def _wait_config(settings: DeploySettings, wanted: str, timeout: float = 10) -> None:
    """`nginx -s reload` only signals: wait until new workers answer with this config."""
    deadline = time.monotonic() + timeout
    seen = None
    while time.monotonic() < deadline:
        seen = _served_config(settings)
        if seen == wanted:
            return
        time.sleep(0.05)
    raise ProxyError(
        f"nginx on :{settings.proxy_port} does not serve the new config after {timeout:g} s "
        f"(config {seen or 'unknown'} instead of {wanted})"
    )


def serving(settings: DeploySettings) -> dict[str, Any] | None:
    """The routing as nginx serves it at /_proxy/release, or None if nginx does not answer so."""
    url = f"http://127.0.0.1:{settings.proxy_port}/_proxy/release"
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            answer = json.loads(response.read())
    except (OSError, ValueError):
        return None
    return answer if isinstance(answer, dict) and STABLE in answer else None


def _link(path: Path, target: str) -> None:
    """Point the symlink `path` at `target` in one rename: a reader sees the old or the new."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}")
    os.symlink(target, tmp)
    try:
        os.replace(tmp, path)
    except OSError:
        tmp.unlink(missing_ok=True)
        raise


def set_role(settings: DeploySettings, role: str, container: str | None) -> None:
    """Point `role` at a release's socket, or remove it (None)."""
    path = settings.proxy_dir / "roles" / f"{role}.sock"
    if container is None:
        path.unlink(missing_ok=True)
    else:
        _link(path, f"../releases/{container}/{SOCKET_NAME}")


def set_split(settings: DeploySettings, canary_percent: int) -> None:
    """Send `canary_percent` of the buckets to the canary role and the rest to the stable one."""
    for index in range(BUCKETS):
        role = CANARY if index < canary_percent else STABLE
        path = settings.proxy_dir / "buckets" / f"{index:02d}.sock"
        target = f"../roles/{role}.sock"
        if not (path.is_symlink() and os.readlink(path) == target):
            _link(path, target)


def routing(settings: DeploySettings) -> dict[str, Any]:
    """What nginx forwards to now, read from the links themselves."""
    roles: dict[str, str | None] = {}
    for role in (STABLE, CANARY):
        try:
            target = os.readlink(settings.proxy_dir / "roles" / f"{role}.sock")
            roles[role] = Path(target).parent.name
        except OSError:
            roles[role] = None
    canary_buckets = 0
    for index in range(BUCKETS):
        try:
            target = os.readlink(settings.proxy_dir / "buckets" / f"{index:02d}.sock")
        except OSError:
            continue
        canary_buckets += target.endswith(f"/{CANARY}.sock")
    return {
        STABLE: roles[STABLE],
        CANARY: roles[CANARY],
        "canary_percent": round(100 * canary_buckets / BUCKETS),
    }


def publish(settings: DeploySettings) -> dict[str, Any]:
    """Write release.json (served at /_proxy/release) and metrics.prom (/_proxy/metrics) from
    the links; returns the routing."""
    now = routing(settings)
    path = settings.proxy_dir / RELEASE_FILE
    write_atomic(path, (json.dumps(now) + "\n").encode(), mode=0o644)
    write_atomic(settings.proxy_dir / METRICS_FILE, canary_metrics(settings, now).encode())
    return now


def count_verdict(settings: DeploySettings, verdict: str) -> None:
    """Add a canary's outcome to this host's tally and publish it."""
    counts = verdicts(settings)
    counts[verdict] = counts.get(verdict, 0) + 1
    write_atomic(settings.proxy_dir / VERDICTS_FILE, (json.dumps(counts) + "\n").encode())
    publish(settings)


def verdicts(settings: DeploySettings) -> dict[str, int]:
    try:
        raw = json.loads((settings.proxy_dir / VERDICTS_FILE).read_text())
    except (OSError, ValueError):
        return dict.fromkeys(VERDICTS, 0)
    return {v: int(raw.get(v, 0)) for v in VERDICTS}


def canary_metrics(settings: DeploySettings, now: dict[str, Any]) -> str:
    """The dashboard's canary series (docs/monitoring.md), in Prometheus' text format."""
    percent = int(now["canary_percent"]) if now[CANARY] else 0
    lines = [
        "# HELP inference_canary_active 1 while a canary takes a share of the traffic, else 0.",
        "# TYPE inference_canary_active gauge",
        f"inference_canary_active {1 if percent else 0}",
        "# HELP inference_canary_weight_percent Share of the traffic each release receives.",
        "# TYPE inference_canary_weight_percent gauge",
    ]
    for role, share in ((STABLE, 100 - percent), (CANARY, percent)):
        if now[role]:
            lines.append(f'inference_canary_weight_percent{{release="{now[role]}"}} {share}')
    lines += [
        "# HELP inference_canary_verdicts_total Canary outcomes on this host.",
        "# TYPE inference_canary_verdicts_total counter",
        *(
            f'inference_canary_verdicts_total{{verdict="{v}"}} {n}'
            for v, n in verdicts(settings).items()
        ),
    ]
    return "\n".join(lines) + "\n"
