"""Tabular models served over REST from verified, self-describing ONNX artifacts."""

from importlib.metadata import PackageNotFoundError, version
from typing import Any

try:
    __version__ = version("inference-service")
except PackageNotFoundError:  # a source tree that was never installed
    __version__ = "0.0.0"


def __getattr__(name: str) -> Any:
    # `create_app` is re-exported lazily so that training and the CLI never pay for Flask.
    if name == "create_app":
        from inference_service.app import create_app

        return create_app
    raise AttributeError(name)
