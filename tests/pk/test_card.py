"""The PK models' card is typed (PkModelCard) and their files open through the shared loader."""

from __future__ import annotations

import json

import onnx
import pytest

from onnx_models import ModelFileError, PkModelCard
from onnx_models.build.pk import pk_card, pk_model_bytes
from onnx_models.card import CARD_KEY
from onnx_models.pk import GOTI_2018, MODELS, OnnxPkSimulator, load_simulator


def _with_card(edit: dict[str, object], drop: str | None = None) -> bytes:
    proto = onnx.load_from_string(pk_model_bytes(GOTI_2018))
    for prop in proto.metadata_props:
        if prop.key == CARD_KEY:
            card = json.loads(prop.value) | edit
            if drop is not None:
                del card[drop]
            prop.value = json.dumps(card)
    return bytes(proto.SerializeToString())


@pytest.mark.parametrize("model_id", sorted(MODELS))
def test_the_shipped_card_is_the_built_card(model_id: str) -> None:
    """Each shipped PK file's card reads as the PkModelCard the build writes for it."""
    card = load_simulator(model_id).card
    assert card == pk_card(MODELS[model_id])
    assert PkModelCard.from_json(card.to_json()) == card
    assert (card.id, card.kind) == (model_id, "population_pk")


@pytest.mark.parametrize(
    ("edit", "drop", "problem"),
    [
        ({}, "iiv", "iiv: Field required"),
        ({"supports_dialysis": "yes"}, None, "supports_dialysis: Input should be a valid boolean"),
        ({"kind": "risk"}, None, "kind: Input should be 'population_pk'"),
        ({"dose_rule": "q12h"}, None, "dose_rule: Unexpected keyword argument"),
    ],
)
def test_a_bad_card_is_refused_naming_the_field(
    edit: dict[str, object], drop: str | None, problem: str
) -> None:
    """A PK file whose card lacks a field, mistypes one or adds one does not load."""
    with pytest.raises(ModelFileError) as caught:
        OnnxPkSimulator(_with_card(edit, drop), "goti.onnx")
    assert str(caught.value) == f"PK model card is not valid: {problem}"


def test_pk_and_risk_files_fail_the_same_way() -> None:
    """Bytes that are not ONNX give the shared loader's ModelFileError naming them."""
    with pytest.raises(ModelFileError, match=r"^junk\.onnx: onnxruntime cannot load it"):
        OnnxPkSimulator(b"not a model", "junk.onnx")


def test_a_risk_model_is_not_a_pk_simulator() -> None:
    """A file with another graph signature is refused before its card is read."""
    from onnx_models.registry import ARTIFACTS_DIR

    with pytest.raises(ModelFileError, match=r"pce\.onnx: graph .* is not a PK simulator's"):
        OnnxPkSimulator.load(GOTI_2018, ARTIFACTS_DIR / "pce.onnx")


@pytest.mark.parametrize("model_id", sorted(MODELS))
def test_each_card_has_its_own_validation(model_id: str) -> None:
    """Every PK model card says how it was checked; only Goti 2018 claims posologyr's examples."""
    proto = onnx.load_from_string(pk_model_bytes(MODELS[model_id]))
    card = json.loads({p.key: p.value for p in proto.metadata_props}[CARD_KEY])
    text = card["validation"]
    assert "solve_ivp" in text
    assert ("posologyr's worked examples" in text) == (model_id == GOTI_2018.id)
    if model_id != GOTI_2018.id:
        assert "no independent worked example" in text
