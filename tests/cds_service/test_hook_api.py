"""The hook endpoint end to end in-process: prefetch → twin → PCE → card → audit."""

from __future__ import annotations

import copy
import dataclasses
import json
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from cds_service.settings import Settings
from tests.conftest import hook_request, prefetch_from_bundle
from tests.support import fhir
from tests.support.fhir import RXNORM
from tests.support.pce import Patient, reference_risk
from twin_cds.app import create_app

TOKEN = "tok-9f8e7d6c5b4a-never-stored"  # noqa: S105 - a test token
PUBLIC_BASE = "https://twin.hospital.example"
WHITE_OMB_CODE = "2106-3"  # OMB race category "White" (CDC Race & Ethnicity code set)
# The HL7 Non-Adherence Reason code system (terminology.hl7.org), all six of its codes.
NON_ADHERENCE = "http://terminology.hl7.org/CodeSystem/non-adherence-reason-codes"
NON_ADHERENCE_REASONS = [
    ("cds-not-applicable", "PC CDS does not apply to patient"),
    ("cds-suboptimal-context", "PC CDS delivered in suboptimal context"),
    (
        "recipient-disagrees-evidence",
        "Recipient disagrees with recommendation because of issues with the evidence",
    ),
    ("recipient-concerns-outcomes", "Recipient has concerns regarding potential health outcomes"),
    (
        "does-not-align-preferences",
        "Recommendation does not align with patient preferences or values",
    ),
    ("not-convenient-feasible", "Not convenient or feasible"),
]


@pytest.fixture()
def client(tmp_path: Path) -> Iterator[TestClient]:
    settings = Settings(
        data_dir=tmp_path / "data", auth_required=False, public_base_url=PUBLIC_BASE
    )
    with TestClient(create_app(settings)) as c:
        yield c


def _observations(prefetch: dict[str, Any], loinc: str) -> list[dict[str, Any]]:
    return [
        e["resource"]
        for e in prefetch["observations"]["entry"]
        if any(c.get("code") == loinc for c in e["resource"]["code"]["coding"])
    ]


def _eligible(demo_bundles: list[dict[str, Any]]) -> dict[str, Any]:
    """The first generated patient with a complete PCE input set."""
    for bundle in demo_bundles:
        pf = prefetch_from_bundle(bundle)
        if _observations(pf, "2093-3") and _observations(pf, "2085-9"):
            return pf
    raise AssertionError("no generated patient has a lipid panel")


def _call(client: TestClient, prefetch: dict[str, Any], **extra: Any) -> Any:
    pid = prefetch["patient"]["id"]
    return client.post("/cds-services/ascvd-risk", json=hook_request(pid, prefetch, **extra))


def test_discovery_lists_the_service_with_its_prefetch(client: TestClient) -> None:
    """GET /cds-services names the service, its hook and prefetch templates."""
    services = client.get("/cds-services").json()["services"]
    ascvd = next(s for s in services if s["id"] == "ascvd-risk")
    assert ascvd["hook"] == "patient-view"
    assert ascvd["prefetch"]["patient"] == "Patient/{{context.patientId}}"
    assert {"title", "description", "usageRequirements"} <= set(ascvd)


# Goff 2013 Table A's worked-example man (55 years, white, total cholesterol 213 mg/dL,
# HDL 50 mg/dL, never smoked, no diabetes, untreated) with a systolic BP of 150 mm Hg
# instead of 120: the PCE's explanation baseline is the worked example, so systolic BP is
# the only factor, and its Shapley value is the whole difference from the baseline's risk.
SBP_MM_HG = 150.0


def _worked_example_man(today: date) -> dict[str, Any]:
    """The prefetch of that man, his laboratory results and BP a month old."""
    born = today.replace(year=today.year - 55) - timedelta(days=180)  # 55 completed years
    measured = f"{today - timedelta(days=30)}T09:00:00Z"
    resources = [
        fhir.obs("tc", "2093-3", 213.0, "mg/dL", measured),
        fhir.obs("hdl", "2085-9", 50.0, "mg/dL", measured),
        fhir.bp("bp", SBP_MM_HG, 90.0, measured),
        fhir.smoking("smk", "266919005", measured),  # never smoked tobacco
    ]
    return {
        "patient": fhir.patient("p1", gender="male", birth=born.isoformat(), race=[WHITE_OMB_CODE]),
        "observations": fhir.searchset(*resources),
        "conditions": fhir.searchset(),
        "medications": fhir.searchset(),
        "procedures": fhir.searchset(),
    }


