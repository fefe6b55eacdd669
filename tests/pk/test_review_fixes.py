"""Review findings: impossible inputs, holds, malformed FHIR, unbounded orders, mixed patients,
stale covariates, partial dates, non-positive clearance, the Laplace fallback, honest cards."""

from __future__ import annotations

import importlib
import json
from collections.abc import Callable
from datetime import date, timedelta
from typing import Any

import numpy as np
import onnx
import pytest

from onnx_models.build.pk import pk_model_bytes
from onnx_models.card import CARD_KEY
from onnx_models.pk import GOTI_2018, MODELS, THOMSON_2009, OnnxPkSimulator
from tests.support.vancomycin import T0, administration, base_record, observation, patient
from twin_engine.pk import (
    DoseRecordError,
    DosingError,
    ImplausibleLevelError,
    MissingCovariateError,
    extract_history,
    recommend,
)
from twin_engine.pk.regimen import maintenance_doses, round_next_dose

# The module (twin_engine.pk re-exports the function `estimate` under the same name).
estimate_module = importlib.import_module("twin_engine.pk.estimate")

AS_OF = T0 + timedelta(hours=48)
Edit = Callable[[list[dict[str, Any]]], list[dict[str, Any]]]


def _run(resources: list[Any], sim: OnnxPkSimulator, model: Any = GOTI_2018) -> Any:
    return recommend(resources, as_of=AS_OF, model=model, simulator=sim)


def _replace(rid: str, change: Callable[[dict[str, Any]], None]) -> Edit:
    def edit(res: list[dict[str, Any]]) -> list[dict[str, Any]]:
        out = json.loads(json.dumps(res))
        for r in out:
            if r.get("id") == rid:
                change(r)
        return out

    return edit


def _set(rid: str, path: tuple[str, ...], value: Any) -> Edit:
    def change(r: dict[str, Any]) -> None:
        node = r
        for key in path[:-1]:
            node = node.setdefault(key, {})
        node[path[-1]] = value

    return _replace(rid, change)


def _plus(*extra: Any) -> Edit:
    return lambda res: [*res, *extra]


def _request(rid: str, start: str, period: float, unit: str = "h") -> dict[str, Any]:
    return {
        "resourceType": "MedicationRequest",
        "id": rid,
        "status": "active",
        "medicationCodeableConcept": {"text": "Vancomycin 1 g IV"},
        "dosageInstruction": [
            {
                "timing": {
                    "repeat": {
                        "boundsPeriod": {"start": start},
                        "period": period,
                        "periodUnit": unit,
                        "duration": 1,
                        "durationUnit": "h",
                    }
                },
                "doseAndRate": [{"doseQuantity": {"value": 1, "unit": "g"}}],
            }
        ],
    }


# --- 1. impossible inputs -------------------------------------------------------------------

IMPOSSIBLE: list[Any] = [
    pytest.param(
        _set("ma2", ("dosage", "dose", "value"), -1),
        DoseRecordError,
        ["MedicationAdministration/ma2", "must be positive"],
        id="negative-dose",
    ),
    pytest.param(
        _set("ma1", ("dosage", "dose", "value"), 0),
        DoseRecordError,
        ["MedicationAdministration/ma1", "must be positive"],
        id="zero-dose",
    ),
    pytest.param(
        _set("wt", ("valueQuantity", "value"), 0),
        MissingCovariateError,
        ["Observation/wt", "body weight 0 kg", "0.3-400"],
        id="weight-zero",
    ),
    pytest.param(
        _set("wt", ("valueQuantity", "value"), -70),
        MissingCovariateError,
        ["Observation/wt", "body weight -70 kg"],
        id="weight-negative",
    ),
    pytest.param(
        _set("wt", ("valueQuantity", "value"), 700),
        MissingCovariateError,
        ["Observation/wt", "700 kg"],
        id="weight-700",
    ),
    pytest.param(
        _set("p1", ("birthDate",), "2014-03-01"),
        MissingCovariateError,
        ["Patient/p1", "10.0 years old", "adult"],
        id="age-10",
    ),
    pytest.param(
        _set("p1", ("birthDate",), "1890-01-01"),
        MissingCovariateError,
        ["Patient/p1", "years old", "adult"],
        id="age-134",
    ),
    pytest.param(
        _set("p1", ("birthDate",), "2030-01-01"),
        MissingCovariateError,
        ["Patient/p1", "years old"],
        id="born-after-as-of",
    ),
]


