"""Prefetch semantics (CDS Hooks 2.0): absent keys are fetched, null means no data,
an OperationOutcome is fetched again, and nothing is fetched without fhirServer."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
import respx

from cds_service.errors import DataUnavailable
from cds_service.http.hooks import HookRequest
from cds_service.pipeline.gather import gather, render_template
from cds_service.services.catalog import ASCVD_RISK
from cds_service.settings import Settings

BASE = "https://ehr.example/fhir"
PATIENT = {"resourceType": "Patient", "id": "p1", "gender": "female", "birthDate": "1960-01-01"}
OUTCOME = {"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": "timeout"}]}


def _settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path, fhir_server_allowlist=(BASE,))


def _request(prefetch: dict[str, Any] | None, *, fhir: bool = True) -> HookRequest:
    body: dict[str, Any] = {
        "hook": "patient-view",
        "hookInstance": "h1",
        "context": {"patientId": "p1", "userId": "Practitioner/u7", "encounterId": "e9"},
        "prefetch": prefetch,
    }
    if fhir:
        body["fhirServer"] = BASE
        body["fhirAuthorization"] = {"access_token": "tok", "token_type": "Bearer"}
    return HookRequest.model_validate(body)


def _bundle(*resources: dict[str, Any]) -> dict[str, Any]:
    return {
        "resourceType": "Bundle",
        "type": "searchset",
        "entry": [{"resource": r} for r in resources],
    }


async def _gather(request: HookRequest, tmp_path: Path) -> Any:
    async with httpx.AsyncClient() as http:
        return await gather(request, ASCVD_RISK, _settings(tmp_path), http)


@respx.mock
async def test_complete_prefetch_needs_no_fetch(tmp_path: Path) -> None:
    """With every key satisfied the FHIR server is not contacted."""
    server = respx.route(url__startswith=BASE).respond(json=_bundle())
    prefetch = {
        "patient": PATIENT,
        "observations": _bundle(),
        "conditions": _bundle(),
        "medications": _bundle(),
        "procedures": _bundle(),
    }
    data = await _gather(_request(prefetch), tmp_path)
    assert server.call_count == 0
    assert {k.key: k.origin for k in data.keys} == dict.fromkeys(prefetch, "prefetch")


@respx.mock
async def test_absent_keys_are_fetched_and_null_keys_are_not(tmp_path: Path) -> None:
    """An absent key is fetched with the rendered template; a null key means no data."""
    obs = respx.get(f"{BASE}/Observation").respond(
        json=_bundle({"resourceType": "Observation", "id": "o1"})
    )
    cond = respx.get(f"{BASE}/Condition").respond(json=_bundle())
    meds = respx.get(f"{BASE}/MedicationRequest").respond(json=_bundle())
    respx.get(f"{BASE}/Procedure").respond(json=_bundle())
    data = await _gather(_request({"patient": PATIENT, "conditions": None}), tmp_path)
    origins = {k.key: k.origin for k in data.keys}
    assert origins == {
        "patient": "prefetch",
        "conditions": "no-data",
        "observations": "fetched",
        "medications": "fetched",
        "procedures": "fetched",
    }
    assert obs.calls[0].request.url.params["patient"] == "p1"
    assert cond.call_count == 0
    assert meds.call_count == 1
    assert {r["id"] for r in data.resources} == {"p1", "o1"}


@respx.mock
async def test_an_operation_outcome_in_prefetch_is_fetched_again(tmp_path: Path) -> None:
    """The EHR's failed prefetch is retried against its FHIR server."""
    respx.get(f"{BASE}/Patient/p1").respond(json=PATIENT)
    respx.get(url__regex=rf"{BASE}/(Observation|Condition|MedicationRequest|Procedure).*").respond(
        json=_bundle()
    )
    data = await _gather(_request({"patient": OUTCOME}), tmp_path)
    assert {k.key: k.origin for k in data.keys}["patient"] == "fetched"


async def test_without_fhir_server_missing_patient_is_412(tmp_path: Path) -> None:
    """No Patient in prefetch and no way to fetch it: DataUnavailable (412)."""
    with pytest.raises(DataUnavailable, match="Patient"):
        await _gather(_request({"observations": _bundle()}, fhir=False), tmp_path)


async def test_without_fhir_server_missing_keys_are_reported(tmp_path: Path) -> None:
    """Keys that cannot be fetched are named as unavailable; the call goes on."""
    data = await _gather(_request({"patient": PATIENT}, fhir=False), tmp_path)
    assert {k.key for k in data.keys if k.origin == "unavailable"} == {
        "observations",
        "conditions",
        "medications",
        "procedures",
    }
    assert all("no fhirServer" in p for p in data.problems)


@respx.mock
async def test_a_failing_search_is_reported_not_fatal(tmp_path: Path) -> None:
    """A 500 on one search costs that key, not the call."""
    respx.get(f"{BASE}/Observation").respond(500)
    respx.get(url__regex=rf"{BASE}/(Condition|MedicationRequest|Procedure).*").respond(
        json=_bundle()
    )
    data = await _gather(_request({"patient": PATIENT}), tmp_path)
    assert data.problems == ("observations: FHIR server answered 500 on /fhir/Observation",)


async def test_a_server_off_the_allowlist_is_never_contacted(tmp_path: Path) -> None:
    """fhirServer not configured: never contacted; the prefetched Patient still answers."""
    request = _request({"patient": PATIENT}).model_copy(
        update={"fhirServer": "https://evil.example/fhir"}
    )
    with respx.mock(assert_all_called=False) as mock:
        route = mock.route().respond(json={})
        data = await _gather(request, tmp_path)
        assert route.call_count == 0
    assert {r["resourceType"] for r in data.resources} == {"Patient"}
    assert all("allowlist" in p for p in data.problems)
    assert len(data.problems) == 4  # observations, conditions, medications, procedures


async def test_without_a_patient_a_disallowed_server_is_412(tmp_path: Path) -> None:
    """Nothing in prefetch and the server not allowed: 412 naming the allowlist."""
    request = _request(None).model_copy(update={"fhirServer": "https://evil.example/fhir"})
    with pytest.raises(DataUnavailable, match="allowlist"):
        await _gather(request, tmp_path)


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("Patient/{{context.patientId}}", "Patient/p1"),
        ("Encounter/{{context.encounterId}}", "Encounter/e9"),
        ("Practitioner/{{userPractitionerId}}", "Practitioner/u7"),
        ("Patient/{{userPatientId}}", None),
        ("Observation?patient={{ context.patientId }}&code=x", "Observation?patient=p1&code=x"),
    ],
)
def test_templates_render_context_and_user_tokens(template: str, expected: str | None) -> None:
    """Tokens fill from context and userId; an unresolvable token gives no query."""
    assert render_template(template, _request(None)) == expected


@pytest.mark.parametrize(
    "patient_id", ["../../admin/x", "..", "p1&_include=*", "p1,p2", "p 1", "x" * 65]
)
def test_a_context_value_that_is_not_a_fhir_id_is_never_put_in_a_url(patient_id: str) -> None:
    """Path traversal or injected search parameters: the template is not rendered."""
    body = {
        "hook": "patient-view",
        "hookInstance": "h1",
        "context": {"patientId": patient_id, "userId": "Practitioner/u7"},
    }
    request = HookRequest.model_validate(body)
    assert render_template("Patient/{{context.patientId}}", request) is None
    assert render_template("Observation?patient={{context.patientId}}", request) is None
