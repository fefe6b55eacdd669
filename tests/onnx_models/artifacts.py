"""The package's committed artifacts for the model tests, each loaded from its own file."""

from __future__ import annotations

from pathlib import Path

import onnx_models
from onnx_models import LoadedModel, load_model


class Artifacts:
    """Load `<id>.onnx` from the package's artifacts on first use.

    Loading by file rather than `ModelRegistry.load()` keeps a model's tests independent of
    every other artifact in the directory.
    """

    directory = Path(onnx_models.__file__).parent / "artifacts"

    def __init__(self) -> None:
        self._models: dict[str, LoadedModel] = {}

    def get(self, model_id: str) -> LoadedModel:
        if model_id not in self._models:
            self._models[model_id] = load_model(self.directory / f"{model_id}.onnx")
        return self._models[model_id]
