"""Fault injection: a slow, failing or looping FHIR server never makes the hook hang or 500.

Each fault answers once the fetch budget is spent, long before the 5 s per-request
timeout a hanging server would otherwise cost (server-side time, from the service's
Server-Timing header): cards computed from what was available and saying what was not,
or 412 when the Patient itself cannot be had. The margin above the budget is wide
(1 s) so that a loaded machine cannot fail the test; a service that waited for the
hang would still take over 5 s.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from cds_service.settings import Settings
from tests.integration.faulty_fhir import PATIENT, faulty_fhir_server
from twin_cds.app import create_app

pytestmark = pytest.mark.integration

BUDGET_MS = 400.0
# Far below the 5 s FHIR request timeout that a hang would run into.
WITHIN_BUDGET_MS = BUDGET_MS + 1000.0


@pytest.fixture(scope="module")
def fhir() -> Iterator[tuple[str, dict[str, str]]]:
    with faulty_fhir_server() as server:
        yield server


@pytest.fixture(scope="module")
def client(
    fhir: tuple[str, dict[str, str]], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TestClient]:
    settings = Settings(
        data_dir=tmp_path_factory.mktemp("faults"),
        auth_required=False,
        fhir_server_allowlist=(fhir[0],),
        fhir_budget_ms=BUDGET_MS,
    )
    with TestClient(create_app(settings)) as c:
        yield c


def _body(base: str, *, with_patient: bool) -> dict[str, object]:
    body: dict[str, object] = {
        "hook": "patient-view",
        "hookInstance": "fault-1",
        "fhirServer": base,
        "fhirAuthorization": {"access_token": "t", "token_type": "Bearer"},
        "context": {"patientId": "p1", "userId": "Practitioner/1"},
    }
    if with_patient:
        body["prefetch"] = {"patient": PATIENT}
    return body


def _server_ms(response: object) -> float:
    return float(response.headers["server-timing"].split("dur=")[1])  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    "mode", ["slow", "hang", "500", "malformed", "wrong-shape", "endless-next"]
)
def test_a_faulty_search_degrades_to_a_card_that_says_what_is_missing(
    client: TestClient, fhir: tuple[str, dict[str, str]], mode: str
) -> None:
    """Searches fail; the Patient came in prefetch: 200 with a card naming what is missing."""
    base, state = fhir
    state["mode"] = mode
    response = client.post("/cds-services/ascvd-risk", json=_body(base, with_patient=True))
    assert response.status_code == 200, response.text
    assert _server_ms(response) < WITHIN_BUDGET_MS
    (card,) = response.json()["cards"]
    assert card["summary"].startswith("10-year ASCVD risk not computed")
    (record,) = client.app.state.runtime.audit.records(hook_instance="fault-1")[-1:]  # type: ignore[attr-defined]
    assert record.body["dataProblems"], "the audit names what could not be fetched"


@pytest.mark.parametrize("mode", ["patient-500", "patient-hang"])
def test_without_the_patient_the_answer_is_412_within_budget(
    client: TestClient, fhir: tuple[str, dict[str, str]], mode: str
) -> None:
    """The Patient cannot be had: 412 with an OperationOutcome, within the budget."""
    base, state = fhir
    state["mode"] = mode
    response = client.post("/cds-services/ascvd-risk", json=_body(base, with_patient=False))
    assert response.status_code == 412
    assert _server_ms(response) < WITHIN_BUDGET_MS
    assert response.json()["resourceType"] == "OperationOutcome"


def test_a_healthy_server_with_no_data_still_answers(
    client: TestClient, fhir: tuple[str, dict[str, str]]
) -> None:
    """Empty searches are not faults: 200, and the card lists the missing inputs."""
    base, state = fhir
    state["mode"] = "ok"
    response = client.post("/cds-services/ascvd-risk", json=_body(base, with_patient=False))
    assert response.status_code == 200
    assert "cholesterol" in response.json()["cards"][0]["summary"].lower()
