"""The EHR launch simulator: SMART discovery, OAuth 2.0 + PKCE, the FHIR proxy, EHR pages.

The simulator runs in-process; its upstream FHIR server and the CDS service are a fake
behind an httpx transport, so every outbound call is seen and nothing leaves the
process. One integration test puts it in front of a real sekmet server.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import re
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
)
from fastapi.testclient import TestClient

from ehr_sim.simulator import SimulatedClient, SimulatorConfig, create_simulator_app

UPSTREAM = "http://fhir.upstream.test/fhir"
CDS = "http://cds.test"
PUBLIC = "http://ehr.test"
FHIR_BASE = f"{PUBLIC}/fhir"
APP = SimulatedClient(
    "twin-app", ("http://app.test/app/callback",), "http://app.test/app/launch?tenant=t1"
)
OTHER_APP = SimulatedClient("other-app", ("http://other.test/cb",), "http://other.test/launch")
SCOPE = "launch openid fhirUser patient/Patient.rs patient/Observation.rs online_access"
CDS_ISS = "https://ehr-simulator.test"
# One key for the whole module: 2048-bit generation per test would dominate the run time.
RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
CDS_KEY = ec.generate_private_key(ec.SECP384R1())
APP_CONTEXT = '{"patient":"pat-1","twinVersion":3,"service":"cardio-renal-risk"}'


def _patient(pid: str, given: str, family: str, gender: str, born: str) -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "id": pid,
        "name": [{"use": "official", "family": family, "given": [given]}],
        "gender": gender,
        "birthDate": born,
    }


PATIENTS = {
    "pat-1": _patient("pat-1", "Ada", "Lovelace", "female", "1961-12-10"),
    "pat-2": _patient("pat-2", "Alan", "<Turing>", "male", "1954-06-23"),
}


def _bundle(resources: list[dict[str, Any]], links: list[tuple[str, str]]) -> dict[str, Any]:
    return {
        "resourceType": "Bundle",
        "type": "searchset",
        "total": len(resources),
        "link": [{"relation": r, "url": u} for r, u in links],
        "entry": [
            {"fullUrl": f"{UPSTREAM}/{r['resourceType']}/{r['id']}", "resource": r}
            for r in resources
        ],
    }


@dataclass
class Fake:
    """The upstream FHIR server and the CDS service, recording what they were sent."""

    requests: list[httpx.Request] = field(default_factory=list)
    hooks: list[tuple[httpx.Request, dict[str, Any]]] = field(default_factory=list)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        url = str(request.url)
        if url.startswith(CDS):
            return self._cds(request)
        path = request.url.path.removeprefix("/fhir/")
        if path == "metadata":
            return httpx.Response(
                200,
                json={
                    "resourceType": "CapabilityStatement",
                    "implementation": {"url": UPSTREAM},
                    "rest": [{"mode": "server"}],
                },
            )
        if path == "Patient":
            links = [("self", f"{UPSTREAM}/Patient?_count=100")]
            return httpx.Response(200, json=_bundle(list(PATIENTS.values()), links))
        if path.startswith("Patient/"):
            found = PATIENTS.get(path.removeprefix("Patient/"))
            if found is None:
                return httpx.Response(404, json={"resourceType": "OperationOutcome"})
            return httpx.Response(200, json=found, headers={"ETag": 'W/"1"'})
        if path == "Observation":
            obs = {"resourceType": "Observation", "id": "obs-1", "status": "final"}
            practitioner = {"resourceType": "Practitioner", "id": "dr-1"}
            query = request.url.query.decode()
            bundle = _bundle(
                [obs, practitioner],
                [
                    ("self", f"{UPSTREAM}/Observation?{query}"),
                    ("next", f"{UPSTREAM}/Observation?{query}&_offset=1"),
                ],
            )
            bundle["entry"][1]["search"] = {"mode": "include"}
            return httpx.Response(
                200, json=bundle, headers={"Content-Type": "application/fhir+json"}
            )
        return httpx.Response(404, json={"resourceType": "OperationOutcome"})

    def _cds(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        self.hooks.append((request, body))
        if request.url.path.endswith("/ascvd-risk"):
            return httpx.Response(500, json={"resourceType": "OperationOutcome"})
        card = {
            "uuid": "c1",
            "summary": "10-year CVD risk 12% <high>",
            "indicator": "warning",
            "detail": "Based on **Ada**'s values.",
            "source": {"label": "twin-cds · PREVENT v1"},
            "links": [
                {
                    "label": "Open the patient's twin",
                    "url": "http://app.test/app/launch",
                    "type": "smart",
                    "appContext": APP_CONTEXT,
                },
                {"label": "Guideline", "url": "https://example.org/g", "type": "absolute"},
            ],
        }
        return httpx.Response(200, json={"cards": [card]})


class Clock:
    """Real time, plus whatever a test adds."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


