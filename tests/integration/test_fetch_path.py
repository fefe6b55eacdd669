"""The real thing on 127.0.0.1: a FHIR R4 server (sekmet, SQLite), the service under
uvicorn, and hook calls that make the service fetch the patient's data itself."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from ehr_sim.demo import example_request, running_demo
from ehr_sim.servers import RunningServer, free_port
from tests.support.keys import es384, hook_claims

pytestmark = pytest.mark.integration

ISS = "https://ehr.integration.test"
KEY = es384("k1")


@pytest.fixture(scope="module")
def demo(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[RunningServer, RunningServer, list[str]]]:
    work: Path = tmp_path_factory.mktemp("demo")

    def service_env(fhir_base: str) -> dict[str, str]:
        # Authentication on, as in production: one client, its key and its FHIR server.
        client = {"iss": ISS, "jwks": KEY.jwks(), "fhir_servers": [fhir_base]}
        return {"TWIN_CDS_CLIENTS": json.dumps([client])}

    with running_demo(
        work, patients=6, seed=11, port=free_port(), service_env=service_env
    ) as servers:
        yield servers


def _token(audience: str) -> str:
    return KEY.sign(hook_claims(ISS, audience))


def _hook(service: RunningServer, body: dict[str, Any]) -> httpx.Response:
    url = f"{service.base_url}/cds-services/ascvd-risk"
    return httpx.post(
        url, json=body, timeout=30, headers={"Authorization": f"Bearer {_token(url)}"}
    )


def test_unsigned_calls_are_refused(demo: tuple[RunningServer, RunningServer, list[str]]) -> None:
    """The running service refuses a hook call without the client's JWT."""
    fhir, service, ids = demo
    url = f"{service.base_url}/cds-services/ascvd-risk"
    response = httpx.post(url, json=example_request(fhir.base_url, ids[0]), timeout=30)
    assert response.status_code == 401


def test_the_service_fetches_from_the_fhir_server_and_explains(
    demo: tuple[RunningServer, RunningServer, list[str]],
) -> None:
    """With no prefetch, every patient is fetched and gets a card built from the server's data."""
    fhir, service, ids = demo
    computed = 0
    for pid in ids:
        response = _hook(service, example_request(fhir.base_url, pid))
        assert response.status_code == 200, response.text
        cards = response.json()["cards"]
        assert len(cards) == 1
        if "%" in cards[0]["summary"]:
            computed += 1
            tc = httpx.get(
                f"{fhir.base_url}/Observation",
                params={"patient": pid, "code": "http://loinc.org|2093-3"},
            ).json()["entry"][-1]["resource"]["valueQuantity"]["value"]
            assert f"total cholesterol {tc:.0f} mg/dL" in cards[0]["detail"]
    assert computed >= len(ids) // 2


def test_a_fhir_server_not_allowlisted_is_412(
    demo: tuple[RunningServer, RunningServer, list[str]],
) -> None:
    """The same server under a name the service was not configured with is refused."""
    fhir, service, ids = demo
    other = fhir.base_url.replace("127.0.0.1", "localhost")
    response = _hook(service, example_request(other, ids[0]))
    assert response.status_code == 412
    assert "allowlist" in response.json()["issue"][0]["diagnostics"]


def test_an_unknown_patient_is_412(demo: tuple[RunningServer, RunningServer, list[str]]) -> None:
    """A patient the FHIR server does not know cannot be assessed: 412, not a guess."""
    fhir, service, _ = demo
    response = _hook(service, example_request(fhir.base_url, "no-such-patient"))
    assert response.status_code == 412
