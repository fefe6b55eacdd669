"""Exact Shapley explanations: efficiency, symmetry, dummy, linearity, one batched run."""

from __future__ import annotations

import dataclasses
import itertools
import math
import random
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from onnx_models import LoadedModel, ModelRegistry
from onnx_models.build._graph import GraphBuilder
from onnx_models.shapley import coalition_plan
from tests.onnx_models.conftest import TinyGraph, const, seeded

TinyFactory = Callable[[TinyGraph, dict[str, float]], LoadedModel]


@pytest.fixture(scope="module")
def pce() -> LoadedModel:
    return ModelRegistry.load().get("pce")


def random_inputs(rng: random.Random) -> dict[str, float]:
    return {
        "age_years": rng.uniform(40, 79),
        "female": float(rng.random() < 0.5),
        "african_american": float(rng.random() < 0.5),
        "total_cholesterol_mg_dl": rng.uniform(130, 320),
        "hdl_cholesterol_mg_dl": rng.uniform(20, 100),
        "systolic_bp_mm_hg": rng.uniform(90, 200),
        "treated_hypertension": float(rng.random() < 0.5),
        "current_smoker": float(rng.random() < 0.5),
        "diabetes": float(rng.random() < 0.5),
    }


def test_efficiency_over_random_patients(pce: LoadedModel) -> None:
    """For 400 random patients the contributions sum to prediction minus baseline."""
    rng = seeded(7)
    worst = 0.0
    for _ in range(400):
        values = random_inputs(rng)
        e = pce.explain(values)
        total = sum(c.contribution for c in e.contributions["risk_10y_ascvd"])
        gap = e.outputs["risk_10y_ascvd"] - e.baseline_outputs["risk_10y_ascvd"]
        worst = max(worst, abs(total - gap))
    assert worst <= 1e-9


def test_explanation_outputs_are_the_prediction_and_the_baseline(pce: LoadedModel) -> None:
    """The full coalition equals predict(); the empty one is the Table A profile, same group."""
    values = random_inputs(seeded(11)) | {"female": 1.0, "african_american": 1.0}
    e = pce.explain(values)
    # onnxruntime's vectorised Log/Exp may differ in the last bits between batch sizes.
    assert e.outputs["risk_10y_ascvd"] == pytest.approx(
        pce.predict(values).outputs["risk_10y_ascvd"], abs=1e-12
    )
    baseline_profile = {
        "age_years": 55.0, "female": 1.0, "african_american": 1.0,
        "total_cholesterol_mg_dl": 213.0, "hdl_cholesterol_mg_dl": 50.0,
        "systolic_bp_mm_hg": 120.0, "treated_hypertension": 0.0, "current_smoker": 0.0,
        "diabetes": 0.0,
    }  # fmt: skip
    assert e.baseline_inputs == baseline_profile
    assert e.baseline_outputs["risk_10y_ascvd"] == pytest.approx(
        pce.predict(baseline_profile).outputs["risk_10y_ascvd"], abs=1e-12
    )
    features = [c.feature for c in e.contributions["risk_10y_ascvd"]]
    assert sorted(features) == sorted(set(pce.card.input_names) - {"female", "african_american"})
    magnitudes = [abs(c.contribution) for c in e.contributions["risk_10y_ascvd"]]
    assert magnitudes == sorted(magnitudes, reverse=True)


def test_baseline_patient_has_zero_contributions(pce: LoadedModel) -> None:
    """A patient equal to the baseline profile gets exactly zero for every input."""
    values = {**pce.card.baseline.values, "female": 0.0, "african_american": 1.0}
    e = pce.explain(values)
    assert all(c.contribution == 0.0 for c in e.contributions["risk_10y_ascvd"])