def test_patient_view_answers_with_the_whole_explained_card(client: TestClient) -> None:
    """A known patient's card is exactly the one his values and the guidelines call for."""
    today = datetime.now(UTC).date()
    measured = (today - timedelta(days=30)).isoformat()
    worked_example = Patient("male", "white", 55.0, 213.0, 50.0, 120.0, False, False, False)
    him = dataclasses.replace(worked_example, sbp=SBP_MM_HG)
    risk = reference_risk(him)
    points = 100 * (risk - reference_risk(worked_example))
    assert 0.075 <= risk < 0.10  # intermediate (Grundy 2019 4.4.1), USPSTF 2022 grade C

    response = _call(client, _worked_example_man(today))

    assert response.status_code == 200
    (card,) = response.json()["cards"]
    statin = "atorvastatin 20 MG Oral Tablet"  # RxNorm 617310, moderate intensity
    expected = {
        "summary": f"10-year ASCVD risk {100 * risk:.1f}% (intermediate): "
        "start a moderate-intensity statin",
        "detail": "\n\n".join(
            [
                f"10-year ASCVD risk {100 * risk:.1f}% (intermediate). "
                f"Main factors: systolic BP 150 mmHg (+{points:.1f} points).",
                f"Used: total cholesterol 213 mg/dL, HDL 50 mg/dL ({measured}); "
                f"systolic BP 150 mmHg ({measured}).",
                "No statin on record.",
                "USPSTF 2022: grade C, offer a statin selectively.",
                "Evidence: 2018 AHA/ACC cholesterol guideline; Pooled Cohort Equations "
                "(Goff 2013).",
            ]
        ),
        "indicator": "warning",
        "source": {
            "label": "twin-cds · 2018 AHA/ACC cholesterol guideline, Pooled Cohort Equations"
        },
        "suggestions": [
            {
                "label": f"Draft {statin} once daily (moderate intensity)",
                "isRecommended": True,
                "actions": [
                    {
                        "type": "create",
                        "description": f"Draft {statin}",
                        "resource": {
                            "resourceType": "MedicationRequest",
                            "status": "draft",
                            "intent": "proposal",
                            "medicationCodeableConcept": {
                                "coding": [{"system": RXNORM, "code": "617310", "display": statin}],
                                "text": statin,
                            },
                            "subject": {"reference": "Patient/p1"},
                            "dosageInstruction": [
                                {
                                    "text": "1 tablet by mouth once daily",
                                    "timing": {
                                        "repeat": {"frequency": 1, "period": 1, "periodUnit": "d"}
                                    },
                                }
                            ],
                            "reasonCode": [{"text": "10-year risk 7.5% to 20%"}],
                        },
                    }
                ],
            }
        ],
        "selectionBehavior": "at-most-one",
        "overrideReasons": [
            {"system": NON_ADHERENCE, "code": code, "display": display}
            for code, display in NON_ADHERENCE_REASONS
        ],
        "links": [
            {
                "label": "Open the patient's twin",
                "url": f"{PUBLIC_BASE}/app/launch",
                "type": "smart",
                "appContext": '{"patient":"p1","twinVersion":1,"service":"ascvd-risk"}',
            }
        ],
    }
    card_uuid = uuid.UUID(card.pop("uuid"))
    suggestion_uuid = uuid.UUID(card["suggestions"][0].pop("uuid"))
    assert card == expected
    assert card_uuid != suggestion_uuid


def test_every_call_is_audited_and_the_token_is_never_stored(
    client: TestClient, demo_bundles: list[dict[str, Any]], tmp_path: Path
) -> None:
    """One audit record per call, naming the twin version and model hash; no token bytes."""
    prefetch = _eligible(demo_bundles)
    response = _call(
        client,
        prefetch,
        fhirServer="https://ehr.example/fhir",
        fhirAuthorization={"access_token": TOKEN, "token_type": "Bearer"},
    )
    assert response.status_code == 200
    audit = client.app.state.runtime.audit  # type: ignore[attr-defined]
    (record,) = audit.records()
    body = record.body
    assert body["hookInstance"] == "2a3b1c7e-0000-4000-8000-00000000c0de"
    assert body["service"] == "ascvd-risk"
    assert body["patient"] == prefetch["patient"]["id"]
    assert body["twin"]["version"] == 1
    assert len(body["model"]["sha256"]) == 64
    assert body["cards"] == response.json()["cards"]
    assert {i["name"] for i in body["inputs"]} >= {"total_cholesterol_mg_dl", "age_years"}
    assert audit.verify_chain() is None
    for path in (tmp_path / "data").rglob("*"):
        if path.is_file():  # the model archive is a folder of files
            assert TOKEN.encode() not in path.read_bytes(), path.name


