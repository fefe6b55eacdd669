"""Small builders of FHIR R4 resources for the twin_engine tests."""

from __future__ import annotations

from typing import Any

LOINC = "http://loinc.org"
SNOMED = "http://snomed.info/sct"
ICD10 = "http://hl7.org/fhir/sid/icd-10-cm"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
RACE = "http://hl7.org/fhir/us/core/StructureDefinition/us-core-race"


def patient(
    pid: str = "p1",
    *,
    gender: str | None = "female",
    birth: str | None = "1970-06-15",
    race: list[str] | None = None,
) -> dict[str, Any]:
    res: dict[str, Any] = {"resourceType": "Patient", "id": pid}
    if gender is not None:
        res["gender"] = gender
    if birth is not None:
        res["birthDate"] = birth
    if race is not None:
        res["extension"] = [
            {
                "url": RACE,
                "extension": [
                    *(
                        {
                            "url": "ombCategory",
                            "valueCoding": {"system": "urn:oid:2.16.840.1.113883.6.238", "code": c},
                        }
                        for c in race
                    ),
                    {"url": "text", "valueString": "recorded"},
                ],
            }
        ]
    return res


def obs(
    oid: str,
    loinc: str,
    value: object,
    unit: str | None,
    when: str = "2024-01-01T09:00:00Z",
    *,
    pid: str = "p1",
) -> dict[str, Any]:
    quantity: dict[str, Any] = {"value": value}
    if unit is not None:
        quantity |= {"unit": unit, "system": "http://unitsofmeasure.org", "code": unit}
    return {
        "resourceType": "Observation",
        "id": oid,
        "status": "final",
        "code": {"coding": [{"system": LOINC, "code": loinc}]},
        "subject": {"reference": f"Patient/{pid}"},
        "effectiveDateTime": when,
        "valueQuantity": quantity,
    }


def bp(oid: str, sbp: float, dbp: float, when: str = "2024-01-01T09:00:00Z") -> dict[str, Any]:
    def comp(code: str, v: float) -> dict[str, Any]:
        return {
            "code": {"coding": [{"system": LOINC, "code": code}]},
            "valueQuantity": {
                "value": v,
                "unit": "mmHg",
                "system": "http://unitsofmeasure.org",
                "code": "mm[Hg]",
            },
        }

    return {
        "resourceType": "Observation",
        "id": oid,
        "status": "final",
        "code": {"coding": [{"system": LOINC, "code": "85354-9"}]},
        "subject": {"reference": "Patient/p1"},
        "effectiveDateTime": when,
        "component": [comp("8480-6", sbp), comp("8462-4", dbp)],
    }


def smoking(oid: str, code: str, when: str = "2024-01-01T09:00:00Z") -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": oid,
        "status": "final",
        "code": {"coding": [{"system": LOINC, "code": "72166-2"}]},
        "subject": {"reference": "Patient/p1"},
        "effectiveDateTime": when,
        "valueCodeableConcept": {"coding": [{"system": SNOMED, "code": code}]},
    }


def condition(
    cid: str,
    system: str,
    code: str,
    *,
    onset: str | None = "2020-01-01",
    status: str | None = "active",
    abatement: str | None = None,
) -> dict[str, Any]:
    res: dict[str, Any] = {
        "resourceType": "Condition",
        "id": cid,
        "code": {"coding": [{"system": system, "code": code}]},
        "subject": {"reference": "Patient/p1"},
    }
    if status is not None:
        res["clinicalStatus"] = {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                    "code": status,
                }
            ]
        }
    if onset is not None:
        res["onsetDateTime"] = onset
    if abatement is not None:
        res["abatementDateTime"] = abatement
    return res


def med_request(
    mid: str,
    code: str | None,
    display: str = "",
    *,
    status: str = "active",
    authored: str = "2023-01-01",
) -> dict[str, Any]:
    coding: dict[str, Any] = {"system": RXNORM, "display": display}
    if code is not None:
        coding["code"] = code
    return {
        "resourceType": "MedicationRequest",
        "id": mid,
        "status": status,
        "intent": "order",
        "medicationCodeableConcept": {"coding": [coding] if code else [], "text": display},
        "subject": {"reference": "Patient/p1"},
        "authoredOn": authored,
    }


def bundle(*resources: dict[str, Any], kind: str = "collection") -> dict[str, Any]:
    return {
        "resourceType": "Bundle",
        "type": kind,
        "entry": [{"fullUrl": f"urn:uuid:{i:08d}", "resource": r} for i, r in enumerate(resources)],
    }


def searchset(*resources: dict[str, Any]) -> dict[str, Any]:
    """A search result Bundle of the resources, as a FHIR server answers a prefetch query."""
    return {
        "resourceType": "Bundle",
        "type": "searchset",
        "total": len(resources),
        "entry": [{"resource": r, "search": {"mode": "match"}} for r in resources],
    }
