"""The FHIR client: paging, loops, faults and the allowlist, against respx fakes."""

from __future__ import annotations

import httpx
import pytest
import respx

from cds_service.errors import FhirServerNotAllowed
from cds_service.pipeline.fhir_client import FhirClient, FhirFetchError, check_fhir_server

BASE = "https://ehr.example/fhir"
TOKEN = "secret-token-value"  # noqa: S105 - a test token


def _page(ids: list[str], next_url: str | None) -> dict[str, object]:
    links = [{"relation": "next", "url": next_url}] if next_url else []
    return {
        "resourceType": "Bundle",
        "type": "searchset",
        "link": links,
        "entry": [{"resource": {"resourceType": "Observation", "id": i}} for i in ids],
    }


async def _query(relative: str, max_pages: int = 20) -> object:
    async with httpx.AsyncClient() as http:
        return await FhirClient(http, BASE, TOKEN, max_pages=max_pages).query(relative)


@respx.mock
async def test_follows_next_links_and_sends_the_bearer_token() -> None:
    """All pages are read, in order, each with the hook's token."""

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.params.get("_offset") == "2":
            return httpx.Response(200, json=_page(["c"], None))
        return httpx.Response(
            200, json=_page(["a", "b"], f"{BASE}/Observation?patient=p1&_offset=2")
        )

    first = respx.get(url__startswith=f"{BASE}/Observation").mock(side_effect=handler)
    result = await _query("Observation?patient=p1")
    assert [r["id"] for r in result.resources] == ["a", "b", "c"]  # type: ignore[attr-defined]
    assert result.pages == 2  # type: ignore[attr-defined]
    assert first.calls[0].request.headers["Authorization"] == f"Bearer {TOKEN}"


@respx.mock
async def test_a_next_link_to_itself_does_not_loop() -> None:
    """A server whose next link repeats a page is read once per page."""
    route = respx.get(f"{BASE}/Observation").respond(
        json=_page(["a"], f"{BASE}/Observation?patient=p1")
    )
    result = await _query("Observation?patient=p1")
    assert route.call_count == 1
    assert [r["id"] for r in result.resources] == ["a"]  # type: ignore[attr-defined]


@respx.mock
async def test_endless_next_links_stop_at_the_page_limit() -> None:
    """Endless distinct pages stop at max_pages and say they were truncated."""
    counter = {"n": 0}

    def handler(request: httpx.Request) -> httpx.Response:
        counter["n"] += 1
        return httpx.Response(
            200, json=_page([str(counter["n"])], f"{BASE}/Observation?page={counter['n']}")
        )

    respx.get(url__startswith=f"{BASE}/Observation").mock(side_effect=handler)
    result = await _query("Observation?patient=p1", max_pages=5)
    assert result.truncated  # type: ignore[attr-defined]
    assert counter["n"] == 5


@respx.mock
async def test_a_next_link_to_another_host_is_not_followed() -> None:
    """Paging never leads the service to a server it was not given (no SSRF)."""
    respx.get(f"{BASE}/Observation").respond(
        json=_page(["a"], "http://169.254.169.254/latest/meta-data")
    )
    elsewhere = respx.get(url__startswith="http://169.254.169.254").respond(json={})
    result = await _query("Observation?patient=p1")
    assert elsewhere.call_count == 0
    assert [r["id"] for r in result.resources] == ["a"]  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    "next_url",
    [
        f"{BASE}/../secret?page=2",
        f"{BASE}/%2e%2e/secret?page=2",
        f"{BASE}/%2E%2E%2Fsecret?page=2",
        f"{BASE}/./../secret",
        f"{BASE}x/Observation?page=2",
        "https://ehr.example:8443/fhir/Observation?page=2",
        "http://ehr.example/fhir/Observation?page=2",
        "https://user@ehr.example/fhir/Observation?page=2",
    ],
)
@respx.mock
async def test_a_next_link_outside_the_base_once_normalised_is_not_followed(
    next_url: str,
) -> None:
    """Dot segments (plain or percent-encoded), another port, scheme, path or user info:
    the link is outside the base, never requested, and the token goes nowhere else."""
    respx.get(f"{BASE}/Observation").respond(json=_page(["a"], next_url))
    elsewhere = respx.route(url__regex=r"^(?!https://ehr\.example/fhir/Observation$).*").respond(
        json=_page(["b"], None)
    )
    result = await _query("Observation")
    assert elsewhere.call_count == 0
    assert [r["id"] for r in result.resources] == ["a"]  # type: ignore[attr-defined]


