"""Tiny ONNX models built in the tests, loaded through the real registry code."""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from onnx_models import Baseline, InputSpec, LoadedModel, ModelCard, OutputSpec, load_model
from onnx_models.build._graph import GraphBuilder, make_model

TinyGraph = Callable[[GraphBuilder, dict[str, str]], str]


def tiny_card(model_id: str, baseline: dict[str, float]) -> ModelCard:
    return ModelCard(
        id=model_id,
        name=f"test model {model_id}",
        version="0.0.1",
        intended_use="tests",
        population="none",
        inputs=tuple(InputSpec(n, n, None, "test", "1", -10.0, 10.0, "continuous") for n in "abc"),
        outputs=(OutputSpec("y", "test output", "1"),),
        source="tests/onnx_models/conftest.py",
        validation="none",
        baseline=Baseline("test baseline", baseline),
        held_fixed=(),
        license="Apache-2.0",
    )


@pytest.fixture
def tiny_model(tmp_path: Path) -> Callable[[TinyGraph, dict[str, float]], LoadedModel]:
    """Build f(a, b, c) from `body` into an .onnx file and load it as the service would."""

    def build(body: TinyGraph, baseline: dict[str, float]) -> LoadedModel:
        card = tiny_card("tiny", baseline)
        b = GraphBuilder("tiny")
        cols = {n: b.column("x", i, n) for i, n in enumerate(card.input_names)}
        b.rename(body(b, cols), "y")
        path = tmp_path / "tiny.onnx"
        path.write_bytes(make_model(b.graph("x", 3, ("y",)), card).SerializeToString())
        return load_model(path)

    return build


def seeded(seed: int | str) -> random.Random:
    """A reproducible generator of test patients."""
    return random.Random(seed)  # noqa: S311  # test data, not a secret


def const(b: GraphBuilder, value: float) -> str:
    return b.const("k", np.array(value))
