"""`deploy tls` without a CA: option checks, the certbot command, the nginx files it writes."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest

from inference_service.deploy import main
from inference_service.deploy.settings import DeploySettings
from inference_service.deploy.tls import (
    LETS_ENCRYPT,
    TlsOptions,
    api_snippet,
    certbot_argv,
    plain_http_guard_glob,
    render,
    render_guard,
    tls_conf,
)

SETTINGS = DeploySettings(
    proxy_conf=Path("/etc/nginx/conf.d/inference-service.conf"),
    nginx="sudo -n /usr/sbin/nginx",
)
OPTIONS = TlsOptions(domain="inference.example.org", email="ops@example.org")


@pytest.mark.parametrize(
    ("changes", "flag"),
    [
        ({"domain": "localhost"}, "--domain"),
        ({"domain": "Inference.Example.org"}, "--domain"),
        ({"domain": "*.example.org"}, "--domain"),
        ({"domain": "-bad.example.org"}, "--domain"),
        ({"domain": "10.0.0.4"}, "--domain"),
        ({"domain": "a..example.org"}, "--domain"),
        ({"email": "ops"}, "--email"),
        ({"email": "ops @example.org"}, "--email"),
        ({"acme_directory": "http://acme.example.org/dir"}, "--acme-directory"),
        ({"webroot": Path("relative/www")}, "--webroot"),
        ({"https_port": 0}, "--https-port"),
        ({"http_port": 70000}, "--http-port"),
        ({"https_port": 6666}, "--https-port"),
        ({"http_port": 443}, "--http-port"),
    ],
)
def test_rejects_bad_options_naming_the_flag(changes: dict[str, object], flag: str) -> None:
    options = TlsOptions(**{"domain": OPTIONS.domain, "email": OPTIONS.email, **changes})  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=flag):
        options.check(proxy_port=6666)


def test_accepts_a_public_name() -> None:
    OPTIONS.check(proxy_port=6666)


def test_certbot_uses_the_webroot_and_records_a_reload_hook() -> None:
    options = TlsOptions(
        domain="inference.example.org",
        email="ops@example.org",
        webroot=Path("/var/www/acme"),
        certbot="sudo -n /usr/bin/certbot",
    )
    argv = certbot_argv(SETTINGS, options)
    assert argv[:4] == ["sudo", "-n", "/usr/bin/certbot", "certonly"]
    pairs = dict(zip(argv, argv[1:], strict=False))
    assert pairs["--webroot-path"] == "/var/www/acme"
    assert pairs["--server"] == LETS_ENCRYPT
    assert pairs["--domain"] == pairs["--cert-name"] == "inference.example.org"
    assert pairs["--email"] == "ops@example.org"
    assert shlex.split(pairs["--deploy-hook"]) == ["sudo", "-n", "/usr/sbin/nginx", "-s", "reload"]
    assert "--keep-until-expiring" in argv and "--force-renewal" not in argv
    assert "--non-interactive" in argv and "--config-dir" not in argv


def test_forced_renewal_and_private_certbot_dirs(tmp_path: Path) -> None:
    settings = DeploySettings(nginx=f"nginx -p '{tmp_path}/with space' -c x.conf")
    options = TlsOptions(
        domain="inference.test",
        email="ops@inference.test",
        certbot_dir=tmp_path,
        force_renewal=True,
    )
    argv = certbot_argv(settings, options)
    pairs = dict(zip(argv, argv[1:], strict=False))
    assert "--force-renewal" in argv and "--keep-until-expiring" not in argv
    for name in ("config", "work", "logs"):
        assert pairs[f"--{name}-dir"] == str(tmp_path / name)
    hook = shlex.split(pairs["--deploy-hook"])
    assert hook == ["nginx", "-p", f"{tmp_path}/with space", "-c", "x.conf", "-s", "reload"]
    assert options.live_dir == tmp_path / "config/live/inference.test"


def test_before_the_certificate_only_challenges_are_served() -> None:
    text = render(SETTINGS, OPTIONS, https=False)
    assert "listen 80;" in text
    assert "server_name inference.example.org;" in text
    assert (
        "location ^~ /.well-known/acme-challenge/ {\n        root /var/www/inference-service-acme;"
        in text
    )
    assert "return 301 https://$host$request_uri;" in text
    assert "ssl" not in text


def test_the_https_server_takes_the_api_from_the_shared_snippet() -> None:
    text = render(SETTINGS, OPTIONS, https=True)
    https = text[text.index("listen 443 ssl;") :]
    assert f"include {api_snippet(SETTINGS)};" in https
    assert "/etc/letsencrypt/live/inference.example.org/fullchain.pem;" in https
    assert "/etc/letsencrypt/live/inference.example.org/privkey.pem;" in https
    assert "ssl_protocols TLSv1.2 TLSv1.3;" in https
    assert api_snippet(SETTINGS) == Path("/var/lib/inference-service/proxy/locations.conf")


def test_a_non_default_https_port_is_kept_in_the_redirect_and_the_refusal() -> None:
    options = TlsOptions(domain="inference.test", email="ops@inference.test", https_port=8443)
    assert "return 301 https://$host:8443$request_uri;" in render(SETTINGS, options, https=False)
    assert "use https://inference.test:8443/." in render_guard(options)
    assert "use https://inference.example.org/." in render_guard(OPTIONS)


def test_the_guard_refuses_credentials_with_json() -> None:
    guard = render_guard(OPTIONS)
    assert "if ($http_authorization) {" in guard
    assert "if ($remote_addr = 127.0.0.1) {" in guard
    assert "default_type application/json;" in guard
    assert 'return 403 \'{"error":"Credentials are accepted only over HTTPS' in guard


@pytest.mark.parametrize("name", ["inference-service.conf", "a.conf", "zz-proxy.conf"])
def test_the_tls_config_is_read_after_the_proxy_config(name: str) -> None:
    """nginx reads conf.d/*.conf in name order; the HTTPS server uses the proxy config's zones."""
    settings = DeploySettings(proxy_conf=Path("/etc/nginx/conf.d") / name)
    names = [settings.proxy_conf.name, tls_conf(settings).name, "other.conf"]
    ordered = sorted(names)
    assert ordered.index(tls_conf(settings).name) > ordered.index(name)
    assert tls_conf(settings).parent == settings.proxy_conf.parent


def test_the_guard_glob_matches_nothing_until_tls_is_on() -> None:
    assert plain_http_guard_glob(SETTINGS) == Path(
        "/etc/nginx/snippets/inference-service-plain-http*.conf"
    )


def test_cli_requires_domain_and_email(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["tls", "--email", "ops@example.org"])
    assert exit_info.value.code == 2
    assert "--domain" in capsys.readouterr().err


def test_cli_refuses_a_bad_domain_before_touching_nginx(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    conf = tmp_path / "conf.d/inference-service.conf"
    code = main(
        ["--proxy-conf", str(conf), "--nginx", "false", "tls"]
        + ["--domain", "localhost", "--email", "ops@example.org"]
    )
    assert code == 1
    assert "FAILED: --domain 'localhost' is not a fully qualified" in capsys.readouterr().err
    assert not conf.parent.exists()


def test_cli_help_lists_the_interface(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["tls", "--help"])
    out = capsys.readouterr().out
    for flag in ("--domain", "--email", "--acme-directory", "--webroot", "--https-port"):
        assert flag in out
