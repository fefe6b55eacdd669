"""JSON-ready views of the models for `twin-cds models list|describe`: the risk models
of the registry and the vancomycin PK models beside them (their own folder, `pk/`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from onnx_models.artifact import read_artifact
from onnx_models.card import PkModelCard
from onnx_models.errors import UnknownModelError
from onnx_models.pk.simulator import OnnxPkSimulator
from onnx_models.registry import LoadedModel, ModelRegistry


@dataclass(frozen=True, slots=True)
class PkArtifact:
    """A vancomycin PK graph as the catalog shows it: its card and the file's identity."""

    card: PkModelCard
    sha256: str
    path: Path


def pk_models(directory: Path) -> dict[str, PkArtifact]:
    """Every PK graph in ``directory`` (none when it is absent), by card id."""
    found: dict[str, PkArtifact] = {}
    for path in sorted(directory.glob("*.onnx")) if directory.is_dir() else ():
        sim = OnnxPkSimulator(read_artifact(path), str(path))
        found[sim.card.id] = PkArtifact(sim.card, sim.sha256, path)
    return found


def describe(model: LoadedModel | PkArtifact) -> dict[str, Any]:
    """The full card plus the artifact's identity (sha256, path)."""
    if isinstance(model, PkArtifact):
        card: dict[str, Any] = model.card.to_dict()
        identity = {"id": model.card.id, "version": model.card.version}
    else:
        card = model.card.to_dict()
        identity = {"id": model.model_id, "version": model.version}
    return {**identity, "sha256": model.sha256, "path": str(model.path), "card": card}


def find(
    registry: ModelRegistry, pk: dict[str, PkArtifact], model_id: str
) -> LoadedModel | PkArtifact:
    """The risk or PK model of this id, or UnknownModelError naming them all."""
    if model_id in pk:
        return pk[model_id]
    if model_id in registry.models:
        return registry.get(model_id)
    raise UnknownModelError(model_id, tuple(sorted([*registry.ids(), *pk])))


def list_models(
    registry: ModelRegistry, pk: dict[str, PkArtifact] | None = None
) -> list[dict[str, Any]]:
    """One line per model: id, name, version, sha256 and output names; PK models last."""
    risk = [
        {
            "id": model.model_id,
            "name": model.card.name,
            "version": model.version,
            "sha256": model.sha256,
            "outputs": list(model.card.output_names),
        }
        for model in (registry.get(model_id) for model_id in registry.ids())
    ]
    return risk + [
        {
            "id": a.card.id,
            "name": a.card.name,
            "version": a.card.version,
            "sha256": a.sha256,
            "outputs": list(a.card.outputs),
        }
        for a in (pk or {}).values()
    ]