@pytest.mark.parametrize(("edit", "error", "phrases"), IMPOSSIBLE)
def test_impossible_inputs_are_refused(
    goti_sim: OnnxPkSimulator, edit: Edit, error: type[DosingError], phrases: list[str]
) -> None:
    """A non-positive dose, an implausible weight or a non-adult age gives no number."""
    with pytest.raises(error) as info:
        _run(edit(base_record()), goti_sim)
    for phrase in phrases:
        assert phrase in str(info.value)


# --- 2. a hold is not 250 mg ----------------------------------------------------------------


def test_round_next_dose_holds_below_half_a_step() -> None:
    """Below 125 mg the next dose is 0 (drug on board); from 125 mg the usual 250 mg steps."""
    assert [round_next_dose(x) for x in (0.0, 60.0, 124.9, 125.0, 1130.0)] == [
        0.0,
        0.0,
        0.0,
        250.0,
        1250.0,
    ]


def test_drug_on_board_delays_the_next_dose(goti_sim: OnnxPkSimulator) -> None:
    """3 g q6h x4 ending just before the as-of time: the next dose waits for the level to fall
    to the recommended regimen's trough, and is a maintenance dose, not a catch-up."""
    res = [r for r in base_record() if not r["id"].startswith(("ma", "lvl"))]
    res += [administration(f"big{k}", 24 + 6 * k, 3000, duration_h=3.0) for k in range(4)]
    result = _run(res, goti_sim)
    nd, best = result.next_dose, result.recommendations[0]
    assert nd is not None and best.trough_ss_mg_l is not None
    assert nd.start > result.as_of + timedelta(hours=6)
    assert nd.rounded_mg <= maintenance_doses(70.0)[-1]  # 1500 mg: the step above 20 mg/kg
    assert nd.level_at_start_mg_l is not None
    assert nd.level_at_start_mg_l <= 1.5 * best.trough_ss_mg_l


# --- 3. malformed FHIR ----------------------------------------------------------------------


def _drop_value(r: dict[str, Any]) -> None:
    r["dosage"] = {
        "dose": {"value": 1000, "unit": "mg"},
        "rateQuantity": {"unit": "mg/h", "code": "mg/h"},
    }
    r.pop("effectivePeriod", None)
    r["effectiveDateTime"] = T0.isoformat()


def _reference(value: Any) -> Callable[[dict[str, Any]], None]:
    def change(r: dict[str, Any]) -> None:
        r.pop("medicationCodeableConcept")
        r["medicationReference"] = value

    return change


def _contained(r: dict[str, Any]) -> None:
    r.pop("medicationCodeableConcept")
    r["medicationReference"] = {"reference": "#m"}
    r["contained"] = 1


_PROCEDURE = {
    "resourceType": "Procedure",
    "id": "hd",
    "status": "completed",
    "code": {"coding": [{"system": "http://snomed.info/sct", "code": "265764009"}]},
    "performedPeriod": "2024-02-28",
}