class CountingRunner:
    """Wraps an onnxruntime session and counts `run` calls and rows."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.calls = 0
        self.rows: list[int] = []

    def run(self, output_names: list[str] | None, input_feed: dict[str, Any]) -> list[Any]:
        self.calls += 1
        self.rows.append(len(input_feed["x"]))
        result: list[Any] = self.inner.run(output_names, input_feed)
        return result


def test_explanation_is_one_batched_run(pce: LoadedModel) -> None:
    """predict_and_explain makes one onnxruntime call with all 2^7 coalitions."""
    counter = CountingRunner(pce.session)
    counted = dataclasses.replace(pce, session=counter)
    result = counted.predict_and_explain(random_inputs(seeded(3)))
    assert counter.calls == 1
    assert counter.rows == [2**7]
    assert result.prediction.outputs == result.explanation.outputs


def test_symmetry_and_dummy(tiny_model: TinyFactory) -> None:
    """f = a*b + 0*c: symmetric a, b get equal values; the dummy c gets exactly 0."""

    def body(b: GraphBuilder, x: dict[str, str]) -> str:
        return b.op("Add", b.op("Mul", x["a"], x["b"]), b.op("Mul", const(b, 0.0), x["c"]))

    model = tiny_model(body, {"a": 0.0, "b": 0.0, "c": 0.0})
    e = model.explain({"a": 3.0, "b": 3.0, "c": 7.0})
    phi = {c.feature: c.contribution for c in e.contributions["y"]}
    assert phi["a"] == pytest.approx(phi["b"], abs=1e-15)
    assert phi["a"] == pytest.approx(4.5, abs=1e-12)  # half of the interaction 3*3 each
    assert phi["c"] == 0.0


def test_linear_model_gets_coefficient_times_distance(tiny_model: TinyFactory) -> None:
    """f = 2a - 3b + 0.5c: each value is coefficient x (x - baseline), exactly."""
    coefficients = {"a": 2.0, "b": -3.0, "c": 0.5}

    def body(b: GraphBuilder, x: dict[str, str]) -> str:
        terms = [b.op("Mul", const(b, k), x[n]) for n, k in coefficients.items()]
        return b.op("Add", b.op("Add", terms[0], terms[1]), terms[2])

    baseline = {"a": 1.0, "b": 2.0, "c": 3.0}
    model = tiny_model(body, baseline)
    values = {"a": -4.0, "b": 5.5, "c": 9.0}
    e = model.explain(values)
    for c in e.contributions["y"]:
        expected = coefficients[c.feature] * (values[c.feature] - baseline[c.feature])
        assert c.contribution == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("m", [1, 2, 5, 12])
def test_weights_sum_to_one_per_feature(m: int) -> None:
    """Each feature's coalition weights sum to 1 (so Shapley values are weighted averages)."""
    plan = coalition_plan(m)
    assert np.allclose(plan.weights.sum(axis=1), 1.0, atol=1e-12)
    assert plan.masks.shape == (2**m, m)


def test_matches_brute_force_definition(tiny_model: TinyFactory) -> None:
    """On a nonlinear model the values equal the permutation definition of Shapley."""

    def body(b: GraphBuilder, x: dict[str, str]) -> str:
        return b.op("Exp", b.op("Add", b.op("Mul", x["a"], x["c"]), b.op("Sin", x["b"])))

    baseline = {"a": 0.5, "b": -1.0, "c": 0.25}
    values = {"a": 1.5, "b": 2.0, "c": -0.75}
    model = tiny_model(body, baseline)

    def f(coalition: set[str]) -> float:
        v = {n: (values[n] if n in coalition else baseline[n]) for n in "abc"}
        return math.exp(v["a"] * v["c"] + math.sin(v["b"]))

    orders = list(itertools.permutations("abc"))
    brute = dict.fromkeys("abc", 0.0)
    for order in orders:
        seen: set[str] = set()
        for n in order:
            brute[n] += (f(seen | {n}) - f(seen)) / len(orders)
            seen.add(n)
    got = {c.feature: c.contribution for c in model.explain(values).contributions["y"]}
    for n in "abc":
        assert got[n] == pytest.approx(brute[n], abs=1e-12)
