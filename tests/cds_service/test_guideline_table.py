"""The table a clinician would check first: patient situations against the decision in
the `summary` of every patient-view service (ascvd-risk, its discharge twin, and
cardio-renal-risk), all from one shared reading of the patient."""

# ruff: noqa: E501  -- each expected summary stays on one line, as the clinician reads it

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from datetime import date
from typing import Any

import pytest
from fastapi.testclient import TestClient

from cds_service.settings import Settings
from tests.conftest import hook_request
from tests.support.fhir import bp, condition, med_request, obs, patient, smoking
from twin_cds.app import create_app

TODAY = date(2026, 6, 1)
FRESH = "2026-05-01T09:00:00Z"
SNOMED = "http://snomed.info/sct"


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    settings = Settings(data_dir=tmp_path_factory.mktemp("table"), auth_required=False)
    with TestClient(create_app(settings)) as c:
        c.app.state.runtime = dataclasses.replace(c.app.state.runtime, today=lambda: TODAY)  # type: ignore[attr-defined]
        yield c


def _lipids(total: float, hdl: float, ldl: float, when: str, tag: str = "") -> list[dict[str, Any]]:
    return [
        obs(f"tc{tag}", "2093-3", total, "mg/dL", when),
        obs(f"hdl{tag}", "2085-9", hdl, "mg/dL", when),
        obs(f"ldl{tag}", "13457-7", ldl, "mg/dL", when),
    ]


def _creatinine(values: list[tuple[str, float]]) -> list[dict[str, Any]]:
    return [obs(f"cr{i}", "2160-0", v, "mg/dL", when) for i, (when, v) in enumerate(values)]


def _person(
    *,
    birth: str = "1965-03-01",
    gender: str = "male",
    lipids: list[dict[str, Any]] | None = None,
    creatinine: list[tuple[str, float]] | None = None,
    extra: tuple[dict[str, Any], ...] = (),
) -> list[dict[str, Any]]:
    """A 61-year-old white man, never smoker, BP 138/85, lipids and creatinine of May 2026."""
    return [
        patient(gender=gender, birth=birth, race=["2106-3"]),
        bp("bp1", 138, 85, FRESH),
        smoking("s1", "266919005", FRESH),
        obs("bmi", "39156-5", 28.0, "kg/m2", FRESH),
        *(lipids if lipids is not None else _lipids(210, 45, 130, FRESH)),
        *_creatinine(creatinine if creatinine is not None else [(FRESH, 0.97)]),
        *extra,
    ]


def _pci() -> dict[str, Any]:
    return {
        "resourceType": "Procedure",
        "id": "pci",
        "status": "completed",
        "code": {"coding": [{"system": SNOMED, "code": "415070008", "display": "PCI"}]},
        "subject": {"reference": "Patient/p1"},
        "performedDateTime": "2022-03-01",
    }


SITUATIONS: dict[str, list[dict[str, Any]]] = {
    "acute rise": _person(
        creatinine=[("2026-05-20T08:00:00Z", 0.97), ("2026-05-25T08:00:00Z", 3.1)]
    ),
    "stable G4": _person(
        creatinine=[(f"{y}-01-10T08:00:00Z", 2.7) for y in (2023, 2024, 2025)]
        + [("2026-05-10T08:00:00Z", 2.8)]
    ),
    "on statin": _person(
        lipids=_lipids(262, 38, 180, "2019-06-01T09:00:00Z", "0") + _lipids(175, 46, 95, FRESH),
        extra=(
            med_request("st", "617310", "atorvastatin 20 MG Oral Tablet", authored="2020-01-01"),
        ),
    ),
    "diabetes": _person(
        lipids=_lipids(190, 50, 116, FRESH),
        extra=(condition("dm", SNOMED, "44054006", onset="2015-01-01"),),
    ),
    "LDL >= 190": _person(lipids=_lipids(290, 48, 195, FRESH)),
    "PCI as Procedure only": _person(extra=(_pci(),)),
    "known HF": _person(extra=(condition("hf", SNOMED, "88805009", onset="2021-01-01"),)),
    "age 25": _person(birth="2001-01-01"),
    "age 82": _person(birth="1944-01-01"),
    "stale lipids": _person(lipids=_lipids(210, 45, 130, "2019-03-01T09:00:00Z")),
    "pregnancy": _person(
        birth="1994-04-01",
        gender="female",
        extra=(condition("preg", SNOMED, "72892002", onset="2026-02-01"),),
    ),
}

