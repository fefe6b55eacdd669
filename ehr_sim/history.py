"""Demo patients with years of history, so the app's timelines show trajectories and the
cards meet the situations the clinical rules are for.

Three named records, with times relative to `now` so they stay current:

- ``statin-start``: yearly lipid panels, high before atorvastatin 20 mg was started four
  years ago and lower since; blood pressure and creatinine yearly for eight years.
- ``acute-kidney-injury``: a creatinine steady at about 1.0 mg/dL for years, then 2.9
  mg/dL two days ago (KDIGO stage 2).
- ``stale-panel``: the last lipid panel seven years ago; blood pressure and creatinine
  current.

Used by the demo and the integration tests; the service never imports it.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

_LOINC = "http://loinc.org"
_UCUM = "http://unitsofmeasure.org"
_US_CORE_RACE = "http://hl7.org/fhir/us/core/StructureDefinition/us-core-race"


def _patient(given: str, family: str, gender: str, birth: date) -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "name": [{"given": [given], "family": family}],
        "gender": gender,
        "birthDate": birth.isoformat(),
        "extension": [
            {
                "url": _US_CORE_RACE,
                "extension": [
                    {
                        "url": "ombCategory",
                        "valueCoding": {
                            "system": "urn:oid:2.16.840.1.113883.6.238",
                            "code": "2106-3",
                            "display": "White",
                        },
                    },
                    {"url": "text", "valueString": "White"},
                ],
            }
        ],
    }


def _quantity(ref: str, code: str, value: float, unit: str, when: datetime) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": _LOINC, "code": code}]},
        "subject": {"reference": ref},
        "effectiveDateTime": when.isoformat(),
        "valueQuantity": {"value": value, "unit": unit, "system": _UCUM, "code": unit},
    }


def _bp(ref: str, sbp: float, dbp: float, when: datetime) -> dict[str, Any]:
    def component(code: str, value: float) -> dict[str, Any]:
        return {
            "code": {"coding": [{"system": _LOINC, "code": code}]},
            "valueQuantity": {"value": value, "unit": "mm[Hg]", "system": _UCUM, "code": "mm[Hg]"},
        }

    return {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": _LOINC, "code": "85354-9"}]},
        "subject": {"reference": ref},
        "effectiveDateTime": when.isoformat(),
        "component": [component("8480-6", sbp), component("8462-4", dbp)],
    }


def _smoking(ref: str, when: datetime) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": _LOINC, "code": "72166-2"}]},
        "subject": {"reference": ref},
        "effectiveDateTime": when.isoformat(),
        "valueCodeableConcept": {
            "coding": [{"system": "http://snomed.info/sct", "code": "266919005"}]
        },
    }


def _panel(ref: str, total: float, hdl: float, ldl: float, when: datetime) -> list[dict[str, Any]]:
    return [
        _quantity(ref, "2093-3", total, "mg/dL", when),
        _quantity(ref, "2085-9", hdl, "mg/dL", when),
        _quantity(ref, "13457-7", ldl, "mg/dL", when),
    ]


def _transaction(resources: list[dict[str, Any]], ref: str) -> dict[str, Any]:
    entries = []
    for i, resource in enumerate(resources):
        full_url = ref if i == 0 else f"{ref[:-4]}{i:04d}"
        entries.append(
            {
                "fullUrl": full_url,
                "resource": resource,
                "request": {"method": "POST", "url": resource["resourceType"]},
            }
        )
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}


def _years_ago(now: datetime, years: float) -> datetime:
    return now - timedelta(days=round(365.25 * years))


def _yearly(now: datetime, years: int) -> list[datetime]:
    """One visit a year, the last one three months ago."""
    return [_years_ago(now, y - 0.75) for y in range(years, 0, -1)]


def _statin_start(now: datetime) -> dict[str, Any]:
    ref = "urn:uuid:7a1d0000-0000-4000-8000-000000010000"
    resources: list[dict[str, Any]] = [
        _patient("Hana", "Trajectory", "female", _years_ago(now, 62).date())
    ]
    for i, when in enumerate(_yearly(now, 8)):
        resources.append(_bp(ref, 156 - 2 * i, 90 - i, when))
        resources.append(_quantity(ref, "2160-0", 0.8 + 0.01 * i, "mg/dL", when))
        resources.append(_quantity(ref, "39156-5", 29.0 - 0.1 * i, "kg/m2", when))
        treated = when > _years_ago(now, 4)
        total, hdl, ldl = (182, 50, 98) if treated else (276 + 3 * i, 36, 192 - 3 * i)
        resources += _panel(ref, total, hdl, ldl, when)
    resources.append(_smoking(ref, _years_ago(now, 1)))
    resources.append(
        {
            "resourceType": "MedicationRequest",
            "status": "active",
            "intent": "order",
            "medicationCodeableConcept": {
                "coding": [
                    {
                        "system": "http://www.nlm.nih.gov/research/umls/rxnorm",
                        "code": "617310",
                        "display": "atorvastatin 20 MG Oral Tablet",
                    }
                ]
            },
            "subject": {"reference": ref},
            "authoredOn": _years_ago(now, 4).date().isoformat(),
        }
    )
    return _transaction(resources, ref)


def _acute_kidney_injury(now: datetime) -> dict[str, Any]:
    ref = "urn:uuid:7a1d0000-0000-4000-8000-000000020000"
    resources: list[dict[str, Any]] = [
        _patient("Arno", "Injury", "male", _years_ago(now, 66).date())
    ]
    for i, when in enumerate(_yearly(now, 6)):
        resources.append(_bp(ref, 132 + i, 80, when))
        resources.append(_quantity(ref, "2160-0", 0.95 + 0.02 * (i % 3), "mg/dL", when))
        resources.append(_quantity(ref, "39156-5", 27.5, "kg/m2", when))
    resources += _panel(ref, 205, 47, 128, _years_ago(now, 0.5))
    resources.append(_quantity(ref, "2160-0", 1.0, "mg/dL", now - timedelta(days=4)))
    resources.append(_quantity(ref, "2160-0", 2.9, "mg/dL", now - timedelta(days=2)))
    resources.append(_bp(ref, 128, 76, now - timedelta(days=2)))
    resources.append(_smoking(ref, _years_ago(now, 1)))
    return _transaction(resources, ref)


def _stale_panel(now: datetime) -> dict[str, Any]:
    ref = "urn:uuid:7a1d0000-0000-4000-8000-000000030000"
    resources: list[dict[str, Any]] = [
        _patient("Stella", "Stale", "female", _years_ago(now, 52).date())
    ]
    resources += _panel(ref, 228, 55, 140, _years_ago(now, 7))
    for i, when in enumerate(_yearly(now, 5)):
        resources.append(_bp(ref, 124 + i, 78, when))
        resources.append(_quantity(ref, "2160-0", 0.7, "mg/dL", when))
        resources.append(_quantity(ref, "39156-5", 24.0, "kg/m2", when))
    resources.append(_smoking(ref, _years_ago(now, 1)))
    return _transaction(resources, ref)


def history_patients(now: datetime | None = None) -> dict[str, dict[str, Any]]:
    """Scenario name -> transaction bundle, with times relative to `now`."""
    moment = now or datetime.now(UTC)
    return {
        "statin-start": _statin_start(moment),
        "acute-kidney-injury": _acute_kidney_injury(moment),
        "stale-panel": _stale_panel(moment),
    }
