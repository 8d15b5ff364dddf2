"""Tabular models served over REST from verified, self-describing ONNX artifacts."""

from typing import Any


def __getattr__(name: str) -> Any:
    # Both lazily: the server's main process, which only supervises workers, and the training
    # and CLI commands pay neither for Flask nor for importlib.metadata (~40 ms, ~5 MB).
    if name == "create_app":
        from inference_service.app import create_app

        return create_app
    if name == "__version__":
        from importlib.metadata import PackageNotFoundError, version

        try:
            return version("inference-service")
        except PackageNotFoundError:  # a source tree that was never installed
            return "0.0.0"
    raise AttributeError(name)
