"""Small FHIR R4 builders for the vancomycin dosing tests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

LOINC = "http://loinc.org"
SNOMED = "http://snomed.info/sct"
ICD10 = "http://hl7.org/fhir/sid/icd-10-cm"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
T0 = datetime(2024, 3, 1, 8, 0, tzinfo=UTC)


def at(hours: float) -> str:
    return (T0 + timedelta(hours=hours)).isoformat()


def patient(gender: str | None = "male", birth: str | None = "1964-03-01") -> dict[str, Any]:
    res: dict[str, Any] = {"resourceType": "Patient", "id": "p1"}
    if gender:
        res["gender"] = gender
    if birth:
        res["birthDate"] = birth
    return res


def observation(
    oid: str, loinc: str, value: float, unit: str, hours: float, **extra: Any
) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": oid,
        "status": "final",
        "code": {"coding": [{"system": LOINC, "code": loinc}]},
        "effectiveDateTime": at(hours),
        "valueQuantity": {
            "value": value,
            "unit": unit,
            "system": "http://unitsofmeasure.org",
            "code": unit,
            **extra,
        },
    }


def administration(
    aid: str,
    hours: float,
    amount: float,
    unit: str = "mg",
    duration_h: float | None = 2.0,
    rate_mg_h: float | None = None,
    route: str | None = None,
) -> dict[str, Any]:
    res: dict[str, Any] = {
        "resourceType": "MedicationAdministration",
        "id": aid,
        "status": "completed",
        "medicationCodeableConcept": {
            "coding": [{"system": RXNORM, "code": "11124", "display": "vancomycin"}]
        },
        "dosage": {"dose": {"value": amount, "unit": unit}},
    }
    if duration_h is not None:
        res["effectivePeriod"] = {"start": at(hours), "end": at(hours + duration_h)}
    else:
        res["effectiveDateTime"] = at(hours)
    if rate_mg_h is not None:
        res["dosage"]["rateRatio"] = {
            "numerator": {"value": rate_mg_h, "unit": "mg"},
            "denominator": {"value": 1, "unit": "h"},
        }
    if route is not None:
        res["dosage"]["route"] = {"coding": [{"system": SNOMED, "code": route}]}
    return res


def condition(cid: str, system: str, code: str, clinical: str = "active") -> dict[str, Any]:
    return {
        "resourceType": "Condition",
        "id": cid,
        "clinicalStatus": {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                    "code": clinical,
                }
            ]
        },
        "code": {"coding": [{"system": system, "code": code}]},
    }


def base_record(*, dialysis: bool | None = False) -> list[dict[str, Any]]:
    """Patient B of posologyr's vignette as FHIR: 2000 mg at 0 h, 1000 mg at 24.2 h, 2 levels."""
    res = [
        patient(),
        observation("wt", "29463-7", 70.0, "kg", -2),
        observation("scr", "2160-0", 1.0, "mg/dL", -2),
        administration("ma1", 0, 2000),
        administration("ma2", 24.2, 1, unit="g"),
        observation("lvl1", "20578-1", 12.0, "mg/L", 13),
        observation("lvl2", "4092-3", 9.5, "ug/mL", 48),
    ]
    if dialysis is True:
        res.append(condition("dx", ICD10, "Z99.2"))
    if dialysis is False:
        res.append(condition("dx", ICD10, "Z99.2", clinical="resolved"))
    return res