@dataclass
class Sim:
    client: TestClient
    fake: Fake
    clock: Clock


def _config(**overrides: Any) -> SimulatorConfig:
    values: dict[str, Any] = {
        "fhir_upstream": UPSTREAM,
        "public_base_url": PUBLIC,
        "clients": (APP, OTHER_APP),
    }
    values.update(overrides)
    return SimulatorConfig(**values)


def _start(config: SimulatorConfig) -> Iterator[Sim]:
    fake, clock = Fake(), Clock()
    app = create_simulator_app(
        config, clock=clock, transport=httpx.MockTransport(fake), signing_key=RSA_KEY
    )
    with TestClient(app, base_url=PUBLIC, follow_redirects=False) as client:
        yield Sim(client, fake, clock)


@pytest.fixture()
def sim() -> Iterator[Sim]:
    yield from _start(_config())


@pytest.fixture()
def sim_cds() -> Iterator[Sim]:
    pem = CDS_KEY.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
    yield from _start(_config(cds_service_url=CDS, cds_signing_key_pem=pem, cds_client_iss=CDS_ISS))


# --- helpers ----------------------------------------------------------------------------


def _pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    digest = hashlib.sha256(verifier.encode()).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


VERIFIER, CHALLENGE = _pkce()


def _query(location: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


def _launch(sim: Sim, patient: str = "pat-1", **form: str) -> str:
    response = sim.client.post("/ehr/launch", data={"patient": patient, **form})
    assert response.status_code == 303, response.text
    return _query(response.headers["location"])["launch"]


def _authorize_params(sim: Sim, **overrides: str | None) -> dict[str, str]:
    params: dict[str, str | None] = {
        "response_type": "code",
        "client_id": APP.client_id,
        "redirect_uri": APP.redirect_uris[0],
        "scope": SCOPE,
        "state": "state-1",
        "aud": FHIR_BASE,
        "code_challenge": CHALLENGE,
        "code_challenge_method": "S256",
        "nonce": "nonce-1",
    }
    if "launch" not in overrides:
        params["launch"] = _launch(sim)
    params.update(overrides)
    return {k: v for k, v in params.items() if v is not None}


def _code(sim: Sim, **overrides: str | None) -> str:
    response = sim.client.get("/authorize", params=_authorize_params(sim, **overrides))
    assert response.status_code == 302, response.text
    query = _query(response.headers["location"])
    assert query["state"] == overrides.get("state", "state-1")
    return query["code"]


def _exchange(sim: Sim, code: str, /, **overrides: str | None) -> httpx.Response:
    form: dict[str, str | None] = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": APP.redirect_uris[0],
        "client_id": APP.client_id,
        "code_verifier": VERIFIER,
    }
    form.update(overrides)
    return sim.client.post("/token", data={k: v for k, v in form.items() if v is not None})


def _token(sim: Sim, **authorize: str | None) -> dict[str, Any]:
    response = _exchange(sim, _code(sim, **authorize))
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


# --- discovery ----------------------------------------------------------------------------


def test_smart_configuration_advertises_s256_public_clients_and_the_endpoints(sim: Sim) -> None:
    """SMART 2.x discovery at {iss}/.well-known/smart-configuration, S256 only."""
    conf = sim.client.get("/fhir/.well-known/smart-configuration").json()
    assert conf["issuer"] == PUBLIC
    assert conf["authorization_endpoint"] == f"{PUBLIC}/authorize"
    assert conf["token_endpoint"] == f"{PUBLIC}/token"
    assert conf["jwks_uri"] == f"{PUBLIC}/jwks.json"
    assert conf["code_challenge_methods_supported"] == ["S256"]
    assert conf["token_endpoint_auth_methods_supported"] == ["none"]
    assert conf["grant_types_supported"] == ["authorization_code"]
    assert {"launch-ehr", "launch-standalone", "client-public", "sso-openid-connect"} <= set(
        conf["capabilities"]
    )
    assert "authorize-post" not in conf["capabilities"]
    oidc = sim.client.get("/.well-known/openid-configuration").json()
    assert oidc["issuer"] == PUBLIC
    assert oidc["id_token_signing_alg_values_supported"] == ["RS256"]
    style = sim.client.get("/ehr/smart-style.json").json()
    assert {"color_background", "color_highlight", "font_family_base"} <= set(style)


def test_metadata_needs_no_token_and_names_the_proxy_and_its_oauth_endpoints(sim: Sim) -> None:
    statement = sim.client.get("/fhir/metadata").json()
    assert statement["implementation"]["url"] == FHIR_BASE
    uris = statement["rest"][0]["security"]["extension"][0]["extension"]
    assert {u["url"]: u["valueUri"] for u in uris} == {
        "authorize": f"{PUBLIC}/authorize",
        "token": f"{PUBLIC}/token",
    }


