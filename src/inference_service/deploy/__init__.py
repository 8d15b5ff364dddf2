"""`inference-service deploy`: zero-downtime releases on one Docker host behind nginx.

A deploy starts the new container beside the old one, waits for its readiness, smoke-tests it
directly, switches nginx's upstream with a graceful reload, then drains and stops the old one.
Any failure before the switch removes the new container and leaves the old one serving.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import sys
import time
from collections.abc import Mapping
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from inference_service import smoke
from inference_service.deploy import engine, proxy, state, tls
from inference_service.deploy.settings import ENV, DeploySettings

__all__ = ["main"]


class DeployFailed(Exception):
    pass


def main(argv: list[str]) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    overrides = {
        "proxy_port": args.proxy_port,
        "proxy_conf": args.proxy_conf,
        "state_dir": args.state_dir,
        "nginx": args.nginx,
        "ready_timeout": getattr(args, "ready_timeout", None),
        "drain_seconds": getattr(args, "drain_seconds", None),
        "container_prefix": args.container_prefix,
    }
    try:
        settings = DeploySettings.load(os.environ, overrides)
    except ValueError as exc:
        parser.error(str(exc))
    try:
        if args.action == "install":
            return install(settings)
        if args.action == "tls":
            return tls.main(settings, args)
        if args.action == "status":
            sys.stdout.write(json.dumps(status(settings), indent=2) + "\n")
            return 0
        with state.lock(settings.state_dir):
            if args.action == "up":
                up(settings, args.image, os.environ)
            else:
                rollback(settings, os.environ)
        return 0
    except (DeployFailed, state.Busy, engine.EngineError, proxy.ProxyError, ValueError) as exc:
        _say(f"FAILED: {exc}")
        return 1


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="inference-service deploy",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Settings: "
        + ", ".join(f"{v} (--{k.replace('_', '-')})" for k, v in ENV.items())
        + ". See docs/deploy.md.",
    )
    parser.add_argument("--proxy-port", type=int, help="public port (INFERENCE_PROXY_PORT, 6666)")
    parser.add_argument("--proxy-conf", type=Path, help="nginx config file to manage")
    parser.add_argument("--state-dir", type=Path, help="where state.json lives")
    parser.add_argument("--nginx", help="nginx command prefix, e.g. 'sudo -n /usr/sbin/nginx'")
    parser.add_argument("--container-prefix", help="container name prefix")
    actions = parser.add_subparsers(dest="action", required=True)
    actions.add_parser("install", help="check Docker and nginx, write the proxy config, run nginx")
    up_parser = actions.add_parser("up", help="deploy IMAGE with zero downtime")
    up_parser.add_argument("image", help="image reference, e.g. inference-service:latest")
    rollback_parser = actions.add_parser("rollback", help="go back to the previous release")
    for sub in (up_parser, rollback_parser):
        sub.add_argument("--ready-timeout", type=float, help="seconds to wait for readiness")
        sub.add_argument("--drain-seconds", type=float, help="max seconds to drain the old one")
    actions.add_parser("status", help="print the releases and what is running, as JSON")
    tls.add_parser(actions)
    return parser


def _say(message: str) -> None:
    sys.stderr.write(f"{datetime.now(UTC).strftime('%H:%M:%S')} deploy: {message}\n")
    sys.stderr.flush()


def install(settings: DeploySettings) -> int:
    """Idempotent host preparation: tools present, proxy config present, nginx running."""
    version = engine.docker(settings, "version", "--format", "{{.Server.Version}}", timeout=30)
    _say(f"Docker engine {version}")
    proxy.nginx(settings, "-t")  # present, and its configuration valid (also allowed by sudo)
    current = state.load(settings.state_file).current
    if not settings.proxy_conf.exists():
        port = current.port if current else None
        release = current.container if current else "none"
        proxy.write(settings.proxy_conf, proxy.render(settings, port, release))
        _say(f"wrote {settings.proxy_conf} (upstream: {port or 'none yet, answers 503'})")
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    _say(f"nginx {proxy.ensure_running(settings)}; public port {settings.proxy_port}")
    return 0


def up(settings: DeploySettings, image: str, environ: Mapping[str, str]) -> state.Release:
    before = state.load(settings.state_file)
    image_id = engine.image_id(settings, image)
    release = _release(settings, image, image_id, before.current, environ)
    state.save(settings.state_file, state.State(current=release, previous=before.current))
    return release


def rollback(settings: DeploySettings, environ: Mapping[str, str]) -> state.Release:
    before = state.load(settings.state_file)
    if before.previous is None:
        raise DeployFailed(f"no previous release recorded in {settings.state_file}")
    target = before.previous
    _say(f"rolling back to {target.image} (model {target.model_version})")
    release = _release(settings, target.image, target.image_id, before.current, environ)
    state.save(settings.state_file, state.State(current=release, previous=before.current))
    return release


def _release(
    settings: DeploySettings,
    image: str,
    image_id: str,
    old: state.Release | None,
    environ: Mapping[str, str],
) -> state.Release:
    """The five steps. Raises DeployFailed with the reason; the old release is then untouched."""
    start = time.monotonic()
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    name = f"{settings.container_prefix}-{stamp}-{secrets.token_hex(2)}"
    port = engine.free_port()
    direct = f"http://127.0.0.1:{port}"
    _say(f"1/5 starting {name} from {image} on 127.0.0.1:{port}")
    try:
        engine.run(settings, image_id, name, port, environ)
        _say(f"2/5 waiting up to {settings.ready_timeout:g} s for readiness")
        version = engine.wait_ready(settings, name, port, settings.ready_timeout)
        _say(f"3/5 smoke test against {direct} (model {version})")
        smoke.check(direct, smoke.default_key(environ))
        _say(f"4/5 switching the proxy on :{settings.proxy_port} to 127.0.0.1:{port}")
        proxy.switch(settings, port, name)
    except (engine.EngineError, smoke.SmokeFailure, proxy.ProxyError) as exc:
        logs = engine.logs_tail(settings, name)
        _discard(settings, name)
        kept = f"; {old.container} keeps serving" if old else ""
        detail = f"\n--- last log lines of {name} ---\n{logs}" if logs else ""
        raise DeployFailed(f"{image} not deployed: {exc}{kept}{detail}") from None

    try:
        proxy.wait_switched(settings, name)
        smoke.wait_ready(f"http://127.0.0.1:{settings.proxy_port}", 10)
    except (proxy.ProxyError, smoke.SmokeFailure) as exc:
        _say(f"the proxy does not serve {name} after the switch ({exc}); switching back")
        proxy.switch(settings, old.port if old else None, old.container if old else "none")
        _discard(settings, name)
        raise DeployFailed(f"{image} not deployed: proxy check failed: {exc}") from None

    # nginx retires an old worker only once its last request is answered, so when none is left
    # nothing can still be on its way to the old container.
    waited = proxy.wait_drained(settings.drain_seconds)
    if old is not None:
        _say(f"5/5 old requests drained in {waited:.1f} s; stopping {old.container}")
        try:
            engine.stop_and_remove(settings, old.container, settings.stop_timeout)
        except engine.EngineError as exc:
            _say(f"warning: could not remove {old.container}: {exc}")
    else:
        _say("5/5 no previous release to drain")
    _remove_strays(settings, keep={name})
    _say(f"done: {image} (model {version}) live in {time.monotonic() - start:.1f} s")
    return state.Release(
        image=image,
        image_id=image_id,
        container=name,
        port=port,
        model_version=version,
        deployed_at=datetime.now(UTC).isoformat(timespec="seconds"),
    )


def _discard(settings: DeploySettings, name: str) -> None:
    try:
        engine.remove(settings, name)
    except engine.EngineError as exc:
        _say(f"warning: could not remove {name}: {exc}")


def _remove_strays(settings: DeploySettings, keep: set[str]) -> None:
    """Containers of ours left behind by an interrupted deploy (never the live one)."""
    try:
        names = engine.docker(
            settings,
            "ps",
            "--all",
            "--filter",
            f"label={engine.OWNER_LABEL}={settings.container_prefix}",
            "--format",
            "{{.Names}}",
        ).split()
    except engine.EngineError:
        return
    for stray in set(names) - keep:
        _say(f"removing leftover container {stray}")
        _discard(settings, stray)


def status(settings: DeploySettings) -> dict[str, Any]:
    current = state.load(settings.state_file)
    live_port = proxy.upstream_port(settings.proxy_conf)
    report: dict[str, Any] = {
        "proxy": {"conf": str(settings.proxy_conf), "upstream_port": live_port}
    }
    for role, release in (("current", current.current), ("previous", current.previous)):
        if release is None:
            report[role] = None
            continue
        info = engine.inspect(settings, release.container) if role == "current" else None
        container_state = (info or {}).get("State", {})
        report[role] = {
            **asdict(release),
            "running": bool(container_state.get("Running")),
            "health": container_state.get("Health", {}).get("Status"),
        }
    report["consistent"] = current.current is not None and live_port == current.current.port
    return report
