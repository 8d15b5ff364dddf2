"""One typed settings object, read from INFERENCE_* environment variables."""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path

ENV_PREFIX = "INFERENCE_"


@dataclass(frozen=True)
class Settings:
    host: str = "127.0.0.1"
    """Interface to bind. The container image sets 0.0.0.0."""
    port: int = 6666
    """TCP port of the HTTP server."""
    uds: str = ""
    """Unix socket path to listen on instead of host and port. The socket is made connectable by
    every user (0666), so the directory holding it decides who may connect."""
    workers: int = 1
    """Worker processes. One worker uses about one core."""
    threads: int = 0
    """Python threads per worker; 0: 128 (see server.threads: slow clients each hold one)."""
    pin_workers: bool = True
    """Keep each worker on a core of its own (while there are free ones). A worker's Python
    threads handing the interpreter lock to each other across cores serve a third as many
    requests as on one core (docs/performance.md)."""
    share_port: bool = False
    """Let a second server bind the same port (granian's SO_REUSEPORT); off: refuse a busy port."""
    model_dir: Path = Path("models")
    """The model repository: one directory per model (`<name>/<version>/`, `<name>/current`).
    A directory that itself holds `current` is served as the one model it contains."""
    models: str = ""
    """Comma-separated model names to serve; empty: every model in the repository."""
    default_model: str = "iris"
    """The model behind the original `POST /inference`."""
    max_body_bytes: int = 1024 * 1024
    """Largest request body accepted; larger bodies get 413."""
    max_rows: int = 10_000
    """Most records (or tensor rows) in one request; more get 413."""
    log_level: str = "INFO"
    """Python logging level name."""
    log_format: str = "json"
    """`json` (one object per line) or `text`."""
    access_log: bool = True
    """Log one line per request (health probes excepted)."""
    reload_interval: float = 2.0
    """Seconds between checks of the `current` pointer for a new model; 0 disables."""
    api_keys: str = ""
    """Comma-separated bearer keys, or a path to a file with one key per line. Empty: no auth."""
    drain_seconds: int = 20
    """On SIGTERM, how long in-flight requests may take before workers are killed."""
    metrics_dir: str = field(default="")
    """Directory for multi-process metrics; defaults to a fresh directory under /tmp."""
    drift_min_rows: int = 200
    """Live rows a model version must see before its input drift score (PSI) is reported."""

    @classmethod
    def from_env(
        cls, environ: Mapping[str, str] | None = None, overrides: Mapping[str, object] | None = None
    ) -> Settings:
        """Read every field from `INFERENCE_<FIELD>`; unset variables keep their default.

        `overrides` (command-line flags) win, and the environment's value for an overridden field
        is not even parsed, so a bad one cannot get in the way.
        """
        env = os.environ if environ is None else environ
        values: dict[str, object] = dict(overrides or {})
        for f in fields(cls):
            raw = env.get(ENV_PREFIX + f.name.upper())
            if raw is None or raw == "" or f.name in values:
                continue
            default = f.default
            try:
                if isinstance(default, bool):
                    values[f.name] = parse_bool(raw)
                elif isinstance(default, int | float | Path):
                    values[f.name] = type(default)(raw)
                else:
                    values[f.name] = raw
            except ValueError:
                kind = {"bool": "true or false", "int": "an integer", "float": "a number"}.get(
                    type(default).__name__, f"a {type(default).__name__}"
                )
                raise ValueError(
                    f"{ENV_PREFIX}{f.name.upper()} must be {kind}, got {raw!r}"
                ) from None
        settings = cls(**values)  # type: ignore[arg-type]
        settings.check()
        return settings

    def check(self) -> None:
        """Refuse values that would make the server misbehave, one message style naming the
        variable, instead of failing later (or, for the keys, failing open)."""

        def refuse(name: str, rule: str, value: object) -> ValueError:
            return ValueError(f"{ENV_PREFIX}{name} must be {rule}, got {value!r}")

        if not 0 < self.port < 65536:
            raise refuse("PORT", "1-65535", self.port)
        if self.uds and not Path(self.uds).parent.is_dir():
            raise refuse("UDS", "a path in an existing directory", self.uds)
        if self.workers < 1:
            raise refuse("WORKERS", "at least 1", self.workers)
        if self.threads < 0:
            raise refuse("THREADS", "0 (automatic) or more", self.threads)
        if self.drift_min_rows < 1:
            raise refuse("DRIFT_MIN_ROWS", "at least 1", self.drift_min_rows)
        if self.max_rows < 1:
            raise refuse("MAX_ROWS", "at least 1", self.max_rows)
        if self.max_body_bytes < 1:
            raise refuse("MAX_BODY_BYTES", "at least 1", self.max_body_bytes)
        if not isinstance(logging.getLevelName(self.log_level.upper()), int):
            raise refuse("LOG_LEVEL", "a logging level name (DEBUG, INFO, ...)", self.log_level)
        if self.log_format not in ("json", "text"):
            raise refuse("LOG_FORMAT", "json or text", self.log_format)
        if not (self.reload_interval >= 0 and math.isfinite(self.reload_interval)):
            raise refuse("RELOAD_INTERVAL", "0 (off) or a positive number", self.reload_interval)
        if self.drain_seconds < 0:
            raise refuse("DRAIN_SECONDS", "0 or more", self.drain_seconds)
        self.keys()  # a keys setting that yields no usable key stops the process

    def model_names(self) -> tuple[str, ...]:
        return tuple(n.strip() for n in self.models.split(",") if n.strip())

    def keys(self) -> tuple[str, ...]:
        """The accepted API keys: the setting itself (comma-separated), or the lines of the file
        it names. Fails closed: a file that is missing or unreadable, a setting that yields no
        key, or a key that is not printable ASCII is a ValueError, never "no auth"."""
        raw = self.api_keys.strip()
        if not raw:
            return ()
        name = f"{ENV_PREFIX}API_KEYS"
        # A path: absolute or explicitly relative, or an existing file. Inline keys may hold '/'.
        if "," not in raw and (raw.startswith(("/", ".")) or os.path.isfile(raw)):
            try:
                text = Path(raw).read_text()
            except (OSError, UnicodeDecodeError) as exc:
                reason = getattr(exc, "strerror", None) or exc
                raise ValueError(
                    f"{name} names the file {raw}, which cannot be read: {reason}"
                ) from None
            keys = tuple(k.strip() for k in text.splitlines() if k.strip())
            source = f"the file {raw}"
        else:
            keys = tuple(k.strip() for k in raw.split(",") if k.strip())
            source = "the setting"
        if not keys:
            raise ValueError(f"{name}: {source} holds no key; leave it empty to turn auth off")
        for i, key in enumerate(keys):
            if not (key.isascii() and key.isprintable()) or " " in key:
                raise ValueError(
                    f"{name}: key {i + 1} of {source} has a character that is not printable "
                    "ASCII or a space; HTTP headers carry such keys inconsistently"
                )
        return keys


def parse_bool(raw: str) -> bool:
    """true/false, 1/0, yes/no, on/off in any case; ValueError otherwise."""
    if raw.lower() in ("1", "true", "yes", "on"):
        return True
    if raw.lower() in ("0", "false", "no", "off"):
        return False
    raise ValueError(raw)
