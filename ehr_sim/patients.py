"""The demo's patients: generated adults for the risk services, and the vancomycin inpatient.

Patients come from ``carebundle`` (seeded, US Core), to which this module adds
what the cardiovascular model needs and carebundle does not emit: a US Core race
extension and a tobacco smoking status Observation (LOINC 72166-2), both drawn from
the same seed so the demo is the same every time. The patients with years of history
are `ehr_sim.history`.
"""

from __future__ import annotations

import json
import random
from datetime import UTC, date, datetime, timedelta
from typing import Any

# US Core Race extension, OMB categories (CDC Race & Ethnicity code set, 2.16.840.1.113883.6.238).
_US_CORE_RACE = "http://hl7.org/fhir/us/core/StructureDefinition/us-core-race"
_OMB_SYSTEM = "urn:oid:2.16.840.1.113883.6.238"
_RACES = (("2106-3", "White"), ("2054-5", "Black or African American"), ("2028-9", "Asian"))
# Smoking status values (SNOMED CT, as in US Core's smoking status value set).
_SMOKING = (
    ("449868002", "Smokes tobacco daily"),
    ("8517006", "Ex-smoker"),
    ("266919005", "Never smoked tobacco"),
)
REFERENCE_DATE = date(2026, 1, 1)


def generate_patients(count: int, seed: int) -> list[dict[str, Any]]:
    """Transaction bundles for ``count`` adults aged 40-79 (the PCE population)."""
    import carebundle

    rng = random.Random(seed)  # noqa: S311 - seeded synthetic demo data, not security
    bundles = carebundle.generate_cohort(
        count=count, seed=seed, age_range=(40, 79), reference_date=REFERENCE_DATE
    )
    out = []
    for bundle in bundles:
        data = json.loads(carebundle.to_json(bundle))
        _add_race_and_smoking(data, rng)
        out.append(data)
    return out


def _add_race_and_smoking(bundle: dict[str, Any], rng: random.Random) -> None:
    patient_entry = next(e for e in bundle["entry"] if e["resource"]["resourceType"] == "Patient")
    code, display = rng.choices(_RACES, weights=(70, 20, 10))[0]
    patient_entry["resource"].setdefault("extension", []).append(
        {
            "url": _US_CORE_RACE,
            "extension": [
                {
                    "url": "ombCategory",
                    "valueCoding": {"system": _OMB_SYSTEM, "code": code, "display": display},
                },
                {"url": "text", "valueString": display},
            ],
        }
    )
    s_code, s_display = rng.choices(_SMOKING, weights=(20, 30, 50))[0]
    smoking = {
        "resourceType": "Observation",
        "status": "final",
        "category": [
            {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                        "code": "social-history",
                    }
                ]
            }
        ],
        "code": {
            "coding": [
                {
                    "system": "http://loinc.org",
                    "code": "72166-2",
                    "display": "Tobacco smoking status",
                }
            ]
        },
        "subject": {"reference": patient_entry["fullUrl"]},
        "effectiveDateTime": f"{REFERENCE_DATE.isoformat()}T09:00:00Z",
        "valueCodeableConcept": {
            "coding": [{"system": "http://snomed.info/sct", "code": s_code, "display": s_display}]
        },
    }
    bundle["entry"].append(
        {
            "fullUrl": f"urn:uuid:{_uuid_from(rng)}",
            "resource": smoking,
            "request": {"method": "POST", "url": "Observation"},
        }
    )


def _uuid_from(rng: random.Random) -> str:
    import uuid

    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


_RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
_LOINC = "http://loinc.org"


def vancomycin_patient(now: datetime | None = None) -> dict[str, Any]:
    """A transaction bundle: an inpatient on vancomycin 1000 mg every 12 h over 1 h for
    two days, with weight, creatinine, a peak and a trough, and a resolved dialysis
    dependence (read as not on dialysis, and the card names the record).

    Times are relative to ``now`` so the demo's dose simulator always has recent doses.
    """
    now = (now or datetime.now(UTC)).replace(minute=0, second=0, microsecond=0)
    first = now - timedelta(hours=48)
    patient_ref = "urn:uuid:6f1c1a52-8d3e-4f8e-9d5a-000000000001"

    def at(hours: float) -> str:
        return (first + timedelta(hours=hours)).isoformat()

    def quantity_obs(
        code: str, display: str, value: float, unit: str, hours: float
    ) -> dict[str, Any]:
        return {
            "resourceType": "Observation",
            "status": "final",
            "code": {"coding": [{"system": _LOINC, "code": code, "display": display}]},
            "subject": {"reference": patient_ref},
            "effectiveDateTime": at(hours),
            "valueQuantity": {
                "value": value,
                "unit": unit,
                "system": "http://unitsofmeasure.org",
                "code": unit,
            },
        }

    vancomycin = {"coding": [{"system": _RXNORM, "code": "11124", "display": "vancomycin"}]}
    resources: list[dict[str, Any]] = [
        {
            "resourceType": "Patient",
            "name": [{"given": ["Victor"], "family": "Vanko"}],
            "gender": "male",
            "birthDate": (now.date() - timedelta(days=int(62 * 365.25))).isoformat(),
        },
        quantity_obs("29463-7", "Body weight", 82.0, "kg", -6),
        quantity_obs("2160-0", "Creatinine [Mass/volume] in Serum or Plasma", 1.1, "mg/dL", -6),
        quantity_obs("2160-0", "Creatinine [Mass/volume] in Serum or Plasma", 1.2, "mg/dL", 30),
        {
            "resourceType": "Condition",
            "clinicalStatus": {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                        "code": "resolved",
                    }
                ]
            },
            "code": {
                "coding": [
                    {
                        "system": "http://hl7.org/fhir/sid/icd-10-cm",
                        "code": "Z99.2",
                        "display": "Dependence on renal dialysis",
                    }
                ]
            },
            "subject": {"reference": patient_ref},
        },
        {
            "resourceType": "MedicationRequest",
            "status": "active",
            "intent": "order",
            "medicationCodeableConcept": vancomycin,
            "subject": {"reference": patient_ref},
            "authoredOn": at(-1),
        },
    ]
    for k in range(4):  # 0, 12, 24, 36 h
        resources.append(
            {
                "resourceType": "MedicationAdministration",
                "status": "completed",
                "medicationCodeableConcept": vancomycin,
                "subject": {"reference": patient_ref},
                "effectivePeriod": {"start": at(12 * k), "end": at(12 * k + 1)},
                "dosage": {"dose": {"value": 1000, "unit": "mg"}},
            }
        )
    resources.append(quantity_obs("4090-7", "Vancomycin [Mass/volume] peak", 27.5, "mg/L", 38))
    resources.append(quantity_obs("4092-3", "Vancomycin [Mass/volume] trough", 12.5, "mg/L", 47.5))
    entries = []
    for i, res in enumerate(resources):
        full_url = patient_ref if i == 0 else f"urn:uuid:6f1c1a52-8d3e-4f8e-9d5a-{i + 1:012d}"
        entries.append(
            {
                "fullUrl": full_url,
                "resource": res,
                "request": {"method": "POST", "url": res["resourceType"]},
            }
        )
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}
