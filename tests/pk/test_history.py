"""FHIR R4 resources to dose events, levels and covariates."""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from cds_service.services.vancomycin import DraftOrderError, read_draft
from onnx_models.pk import GOTI_2018
from tests.support.vancomycin import (
    ICD10,
    RXNORM,
    SNOMED,
    T0,
    administration,
    base_record,
    condition,
    medication_request,
    observation,
    patient,
    set_field,
)
from twin_engine.pk import (
    DoseRecordError,
    DosingError,
    cockcroft_gault,
    extract_history,
    model_crcl,
)

AS_OF = T0 + timedelta(hours=48)


def test_doses_levels_and_covariates_are_read() -> None:
    """mg and g doses, period durations, both level units, weight and creatinine."""
    h = extract_history(base_record(), as_of=T0 + timedelta(hours=48))
    assert [(d.amount_mg, d.duration_h) for d in h.doses] == [(2000.0, 2.0), (1000.0, 2.0)]
    assert [(lv.value_mg_l, lv.kind) for lv in h.levels] == [(12.0, "random"), (9.5, "trough")]
    assert h.weight is not None and h.weight.value == 70.0
    assert h.creatinine is not None and h.creatinine.value == 1.0
    assert h.sex == "male" and h.age == pytest.approx(60.0, abs=0.01)
    assert h.dialysis.status is False


def test_rate_gives_the_duration_and_oral_doses_are_skipped() -> None:
    """effectiveDateTime + rateRatio 1000 mg/h -> 1.5 h; an oral dose is not absorbed."""
    res = [
        patient(),
        administration("a", 0, 1500, duration_h=None, rate_mg_h=1000.0),
        administration("b", 6, 125, route="26643006"),
    ]
    h = extract_history(res, as_of=T0 + timedelta(hours=24))
    assert [(d.source, d.duration_h) for d in h.doses] == [("MedicationAdministration/a", 1.5)]


def test_units_are_converted() -> None:
    """Creatinine 88.4 umol/L = 1 mg/dL; 154.3 lb = 70 kg."""
    res = [
        patient(),
        observation("w", "29463-7", 154.3236, "[lb_av]", -1),
        observation("c", "38483-4", 88.4, "umol/L", -1),
    ]
    h = extract_history(res, as_of=T0)
    assert h.weight is not None and h.weight.value == pytest.approx(70.0, rel=1e-4)
    assert h.creatinine is not None and h.creatinine.value == pytest.approx(1.0)


def test_medication_request_is_the_fallback() -> None:
    """No administrations: q12h 1 g over 1 h from boundsPeriod.start up to the as-of time."""
    req = medication_request("rx", T0.isoformat(), 12)
    h = extract_history([patient(), req], as_of=T0 + timedelta(hours=30))
    assert [d.amount_mg for d in h.doses] == [1000.0, 1000.0, 1000.0]
    assert "assumed given" in h.doses[0].source
    assert h.notes == ("no MedicationAdministration; doses taken from MedicationRequest timing",)


@pytest.mark.parametrize(
    ("resources", "status"),
    [
        ([condition("c", ICD10, "Z99.2")], True),
        ([condition("c", SNOMED, "302497006")], True),
        ([condition("c", ICD10, "Z99.2", clinical="resolved")], False),
        ([condition("c", ICD10, "N18.6")], True),
        ([], False),
        (
            [
                {
                    "resourceType": "Procedure",
                    "id": "hd",
                    "status": "completed",
                    "code": {"coding": [{"system": SNOMED, "code": "265764009"}]},
                    "performedDateTime": (T0 - timedelta(days=2)).isoformat(),
                }
            ],
            True,
        ),
    ],
    ids=["z99.2", "snomed-hd", "resolved", "esrd", "nothing", "recent-procedure"],
)
def test_dialysis_status(resources: list[dict[str, object]], status: bool) -> None:
    """Active codes (ESRD too) say yes; resolved and silence say not on dialysis."""
    h = extract_history([patient(), *resources], as_of=T0)
    assert h.dialysis.status is status


def test_cockcroft_gault_and_goti_rules() -> None:
    """CG (Cockcroft 1976); Goti floors SCr at 1 mg/dL over 60 y and caps CrCl at 150."""
    assert cockcroft_gault(age=60, weight_kg=72, creatinine_mg_dl=1.0, sex="male") == 80.0
    assert cockcroft_gault(age=60, weight_kg=72, creatinine_mg_dl=1.0, sex="female") == 68.0
    assert model_crcl(GOTI_2018, age=70, weight_kg=72, creatinine_mg_dl=0.5, sex="male") == 70.0
    assert model_crcl(GOTI_2018, age=30, weight_kg=120, creatinine_mg_dl=0.5, sex="male") == 150.0


