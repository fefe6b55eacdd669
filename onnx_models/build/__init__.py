"""Building the `.onnx` artifacts: published equations and fitted models written as graphs.

Build-only: it needs `onnx` (the `build` extra) and the service never imports it; the
runtime (`onnx_models.registry`, `onnx_models.pk.simulator`) reads the files it writes with
onnxruntime alone. `python -m onnx_models.build` writes the risk models,
`python -m onnx_models.build.pk` the vancomycin PK models; the same inputs give the same bytes.
"""

from onnx_models.build.builder import BuiltModel, build_all
from onnx_models.build.pk.artifact import build_pk_artifacts, pk_model_bytes

__all__ = ["BuiltModel", "build_all", "build_pk_artifacts", "pk_model_bytes"]