MALFORMED: list[Any] = [
    pytest.param(
        _set("ma1", ("medicationCodeableConcept", "coding"), 5),
        DoseRecordError,
        ["MedicationAdministration/ma1", "coding"],
        id="coding-5",
    ),
    pytest.param(
        _set("ma1", ("dosage", "dose", "value"), "abc"),
        DoseRecordError,
        ["MedicationAdministration/ma1", "'abc'"],
        id="dose-abc",
    ),
    pytest.param(
        _set("ma1", ("dosage",), [{"dose": {"value": 1000, "unit": "mg"}}]),
        DoseRecordError,
        ["MedicationAdministration/ma1", "dosage"],
        id="dosage-list",
    ),
    pytest.param(
        _set("ma1", ("effectivePeriod",), "2024-03-01"),
        DoseRecordError,
        ["MedicationAdministration/ma1", "effectivePeriod"],
        id="effectivePeriod-string",
    ),
    pytest.param(
        _replace("ma1", _reference("Medication/m")),
        DoseRecordError,
        ["MedicationAdministration/ma1", "medicationReference"],
        id="medicationReference-string",
    ),
    pytest.param(
        _replace("ma1", _contained),
        DoseRecordError,
        ["MedicationAdministration/ma1", "contained"],
        id="contained-1",
    ),
    pytest.param(
        _replace("ma1", _drop_value),
        DoseRecordError,
        ["MedicationAdministration/ma1", "infusion rate"],
        id="rateQuantity-without-value",
    ),
    pytest.param(
        _set("wt", ("valueQuantity", "value"), "abc"),
        MissingCovariateError,
        ["Observation/wt", "'abc'"],
        id="weight-abc",
    ),
    pytest.param(
        _set("scr", ("valueQuantity", "value"), "abc"),
        MissingCovariateError,
        ["Observation/scr", "'abc'"],
        id="creatinine-abc",
    ),
    pytest.param(
        _set("lvl1", ("valueQuantity", "value"), "abc"),
        ImplausibleLevelError,
        ["Observation/lvl1", "'abc'"],
        id="level-abc",
    ),
    pytest.param(
        _plus("not a resource"), DoseRecordError, ["resource 8", "str"], id="non-dict-resource"
    ),
    pytest.param(
        _plus(_PROCEDURE),
        DoseRecordError,
        ["Procedure/hd", "performedPeriod"],
        id="performedPeriod-string",
    ),
    pytest.param(
        _set("ma1", ("subject",), "Patient/p1"),
        DoseRecordError,
        ["MedicationAdministration/ma1", "subject"],
        id="subject-string",
    ),
    pytest.param(
        _set("wt", ("effectiveDateTime",), 20240301),
        MissingCovariateError,
        ["Observation/wt", "no time"],
        id="weight-time-int",
    ),
    pytest.param(
        _set("ma1", ("dosage", "dose", "value"), float("inf")),
        DoseRecordError,
        ["MedicationAdministration/ma1", "not a finite"],
        id="dose-inf",
    ),
    pytest.param(
        _plus(_request("rx", T0.isoformat(), 1e12)),
        DoseRecordError,
        ["MedicationRequest/rx", "OverflowError"],
        id="period-overflow",
    ),
]


@pytest.mark.parametrize(("edit", "error", "phrases"), MALFORMED)
def test_malformed_fhir_is_refused_naming_the_resource(
    goti_sim: OnnxPkSimulator, edit: Edit, error: type[DosingError], phrases: list[str]
) -> None:
    """Malformed JSON in a relevant resource raises its DosingError, never a Python error."""
    with pytest.raises(error) as info:
        _run(edit(base_record()), goti_sim)
    for phrase in phrases:
        assert phrase in str(info.value)


def test_unreadable_unrelated_observation_is_skipped_with_a_note() -> None:
    """An Observation whose code cannot be read cannot be a level or covariate: noted, skipped."""
    odd = {"resourceType": "Observation", "id": "odd", "code": {"coding": 5}}
    h = extract_history([*base_record(), odd], as_of=AS_OF)
    assert any("Observation/odd" in n for n in h.notes)
    assert len(h.levels) == 2


# --- 4. unbounded MedicationRequest expansion ----------------------------------------------