# --- authorize ---------------------------------------------------------------------------

NO_REDIRECT = "page"


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        pytest.param({"client_id": "nope"}, NO_REDIRECT, id="unknown-client"),
        pytest.param({"client_id": None}, NO_REDIRECT, id="missing-client"),
        pytest.param({"redirect_uri": "http://evil.test/cb"}, NO_REDIRECT, id="foreign-redirect"),
        pytest.param(
            {"redirect_uri": APP.redirect_uris[0] + "/"}, NO_REDIRECT, id="redirect-not-exact"
        ),
        pytest.param(
            {"redirect_uri": OTHER_APP.redirect_uris[0]}, NO_REDIRECT, id="others-redirect"
        ),
        pytest.param({"redirect_uri": None}, NO_REDIRECT, id="missing-redirect"),
        pytest.param({"response_type": "token"}, "unsupported_response_type", id="implicit"),
        pytest.param({"code_challenge": None}, "invalid_request", id="missing-pkce"),
        pytest.param({"code_challenge_method": None}, "invalid_request", id="missing-method"),
        pytest.param({"code_challenge_method": "plain"}, "invalid_request", id="plain-pkce"),
        pytest.param({"code_challenge": CHALLENGE[:42]}, "invalid_request", id="short-challenge"),
        pytest.param({"code_challenge": CHALLENGE[:42] + "="}, "invalid_request", id="padded"),
        pytest.param({"state": None}, "invalid_request", id="missing-state"),
        pytest.param({"aud": "http://fhir.upstream.test/fhir"}, "invalid_request", id="wrong-aud"),
        pytest.param({"aud": None}, "invalid_request", id="missing-aud"),
        pytest.param({"scope": None}, "invalid_scope", id="missing-scope"),
        pytest.param({"scope": "patient/*.cruds"}, "invalid_scope", id="no-grantable-scope"),
        pytest.param({"launch": "not-a-launch"}, "invalid_request", id="bad-launch"),
    ],
)
def test_authorize_refuses_bad_requests(
    sim: Sim, overrides: dict[str, str | None], expected: str
) -> None:
    """RFC 6749 §4.1.2.1: no redirect for a bad client or redirect_uri; errors otherwise."""
    response = sim.client.get("/authorize", params=_authorize_params(sim, **overrides))
    if expected == NO_REDIRECT:
        assert response.status_code == 400
        assert "location" not in response.headers
        assert response.headers["content-type"].startswith("text/html")
        return
    assert response.status_code == 302
    location = response.headers["location"]
    assert location.startswith(APP.redirect_uris[0] + "?")
    query = _query(location)
    assert query["error"] == expected
    assert query["error_description"]
    assert "code" not in query
    assert query.get("state") == overrides.get("state", "state-1")
    if expected == "invalid_request" and "code_challenge" in str(overrides):
        assert query["error_description"] in (
            "PKCE S256 required",
            "code_challenge must be 43 base64url characters",
        )


def test_a_repeated_parameter_is_invalid_request(sim: Sim) -> None:
    """RFC 6749 §3.1: request parameters must not be included more than once."""
    params = [*_authorize_params(sim).items(), ("scope", "openid")]
    response = sim.client.get("/authorize", params=params)
    assert _query(response.headers["location"])["error"] == "invalid_request"


def test_a_launch_issued_for_another_app_is_refused(sim: Sim) -> None:
    launch = _launch(sim, launch_url=OTHER_APP.launch_url)
    response = sim.client.get("/authorize", params=_authorize_params(sim, launch=launch))
    assert _query(response.headers["location"])["error"] == "invalid_request"


def test_an_expired_launch_is_refused(sim: Sim) -> None:
    launch = _launch(sim)
    sim.clock.offset += 601
    response = sim.client.get("/authorize", params=_authorize_params(sim, launch=launch))
    assert _query(response.headers["location"])["error"] == "invalid_request"


def test_the_code_is_random_and_the_aud_may_carry_a_trailing_slash(sim: Sim) -> None:
    first = _code(sim, aud=FHIR_BASE + "/")
    second = _code(sim)
    assert first != second
    assert len(base64.urlsafe_b64decode(first + "==")) >= 16


# --- token -------------------------------------------------------------------------------


