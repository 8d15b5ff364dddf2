"""Logging for the server process and its workers: JSON lines (or text), granian's lines included.

Kept apart from observability (Flask, Prometheus, the model runtime) so that the server's main
process, which only supervises workers, does not import what only workers need.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any

from inference_service.config import Settings


def logging_dictconfig(settings: Settings) -> dict[str, Any]:
    """The server's own log lines (granian's) in the same format and level as ours."""
    formatter: dict[str, Any] = (
        {"()": f"{__name__}.JsonFormatter"}
        if settings.log_format == "json"
        else {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}
    )
    handler = {
        "class": "logging.StreamHandler",
        "formatter": "default",
        "stream": "ext://sys.stderr",
        "filters": ["sized_on_purpose"],
    }
    logger = {"handlers": ["console"], "level": settings.log_level.upper(), "propagate": False}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"default": formatter},
        "filters": {"sized_on_purpose": {"()": f"{__name__}.ThreadPoolNotice"}},
        "handlers": {"console": handler},
        "loggers": {"_granian": logger, "granian.access": logger},
    }


class ThreadPoolNotice(logging.Filter):
    """Drops granian's start-up warning that the thread pool outnumbers the cores: the pool is
    sized for clients that hold a thread while their body arrives, not for CPU work (see
    server.threads), so the warning would ask users to act on nothing."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Configuration allows spawning up to")


def configure_logging(settings: Settings) -> None:
    """Root logging once per process: JSON lines or plain text, at the configured level."""
    root = logging.getLogger()
    if getattr(root, "_inference_configured", False):
        return
    handler = logging.StreamHandler(sys.stderr)
    if settings.log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root.handlers[:] = [handler]
    root.setLevel(settings.log_level.upper())
    root._inference_configured = True  # type: ignore[attr-defined]


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": iso(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            line["traceback"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False, separators=(",", ":"))


def iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="milliseconds")
