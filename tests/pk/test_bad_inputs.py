"""Bad inputs: a clear message naming the resource and the missing fact, and no number."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import pytest

from onnx_models.pk import BUELGA_2005, GOTI_2018, THOMSON_2009, OnnxPkSimulator
from tests.support.vancomycin import (
    T0,
    Edit,
    administration,
    base_record,
    medication_request,
    observation,
    replace,
    set_field,
)
from tests.support.vancomycin import plus as _plus
from tests.support.vancomycin import without as _without
from twin_engine.errors import TwinEngineError
from twin_engine.pk import (
    DoseRecordError,
    DosingError,
    ImplausibleLevelError,
    LevelBeforeFirstDoseError,
    LevelsWithoutDosesError,
    MissingCovariateError,
    recommend,
)

AS_OF = T0 + timedelta(hours=48)


CASES: list[Any] = [
    pytest.param(
        _without("ma1", "ma2"),
        LevelsWithoutDosesError,
        ["Observation/lvl1", "no vancomycin MedicationAdministration"],
        id="levels-without-doses",
    ),
    pytest.param(
        _plus(observation("early", "20578-1", 5.0, "mg/L", -1)),
        LevelBeforeFirstDoseError,
        ["Observation/early", "before the first", "MedicationAdministration/ma1"],
        id="level-before-first-dose",
    ),
    pytest.param(
        _plus(observation("huge", "20578-1", 180.0, "mg/L", 30)),
        ImplausibleLevelError,
        ["Observation/huge", "plausible range"],
        id="level-above-150",
    ),
    pytest.param(
        _plus(observation("zero", "20578-1", 0.0, "mg/L", 30)),
        ImplausibleLevelError,
        ["Observation/zero", "plausible range"],
        id="level-zero",
    ),
    pytest.param(
        _plus(observation("lt", "20578-1", 4.0, "mg/L", 30, comparator="<")),
        ImplausibleLevelError,
        ["Observation/lt", "censored"],
        id="level-censored",
    ),
    pytest.param(
        _plus(observation("gl", "20578-1", 4.0, "g/L", 30)),
        ImplausibleLevelError,
        ["Observation/gl", "not mg/L"],
        id="level-unit",
    ),
    pytest.param(
        _without("wt"),
        MissingCovariateError,
        ["Patient/p1", "body weight", "29463-7"],
        id="missing-weight",
    ),
    pytest.param(
        _without("scr"),
        MissingCovariateError,
        ["Patient/p1", "serum creatinine", "2160-0"],
        id="missing-creatinine",
    ),
    pytest.param(
        _plus(administration("nodur", 36, 1000, duration_h=None)),
        DoseRecordError,
        ["MedicationAdministration/nodur", "duration is unknown"],
        id="dose-without-duration",
    ),
    pytest.param(
        _plus(administration("ml", 36, 200, unit="mL")),
        DoseRecordError,
        ["MedicationAdministration/ml", "not mg or g"],
        id="dose-unit",
    ),
]


def _assert_refused(
    edit: Edit, error: type[DosingError], phrases: list[str], sim: OnnxPkSimulator
) -> None:
    """recommend raises ``error`` (a TwinEngineError) naming every phrase, and no dose."""
    with pytest.raises(error) as info:
        recommend(edit(base_record()), as_of=AS_OF, model=GOTI_2018, simulator=sim)
    message = str(info.value)
    for phrase in phrases:
        assert phrase in message
    assert isinstance(info.value, TwinEngineError)
    assert not re.search(r"\d+\s*mg every|\bmg q\d", message)


@pytest.mark.parametrize(("edit", "error", "phrases"), CASES)
def test_bad_input_is_refused_with_a_clear_message(
    goti_sim: OnnxPkSimulator, edit: Edit, error: type[DosingError], phrases: list[str]
) -> None:
    """Each bad record raises its DosingError; the message names it and gives no dose."""
    _assert_refused(edit, error, phrases, goti_sim)


IMPOSSIBLE: list[Any] = [
    pytest.param(
        set_field("ma2", ("dosage", "dose", "value"), -1),
        DoseRecordError,
        ["MedicationAdministration/ma2", "must be positive"],
        id="negative-dose",
    ),
    pytest.param(
        set_field("ma1", ("dosage", "dose", "value"), 0),
        DoseRecordError,
        ["MedicationAdministration/ma1", "must be positive"],
        id="zero-dose",
    ),
    pytest.param(
        set_field("wt", ("valueQuantity", "value"), 0),
        MissingCovariateError,
        ["Observation/wt", "body weight 0 kg", "0.3-400"],
        id="weight-zero",
    ),
    pytest.param(
        set_field("wt", ("valueQuantity", "value"), -70),
        MissingCovariateError,
        ["Observation/wt", "body weight -70 kg"],
        id="weight-negative",
    ),
    pytest.param(
        set_field("wt", ("valueQuantity", "value"), 700),
        MissingCovariateError,
        ["Observation/wt", "700 kg"],
        id="weight-700",
    ),
    pytest.param(
        set_field("p1", ("birthDate",), "2014-03-01"),
        MissingCovariateError,
        ["Patient/p1", "10.0 years old", "adult"],
        id="age-10",
    ),
    pytest.param(
        set_field("p1", ("birthDate",), "1890-01-01"),
        MissingCovariateError,
        ["Patient/p1", "years old", "adult"],
        id="age-134",
    ),
    pytest.param(
        set_field("p1", ("birthDate",), "2030-01-01"),
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
    _assert_refused(edit, error, phrases, goti_sim)


def _drop_value(r: dict[str, Any]) -> None:
    r["dosage"] = {
        "dose": {"value": 1000, "unit": "mg"},
        "rateQuantity": {"unit": "mg/h", "code": "mg/h"},
    }
    r.pop("effectivePeriod", None)
    r["effectiveDateTime"] = T0.isoformat()


def _reference(value: Any) -> Any:
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
        set_field("ma1", ("medicationCodeableConcept", "coding"), 5),
        DoseRecordError,
        ["MedicationAdministration/ma1", "coding"],
        id="coding-5",
    ),
    pytest.param(
        set_field("ma1", ("dosage", "dose", "value"), "abc"),
        DoseRecordError,
        ["MedicationAdministration/ma1", "'abc'"],
        id="dose-abc",
    ),
    pytest.param(
        set_field("ma1", ("dosage",), [{"dose": {"value": 1000, "unit": "mg"}}]),
        DoseRecordError,
        ["MedicationAdministration/ma1", "dosage"],
        id="dosage-list",
    ),
    pytest.param(
        set_field("ma1", ("effectivePeriod",), "2024-03-01"),
        DoseRecordError,
        ["MedicationAdministration/ma1", "effectivePeriod"],
        id="effectivePeriod-string",
    ),
    pytest.param(
        replace("ma1", _reference("Medication/m")),
        DoseRecordError,
        ["MedicationAdministration/ma1", "medicationReference"],
        id="medicationReference-string",
    ),
    pytest.param(
        replace("ma1", _contained),
        DoseRecordError,
        ["MedicationAdministration/ma1", "contained"],
        id="contained-1",
    ),
    pytest.param(
        replace("ma1", _drop_value),
        DoseRecordError,
        ["MedicationAdministration/ma1", "infusion rate"],
        id="rateQuantity-without-value",
    ),
    pytest.param(
        set_field("wt", ("valueQuantity", "value"), "abc"),
        MissingCovariateError,
        ["Observation/wt", "'abc'"],
        id="weight-abc",
    ),
    pytest.param(
        set_field("scr", ("valueQuantity", "value"), "abc"),
        MissingCovariateError,
        ["Observation/scr", "'abc'"],
        id="creatinine-abc",
    ),
    pytest.param(
        set_field("lvl1", ("valueQuantity", "value"), "abc"),
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
        set_field("ma1", ("subject",), "Patient/p1"),
        DoseRecordError,
        ["MedicationAdministration/ma1", "subject"],
        id="subject-string",
    ),
    pytest.param(
        set_field("wt", ("effectiveDateTime",), 20240301),
        MissingCovariateError,
        ["Observation/wt", "no time"],
        id="weight-time-int",
    ),
    pytest.param(
        set_field("ma1", ("dosage", "dose", "value"), float("inf")),
        DoseRecordError,
        ["MedicationAdministration/ma1", "not a finite"],
        id="dose-inf",
    ),
    pytest.param(
        _plus(medication_request("rx", T0.isoformat(), 1e12)),
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
    _assert_refused(edit, error, phrases, goti_sim)


def test_caller_may_state_dialysis_false(goti_sim: OnnxPkSimulator) -> None:
    """With nothing recorded, dialysis=False from the caller lets the dose be computed."""
    result = recommend(
        _without("dx")(base_record()),
        as_of=T0 + timedelta(hours=48),
        model=GOTI_2018,
        simulator=goti_sim,
        dialysis=False,
    )
    assert result.covariates.dialysis is False
    assert result.covariates.dialysis_source == "stated by the caller"


def test_models_without_dialysis_patients_refuse_them(
    simulators: dict[str, OnnxPkSimulator],
) -> None:
    """Buelga 2005 excluded dialysis; a dialysis patient is refused, not extrapolated."""
    with pytest.raises(DosingError, match="not developed in patients on dialysis"):
        recommend(
            base_record(dialysis=True),
            as_of=T0 + timedelta(hours=48),
            model=BUELGA_2005,
            simulator=simulators[BUELGA_2005.id],
        )


def test_thomson_refuses_crcl_at_the_floor(simulators: dict[str, OnnxPkSimulator]) -> None:
    """CrCl floored at 1 mL/min: Thomson's linear CL is negative; no dose comes back."""
    record = set_field("scr", ("valueQuantity", "value"), 100.0)(base_record())
    with pytest.raises(DosingError, match="CrCl below the range this model was developed in"):
        recommend(record, as_of=AS_OF, model=THOMSON_2009, simulator=simulators[THOMSON_2009.id])
