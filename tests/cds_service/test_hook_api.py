"""The hook endpoint end to end in-process: prefetch → twin → PCE → card → audit."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from cds_service.settings import Settings
from tests.conftest import hook_request, prefetch_from_bundle
from twin_cds.app import create_app

TOKEN = "tok-9f8e7d6c5b4a-never-stored"  # noqa: S105 - a test token


@pytest.fixture()
def client(tmp_path: Path) -> Iterator[TestClient]:
    settings = Settings(data_dir=tmp_path / "data", auth_required=False)
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


def test_patient_view_answers_with_an_explained_card(
    client: TestClient, demo_bundles: list[dict[str, Any]]
) -> None:
    """The card leads with the risk and the decision; the detail names the main factors
    and the evidence in under 700 characters; the full inputs are behind the app link."""
    prefetch = _eligible(demo_bundles)
    response = _call(client, prefetch)
    assert response.status_code == 200
    (card,) = response.json()["cards"]
    tc = _observations(prefetch, "2093-3")[-1]
    tc_value = tc["valueQuantity"]["value"]
    tc_date = tc["effectiveDateTime"][:10]
    assert card["summary"].startswith("10-year ASCVD risk ")
    assert len(card["summary"]) < 140
    assert tc_value and tc_date  # the prefetch has the panel the risk was computed from
    assert ": " in card["summary"]  # "10-year ASCVD risk X% (tier): <decision>"
    assert "Main factors: " in card["detail"]
    assert len(card["detail"]) <= 700
    assert "Evidence: 2018 AHA/ACC cholesterol guideline" in card["detail"]
    assert card["source"]["label"].startswith("twin-cds · ")
    assert card["indicator"] in ("info", "warning", "critical")
    (link,) = card["links"]
    assert link["type"] == "smart"
    assert json.loads(link["appContext"])["patient"] == prefetch["patient"]["id"]


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
    import twin_cds.app

    monkeypatch.setattr(twin_cds.app, "MAX_BODY_BYTES", 1000)
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
