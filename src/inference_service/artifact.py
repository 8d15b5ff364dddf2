"""The on-disk model format: read, verify checksums, write atomically.

models/                   the repository root (INFERENCE_MODEL_DIR)
  <name>/                 one directory per model
    current               one line: the live version (replaced atomically, last)
    <version>/model.onnx  the model
    <version>/model.json  the model card: signature, metrics, gates; holds the sha256 of model.onnx
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from inference_service.errors import ArtifactError

MODEL_FILE = "model.onnx"
CARD_FILE = "model.json"
POINTER_FILE = "current"


@dataclass(frozen=True)
class Artifact:
    path: Path
    onnx: bytes
    card: dict[str, Any]

    @property
    def version(self) -> str:
        return str(self.card["version"])


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def current_version(model_dir: Path) -> str:
    """The version `current` points to; ArtifactError when there is none."""
    try:
        version = (model_dir / POINTER_FILE).read_text().strip()
    except FileNotFoundError:
        raise ArtifactError(
            f"no model in {model_dir}: {POINTER_FILE} is missing (run `inference-service train`)"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ArtifactError(f"{model_dir / POINTER_FILE} cannot be read: {exc}") from None
    check_version(model_dir, version)
    return version


def check_version(model_dir: Path, version: str) -> None:
    """A version is a plain directory name that resolves inside `model_dir` (no `..`, no absolute
    path, no symlink leading elsewhere)."""
    if not version or "/" in version or "\\" in version or version.startswith("."):
        raise ArtifactError(f"{model_dir / POINTER_FILE} holds an invalid version {version!r}")
    root = model_dir.resolve()
    if (model_dir / version).resolve().parent != root:
        raise ArtifactError(f"model {version} resolves outside {model_dir}; refused")


def versions(model_dir: Path) -> list[str]:
    """Every complete version directory (with a model card), oldest first."""
    found = [
        p for p in model_dir.iterdir() if not p.name.startswith(".") and (p / CARD_FILE).is_file()
    ]
    return [p.name for p in sorted(found, key=lambda p: (p / CARD_FILE).stat().st_mtime)]


def read(model_dir: Path, version: str | None = None) -> Artifact:
    """Read a version (default: current) and verify model.onnx against the card's sha256."""
    version = version or current_version(model_dir)
    check_version(model_dir, version)
    path = model_dir / version
    try:
        card = json.loads((path / CARD_FILE).read_bytes())
        onnx = (path / MODEL_FILE).read_bytes()
    except FileNotFoundError as exc:
        raise ArtifactError(f"model {version} is incomplete: {exc.filename} is missing") from None
    except OSError as exc:  # unreadable (permissions, I/O): not servable, but not a crash either
        raise ArtifactError(f"model {version} cannot be read: {exc}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ArtifactError(f"{path / CARD_FILE} is not valid JSON: {exc}") from None
    if not isinstance(card, dict) or card.get("version") != version:
        raise ArtifactError(f"{path / CARD_FILE} does not describe version {version}")
    actual = sha256(onnx)
    if actual != card.get("onnx_sha256"):
        raise ArtifactError(
            f"{path / MODEL_FILE} fails its checksum: sha256 {actual}, "
            f"model card says {card.get('onnx_sha256')}"
        )
    return Artifact(path, onnx, card)


def write(
    model_dir: Path,
    onnx: bytes,
    card: dict[str, Any],
    extras: Callable[[Path], None] | None = None,
    promote: bool = True,
) -> Path:
    """Write a version, then (if `promote`) move `current` to it. Each step is atomic.

    Files go to a temporary directory that is fsynced and renamed into place, so a crash leaves
    either no new version or a complete one; `current` is replaced last, so readers never see a
    pointer to a half-written model. `extras(directory)` may add files (plots, a card in Markdown).
    """
    version = str(card["version"])
    model_dir.mkdir(parents=True, exist_ok=True)
    final = model_dir / version
    if not final.exists():
        staging = Path(tempfile.mkdtemp(prefix=f".{version}-", dir=model_dir))
        try:
            _write_file(staging / MODEL_FILE, onnx)
            _write_file(staging / CARD_FILE, json.dumps(card, indent=2).encode() + b"\n")
            if extras is not None:
                extras(staging)
            _fsync_dir(staging)
            os.rename(staging, final)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
    read(model_dir, version)  # never point at something that does not verify
    if promote:
        point_to(model_dir, version)
    return final


def point_to(model_dir: Path, version: str) -> None:
    """Atomically make `version` the current model."""
    write_atomic(model_dir / POINTER_FILE, version.encode() + b"\n")


def write_atomic(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Replace `path` so readers see the old or the new content, never a mix, even after a crash.

    A temporary file in the same directory is written, fsynced and renamed over `path`.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def _write_file(path: Path, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