def test_the_same_data_twice_reuses_the_twin_version(
    client: TestClient, demo_bundles: list[dict[str, Any]]
) -> None:
    """A refresh with unchanged data writes no new twin version; changed data does."""
    prefetch = _eligible(demo_bundles)
    _call(client, prefetch)
    _call(client, prefetch)
    changed = copy.deepcopy(prefetch)
    _observations(changed, "2093-3")[-1]["valueQuantity"]["value"] += 10
    _call(client, changed)
    versions = [r.body["twin"]["version"] for r in client.app.state.runtime.audit.records()]  # type: ignore[attr-defined]
    assert versions == [1, 1, 2]


def _break_cholesterol(prefetch: dict[str, Any], how: str) -> dict[str, Any]:
    broken = copy.deepcopy(prefetch)
    for obs in _observations(broken, "2093-3"):
        if how == "unknown-unit":
            obs["valueQuantity"] = {"value": 5.2, "unit": "furlongs", "code": "[fur_us]"}
        elif how == "non-numeric":
            obs["valueQuantity"]["value"] = "two hundred"
        elif how == "r5-field":
            obs["triggeredBy"] = [{"observation": {"reference": "Observation/x"}, "type": "reflex"}]
    return broken


@pytest.mark.parametrize("how", ["unknown-unit", "non-numeric", "r5-field"])
def test_bad_cholesterol_is_never_guessed(
    client: TestClient, demo_bundles: list[dict[str, Any]], how: str
) -> None:
    """A bad cholesterol entry is not used: the card says the risk was not computed and why."""
    response = _call(client, _break_cholesterol(_eligible(demo_bundles), how))
    assert response.status_code == 200
    (card,) = response.json()["cards"]
    assert card["summary"] == (
        "10-year ASCVD risk not computed: no usable total cholesterol; order a lipid panel"
    )
    assert "%" not in card["summary"]


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        (b"{not json", 400, "not JSON"),
        (b"[1, 2]", 400, "JSON object"),
        (b'{"hook": "patient-view", "hookInstance": "h"}', 400, "context"),
        (
            b'{"hook": "order-sign", "hookInstance": "h", "context": {"patientId": "p"}}',
            400,
            "answers patient-view",
        ),
        (
            b'{"hook": "patient-view", "hookInstance": "h", "context": {"patientId": "p"}}',
            400,
            "patient-view context needs userId",
        ),
        (
            b'{"hook": "patient-view", "hookInstance": "h", '
            b'"context": {"patientId": "p", "userId": "Practitioner/1"}}',
            412,
            "Patient",
        ),
        (
            b'{"hook": "patient-view", "hookInstance": "h", '
            b'"context": {"patientId": "p", "userId": "Practitioner/1"},'
            b' "prefetch": {"patient": {"resourceType": "Observation", "id": "o"}}}',
            412,
            "Patient",
        ),
    ],
)
def test_bad_requests_get_a_clear_4xx(
    client: TestClient, body: bytes, status: int, message: str
) -> None:
    """Malformed or unusable hook calls get a 4xx with an OperationOutcome naming the fault."""
    response = client.post(
        "/cds-services/ascvd-risk", content=body, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == status
    outcome = response.json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert message in outcome["issue"][0]["diagnostics"]


def test_unknown_service_is_404_and_on_the_record(client: TestClient) -> None:
    """A service id we do not offer is a 404, and the refused call is audited."""
    response = client.post("/cds-services/nope", json=hook_request("p"))
    assert response.status_code == 404
    (record,) = client.app.state.runtime.audit.records()  # type: ignore[attr-defined]
    assert record.body["status"] == "bad-request"
    assert record.body["service"] == "nope"
    assert "no CDS service 'nope'" in record.body["error"]


def test_an_oversized_body_is_413_and_on_the_record(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A body over the limit is refused before parsing, and the refusal is audited."""
    import cds_service.http.routes

    monkeypatch.setattr(cds_service.http.routes, "MAX_HOOK_BODY_BYTES", 1000)
    response = client.post(
        "/cds-services/ascvd-risk",
        content=b"{" + b" " * 2000 + b"}",
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 413
    (record,) = client.app.state.runtime.audit.records()  # type: ignore[attr-defined]
    assert record.body["status"] == "bad-request"
    assert "request body over" in record.body["error"]


def test_prefetch_for_another_patient_is_refused(
    client: TestClient, demo_bundles: list[dict[str, Any]]
) -> None:
    """Data whose Patient is not context.patientId is never used for this patient."""
    prefetch = _eligible(demo_bundles)
    body = hook_request("someone-else", prefetch)
    response = client.post("/cds-services/ascvd-risk", json=body)
    assert response.status_code == 412


def _with_condition(prefetch: dict[str, Any], snomed: str, display: str) -> dict[str, Any]:
    out = copy.deepcopy(prefetch)
    out["conditions"]["entry"].append(
        {
            "resource": {
                "resourceType": "Condition",
                "id": "mi-1",
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
                        {"system": "http://snomed.info/sct", "code": snomed, "display": display}
                    ]
                },
                "subject": {"reference": f"Patient/{out['patient']['id']}"},
                "onsetDateTime": "2019-05-01",
            }
        }
    )
    return out


def test_clinical_ascvd_puts_the_patient_outside_the_pce(
    client: TestClient, demo_bundles: list[dict[str, Any]]
) -> None:
    """A past (even resolved) MI: secondary prevention, no primary-prevention number; the
    reason is audited."""
    prefetch = _with_condition(_eligible(demo_bundles), "22298006", "Myocardial infarction")
    response = _call(client, prefetch)
    assert response.status_code == 200
    (card,) = response.json()["cards"]
    assert card["summary"].startswith("Clinical ASCVD (myocardial infarction, ")
    assert "%" not in card["summary"]
    (record,) = client.app.state.runtime.audit.records()  # type: ignore[attr-defined]
    assert any("secondary prevention" in p for p in record.body["dataProblems"])


def test_a_deceased_patient_gets_no_risk_card(
    client: TestClient, demo_bundles: list[dict[str, Any]]
) -> None:
    """A patient recorded as deceased is outside every model's population."""
    prefetch = copy.deepcopy(_eligible(demo_bundles))
    prefetch["patient"]["deceasedDateTime"] = "2025-03-01T00:00:00Z"
    response = _call(client, prefetch)
    assert response.status_code == 200
    assert response.json()["cards"] == []


def test_the_service_is_offered_at_discharge_too(
    client: TestClient, demo_bundles: list[dict[str, Any]]
) -> None:
    """encounter-discharge has its own service id; it needs encounterId and answers a card."""
    services = client.get("/cds-services").json()["services"]
    hooks = {s["id"]: s["hook"] for s in services}
    assert hooks["ascvd-risk-discharge"] == "encounter-discharge"
    prefetch = _eligible(demo_bundles)
    pid = prefetch["patient"]["id"]
    body = hook_request(pid, prefetch)
    body["hook"] = "encounter-discharge"
    without = client.post("/cds-services/ascvd-risk-discharge", json=body)
    assert without.status_code == 400
    assert "encounterId" in without.json()["issue"][0]["diagnostics"]
    body["context"]["encounterId"] = "enc-1"
    body["prefetch"]["encounter"] = None  # the EHR found no Encounter resource: no data
    response = client.post("/cds-services/ascvd-risk-discharge", json=body)
    assert response.status_code == 200
    assert response.json()["cards"][0]["summary"].startswith("10-year ASCVD risk ")


def test_an_internal_fault_is_still_audited(
    client: TestClient, demo_bundles: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bug of ours while computing: the call is recorded with status error and its type."""
    import cds_service.pipeline.run as pipeline

    def broken(*_: Any, **__: Any) -> Any:
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(pipeline, "derive_features", broken)
    with TestClient(client.app, raise_server_exceptions=False) as c:
        response = _call(c, _eligible(demo_bundles))
        assert response.status_code == 500
        assert response.json()["resourceType"] == "OperationOutcome"
        record = c.app.state.runtime.audit.records()[-1]  # type: ignore[attr-defined]
    assert record.body["status"] == "error"
    assert record.body["error"] == "ZeroDivisionError"


def test_a_refused_call_is_audited_without_its_body(client: TestClient) -> None:
    """A malformed call is on the record with what was wrong, its ids, and nothing more."""
    body = hook_request("p-9", {"patient": {"resourceType": "Patient", "id": "p-9"}})
    body["hook"] = "order-sign"
    response = client.post("/cds-services/ascvd-risk", json=body)
    assert response.status_code == 400
    (record,) = client.app.state.runtime.audit.records()  # type: ignore[attr-defined]
    assert record.body["status"] == "bad-request"
    assert record.body["patient"] == "p-9"
    assert "answers patient-view" in record.body["error"]
    assert "prefetch" not in json.dumps(record.body)
    garbage = client.post(
        "/cds-services/ascvd-risk", content=b"{oops", headers={"Content-Type": "application/json"}
    )
    assert garbage.status_code == 400
    assert client.app.state.runtime.audit.records()[-1].body["status"] == "bad-request"  # type: ignore[attr-defined]