def test_ehr_launch_token_carries_the_launch_context_and_a_verifiable_id_token(sim: Sim) -> None:
    launch = _launch(sim, encounter="enc-9", app_context=APP_CONTEXT)
    response = _exchange(sim, _code(sim, launch=launch))
    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["pragma"] == "no-cache"
    body = response.json()
    assert body["token_type"].lower() == "bearer"
    assert body["patient"] == "pat-1"
    assert body["encounter"] == "enc-9"
    assert body["appContext"] == APP_CONTEXT  # the string exactly as the card gave it
    assert body["need_patient_banner"] is True
    assert body["smart_style_url"] == f"{PUBLIC}/ehr/smart-style.json"
    assert body["expires_in"] == 3600
    assert body["scope"].split() == SCOPE.split()
    # The id_token verifies with the published JWKS, for this client, with our nonce.
    jwks = jwt.PyJWKSet.from_dict(sim.client.get("/jwks.json").json())
    kid = jwt.get_unverified_header(body["id_token"])["kid"]
    key = next(k for k in jwks.keys if k.key_id == kid)
    claims = jwt.decode(
        body["id_token"], key.key, algorithms=["RS256"], audience=APP.client_id, issuer=PUBLIC
    )
    assert claims["nonce"] == "nonce-1"
    assert claims["sub"] == "Practitioner/ehr-demo-clinician"
    assert claims["fhirUser"] == f"{FHIR_BASE}/Practitioner/ehr-demo-clinician"
    assert claims["exp"] - claims["iat"] == 300


def test_granted_scope_drops_what_the_simulator_does_not_support(sim: Sim) -> None:
    body = _token(sim, scope="launch patient/Observation.rs system/*.rs patient/*.cruds")
    assert body["scope"] == "launch patient/Observation.rs"
    assert "id_token" not in body  # no openid
    assert "appContext" not in body
    assert "refresh_token" not in body


@pytest.mark.parametrize(
    ("overrides", "error"),
    [
        pytest.param({"grant_type": "client_credentials"}, "unsupported_grant_type", id="grant"),
        pytest.param({"code": None}, "invalid_request", id="no-code"),
        pytest.param({"code": "made-up"}, "invalid_grant", id="unknown-code"),
        pytest.param({"code_verifier": None}, "invalid_grant", id="no-verifier"),
        pytest.param({"code_verifier": "short"}, "invalid_grant", id="short-verifier"),
        pytest.param({"code_verifier": _pkce()[0]}, "invalid_grant", id="wrong-verifier"),
        pytest.param({"code_verifier": CHALLENGE}, "invalid_grant", id="challenge-as-verifier"),
        pytest.param(
            {"redirect_uri": APP.redirect_uris[0] + "?x=1"}, "invalid_grant", id="redirect"
        ),
        pytest.param({"redirect_uri": None}, "invalid_grant", id="no-redirect"),
        pytest.param({"client_id": OTHER_APP.client_id}, "invalid_grant", id="client-mismatch"),
        pytest.param({"client_id": None}, "invalid_grant", id="no-client"),
    ],
)
def test_token_refuses_bad_exchanges_without_burning_the_code(
    sim: Sim, overrides: dict[str, str | None], error: str
) -> None:
    code = _code(sim)
    response = _exchange(sim, code, **overrides)
    assert response.status_code == 400
    assert response.json()["error"] == error
    assert response.json()["error_description"]
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["pragma"] == "no-cache"
    # A failed attempt does not spend the client's code.
    assert _exchange(sim, code).status_code == 200


def test_token_wants_a_form_body(sim: Sim) -> None:
    response = sim.client.post("/token", json={"grant_type": "authorization_code"})
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"


def test_an_expired_code_is_invalid_grant(sim: Sim) -> None:
    code = _code(sim)
    sim.clock.offset += 61
    response = _exchange(sim, code)
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_grant"


def test_a_replayed_code_is_refused_and_revokes_the_first_token(sim: Sim) -> None:
    """RFC 6749 §4.1.2: a second use of a code revokes the tokens issued from it."""
    code = _code(sim)
    first = _exchange(sim, code)
    token = first.json()["access_token"]
    assert sim.client.get("/fhir/Patient/pat-1", headers=_bearer(token)).status_code == 200
    second = _exchange(sim, code)
    assert second.status_code == 400
    assert second.json()["error"] == "invalid_grant"
    assert sim.client.get("/fhir/Patient/pat-1", headers=_bearer(token)).status_code == 401
    # and a third try is still no good
    assert _exchange(sim, code).json()["error"] == "invalid_grant"


def test_an_expired_token_is_401(sim: Sim) -> None:
    token = _token(sim)["access_token"]
    sim.clock.offset += 3601
    assert sim.client.get("/fhir/Patient/pat-1", headers=_bearer(token)).status_code == 401


# --- standalone launch: the patient picker ---------------------------------------------


def _picker(sim: Sim) -> str:
    params = _authorize_params(sim, launch=None, scope="launch/patient openid patient/*.rs")
    response = sim.client.get("/authorize", params=params)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    return response.text