@respx.mock
async def test_a_next_link_with_case_and_default_port_differences_is_followed() -> None:
    """HTTPS://EHR.example:443/fhir/... is the base written differently: followed."""
    respx.get(f"{BASE}/Observation", params={"page": "2"}).respond(json=_page(["b"], None))
    respx.get(f"{BASE}/Observation").respond(
        json=_page(["a"], "HTTPS://EHR.example:443/fhir/Observation?page=2")
    )
    result = await _query("Observation")
    assert [r["id"] for r in result.resources] == ["a", "b"]  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("response", "message"),
    [
        (httpx.Response(500, text="boom"), "answered 500"),
        (httpx.Response(401, json={}), "answered 401"),
        (httpx.Response(200, content=b"{not json"), "malformed JSON"),
        (httpx.Response(200, json=[1, 2]), "non-resource"),
    ],
)
@respx.mock
async def test_faults_become_fetch_errors_without_the_token(
    response: httpx.Response, message: str
) -> None:
    """Each fault is one FhirFetchError whose message names it and never the token."""
    respx.get(f"{BASE}/Patient/p1").mock(return_value=response)
    with pytest.raises(FhirFetchError, match=message) as info:
        await _query("Patient/p1")
    assert TOKEN not in str(info.value)


@respx.mock
async def test_a_timeout_is_a_fetch_error() -> None:
    """A server that does not answer in time is a FhirFetchError, not a hang."""
    respx.get(f"{BASE}/Patient/p1").mock(side_effect=httpx.ReadTimeout("slow"))
    with pytest.raises(FhirFetchError, match="timed out"):
        await _query("Patient/p1")


@respx.mock
async def test_a_read_returns_the_resource_and_404_returns_nothing() -> None:
    """A read gives the one resource; a 404 gives none rather than an error."""
    respx.get(f"{BASE}/Patient/p1").respond(json={"resourceType": "Patient", "id": "p1"})
    respx.get(f"{BASE}/Patient/p2").respond(404, json={"resourceType": "OperationOutcome"})
    assert [r["id"] for r in (await _query("Patient/p1")).resources] == ["p1"]  # type: ignore[attr-defined]
    assert (await _query("Patient/p2")).resources == ()  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("url", "allowlist", "ok"),
    [
        ("https://ehr.example/fhir", ("https://ehr.example/fhir",), True),
        ("https://ehr.example/fhir/", ("https://ehr.example/fhir",), True),
        ("https://evil.example/fhir", ("https://ehr.example/fhir",), False),
        ("https://ehr.example/fhir-other", ("https://ehr.example/fhir",), False),
        ("http://ehr.example/fhir", ("http://ehr.example/fhir",), False),
        ("http://127.0.0.1:8090/fhir", ("http://127.0.0.1:8090/fhir",), True),
        ("http://localhost:8090/fhir", ("http://localhost:8090/fhir",), True),
        ("http://127.0.0.1:8090/fhir", (), False),
    ],
)
def test_only_allowlisted_servers_over_https_or_loopback(
    url: str, allowlist: tuple[str, ...], ok: bool
) -> None:
    """A fhirServer is contacted only when allowlisted, and over https unless loopback."""
    if ok:
        assert check_fhir_server(url, allowlist, allow_insecure_loopback=True) == url.rstrip("/")
    else:
        with pytest.raises(FhirServerNotAllowed):
            check_fhir_server(url, allowlist, allow_insecure_loopback=True)


def test_insecure_loopback_can_be_switched_off() -> None:
    """In production http to loopback is refused too."""
    with pytest.raises(FhirServerNotAllowed, match="https"):
        check_fhir_server(
            "http://127.0.0.1:8090/fhir",
            ("http://127.0.0.1:8090/fhir",),
            allow_insecure_loopback=False,
        )
