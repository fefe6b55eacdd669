"""Vancomycin population PK: the structural model as an ONNX graph, the population models.

Never imports `twin_engine` or `cds_service`; `OnnxPkSimulator` satisfies
`twin_engine.pk.PkSimulator` and `PopulationPkModel` satisfies `twin_engine.pk.PkModelSpec`
structurally.
"""

from onnx_models.pk.artifact import build_pk_artifacts, pk_card, pk_model_bytes
from onnx_models.pk.graph import structural_graph
from onnx_models.pk.models import (
    BUELGA_2005,
    DEFAULT_MODEL,
    GOTI_2018,
    GOTI_2018_V2_WEIGHT,
    MODELS,
    THOMSON_2009,
    PopulationPkModel,
)
from onnx_models.pk.simulator import OnnxPkSimulator, load_simulator

__all__ = [
    "BUELGA_2005",
    "DEFAULT_MODEL",
    "GOTI_2018",
    "GOTI_2018_V2_WEIGHT",
    "MODELS",
    "THOMSON_2009",
    "OnnxPkSimulator",
    "PopulationPkModel",
    "build_pk_artifacts",
    "load_simulator",
    "pk_card",
    "pk_model_bytes",
    "structural_graph",
]
