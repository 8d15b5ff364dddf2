"""One typed settings object, read from INFERENCE_* environment variables."""

from __future__ import annotations

import logging
import os
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
    def from_env(cls, environ: dict[str, str] | None = None) -> Settings:
        """Read every field from `INFERENCE_<FIELD>`; unset variables keep their default."""
        env = os.environ if environ is None else environ
        values: dict[str, object] = {}
        for f in fields(cls):
            raw = env.get(ENV_PREFIX + f.name.upper())
            if raw is None or raw == "":
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
                raise ValueError(
                    f"{ENV_PREFIX}{f.name.upper()}={raw!r} is not a valid {type(default).__name__}"
                ) from None
        settings = cls(**values)  # type: ignore[arg-type]
        settings.check()
        return settings

    def check(self) -> None:
        """Refuse values that would make the server misbehave instead of failing later."""
        if not 0 < self.port < 65536:
            raise ValueError(f"{ENV_PREFIX}PORT must be 1-65535, got {self.port}")
        if self.uds and not Path(self.uds).parent.is_dir():
            missing = Path(self.uds).parent
            raise ValueError(
                f"{ENV_PREFIX}UDS={self.uds!r}: the directory {missing} does not exist"
            )
        if self.workers < 1:
            raise ValueError(f"{ENV_PREFIX}WORKERS must be at least 1, got {self.workers}")
        if self.drift_min_rows < 1:
            raise ValueError(
                f"{ENV_PREFIX}DRIFT_MIN_ROWS must be at least 1, got {self.drift_min_rows}"
            )
        if self.max_rows < 1 or self.max_body_bytes < 1:
            raise ValueError("MAX_ROWS and MAX_BODY_BYTES must be positive")
        if not isinstance(logging.getLevelName(self.log_level.upper()), int):
            raise ValueError(f"LOG_LEVEL must be a logging level name, got {self.log_level!r}")
        if self.log_format not in ("json", "text"):
            raise ValueError(f"LOG_FORMAT must be json or text, got {self.log_format!r}")

    def model_names(self) -> tuple[str, ...]:
        return tuple(n.strip() for n in self.models.split(",") if n.strip())

    def keys(self) -> tuple[str, ...]:
        """The accepted API keys: the setting itself, or the lines of the file it names."""
        raw = self.api_keys.strip()
        if not raw:
            return ()
        if "," not in raw and os.path.isfile(raw):
            raw = Path(raw).read_text().replace("\n", ",")
        return tuple(k.strip() for k in raw.split(",") if k.strip())


def parse_bool(raw: str) -> bool:
    """true/false, 1/0, yes/no, on/off in any case; ValueError otherwise."""
    if raw.lower() in ("1", "true", "yes", "on"):
        return True
    if raw.lower() in ("0", "false", "no", "off"):
        return False
    raise ValueError(raw)