def test_the_patient_picker_lists_upstream_patients_accessibly(sim: Sim) -> None:
    page = _picker(sim)
    assert '<html lang="en">' in page
    assert 'id="pick-patient"' in page
    assert "Ada Lovelace" in page and "1961-12-10" in page and "female" in page
    assert "Alan &lt;Turing&gt;" in page  # escaped
    for i, pid in enumerate(PATIENTS):
        assert f'<label class="choice" for="p{i}">' in page
        assert f'id="p{i}" name="patient" value="{pid}"' in page
    assert (
        "frame-ancestors 'none'"
        in sim.client.get(
            "/authorize", params=_authorize_params(sim, launch=None, scope="launch/patient")
        ).headers["content-security-policy"]
    )
    upstream = [r for r in sim.fake.requests if r.url.path == "/fhir/Patient"]
    assert upstream[-1].url.params["_count"] == "100"


def test_picking_a_patient_issues_a_code_bound_to_that_patient(sim: Sim) -> None:
    pending = re.search(r'name="pending" value="([^"]+)"', _picker(sim))
    assert pending is not None
    response = sim.client.post(
        "/authorize/pick", data={"pending": pending.group(1), "patient": "pat-2", "action": "pick"}
    )
    assert response.status_code == 303
    query = _query(response.headers["location"])
    assert query["state"] == "state-1"
    token = _exchange(sim, query["code"]).json()
    assert token["patient"] == "pat-2"
    assert "appContext" not in token
    # The pending request was used: it cannot be picked from twice.
    again = sim.client.post(
        "/authorize/pick", data={"pending": pending.group(1), "patient": "pat-1"}
    )
    assert again.status_code == 400


def test_the_picker_refuses_a_patient_it_did_not_offer_and_cancel_is_access_denied(
    sim: Sim,
) -> None:
    pending = re.search(r'name="pending" value="([^"]+)"', _picker(sim))
    assert pending is not None
    bad = sim.client.post("/authorize/pick", data={"pending": pending.group(1), "patient": "pat-3"})
    assert bad.status_code == 400
    pending = re.search(r'name="pending" value="([^"]+)"', _picker(sim))
    assert pending is not None
    cancel = sim.client.post(
        "/authorize/pick", data={"pending": pending.group(1), "action": "deny"}
    )
    assert cancel.status_code == 303
    assert _query(cancel.headers["location"])["error"] == "access_denied"


def test_without_launch_or_launch_patient_the_token_has_no_patient(sim: Sim) -> None:
    body = _token(sim, launch=None, scope="openid fhirUser user/Patient.rs")
    assert "patient" not in body
    token = body["access_token"]
    # user/ scopes are not patient-bound; patient/ scopes without a patient give nothing.
    assert sim.client.get("/fhir/Patient/pat-2", headers=_bearer(token)).status_code == 200
    assert sim.client.get("/fhir/Observation", headers=_bearer(token)).status_code == 403


# --- the FHIR proxy ---------------------------------------------------------------------


def test_the_proxy_wants_a_bearer_token(sim: Sim) -> None:
    bare = sim.client.get("/fhir/Patient/pat-1")
    assert bare.status_code == 401
    assert bare.headers["www-authenticate"] == "Bearer"
    assert bare.json()["resourceType"] == "OperationOutcome"
    forged = sim.client.get("/fhir/Patient/pat-1", headers=_bearer("forged"))
    assert forged.status_code == 401
    assert forged.headers["www-authenticate"].startswith('Bearer error="invalid_token"')
    assert not [r for r in sim.fake.requests if "Patient/pat-1" in str(r.url)]


@pytest.mark.parametrize(
    "path",
    [
        "Patient/pat-2",
        "Patient?name=Turing",
        "Patient?_id=pat-1,pat-2",
        "Patient?_id=pat-1&_id:not=pat-1",
        "Observation",
        "Observation?code=1234-5",
        "Observation?patient=pat-2",
        "Observation?patient=pat-1,pat-2",
        "Observation?patient=pat-1&patient=pat-2",
        "Observation?patient:missing=true",
        "Observation?subject=pat-1",
        "Observation?subject=Patient/pat-2",
        "Observation/obs-1",
        "Condition?patient=pat-1",
        "Patient/pat-1/_history",
        "Patient/%2E%2E",
    ],
)
def test_the_proxy_refuses_other_patients_and_unscoped_types(sim: Sim, path: str) -> None:
    token = _token(sim)["access_token"]
    before = len(sim.fake.requests)
    response = sim.client.get(f"/fhir/{path}", headers=_bearer(token))
    assert response.status_code == 403, path
    assert response.json()["issue"][0]["code"] == "forbidden"
    assert len(sim.fake.requests) == before  # nothing reached the upstream