def test_request_period_below_one_hour_is_refused() -> None:
    """A 1-minute period from 2014 would be 5 million doses: refused instead."""
    req = _request("rx", "2014-01-01T00:00:00Z", 1, "min")
    with pytest.raises(DoseRecordError, match="MedicationRequest/rx repeats every"):
        extract_history([patient(), req], as_of=T0)


def test_request_expands_only_the_last_14_days() -> None:
    """q12h from 2014: only the doses of the last 14 days, and a note on the dropped ones."""
    req = _request("rx", "2014-01-01T00:00:00Z", 12)
    h = extract_history([patient(), req], as_of=T0)
    assert 28 <= len(h.doses) <= 29
    assert h.doses[0].start >= T0 - timedelta(days=14)
    assert any("MedicationRequest/rx" in n and "not counted" in n for n in h.notes)


# --- 5. several patients -------------------------------------------------------------------


def test_two_patients_are_refused() -> None:
    second = {**patient(), "id": "p2"}
    with pytest.raises(DosingError, match="the record holds 2 patients"):
        extract_history([*base_record(), second], as_of=AS_OF)


def test_no_patient_is_refused() -> None:
    with pytest.raises(DosingError, match="the record holds 0 patients"):
        extract_history(base_record()[1:], as_of=AS_OF)


def test_another_patients_resources_are_ignored() -> None:
    """A newer weight and a dose of Patient/p2 are not used; own subject or none is used."""
    theirs_wt = {
        **observation("wt2", "29463-7", 120.0, "kg", 40),
        "subject": {"reference": "Patient/p2"},
    }
    theirs_dose = {**administration("ma9", 30, 3000), "subject": {"reference": "Patient/p2"}}
    mine = {
        **observation("scr2", "2160-0", 1.2, "mg/dL", 40),
        "subject": {"reference": "https://fhir.example/Patient/p1"},
    }
    h = extract_history([*base_record(), theirs_wt, theirs_dose, mine], as_of=AS_OF)
    assert h.weight is not None and h.weight.source == "Observation/wt"
    assert [d.source for d in h.doses] == [
        "MedicationAdministration/ma1",
        "MedicationAdministration/ma2",
    ]
    assert h.creatinine is not None and h.creatinine.source == "Observation/scr2"
    assert any("another patient" in n and "Observation/wt2" in n for n in h.notes)


def test_unverifiable_subject_reference_is_accepted_with_a_note() -> None:
    """A bundle-style urn:uuid subject cannot be checked; with one Patient it is used, noted."""
    res = _set("wt", ("subject",), {"reference": "urn:uuid:0d4c-other"})(base_record())
    h = extract_history(res, as_of=AS_OF)
    assert h.weight is not None and h.weight.source == "Observation/wt"
    assert any("Observation/wt" in n and "cannot be checked" in n for n in h.notes)


# --- 6. stale covariates --------------------------------------------------------------------


def test_stale_creatinine_and_weight_are_noted_and_times_kept(goti_sim: OnnxPkSimulator) -> None:
    res = _set("scr", ("effectiveDateTime",), (T0 - timedelta(days=5)).isoformat())(
        _set("wt", ("effectiveDateTime",), (T0 - timedelta(days=60)).isoformat())(base_record())
    )
    result = _run(res, goti_sim)
    assert result.covariates.creatinine_time == T0 - timedelta(days=5)
    assert result.covariates.weight_time == T0 - timedelta(days=60)
    assert result.to_dict()["covariates"]["measured_at"]["weight"] == (
        (T0 - timedelta(days=60)).isoformat()
    )
    assert any("serum creatinine Observation/scr" in n and "72 h" in n for n in result.notes)
    assert any("body weight Observation/wt" in n for n in result.notes)


def test_fresh_covariates_give_no_staleness_note(goti_sim: OnnxPkSimulator) -> None:
    result = _run(base_record(), goti_sim)
    assert not any("may no longer reflect" in n for n in result.notes)


