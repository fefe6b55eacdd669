"""Building the vancomycin PK artifacts: the structural graph with each model's card."""

from onnx_models.build.pk.artifact import build_pk_artifacts, pk_card, pk_model_bytes
from onnx_models.build.pk.graph import structural_graph

__all__ = ["build_pk_artifacts", "pk_card", "pk_model_bytes", "structural_graph"]
