"""`inference-service deploy`: zero-downtime releases and canaries on one Docker host behind nginx.

A deploy starts the new container beside the old one, waits for its readiness on its own Unix
socket, smoke-tests it there, then points nginx's routing link at it (a rename: no nginx
reload), waits until the old release has no request left and stops it. A canary (`deploy up
--help`) first gets a share of the requests while both releases' own metrics are compared; it
is then promoted the same way or removed. Any failure before the switch removes the new container
and leaves the old one serving.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import sys
import time
from collections.abc import Mapping
from dataclasses import asdict, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from inference_service import smoke
from inference_service.deploy import canary, engine, proxy, state, tls, uds
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
        "canary_seconds": getattr(args, "canary_seconds", None),
        "container_prefix": args.container_prefix,
    }
    percent = getattr(args, "canary", None)
    if percent is not None and not 0 < percent < 100:
        parser.error(f"--canary must be a percentage between 1 and 99, got {percent}")
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
                up(settings, args.image, os.environ, percent)
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
        epilog="Every setting is an environment variable (a flag above overrides it): "
        + ", ".join(ENV.values())
        + ". See docs/deploy.md.",
    )
    parser.add_argument("--proxy-port", type=int, help=f"public port ({ENV['proxy_port']}, 6666)")
    parser.add_argument("--proxy-conf", type=Path, help=f"nginx config file ({ENV['proxy_conf']})")
    parser.add_argument(
        "--state-dir", type=Path, help=f"where state.json lives ({ENV['state_dir']})"
    )
    parser.add_argument("--nginx", help="nginx command prefix, e.g. 'sudo -n /usr/sbin/nginx'")
    parser.add_argument("--container-prefix", help="container name prefix")
    actions = parser.add_subparsers(dest="action", required=True)
    actions.add_parser("install", help="check Docker and nginx, write the proxy config, run nginx")
    up_parser = actions.add_parser("up", help="deploy IMAGE with zero downtime")
    up_parser.add_argument("image", help="image reference, e.g. inference-service:latest")
    up_parser.add_argument(
        "--canary",
        type=int,
        metavar="PERCENT",
        help="send PERCENT of requests to IMAGE first, compare, then promote or roll back",
    )
    up_parser.add_argument(
        "--canary-seconds",
        type=float,
        help=f"how long the canary is watched ({ENV['canary_seconds']}, 300)",
    )
    rollback_parser = actions.add_parser("rollback", help="go back to the previous release")
    for sub in (up_parser, rollback_parser):
        sub.add_argument(
            "--ready-timeout",
            type=float,
            help=f"seconds to wait for readiness ({ENV['ready_timeout']})",
        )
        sub.add_argument(
            "--drain-seconds",
            type=float,
            help=f"max seconds to drain the old release ({ENV['drain_seconds']})",
        )
    actions.add_parser("status", help="print the releases, the routing and any canary, as JSON")
    tls.add_parser(actions)
    return parser


def _say(message: str) -> None:
    sys.stderr.write(f"{datetime.now(UTC).strftime('%H:%M:%S')} deploy: {message}\n")
    sys.stderr.flush()


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def install(settings: DeploySettings) -> int:
    """Idempotent host preparation: tools present, proxy config written, nginx running."""
    version = engine.docker(settings, "version", "--format", "{{.Server.Version}}", timeout=30)
    _say(f"Docker engine {version}")
    proxy.nginx(settings, "-t")  # present, and its configuration valid (also allowed by sudo)
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    current = state.load(settings.state_file).current
    if current is not None and not current.socket:
        # Its container listens on a TCP port the new config does not know: the next
        # `deploy up` writes the config right after it switches, so no request is refused.
        proxy.prepare(settings)
        _say(f"{current.container} predates socket routing; `deploy up` will switch the config")
        return 0
    done = proxy.ensure_config(settings)
    _say(f"{done}; public port {settings.proxy_port}, locations in {proxy.snippet_path(settings)}")
    return 0


def up(
    settings: DeploySettings,
    image: str,
    environ: Mapping[str, str],
    canary_percent: int | None = None,
) -> state.Release:
    proxy.prepare(settings)  # without a prior `install`, the first switch writes the config
    before = _recover(settings, state.load(settings.state_file))
    image_id = engine.image_id(settings, image)
    if canary_percent:
        return _canary(settings, image, image_id, before, environ, canary_percent)
    return _release(settings, image, image_id, before, environ)


def rollback(settings: DeploySettings, environ: Mapping[str, str]) -> state.Release:
    proxy.prepare(settings)
    before = _recover(settings, state.load(settings.state_file))
    if before.previous is None:
        raise DeployFailed(f"no previous release recorded in {settings.state_file}")
    target = before.previous
    _say(f"rolling back to {target.image} (model {target.model_version})")
    return _release(settings, target.image, target.image_id, before, environ)


def _start(
    settings: DeploySettings, image: str, image_id: str, environ: Mapping[str, str], role: str
) -> state.Release:
    """Steps 1-3: a new container on its own socket, ready and smoke-tested there."""
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    name = f"{settings.container_prefix}-{stamp}-{secrets.token_hex(2)}"
    sock = proxy.release_socket(settings, name)
    _say(f"1/5 starting {name} ({role}) from {image} on {sock}")
    try:
        engine.run(settings, image_id, name, sock.parent, environ)
        _say(f"2/5 waiting up to {settings.ready_timeout:g} s for readiness")
        version = engine.wait_ready(settings, name, sock, settings.ready_timeout)
        _say(f"3/5 smoke test on {name}'s socket (model {version})")
        with uds.bridge(sock) as direct:
            smoke.check(direct, smoke.default_key(environ))
    except (engine.EngineError, smoke.SmokeFailure, OSError) as exc:
        logs = engine.logs_tail(settings, name)
        _discard(settings, name)
        detail = f"\n--- last log lines of {name} ---\n{logs}" if logs else ""
        raise DeployFailed(f"{image} not deployed: {exc}{detail}") from None
    return state.Release(
        image=image,
        image_id=image_id,
        container=name,
        socket=str(sock),
        model_version=version,
        deployed_at=_now(),
    )


def _release(
    settings: DeploySettings,
    image: str,
    image_id: str,
    before: state.State,
    environ: Mapping[str, str],
) -> state.Release:
    """The five steps. Raises DeployFailed with the reason; the old release is then untouched."""
    start = time.monotonic()
    old = before.current
    try:
        new = _start(settings, image, image_id, environ, "release")
    except DeployFailed as exc:
        kept = f"; {old.container} keeps serving" if old else ""
        raise DeployFailed(f"{exc}{kept}") from None
    _say(f"4/5 routing :{settings.proxy_port} to {new.container} (symlink rename, no reload)")
    _switch(settings, new, old)
    # Live: from here on the state must say so, whatever happens to the old release.
    state.save(settings.state_file, replace(before, current=new, previous=old))
    _retire(settings, old)
    _remove_strays(settings, keep={new.container})
    _say(f"done: {image} (model {new.model_version}) live in {time.monotonic() - start:.1f} s")
    return new


def _switch(settings: DeploySettings, new: state.Release, old: state.Release | None) -> None:
    """Every bucket to `new`, then check nginx serves it; switches back on failure."""
    proxy.set_role(settings, proxy.STABLE, new.container)
    proxy.set_split(settings, 0)
    proxy.set_role(settings, proxy.CANARY, None)
    proxy.publish(settings)
    try:
        proxy.ensure_config(settings)  # a no-op once installed; the first switch from TCP
        smoke.wait_ready(f"http://127.0.0.1:{settings.proxy_port}", 10)
        seen = proxy.serving(settings)
        if seen is None or seen[proxy.STABLE] != new.container:
            raise proxy.ProxyError(f"nginx reports {seen} instead of {new.container}")
    except (proxy.ProxyError, smoke.SmokeFailure) as exc:
        _say(f"the proxy does not serve {new.container} after the switch ({exc}); switching back")
        proxy.set_role(settings, proxy.STABLE, old.container if old and old.socket else None)
        proxy.publish(settings)
        _discard(settings, new.container)
        raise DeployFailed(f"{new.image} not deployed: proxy check failed: {exc}") from None


def _retire(settings: DeploySettings, old: state.Release | None) -> None:
    """Step 5: once no request is left on `old`, stop it (SIGTERM: it drains) and remove it."""
    if old is None:
        _say("5/5 no previous release to drain")
        return
    waited = _wait_idle(Path(old.socket), settings.drain_seconds) if old.socket else 0.0
    _say(f"5/5 {old.container} idle after {waited:.1f} s; stopping it")
    try:
        engine.stop_and_remove(settings, old.container, settings.stop_timeout)
    except engine.EngineError as exc:
        _say(f"warning: could not remove {old.container}: {exc}")
    shutil.rmtree(proxy.release_dir(settings, old.container), ignore_errors=True)


def _wait_idle(sock: Path, timeout: float, poll: float = 0.25) -> float:
    """Wait until a release no longer routed to has answered everything sent to it.

    Idle means its request count did not move between two scrapes and only the scrape itself is
    in flight. Returns the seconds waited; `timeout` bounds it.
    """
    start = time.monotonic()
    last: float | None = None
    while time.monotonic() - start < timeout:
        try:
            now = canary.scrape(sock, timeout=2)
        except OSError:
            break  # it is gone already
        if last is not None and now.requests == last and now.in_flight <= 1:
            break
        last = now.requests
        time.sleep(poll)
    return time.monotonic() - start


def _canary(
    settings: DeploySettings,
    image: str,
    image_id: str,
    before: state.State,
    environ: Mapping[str, str],
    percent: int,
) -> state.Release:
    stable = before.current
    if stable is None or not stable.socket:
        raise DeployFailed("a canary needs a live release to compare with; deploy without --canary")
    new = _start(settings, image, image_id, environ, f"canary at {percent} %")
    record = state.Canary(
        release=new, percent=percent, seconds=settings.canary_seconds, started_at=_now()
    )
    state.save(settings.state_file, replace(before, canary=record))
    try:
        verdict = _watch(settings, stable, new, percent)
    except BaseException:
        _say("interrupted: routing everything back to the stable release")
        _end_canary(settings, new)
        state.save(
            settings.state_file,
            replace(before, canary=replace(record, outcome="abandoned", ended_at=_now())),
        )
        raise
    figures = json.dumps(verdict.figures)
    done = replace(record, reasons=verdict.reasons, figures=verdict.figures, ended_at=_now())
    if not verdict.promote:
        _say(f"canary verdict: roll back ({'; '.join(verdict.reasons)}); figures {figures}")
        _end_canary(settings, new)
        proxy.count_verdict(settings, "rolled_back")
        state.save(
            settings.state_file, replace(before, canary=replace(done, outcome="rolled back"))
        )
        raise DeployFailed(
            f"{image} not deployed: canary rolled back: {'; '.join(verdict.reasons)}"
        )
    _say(f"canary verdict: promote; figures {figures}")
    _say(f"4/5 routing every bucket to {new.container} (symlink renames, no reload)")
    try:
        _switch(settings, new, stable)
    except DeployFailed as exc:
        failed = replace(done, outcome="rolled back", reasons=[str(exc)])
        proxy.count_verdict(settings, "rolled_back")
        state.save(settings.state_file, replace(before, canary=failed))
        raise
    # Promoted: from here on the state must say so, whatever happens to the old release.
    state.save(
        settings.state_file,
        state.State(current=new, previous=stable, canary=replace(done, outcome="promoted")),
    )
    proxy.count_verdict(settings, "promoted")
    _retire(settings, stable)
    _remove_strays(settings, keep={new.container})
    _say(f"done: {image} (model {new.model_version}) promoted")
    return new


def _watch(
    settings: DeploySettings, stable: state.Release, new: state.Release, percent: int
) -> canary.Verdict:
    """Give the canary its share for canary_seconds; stops early when it is clearly failing."""
    stable_sock, canary_sock = Path(stable.socket), Path(new.socket)
    try:
        base_stable, base_canary = canary.scrape(stable_sock), canary.scrape(canary_sock)
    except OSError as exc:
        return canary.Verdict(False, [f"metrics unreadable before the canary: {exc}"], {})
    proxy.set_role(settings, proxy.CANARY, new.container)
    proxy.set_split(settings, percent)
    proxy.publish(settings)
    _say(
        f"4/5 canary: {percent} % of requests to {new.container} for {settings.canary_seconds:g} s"
    )
    deadline = time.monotonic() + settings.canary_seconds
    poll = min(5.0, max(0.5, settings.canary_seconds / 10))
    while True:
        time.sleep(max(0.0, min(poll, deadline - time.monotonic())))
        try:
            window_stable = canary.scrape(stable_sock) - base_stable
            window_canary = canary.scrape(canary_sock) - base_canary
        except OSError as exc:
            return canary.Verdict(False, [f"the canary stopped answering: {exc}"], {})
        found = canary.figures(window_stable, window_canary)
        _say(f"canary so far: {json.dumps(found)}")
        if failing := canary.failures(settings, window_stable, window_canary):
            return canary.Verdict(False, failing, found)
        if time.monotonic() >= deadline:
            return canary.judge(settings, window_stable, window_canary)


def _end_canary(settings: DeploySettings, new: state.Release) -> None:
    """Every bucket back to the stable release, then the canary drained and removed."""
    proxy.set_split(settings, 0)
    proxy.set_role(settings, proxy.CANARY, None)
    proxy.publish(settings)
    _retire(settings, new)


def _recover(settings: DeploySettings, before: state.State) -> state.State:
    """A canary left "watching" by a deploy that was killed: route it away and remove it."""
    if before.canary is None or before.canary.outcome != "watching":
        return before
    _say(f"a canary of {before.canary.release.container} was left unfinished; removing it")
    _end_canary(settings, before.canary.release)
    after = replace(before, canary=replace(before.canary, outcome="abandoned", ended_at=_now()))
    state.save(settings.state_file, after)
    return after


def _discard(settings: DeploySettings, name: str) -> None:
    try:
        engine.remove(settings, name)
    except engine.EngineError as exc:
        _say(f"warning: could not remove {name}: {exc}")
    shutil.rmtree(proxy.release_dir(settings, name), ignore_errors=True)


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
    routing = proxy.routing(settings)
    report: dict[str, Any] = {
        "proxy": {
            "conf": str(settings.proxy_conf),
            "locations": str(proxy.snippet_path(settings)),
            "routing": routing,
        }
    }
    releases = (("current", current.current), ("previous", current.previous))
    for role, release in releases:
        report[role] = None if release is None else _described(settings, release, role == "current")
    live = current.canary
    report["canary"] = asdict(live) if live else None
    if live and live.outcome == "watching":
        report["canary"]["container"] = _described(settings, live.release, True)
    expected_canary = live.release.container if live and live.outcome == "watching" else None
    report["consistent"] = (
        current.current is not None
        and routing[proxy.STABLE] == current.current.container
        and routing[proxy.CANARY] == expected_canary
        and (expected_canary is not None or routing["canary_percent"] == 0)
    )
    return report


def _described(settings: DeploySettings, release: state.Release, inspect: bool) -> dict[str, Any]:
    info = engine.inspect(settings, release.container) if inspect else None
    container_state = (info or {}).get("State", {})
    return {
        **asdict(release),
        "running": bool(container_state.get("Running")),
        "health": container_state.get("Health", {}).get("Status"),
    }