def test_the_proxy_forwards_reads_and_searches_of_the_tokens_patient(sim: Sim) -> None:
    token = _token(sim)["access_token"]
    read = sim.client.get("/fhir/Patient/pat-1", headers=_bearer(token))
    assert read.status_code == 200
    assert read.json()["id"] == "pat-1"
    assert read.headers["etag"] == 'W/"1"'
    for query in (
        "patient=pat-1&code=http%3A%2F%2Floinc.org%7C2093-3&_count=2",
        "patient=Patient%2Fpat-1",
        "subject=Patient%2Fpat-1&_sort=-date",
    ):
        response = sim.client.get(f"/fhir/Observation?{query}", headers=_bearer(token))
        assert response.status_code == 200
        sent = sim.fake.requests[-1]
        assert sent.url.query.decode() == query  # the query string, unchanged
        assert sent.headers["prefer"] == "handling=strict"
        assert "authorization" not in sent.headers  # our token never goes upstream
    assert sim.client.get("/fhir/Patient?_id=pat-1", headers=_bearer(token)).status_code == 200


def test_bundles_come_back_with_the_proxys_urls_and_only_granted_types(sim: Sim) -> None:
    token = _token(sim)["access_token"]
    response = sim.client.get("/fhir/Observation?patient=pat-1", headers=_bearer(token))
    bundle = response.json()
    links = {link["relation"]: link["url"] for link in bundle["link"]}
    assert links["self"] == f"{FHIR_BASE}/Observation?patient=pat-1"
    assert links["next"] == f"{FHIR_BASE}/Observation?patient=pat-1&_offset=1"
    assert [e["fullUrl"] for e in bundle["entry"]] == [f"{FHIR_BASE}/Observation/obs-1"]
    assert UPSTREAM not in response.text
    # Paging goes through the proxy, with the same checks.
    following = sim.client.get(links["next"].removeprefix(PUBLIC), headers=_bearer(token))
    assert following.status_code == 200


def test_the_proxy_is_read_only(sim: Sim) -> None:
    token = _token(sim)["access_token"]
    response = sim.client.post("/fhir/Observation", json={}, headers=_bearer(token))
    assert response.status_code == 405


# --- EHR pages, CDS Hooks and the EHR launch --------------------------------------------


def test_the_ehr_lists_patients_with_links_to_their_charts(sim: Sim) -> None:
    page = sim.client.get("/ehr").text
    assert '<a href="/ehr/patient/pat-1">Ada Lovelace</a>' in page
    assert "Alan &lt;Turing&gt;" in page
    assert "1954-06-23" in page
    assert sim.client.get("/ehr/patient/nobody").status_code == 404


def test_without_a_cds_service_the_chart_has_no_cards(sim: Sim) -> None:
    page = sim.client.get("/ehr/patient/pat-1").text
    assert 'id="launch-app"' in page
    assert "card" not in page.split("<main>")[1]
    assert not [r for r in sim.fake.requests if str(r.url).startswith(CDS)]


def _forms(page: str, button_class: str) -> list[dict[str, str]]:
    forms = re.findall(r"<form[^>]*>(.*?)</form>", page, flags=re.S)
    out = []
    for form in forms:
        if f'class="{button_class}"' in form:
            fields = re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)">', form)
            out.append({k: html.unescape(v) for k, v in fields})
    return out


def test_the_chart_fires_patient_view_and_shows_cards_with_launch_buttons(sim_cds: Sim) -> None:
    sim = sim_cds
    page = sim.client.get("/ehr/patient/pat-1").text
    # The card: summary (escaped), indicator, source label, the SMART link as a button.
    assert "10-year CVD risk 12% &lt;high&gt;" in page
    assert 'class="card warning"' in page
    assert "twin-cds · PREVENT v1" in page
    assert '<button type="submit" class="card-launch">Open the patient&#x27;s twin</button>' in page
    assert '<a href="https://example.org/g" rel="noopener noreferrer">Guideline</a>' in page
    # The failing service is a short message; the page still renders.
    assert "ascvd-risk: the service answered HTTP 500." in page
    assert 'id="launch-app"' in page
    # The hook calls: CDS Hooks 2.0 body, and a JWT for exactly the URL called.
    assert {r.url.path for r, _ in sim.fake.hooks} == {
        "/cds-services/cardio-renal-risk",
        "/cds-services/ascvd-risk",
    }
    request, body = sim.fake.hooks[0]
    assert body["hook"] == "patient-view"
    assert body["fhirServer"] == FHIR_BASE
    assert body["context"] == {"userId": "Practitioner/ehr-demo-clinician", "patientId": "pat-1"}
    assert body["fhirAuthorization"]["subject"] == "cds-service"
    assert body["fhirAuthorization"]["token_type"].lower() == "bearer"
    assert "patient/MedicationAdministration.rs" in body["fhirAuthorization"]["scope"]
    assert len({b["hookInstance"] for _, b in sim.fake.hooks}) == 2
    signed = request.headers["authorization"].removeprefix("Bearer ")
    assert jwt.get_unverified_header(signed)["kid"] == "simulator"
    claims = jwt.decode(
        signed,
        CDS_KEY.public_key(),
        algorithms=["ES384"],
        audience=str(request.url),
        issuer=CDS_ISS,
    )
    assert claims["exp"] - claims["iat"] == 60
    assert claims["jti"]
    # The CDS service's token reads this patient through the proxy, and nobody else.
    token = body["fhirAuthorization"]["access_token"]
    ok = sim.client.get("/fhir/Observation?patient=pat-1", headers=_bearer(token))
    assert ok.status_code == 200
    other = sim.client.get("/fhir/Observation?patient=pat-2", headers=_bearer(token))
    assert other.status_code == 403


