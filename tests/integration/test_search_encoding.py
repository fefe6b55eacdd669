"""Every FHIR search the service and the app send goes out percent-encoded, and the real
FHIR server (sekmet) still matches it: the same resources as the raw form.

A proxy in front of an EHR's FHIR server may rewrite a raw ``//`` or ``|`` in a query
(``code=http://loinc.org|2093-3``) and the search then matches nothing; encoded, there
is nothing to rewrite.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import httpx
import pytest

from cds_service.http.hooks import HookRequest
from cds_service.pipeline.fhir_client import FhirClient
from cds_service.pipeline.gather import gather
from cds_service.services.catalog import SERVICES
from cds_service.settings import Settings
from ehr_sim.patients import generate_patients
from ehr_sim.servers import RunningServer, load_patients, start_fhir_server
from smart_app.patient_data import patient_queries

pytestmark = pytest.mark.integration

#: What a search value may hold once encoded: RFC 3986 unreserved characters,
#: percent-escapes, and the comma that separates a parameter's values.
ENCODED_VALUE = re.compile(r"(?:[A-Za-z0-9._~,-]|%[0-9A-F]{2})*")


@pytest.fixture(scope="module")
def fhir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RunningServer, list[str]]]:
    server = start_fhir_server(tmp_path_factory.mktemp("encoding"))
    try:
        yield server, load_patients(server.base_url, generate_patients(3, seed=5))
    finally:
        server.stop()


class Recorder:
    """An HTTP client that keeps the raw target of every request it sends."""

    def __init__(self) -> None:
        self.targets: list[str] = []

    async def _record(self, request: httpx.Request) -> None:
        self.targets.append(request.url.raw_path.decode("ascii"))

    def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(timeout=30, event_hooks={"request": [self._record]})


def _query_values(target: str) -> list[str]:
    _, _, query = target.partition("?")
    return [item.partition("=")[2] for item in query.split("&") if item]


def _ids(bundle_or_resource: dict[str, Any]) -> set[str]:
    if bundle_or_resource.get("resourceType") != "Bundle":
        return {str(bundle_or_resource.get("id"))}
    return {str(e["resource"]["id"]) for e in bundle_or_resource.get("entry") or []}


def _raw_ids(base: str, target: str) -> set[str]:
    """What the server matches for the same search sent with its values unencoded."""
    path, _, query = target.partition("?")
    raw = "&".join(
        f"{k}={unquote(v)}" for k, _, v in (p.partition("=") for p in query.split("&") if p)
    )
    origin = base.split("/fhir")[0]
    url = f"{origin}{path}?{raw}&_count=1000" if query else f"{origin}{path}"
    response = httpx.get(url, headers={"Accept": "application/fhir+json"}, timeout=30)
    response.raise_for_status()
    return _ids(response.json())


def _assert_encoded_and_matched(base: str, targets: list[str], results: list[set[str]]) -> None:
    searches = [t for t in targets if "?" in t]
    assert searches, "no search was sent"
    for target in searches:
        for value in _query_values(target):
            assert ENCODED_VALUE.fullmatch(value), f"not percent-encoded: {target}"
    # The Observation searches by LOINC code (system|code) must still match.
    coded = [t for t in searches if "code=" in t]
    assert coded and all("%7C" in t and "%2F%2F" in t for t in coded)
    matched = set().union(*results)
    for target in coded:
        raw = _raw_ids(base, target)
        assert raw, f"the raw search matched nothing either: {target}"
        assert raw <= matched, target


def test_the_services_searches_are_encoded_and_still_matched(
    fhir: tuple[RunningServer, list[str]],
) -> None:
    """Each service's fetch (prefetch templates rendered for a real patient) is sent
    percent-encoded, and what comes back is what the raw search matches."""
    server, patients = fhir
    settings = Settings(
        data_dir=Path("/nonexistent"),
        fhir_server_allowlist=(server.base_url,),
        fhir_budget_ms=30_000,
        auth_required=False,
    )
    recorder = Recorder()

    async def run() -> list[set[str]]:
        found: list[set[str]] = []
        async with recorder.client() as http:
            for service in SERVICES.values():
                context: dict[str, Any] = {"patientId": patients[0], "userId": "Practitioner/1"}
                if service.hook == "order-select":
                    context |= {"selections": [], "draftOrders": {"resourceType": "Bundle"}}
                elif service.hook == "order-sign":
                    context |= {"draftOrders": {"resourceType": "Bundle"}}
                elif service.hook == "encounter-discharge":
                    context |= {"encounterId": "no-such-encounter"}
                request = HookRequest.model_validate(
                    {
                        "hook": service.hook,
                        "hookInstance": "encoding-1",
                        "fhirServer": server.base_url,
                        "fhirAuthorization": {
                            "access_token": "t",
                            "token_type": "Bearer",
                            "scope": "patient/*.rs",
                            "subject": "x",
                            "expires_in": 300,
                        },
                        "context": context,
                    }
                )
                data = await gather(request, service, settings, http, (server.base_url,))
                found.append({str(r.get("id")) for r in data.resources})
        return found

    results = asyncio.run(run())
    _assert_encoded_and_matched(server.base_url, recorder.targets, results)


def test_the_apps_searches_are_encoded_and_still_matched(
    fhir: tuple[RunningServer, list[str]],
) -> None:
    """The clinician app's reads and searches for its patient go out encoded and match."""
    server, patients = fhir
    recorder = Recorder()

    async def run() -> list[set[str]]:
        async with recorder.client() as http:
            client = FhirClient(http, server.base_url, "t", max_pages=20)
            results = await asyncio.gather(*(client.query(q) for q in patient_queries(patients[0])))
        return [{str(r.get("id")) for r in result.resources} for result in results]

    results = asyncio.run(run())
    _assert_encoded_and_matched(server.base_url, recorder.targets, results)
