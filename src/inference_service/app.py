"""The Flask app factory. It wires; it does not decide."""

from __future__ import annotations

import logging

from flask import Flask

from inference_service import api, observability, openapi
from inference_service.config import Settings
from inference_service.reload import Reloader

log = logging.getLogger(__name__)


def create_app(settings: Settings | None = None) -> Flask:
    """Build the app and load the current model.

    A missing or tampered artifact does not stop the process: it logs the reason and stays
    unready (readiness and inference answer 503) until a valid model appears in `current`.
    """
    settings = settings or Settings.from_env()
    observability.configure_logging(settings)
    app = Flask(__name__)
    app.config["SETTINGS"] = settings
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    metrics = observability.init_app(app, settings)
    state = api.Live(settings)
    app.extensions["inference"] = state
    reloader = Reloader(state, settings.model_dir, metrics)
    app.extensions["reloader"] = reloader
    reloader.load()
    if settings.reload_interval > 0:
        reloader.start(settings.reload_interval)
    api.init_app(app)
    openapi.init_app(app)
    return app
