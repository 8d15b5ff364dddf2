"""state.json: the current and the previous release and the last canary, replaced atomically."""

from __future__ import annotations

import fcntl
import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from inference_service.artifact import write_atomic


@dataclass(frozen=True)
class Release:
    image: str
    """The image as named at deploy time (a tag may move later)."""
    image_id: str
    """The image's content id; rollback starts exactly this."""
    container: str
    socket: str
    """The release's Unix socket on this host (empty for releases from before sockets)."""
    model_version: str
    deployed_at: str

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Release:
        return cls(
            image=str(raw["image"]),
            image_id=str(raw["image_id"]),
            container=str(raw["container"]),
            socket=str(raw.get("socket", "")),
            model_version=str(raw.get("model_version", "")),
            deployed_at=str(raw.get("deployed_at", "")),
        )


@dataclass(frozen=True)
class Canary:
    """A canary in progress (`outcome` "watching") or the verdict on the last one."""

    release: Release
    percent: int
    seconds: float
    started_at: str
    outcome: str = "watching"
    """watching, promoted or rolled back."""
    reasons: list[str] = field(default_factory=list)
    figures: dict[str, Any] = field(default_factory=dict)
    ended_at: str = ""

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Canary:
        return cls(
            release=Release.from_dict(raw["release"]),
            percent=int(raw["percent"]),
            seconds=float(raw["seconds"]),
            started_at=str(raw["started_at"]),
            outcome=str(raw.get("outcome", "watching")),
            reasons=[str(r) for r in raw.get("reasons", [])],
            figures=dict(raw.get("figures", {})),
            ended_at=str(raw.get("ended_at", "")),
        )


@dataclass(frozen=True)
class State:
    current: Release | None = None
    previous: Release | None = None
    canary: Canary | None = None

    def to_json(self) -> str:
        return json.dumps(
            {
                "current": asdict(self.current) if self.current else None,
                "previous": asdict(self.previous) if self.previous else None,
                "canary": asdict(self.canary) if self.canary else None,
            },
            indent=2,
        )


def load(path: Path) -> State:
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        return State()
    except ValueError as exc:
        raise ValueError(f"{path} is not valid JSON ({exc}); fix or remove it") from None
    return State(
        current=Release.from_dict(raw["current"]) if raw.get("current") else None,
        previous=Release.from_dict(raw["previous"]) if raw.get("previous") else None,
        canary=Canary.from_dict(raw["canary"]) if raw.get("canary") else None,
    )


def save(path: Path, state: State) -> None:
    write_atomic(path, (state.to_json() + "\n").encode())


class Busy(Exception):
    pass


@contextmanager
def lock(state_dir: Path) -> Iterator[None]:
    """One deploy at a time per host."""
    state_dir.mkdir(parents=True, exist_ok=True)
    with open(state_dir / "deploy.lock", "w") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise Busy(f"another deploy holds {state_dir / 'deploy.lock'}") from None
        yield
