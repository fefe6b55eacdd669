"""A vancomycin patient as FHIR R4: posologyr's patient B and builders timed in hours
from T0, for the dosing tests (tests/pk) and the services and audit tests that dose."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from tests.support import fhir
from tests.support.fhir import ICD10, LOINC, RXNORM, SNOMED

__all__ = [
    "ICD10",
    "LOINC",
    "RXNORM",
    "SNOMED",
    "T0",
    "Edit",
    "administration",
    "at",
    "base_record",
    "condition",
    "medication_request",
    "observation",
    "patient",
    "plus",
    "replace",
    "set_field",
    "without",
]

T0 = datetime(2024, 3, 1, 8, 0, tzinfo=UTC)


def at(hours: float) -> str:
    return (T0 + timedelta(hours=hours)).isoformat()


def patient(gender: str | None = "male", birth: str | None = "1964-03-01") -> dict[str, Any]:
    """Patient/p1, a man born 1964-03-01 unless told otherwise."""
    return fhir.patient("p1", gender=gender or None, birth=birth or None)


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
    """A Condition of Patient/p1 without an onset (dialysis status only needs the code)."""
    return fhir.condition(cid, system, code, onset=None, status=clinical)


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


def searchset(resources: list[dict[str, Any]]) -> dict[str, Any]:
    """A searchset Bundle of ``resources``, as an EHR's prefetch sends a search's result."""
    return {
        "resourceType": "Bundle",
        "type": "searchset",
        "entry": [{"resource": r} for r in resources],
    }


def draft_order(
    dose_mg: float, every_h: float, drug: str = "11124", rid: str = "draft-1"
) -> dict[str, Any]:
    """A drafted MedicationRequest (vancomycin by default): one dose every ``every_h`` h."""
    return {
        "resourceType": "MedicationRequest",
        "id": rid,
        "status": "draft",
        "intent": "order",
        "subject": {"reference": "Patient/p1"},
        "medicationCodeableConcept": {"coding": [{"system": RXNORM, "code": drug}]},
        "dosageInstruction": [
            {
                "timing": {"repeat": {"frequency": 1, "period": every_h, "periodUnit": "h"}},
                "doseAndRate": [{"doseQuantity": {"value": dose_mg, "unit": "mg", "code": "mg"}}],
            }
        ],
    }


def vancomycin_call(
    hook: str,
    hook_instance: str,
    draft: dict[str, Any],
    *,
    dialysis: bool | None,
    encounters: bool = False,
) -> dict[str, Any]:
    """The ``hook`` call (order-select or order-sign) on ``draft`` for ``base_record``'s
    patient, its record in the vancomycin services' prefetch keys; ``encounters`` adds that
    key, empty (null)."""
    by_type: dict[str, list[dict[str, Any]]] = {}
    for r in base_record(dialysis=dialysis):
        by_type.setdefault(r["resourceType"], []).append(r)
    context: dict[str, Any] = {
        "userId": "Practitioner/1",
        "patientId": "p1",
        "draftOrders": {
            "resourceType": "Bundle",
            "type": "collection",
            "entry": [{"resource": draft}],
        },
    }
    if hook == "order-select":
        context["selections"] = [f"MedicationRequest/{draft['id']}"]
    prefetch: dict[str, Any] = {
        "patient": by_type["Patient"][0],
        "observations": searchset(by_type.get("Observation", [])),
        "administrations": searchset(by_type.get("MedicationAdministration", [])),
        "medications": searchset([]),
        "conditions": searchset(by_type.get("Condition", [])),
        "procedures": None,
    }
    if encounters:
        prefetch["encounters"] = None
    return {"hook": hook, "hookInstance": hook_instance, "context": context, "prefetch": prefetch}


def order_sign_call(n: int, draft: dict[str, Any], *, dialysis: bool | None) -> dict[str, Any]:
    """The order-sign hook call signing ``draft`` on ``base_record``'s patient, its record
    in the vancomycin service's prefetch keys."""
    return vancomycin_call("order-sign", f"dose-{n}", draft, dialysis=dialysis)


def medication_request(rid: str, start: str, period: float, unit: str = "h") -> dict[str, Any]:
    """An active order of 1 g IV over 1 h every ``period`` ``unit`` from ``start``."""
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


# --- edits of a record, for the tables of bad inputs -----------------------------------

#: A change to a list of resources (a copy; the input is left as it was).
Edit = Callable[[list[dict[str, Any]]], list[dict[str, Any]]]


def without(*ids: str) -> Edit:
    """The record without the resources of these ids."""
    return lambda res: [r for r in res if r.get("id") not in ids]


def plus(*extra: Any) -> Edit:
    """The record with these resources (or anything else) appended."""
    return lambda res: [*res, *extra]


def replace(rid: str, change: Callable[[dict[str, Any]], None]) -> Edit:
    """The record with ``change`` applied in place to a copy of resource ``rid``."""

    def edit(res: list[dict[str, Any]]) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = json.loads(json.dumps(res))
        for r in out:
            if r.get("id") == rid:
                change(r)
        return out

    return edit


def set_field(rid: str, path: tuple[str, ...], value: Any) -> Edit:
    """The record with resource ``rid``'s field at ``path`` set to ``value``."""

    def change(r: dict[str, Any]) -> None:
        node = r
        for key in path[:-1]:
            node = node.setdefault(key, {})
        node[path[-1]] = value

    return replace(rid, change)
