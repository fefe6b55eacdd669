"""Feedback is stored against the card it answers, once; CORS preflight allows Authorization."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from cds_service.settings import Settings
from tests.conftest import hook_request, prefetch_from_bundle
from twin_cds.app import create_app


@pytest.fixture()
def client(tmp_path: Path) -> Iterator[TestClient]:
    settings = Settings(data_dir=tmp_path / "data", auth_required=False)
    with TestClient(create_app(settings)) as c:
        yield c


def _card(client: TestClient, demo_bundles: list[dict[str, Any]]) -> dict[str, Any]:
    for bundle in demo_bundles:
        pf = prefetch_from_bundle(bundle)
        cards = client.post(
            "/cds-services/ascvd-risk", json=hook_request(pf["patient"]["id"], pf)
        ).json()["cards"]
        if cards and "%" in cards[0]["summary"]:
            return cards[0]  # type: ignore[no-any-return]
    raise AssertionError("no computed card")


def _override(card_uuid: str, stamp: str = "2026-11-27T10:00:00Z") -> dict[str, Any]:
    reason = {
        "code": "does-not-align-preferences",
        "system": "http://terminology.hl7.org/CodeSystem/non-adherence-reason-codes",
    }
    return {
        "feedback": [
            {
                "card": card_uuid,
                "outcome": "overridden",
                "overrideReason": {"reason": reason, "userComment": "prefers lifestyle first"},
                "outcomeTimestamp": stamp,
            }
        ]
    }


def test_computed_cards_offer_coded_override_reasons(
    client: TestClient, demo_bundles: list[dict[str, Any]]
) -> None:
    """A risk card offers the six HL7 non-adherence reason categories."""
    card = _card(client, demo_bundles)
    codes = {r["code"] for r in card["overrideReasons"]}
    assert "does-not-align-preferences" in codes
    assert len(codes) == 6


def test_feedback_is_stored_once_against_its_card(
    client: TestClient, demo_bundles: list[dict[str, Any]]
) -> None:
    """Feedback joins the card by uuid; posting it twice stores it once."""
    card = _card(client, demo_bundles)
    url = "/cds-services/ascvd-risk/feedback"
    assert client.post(url, json=_override(card["uuid"])).status_code == 200
    assert client.post(url, json=_override(card["uuid"])).status_code == 200
    audit = client.app.state.runtime.audit  # type: ignore[attr-defined]
    (stored,) = audit.feedback_for(card["uuid"])
    assert stored["outcome"] == "overridden"
    assert stored["overrideReason"]["reason"]["code"] == "does-not-align-preferences"
    later = _override(card["uuid"], stamp="2026-11-27T11:00:00Z")
    assert client.post(url, json=later).status_code == 200
    assert len(audit.feedback_for(card["uuid"])) == 2


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"feedback": []}, 400),
        ({"feedback": [{"card": "x", "outcome": "ignored", "outcomeTimestamp": "t"}]}, 400),
        ({"nothing": 1}, 400),
        (_override("never-sent"), 400),
    ],
)
def test_bad_feedback_is_a_400(client: TestClient, body: dict[str, Any], status: int) -> None:
    """Malformed feedback, or feedback on a card we never sent, is refused with a reason."""
    response = client.post("/cds-services/ascvd-risk/feedback", json=body)
    assert response.status_code == status
    assert response.json()["resourceType"] == "OperationOutcome"


def test_feedback_for_an_unknown_service_is_404(client: TestClient) -> None:
    """Feedback to a service we do not offer is a 404."""
    assert client.post("/cds-services/nope/feedback", json=_override("c")).status_code == 404


def _preflight(client: TestClient, origin: str) -> Any:
    return client.options(
        "/cds-services/ascvd-risk",
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization,content-type",
        },
    )


def test_cors_preflight_allows_the_authorization_header(client: TestClient) -> None:
    """A browser-based CDS client may send Authorization from any origin by default."""
    response = _preflight(client, "https://ehr.example")
    assert response.status_code == 200
    assert "authorization" in response.headers["access-control-allow-headers"].lower()
    assert response.headers["access-control-allow-origin"] == "*"


def test_cors_preflight_names_a_configured_origin_and_refuses_others(tmp_path: Path) -> None:
    """With TWIN_CDS_CORS_ORIGINS set, only those origins may call from a browser."""
    settings = Settings(
        data_dir=tmp_path / "data", auth_required=False, cors_origins=("https://ehr.example",)
    )
    with TestClient(create_app(settings)) as c:
        allowed = _preflight(c, "https://ehr.example")
        other = _preflight(c, "https://elsewhere.example")
    assert allowed.status_code == 200
    assert allowed.headers["access-control-allow-origin"] == "https://ehr.example"
    assert other.status_code == 400
    assert "access-control-allow-origin" not in other.headers
