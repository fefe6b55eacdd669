"""Vancomycin population PK: the structural model as an ONNX graph, the population models.

Never imports `twin_engine` or `cds_service`; `OnnxPkSimulator` satisfies
`twin_engine.pk.PkSimulator` and `PopulationPkModel` satisfies `twin_engine.pk.PkModelSpec`
structurally. The graph and the artifacts are built by `onnx_models.build.pk`.
"""

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
    "load_simulator",
]
