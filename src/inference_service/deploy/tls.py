"""`inference-service deploy tls`: HTTPS for the public name, with a certificate from ACME.

certbot obtains and renews the certificate with the webroot method: nginx keeps serving and
answers the HTTP-01 challenge from a directory certbot writes into, so no plugin rewrites this
tool's nginx config and nginx is never stopped. certbot records the webroot, the ACME server and
a deploy hook (a graceful `nginx -s reload`) in its renewal file, so Debian's `certbot.timer`
(`certbot renew`, twice a day) renews and reloads without this tool.

The tool writes two nginx files and runs certbot in between, in three idempotent steps:
1. on a first run or changed settings, the TLS config with only a port-80 server for FQDN
   that serves the challenge directory and redirects everything else to HTTPS;
2. `certbot certonly --webroot`: obtains the certificate, or does nothing until it is due;
3. the TLS config with the HTTPS server (the API, from the same snippet the plain server
   includes) and the plain-HTTP guard that refuses credentials sent in clear from other hosts;
   `nginx -t`, reload, and a wait until both are live.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from inference_service.deploy import proxy
from inference_service.deploy.settings import DeploySettings

LETS_ENCRYPT = "https://acme-v02.api.letsencrypt.org/directory"
DEFAULT_WEBROOT = Path("/var/www/inference-service-acme")
CERTBOT_CONFIG_DIR = Path("/etc/letsencrypt")
CERTBOT_ENV = "INFERENCE_CERTBOT"

TLS_SUFFIX = ".tls.conf"
"""The TLS config is the proxy config's name with this suffix: beside it in conf.d, and sorted
after it (nginx reads conf.d/*.conf in name order, and the log format and rate-limit zone the
HTTPS server uses are declared in the proxy config)."""
"""The API's server-level directives and locations, included by the plain and the HTTPS server."""
PLAIN_HTTP_GUARD = "inference-service-plain-http.conf"
"""Included by the plain server through a glob, so it is absent (and harmless) until TLS is on."""

_LABEL = re.compile(r"(?!-)[a-z0-9-]{1,63}(?<!-)")


class TlsError(Exception):
    pass


@dataclass(frozen=True)
class TlsOptions:
    domain: str
    email: str
    acme_directory: str = LETS_ENCRYPT
    webroot: Path = DEFAULT_WEBROOT
    https_port: int = 443
    http_port: int = 80
    """Port of the challenge server; ACME validates HTTP-01 on 80, a test CA may use another."""
    certbot: str = "certbot"
    """certbot command prefix; on the VM `sudo -n /usr/bin/certbot`."""
    certbot_dir: Path | None = None
    """If set, certbot's config, work and log dirs live under it instead of the system's."""
    force_renewal: bool = False

    def check(self, proxy_port: int) -> None:
        labels = self.domain.split(".")
        if len(labels) < 2 or not all(_LABEL.fullmatch(label) for label in labels):
            raise ValueError(
                f"--domain {self.domain!r} is not a fully qualified lower-case host name "
                "such as inference.example.org"
            )
        if labels[-1].isdigit():
            raise ValueError(f"--domain {self.domain!r} is an address; ACME needs a name")
        if not re.fullmatch(r"[^@\s]+@[^@\s]+\.[^@\s]+", self.email):
            raise ValueError(f"--email {self.email!r} is not an e-mail address")
        if not self.acme_directory.startswith("https://"):
            raise ValueError(f"--acme-directory {self.acme_directory!r} must be an https:// URL")
        if not self.webroot.is_absolute():
            raise ValueError(f"--webroot {self.webroot} must be an absolute path")
        ports = {"--https-port": self.https_port, "--http-port": self.http_port}
        for flag, port in ports.items():
            if not 0 < port < 65536:
                raise ValueError(f"{flag} must be 1-65535, got {port}")
        if len({self.https_port, self.http_port, proxy_port}) < 3:
            raise ValueError(
                f"--https-port {self.https_port}, --http-port {self.http_port} and the proxy "
                f"port {proxy_port} must all differ"
            )

    @property
    def certbot_cmd(self) -> list[str]:
        return shlex.split(self.certbot)

    @property
    def live_dir(self) -> Path:
        config = self.certbot_dir / "config" if self.certbot_dir else CERTBOT_CONFIG_DIR
        return config / "live" / self.domain

    @property
    def https_url(self) -> str:
        port = "" if self.https_port == 443 else f":{self.https_port}"
        return f"https://{self.domain}{port}/"


def snippets_dir(settings: DeploySettings) -> Path:
    """nginx's snippets directory beside conf.d (/etc/nginx/snippets on Debian)."""
    return settings.proxy_conf.parent.parent / "snippets"


def api_snippet(settings: DeploySettings) -> Path:
    """The API's locations, written by the proxy config and included by every server block."""
    return proxy.snippet_path(settings)


def plain_http_guard_glob(settings: DeploySettings) -> Path:
    """What the plain server includes: matches the guard once TLS is on, nothing before."""
    return proxy.plain_http_guard(settings)


def tls_conf(settings: DeploySettings) -> Path:
    return settings.proxy_conf.with_suffix(TLS_SUFFIX)


CHALLENGE_SERVER = """\
# ACME HTTP-01 challenges for {domain}, answered from the directory certbot writes into;
# everything else on this port is sent to HTTPS.
server {{
    listen {http_port};
    server_name {domain};
    server_tokens off;

    location ^~ /.well-known/acme-challenge/ {{
        root {webroot};
        default_type text/plain;
    }}
    location / {{
        return 301 https://$host{port_suffix}$request_uri;
    }}
}}
"""

HTTPS_SERVER = """\
# The API over HTTPS: the same server body as the plain port, from one snippet (which also
# holds server-level settings such as server_tokens, limits and error pages).
server {{
    listen {https_port} ssl;
    server_name {domain};

    ssl_certificate {live}/fullchain.pem;
    ssl_certificate_key {live}/privkey.pem;
    # Mozilla's "intermediate" profile: TLS 1.2 and 1.3, the library's modern cipher order.
    ssl_protocols TLSv1.2 TLSv1.3;
    ssl_prefer_server_ciphers off;
    ssl_session_cache shared:inference_service_tls:10m;
    ssl_session_timeout 1d;
    ssl_session_tickets off;

    include {api_snippet};
}}
"""

GUARD = """\
# Written by `inference-service deploy tls`. Included by the plain-HTTP server: a request that
# carries credentials over plain HTTP from another host is refused, so a client learns to use
# HTTPS at once. Loopback is exempt: a key sent to 127.0.0.1 never crosses a network (the
# deploy's own smoke test on the host uses it).
set $inference_service_clear_credentials "";
if ($http_authorization) {{
    set $inference_service_clear_credentials "yes";
}}
if ($remote_addr = 127.0.0.1) {{
    set $inference_service_clear_credentials "";
}}
if ($remote_addr = ::1) {{
    set $inference_service_clear_credentials "";
}}
if ($inference_service_clear_credentials) {{
    rewrite ^ /_proxy_errors/https-required.json last;
}}
location = /_proxy_errors/https-required.json {{
    internal;
    default_type application/json;
    return 403 '{{"error":"{message}"}}\\n';
}}
"""


def render(settings: DeploySettings, options: TlsOptions, https: bool) -> str:
    """The TLS config: the challenge server, and the HTTPS server once a certificate exists."""
    header = "# Written by `inference-service deploy tls`; it replaces this file on every run.\n"
    port_suffix = "" if options.https_port == 443 else f":{options.https_port}"
    text = header + CHALLENGE_SERVER.format(
        domain=options.domain,
        http_port=options.http_port,
        webroot=options.webroot,
        port_suffix=port_suffix,
    )
    if https:
        text += "\n" + HTTPS_SERVER.format(
            domain=options.domain,
            https_port=options.https_port,
            live=options.live_dir,
            api_snippet=api_snippet(settings),
        )
    return text


def render_guard(options: TlsOptions) -> str:
    message = (
        f"Credentials are accepted only over HTTPS: use {options.https_url}. "
        "This key was sent in clear text; rotate it."
    )
    return GUARD.format(message=message)


def certbot_argv(settings: DeploySettings, options: TlsOptions) -> list[str]:
    """`certbot certonly --webroot` for the domain; certbot stores these for `certbot renew`."""
    argv = [
        *options.certbot_cmd,
        "certonly",
        "--non-interactive",
        "--agree-tos",
        "--no-eff-email",
        "--email",
        options.email,
        "--server",
        options.acme_directory,
        "--webroot",
        "--webroot-path",
        str(options.webroot),
        "--domain",
        options.domain,
        "--cert-name",
        options.domain,
        # Runs after every issuance or renewal, also from `certbot renew` (the systemd timer).
        "--deploy-hook",
        shlex.join([*settings.nginx_cmd, "-s", "reload"]),
        "--force-renewal" if options.force_renewal else "--keep-until-expiring",
    ]
    if options.certbot_dir is not None:
        for name in ("config", "work", "logs"):
            argv += [f"--{name}-dir", str(options.certbot_dir / name)]
    return argv


def run(settings: DeploySettings, options: TlsOptions) -> None:
    """Obtain or renew the certificate and serve HTTPS. Raises TlsError or proxy.ProxyError."""
    options.check(settings.proxy_port)
    conf = tls_conf(settings)
    guard = snippets_dir(settings) / PLAIN_HTTP_GUARD
    live = render(settings, options, https=True)
    if _read(conf) != live:
        # A first run or changed settings: make the challenge location live before certbot.
        _install(settings, {conf: render(settings, options, https=False)})
        say(f"serving ACME challenges for {options.domain} on :{options.http_port}")
    say(f"certbot: {options.acme_directory}")
    done = _certbot(settings, options)
    for line in _summary(done):
        say(f"certbot: {line}")
    if _read(conf) == live and _read(guard) == render_guard(options):
        say(f"unchanged: {options.https_url} serves the API")
        return
    _install(settings, {conf: live, guard: render_guard(options)})
    _wait_live(settings, options)
    say(f"{options.https_url} serves the API; credentials over plain HTTP are refused")


def _wait_live(settings: DeploySettings, options: TlsOptions, timeout: float = 10) -> None:
    """Wait until HTTPS answers and the plain port refuses credentials from another address.

    `nginx -s reload` only signals: for a moment the old workers still accept on the plain
    port. The HTTPS probe does not verify the certificate (certbot has checked the issuance,
    and a test CA is in no trust store). The guard probe comes from 127.0.0.2, an address of
    the loopback network that the guard does not exempt.
    """
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    request = (
        f"GET /readyz HTTP/1.1\r\nHost: {options.domain}\r\nAuthorization: Bearer probe\r\n"
        "Connection: close\r\n\r\n"
    ).encode()
    guard = f"`include {plain_http_guard_glob(settings)};` in the plain server"
    probes = [
        # what, port, client address, over TLS, the answer's start
        (f"HTTPS on :{options.https_port}", options.https_port, "127.0.0.1", True, "HTTP/1.1 "),
        (
            f"{guard} on :{settings.proxy_port}",
            settings.proxy_port,
            "127.0.0.2",
            False,
            "HTTP/1.1 403",
        ),
    ]
    deadline = time.monotonic() + timeout
    for what, port, source, over_tls, expected in probes:
        seen = "nothing"
        while not seen.startswith(expected):
            if time.monotonic() > deadline:
                raise TlsError(f"{what} is not live after {timeout:g} s (sees {seen!r})")
            try:
                address = ("127.0.0.1", port)
                with socket.create_connection(address, 2, source_address=(source, 0)) as raw:
                    sock = (
                        context.wrap_socket(raw, server_hostname=options.domain)
                        if over_tls
                        else raw
                    )
                    with sock:
                        sock.sendall(request)
                        seen = sock.recv(12).decode(errors="replace")
            except OSError as exc:
                seen = str(exc)
            if not seen.startswith(expected):
                time.sleep(0.05)


def _certbot(settings: DeploySettings, options: TlsOptions) -> subprocess.CompletedProcess[str]:
    argv = certbot_argv(settings, options)
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=600)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise TlsError(f"`{argv[0]}` failed: {exc}") from None
    if done.returncode != 0:
        output = (done.stderr.strip() or done.stdout.strip())[-2000:]
        raise TlsError(f"certbot could not obtain a certificate for {options.domain}:\n{output}")
    return done


def _summary(done: subprocess.CompletedProcess[str]) -> list[str]:
    """certbot's lines that say what happened (not its banners)."""
    keys = ("Successfully received", "not yet due", "Renewing", "Requesting", "expires on")
    lines = (done.stdout + "\n" + done.stderr).splitlines()
    return [line.strip() for line in lines if any(key in line for key in keys)]


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except FileNotFoundError:
        return None


def _install(settings: DeploySettings, files: Mapping[Path, str]) -> None:
    """Write the files, `nginx -t`, reload (or start) nginx; put every file back on failure."""
    before = {path: _read(path) for path in files}
    try:
        for path, text in files.items():
            path.parent.mkdir(parents=True, exist_ok=True)
            proxy.write(path, text)
        proxy.ensure_running(settings)
    except (OSError, proxy.ProxyError):
        for path, old in before.items():
            if old is None:
                path.unlink(missing_ok=True)
            else:
                proxy.write(path, old)
        raise


def add_parser(actions: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    sub = actions.add_parser(
        "tls",
        help="obtain or renew the ACME certificate for the public name and serve HTTPS",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub.add_argument("--domain", required=True, help="the public name, e.g. inference.example.org")
    sub.add_argument("--email", required=True, help="ACME account contact for expiry notices")
    sub.add_argument(
        "--acme-directory", default=LETS_ENCRYPT, help="ACME directory URL (default: %(default)s)"
    )
    sub.add_argument(
        "--webroot",
        type=Path,
        default=DEFAULT_WEBROOT,
        help="directory nginx serves the HTTP-01 challenges from (default: %(default)s)",
    )
    sub.add_argument("--https-port", type=int, default=443, help="default: %(default)s")
    sub.add_argument(
        "--http-port",
        type=int,
        default=80,
        help="port the challenge server listens on; ACME validates on 80 (default: %(default)s)",
    )
    sub.add_argument(
        "--certbot",
        help=f"certbot command prefix ({CERTBOT_ENV}, default certbot; "
        "on the VM 'sudo -n /usr/bin/certbot')",
    )
    sub.add_argument(
        "--certbot-dir",
        type=Path,
        help="keep certbot's config, work and logs dirs under this directory instead of "
        "/etc/letsencrypt, /var/lib/letsencrypt and /var/log/letsencrypt",
    )
    sub.add_argument(
        "--force-renewal", action="store_true", help="renew now even if the certificate is not due"
    )


def main(settings: DeploySettings, args: argparse.Namespace) -> int:
    """The `deploy tls` action: 0 when HTTPS is served with a valid certificate, else 1."""
    try:
        run(settings, options_from(args, os.environ))
    except (TlsError, proxy.ProxyError, ValueError, OSError) as exc:
        say(f"FAILED: {exc}")
        return 1
    return 0


def options_from(args: argparse.Namespace, environ: Mapping[str, str]) -> TlsOptions:
    return TlsOptions(
        domain=args.domain,
        email=args.email,
        acme_directory=args.acme_directory,
        webroot=args.webroot,
        https_port=args.https_port,
        http_port=args.http_port,
        certbot=args.certbot or environ.get(CERTBOT_ENV, "") or "certbot",
        certbot_dir=args.certbot_dir,
        force_renewal=args.force_renewal,
    )


def say(message: str) -> None:
    sys.stderr.write(f"{datetime.now(UTC).strftime('%H:%M:%S')} deploy tls: {message}\n")
    sys.stderr.flush()
