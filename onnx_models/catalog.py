"""JSON-ready views of the registry for `twin-cds models list|describe`."""

from __future__ import annotations

from typing import Any

from onnx_models.registry import LoadedModel, ModelRegistry


def describe(model: LoadedModel) -> dict[str, Any]:
    """The full card plus the artifact's identity (sha256, path)."""
    return {
        "id": model.model_id,
        "version": model.version,
        "sha256": model.sha256,
        "path": str(model.path),
        "card": model.card.to_dict(),
    }


def list_models(registry: ModelRegistry) -> list[dict[str, Any]]:
    """One line per model: id, name, version, sha256 and output names."""
    return [
        {
            "id": model.model_id,
            "name": model.card.name,
            "version": model.version,
            "sha256": model.sha256,
            "outputs": list(model.card.output_names),
        }
        for model in (registry.get(model_id) for model_id in registry.ids())
    ]