def test_weight_in_lbs_is_named_not_guessed() -> None:
    """UCUM [lb_av] is read; "lbs" is not a UCUM unit: named in the notes and not used."""
    h = extract_history([patient(), observation("w", "29463-7", 154.0, "lbs", -1)], as_of=T0)
    assert h.weight is None
    assert any("Observation/w" in n and "'lbs'" in n for n in h.notes)


def test_history_and_draft_refuse_hr_alike() -> None:
    """periodUnit "hr" is not a UnitsOfTime code: the dose history refuses it as the draft does."""
    req = {
        "resourceType": "MedicationRequest",
        "id": "r",
        "status": "active",
        "medicationCodeableConcept": {"coding": [{"system": RXNORM, "code": "11124"}]},
        "dosageInstruction": [
            {
                "timing": {
                    "repeat": {
                        "boundsPeriod": {"start": T0.isoformat()},
                        "period": 12,
                        "periodUnit": "hr",
                        "duration": 1,
                        "durationUnit": "h",
                    }
                },
                "doseAndRate": [{"doseQuantity": {"value": 1, "unit": "g"}}],
            }
        ],
    }
    with pytest.raises(DoseRecordError, match="'hr'"):
        extract_history([patient(), req], as_of=T0 + timedelta(hours=30))
    with pytest.raises(DraftOrderError, match="'hr'"):
        read_draft(req)


def test_unreadable_unrelated_observation_is_skipped_with_a_note() -> None:
    """An Observation whose code cannot be read cannot be a level or covariate: noted, skipped."""
    odd = {"resourceType": "Observation", "id": "odd", "code": {"coding": 5}}
    h = extract_history([*base_record(), odd], as_of=AS_OF)
    assert any("Observation/odd" in n for n in h.notes)
    assert [lv.source for lv in h.levels] == ["Observation/lvl1", "Observation/lvl2"]


def test_request_period_below_one_hour_is_refused() -> None:
    """A 1-minute period from 2014 would be 5 million doses: refused instead."""
    req = medication_request("rx", "2014-01-01T00:00:00Z", 1, "min")
    with pytest.raises(DoseRecordError, match="MedicationRequest/rx repeats every"):
        extract_history([patient(), req], as_of=T0)


def test_request_expands_only_the_last_14_days() -> None:
    """q12h from 2014: only the doses of the last 14 days, and a note on the dropped ones."""
    req = medication_request("rx", "2014-01-01T00:00:00Z", 12)
    h = extract_history([patient(), req], as_of=T0)
    # Doses at 00:00 and 12:00; the 14 days before 2024-03-01 08:00 hold 2024-02-16 12:00
    # to 2024-03-01 00:00 (a leap February): 28 doses.
    assert len(h.doses) == 28
    assert h.doses[0].start == T0 - timedelta(days=14) + timedelta(hours=4)
    assert h.doses[-1].start == T0 - timedelta(hours=8)
    assert any("MedicationRequest/rx" in n and "not counted" in n for n in h.notes)


def test_two_patients_are_refused() -> None:
    """A record holding two Patients is refused: whose doses they are is unknown."""
    second = {**patient(), "id": "p2"}
    with pytest.raises(DosingError, match="the record holds 2 patients"):
        extract_history([*base_record(), second], as_of=AS_OF)


def test_no_patient_is_refused() -> None:
    """A record without its Patient is refused: age and sex are unknown."""
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
    res = set_field("wt", ("subject",), {"reference": "urn:uuid:0d4c-other"})(base_record())
    h = extract_history(res, as_of=AS_OF)
    assert h.weight is not None and h.weight.source == "Observation/wt"
    assert any("Observation/wt" in n and "cannot be checked" in n for n in h.notes)


def test_a_birth_month_is_read_as_its_first_day() -> None:
    """birthDate '1964-07' (a valid FHIR partial date) is 1964-07-01."""
    h = extract_history(set_field("p1", ("birthDate",), "1964-07")(base_record()), as_of=AS_OF)
    assert h.age == pytest.approx((AS_OF.date() - date(1964, 7, 1)).days / 365.25)