# --- 7. valid FHIR does not block dosing ---------------------------------------------------


def test_unrelated_partial_date_and_partial_birth_date_are_accepted(
    goti_sim: OnnxPkSimulator,
) -> None:
    """An unrelated Observation dated '2019' is not parsed; birthDate '1964' is 1964-01-01."""
    unrelated = {
        "resourceType": "Observation",
        "id": "smoking",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "72166-2"}]},
        "effectiveDateTime": "2019",
    }
    res = _set("p1", ("birthDate",), "1964")([*base_record(), unrelated])
    result = _run(res, goti_sim)
    assert result.covariates.age == pytest.approx(60.17, abs=0.01)
    assert any("partial date" in n and "1964-01-01" in n for n in result.notes)
    h = extract_history(_set("p1", ("birthDate",), "1964-07")(base_record()), as_of=AS_OF)
    assert h.age == pytest.approx((AS_OF.date() - date(1964, 7, 1)).days / 365.25)


# --- 8. non-positive clearance --------------------------------------------------------------


def test_thomson_refuses_crcl_at_the_floor(simulators: dict[str, OnnxPkSimulator]) -> None:
    """CrCl floored at 1 mL/min: Thomson's linear CL is negative; no dose comes back."""
    res = _set("scr", ("valueQuantity", "value"), 100.0)(base_record())
    with pytest.raises(DosingError, match="CrCl below the range this model was developed in"):
        _run(res, simulators[THOMSON_2009.id], THOMSON_2009)


# --- 9. Laplace fallback is noted -----------------------------------------------------------


def test_positive_definite_reports_the_fallback() -> None:
    prior = np.eye(2)
    _, fell_back = estimate_module._positive_definite(np.diag([1.0, 0.0]), prior)
    assert fell_back
    _, fell_back = estimate_module._positive_definite(np.diag([1.0, 2.0]), prior)
    assert not fell_back


def test_prior_covariance_fallback_is_noted(
    goti_sim: OnnxPkSimulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(
        estimate_module, "_positive_definite", lambda _matrix, fallback: (fallback, True)
    )
    result = _run(base_record(), goti_sim)
    assert any("prior covariance is used" in n for n in result.notes)


# --- 10. each PK card carries its own validation -------------------------------------------


@pytest.mark.parametrize("model_id", sorted(MODELS))
def test_each_card_has_its_own_validation(model_id: str) -> None:
    proto = onnx.load_from_string(pk_model_bytes(MODELS[model_id]))
    card = json.loads({p.key: p.value for p in proto.metadata_props}[CARD_KEY])
    text = card["validation"]
    assert "solve_ivp" in text
    assert ("posologyr's worked examples" in text) == (model_id == GOTI_2018.id)
    if model_id != GOTI_2018.id:
        assert "no independent worked example" in text


def test_next_dose_respects_the_maintenance_ceiling_after_a_recent_level(
    goti_sim: OnnxPkSimulator,
) -> None:
    """Issue finding: a level of 9 mg/L two hours ago gave a 2-2.75 g dose "now" (36-40 mg/kg);
    the next dose is now within the maintenance ceiling and due when the level has fallen."""
    res = [r for r in base_record() if not r["id"].startswith(("ma", "lvl"))]
    res += [administration(f"d{k}", 12 * k, 1000, duration_h=1.0) for k in range(4)]
    res.append(observation("lv", "4092-3", 9.0, "mg/L", 46.0))
    result = recommend(res, as_of=T0 + timedelta(hours=48), model=GOTI_2018, simulator=goti_sim)
    nd = result.next_dose
    assert nd is not None
    assert 0 < nd.rounded_mg <= maintenance_doses(70.0)[-1]
    assert nd.rounded_mg <= 35.0 * 70.0
    assert nd.start >= result.as_of
