"""Every new artifact: exact Shapley efficiency, card in metadata, float64, one batched run."""

from __future__ import annotations

import dataclasses
import random

import onnx
import pytest

from onnx_models import LoadedModel, MissingInputsError
from tests.onnx_models.artifacts import Artifacts
from tests.onnx_models.conftest import seeded
from tests.onnx_models.test_shapley import CountingRunner

NEW_MODELS = ["prevent", "prevent_30y", "kfre", "kfre_non_na", "whas500_mortality"]


@pytest.fixture(scope="module")
def models() -> Artifacts:
    return Artifacts()


def random_inputs(model: LoadedModel, rng: random.Random) -> dict[str, float]:
    """A random in-range patient for any card: uniform within each continuous range."""
    return {
        s.name: float(rng.random() < 0.5) if s.kind == "binary" else rng.uniform(s.min, s.max)
        for s in model.card.inputs
    }


@pytest.mark.parametrize("model_id", NEW_MODELS)
def test_efficiency_over_random_patients(models: Artifacts, model_id: str) -> None:
    """For 300 random patients each output's contributions sum to prediction - baseline."""
    model = models.get(model_id)
    rng = seeded(f"efficiency-{model_id}")
    worst = 0.0
    for _ in range(300):
        e = model.explain(random_inputs(model, rng))
        for output in model.card.output_names:
            total = sum(c.contribution for c in e.contributions[output])
            gap = e.outputs[output] - e.baseline_outputs[output]
            worst = max(worst, abs(total - gap))
    assert worst <= 1e-6


@pytest.mark.parametrize("model_id", NEW_MODELS)
def test_explanation_is_one_batched_run_and_matches_predict(
    models: Artifacts, model_id: str
) -> None:
    """One onnxruntime call with 2^M rows; its full coalition is the prediction."""
    model = models.get(model_id)
    counter = CountingRunner(model.session)
    counted = dataclasses.replace(model, session=counter)
    values = random_inputs(model, seeded(model_id))
    result = counted.predict_and_explain(values)
    assert counter.calls == 1
    assert counter.rows == [2 ** len(model.card.explained_inputs)]
    plain = model.predict(values).outputs
    for name, value in result.prediction.outputs.items():
        assert value == pytest.approx(plain[name], abs=1e-12)
    assert result.explanation.held_fixed == ("female",)


@pytest.mark.parametrize("model_id", NEW_MODELS)
def test_card_travels_in_the_file_and_graph_is_float64(models: Artifacts, model_id: str) -> None:
    """Metadata holds the card, id and version; input, outputs and constants are DOUBLE."""
    model = models.get(model_id)
    proto = onnx.load(model.path)
    props = {p.key: p.value for p in proto.metadata_props}
    assert props["model_id"] == model_id
    assert props["model_version"] == model.card.version
    assert props["model_card"] == model.card.to_json()
    double = onnx.TensorProto.DOUBLE
    assert proto.graph.input[0].type.tensor_type.elem_type == double
    assert all(o.type.tensor_type.elem_type == double for o in proto.graph.output)
    assert {t.data_type for t in proto.graph.initializer} <= {double, onnx.TensorProto.INT64}


@pytest.mark.parametrize("model_id", NEW_MODELS)
def test_risks_are_fractions(models: Artifacts, model_id: str) -> None:
    """Over random in-range patients every output is a probability in [0, 1]."""
    model = models.get(model_id)
    rng = seeded(f"fractions-{model_id}")
    for _ in range(200):
        outputs = model.predict(random_inputs(model, rng)).outputs
        assert all(0.0 <= v <= 1.0 for v in outputs.values())


@pytest.mark.parametrize("model_id", NEW_MODELS)
def test_every_input_missing_is_named(models: Artifacts, model_id: str) -> None:
    """Dropping any one input gives a MissingInputsError naming it."""
    model = models.get(model_id)
    values = random_inputs(model, seeded(model_id))
    for name in model.card.input_names:
        with pytest.raises(MissingInputsError) as info:
            model.predict({k: v for k, v in values.items() if k != name})
        assert info.value.names == (name,)
