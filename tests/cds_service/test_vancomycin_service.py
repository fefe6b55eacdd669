"""The vancomycin-dosing service on order-select / order-sign, end to end in-process."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from cds_service.http.cards import CdsResponse
from cds_service.settings import Settings
from tests.support.vancomycin import draft_order, searchset, vancomycin_call
from twin_cds.app import create_app


@pytest.fixture()
def client(tmp_path: Path) -> Iterator[TestClient]:
    with TestClient(create_app(Settings(data_dir=tmp_path, auth_required=False))) as c:
        yield c


def _body(hook: str, draft: dict[str, Any], *, dialysis: bool | None = False) -> dict[str, Any]:
    return vancomycin_call(hook, f"v-{hook}", draft, dialysis=dialysis, encounters=True)


@pytest.mark.parametrize(
    ("service", "hook"),
    [("vancomycin-dosing", "order-select"), ("vancomycin-dosing-sign", "order-sign")],
)
def test_an_off_target_draft_gets_an_update_suggestion(
    client: TestClient, service: str, hook: str
) -> None:
    """500 mg every 24 h is far below 400 mg·h/L: a warning and a full MedicationRequest update."""
    response = client.post(f"/cds-services/{service}", json=_body(hook, draft_order(500, 24)))
    assert response.status_code == 200, response.text
    CdsResponse.model_validate(response.json())
    (card,) = response.json()["cards"]
    assert "AUC24" in card["summary"]
    assert card["indicator"] == "warning"
    assert "Observed mg/L" in card["detail"]  # the fit to the measured levels is shown
    assert "Goti 2018" in card["source"]["label"]
    (link,) = card["links"]
    assert link["type"] == "smart"
    assert '"view":"dose-simulator"' in link["appContext"]
    (suggestion,) = card["suggestions"]
    (action,) = suggestion["actions"]
    assert action["type"] == "update"
    updated = action["resource"]
    assert updated["resourceType"] == "MedicationRequest"
    assert updated["id"] == "draft-1"
    dose = updated["dosageInstruction"][0]["doseAndRate"][0]["doseQuantity"]
    assert dose["unit"] == "mg" and dose["value"] % 250 == 0
    from fhir.resources.R4B.medicationrequest import MedicationRequest

    MedicationRequest.model_validate(updated)  # a valid FHIR R4 resource


def test_no_vancomycin_draft_no_card(client: TestClient) -> None:
    """A drafted order for another drug gets no vancomycin card."""
    response = client.post(
        "/cds-services/vancomycin-dosing",
        json=_body("order-select", draft_order(500, 24, drug="29046")),
    )
    assert response.status_code == 200
    assert response.json()["cards"] == []


def test_no_dialysis_record_doses_and_says_so(client: TestClient) -> None:
    """No dialysis record (most inpatients): dosed as not on dialysis, said in one line."""
    body = _body("order-select", draft_order(1000, 12), dialysis=None)
    response = client.post("/cds-services/vancomycin-dosing", json=body)
    assert response.status_code == 200
    (card,) = response.json()["cards"]
    assert "mg·h/L" in card["detail"]
    assert "no dialysis recorded in the last 30 days" in card["detail"]


def test_an_unreadable_draft_is_named(client: TestClient) -> None:
    """A draft without a dose is reported, never guessed."""
    draft = draft_order(1000, 12)
    del draft["dosageInstruction"][0]["doseAndRate"]
    response = client.post("/cds-services/vancomycin-dosing", json=_body("order-select", draft))
    assert response.status_code == 200
    (card,) = response.json()["cards"]
    assert "doseQuantity" in card["detail"]


def _break(draft: dict[str, Any], how: str) -> dict[str, Any]:
    if how == "dosage-dict":
        draft["dosageInstruction"] = {"timing": {}}
    elif how == "dose-and-rate-strings":
        draft["dosageInstruction"][0]["doseAndRate"] = ["x"]
    elif how == "timing-list":
        draft["dosageInstruction"][0]["timing"] = [1]
    elif how == "coding-int":
        draft["medicationCodeableConcept"] = {"coding": 5}
    elif how == "huge-dose":
        draft["dosageInstruction"][0]["doseAndRate"][0]["doseQuantity"] = {
            "value": 1e308,
            "code": "g",
        }
    elif how == "negative-dose":
        draft["dosageInstruction"][0]["doseAndRate"][0]["doseQuantity"]["value"] = -500
    return draft


@pytest.mark.parametrize(
    "how",
    [
        "dosage-dict",
        "dose-and-rate-strings",
        "timing-list",
        "coding-int",
        "huge-dose",
        "negative-dose",
    ],
)
def test_malformed_drafts_are_named_never_a_500(client: TestClient, how: str) -> None:
    """Review finding: ill-typed draft orders answered 500; each is now a named refusal."""
    body = _body("order-select", _break(draft_order(1000, 12), how))
    response = client.post("/cds-services/vancomycin-dosing", json=body)
    assert response.status_code == 200, response.text
    for card in response.json()["cards"]:
        assert "mg·h/L" not in card["summary"]


@pytest.mark.parametrize(
    "context_patch",
    [{"selections": 5}, {"selections": [{"a": 1}]}, {"draftOrders": {"entry": 3}}],
)
def test_malformed_context_is_not_a_500(client: TestClient, context_patch: dict[str, Any]) -> None:
    """Ill-typed selections or draftOrders: no card, never a 500."""
    body = _body("order-select", draft_order(1000, 12))
    body["context"].update(context_patch)
    response = client.post("/cds-services/vancomycin-dosing", json=body)
    assert response.status_code < 500


@pytest.mark.parametrize("where", ["contained", "bundled"])
def test_a_draft_by_medication_reference_is_recognised(client: TestClient, where: str) -> None:
    """Review finding: drafts naming a Medication resource were silently ignored."""
    draft = draft_order(500, 24)
    code = draft.pop("medicationCodeableConcept")
    medication = {"resourceType": "Medication", "id": "vanco", "code": code}
    body = _body("order-select", draft)
    if where == "contained":
        draft["contained"] = [medication]
        draft["medicationReference"] = {"reference": "#vanco"}
    else:
        draft["medicationReference"] = {"reference": "Medication/vanco"}
        body["context"]["draftOrders"]["entry"].append({"resource": medication})
    response = client.post("/cds-services/vancomycin-dosing", json=body)
    (card,) = response.json()["cards"]
    assert "AUC24" in card["summary"]


def _card(client: TestClient, draft: dict[str, Any], **kw: Any) -> dict[str, Any]:
    response = client.post(
        "/cds-services/vancomycin-dosing", json=_body("order-select", draft, **kw)
    )
    assert response.status_code == 200, response.text
    (card,) = response.json()["cards"]
    return dict(card)


def _auc_row(card: dict[str, Any]) -> str:
    return next(line for line in card["detail"].splitlines() if line.startswith("| AUC24"))


def _timed(timing: dict[str, Any]) -> dict[str, Any]:
    draft = draft_order(1000, 12)
    draft["dosageInstruction"][0]["timing"] = timing
    return draft


def test_twice_daily_written_two_ways_gives_equal_aucs(client: TestClient) -> None:
    """Issue finding: frequency 2 per 1 d was read as every 24 h; it equals period 12 h."""
    per_day = _card(client, _timed({"repeat": {"frequency": 2, "period": 1, "periodUnit": "d"}}))
    every_12 = _card(client, _timed({"repeat": {"period": 12, "periodUnit": "h"}}))
    assert _auc_row(per_day) == _auc_row(every_12)
    assert "q12h" in per_day["summary"]


@pytest.mark.parametrize("code", ["BID", "Q12H"])
def test_timing_code_gives_the_interval(client: TestClient, code: str) -> None:
    """timing.code BID or Q12H (v3-GTSAbbreviation) alone is every 12 h."""
    system = "http://terminology.hl7.org/CodeSystem/v3-GTSAbbreviation"
    card = _card(client, _timed({"code": {"coding": [{"system": system, "code": code}]}}))
    every_12 = _card(client, _timed({"repeat": {"period": 12, "periodUnit": "h"}}))
    assert _auc_row(card) == _auc_row(every_12)


def test_a_rate_gives_the_infusion_time(client: TestClient) -> None:
    """doseAndRate rateQuantity 500 mg/h: a 1000 mg dose runs over 2 h."""
    draft = draft_order(1000, 12)
    draft["dosageInstruction"][0]["doseAndRate"][0]["rateQuantity"] = {"value": 500, "code": "mg/h"}
    card = _card(client, draft)
    assert "1000 mg every 12 h over 2 h" in card["detail"]


def test_an_ambiguous_timing_is_named_not_guessed(client: TestClient) -> None:
    """Every 8 to 12 h: no AUC, and the card names the range."""
    card = _card(client, _timed({"repeat": {"period": 8, "periodMax": 12, "periodUnit": "h"}}))
    assert card["summary"] == "Vancomycin AUC not predicted: the drafted order is unclear"
    assert "periodMax" in card["detail"]


@pytest.mark.parametrize(
    "route",
    [
        {"coding": [{"system": "http://snomed.info/sct", "code": "26643006"}]},
        {"text": "rectal"},
    ],
)
def test_oral_or_rectal_vancomycin_gets_no_card(client: TestClient, route: dict[str, Any]) -> None:
    """Oral (C. difficile) and rectal vancomycin are not absorbed: this service stays silent."""
    draft = draft_order(125, 6)
    draft["dosageInstruction"][0]["route"] = route
    response = client.post("/cds-services/vancomycin-dosing", json=_body("order-select", draft))
    assert response.status_code == 200
    assert response.json()["cards"] == []


def test_an_oral_capsule_order_without_route_gets_no_card(client: TestClient) -> None:
    """125 mg oral capsules named only by the medication: silent too."""
    draft = draft_order(125, 6)
    draft["medicationCodeableConcept"]["coding"][0]["display"] = "vancomycin 125 MG Oral Capsule"
    response = client.post("/cds-services/vancomycin-dosing", json=_body("order-select", draft))
    assert response.json()["cards"] == []


def test_an_iv_order_is_dosed(client: TestClient) -> None:
    """Route intravenous: the card predicts exposure, with P(> 600) and trough."""
    draft = draft_order(1000, 12)
    draft["dosageInstruction"][0]["route"] = {
        "coding": [{"system": "http://snomed.info/sct", "code": "47625008"}]
    }
    card = _card(client, draft)
    assert "P(AUC24 > 600)" in card["detail"]
    assert "trough at steady state" in card["detail"]


def test_a_dialysis_encounter_in_prefetch_is_used(client: TestClient) -> None:
    """A dialysis encounter last week (prefetch key encounters) puts the patient on dialysis."""
    body = _body("order-select", draft_order(1000, 24), dialysis=None)
    body["prefetch"]["encounters"] = searchset(
        [
            {
                "resourceType": "Encounter",
                "id": "hd1",
                "status": "finished",
                "subject": {"reference": "Patient/p1"},
                "type": [{"coding": [{"system": "http://snomed.info/sct", "code": "302497006"}]}],
                "period": {"start": _recent(days=7)},
            }
        ]
    )
    response = client.post("/cds-services/vancomycin-dosing", json=body)
    (card,) = response.json()["cards"]
    # The record's name enters the Markdown escaped (render.md_text).
    assert "on dialysis (Encounter/hd1 \\(302497006\\))" in card["detail"]


def _recent(days: float) -> str:
    from datetime import UTC, datetime, timedelta

    return (datetime.now(UTC) - timedelta(days=days)).isoformat()


def test_dosing_audit_record_names_twin_version_and_inputs(client: TestClient) -> None:
    """Like a risk record: twin version, and the weight, creatinine, dialysis and levels used."""
    _card(client, draft_order(1000, 12))
    (record,) = client.app.state.runtime.audit.records()  # type: ignore[attr-defined]
    body = record.body
    assert body["twin"]["version"] == 1 and body["model"]["id"] == "vancomycin_goti2018"
    inputs = {i["name"]: i for i in body["inputs"]}
    assert inputs["weight"]["value"] == 70.0 and inputs["weight"]["sources"] == ["Observation/wt"]
    assert inputs["dialysis"]["value"] is False
    assert inputs["regimen assessed"]["value"] == "1000 mg every 12 h over 1 h"
    levels = [i["value"] for i in body["inputs"] if i["name"] == "vancomycin level"]
    assert levels == [12.0, 9.5]