#: situation -> (ascvd-risk summaries, cardio-renal-risk summaries)
EXPECTED: dict[str, tuple[list[str], list[str]]] = {
    "acute rise": (
        ["10-year ASCVD risk 11.9% (intermediate): start a moderate-intensity statin"],
        [
            "Acute kidney injury, KDIGO stage 3: creatinine 3.1 mg/dL is 3.2x baseline 0.97; no kidney-based risk until stable"
        ],
    ),
    "stable G4": (
        ["10-year ASCVD risk 11.9% (intermediate): start a moderate-intensity statin"],
        [
            "10-year cardiovascular risk 21.2% (PREVENT): ASCVD 11.2%, heart failure 13.0%",
            "CKD G4 (eGFR 25 mL/min/1.73 m2 since 2023): refer to nephrology (eGFR under 30)",
        ],
    ),
    "on statin": (
        [
            "Untreated 10-year ASCVD risk 16.0% (intermediate, before the statin): on atorvastatin 20 mg, moderate intensity"
        ],
        ["10-year cardiovascular risk 7.0% (PREVENT): ASCVD 4.5%, heart failure 3.5%"],
    ),
    "diabetes": (
        [
            "Diabetes at 61: start at least a moderate-intensity statin, whatever the 10-year risk (18.7%)"
        ],
        ["10-year cardiovascular risk 14.0% (PREVENT): ASCVD 8.7%, heart failure 7.0%"],
    ),
    "LDL >= 190": (
        ["LDL 195 mg/dL: start a high-intensity statin; no risk estimate is needed at 190 or more"],
        ["10-year cardiovascular risk 8.9% (PREVENT): ASCVD 7.3%, heart failure 3.5%"],
    ),
    "PCI as Procedure only": (
        ["Clinical ASCVD (PCI, 2022): start a high-intensity statin; no risk score applies"],
        [],
    ),
    "known HF": (
        ["10-year ASCVD risk 11.9% (intermediate): start a moderate-intensity statin"],
        [],
    ),
    "age 25": ([], []),
    "age 82": ([], []),
    "stale lipids": (
        [
            "10-year ASCVD risk not computed: lipids from 2019 are too old (over 5 years); order a lipid panel"
        ],
        [
            "Cardiovascular risk not computed: lipids from 2019 are too old (over 5 years); order a lipid panel"
        ],
    ),
    "pregnancy": (["Pregnant: no statin and no 10-year ASCVD risk until after the pregnancy"], []),
}


def _summaries(client: TestClient, service: str, resources: list[dict[str, Any]]) -> list[str]:
    by_type: dict[str, list[dict[str, Any]]] = {}
    for r in resources[1:]:
        by_type.setdefault(r["resourceType"], []).append(r)

    def bundle(kind: str) -> dict[str, Any] | None:
        found = by_type.get(kind)
        if not found:
            return None
        return {
            "resourceType": "Bundle",
            "type": "searchset",
            "entry": [{"resource": r} for r in found],
        }

    prefetch = {
        "patient": resources[0],
        "observations": bundle("Observation"),
        "conditions": bundle("Condition"),
        "medications": bundle("MedicationRequest"),
        "procedures": bundle("Procedure"),
    }
    body = hook_request("p1", prefetch)
    if service == "ascvd-risk-discharge":
        body["hook"] = "encounter-discharge"
        body["context"]["encounterId"] = "e1"
        body["prefetch"]["encounter"] = {
            "resourceType": "Encounter",
            "id": "e1",
            "status": "finished",
            "class": {"code": "IMP"},
            "subject": {"reference": "Patient/p1"},
        }
    response = client.post(f"/cds-services/{service}", json=body)
    assert response.status_code == 200, response.text
    return [c["summary"] for c in response.json()["cards"]]


@pytest.mark.parametrize("situation", list(SITUATIONS))
def test_every_patient_view_service_states_the_decision(client: TestClient, situation: str) -> None:
    """The exact decision in each service's summary for one patient situation."""
    resources = SITUATIONS[situation]
    ascvd = _summaries(client, "ascvd-risk", resources)
    discharge = _summaries(client, "ascvd-risk-discharge", resources)
    renal = _summaries(client, "cardio-renal-risk", resources)
    assert discharge == ascvd
    assert (ascvd, renal) == EXPECTED[situation]
