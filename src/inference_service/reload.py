"""Hot model reload: each worker watches `current` and swaps in a new version once it verifies.

In-flight requests hold a reference to the model they started with, so they finish on it; new
requests see the new one. A version that fails verification is refused, logged and counted, and
the old model keeps serving. (SIGHUP to the server makes granian replace its workers gracefully;
each new worker loads `current` at start.)
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

from inference_service import artifact
from inference_service.api import Live
from inference_service.errors import ArtifactError
from inference_service.model import Model
from inference_service.observability import Metrics

log = logging.getLogger(__name__)


class Reloader:
    def __init__(self, state: Live, model_dir: Path, metrics: Metrics) -> None:
        self.state = state
        self.model_dir = model_dir
        self.metrics = metrics
        self._refused: tuple[str, int] | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()

    def check(self) -> bool:
        """Load `current` if it changed; True when a new model went live."""
        with self._lock:
            pointer = self.model_dir / artifact.POINTER_FILE
            try:
                stamp = pointer.stat().st_mtime_ns
                version = artifact.current_version(self.model_dir)
            except (OSError, ArtifactError):
                return False
            live = self.state.model
            if (live is not None and live.version == version) or self._refused == (version, stamp):
                return False
            try:
                model = Model.load(self.model_dir, version)
            except ArtifactError as exc:
                self._refused = (version, stamp)
                self.metrics.reloads.labels("refused").inc()
                log.error("refused model %s, still serving %s: %s", version, _v(live), exc)
                return False
            self._go_live(model, previous=live)
            self.metrics.reloads.labels("success").inc()
            log.info("model reloaded: %s -> %s", _v(live), model.version)
            return True

    def load(self) -> None:
        """The first load, at start-up: a failure leaves the process unready, with the reason."""
        try:
            model = Model.load(self.model_dir)
        except ArtifactError as exc:
            log.error("no model served: %s", exc)
            self.state.error = str(exc)
            return
        self._go_live(model)
        log.info("serving model %s from %s", model.version, self.model_dir)

    def _go_live(self, model: Model, previous: Model | None = None) -> None:
        self.state.model, self.state.error = model, None
        self.metrics.model_loaded(model.name, model.version, model.loaded_at, previous=previous)
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