def test_a_card_launch_carries_its_app_context_to_the_token(sim_cds: Sim) -> None:
    sim = sim_cds
    page = sim.client.get("/ehr/patient/pat-1").text
    [form] = _forms(page, "card-launch")
    assert form == {
        "patient": "pat-1",
        "launch_url": "http://app.test/app/launch",
        "app_context": APP_CONTEXT,
    }
    response = sim.client.post("/ehr/launch", data=form)
    assert response.status_code == 303
    location = response.headers["location"]
    assert location.startswith("http://app.test/app/launch?")
    query = _query(location)
    assert query["iss"] == FHIR_BASE
    token = _token(sim, launch=query["launch"])
    assert token["appContext"] == APP_CONTEXT
    assert token["patient"] == "pat-1"


def test_the_ehr_launch_keeps_the_launch_urls_query_and_defaults_to_the_first_app(
    sim: Sim,
) -> None:
    response = sim.client.post("/ehr/launch", data={"patient": "pat-1"})
    assert response.status_code == 303
    parts = urlsplit(response.headers["location"])
    assert f"{parts.scheme}://{parts.netloc}{parts.path}" == "http://app.test/app/launch"
    query = parse_qs(parts.query)
    assert query["tenant"] == ["t1"]
    assert query["iss"] == [FHIR_BASE]
    assert len(query["launch"][0]) >= 22


@pytest.mark.parametrize(
    "form",
    [
        {"patient": "pat-1", "launch_url": "http://evil.test/app/launch"},
        {"patient": "pat-1", "launch_url": "http://app.test/app/launch/../../evil"},
        {"patient": "pat-1", "launch_url": "//evil.test/app/launch"},
        {"patient": "../pat-1"},
        {},
    ],
)
def test_the_ehr_launch_refuses_unregistered_urls_and_bad_patients(
    sim: Sim, form: dict[str, str]
) -> None:
    """No open redirect: only a registered app's launch URL is opened."""
    response = sim.client.post("/ehr/launch", data=form)
    assert response.status_code == 400
    assert "location" not in response.headers


# --- against a real FHIR server ---------------------------------------------------------


@pytest.mark.integration
def test_against_sekmet_the_picker_proxy_and_paging_work(tmp_path: Path) -> None:
    """Real sekmet on 127.0.0.1 with generated patients: picker, token, patient-bound
    searches paged through the proxy; and the simulator's own command starts and answers."""
    from ehr_sim.patients import generate_patients
    from ehr_sim.servers import free_port, load_patients, start_fhir_server
    from ehr_sim.simulator import start_simulator

    fhir = start_fhir_server(tmp_path / "fhir")
    try:
        ids = load_patients(fhir.base_url, generate_patients(3, seed=5))
        app = create_simulator_app(_config(fhir_upstream=fhir.base_url), signing_key=RSA_KEY)
        with TestClient(app, base_url=PUBLIC, follow_redirects=False) as client:
            sim = Sim(client, Fake(), Clock())
            page = _picker(sim)
            for pid in ids:
                assert f'value="{pid}"' in page
            pending = re.search(r'name="pending" value="([^"]+)"', page)
            assert pending is not None
            picked = client.post(
                "/authorize/pick", data={"pending": pending.group(1), "patient": ids[1]}
            )
            token = _exchange(sim, _query(picked.headers["location"])["code"]).json()
            assert token["patient"] == ids[1]
            auth = _bearer(token["access_token"])
            patient = client.get(f"/fhir/Patient/{ids[1]}", headers=auth).json()
            assert patient["id"] == ids[1]
            url: str | None = f"/fhir/Observation?patient={ids[1]}&_count=5"
            seen: list[str] = []
            while url is not None:
                response = client.get(url, headers=auth)
                assert response.status_code == 200, response.text
                bundle = response.json()
                assert fhir.base_url not in response.text
                for entry in bundle.get("entry", []):
                    assert entry["fullUrl"].startswith(FHIR_BASE + "/Observation/")
                    assert entry["resource"]["subject"]["reference"].endswith(ids[1])
                    seen.append(entry["resource"]["id"])
                nxt = [lk["url"] for lk in bundle["link"] if lk["relation"] == "next"]
                url = nxt[0].removeprefix(PUBLIC) if nxt else None
            assert len(seen) == len(set(seen)) == bundle["total"] > 5
            other = client.get(f"/fhir/Observation?patient={ids[0]}", headers=auth)
            assert other.status_code == 403
            # An unknown search parameter is an error upstream (strict), never ignored.
            unknown = client.get(f"/fhir/Observation?patient={ids[1]}&bogus=1", headers=auth)
            assert unknown.status_code == 400
        # The command line: `python -m ehr_sim.simulator` started as the demo does.
        port = free_port()
        server = start_simulator(
            tmp_path / "sim", port, fhir_upstream=fhir.base_url, client=APP, cds_service_url=None
        )
        try:
            conf = httpx.get(f"{server.base_url}/fhir/.well-known/smart-configuration").json()
            assert conf["issuer"] == f"http://127.0.0.1:{port}"
            ehr = httpx.get(f"{server.base_url}/ehr", timeout=10)
            assert ehr.status_code == 200
            assert all(f"/ehr/patient/{pid}" in ehr.text for pid in ids)
        finally:
            server.stop()
    finally:
        fhir.stop()


