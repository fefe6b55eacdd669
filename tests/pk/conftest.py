"""Shared fixtures of the vancomycin dosing tests: one ONNX session per population model."""

from __future__ import annotations

import pytest

from onnx_models.build.pk import pk_model_bytes
from onnx_models.pk import GOTI_2018, MODELS, OnnxPkSimulator, PopulationPkModel


@pytest.fixture(scope="session")
def goti_sim() -> OnnxPkSimulator:
    return OnnxPkSimulator(pk_model_bytes(GOTI_2018))


@pytest.fixture(scope="session")
def simulators() -> dict[str, OnnxPkSimulator]:
    return {mid: OnnxPkSimulator(pk_model_bytes(m)) for mid, m in MODELS.items()}


@pytest.fixture(scope="session")
def models() -> dict[str, PopulationPkModel]:
    return dict(MODELS)
