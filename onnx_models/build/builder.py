"""Build every risk model's .onnx file reproducibly (the CLI is `python -m onnx_models.build`)."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import onnx

from onnx_models.build import kfre, pce, prevent, whas500
from onnx_models.build._graph import make_model
from onnx_models.card import ModelCard
from onnx_models.registry import ARTIFACTS_DIR

__all__ = ["ARTIFACTS_DIR", "BuiltModel", "ModelDefinition", "build_all", "model_bytes"]


@dataclass(frozen=True, slots=True)
class ModelDefinition:
    """What a model module contributes: its card and a graph built from that card."""

    card: Callable[[], ModelCard]
    graph: Callable[[ModelCard], onnx.GraphProto]


# One entry per artifact.
DEFINITIONS: tuple[ModelDefinition, ...] = (
    ModelDefinition(card=pce.card, graph=pce.graph),
    ModelDefinition(card=prevent.card_10y, graph=prevent.graph_10y),
    ModelDefinition(card=prevent.card_30y, graph=prevent.graph_30y),
    ModelDefinition(card=kfre.card_north_america, graph=kfre.graph_north_america),
    ModelDefinition(card=kfre.card_non_north_america, graph=kfre.graph_non_north_america),
    ModelDefinition(card=whas500.card, graph=whas500.graph),
)


@dataclass(frozen=True, slots=True)
class BuiltModel:
    """One artifact written by the build."""

    model_id: str
    version: str
    path: Path
    sha256: str

    def to_dict(self) -> dict[str, str]:
        return {
            "id": self.model_id,
            "version": self.version,
            "path": str(self.path),
            "sha256": self.sha256,
        }


def model_bytes(definition: ModelDefinition) -> bytes:
    """The serialized model; the same definition always gives the same bytes."""
    model_card = definition.card()
    model = make_model(definition.graph(model_card), model_card)
    return bytes(model.SerializeToString(deterministic=True))


def build_all(out_dir: Path) -> list[BuiltModel]:
    """Write `<id>.onnx` for every model into `out_dir` and return what was written."""
    out_dir.mkdir(parents=True, exist_ok=True)
    built = []
    for definition in DEFINITIONS:
        model_card = definition.card()
        data = model_bytes(definition)
        path = out_dir / f"{model_card.id}.onnx"
        path.write_bytes(data)
        built.append(
            BuiltModel(
                model_id=model_card.id,
                version=model_card.version,
                path=path,
                sha256=hashlib.sha256(data).hexdigest(),
            )
        )
    return built
