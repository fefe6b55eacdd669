"""The model archive: every model file the service has served, by its sha256.

Replay (``cds_service.audit.replay``) and the forecast self-check take a record's model
from here by the sha256 the record names, never from what is installed now, so a record
stays replayable after an upgrade.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from onnx_models.errors import ModelFileError
from onnx_models.registry import LoadedModel, ModelRegistry, load_model


class ModelNotArchived(Exception):
    """The record names a model file (by sha256) that the archive does not hold."""


class ArchivedModelChanged(Exception):
    """The archive's file for a sha256 no longer has that sha256."""


class ModelArchive:
    """Every model file the service has served, content-addressed: ``<sha256>.onnx``.

    Written when the service starts (``keep``) and never pruned, so the file behind any
    record can be found by the sha256 the record names. Files are immutable once written
    (written to a temporary name, then renamed).
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        # Loaded sessions by sha256: the bytes are still read and hashed on every use,
        # so a file changed since is caught; only the session build is saved.
        self._models: dict[str, LoadedModel] = {}
        self._simulators: dict[str, Any] = {}

    def path(self, sha256: str) -> Path:
        if len(sha256) != 64 or any(c not in "0123456789abcdef" for c in sha256):
            raise ModelNotArchived(f"{sha256!r} is not a sha256 hex digest")
        return self.directory / f"{sha256}.onnx"

    def keep(self, data: bytes) -> str:
        """Archive a model file's bytes; return their sha256 (a no-op when already kept)."""
        sha = hashlib.sha256(data).hexdigest()
        target = self.path(sha)
        if target.is_file():
            return sha
        self.directory.mkdir(parents=True, exist_ok=True)
        tmp = target.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_bytes(data)
        os.replace(tmp, target)
        return sha

    def read(self, sha256: str, what: str) -> bytes:
        """The archived bytes of ``what`` (e.g. "model pce v1.0.0"), checked against its sha."""
        target = self.path(sha256)
        try:
            data = target.read_bytes()
        except FileNotFoundError:
            raise ModelNotArchived(
                f"{what} (sha256 {sha256}) is not in the model archive {self.directory}"
            ) from None
        actual = hashlib.sha256(data).hexdigest()
        if actual != sha256:
            raise ArchivedModelChanged(
                f"{what}: the archived file {target} now has sha256 {actual}, not the "
                f"recorded {sha256}: it was changed after it was served"
            )
        return data

    def model(self, sha256: str, what: str) -> LoadedModel:
        """The archived risk model of this sha256, checked, as an inference session."""
        self.read(sha256, what)
        if sha256 not in self._models:
            try:
                loaded = load_model(self.path(sha256))
            except ModelFileError as exc:
                raise ArchivedModelChanged(
                    f"{what}: the archived file cannot be loaded: {exc}"
                ) from exc
            if loaded.sha256 != sha256:
                raise ArchivedModelChanged(f"{what}: the archived file changed while loading")
            self._models[sha256] = loaded
        return self._models[sha256]

    def simulator(self, sha256: str, what: str) -> Any:
        """The archived PK model of this sha256, checked, as a simulator."""
        from onnx_models.pk.simulator import OnnxPkSimulator

        data = self.read(sha256, what)
        if sha256 not in self._simulators:
            self._simulators[sha256] = OnnxPkSimulator(data)
        return self._simulators[sha256]


def pk_artifact(model_id: str) -> Path:
    from onnx_models.pk.simulator import ARTIFACTS_DIR

    return ARTIFACTS_DIR / f"{model_id}.onnx"


def archive_served(
    archive: ModelArchive, registry: ModelRegistry, pk_model_ids: Iterable[str]
) -> dict[str, str]:
    """Archive every model the service is about to serve; {model id: sha256}."""
    kept = {m.model_id: archive.keep(m.path.read_bytes()) for m in registry.models.values()}
    for model_id in pk_model_ids:
        kept[model_id] = archive.keep(pk_artifact(model_id).read_bytes())
    return kept


def installed_shas(registry: ModelRegistry) -> dict[str, str]:
    """{model id: sha256} of what is installed now (risk models and every PK artifact)."""
    from onnx_models.pk.models import MODELS

    shas = {m.model_id: m.sha256 for m in registry.models.values()}
    for model_id in MODELS:
        path = pk_artifact(model_id)
        if path.is_file():
            shas[model_id] = hashlib.sha256(path.read_bytes()).hexdigest()
    return shas
