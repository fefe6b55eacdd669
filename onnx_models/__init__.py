"""ONNX risk models with their cards: load, check inputs, predict, explain exactly.

Never imports `cds_service` or `twin_engine` (docs/architecture.md). Building the `.onnx`
files is `onnx_models.build` (the `build` extra, with `onnx`); nothing here imports it, so
serving needs onnxruntime only.
"""

from onnx_models.card import (
    Baseline,
    InputKind,
    InputSpec,
    ModelCard,
    OutputSpec,
    PkModelCard,
)
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
    "PkModelCard",
    "Prediction",
    "RangeViolation",
    "UnknownModelError",
    "describe",
    "list_models",
    "load_model",
]