def test_config_needs_a_client() -> None:
    with pytest.raises(ValueError, match="client"):
        create_simulator_app(_config(clients=()), signing_key=RSA_KEY)


def test_a_cds_signing_key_must_be_p384_with_an_iss() -> None:
    pem = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()
    )
    with pytest.raises(ValueError, match="P-384"):
        create_simulator_app(
            _config(cds_signing_key_pem=pem, cds_client_iss="x"), signing_key=RSA_KEY
        )
    p384 = CDS_KEY.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
    with pytest.raises(ValueError, match="iss"):
        create_simulator_app(_config(cds_signing_key_pem=p384), signing_key=RSA_KEY)


# --- refresh tokens (online_access / offline_access), rotated ---------------------------


def _refresh(sim: Sim, refresh_token: str, client_id: str | None = None) -> httpx.Response:
    return sim.client.post(
        "/token",
        data={
            "grant_type": "refresh_token",
            "refresh_token": refresh_token,
            "client_id": client_id or APP.client_id,
        },
    )


def test_online_access_buys_a_refresh_token_that_outlives_the_access_token(sim: Sim) -> None:
    """Past the access token's expiry, the refresh token gets a new, working access token."""
    first = _token(sim)
    assert "refresh_token" in first
    sim.clock.offset += 3601
    assert (
        sim.client.get("/fhir/Patient/pat-1", headers=_bearer(first["access_token"])).status_code
        == 401
    )
    renewed = _refresh(sim, first["refresh_token"])
    assert renewed.status_code == 200, renewed.text
    body = renewed.json()
    assert body["patient"] == "pat-1"
    assert body["refresh_token"] != first["refresh_token"]
    assert (
        sim.client.get("/fhir/Patient/pat-1", headers=_bearer(body["access_token"])).status_code
        == 200
    )


def test_without_online_or_offline_access_there_is_no_refresh_token(sim: Sim) -> None:
    """A grant that did not ask for online_access or offline_access gets no refresh token."""
    body = _token(sim, scope="launch patient/Patient.rs")
    assert "refresh_token" not in body


def test_a_rotated_refresh_token_used_again_revokes_its_family(sim: Sim) -> None:
    """Reuse of a spent refresh token (a stolen copy, or a race) revokes every token it led to."""
    first = _token(sim)
    second = _refresh(sim, first["refresh_token"]).json()
    reused = _refresh(sim, first["refresh_token"])
    assert reused.status_code == 400 and reused.json()["error"] == "invalid_grant"
    assert (
        sim.client.get("/fhir/Patient/pat-1", headers=_bearer(second["access_token"])).status_code
        == 401
    )
    assert _refresh(sim, second["refresh_token"]).json()["error"] == "invalid_grant"


def test_a_refresh_token_is_bound_to_its_client(sim: Sim) -> None:
    """Another client presenting the refresh token is refused, and the token stays usable."""
    first = _token(sim)
    other = _refresh(sim, first["refresh_token"], client_id=OTHER_APP.client_id)
    assert other.status_code == 400 and other.json()["error"] == "invalid_grant"
    assert _refresh(sim, first["refresh_token"]).status_code == 200
