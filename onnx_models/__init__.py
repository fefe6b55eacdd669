"""ONNX risk models with their cards: build, load, check inputs, predict, explain exactly.

Never imports `cds_service` or `twin_engine` (docs/architecture.md).
"""

from onnx_models.builder import BuiltModel, build_all
from onnx_models.card import Baseline, InputKind, InputSpec, ModelCard, OutputSpec
from onnx_models.catalog import describe, list_models
from onnx_models.errors import (
    InputError,
    MissingInputsError,
    ModelError,
    ModelFileError,
    OutOfRangeError,
    RangeViolation,
    UnknownModelError,
)
from onnx_models.registry import (
    Contribution,
    ExplainedPrediction,
    Explanation,
    LoadedModel,
    ModelRegistry,
    Prediction,
    load_model,
)

__all__ = [
    "Baseline",
    "BuiltModel",
    "Contribution",
    "ExplainedPrediction",
    "Explanation",
    "InputError",
    "InputKind",
    "InputSpec",
    "LoadedModel",
    "MissingInputsError",
    "ModelCard",
    "ModelError",
    "ModelFileError",
    "ModelRegistry",
    "OutOfRangeError",
    "OutputSpec",
    "Prediction",
    "RangeViolation",
    "UnknownModelError",
    "build_all",
    "describe",
    "list_models",
    "load_model",
]
