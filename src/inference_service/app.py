"""The Flask app factory. It wires; it does not decide."""

from __future__ import annotations

import logging

from flask import Flask

from inference_service import api, logs, observability, openapi
from inference_service.config import Settings
from inference_service.repository import Repository

log = logging.getLogger(__name__)


def create_app(settings: Settings | None = None) -> Flask:
    """Build the app and load every model of the repository.

    A missing or tampered artifact does not stop the process: that model logs the reason and
    stays unready (its inference answers 503, readiness too) until a valid version appears in
    its `current`; the other models serve meanwhile.
    """
    settings = settings or Settings.from_env()
    logs.configure_logging(settings)
    app = Flask(__name__)
    app.config["SETTINGS"] = settings
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    metrics = observability.Metrics(settings.drift_min_rows)
    repository = Repository(settings, metrics)
    app.extensions["inference"] = api.Live(settings, repository, metrics)
    app.extensions["repository"] = repository
    repository.load()
    if settings.reload_interval > 0:
        repository.start(settings.reload_interval)
    api.init_app(app)
    openapi.init_app(app)
    observability.init_app(app, settings, metrics)
    return app
