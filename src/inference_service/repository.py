"""Every model under the repository root, each loaded, reloaded and judged ready on its own.

Each model directory has a `current` pointer that a watcher thread checks; a version that verifies
goes live by replacing the slot's model whole, so in-flight requests finish on the model they
started with. A version that fails verification is refused, logged and counted, and the old one
keeps serving. One model's broken artifact never affects another.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from pathlib import Path

from inference_service import artifact
from inference_service.config import Settings
from inference_service.errors import ArtifactError, ModelNotReady, NotFound
from inference_service.model import Model
from inference_service.observability import Metrics

log = logging.getLogger(__name__)


@dataclass
class Slot:
    """One model's live state. `model` is swapped whole by a reload, never mutated."""

    name: str
    directory: Path
    model: Model | None = None
    error: str | None = None
    refused: tuple[str, int] | None = None

    def ready_model(self) -> Model:
        model = self.model  # read once: a reload may swap it meanwhile
        if model is None:
            raise ModelNotReady(
                f"Model {self.name!r} is not loaded: {self.error or 'still starting'}."
            )
        return model


class Repository:
    def __init__(self, settings: Settings, metrics: Metrics) -> None:
        self.root = settings.model_dir
        self.wanted = settings.model_names()
        self.metrics = metrics
        self.slots: dict[str, Slot] = {}
        self._default = settings.default_model
        self._lock = threading.Lock()
        self._stop = threading.Event()

    # --- what is served ------------------------------------------------------------------------

    def directories(self) -> dict[str, Path]:
        """Model name -> directory. A root that holds `current` itself is one model."""
        if (self.root / artifact.POINTER_FILE).exists():
            return {self._single_name(): self.root}
        try:
            found = {
                p.name: p
                for p in sorted(self.root.iterdir())
                if p.is_dir() and not p.name.startswith(".")
            }
        except OSError:  # a missing root: `problem` says so; the watcher tries again later
            found = {}
        if not self.wanted:
            return found
        return {name: found.get(name, self.root / name) for name in self.wanted}

    def _single_name(self) -> str:
        """A root that is one model's directory serves it under the name its card gives."""
        try:
            return str(artifact.read(self.root).card["name"])
        except (ArtifactError, KeyError):
            return self.root.resolve().name

    @property
    def default(self) -> str | None:
        """The model behind `POST /inference`: INFERENCE_DEFAULT_MODEL, or the only model."""
        if self._default in self.slots:
            return self._default
        return next(iter(self.slots)) if len(self.slots) == 1 else None

    def get(self, name: str) -> Slot:
        slot = self.slots.get(name)
        if slot is None:
            raise NotFound(f"Model {name!r} not found; this server serves {self.names()}.")
        return slot

    def names(self) -> str:
        return ", ".join(repr(n) for n in self.slots) or "no models"

    def model(self, name: str, version: str | None = None) -> Model:
        model = self.get(name).ready_model()
        if version not in (None, model.version):
            raise NotFound(
                f"Model {name!r} version {version!r} not found; live is {model.version!r}."
            )
        return model

    def default_model(self) -> Model:
        name = self.default
        if name is None:
            raise NotFound(
                f"No default model: INFERENCE_DEFAULT_MODEL={self._default!r} is not served "
                f"(this server serves {self.names()}); use /models/<name>/inference."
            )
        return self.get(name).ready_model()

    @property
    def problem(self) -> str:
        """Why nothing is served, when the repository has no model at all."""
        if not self.root.is_dir():
            return f"the model directory {self.root} does not exist (INFERENCE_MODEL_DIR)"
        return f"no model in {self.root} (run `inference-service train --all`)"

    @property
    def ready(self) -> bool:
        return bool(self.slots) and all(s.model is not None for s in self.slots.values())

    # --- loading -------------------------------------------------------------------------------

    def load(self) -> None:
        """The first load, at start-up: a model that fails stays unready, with the reason."""
        with self._lock:
            for name, directory in self.directories().items():
                self._add(name, directory)

    def _add(self, name: str, directory: Path) -> None:
        slot = self.slots[name] = Slot(name, directory)
        self.metrics.model_seen(name)
        if not directory.is_dir():
            slot.error = f"no model directory {directory}"
            log.error("model %s not served: %s", name, slot.error)
            return
        try:
            model = Model.load(directory)
        except ArtifactError as exc:
            slot.error = str(exc)
            log.error("model %s not served: %s", name, exc)
            return
        self._go_live(slot, model)
        log.info("serving model %s %s from %s", name, model.version, directory)

    def check(self) -> list[str]:
        """Reload every model whose `current` changed, and add new model directories; returns
        the names of the models that went live."""
        changed = []
        with self._lock:
            for name, directory in self.directories().items():
                if name not in self.slots:
                    self._add(name, directory)
                    if self.slots[name].model is not None:
                        changed.append(name)
                elif self._check(self.slots[name]):
                    changed.append(name)
        return changed

    def _check(self, slot: Slot) -> bool:
        pointer = slot.directory / artifact.POINTER_FILE
        try:
            stamp = pointer.stat().st_mtime_ns
        except OSError:
            return False
        try:
            version = artifact.current_version(slot.directory)
        except ArtifactError as exc:
            return self._refuse(slot, "<invalid pointer>", stamp, exc)
        live = slot.model
        if (live is not None and live.version == version) or slot.refused == (version, stamp):
            return False
        try:
            model = Model.load(slot.directory, version)
        except ArtifactError as exc:
            return self._refuse(slot, version, stamp, exc)
        self._go_live(slot, model, previous=live)
        self.metrics.reloads.labels(slot.name, "success").inc()
        log.info("model %s reloaded: %s -> %s", slot.name, _v(live), model.version)
        return True

    def _refuse(self, slot: Slot, version: str, stamp: int, exc: Exception) -> bool:
        if slot.refused == (version, stamp):
            return False
        slot.refused = (version, stamp)
        if slot.model is None:
            slot.error = str(exc)
        self.metrics.reloads.labels(slot.name, "refused").inc()
        log.error(
            "refused model %s version %s, still serving %s: %s",
            slot.name,
            version,
            _v(slot.model),
            exc,
        )
        return False

    def _go_live(self, slot: Slot, model: Model, previous: Model | None = None) -> None:
        slot.model, slot.error, slot.refused = model, None, None
        self.metrics.model_loaded(model, previous=previous)
        # Every worker scores drift for every live model, whichever worker a scrape reaches.
        self.metrics.drift.track(model.name, model.version, model.features, model.card)

    def start(self, interval: float) -> None:
        """Check every `interval` seconds in a daemon thread, until stop()."""

        def loop() -> None:
            while not self._stop.wait(interval):
                try:
                    self.check()
                except Exception:  # the watcher must outlive any surprise
                    log.exception("model watcher failed; retrying")

        threading.Thread(target=loop, name="model-watcher", daemon=True).start()

    def stop(self) -> None:
        self._stop.set()


def _v(model: Model | None) -> str:
    return model.version if model is not None else "nothing"
