"""The top-level `recommend`: its JSON, a priori dosing, draft regimens, every model."""

from __future__ import annotations

import itertools
import json
from datetime import timedelta

import pytest

from onnx_models.pk import GOTI_2018, MODELS, OnnxPkSimulator
from tests.support.vancomycin import T0, base_record, observation, patient
from twin_engine.pk import Regimen, recommend

AS_OF = T0 + timedelta(hours=48)


def test_json_has_the_contract_keys(goti_sim: OnnxPkSimulator) -> None:
    """Covariates, individual parameters, fitted levels, current regimen, recommendation."""
    result = recommend(base_record(), as_of=AS_OF, model=GOTI_2018, simulator=goti_sim)
    data = json.loads(result.to_json())
    assert data["covariates"]["weight_kg"] == 70.0
    # CG: (140 - 60) x 70 / (72 x 1.0) = 77.78 mL/min (age 60 exactly: no Goti floor needed).
    assert data["covariates"]["crcl_ml_min"] == pytest.approx(77.78, abs=0.05)
    assert set(data["individual_parameters"]) == {"cl_l_h", "vc_l", "q_l_h", "vp_l"}
    assert [lv["observed_mg_l"] for lv in data["levels"]] == [12.0, 9.5]
    assert all(abs(lv["fitted_mg_l"] - lv["observed_mg_l"]) < 2.0 for lv in data["levels"])
    current = data["current_regimen"]
    assert current["regimen"]["dose_mg"] == 1000.0
    low, high = current["auc24_90pct_interval"]
    assert low < current["auc24_mg_h_l"] < high
    recs = data["recommendation"]
    assert 1 <= len(recs) <= 5
    probs = [r["probability_in_target"] for r in recs]
    # Ranked by attainment, ties within 0.5 % broken by first-day attainment.
    assert all(a >= b - 0.005 for a, b in itertools.pairwise(probs))
    for r in recs:
        reg = r["regimen"]
        assert reg["dose_mg"] % 250 == 0 and reg["interval_h"] in (8, 12, 24, 36, 48)
        assert reg["dose_mg"] / reg["infusion_h"] <= 1000.0
    assert data["next_dose"]["rounded_mg"] % 250 == 0
    assert (
        result.to_json()
        == recommend(base_record(), as_of=AS_OF, model=GOTI_2018, simulator=goti_sim).to_json()
    )


def test_a_priori_dosing_without_levels_offers_a_loading_dose(goti_sim: OnnxPkSimulator) -> None:
    """No doses and no levels: prior-based regimens, a loading dose within 20-35 mg/kg."""
    res = [
        patient(),
        observation("wt", "29463-7", 80.0, "kg", -2),
        observation("scr", "2160-0", 0.9, "mg/dL", -2),
    ]
    result = recommend(res, as_of=T0, model=GOTI_2018, simulator=goti_sim, dialysis=False)
    assert result.a_priori and result.levels == () and result.next_dose is None
    loading = [r.regimen.loading_dose_mg for r in result.recommendations]
    assert any(ld is not None and 1600 <= ld <= 2800 for ld in loading)


def test_draft_regimen_is_evaluated(goti_sim: OnnxPkSimulator) -> None:
    """A drafted regimen gets its own AUC24 and probability of target attainment."""
    draft = Regimen(dose_mg=1500.0, interval_h=12.0, infusion_h=1.5)
    result = recommend(
        base_record(), as_of=AS_OF, model=GOTI_2018, simulator=goti_sim, draft_regimen=draft
    )
    assert result.current_regimen is not None
    assert result.current_regimen.regimen == draft
    # 3 g/day at CL ~3 L/h is ~1000 mg.h/L: far above target.
    assert result.current_regimen.auc24_ss_mg_h_l > 700.0
    assert result.current_regimen.probability_in_target < 0.2


@pytest.mark.parametrize("model_id", sorted(MODELS))
def test_every_model_gives_a_recommendation(
    simulators: dict[str, OnnxPkSimulator], model_id: str
) -> None:
    """Goti, Buelga and Thomson each fit the same record and rank regimens."""
    result = recommend(
        base_record(), as_of=AS_OF, model=MODELS[model_id], simulator=simulators[model_id]
    )
    assert result.model_id == model_id
    assert result.recommendations[0].probability_in_target > 0.3


def test_dialysis_patient_on_goti(goti_sim: OnnxPkSimulator) -> None:
    """Recorded dialysis lowers CL (x 0.7) and V1 (x 0.5) in Goti 2018."""
    on = recommend(base_record(dialysis=True), as_of=AS_OF, model=GOTI_2018, simulator=goti_sim)
    assert on.covariates.dialysis is True
    assert on.covariates.dialysis_source.startswith("Condition/dx")
