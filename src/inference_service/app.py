"""The Flask app factory. It wires; it does not decide."""

from __future__ import annotations

import logging

from flask import Flask

from inference_service import api
from inference_service.config import Settings
from inference_service.errors import ArtifactError
from inference_service.model import Model

log = logging.getLogger(__name__)


def create_app(settings: Settings | None = None) -> Flask:
    """Build the app and load the current model.

    A missing or tampered artifact does not stop the process: it logs the reason and stays
    unready (readiness and inference answer 503) until a valid model appears.
    """
    settings = settings or Settings.from_env()
    app = Flask(__name__)
    app.config["SETTINGS"] = settings
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    try:
        state = api.Live(Model.load(settings.model_dir))
        log.info("serving model %s from %s", state.model.version, settings.model_dir)  # type: ignore[union-attr]
    except ArtifactError as exc:
        log.error("no model served: %s", exc)
        state = api.Live(error=str(exc))
    app.extensions["inference"] = state
    api.init_app(app)
    return app
