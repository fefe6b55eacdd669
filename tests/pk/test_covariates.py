"""Covariates as the record gives them: how old they are, and dates FHIR allows partial."""

from __future__ import annotations

from datetime import timedelta

import pytest

from onnx_models.pk import GOTI_2018, OnnxPkSimulator
from tests.support.vancomycin import T0, base_record, set_field
from twin_engine.pk import DosingResult, recommend

AS_OF = T0 + timedelta(hours=48)


def _recommend(record: list[dict[str, object]], sim: OnnxPkSimulator) -> DosingResult:
    return recommend(record, as_of=AS_OF, model=GOTI_2018, simulator=sim)


def test_stale_creatinine_and_weight_are_noted_and_times_kept(goti_sim: OnnxPkSimulator) -> None:
    """A 5-day-old creatinine and a 60-day-old weight are used, each with a note and its time."""
    scr_time, wt_time = T0 - timedelta(days=5), T0 - timedelta(days=60)
    record = set_field("scr", ("effectiveDateTime",), scr_time.isoformat())(
        set_field("wt", ("effectiveDateTime",), wt_time.isoformat())(base_record())
    )
    result = _recommend(record, goti_sim)
    assert result.covariates.creatinine_time == scr_time
    assert result.covariates.weight_time == wt_time
    assert result.to_dict()["covariates"]["measured_at"]["weight"] == wt_time.isoformat()
    assert any("serum creatinine Observation/scr" in n and "72 h" in n for n in result.notes)
    assert any("body weight Observation/wt" in n for n in result.notes)


def test_fresh_covariates_give_no_staleness_note(goti_sim: OnnxPkSimulator) -> None:
    """Weight and creatinine of two hours before the first dose are not called stale."""
    result = _recommend(base_record(), goti_sim)
    assert not any("may no longer reflect" in n for n in result.notes)


def test_unrelated_partial_date_and_birth_year_are_accepted(goti_sim: OnnxPkSimulator) -> None:
    """An unrelated Observation dated '2019' is not parsed; birthDate '1964' is 1964-01-01."""
    unrelated = {
        "resourceType": "Observation",
        "id": "smoking",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "72166-2"}]},
        "effectiveDateTime": "2019",
    }
    record = set_field("p1", ("birthDate",), "1964")([*base_record(), unrelated])
    result = _recommend(record, goti_sim)
    assert result.covariates.age == pytest.approx(60.17, abs=0.01)
    assert any("partial date" in n and "1964-01-01" in n for n in result.notes)
